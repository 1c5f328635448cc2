"""Rigorous lower bounds of a linear program from any dual vector (Neumaier and Shcherbina 2004).

For ``min c.v`` over ``row_lo <= A v <= row_hi``, ``lb <= v <= ub`` (``lb, ub`` finite) and *any*
vector ``y`` (the approximate duals of a float LP solver, or a scaled Farkas ray of an infeasible
one), every feasible ``v`` satisfies ``c.v = y.(A v) + r.v`` with ``r = c - A^T y``, hence::

    c.v >= sum_i min(y_i row_lo_i, y_i row_hi_i) + sum_j min(r_j lb_j, r_j ub_j)

where a ``y_i`` whose needed side is infinite is set to 0 first (A. Neumaier, O. Shcherbina,
"Safe bounds in linear and mixed-integer linear programming", Math. Programming 99 (2004)
283-296, §2).  The bound is evaluated in float64 with a rigorous a-priori error term instead of
directed rounding: a sum of ``n`` products computed in any order errs by at most
``gamma_n * sum |products|`` plus ``n`` times half the subnormal spacing for underflow
(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.1 and (3.4)-(3.5)), with
``gamma_n = n u / (1 - n u)``, ``u = 2^-53``; the computed error terms are doubled to cover their
own rounding, and each final result is stepped one ulp outward.  The residual ``r`` is enclosed
in ``[r - err, r + err]`` and the box term takes the worst of the four corner products.

The bound holds for the program exactly as given (float data taken as exact reals); the MILP
encoding of :mod:`hybridq.milp.model` makes that program a relaxation of the real problem, so the
returned number is a proof: no point of the real problem has objective below it.  An infeasible LP is certified by a Farkas ray ``y`` (as
HiGHS reports it): scaled up, the bound above grows without limit when ``y`` proves infeasibility.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from hybridq.exact import gamma

__all__ = ["LpData", "safe_lower_bound", "safe_infeasible"]

_U = 2.0 ** -53
_ETA = 2.0 ** -1074  # smallest subnormal: underflow error of a product is at most half of it


def _down(v: float) -> float:
    return float(np.nextafter(v, -math.inf))


class LpData:
    """The data of ``min c.v`` over ``row_lo <= A v <= row_hi``, ``lb <= v <= ub``, prepared for
    repeated bounds with different ``c``, ``lb``, ``ub`` and ``y``.

    Parameters
    ----------
    A : (m, n) sparse or dense float64
    row_lo, row_hi : (m,) float64
        ``-inf`` / ``inf`` allowed.

    Raises
    ------
    ValueError
        Shapes that do not match, NaN entries.
    """

    def __init__(self, A, row_lo, row_hi) -> None:
        A = sp.csr_matrix(A, dtype=np.float64)
        self.A = A
        self.At = sp.csr_matrix(A.T)
        self.absAt = abs(self.At)
        self.row_lo = np.asarray(row_lo, dtype=np.float64).reshape(-1)
        self.row_hi = np.asarray(row_hi, dtype=np.float64).reshape(-1)
        m, n = A.shape
        if self.row_lo.shape != (m,) or self.row_hi.shape != (m,):
            raise ValueError(f"row bounds must have shape ({m},)")
        if np.any(np.isnan(A.data)) or np.any(np.isnan(self.row_lo)) or np.any(np.isnan(self.row_hi)):
            raise ValueError("LP data contain NaN")
        counts = np.diff(self.At.indptr)
        self.k = int(counts.max()) if counts.size else 0
        self.m, self.n = m, n

    def _row_term(self, y: np.ndarray) -> float:
        """Rigorous lower bound of ``sum_i min(y_i row_lo_i, y_i row_hi_i)`` (``y`` cleaned)."""
        side = np.where(y > 0, self.row_lo, self.row_hi)
        nz = y != 0
        p = y[nz] * side[nz]
        if p.size == 0:
            return 0.0
        s = float(np.sum(p))
        err = 2.0 * gamma(p.size + 2) * float(np.sum(np.abs(p))) + (p.size + 2) * _ETA
        return _down(_down(s) - err)

    def clean(self, y) -> np.ndarray:
        """``y`` with the entries that would need an infinite row side (or are not finite) zeroed."""
        y = np.array(y, dtype=np.float64).reshape(-1)
        if y.shape != (self.m,):
            raise ValueError(f"y must have shape ({self.m},), got {y.shape}")
        y[~np.isfinite(y)] = 0.0
        y[(y > 0) & ~np.isfinite(self.row_lo)] = 0.0
        y[(y < 0) & ~np.isfinite(self.row_hi)] = 0.0
        return y

    def residual(self, c: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An enclosure ``[r_lo, r_hi]`` of ``r = c - A^T y`` (exact, for the float ``c``, ``y``)."""
        aty = self.At @ y
        r = c - aty
        err = 2.0 * gamma(self.k + 3) * (np.abs(c) + self.absAt @ np.abs(y)) + (self.k + 3) * _ETA
        return np.nextafter(r - err, -np.inf), np.nextafter(r + err, np.inf)

    @staticmethod
    def _box_term(r_lo: np.ndarray, r_hi: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> float:
        """Rigorous lower bound of ``min_{v in [lb, ub]} r.v`` for every ``r`` in ``[r_lo, r_hi]``."""
        zero = (r_lo == 0.0) & (r_hi == 0.0)
        if not np.all(zero | (np.isfinite(lb) & np.isfinite(ub))):
            return -math.inf
        rl, rh, l, u = r_lo[~zero], r_hi[~zero], lb[~zero], ub[~zero]
        if rl.size == 0:
            return 0.0
        with np.errstate(over="ignore", invalid="ignore"):
            t = np.minimum(np.minimum(rl * l, rl * u), np.minimum(rh * l, rh * u))
            t = np.nextafter(t - np.abs(t) * (2 * _U) - _ETA, -np.inf)  # each product rounded down
            if not np.all(np.isfinite(t)):
                return -math.inf
            s = float(np.sum(t))
            err = 2.0 * gamma(t.size + 2) * float(np.sum(np.abs(t))) + (t.size + 2) * _ETA
        out = _down(_down(s) - err)
        return out if math.isfinite(out) else -math.inf

    def lower_bound(self, c, lb, ub, y) -> float:
        """Rigorous lower bound of ``min c.v`` over the program with column bounds ``[lb, ub]``.

        Parameters
        ----------
        c, lb, ub : (n,) float64
        y : (m,) float64
            Any vector (approximate duals); entries that would need an infinite row side are
            ignored.

        Returns
        -------
        float
            No feasible ``v`` has ``c.v`` below it (``-inf`` when nothing can be said).
        """
        c = np.asarray(c, dtype=np.float64)
        lb = np.asarray(lb, dtype=np.float64)
        ub = np.asarray(ub, dtype=np.float64)
        y = self.clean(y)
        r_lo, r_hi = self.residual(c, y)
        total = self._row_term(y) + self._box_term(r_lo, r_hi, lb, ub)
        return _down(total) if math.isfinite(total) else -math.inf

    def infeasible(self, lb, ub, ray) -> bool:
        """True when ``ray`` proves rigorously that no ``v`` in ``[lb, ub]`` satisfies the rows
        (the Farkas bound with ``c = 0`` is positive: ``0 >= bound > 0`` is impossible)."""
        ray = np.asarray(ray, dtype=np.float64)
        nrm = float(np.max(np.abs(ray))) if ray.size else 0.0
        if not (nrm > 0 and math.isfinite(nrm)):
            return False
        zero = np.zeros(self.n)
        for y in (ray / nrm, -ray / nrm):  # the ray's sign convention differs between solvers
            if self.lower_bound(zero, lb, ub, y) > 0.0:
                return True
        return False


def safe_lower_bound(A, row_lo, row_hi, c, lb, ub, y) -> float:
    """One-shot :meth:`LpData.lower_bound` (see the module docstring)."""
    return LpData(A, row_lo, row_hi).lower_bound(c, lb, ub, y)


def safe_infeasible(A, row_lo, row_hi, lb, ub, ray) -> bool:
    """One-shot :meth:`LpData.infeasible`."""
    return LpData(A, row_lo, row_hi).infeasible(lb, ub, ray)
