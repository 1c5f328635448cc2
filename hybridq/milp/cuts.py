"""Valid inequalities (cuts) for the ReLU units of a cell's MILP, separated from an LP solution.

Each unstable ReLU ``r = max(z, 0)`` of :mod:`hybridq.milp.model` has one binary ``d`` and the
big-M rows ``r <= u d``, ``r <= z - l (1 - d)``, whose LP relaxation (the triangle) ignores what
``z`` depends on.  In the per-neuron-noise encoding ``z`` is not a function of the previous layer
``x``, but it is bounded above by one: the model's row ``z - w . x <= b`` (``w`` the rounded
coefficients of ``C h' + R |h'|`` -- ``C + R`` after a ReLU layer, where ``|h'| = h'`` --, ``b`` a
right-hand side that covers the rounding; the layer equation where ``z`` has no noise) is

    z <= b + w . x,

and in every integer point of the program ``d = 1`` gives ``r <= z`` and ``d = 0`` gives
``r <= 0``.  So ``(x, r, d)`` satisfies ``d = 1 => r <= b + w.x``, ``d = 0 => r <= 0`` with ``x``
in its column box, which is all the ideal-formulation inequalities of Anderson, Huchette, Ma,
Tjandraatmadja and Vielma ("Strong mixed-integer programming formulations for trained neural
networks", Math. Programming 183 (2020), Theorem 1) use.  For a subset ``I`` of the inputs, with
``L_i, U_i`` the ends of ``x_i``'s box at which ``w_i x_i`` is smallest / largest::

    r <= sum_{i in I} w_i (x_i - L_i (1 - d)) + (b + sum_{i not in I} w_i U_i) d.

The most violated ``I`` for an LP point is found in linear time (``i in I`` iff its term is the
smaller one); that is :meth:`ReluCuts.separate`.

**Rigour.**  A cut is returned as float coefficients ``r - sum_I s_i x_i - beta d <= gamma`` where
``s_i`` is the rounded ``w_i`` and ``beta`` any float near Anderson's; ``gamma`` is not Anderson's
right-hand side but a rigorous upper bound, in outward-rounded arithmetic, of the left side over
both cases ``d = 0`` (``r <= 0``) and ``d = 1`` (``r <= b + w.x``, ``s = w``) with ``x`` in the
root column box.
Hence every cut holds at every feasible point of the program (and of every node below the root,
whose boxes are smaller), and a dual bound of the program with cut rows added
(:mod:`hybridq.milp.certify`) is still a proof.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hybridq.exact import gamma
from hybridq.milp.model import MilpModel

__all__ = ["ReluCuts", "Cut"]

_ETA = 2.0 ** -1074


def _dot_up(a: np.ndarray, b: np.ndarray) -> float:
    """A float ``>=`` the exact ``sum a_i b_i`` of float vectors (Higham's a-priori bound,
    each product's and the sum's rounding covered, one ulp outward twice)."""
    p = a * b
    n = p.size + 2
    if p.size == 0:
        return 0.0
    s = float(np.sum(p))
    mag = float(np.sum(np.abs(p)))
    err = 2.0 * gamma(n) * mag + n * _ETA
    out = float(np.nextafter(np.nextafter(s, math.inf) + err, math.inf))
    return out if math.isfinite(out) else math.inf


@dataclass
class Cut:
    """One row ``sum vals * v[cols] <= rhs`` (no lower side)."""

    cols: np.ndarray
    vals: np.ndarray
    rhs: float


class ReluCuts:
    """The Anderson et al. cuts of a model's ReLU units whose input column has defining rows.

    Parameters
    ----------
    model : MilpModel
        Built by :func:`hybridq.milp.model.build_model` (``model.z_rows`` set).  The box of every
        ``x`` is the model's root column box (``model.lb``, ``model.ub``).

    Attributes
    ----------
    units : list of tuple
        Per usable ReLU: ``(r, d, cols, s, b)`` -- ``z <= b + sum s v[cols]`` is a row of the model.
    """

    def __init__(self, model: MilpModel) -> None:
        A = model.A.tocsr()
        self.lb, self.ub = model.lb, model.ub
        self.units = []
        for v, r, d in model.relus:
            row = model.z_rows.get(v)
            if row is None or not math.isfinite(model.row_hi[row]):
                continue
            lo, hi = A.indptr[row], A.indptr[row + 1]
            g = dict(zip(A.indices[lo:hi].tolist(), A.data[lo:hi].tolist()))
            if g.pop(v, 0.0) != 1.0:  # pragma: no cover - the row has z with +1
                continue
            cols = np.array(sorted(j for j, a in g.items() if a != 0.0), dtype=np.int64)
            if cols.size == 0:  # a constant upper function: the triangle is already the hull
                continue
            s = -np.array([g[j] for j in cols.tolist()])
            self.units.append((r, d, cols, s, float(model.row_hi[row])))

    def separate(self, v: np.ndarray, tol: float = 1e-6, lb: np.ndarray | None = None,
                 ub: np.ndarray | None = None) -> list[Cut]:
        """The most violated cut of each unit at the point ``v``, where it is violated by more than
        ``tol`` (relative to ``1 + |beta|``).

        Parameters
        ----------
        v : (n,) float64
            An LP solution.
        tol : float
        lb, ub : (n,) float64, optional
            A box of the columns inside the model's (default: the model's): the cuts are then valid
            for the feasible points in that box (a restricted root, e.g. after probing fixings).

        Returns
        -------
        list of Cut
            Rows valid for every feasible point of the program in the box (module docstring).
        """
        out = []
        lb = self.lb if lb is None else lb
        ub = self.ub if ub is None else ub
        for r, d, cols, s, b in self.units:
            lo, hi = lb[cols], ub[cols]
            Lb = np.where(s >= 0, lo, hi)  # where s_i x_i is smallest
            Ub = np.where(s >= 0, hi, lo)
            x = v[cols]
            dd = float(v[d])
            a = s * (x - Lb * (1.0 - dd))
            c = s * Ub * dd
            inI = a < c
            beta = float(np.sum(s[inI] * Lb[inI]) + b + np.sum(s[~inI] * Ub[~inI]))
            value = float(np.sum(a[inI]) + np.sum(c[~inI]) + b * dd)
            if not (v[r] - value > tol * (1.0 + abs(beta))):
                continue
            # rigorous right-hand side: the larger of the two cases' maxima over the box
            g0 = _dot_up(-s[inI], Lb[inI])
            nI = ~inI
            g1 = _dot_up(np.concatenate(([b, -beta], s[nI])), np.concatenate(([1.0, 1.0], Ub[nI])))
            gamma = max(g0, g1)
            if not math.isfinite(gamma):  # pragma: no cover
                continue
            cc = np.concatenate(([r, d], cols[inI]))
            vals = np.concatenate(([1.0, -beta], -s[inI]))
            out.append(Cut(cc, vals, gamma))
        return out
