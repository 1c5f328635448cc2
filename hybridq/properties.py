"""Properties a verifier decides (DESIGN.md §1).

A *violation* is a pair ``(x, theta)`` in ``X x Theta`` that breaks the property.  Every property
offers

* :meth:`margin` -- a float64 *violation margin* of perturbed logits against nominal logits,
  vectorised over a batch; ``>= 0`` means the float evaluation violates (used by attacks and for
  best-first ordering, never as proof);
* :meth:`check_exact` -- the exact re-check of a candidate counterexample with
  :meth:`hybridq.Network.exact_logits`; only a ``True`` here makes a verdict ``not_robust``;
* :meth:`spec_rows` -- the linear forms of the logits whose bounds decide it (used by the bound pass).

Properties
----------
Deviation(delta, space, outputs)
    violated iff ``|s_j(x; theta) - s_j(x; theta0)| > delta`` for some chosen output ``j``,
    with ``s`` the logits (``space="logit"``) or the scores (``space="score"``).
Decision(label, kappa, sense)
    ``sense="max"`` (the class is the argmax, the usual classifier): violated iff
    ``y_c(x; theta) - y_j(x; theta) <= kappa`` for some ``j != c`` (``c = label``); the class is
    kept only when it wins by more than ``kappa`` (``kappa = 0``: a tie already counts as a flip,
    the sound reading of argmax).  ``sense="min"`` (the class is the argmin, e.g. ACAS Xu, whose
    advisory is the output with the *lowest* score): violated iff ``y_j - y_c <= kappa`` for some
    ``j != c``.  A network with one output is a binary classifier (class 1 iff ``y > 0``, i.e.
    sigmoid score > 1/2; ``sense="max"`` only): label 1 is kept iff ``y > kappa``, label 0 iff
    ``-y > kappa``.
OutputConstraint(disjuncts)
    a VNNLIB unsafe set ``OR_d (A_d y <= c_d)`` of the perturbed logits; violated iff some ``theta``
    and ``x`` reach it.

Exact numbers: ``delta``, ``kappa`` and the constraint's ``A_d``, ``c_d`` may be given as exact
numbers (``Fraction``, ``Decimal``, decimal strings such as ``"0.1"``; see :mod:`hybridq.exact`).
The float64 attributes the bound pass and the attacks use are rounded outward (``delta`` down,
``kappa`` up, ``c_d`` up; ``A_d`` to nearest, with the rounding error kept in
:attr:`OutputConstraint.coef_err` for the bound pass), and :meth:`check_exact` uses the exact
values, so a counterexample violates the numbers the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from hybridq.exact import float_down, float_nearest, float_up, to_fraction
from hybridq.network import as_interval, iv_precision

__all__ = ["Deviation", "Decision", "OutputConstraint", "Property"]


def _exact_nonneg(v, name: str) -> Fraction:
    """A finite real number ``>= 0`` given as a float or an exact number, as its exact value."""
    if isinstance(v, (float, np.floating)) and not np.isfinite(v):
        raise ValueError(f"{name} must be finite and >= 0, got {v}")
    q = to_fraction(v, name)
    if q < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {float(q)}")
    return q


def _index(v, name: str) -> int:
    """A non-negative integer index; ``ValueError`` for 0.7, -1, '1', True."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        else:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if v < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {v}")
    return int(v)


