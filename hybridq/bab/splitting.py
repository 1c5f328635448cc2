"""Splitting heuristics of the branch and bound: which input dimension or neuron phase to split.

* Input splits: the dimension with the largest *smear* ``|d objective / d x_i| x width_i`` (the
  gradient bounded by interval back-propagation through the derivative ranges of the activations on
  the cell, as in ReluVal, Wang et al., USENIX Security 2018), times that dimension's weight
  (:func:`dim_weight`: the mean relative drop of the bound its earlier splits gave in this run).
* Phase splits (point inputs, inputs of many dimensions): the unstable perturbed neuron with the
  largest ``|d objective / d h| x (-lo hi / (hi - lo))`` (the BaBSR-style score, Bunel et al.,
  JMLR 2020), split at its breakpoint (0 for relu-like, +-1 for hardtanh, 0 or the midpoint for
  sigmoid/tanh).
"""

from __future__ import annotations

import numpy as np

from hybridq.cell import Cell

__all__ = ["SPLITTABLE", "split_points", "dact_range", "grad_bounds", "halves", "n_unstable",
           "phase_split", "dim_weight"]

#: Activations whose phases can be split.
SPLITTABLE = ("relu", "leaky_relu", "hardtanh", "sigmoid", "tanh")


def split_points(lo: np.ndarray, hi: np.ndarray, activation: str) -> np.ndarray:
    """Breakpoint per neuron ``(n,)`` for pre-activation bounds ``lo, hi (n,)`` (NaN: none)."""
    if activation in ("relu", "leaky_relu"):
        return np.zeros_like(lo)
    if activation == "hardtanh":
        return np.where((lo < -1.0) & (-1.0 < hi), -1.0, 1.0)
    mid = 0.5 * (lo + hi)
    return np.where((lo < 0.0) & (0.0 < hi), 0.0, np.where(np.isfinite(mid), mid, np.nan))


def dact_range(lo, hi, a, alpha):
    """Range ``[dlo, dhi]`` of the activation derivative over ``[lo, hi]`` (elementwise)."""
    one, zero = np.ones_like(lo), np.zeros_like(lo)
    if a == "identity":
        return one, one
    if a in ("relu", "leaky_relu"):
        low = zero if a == "relu" else np.full_like(lo, alpha)
        return np.where(lo > 0, one, low), np.where(hi <= 0, low, one)
    if a == "hardtanh":
        inside = (lo > -1) & (hi < 1)
        outside = (hi <= -1) | (lo >= 1)
        return np.where(inside, one, zero), np.where(outside, zero, one)

    def d(z):
        if a == "sigmoid":
            s = 0.5 * (1.0 + np.tanh(0.5 * z))
            return s * (1.0 - s)
        return 1.0 - np.tanh(z) ** 2

    zc = np.clip(0.0, lo, hi)
    return np.minimum(d(lo), d(hi)), d(zc)


def grad_bounds(network, plo, phi, c):
    """Interval back-propagation of ``d (c . y) / d h_k`` through the activation derivative
    ranges on a cell (``plo, phi``: perturbed pre-activation bounds per layer).

    Returns ``(|g_x| (n_in,), [|g_h_k| (n_k,)])``: bounds on the gradient magnitudes with respect
    to the raw input and to each layer's activations (heuristic: not used for soundness).
    """
    glo = ghi = c * network.output_std
    gh = [None] * len(network.layers)
    for k in range(len(network.layers) - 1, -1, -1):
        l = network.layers[k]
        gh[k] = np.maximum(np.abs(glo), np.abs(ghi))
        dlo, dhi = dact_range(plo[k], phi[k], l.activation, l.alpha)
        a, b = glo * dlo, glo * dhi
        cc, d = ghi * dlo, ghi * dhi
        zlo, zhi = np.minimum(a, b), np.maximum(cc, d)
        mid, rad = 0.5 * (zlo + zhi), 0.5 * (zhi - zlo)
        gm, gr = l.W.T @ mid, np.abs(l.W.T) @ rad
        glo, ghi = gm - gr, gm + gr
    gx = np.maximum(np.abs(glo), np.abs(ghi)) / network.input_std
    return gx, gh


