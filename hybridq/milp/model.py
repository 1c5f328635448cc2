"""The exact mixed-integer linear program of one piecewise-linear cell query (DESIGN.md §2).

For a network whose hidden activations are ``relu`` or ``identity`` the per-neuron-noise
reformulation makes "some ``(x, theta)`` in the cell violates the property" a mixed-integer
*linear* feasibility question.  Per layer ``k`` and neuron ``j`` (``C, c`` the box centre, ``R, rb``
the radii, ``a = |h'|``) the noise ``e_kj = z'_kj - C_j h'_{k-1} - c_j`` with ``|e_kj| <= R_j a_{k-1}
+ rb_j`` is eliminated (Fourier-Motzkin; no column per noise term, a third fewer rows)::

    z'_kj - C_j h'_{k-1} - R_j a_{k-1} <= c_j + rb_j,   -z'_kj + C_j h'_{k-1} - R_j a_{k-1} <= rb_j - c_j

and per unstable ReLU ``r = max(v, 0)`` with sound bounds ``l < 0 < u`` of ``v`` one binary ``d``
(the big-M form, whose LP relaxation is the triangle relaxation)::

    r >= 0,  r >= v,  r <= u d,  r <= v - l (1 - d).

Stable neurons (by the bound pass's neuron bounds, which become column bounds) are fixed; ``|v|``
of a sign-changing input of an identity layer or of the first layer is ``2 max(v, 0) - v`` (one
binary).  The nominal network (deviation properties) is encoded the same way without noise, or
folded to exact constants when the input is a point.

**Every coefficient of the program is a float64 value**, and the program is a relaxation of the
exact one: a coefficient that is a single weight (times ``+-1`` or ``2``) is used exactly; one
that is a sum of a centre weight and a radius (``C_ji +- R_ji`` where ``a = h'``) is rounded, its
rounding error recovered exactly (TwoSum) and its largest effect over the column's bounds added to
the right-hand side (a rigorous upper bound); right-hand sides and column bounds that are not
float64 values (sums of exact constants, the input normalization ``(x - mean) / std``) are rounded
outward.  So the program's feasible set contains the exact one, which is what lets
:mod:`hybridq.milp.certify` turn any dual vector into a rigorous bound (Neumaier and Shcherbina
2004): a bound over a larger set bounds the exact one.

Objectives (one per way to violate the property; violated iff ``value > threshold``, or ``>=``
where ``strict`` is false): a deviation output and sign ``s (y'_j - y_j)`` vs ``delta``; a decision
row ``-(y'_c - y'_j)`` vs ``-kappa``; an output-constraint disjunct ``t`` with ``t + A_i y' <= c_i``
vs ``0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from fractions import Fraction

import numpy as np

from hybridq.exact import float_down, float_up, gamma
from hybridq.properties import Decision, Deviation, OutputConstraint

if TYPE_CHECKING:  # imported in the functions: deciding whether a run uses this stage needs no scipy (start-up)
    import scipy.sparse as sp

__all__ = ["MilpModel", "Objective", "ModelUnsupported", "build_model", "assignment", "MILP_ACTIVATIONS"]

#: Hidden activations the MILP encoding expresses exactly.
MILP_ACTIVATIONS = ("relu", "identity")

_F0 = Fraction(0)


class ModelUnsupported(Exception):
    """The query is not a mixed-integer linear program in this encoding (the message says why)."""


def _up_f(v: float, n: int = 1) -> float:
    """A float ``>=`` the exact value of a float expression whose rounding error is at most
    ``n`` relative units (generous: ``(1 + 4 n u)`` and one ulp)."""
    return float(np.nextafter(v + abs(v) * 4 * (n + 2) * 2.0 ** -53 + 2.0 ** -1070, math.inf))


@dataclass
class Objective:
    """One way of violating the property: ``value = coef . v + const``.

    Parameters
    ----------
    coef : dict of int -> float
        Column -> coefficient (float64 values, exact).
    const : Fraction
        Exact constant.
    threshold : Fraction
        The property is violated iff ``value > threshold`` (``strict``) or ``value >= threshold``.
    strict : bool
    label : str
        Human-readable name (``"y3 up"``, ``"row 2"``).
    """

    coef: dict
    const: Fraction
    threshold: Fraction
    strict: bool
    label: str

    def vector(self, n: int) -> np.ndarray:
        """``(n,)`` float64: ``coef`` as a dense cost vector over the program's ``n`` columns."""
        c = np.zeros(n)
        for j, v in self.coef.items():
            c[j] += v
        return c

    def violated_by(self, value: Fraction) -> bool:
        """Whether ``value`` (the objective's exact value, ``const`` included) violates the property."""
        return value > self.threshold if self.strict else value >= self.threshold

    def bound_value(self, bound: float) -> float:
        """A certified upper bound of ``coef . v`` (``const`` left out) that :meth:`held_below`
        accepted (finite, or ``-inf`` for an empty program), as a bound of the objective's value:
        ``const`` added exactly, then rounded to the nearest float (``stats["bounds"]`` of the
        milp backend); ``-inf`` stays ``-inf``."""
        return float(Fraction(bound) + self.const) if math.isfinite(bound) else -math.inf

    def held_below(self, bound: float) -> bool:
        """Whether a certified upper bound of ``coef . v`` (``const`` left out; ``-inf`` for a
        program proved empty, ``inf`` or NaN for no bound) shows that no point violates."""
        return bound == -math.inf or (math.isfinite(bound) and not self.violated_by(Fraction(bound) + self.const))