@dataclass(frozen=True)
class Deviation:
    """Deviation property ``|s_j(x; theta) - s_j(x; theta0)| <= delta``.

    Parameters
    ----------
    delta : float or exact number
        Tolerance, ``>= 0`` (units of the chosen space); a ``Fraction``, ``Decimal`` or decimal
        string is kept exactly in :attr:`delta_exact`, and :attr:`delta` becomes the largest
        float64 not above it (so a deviation proved ``<= delta`` is ``<= delta_exact``).
    space : {"logit", "score"}
        Compare logits or scores (``out(y)``).
    outputs : tuple of int, optional
        Output indices checked (default: all).

    Attributes
    ----------
    delta_exact : Fraction
        The tolerance as given; :meth:`check_exact` compares against it.

    Raises
    ------
    ValueError
        Negative or non-finite delta, unknown space.
    """

    delta: float
    space: str = "logit"
    outputs: tuple[int, ...] | None = None
    delta_exact: Fraction = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact = _exact_nonneg(self.delta, "delta")
        object.__setattr__(self, "delta_exact", exact)
        object.__setattr__(self, "delta", float_down(exact, "delta"))
        if self.space not in ("logit", "score"):
            raise ValueError(f"space must be 'logit' or 'score', got {self.space!r}")
        if self.outputs is not None:
            outs = tuple(_index(j, "output index") for j in self.outputs)
            if not outs:
                raise ValueError("outputs is empty: give at least one output index, or None for all")
            object.__setattr__(self, "outputs", outs)

    def selected(self, n_out: int) -> tuple[int, ...]:
        out = tuple(range(n_out)) if self.outputs is None else self.outputs
        for j in out:
            if not 0 <= j < n_out:
                raise ValueError(f"output index {j} out of range for {n_out} outputs")
        return out

    def margin(self, network, y_pert: np.ndarray, y_nom: np.ndarray) -> np.ndarray:
        """``max_j |s'_j - s_j| - delta`` per row; arrays ``(n, n_out)`` -> ``(n,)``."""
        from hybridq.network import output_transform

        if self.space == "score":
            y_pert = output_transform(y_pert, network.output)
            y_nom = output_transform(y_nom, network.output)
        sel = list(self.selected(y_pert.shape[1]))
        return np.max(np.abs(y_pert[:, sel] - y_nom[:, sel]), axis=1) - self.delta

    def exact_deviations(self, network, x, params) -> list:
        """``s_j(x; params) - s_j(x; theta0)`` for each selected output ``j``, exactly: a Fraction
        (piecewise-linear network, logits or identity output) or an ``mpmath`` interval enclosing it."""
        if self.space == "score":
            sp, sn = network.exact_scores(x, params), network.exact_scores(x, None)
        else:
            sp, sn = network.exact_logits(x, params), network.exact_logits(x, None)
        out = []
        for j in self.selected(network.n_out):
            a, b = sp[j], sn[j]
            if isinstance(a, Fraction) and isinstance(b, Fraction):
                out.append(a - b)
            else:
                with iv_precision():
                    out.append(as_interval(a) - as_interval(b))
        return out

    def check_exact(self, network, x, params) -> bool:
        """True iff ``(x, params)`` violates the property in exact arithmetic (against
        :attr:`delta_exact`; ``x`` may hold Fractions)."""
        return self.violated_by(self.exact_deviations(network, x, params))

    def violated_by(self, deviations) -> bool:
        """True iff exact deviations (:meth:`exact_deviations`: Fractions or mpmath intervals)
        exceed :attr:`delta_exact` in absolute value."""
        d = self.delta_exact
        for dev in deviations:
            if isinstance(dev, Fraction):
                if abs(dev) > d:
                    return True
                continue
            with iv_precision():
                dd = as_interval(d)
                if dev.a > dd.b or dev.b < -dd.b:
                    return True
        return False


@dataclass(frozen=True)
class Decision:
    """Decision property: class ``label`` keeps winning by more than ``kappa`` logits.

    Parameters
    ----------
    label : int
        The protected class ``c``.
    kappa : float or exact number
        Required margin ``>= 0`` (default 0: ties count as flips); a ``Fraction``, ``Decimal`` or
        decimal string is kept exactly in :attr:`kappa_exact`, and :attr:`kappa` becomes the
        smallest float64 not below it.
    sense : {"max", "min"} or None
        Whether the class is the output with the largest (``"max"``, a classifier's argmax) or the
        smallest (``"min"``, e.g. the ACAS Xu advisory) logit.  ``None`` (default): the network's
        own :attr:`hybridq.Network.decision_sense` (argmin for the ACAS Xu files); :meth:`resolve`
        fixes it, and :func:`hybridq.verify`, the attacks and the exact stages resolve it with the
        network they are given.  Where no network is at hand (:meth:`spec_matrix` without one) an
        unresolved sense reads as ``"max"``.

    Attributes
    ----------
    kappa_exact : Fraction
        The margin as given; :meth:`check_exact` compares against it.

    Raises
    ------
    ValueError
        Negative or non-finite kappa, negative label, unknown sense.
    """

    label: int
    kappa: float = 0.0
    sense: str | None = None
    kappa_exact: Fraction = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        label = _index(self.label, "label")
        exact = _exact_nonneg(self.kappa, "kappa")
        if self.sense not in ("max", "min", None):
            raise ValueError(f"decision sense must be 'max' (argmax) or 'min' (argmin), got {self.sense!r}")
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "kappa_exact", exact)
        object.__setattr__(self, "kappa", float_up(exact, "kappa"))

    def resolve(self, network) -> "Decision":
        """This property with ``sense`` fixed: its own, else ``network.decision_sense``."""
        if self.sense is not None:
            return self
        return Decision(self.label, self.kappa_exact, getattr(network, "decision_sense", "max"))

    def spec_matrix(self, n_out: int) -> np.ndarray:
        """Rows whose values must all exceed ``kappa``, shape ``(n_out - 1, n_out)``: ``e_c - e_j``
        (``j != c``) for ``sense="max"``, ``e_j - e_c`` for ``sense="min"``.

        For one output (binary classifier, class 1 iff ``y > 0``; ``sense="max"`` only) the single
        row is ``[1]`` for label 1 and ``[-1]`` for label 0.

        Raises
        ------
        ValueError
            A label out of range; ``sense="min"`` on a one-output network.
        """
        if n_out == 1:
            if self.sense == "min":
                raise ValueError("decision sense 'min' (argmin) needs a network with at least two outputs")
            if self.label > 1:
                raise ValueError(f"label {self.label} out of range for a binary (one-output) classifier")
            return np.array([[1.0 if self.label == 1 else -1.0]])
        if self.label >= n_out:
            raise ValueError(f"label {self.label} out of range for {n_out} outputs")
        s = -1.0 if self.sense == "min" else 1.0  # None (unresolved): argmax
        rows = []
        for j in range(n_out):
            if j != self.label:
                r = np.zeros(n_out)
                r[self.label], r[j] = s, -s
                rows.append(r)
        return np.array(rows).reshape(-1, n_out)

    def margin(self, network, y_pert: np.ndarray, y_nom: np.ndarray | None = None) -> np.ndarray:
        """``kappa - min_rows (C y')`` per row; ``>= 0`` means a flip."""
        C = self.resolve(network).spec_matrix(y_pert.shape[1])
        if C.shape[0] == 0:
            return np.full(y_pert.shape[0], -np.inf)
        return self.kappa - np.min(y_pert @ C.T, axis=1)

    def check_exact(self, network, x, params) -> bool:
        """True iff ``(x, params)`` flips the class in exact arithmetic (against
        :attr:`kappa_exact`; ``x`` may hold Fractions)."""
        y = network.exact_logits(x, params)
        C = self.resolve(network).spec_matrix(len(y))
        k = self.kappa_exact
        for row in C:
            terms = [(int(a), v) for a, v in zip(row, y) if a != 0.0]
            if all(isinstance(v, Fraction) for _, v in terms):
                if sum((a * v for a, v in terms), Fraction(0)) <= k:
                    return True
                continue
            import mpmath  # here, not at the top: only sigmoid / tanh values need it (start-up)

            with iv_precision():
                m = mpmath.iv.mpf(0)
                for a, v in terms:
                    m = m + a * as_interval(v)
                if m.b <= as_interval(k).a:
                    return True
        return False