def halves(cell: Cell, d: int) -> list[Cell]:
    """The two children of ``cell`` split at the midpoint of input dimension ``d``."""
    mid = 0.5 * (cell.lower[d] + cell.upper[d])
    up1, lo2 = cell.upper.copy(), cell.lower.copy()
    up1[d] = mid
    lo2[d] = mid
    return [Cell(cell.lower.copy(), up1, cell.pre_lo.copy(), cell.pre_hi.copy(), cell.depth + 1, split_dim=d),
            Cell(lo2, cell.upper.copy(), cell.pre_lo.copy(), cell.pre_hi.copy(), cell.depth + 1, split_dim=d)]


def n_unstable(network, plo, phi) -> int:
    """Number of perturbed neurons whose bounds straddle a breakpoint of their activation."""
    n = 0
    for k, l in enumerate(network.layers):
        if l.activation in SPLITTABLE:
            t = split_points(plo[k], phi[k], l.activation)
            n += int(np.sum(np.isfinite(t) & (plo[k] < t) & (t < phi[k])))
    return n


def phase_split(network, offsets, cell: Cell, plo, phi, gh) -> list[Cell]:
    """Split ``cell`` on the phase of the unstable neuron with the best BaBSR-style score
    (``gh``: gradient magnitudes from :func:`grad_bounds`; ``offsets``: first neuron index of each
    layer in ``Cell.pre_lo``).  Returns the two children, or ``[]`` when no neuron is unstable."""
    best, choice = 0.0, None
    for k, l in enumerate(network.layers):
        if l.activation not in SPLITTABLE:
            continue
        lo, hi = plo[k], phi[k]
        t = split_points(lo, hi, l.activation)
        ok = np.isfinite(t) & (lo < t) & (t < hi)
        if not ok.any():
            continue
        if l.activation in ("relu", "leaky_relu", "hardtanh"):
            a, b = t - lo, hi - t
            # huge boxes: an infinite area still ranks first (a b and a + b both overflowing made
            # inf / inf = NaN, numpy's RuntimeWarning on stderr and no neuron ranked at all)
            with np.errstate(over="ignore", invalid="ignore"):
                area = a * b / np.maximum(a + b, 1e-300)
            area = np.where(np.isnan(area) & ok, np.inf, area)
        else:
            with np.errstate(over="ignore"):  # huge radii: an infinite area still ranks first
                area = (hi - lo) ** 2
        with np.errstate(invalid="ignore"):  # a zero gradient times an infinite area: NaN, ranked 0
            gain = gh[k] * area
        score = np.where(ok, np.where(np.isnan(gain), 0.0, gain) + 1e-300 * ok, 0.0)
        j = int(np.argmax(score))
        if score[j] > best:
            best, choice = float(score[j]), (k, j, float(t[j]))
    if choice is None:
        return []
    k, j, t = choice
    idx = offsets[k] + j
    a = Cell(cell.lower.copy(), cell.upper.copy(), cell.pre_lo.copy(), cell.pre_hi.copy(), cell.depth + 1)
    b = Cell(cell.lower.copy(), cell.upper.copy(), cell.pre_lo.copy(), cell.pre_hi.copy(), cell.depth + 1)
    a.pre_hi[idx] = min(a.pre_hi[idx], t)
    b.pre_lo[idx] = max(b.pre_lo[idx], t)
    return [a, b]


def dim_weight(gain_sum: np.ndarray, gain_n: np.ndarray, prior: float = 0.1) -> np.ndarray:
    """Smear multiplier per input dimension: the mean relative bound drop that splitting along it
    gave so far, shrunk toward ``prior`` (one pseudo-observation), so a dimension never tried is
    neither favoured nor excluded.  Bounds of ReLU networks tighten unevenly: one input often
    governs the unstable neurons of a region far more than the gradient-based smear shows."""
    return (prior + gain_sum) / (1.0 + gain_n)