@dataclass
class MilpModel:
    """A validated MILP ``row_lo <= A v <= row_hi``, ``lb <= v <= ub``, ``v_j`` integer for
    ``j in binaries``, with every bound finite where it matters (see module docstring).

    Attributes
    ----------
    lb, ub : (n,) float64
        Column bounds (finite).
    A : scipy.sparse.csr_matrix (m, n)
    row_lo, row_hi : (m,) float64
        Row bounds (``-inf`` / ``inf`` for one-sided rows).
    binaries : (nb,) int
        Columns of the binaries.
    relus : list of (v_col, r_col, d_col)
        The ReLU units (for branching scores).
    objectives : list of Objective
    x_cols : list of (col or None, Fraction or None)
        Per raw input: the column of the normalized input ``h0_i`` or its exact constant value.
    z_cols : list of list of int
        Per layer, the columns of the perturbed pre-activations ``z'_k``.
    z_rows : dict of int -> int
        Pre-activation column ``z`` -> the row ``z - w . x <= b`` that bounds it above by an affine
        function of the previous layer's columns (``w`` the rounded coefficients of ``C h' + R |h'|``,
        ``C + R`` where ``|h'| = h'``, see the module docstring; the layer equation where ``z`` has
        no noise): :mod:`hybridq.milp.cuts`.
    """

    lb: np.ndarray
    ub: np.ndarray
    A: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    binaries: np.ndarray
    relus: list
    objectives: list
    x_cols: list
    z_cols: list
    names: list = field(default_factory=list)
    x_std: list = field(default_factory=list)
    x_mean: list = field(default_factory=list)
    z_rows: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.lb.shape[0]

    @property
    def m(self) -> int:
        return self.A.shape[0]

    def point_model(self, v: np.ndarray) -> tuple[list, list]:
        """``(x_model, z_model)`` for :func:`hybridq.smt.encode.pullback` from a solution ``v``:
        the raw inputs (``h0 * std + mean`` of the solution's normalized inputs) and the
        perturbed pre-activations, as Fractions."""
        xm = [c if col is None else Fraction(float(v[col])) * s + m
              for (col, c), s, m in zip(self.x_cols, self.x_std, self.x_mean)]
        zm = [[Fraction(float(v[j])) for j in layer] for layer in self.z_cols]
        return xm, zm


def _forward_pre(net, x: np.ndarray, params) -> tuple[np.ndarray, list, list]:
    """Float normalized input, pre-activations and activations per layer at ``(x, params)``."""
    xc = np.asarray(x, dtype=np.float64)
    if net.input_lower is not None:
        xc = np.clip(xc, net.input_lower, net.input_upper)
    h = (xc - net.input_mean) / net.input_std
    h0, zs, hs = h, [], []
    for layer, (W, b) in zip(net.layers, params):
        z = np.asarray(W) @ h + np.asarray(b)
        h = np.maximum(z, 0.0) if layer.activation == "relu" else z
        zs.append(z)
        hs.append(h)
    return h0, zs, hs


