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
Decision(label, kappa)
    violated iff ``y_c(x; theta) - y_j(x; theta) <= kappa`` for some ``j != c`` (``c = label``):
    the class is kept only when it wins by more than ``kappa`` (``kappa = 0``: a tie already counts
    as a flip, the sound reading of argmax).  A network with one output is a binary classifier
    (class 1 iff ``y > 0``, i.e. sigmoid score > 1/2): label 1 is kept iff ``y > kappa``, label 0
    iff ``-y > kappa``.
OutputConstraint(disjuncts)
    a VNNLIB unsafe set ``OR_d (A_d y <= c_d)`` of the perturbed logits; violated iff some ``theta``
    and ``x`` reach it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np

from hybridq.network import as_interval, iv_precision

__all__ = ["Deviation", "Decision", "OutputConstraint", "Property"]


def _real(v, name: str) -> float:
    """A real number argument as float; ``ValueError`` for strings, bools and other types."""
    if isinstance(v, (bool, str, bytes)) or not isinstance(v, (int, float, np.integer, np.floating, Fraction)):
        raise ValueError(f"{name} must be a real number, got {v!r}")
    return float(v)


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
    delta : float
        Tolerance, ``>= 0`` (units of the chosen space).
    space : {"logit", "score"}
        Compare logits or scores (``out(y)``).
    outputs : tuple of int, optional
        Output indices checked (default: all).

    Raises
    ------
    ValueError
        Negative or non-finite delta, unknown space.
    """

    delta: float
    space: str = "logit"
    outputs: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        delta = _real(self.delta, "delta")
        if not np.isfinite(delta) or delta < 0:
            raise ValueError(f"delta must be finite and >= 0, got {self.delta}")
        object.__setattr__(self, "delta", delta)
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
        """True iff ``(x, params)`` violates the property in exact arithmetic."""
        d = Fraction(self.delta)
        for dev in self.exact_deviations(network, x, params):
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
    kappa : float
        Required margin ``>= 0`` (default 0: ties count as flips).

    Raises
    ------
    ValueError
        Negative or non-finite kappa, negative label.
    """

    label: int
    kappa: float = 0.0

    def __post_init__(self) -> None:
        label = _index(self.label, "label")
        kappa = _real(self.kappa, "kappa")
        if not np.isfinite(kappa) or kappa < 0:
            raise ValueError(f"kappa must be finite and >= 0, got {self.kappa}")
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "kappa", kappa)

    def spec_matrix(self, n_out: int) -> np.ndarray:
        """Rows ``e_c - e_j`` (``j != c``), shape ``(n_out - 1, n_out)``: robust iff every row > kappa.

        For one output (binary classifier, class 1 iff ``y > 0``) the single row is ``[1]`` for
        label 1 and ``[-1]`` for label 0.
        """
        if n_out == 1:
            if self.label > 1:
                raise ValueError(f"label {self.label} out of range for a binary (one-output) classifier")
            return np.array([[1.0 if self.label == 1 else -1.0]])
        if self.label >= n_out:
            raise ValueError(f"label {self.label} out of range for {n_out} outputs")
        rows = []
        for j in range(n_out):
            if j != self.label:
                r = np.zeros(n_out)
                r[self.label], r[j] = 1.0, -1.0
                rows.append(r)
        return np.array(rows).reshape(-1, n_out)

    def margin(self, network, y_pert: np.ndarray, y_nom: np.ndarray | None = None) -> np.ndarray:
        """``kappa - min_j (y'_c - y'_j)`` per row; ``>= 0`` means a flip."""
        C = self.spec_matrix(y_pert.shape[1])
        if C.shape[0] == 0:
            return np.full(y_pert.shape[0], -np.inf)
        return self.kappa - np.min(y_pert @ C.T, axis=1)

    def check_exact(self, network, x, params) -> bool:
        y = network.exact_logits(x, params)
        c = self.label
        k = Fraction(self.kappa)
        if len(y) == 1:  # binary classifier: the margin is +-y
            m = y[0] if c == 1 else -y[0]
            if isinstance(m, Fraction):
                return m <= k
            with iv_precision():
                return bool(m.b <= as_interval(k))
        for j in range(len(y)):
            if j == c:
                continue
            if isinstance(y[c], Fraction):
                if y[c] - y[j] <= k:
                    return True
            else:
                with iv_precision():
                    m = y[c] - y[j]
                    if m.b <= as_interval(k):
                        return True
        return False


@dataclass(frozen=True)
class OutputConstraint:
    """A VNNLIB unsafe set on the perturbed logits: ``OR_d (A_d y <= c_d)``.

    Parameters
    ----------
    disjuncts : tuple of (A (m_d, n_out) float64, c (m_d,) float64)
        Each disjunct is a conjunction of linear constraints ``A y <= c``.
    """

    disjuncts: tuple[tuple[np.ndarray, np.ndarray], ...]

    def __post_init__(self) -> None:
        ds = []
        for A, c in self.disjuncts:
            A = np.array(A, dtype=np.float64, ndmin=2)
            c = np.array(c, dtype=np.float64).reshape(-1)
            if A.shape[0] != c.shape[0]:
                raise ValueError(f"constraint rows {A.shape[0]} and right-hand sides {c.shape[0]} differ")
            if not (np.all(np.isfinite(A)) and np.all(np.isfinite(c))):
                raise ValueError("output constraint contains NaN or inf")
            ds.append((A, c))
        if not ds:
            raise ValueError("output constraint has no disjunct")
        object.__setattr__(self, "disjuncts", tuple(ds))

    def margin(self, network, y_pert: np.ndarray, y_nom: np.ndarray | None = None) -> np.ndarray:
        """``max_d min_i (c_d - A_d y)_i`` per row; ``>= 0`` means inside the unsafe set."""
        vals = [np.min(c[None, :] - y_pert @ A.T, axis=1) for A, c in self.disjuncts]
        return np.max(np.stack(vals, axis=1), axis=1)

    def check_exact(self, network, x, params) -> bool:
        y = network.exact_logits(x, params)
        exact = all(isinstance(v, Fraction) for v in y)
        for A, c in self.disjuncts:
            inside = True
            for row, rhs in zip(A, c):
                if exact:
                    s = sum((Fraction(float(a)) * v for a, v in zip(row, y) if a != 0.0), Fraction(0))
                    inside = s <= Fraction(float(rhs))
                else:
                    with iv_precision():
                        s = mpmath.iv.mpf(0)
                        for a, v in zip(row, y):
                            if a != 0.0:
                                s = s + as_interval(float(a)) * as_interval(v)
                        inside = bool(s.b <= mpmath.iv.mpf(float(rhs)))
                if not inside:
                    break
            if inside:
                return True
        return False


Property = Deviation | Decision | OutputConstraint