@dataclass(frozen=True)
class OutputConstraint:
    """A VNNLIB unsafe set on the perturbed logits: ``OR_d (A_d y <= c_d)``.

    Parameters
    ----------
    disjuncts : tuple of (A (m_d, n_out), c (m_d,))
        Each disjunct is a conjunction of linear constraints ``A y <= c``.  Entries are float64
        values or exact numbers (``Fraction``, ``Decimal``, decimal strings).  The stored ``A`` is
        rounded to nearest and ``c`` up (float64 arrays); the exact values are kept in
        :attr:`exact`.

    Attributes
    ----------
    exact : tuple of (tuple of tuple of Fraction, tuple of Fraction)
        The exact ``(A_d, c_d)``; :meth:`check_exact` uses them.
    coef_err : tuple of (m_d,) float64
        Per disjunct and row, an upper bound of ``sum_j |A_exact[i, j] - A[i, j]|`` (0 when every
        coefficient is a float64): with it ``A_exact y >= A y - coef_err * max_j |y_j|``, which
        keeps a bound over the float rows sound for the exact ones.

    Raises
    ------
    ValueError
        Shapes that do not match, NaN/inf, no disjunct.
    """

    disjuncts: tuple[tuple[np.ndarray, np.ndarray], ...]
    exact: tuple = field(init=False, repr=False, compare=False)
    coef_err: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ds, exact, errs = [], [], []
        for A, c in self.disjuncts:
            Ae, ce = _exact_matrix(A), _exact_vector(c)
            if len(Ae) != len(ce):
                raise ValueError(f"constraint rows {len(Ae)} and right-hand sides {len(ce)} differ")
            if len({len(r) for r in Ae}) > 1:
                raise ValueError("constraint rows have different lengths")
            Af = np.array([[float_nearest(a, "output constraint coefficient") for a in r] for r in Ae],
                          dtype=np.float64).reshape(len(Ae), -1)
            cf = np.array([float_up(v, "output constraint right-hand side") for v in ce], dtype=np.float64)
            err = np.zeros(len(Ae))
            for i, r in enumerate(Ae):
                e = sum((abs(a - Fraction(float(f))) for a, f in zip(r, Af[i])), Fraction(0))
                err[i] = float_up(e) if e else 0.0
            ds.append((Af, cf))
            exact.append((Ae, ce))
            errs.append(err)
        if not ds:
            raise ValueError("output constraint has no disjunct")
        object.__setattr__(self, "disjuncts", tuple(ds))
        object.__setattr__(self, "exact", tuple(exact))
        object.__setattr__(self, "coef_err", tuple(errs))

    def margin(self, network, y_pert: np.ndarray, y_nom: np.ndarray | None = None) -> np.ndarray:
        """``max_d min_i (c_d - A_d y)_i`` per row; ``>= 0`` means inside the (float) unsafe set."""
        vals = [np.min(c[None, :] - y_pert @ A.T, axis=1) for A, c in self.disjuncts]
        return np.max(np.stack(vals, axis=1), axis=1)

    def check_exact(self, network, x, params) -> bool:
        """True iff ``y(x; params)`` lies in the exact unsafe set (the exact ``A_d``, ``c_d``;
        ``x`` may hold Fractions)."""
        y = network.exact_logits(x, params)
        exact = all(isinstance(v, Fraction) for v in y)
        for A, c in self.exact:
            inside = True
            for row, rhs in zip(A, c):
                if exact:
                    s = sum((a * v for a, v in zip(row, y) if a != 0), Fraction(0))
                    inside = s <= rhs
                else:
                    import mpmath

                    with iv_precision():
                        s = mpmath.iv.mpf(0)
                        for a, v in zip(row, y):
                            if a != 0:
                                s = s + as_interval(a) * as_interval(v)
                        inside = bool(s.b <= as_interval(rhs).a)
                if not inside:
                    break
            if inside:
                return True
        return False


def _exact_matrix(A) -> tuple[tuple[Fraction, ...], ...]:
    """Rows of exact numbers from a 1-D or 2-D array-like (float64 or exact entries)."""
    arr = np.asarray(A, dtype=object)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"constraint matrix must be 2-D, got shape {arr.shape}")
    return tuple(tuple(_exact_entry(v) for v in r) for r in arr)


def _exact_vector(c) -> tuple[Fraction, ...]:
    return tuple(_exact_entry(v) for v in np.asarray(c, dtype=object).reshape(-1))


def _exact_entry(v) -> Fraction:
    if isinstance(v, (float, np.floating)) and not np.isfinite(v):
        raise ValueError("output constraint contains NaN or inf")
    return to_fraction(v, "output constraint entry")


Property = Deviation | Decision | OutputConstraint