def assignment(model: "MilpModel", q, x: np.ndarray, params) -> np.ndarray:
    """A float assignment of every column from a point ``(x, params)`` of the cell (a warm start
    for HiGHS's MILP search; not used by any proof).

    Parameters
    ----------
    model : MilpModel
    q : Query
    x : (n_in,) float64
    params : Params
        Inside the perturbation box.

    Returns
    -------
    (n,) float64, clipped into the column bounds.
    """
    net = q.network
    h0, zp, hp = _forward_pre(net, x, params)
    _, zn, hn = _forward_pre(net, x, net.params)
    yp = hp[-1] * net.output_std + net.output_mean
    yn = hn[-1] * net.output_std + net.output_mean
    v = np.zeros(model.n)
    for j, name in enumerate(model.names):
        if name.startswith("h0_"):
            v[j] = h0[int(name[3:])]
        elif name[:2] in ("pz", "nz"):
            k, i = map(int, name[2:].split("_"))
            v[j] = (zp if name[0] == "p" else zn)[k][i]
        elif name[:2] in ("py", "ny"):
            v[j] = (yp if name[0] == "p" else yn)[int(name[2:])]
    v = np.clip(v, model.lb, model.ub)
    for vc, r, d in model.relus:  # ReLU and |.| units from their inputs
        v[r] = min(max(v[vc], 0.0), model.ub[r])
        v[d] = 1.0 if v[vc] > 0 else 0.0
    for j, name in enumerate(model.names):  # output-constraint slacks: the largest feasible t
        if name.startswith("t"):
            row = model.A.getcol(j).nonzero()[0]
            vals = [model.row_hi[i] - (model.A.getrow(i) @ v)[0] + v[j] for i in row]
            v[j] = min(max(min(vals), model.lb[j]), model.ub[j]) if vals else model.lb[j]
    return v


class _Builder:
    def __init__(self) -> None:
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.names: list[str] = []
        self.rows_i: list[int] = []
        self.rows_j: list[int] = []
        self.rows_v: list[float] = []
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []
        self.binaries: list[int] = []
        self.relus: list = []
        self.z_rows: dict = {}

    def col(self, lo: float, hi: float, name: str, binary: bool = False) -> int:
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ModelUnsupported(f"no finite bound for {name} (pass the bound pass's neuron bounds)")
        if hi < lo:  # an empty cell (phase clips that contradict the bounds): keep it empty
            hi = lo
            self._empty = True
        self.lb.append(lo)
        self.ub.append(hi)
        self.names.append(name)
        j = len(self.lb) - 1
        if binary:
            self.binaries.append(j)
        return j

    def row(self, coefs: dict, lo: Fraction | None, hi: Fraction | None) -> None:
        """``lo <= sum coefs * v <= hi`` with exact Fraction sides rounded outward."""
        coefs = {j: c for j, c in coefs.items() if c != 0.0}
        if not coefs:
            return
        i = len(self.row_lo)
        for j, c in coefs.items():
            if not math.isfinite(c):
                raise ModelUnsupported("a coefficient overflowed float64")
            self.rows_i.append(i)
            self.rows_j.append(j)
            self.rows_v.append(float(c))
        self.row_lo.append(-math.inf if lo is None else float_down(lo))
        self.row_hi.append(math.inf if hi is None else float_up(hi))

    def block(self, M: sp.spmatrix, lo: np.ndarray, hi: np.ndarray) -> None:
        """Rows ``lo <= M v <= hi`` with float sides (already outward-rounded by the caller);
        ``M``'s columns are the columns made so far (or a prefix)."""
        import scipy.sparse as sp

        coo = sp.coo_matrix(M)
        nz = coo.data != 0.0
        if not np.all(np.isfinite(coo.data)):
            raise ModelUnsupported("a coefficient overflowed float64")
        i0 = len(self.row_lo)
        self.rows_i.extend((coo.row[nz] + i0).tolist())
        self.rows_j.extend(coo.col[nz].tolist())
        self.rows_v.extend(coo.data[nz].tolist())
        self.row_lo.extend(np.asarray(lo, dtype=np.float64).tolist())
        self.row_hi.extend(np.asarray(hi, dtype=np.float64).tolist())

    def relu(self, v: int, l: float, u: float, name: str) -> int:
        """Column ``r = max(v, 0)`` for an unstable ``v`` in ``[l, u]``, ``l < 0 < u`` (one binary)."""
        r = self.col(0.0, u, f"relu({name})")
        d = self.col(0.0, 1.0, f"phase({name})", binary=True)
        self.row({v: 1.0, r: -1.0}, None, _F0)                  # r >= v
        self.row({r: 1.0, d: -u}, None, _F0)                    # r <= u d
        self.row({r: 1.0, v: -1.0, d: -l}, None, Fraction(-l))  # r <= v - l (1 - d)
        self.relus.append((v, r, d))
        return r


