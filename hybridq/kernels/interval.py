"""Methods ``interval`` and ``diff``: batched interval and difference (ReluDiff-style) passes."""

from __future__ import annotations

import numpy as np
from numba import prange

from hybridq.kernels.common import _A, _M, _NET_SIG, ETA, INF, U, _jit
from hybridq.kernels.scalar import dn, dprime_range, f_hi, f_lo, gam, up


@_jit(f"UniTuple({_M}, 3)({_M}, {_M}, f8)")
def _mid_rad(Hl, Hh, g):
    """Midpoint-radius form of a batch of boxes: ``M``, ``V = r + g|M|`` (radius plus the
    dot-product error weight) and ``|h|max = |M| + r``, all rounded up where it matters."""
    B, n = Hl.shape
    M = np.empty((B, n))
    V = np.empty((B, n))
    Hm = np.empty((B, n))
    for i in range(B):
        for j in range(n):
            lo = Hl[i, j]
            hi = Hh[i, j]
            if np.isfinite(lo) and np.isfinite(hi):
                m = 0.5 * (lo + hi)
                if not np.isfinite(m):
                    m = 0.5 * lo + 0.5 * hi
                r = max(up(hi - m), up(m - lo))
            else:
                m = 0.0
                r = INF
            M[i, j] = m
            V[i, j] = up(r + up(g * abs(m)))
            Hm[i, j] = up(abs(m) + r)
    return M, V, Hm


@_jit(f"UniTuple({_M}, 2)({_M}, {_M}, {_M}, f8[::1], f8[::1], i8, i8)")
def _finish(C, Q, P, b, rb, n, use_p):
    """``[C + b -+ rad]`` with ``rad >= (Q + P + rb)(1 + 2 gamma) + n eta``, outward rounded."""
    B, m = C.shape
    g = gam(n)
    lo = np.empty((B, m))
    hi = np.empty((B, m))
    for i in range(B):
        for j in range(m):
            t = Q[i, j] + rb[j]
            if use_p:
                t += P[i, j]
            rad = up(up(t * (1.0 + 2.0 * g)) + 3.0 * n * ETA)
            cen = C[i, j] + b[j]
            ru = up(rad + up(4.0 * U * abs(cen)))
            a = dn(cen - ru)
            z = up(cen + ru)
            lo[i, j] = a if a == a else -INF
            hi[i, j] = z if z == z else INF
    return lo, hi


