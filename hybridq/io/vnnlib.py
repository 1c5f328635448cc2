"""VNNLIB property reader (the SMT-LIB subset used by VNN-COMP).

A VNNLIB file declares real variables ``X_0..X_{n_in-1}`` (network inputs) and ``Y_0..Y_{n_out-1}``
(network outputs) and asserts constraints whose conjunction describes the *unsafe* set: the property
holds iff no input in the input region reaches an output satisfying the output constraints.

Supported: top-level ``(assert F)`` (their conjunction), ``F`` built from ``and``/``or`` over atoms
``(<= a b)``, ``(>= a b)``, ``(= a b)`` where ``a``, ``b`` are linear terms (numbers, variables,
``(+ ...)``, ``(- ...)``, ``(* number term)``).  Constraints on ``X`` must be bounds on a single input;
constraints on ``Y`` may be any linear inequality; no atom may mix ``X`` and ``Y``.  The formula is
brought to disjunctive normal form and its disjuncts are grouped by their input box, giving one
``(InputBox, OutputConstraint)`` pair per distinct box (ACAS Xu property 6, ``test_small.vnnlib``).
Strict comparisons ``<``/``>`` are rejected (the unsafe set ``A y <= c`` is closed).

Numbers are parsed exactly (``fractions.Fraction``) and kept exactly in the returned
:class:`InputBox` (``exact_lower``/``exact_upper``) and :class:`OutputConstraint` (``exact``);
their float64 images are rounded outward where it matters for soundness: input-box ends down
(lower) and up (upper), so the float box contains the decimal one, and the right-hand sides of the
unsafe set ``A y <= c`` up; coefficients to nearest (their rounding error is kept in
``OutputConstraint.coef_err``).  Counterexamples are re-checked against the exact numbers.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from hybridq.errors import ModelFormatError
from hybridq.io.compressed import read_bytes
from hybridq.exact import float_down, float_nearest, float_up
from hybridq.inputs import InputBox
from hybridq.properties import OutputConstraint

__all__ = ["load_vnnlib", "parse_vnnlib", "decision_label", "clamp_mismatch"]

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_VAR = re.compile(r"^([XY])_(\d+)$")
_IGNORED = ("check-sat", "get-model", "set-logic", "set-info", "set-option", "exit")
_MAX_DISJUNCTS = 100_000

# A linear atom: (coefficients {var: Fraction}, constant) meaning sum(coef * var) + constant <= 0.
_Atom = tuple


class _S(list):
    """An s-expression list remembering the character offset of its opening parenthesis."""

    pos = 0


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source
        self.declared: dict[str, tuple[str, int]] = {}

    def fail(self, msg: str, pos: int | None = None) -> ModelFormatError:
        where = f"line {self.text.count(chr(10), 0, pos) + 1}: " if pos is not None else ""
        return ModelFormatError(f"{self.source}: {where}{msg}")

    def sexprs(self) -> list:
        stack: list[_S] = [_S()]
        for m in _TOKEN.finditer(self.text):
            tok = m.group()
            if tok == "(":
                s = _S()
                s.pos = m.start()
                stack[-1].append(s)
                stack.append(s)
            elif tok == ")":
                if len(stack) == 1:
                    raise self.fail("unbalanced ')'", m.start())
                stack.pop()
            else:
                stack[-1].append(tok)
        if len(stack) > 1:
            raise self.fail("unbalanced '(' (truncated file?)", stack[-1].pos)
        return stack[0]

    # ------------------------------------------------------------ terms
    def term(self, t, pos: int) -> tuple[dict, Fraction]:
        if isinstance(t, str):
            if t in self.declared:
                return {t: Fraction(1)}, Fraction(0)
            if _VAR.match(t):
                raise self.fail(f"variable {t} is used but not declared", pos)
            from hybridq.exact import TooManyDigits, parse_exact

            try:
                return {}, parse_exact(t, "constant")
            except TooManyDigits as err:
                raise self.fail(str(err), pos) from None
            except ValueError:
                raise self.fail(f"expected a number or a declared variable, got {t!r}", pos) from None
        if not t or not isinstance(t[0], str):
            raise self.fail("expected a term", t.pos)
        op, args = t[0], [self.term(a, t.pos) for a in t[1:]]
        if not args:
            raise self.fail(f"({op}) without arguments", t.pos)
        if op == "+" or (op == "-" and len(args) > 1):
            coefs, const = dict(args[0][0]), args[0][1]
            sgn = 1 if op == "+" else -1
            for c, k in args[1:]:
                for v, a in c.items():
                    coefs[v] = coefs.get(v, 0) + sgn * a
                const += sgn * k
            return coefs, const
        if op == "-":
            return {v: -a for v, a in args[0][0].items()}, -args[0][1]
        if op == "*":
            coefs, const = {}, Fraction(1)
            for c, k in args:
                if c and coefs:
                    raise self.fail("non-linear product of variables", t.pos)
                if c:
                    coefs = {v: a * const for v, a in c.items()}
                    const = k * const
                else:
                    coefs = {v: a * k for v, a in coefs.items()}
                    const *= k
            return coefs, const
        raise self.fail(f"unsupported term operator {op!r} (supported: + - *)", t.pos)

    # ---------------------------------------------------------- formulas
    def formula(self, f) -> list[list[_Atom]]:
        """DNF of ``f``: a list of conjunctions (lists of atoms)."""
        if isinstance(f, str) or not f or not isinstance(f[0], str):
            if f in ("true", "false"):
                return [[]] if f == "true" else []
            raise self.fail(f"expected a formula, got {f!r}", getattr(f, "pos", None))
        op = f[0]
        if op == "and":
            out: list[list[_Atom]] = [[]]
            for g in f[1:]:
                d = self.formula(g)
                if len(d) == 1:
                    for conj in out:
                        conj.extend(d[0])
                else:
                    out = [a + b for a in out for b in d]
                if len(out) > _MAX_DISJUNCTS:
                    raise self.fail(f"the formula expands to more than {_MAX_DISJUNCTS} disjuncts", f.pos)
            return out
        if op == "or":
            out = []
            for g in f[1:]:
                out.extend(self.formula(g))
            return out
        if op in ("<=", ">=", "="):
            if len(f) != 3:
                raise self.fail(f"({op} ...) needs two operands, got {len(f) - 1}", f.pos)
            (ca, ka), (cb, kb) = self.term(f[1], f.pos), self.term(f[2], f.pos)
            diff = dict(ca)                                  # a - b
            for v, x in cb.items():
                diff[v] = diff.get(v, 0) - x
            diff = {v: x for v, x in diff.items() if x != 0}
            le = (diff, ka - kb)                             # a - b <= 0
            ge = ({v: -x for v, x in diff.items()}, kb - ka)  # b - a <= 0
            atoms = {"<=": [le], ">=": [ge], "=": [le, ge]}[op]
            return [[(c, k, f.pos) for c, k in atoms]]
        if op in ("<", ">"):
            raise self.fail(f"strict comparison {op!r} is not supported; use <= or >=", f.pos)
        raise self.fail(f"unsupported formula operator {op!r} (supported: and, or, <=, >=, =)", f.pos)


def _float(p: _Parser, v: Fraction, pos, direction: str = "nearest") -> float:
    """``v`` as a float64: rounded to nearest, or ``"down"`` / ``"up"`` (directed, so the float is
    ``<= v`` / ``>= v`` exactly; :mod:`hybridq.exact`); a value beyond the float64 range is an
    error naming its position."""
    rounding = {"nearest": float_nearest, "down": float_down, "up": float_up}[direction]
    try:
        return rounding(v)
    except ValueError:
        raise p.fail(f"a number of about 10^{len(str(abs(v.numerator) // v.denominator)) - 1} is beyond the float64 range",
                     pos) from None


def parse_vnnlib(text: str, n_in: int | None = None, n_out: int | None = None,
                 source: str = "<vnnlib>") -> list[tuple[InputBox, OutputConstraint]]:
    """Parse VNNLIB text; see :func:`load_vnnlib` (``source`` names the text in error messages)."""
    text = re.sub(r";[^\n]*", "", text)
    p = _Parser(text, source)
    asserts = []
    for form in p.sexprs():
        if not isinstance(form, list) or not form or not isinstance(form[0], str):
            raise p.fail(f"unexpected top-level item {form!r}", getattr(form, "pos", None))
        head = form[0]
        if head == "declare-const":
            if len(form) != 3 or not isinstance(form[1], str) or form[2] != "Real":
                raise p.fail("expected (declare-const NAME Real)", form.pos)
            m = _VAR.match(form[1])
            if not m:
                raise p.fail(f"variable {form[1]!r} is neither X_i nor Y_j", form.pos)
            p.declared[form[1]] = (m.group(1), int(m.group(2)))
        elif head == "assert":
            if len(form) != 2:
                raise p.fail("expected (assert FORMULA)", form.pos)
            asserts.append(form[1])
        elif head not in _IGNORED:
            raise p.fail(f"unsupported command {head!r}", form.pos)
    counts = {}
    for kind in "XY":
        idx = sorted(i for k, i in p.declared.values() if k == kind)
        if idx != list(range(len(idx))):
            raise p.fail(f"the {kind} variables are not numbered 0..{len(idx) - 1}")
        counts[kind] = len(idx)
    for kind, n, what in (("X", n_in, "inputs"), ("Y", n_out, "outputs")):
        if n is not None and counts[kind] != n:
            raise p.fail(f"declares {counts[kind]} {kind} variables but the network has {n} {what}")
    n_in, n_out = counts["X"], counts["Y"]
    if n_in == 0 or n_out == 0:
        raise p.fail("declares no X (input) or no Y (output) variables")
    if not asserts:
        raise p.fail("has no assert")
    top = _S(["and", *asserts])
    top.pos = None
    dnf = p.formula(top)

    groups: dict[tuple, list] = {}
    boxes: dict[tuple, InputBox] = {}
    false_const = 0  # disjuncts dropped for a constraint whose variables cancel and that is false
    for conj in dnf:
        lo: list = [None] * n_in
        hi: list = [None] * n_in
        rows, rhs, feasible = [], [], True
        for coefs, k, pos in conj:
            kinds = {p.declared[v][0] for v in coefs}
            if not coefs:
                feasible &= k <= 0
            elif kinds == {"X"}:
                if len(coefs) != 1:
                    raise p.fail("an input constraint must bound a single X variable (a box)", pos)
                (v, a), = coefs.items()
                # kept exact; InputBox rounds outward (the float box contains the decimal box,
                # so "robust" covers all of it) and re-checks counterexamples in the exact box
                i, bound = p.declared[v][1], -k / a
                _float(p, bound, pos, "up" if a > 0 else "down")  # within the float64 range
                if a > 0:
                    hi[i] = bound if hi[i] is None else min(hi[i], bound)
                else:
                    lo[i] = bound if lo[i] is None else max(lo[i], bound)
            elif kinds == {"Y"}:
                row = [Fraction(0)] * n_out
                for v, a in coefs.items():
                    _float(p, a, pos)  # within the float64 range
                    row[p.declared[v][1]] = a
                rows.append(row)
                _float(p, -k, pos, "up")
                rhs.append(-k)  # exact; OutputConstraint rounds it up (a larger unsafe set: sound for "robust")
            else:
                raise p.fail("a constraint mixes input (X) and output (Y) variables", pos)
        for i in range(n_in):
            if lo[i] is None or hi[i] is None:
                raise p.fail(f"X_{i} has no {'lower' if lo[i] is None else 'upper'} bound in some disjunct")
        if not feasible or any(l > h for l, h in zip(lo, hi)):
            false_const += not feasible
            continue
        key = (tuple(lo), tuple(hi))
        if key not in groups:
            groups[key] = []
            boxes[key] = InputBox(np.array(key[0], dtype=object), np.array(key[1], dtype=object))
        if rows:
            groups[key].append((np.array(rows, dtype=object), np.array(rhs, dtype=object)))
        else:  # no output constraint: every output of this box is unsafe
            groups[key].append((np.zeros((1, n_out)), np.zeros(1)))
    if not groups:
        if false_const == len(dnf):
            raise p.fail("the constraints are infeasible: a constraint whose variables cancel out (e.g. "
                         "(<= (- Y_0 Y_0) -1)) is false in every disjunct")
        if false_const:
            raise p.fail(f"the constraints are infeasible: {false_const} of {len(dnf)} disjuncts have a false "
                         "constraint whose variables cancel out, the others an empty input box")
        raise p.fail("the constraints are infeasible (no disjunct has a non-empty input box)")
    return [(boxes[key], OutputConstraint(tuple(ds))) for key, ds in groups.items()]


def load_vnnlib(path: str | Path, n_in: int | None = None,
                n_out: int | None = None) -> list[tuple[InputBox, OutputConstraint]]:
    """Read a VNNLIB property file (see the module docstring for the supported subset).

    Parameters
    ----------
    path : str or Path
        The ``.vnnlib`` file (``.vnnlib.gz``: gzip-compressed, :mod:`hybridq.io.compressed`).
    n_in, n_out : int, optional
        The network's input and output sizes; the declared ``X``/``Y`` variables must match them.

    Returns
    -------
    list of (InputBox, OutputConstraint)
        One pair per distinct input box; the property is violated iff some input of some box reaches
        that box's unsafe output set ``OR_d (A_d y <= c_d)``.

    Raises
    ------
    ModelFormatError
        Missing file, unbalanced parentheses, unsupported operators (strict comparisons, non-linear
        terms, X/Y mixtures, non-box input constraints), undeclared variables, variable counts that
        differ from ``n_in``/``n_out``, unbounded inputs, infeasible constraints; the message names the
        file and line.
    """
    path = Path(path)
    try:
        text = read_bytes(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{path}: cannot read the VNNLIB file: {e}") from None
    return parse_vnnlib(text, n_in, n_out, source=str(path))


def decision_label(constraint: OutputConstraint, sense: str = "max") -> int | None:
    """The protected class of a "some other logit reaches the label" unsafe set, if it is one.

    For ``sense="max"`` recognizes ``OR_{j != c} (Y_j >= Y_c)`` (the mnistfc / ERAN form; each
    disjunct one row ``a*(Y_c - Y_j) <= 0`` with ``a > 0``, every ``j != c`` present): it is exactly
    :class:`hybridq.Decision` ``(c, kappa=0)``, so ``c`` is returned.  For ``sense="min"`` the
    mirror form ``OR_{j != c} (Y_j <= Y_c)`` (``c`` no longer the strict argmin) gives ``c``.
    Anything else, e.g. ACAS Xu property 3 (``Y_0 <= Y_j`` for all ``j``: "COC minimal is unsafe",
    which protects no class) or property 6, gives ``None``.

    Parameters
    ----------
    constraint : OutputConstraint
    sense : {"max", "min"}

    Returns
    -------
    int or None
    """
    flip = -1.0 if sense == "min" else 1.0
    label, others = None, set()
    for A, c in constraint.disjuncts:
        if A.shape[0] != 1 or c[0] != 0.0:
            return None
        row = flip * A[0]
        nz = np.flatnonzero(row)
        if nz.size != 2 or row[nz[0]] != -row[nz[1]]:
            return None
        cl, j = (nz[0], nz[1]) if row[nz[0]] > 0 else (nz[1], nz[0])
        if label is None:
            label = int(cl)
        if cl != label or j in others:
            return None
        others.add(int(j))
    n_out = constraint.disjuncts[0][0].shape[1]
    if label is None or others != set(range(n_out)) - {label}:
        return None
    return label


def clamp_mismatch(network, boxes, factor: float = 1.0) -> str | None:
    """Why the input boxes do not fit the network's input clamp range, or None.

    A ``.nnet`` network clamps each raw input to ``[input_lower, input_upper]`` before it
    normalizes it.  A box coordinate that lies wholly outside that range (every input of the box is
    clamped to the same end), or that reaches beyond it by more than ``factor`` times the range's
    width, almost surely uses other units: typically a VNNLIB property written for the
    normalized inputs of the ONNX version of the network (VNN-COMP's ACAS Xu set) given to the
    raw-unit ``.nnet`` file.  The run stays valid (the numbers are what they are), so this is a
    reason for a warning, not an error.

    Parameters
    ----------
    network : Network
    boxes : sequence of InputBox
    factor : float
        How far beyond the clamp range, in clamp-range widths, a box may reach.

    Returns
    -------
    str or None
        One sentence naming the first offending input, or None when every box fits (or the
        network has no clamp).
    """
    if network.input_lower is None:
        return None
    L, U = network.input_lower, network.input_upper
    width = U - L
    for b in boxes:
        for i in range(min(b.n_in, L.size)):
            lo, hi = float(b.lower[i]), float(b.upper[i])
            outside = hi < L[i] or lo > U[i]
            beyond = max(L[i] - lo, hi - U[i], 0.0) > factor * width[i]
            if outside or beyond:
                how = "lies outside" if outside else "reaches far beyond"
                return (f"the box of X_{i}, [{lo:.6g}, {hi:.6g}], {how} the network's input clamp range "
                        f"[{L[i]:.6g}, {U[i]:.6g}]: the units probably differ (a .nnet file takes raw units, "
                        f"e.g. ACAS Xu's feet, radians and feet/s; VNN-COMP's ACAS Xu properties are written "
                        f"for the normalized inputs of the ONNX files)")
    return None