@dataclass
class _Val:
    """An affine expression ``sum coef * col + const`` (coefficients +-1 or 2) with float bounds."""

    terms: dict
    const: Fraction
    lo: float
    hi: float


def _activation(b: _Builder, z: int, lo: float, hi: float, act: str, name: str) -> _Val:
    if act == "identity":
        return _Val({z: 1.0}, _F0, lo, hi)
    # relu
    if lo >= 0:
        return _Val({z: 1.0}, _F0, lo, hi)
    if hi <= 0:
        return _Val({}, _F0, 0.0, 0.0)
    return _Val({b.relu(z, lo, hi, name): 1.0}, _F0, 0.0, hi)


def _abs(b: _Builder, v: _Val, name: str) -> _Val:
    """``|v|`` for a value that is a constant, a single column, or known in sign."""
    if not v.terms:
        return _Val({}, abs(v.const), float_down(abs(v.const)), float_up(abs(v.const)))
    if v.lo >= 0:
        return v
    if v.hi <= 0:
        return _Val({j: -c for j, c in v.terms.items()}, -v.const, -v.hi, -v.lo)
    if len(v.terms) != 1 or v.const != 0:  # pragma: no cover - values are single columns here
        raise ModelUnsupported("|.| of a compound expression")
    (col, c), = v.terms.items()
    if c != 1.0:  # pragma: no cover
        raise ModelUnsupported("|.| of a scaled column")
    r = b.relu(col, v.lo, v.hi, f"abs {name}")
    return _Val({r: 2.0, col: -1.0}, _F0, 0.0, max(-v.lo, v.hi))


def _inputs(b: _Builder, q) -> tuple[list[_Val], list]:
    net = q.network
    vals, xcols = [], []
    for i in range(net.n_in):
        lo, hi = q.xlo[i], q.xhi[i]  # exact: the cell within the user's decimal box
        if net.input_lower is not None:
            cl, cu = Fraction(float(net.input_lower[i])), Fraction(float(net.input_upper[i]))
            lo, hi = min(max(lo, cl), cu), min(max(hi, cl), cu)
        mean, std = Fraction(float(net.input_mean[i])), Fraction(float(net.input_std[i]))
        nlo, nhi = (lo - mean) / std, (hi - mean) / std
        if nlo == nhi:
            vals.append(_Val({}, nlo, float_down(nlo), float_up(nlo)))
            xcols.append((None, lo))
        else:
            j = b.col(float_down(nlo), float_up(nhi), f"h0_{i}")
            vals.append(_Val({j: 1.0}, _F0, b.lb[j], b.ub[j]))
            xcols.append((j, None))
    return vals, xcols


def _dot_enclosure(C: np.ndarray, lo: np.ndarray, hi: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rigorous float enclosure ``[L, U]`` of ``C x + c`` over ``x`` in ``[lo, hi]`` (per row).

    Each product rounds with relative error ``u`` plus half a subnormal; the sum of ``n`` terms
    errs by at most ``gamma_n`` times the sum of magnitudes (Higham, ch. 3); the error terms are
    doubled to cover their own rounding and each end is stepped one ulp outward."""
    eta = 2.0 ** -1074
    C = np.asarray(C, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    used = (lo != 0.0) | (hi != 0.0)
    if not np.any(used):  # no constant part: the exact value is ``c`` itself (an equality row)
        return c.copy(), c.copy()
    C, lo, hi = C[:, used], lo[used], hi[used]
    n = C.shape[1] + 3
    gam = gamma(n)
    with np.errstate(over="ignore", invalid="ignore"):
        p1, p2 = C * lo[None, :], C * hi[None, :]
        tmin, tmax = np.minimum(p1, p2), np.maximum(p1, p2)
        sl, su = tmin.sum(axis=1) + c, tmax.sum(axis=1) + c
        el = 2 * gam * (np.abs(tmin).sum(axis=1) + np.abs(c)) + n * eta
        eu = 2 * gam * (np.abs(tmax).sum(axis=1) + np.abs(c)) + n * eta
        L = np.nextafter(sl - el, -np.inf)
        U = np.nextafter(su + eu, np.inf)
    if not (np.all(np.isfinite(L)) and np.all(np.isfinite(U))):
        raise ModelUnsupported("a pre-activation constant overflowed float64")
    return L, U


def _term_matrix(vals: list[_Val], n_cols: int) -> sp.csr_matrix:
    """``(n_in, n_cols)``: row ``i`` holds the column coefficients of value ``i``."""
    import scipy.sparse as sp

    ri, rj, rv = [], [], []
    for i, v in enumerate(vals):
        for col, cc in v.terms.items():
            ri.append(i)
            rj.append(col)
            rv.append(cc)
    return sp.csr_matrix((rv, (ri, rj)), shape=(len(vals), n_cols))


def _const_box(vals: list[_Val]) -> tuple[np.ndarray, np.ndarray]:
    """Float enclosures of the constant parts (0 for the columns' own part)."""
    lo = np.array([v.lo if not v.terms else float(v.const) for v in vals], dtype=np.float64)
    hi = np.array([v.hi if not v.terms else float(v.const) for v in vals], dtype=np.float64)
    for i, v in enumerate(vals):
        if v.terms and v.const != 0:  # pragma: no cover - values with columns carry no constant here
            lo[i], hi[i] = float_down(v.const), float_up(v.const)
    return lo, hi


def _add_up(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Floats ``>=`` the exact sums ``a + b`` (round to nearest, then one ulp up)."""
    with np.errstate(over="ignore"):
        s = np.nextafter(np.asarray(a, dtype=np.float64) + np.asarray(b, dtype=np.float64), np.inf)
    if not np.all(np.isfinite(s)):
        raise ModelUnsupported("a right-hand side overflowed float64")
    return s


#: Entries of the dense row blocks of :func:`_rounded_sum` (32 MB each).
_BLOCK_ENTRIES = 4_000_000


def _rounded_sum(P: sp.spmatrix, Q: sp.spmatrix, b: _Builder) -> tuple[sp.csr_matrix, np.ndarray]:
    """``S = fl(P + Q)`` entrywise and, per row ``i``, a float ``err_i >= sum_j |(P + Q - S)_ij|
    max(|lb_j|, |ub_j|)`` over the columns' bounds: so ``S v <= rhs + err`` holds wherever
    ``(P + Q) v <= rhs`` does (the rounding error of each entry is exact by TwoSum, Knuth TAOCP
    vol. 2, §4.2.2)."""
    import scipy.sparse as sp

    P, Q = sp.csr_matrix(P), sp.csr_matrix(Q)
    m, n = P.shape
    used = np.union1d(P.indices, Q.indices).astype(np.int64)
    if used.size == 0:
        return sp.csr_matrix((m, n)), np.zeros(m)
    Pu, Qu = P[:, used], Q[:, used]
    mag = np.maximum(np.abs(np.asarray(b.lb)[used]), np.abs(np.asarray(b.ub)[used]))
    k = used.size + 1
    blocks, err = [], np.empty(m)
    step = max(1, _BLOCK_ENTRIES // used.size)  # dense row blocks
    for r0 in range(0, m, step):
        p, q = Pu[r0:r0 + step].toarray(), Qu[r0:r0 + step].toarray()
        s = p + q
        bb = s - p
        e = (p - (s - bb)) + (q - bb)  # p + q = s + e exactly
        blocks.append(sp.csr_matrix(s))
        with np.errstate(over="ignore"):  # a sum of k - 1 non-negative products: relative error gamma_k
            err[r0:r0 + step] = np.abs(e) @ mag
    S = sp.csr_matrix(sp.vstack(blocks))
    S.eliminate_zeros()
    S = sp.csr_matrix((S.data, used[S.indices], S.indptr), shape=(m, n))
    with np.errstate(over="ignore"):
        err = np.nextafter(err * (1.0 + 2.0 * gamma(k)) + k * 2.0 ** -1074, np.inf)
    if not np.all(np.isfinite(err)):
        raise ModelUnsupported("a coefficient's rounding error overflowed float64")
    return S, err


def _layers(b: _Builder, q, h: list[_Val], perturbed: bool) -> tuple[list[_Val], list[list[int]]]:
    import scipy.sparse as sp

    net = q.network
    zcols = []
    tag = "p" if perturbed else "n"
    for k, layer in enumerate(net.layers):
        act = layer.activation
        if perturbed:
            (C, c), (R, rb) = q.perturbation.center[k], q.perturbation.radius[k]
            blo, bhi = q.pre_lo[k], q.pre_hi[k]
            a = [_abs(b, v, f"{tag}{k - 1}_{i}") for i, v in enumerate(h)]
            amax = np.array([max(abs(v.lo), abs(v.hi)) for v in a])
        else:
            C, c, R, rb = layer.W, layer.b, None, None
            blo, bhi = q.nom_lo[k], q.nom_hi[k]
        C = np.asarray(C, dtype=np.float64)
        c = np.asarray(c, dtype=np.float64)
        n_out = layer.n_out
        zs = [b.col(blo[j], bhi[j], f"{tag}z{k}_{j}") for j in range(n_out)]
        # z - C h_var in [L, U] (without noise; an outward enclosure of c + C h_const)
        hlo, hhi = _const_box(h)
        L, U = _dot_enclosure(C, hlo, hhi, c)
        n_cols = len(b.lb)
        Mh = sp.csr_matrix(-(sp.csr_matrix(C) @ _term_matrix(h, n_cols)))  # exact entries
        Z = sp.csr_matrix(([1.0] * n_out, (list(range(n_out)), zs)), shape=Mh.shape)
        noisy = np.zeros(n_out, dtype=bool)
        if perturbed:
            R = np.asarray(R, dtype=np.float64)
            rb = np.asarray(rb, dtype=np.float64)
            _, emax = _dot_enclosure(R, amax, amax, rb)
            noisy = emax > 0.0
        quiet = np.flatnonzero(~noisy)
        if quiet.size:  # no noise: the layer equation itself
            i_eq = len(b.row_lo)
            b.block((Z + Mh)[quiet], L[quiet], U[quiet])
            for t, j in enumerate(quiet.tolist()):
                b.z_rows[zs[j]] = i_eq + t
        keep = np.flatnonzero(noisy)
        if keep.size:
            # the noise e = z - C h - c' with |e| <= R a + rb (DESIGN.md §2) eliminated:
            #   z - C h_var - R a_var <= U + Ue,   -z + C h_var - R a_var <= Ue - L
            alo, ahi = _const_box(a)
            _, Ue = _dot_enclosure(R, alo, ahi, rb)
            Ma = sp.csr_matrix(-(sp.csr_matrix(R) @ _term_matrix(a, n_cols)))[keep]  # exact entries
            up, err_up = _rounded_sum(Mh[keep], Ma, b)
            dn, err_dn = _rounded_sum(-Mh[keep], Ma, b)
            hi_up = _add_up(_add_up(U[keep], Ue[keep]), err_up)
            hi_dn = _add_up(_add_up(Ue[keep], -L[keep]), err_dn)
            # rows with no other column (the first layer at a point input) are bounds of z
            const = (np.diff(up.indptr) == 0) & (np.diff(dn.indptr) == 0)
            for t in np.flatnonzero(const).tolist():
                zc = zs[int(keep[t])]
                b.lb[zc] = max(b.lb[zc], -float(hi_dn[t]))
                b.ub[zc] = max(b.lb[zc], min(b.ub[zc], float(hi_up[t])))  # empty: z fixed at lb (a superset)
            rows = np.flatnonzero(~const)
            inf = np.full(rows.size, -np.inf)
            i_up = len(b.row_lo)
            b.block((Z[keep] + up)[rows], inf, hi_up[rows])
            for t, j in enumerate(keep[rows].tolist()):
                b.z_rows[zs[j]] = i_up + t
            b.block((dn - Z[keep])[rows], inf, hi_dn[rows])
        new_h = [_activation(b, z, b.lb[z], b.ub[z], act, f"{tag}z{k}_{j}") for j, z in enumerate(zs)]
        h = new_h
        zcols.append(zs)
    return h, zcols


def _outputs(b: _Builder, q, h: list[_Val], tag: str) -> list[int]:
    """Columns ``y_r = std_r h_r + mean_r``."""
    net = q.network
    ys = []
    for r, v in enumerate(h):
        s, m = float(net.output_std[r]), float(net.output_mean[r])
        # exact bounds of s*h+m from the float bounds of h (output_std > 0)
        lo = Fraction(s) * Fraction(v.lo) + Fraction(m)
        hi = Fraction(s) * Fraction(v.hi) + Fraction(m)
        y = b.col(float_down(lo), float_up(hi), f"{tag}y{r}")
        coefs = {y: 1.0}
        for col, cc in v.terms.items():
            coefs[col] = coefs.get(col, 0.0) - s * cc
        const = Fraction(m) + Fraction(s) * v.const
        b.row(coefs, const, const)
        ys.append(y)
    return ys


def _nominal_enclosure(q) -> list[tuple[Fraction, Fraction]]:
    """``[lo, hi]`` (exact Fractions of floats) enclosing each nominal logit at a point input, from
    the sound nominal last-layer bounds (an exact evaluation at a decimal point can take seconds
    on large networks)."""
    net = q.network
    act = net.layers[-1].activation
    lo, hi = q.nom_lo[-1], q.nom_hi[-1]
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        return [(v, v) for v in q.network.exact_logits(list(q.xlo), None)]
    out = []
    for j in range(net.n_out):
        a, bb = Fraction(float(lo[j])), Fraction(float(hi[j]))
        if act == "relu":
            a, bb = max(a, _F0), max(bb, _F0)
        s, m = Fraction(float(net.output_std[j])), Fraction(float(net.output_mean[j]))
        out.append((a * s + m, bb * s + m))
    return out


def build_model(q) -> MilpModel:
    """The MILP of a validated cell query.

    Parameters
    ----------
    q : hybridq.smt.encode.Query
        Network, perturbation, property, input box, phase clips and neuron bounds.  Every
        pre-activation bound that the program needs must be finite (the perturbed ones always;
        the nominal ones for deviation properties on non-point inputs).

    Returns
    -------
    MilpModel

    Raises
    ------
    ModelUnsupported
        An activation other than relu/identity, a score-space deviation of a sigmoid/softmax
        output on a non-point input or of a softmax output, an infinite needed bound.
    """
    import scipy.sparse as sp

    net, prop = q.network, q.prop
    for k, layer in enumerate(net.layers):
        if layer.activation not in MILP_ACTIVATIONS:
            raise ModelUnsupported(f"layer {k} has activation {layer.activation}; the MILP stage encodes "
                                   f"{', '.join(MILP_ACTIVATIONS)} (z3 handles the others)")
    b = _Builder()
    b._empty = False
    h0, xcols = _inputs(b, q)
    hp, zcols = _layers(b, q, h0, True)
    yp = _outputs(b, q, hp, "p")
    objectives: list[Objective] = []
    if isinstance(prop, Deviation):
        point = all(col is None for col, _ in xcols)
        score = prop.space == "score" and net.output != "identity"
        if point:
            yn_box = _nominal_enclosure(q)
            yn = None
        else:
            if score:
                raise ModelUnsupported("a score-space deviation of a sigmoid/softmax output is linear only "
                                       "at a point input (the logit threshold); use logit space or z3")
            hn, _ = _layers(b, q, h0, False)
            yn = _outputs(b, q, hn, "n")
        d = prop.delta_exact  # the decimal the user wrote (hybridq.exact)
        for j in prop.selected(net.n_out):
            if score:
                if net.output != "sigmoid":
                    raise ModelUnsupported("a score-space deviation of a softmax output is not linear")
                from hybridq.smt.encode import _sigmoid_thresholds

                t_up, _ = _sigmoid_thresholds(yn_box[j][0], d)  # the loosest over the enclosure
                _, t_dn = _sigmoid_thresholds(yn_box[j][1], d)
                if t_up is not None:  # violated iff y' > t_up
                    objectives.append(Objective({yp[j]: 1.0}, _F0, t_up, True, f"y{j} up"))
                if t_dn is not None:  # violated iff y' < t_dn
                    objectives.append(Objective({yp[j]: -1.0}, _F0, -t_dn, True, f"y{j} down"))
                continue
            for s in (1.0, -1.0):
                if yn is None:
                    # the constant's upper end: -y_lo for s = +1, +y_hi for s = -1 (sound for proofs)
                    const = -yn_box[j][0] if s > 0 else yn_box[j][1]
                    obj = Objective({yp[j]: s}, const, d, True, f"y{j} {'up' if s > 0 else 'down'}")
                else:
                    obj = Objective({yp[j]: s, yn[j]: -s}, _F0, d, True, f"y{j} {'up' if s > 0 else 'down'}")
                objectives.append(obj)
    elif isinstance(prop, Decision):
        k = prop.kappa_exact
        for i, row in enumerate(prop.spec_matrix(net.n_out)):
            objectives.append(Objective({yp[r]: -float(a) for r, a in enumerate(row) if a != 0.0},
                                        _F0, -k, False, f"row {i}"))
    elif isinstance(prop, OutputConstraint):
        ylo = np.array([b.lb[y] for y in yp])
        yhi = np.array([b.ub[y] for y in yp])
        ymax = max((max(abs(Fraction(float(lo))), abs(Fraction(float(hi)))) for lo, hi in zip(ylo, yhi)), default=_F0)
        for dix, ((A, _), (_, cex), errs) in enumerate(zip(prop.disjuncts, prop.exact, prop.coef_err)):
            # the decimal right-hand sides, widened where a coefficient is no double:
            # A_exact y <= c implies A y <= c + err max|y| (a superset: an Unsat stays sound)
            cvec = [ce + (Fraction(float(e)) * ymax if e > 0 else _F0) for ce, e in zip(cex, errs)]
            # t <= c_i - A_i y for all i; t's lower end keeps every y of the box feasible
            tlo = min(ci - sum((Fraction(float(a)) * Fraction(float(yhi[r] if a > 0 else ylo[r]))
                                for r, a in enumerate(Ai) if a != 0.0), _F0)
                      for Ai, ci in zip(A, cvec))
            t = b.col(float_down(min(tlo, _F0)) - 1.0, 1.0, f"t{dix}")
            for Ai, ci in zip(A, cvec):
                coefs = {t: 1.0}
                for r, a in enumerate(Ai):
                    if a != 0.0:
                        coefs[yp[r]] = coefs.get(yp[r], 0.0) + float(a)
                b.row(coefs, None, ci)
            objectives.append(Objective({t: 1.0}, _F0, _F0, False, f"disjunct {dix}"))
    else:  # pragma: no cover - Query.build validated the property
        raise ModelUnsupported(f"unsupported property {type(prop).__name__}")
    n = len(b.lb)
    A = sp.csr_matrix((np.array(b.rows_v), (np.array(b.rows_i, dtype=np.int64), np.array(b.rows_j, dtype=np.int64))),
                      shape=(len(b.row_lo), n))
    A.sum_duplicates()
    return MilpModel(np.array(b.lb), np.array(b.ub), A, np.array(b.row_lo), np.array(b.row_hi),
                     np.array(b.binaries, dtype=np.int64), b.relus, objectives, xcols, zcols, b.names,
                     [Fraction(float(s)) for s in net.input_std], [Fraction(float(m)) for m in net.input_mean],
                     b.z_rows)