@_jit(f"Tuple(({_M}, {_M}, {_M}, {_M}, {_M}, {_M}))(i8, {_M}, {_M}, {_M}, {_M}, {_M}, {_M}, b1, " + _NET_SIG + ")")
def _affine_step(k, HNl, HNh, HPl, HPh, DHl, DHh, do_diff, widths, woff, noff, acts, hasD, alphas, W0, W0T,
                 aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Interval images of layer ``k``: nominal ``z``, perturbed ``z'`` (IBP, midpoint-radius) and
    the difference ``dz = W0 dh + D h' + db + e``, ``|e| <= Rd |h'| + rbd`` (ReluDiff-style)."""
    n_in = widths[k]
    n_out = widths[k + 1]
    a, b = woff[k], woff[k + 1]
    o0, o1 = noff[k], noff[k + 1]
    g = gam(n_in)
    w0t = W0T[a:b].reshape((n_in, n_out))
    aw0t = aW0T[a:b].reshape((n_in, n_out))
    zero = np.zeros(n_out)
    M, V, Hm = _mid_rad(HNl, HNh, g)
    C0 = np.dot(M, w0t)
    ZNl, ZNh = _finish(C0, np.dot(V, aw0t), C0, b0[o0:o1], zero, n_in, 0)
    Mp, Vp, Hmp = _mid_rad(HPl, HPh, g)
    P = np.dot(Hmp, RT[a:b].reshape((n_in, n_out)))
    ZPl, ZPh = _finish(np.dot(Mp, WcT[a:b].reshape((n_in, n_out))), np.dot(Vp, aWcT[a:b].reshape((n_in, n_out))),
                       P, bc[o0:o1], rb[o0:o1], n_in, 1)
    if do_diff:
        Md, Vd, Hmd = _mid_rad(DHl, DHh, g)
        C = np.dot(Md, w0t)
        Q = np.dot(Vd, aw0t)
        if hasD[k]:
            C += np.dot(Mp, DT[a:b].reshape((n_in, n_out)))
            Q += np.dot(Vp, aDT[a:b].reshape((n_in, n_out)))
            Q += 2.0 * U * np.abs(C)  # rounding of the sum of the two centre products
        P2 = np.dot(Hmp, RdT[a:b].reshape((n_in, n_out)))
        DZl, DZh = _finish(C, Q, P2, db[o0:o1], rbd[o0:o1], 2 * n_in, 1)
    else:
        DZl = np.full(ZNl.shape, -INF)
        DZh = np.full(ZNl.shape, INF)
    return ZNl, ZNh, ZPl, ZPh, DZl, DZh


@_jit(f"void({_M}, {_M}, {_M}, {_M}, {_M}, {_M}, {_A}, {_A}, b1, b1[::1])")
def _combine(ZNl, ZNh, ZPl, ZPh, DZl, DZh, clo, chi, do_diff, infeas):
    """``z' = IBP' ∩ (z + dz) ∩ clips`` and ``dz ∩= z' - z`` in place; flags empty clips."""
    B, m = ZNl.shape
    for i in range(B):
        for j in range(m):
            pl = ZPl[i, j]
            ph = ZPh[i, j]
            if do_diff:
                v = dn(ZNl[i, j] + DZl[i, j])
                if v == v and v > pl:
                    pl = v
                v = up(ZNh[i, j] + DZh[i, j])
                if v == v and v < ph:
                    ph = v
            pl = max(pl, clo[i, j])
            ph = min(ph, chi[i, j])
            if pl > ph:
                infeas[i] = True
            ZPl[i, j] = pl
            ZPh[i, j] = ph
            lo = dn(pl - ZNh[i, j])
            hi = up(ph - ZNl[i, j])
            if lo != lo:
                lo = -INF
            if hi != hi:
                hi = INF
            if do_diff:
                DZl[i, j] = max(DZl[i, j], lo)
                DZh[i, j] = min(DZh[i, j], hi)
            else:
                DZl[i, j] = lo
                DZh[i, j] = hi


@_jit(f"Tuple(({_M}, {_M}, {_M}, {_M}, {_M}, {_M}))(i8, f8, {_M}, {_M}, {_M}, {_M}, {_M}, {_M}, b1)")
def _act_step(code, alpha, ZNl, ZNh, ZPl, ZPh, DZl, DZh, do_diff):
    """Activation images: ``h``, ``h'`` (monotone) and ``dh`` by the mean value theorem,
    ``dh in dz * [dmin, dmax]`` (derivative range on the hull of both pre-activation boxes),
    intersected with ``h' - h``."""
    B, m = ZNl.shape
    HNl = np.empty((B, m))
    HNh = np.empty((B, m))
    HPl = np.empty((B, m))
    HPh = np.empty((B, m))
    DHl = np.empty((B, m))
    DHh = np.empty((B, m))
    for i in range(B):
        for j in range(m):
            HNl[i, j] = f_lo(code, alpha, ZNl[i, j])
            HNh[i, j] = f_hi(code, alpha, ZNh[i, j])
            HPl[i, j] = f_lo(code, alpha, ZPl[i, j])
            HPh[i, j] = f_hi(code, alpha, ZPh[i, j])
            lo = dn(HPl[i, j] - HNh[i, j])
            hi = up(HPh[i, j] - HNl[i, j])
            if lo != lo:
                lo = -INF
            if hi != hi:
                hi = INF
            if do_diff:
                dl = DZl[i, j]
                dh = DZh[i, j]
                a = min(ZNl[i, j], ZPl[i, j])
                b = max(ZNh[i, j], ZPh[i, j])
                dmin, dmax = dprime_range(code, alpha, a, b)
                if dmin == 1.0 and dmax == 1.0:
                    ml, mh = dl, dh
                elif dmax == 0.0:
                    ml, mh = 0.0, 0.0
                else:
                    ml = min(dn(dl * dmin), dn(dl * dmax)) if dl > -INF else -INF
                    mh = max(up(dh * dmin), up(dh * dmax)) if dh < INF else INF
                    if ml != ml:
                        ml = -INF
                    if mh != mh:
                        mh = INF
                lo = max(lo, ml)
                hi = min(hi, mh)
            DHl[i, j] = lo
            DHh[i, j] = hi
    return HNl, HNh, HPl, HPh, DHl, DHh


_IP_OUT = ", ".join([_M] * 10 + ["b1[::1]"])


@_jit(f"Tuple(({_IP_OUT}))(i8, i8, i8)")
def _alloc_out(n, N, nL):
    """Outputs of the batched passes: ``NL, NH, PL, PH (n, N)``, six ``(n, nL)``, ``infeas (n,)``."""
    return (np.empty((n, N)), np.empty((n, N)), np.empty((n, N)), np.empty((n, N)), np.empty((n, nL)),
            np.empty((n, nL)), np.empty((n, nL)), np.empty((n, nL)), np.empty((n, nL)), np.empty((n, nL)),
            np.zeros(n, dtype=np.bool_))


@_jit(f"void(i8, i8, {_M}, {_M}, {_M}, {_M}, b1, " + ", ".join([_M] * 10 + ["b1[::1]"]) + ", " + _NET_SIG + ")")
def _interval_block(bi, block, XL, XH, CLO, CHI, do_diff, NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas,
                    widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0,
                    bc, rb, db, rbd):
    """Block ``bi`` (rows ``bi*block ..``) of :func:`interval_pass`; writes those rows of the outputs.
    The one body of the parallel and the serial entry point."""
    n = XL.shape[0]
    L = widths.shape[0] - 1
    r0 = bi * block
    r1 = min(n, r0 + block)
    HNl = XL[r0:r1].copy()
    HNh = XH[r0:r1].copy()
    HPl = HNl.copy()
    HPh = HNh.copy()
    DHl = np.zeros(HNl.shape)
    DHh = np.zeros(HNl.shape)
    inf_b = np.zeros(r1 - r0, dtype=np.bool_)
    for k in range(L):
        o0, o1 = noff[k], noff[k + 1]
        ZNl, ZNh, ZPl, ZPh, DZl, DZh = _affine_step(k, HNl, HNh, HPl, HPh, DHl, DHh, do_diff, widths, woff, noff,
                                                    acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT,
                                                    aDT, RdT, b0, bc, rb, db, rbd)
        _combine(ZNl, ZNh, ZPl, ZPh, DZl, DZh, CLO[r0:r1, o0:o1], CHI[r0:r1, o0:o1], do_diff, inf_b)
        NL[r0:r1, o0:o1] = ZNl
        NH[r0:r1, o0:o1] = ZNh
        PL[r0:r1, o0:o1] = ZPl
        PH[r0:r1, o0:o1] = ZPh
        HNl, HNh, HPl, HPh, DHl, DHh = _act_step(acts[k], alphas[k], ZNl, ZNh, ZPl, ZPh, DZl, DZh, do_diff)
    oNl[r0:r1] = HNl
    oNh[r0:r1] = HNh
    oPl[r0:r1] = HPl
    oPh[r0:r1] = HPh
    oDl[r0:r1] = DHl
    oDh[r0:r1] = DHh
    infeas[r0:r1] = inf_b


@_jit(f"Tuple(({_IP_OUT}))({_M}, {_M}, {_M}, {_M}, b1, i8, " + _NET_SIG + ")", parallel=True, entry=True)
def interval_pass(XL, XH, CLO, CHI, do_diff, block, widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT,
                  aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Methods ``interval`` (``do_diff`` False) and ``diff`` for a batch of cells.

    Parameters
    ----------
    XL, XH : (n, n0) float64
        Normalized input boxes.
    CLO, CHI : (n, N) float64
        Phase clips on the perturbed pre-activations (``-inf`` / ``inf`` where none).
    do_diff : bool
        Propagate difference bounds (ReluDiff-style) besides the two interval passes.
    block : int
        Cells per block (one BLAS matrix product per block and layer; blocks run in parallel).

    Returns
    -------
    NL, NH, PL, PH : (n, N)
        Nominal and perturbed pre-activation bounds.
    HNl, HNh, HPl, HPh, DHl, DHh : (n, n_L)
        Bounds of the last layer's nominal / perturbed activations and their difference.
    infeas : (n,) bool
        A phase clip made some perturbed pre-activation box empty.
    """
    n = XL.shape[0]
    L = widths.shape[0] - 1
    NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas = _alloc_out(n, noff[L], widths[L])
    for bi in prange((n + block - 1) // block):
        _interval_block(bi, block, XL, XH, CLO, CHI, do_diff, NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas,
                        widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT,
                        b0, bc, rb, db, rbd)
    return NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas


@_jit(f"Tuple(({_IP_OUT}))({_M}, {_M}, {_M}, {_M}, b1, i8, " + _NET_SIG + ")", entry=True)
def interval_pass_serial(XL, XH, CLO, CHI, do_diff, block, widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T,
                         Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Serial :func:`interval_pass` (small batches: no thread wake-up cost); same body."""
    n = XL.shape[0]
    L = widths.shape[0] - 1
    NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas = _alloc_out(n, noff[L], widths[L])
    for bi in range((n + block - 1) // block):
        _interval_block(bi, block, XL, XH, CLO, CHI, do_diff, NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas,
                        widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT,
                        b0, bc, rb, db, rbd)
    return NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas
