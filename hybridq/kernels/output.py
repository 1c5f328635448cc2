"""Output transforms: sigmoid / softmax score enclosures of the logit bounds."""

from __future__ import annotations

import math

import numpy as np

from hybridq.kernels.common import _M, ETA, FSLACK, INF, SIGMOID, _jit
from hybridq.kernels.scalar import dn, dprime_range, f_hi, f_lo, up


# ------------------------------------------------------------------------ output transforms
@_jit(f"UniTuple({_M}, 4)({_M}, {_M}, {_M}, {_M}, {_M}, {_M})", entry=True)
def score_sigmoid(yNl, yNh, yPl, yPh, dyl, dyh):
    """Sigmoid scores of the perturbed logits and the score deviation
    ``s(y') - s(y) = s'(xi) (y' - y)`` with ``s'`` enclosed on the hull of both logit boxes
    (mean value theorem), intersected with ``s(y') - s(y)`` from the two score boxes."""
    n, m = yPl.shape
    sl = np.empty((n, m))
    sh = np.empty((n, m))
    dl = np.empty((n, m))
    dh = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            sl[i, j] = f_lo(SIGMOID, 0.0, yPl[i, j])
            sh[i, j] = f_hi(SIGMOID, 0.0, yPh[i, j])
            nl = f_lo(SIGMOID, 0.0, yNl[i, j])
            nh = f_hi(SIGMOID, 0.0, yNh[i, j])
            lo = dn(sl[i, j] - nh)
            hi = up(sh[i, j] - nl)
            dmin, dmax = dprime_range(SIGMOID, 0.0, min(yNl[i, j], yPl[i, j]), max(yNh[i, j], yPh[i, j]))
            a, b = dyl[i, j], dyh[i, j]
            if a > -INF and b < INF:
                lo = max(lo, min(dn(a * dmin), dn(a * dmax)))
                hi = min(hi, max(up(b * dmin), up(b * dmax)))
            dl[i, j] = lo
            dh[i, j] = hi
    return sl, sh, dl, dh


@_jit("f8(f8)")
def _exp_hi(v):
    if v == INF:
        return INF
    e = math.exp(up(v))
    return up(up(e + e * FSLACK) + ETA)


_MAX_FLOAT = 1.7976931348623157e308


@_jit("f8(f8)")
def _exp_lo(v):
    if v == -INF or v != v:
        return 0.0
    e = math.exp(dn(v))
    if e == INF:  # exp(v) > the largest float64 (inf - inf would be NaN)
        return _MAX_FLOAT
    return max(dn(e - e * FSLACK), 0.0)


@_jit(f"UniTuple({_M}, 2)({_M}, {_M})")
def _softmax_box(yl, yh):
    """Interval enclosure of softmax over a logit box:
    ``s_j in [1 / (1 + sum_{i!=j} e^{yh_i - yl_j}), 1 / (1 + sum_{i!=j} e^{yl_i - yh_j})]``."""
    n, m = yl.shape
    sl = np.empty((n, m))
    sh = np.empty((n, m))
    for r in range(n):
        for j in range(m):
            shi = 0.0
            slo = 0.0
            for i in range(m):
                if i != j:
                    shi = up(shi + _exp_hi(up(yh[r, i] - yl[r, j])))
                    slo = dn(slo + _exp_lo(dn(yl[r, i] - yh[r, j])))
            sl[r, j] = max(dn(1.0 / up(1.0 + shi)), 0.0)
            sh[r, j] = min(up(1.0 / dn(1.0 + slo)), 1.0)
    return sl, sh


@_jit(f"UniTuple({_M}, 4)({_M}, {_M}, {_M}, {_M}, {_M}, {_M})", entry=True)
def score_softmax(yNl, yNh, yPl, yPh, dyl, dyh):
    """Softmax scores of the perturbed logits and the score deviation by the mean value theorem in
    integral form: ``ds_j = s_j(xi) sum_i s_i(xi) (dy_j - dy_i)`` with ``s(xi)`` enclosed over the
    hull of both logit boxes; intersected with the difference of the two score boxes."""
    n, m = yPl.shape
    sl, sh = _softmax_box(yPl, yPh)
    nl, nh = _softmax_box(yNl, yNh)
    hl, hh = _softmax_box(np.minimum(yNl, yPl), np.maximum(yNh, yPh))
    dl = np.empty((n, m))
    dh = np.empty((n, m))
    for r in range(n):
        for j in range(m):
            lo = dn(sl[r, j] - nh[r, j])
            hi = up(sh[r, j] - nl[r, j])
            tl = 0.0
            th = 0.0
            for i in range(m):
                if i == j:
                    continue
                a = dn(dyl[r, j] - dyh[r, i])
                b = up(dyh[r, j] - dyl[r, i])
                # s_i * [a, b] with s_i in [hl, hh] >= 0
                tl = dn(tl + min(dn(a * hl[r, i]), dn(a * hh[r, i])))
                th = up(th + max(up(b * hl[r, i]), up(b * hh[r, i])))
            if tl == tl and th == th and tl > -INF and th < INF:
                lo = max(lo, min(dn(tl * hl[r, j]), dn(tl * hh[r, j])))
                hi = min(hi, max(up(th * hl[r, j]), up(th * hh[r, j])))
            dl[r, j] = lo
            dh[r, j] = hi
    return sl, sh, dl, dh
