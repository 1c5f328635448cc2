"""Method ``linear``: CROWN-style back-substitution with rigorous rounding-error slack."""

from __future__ import annotations

import numpy as np
from numba import prange

from hybridq.kernels.common import _A, _M, _NET_SIG, ETA, HARDTANH, IDENTITY, INF, LEAKY, RELU, U, _jit
from hybridq.kernels.interval import _act_step, _affine_step, _alloc_out, _combine
from hybridq.kernels.scalar import _abs_line, dn, dprime_range, gam, relax, up


# --------------------------------------------------------------- linear relaxation (CROWN)
# Per-cell work arrays: Zs (23, N) at z-level, Hs (4, n0 + N) at h-level (h^(0) = x first).
# Rows _AU.._GDL: the lines of the difference ``dh = h' - h`` in ``dz = z' - z`` (see _store_dlines).
(_ZMAXN, _ZMAXP, _SLN, _TLN, _SUN, _TUN, _GAPN, _SLP, _TLP, _SUP, _TUP, _GAPP, _DHL, _DHH, _VN, _VP, _RP,
 _AU, _BU, _AL, _BL, _GDU, _GDL) = range(23)
_NZS = 23
_HMAXN, _HMAXP, _ABSA, _ABSB = range(4)


@_jit("UniTuple(f8, 6)(i8, f8, f8, f8, f8, f8)")
def _dh_lines(code, alpha, dl, du, a, b):
    """Lines ``al dz + bl <= dh <= au dz + bu`` of the activation difference ``dh = f(z') - f(z)``
    for ``dz = z' - z`` in ``[dl, du]`` and ``z, z'`` in ``[a, b]``; returns ``(au, bu, al, bl,
    gap_u, gap_l)`` (the gaps: the largest vertical distance of each line to the envelope, a
    heuristic for choosing the relaxation).

    By the mean value theorem ``dh = c dz`` with ``c`` in ``[dmin, dmax]``
    (:func:`~hybridq.kernels.scalar.dprime_range`), so ``dh <= max(dmin dz, dmax dz)`` (convex)
    and ``dh >= min(dmin dz, dmax dz)`` (concave).  The chords over ``[dl, du]`` bound these
    envelopes (a line above a convex function at both ends is above it between them), the
    intercepts are rounded outward at both ends, so the lines hold for the floats returned.  This
    is NeuroDiff's linear relaxation of unstable difference neurons (Paulsen, Wang et al., ASE
    2020, §4), written for any activation with a derivative range.  Unbounded ``[dl, du]``: zero
    slopes, infinite gaps (never chosen)."""
    if not (dl > -INF and du < INF and dl <= du):
        return 0.0, 0.0, 0.0, 0.0, INF, INF
    dmin, dmax = dprime_range(code, alpha, a, b)
    gul = max(up(dmin * dl), up(dmax * dl))
    guu = max(up(dmin * du), up(dmax * du))
    gll = min(dn(dmin * dl), dn(dmax * dl))
    glu = min(dn(dmin * du), dn(dmax * du))
    w = du - dl
    au = 0.0
    al = 0.0
    if w > 0.0 and w < INF:
        au = (guu - gul) / w
        al = (glu - gll) / w
        if not (abs(au) < INF):
            au = 0.0
        if not (abs(al) < INF):
            al = 0.0
    bu = max(up(gul - dn(au * dl)), up(guu - dn(au * du)))
    bl = min(dn(gll - up(al * dl)), dn(glu - up(al * du)))
    if not (abs(bu) < INF and abs(bl) < INF):
        return 0.0, 0.0, 0.0, 0.0, INF, INF
    gap_u = max(au * dl + bu - gul, au * du + bu - guu)
    gap_l = max(gll - al * dl - bl, glu - al * du - bl)
    if dl < 0.0 < du:  # the envelopes' kink
        gap_u = max(gap_u, bu)
        gap_l = max(gap_l, -bl)
    return au, bu, al, bl, max(gap_u, 0.0), max(gap_l, 0.0)


@_jit(f"void(i8, {_M}, {_M}, {_M}, {_M}, {_M}, {_M}, {_M}, i8[::1], f8[::1], i8[::1])")
def _store_dlines(k, ZNl, ZNh, ZPl, ZPh, DZl, DZh, Zs, acts, alphas, noff):
    """The ``dh``-in-``dz`` lines of layer k (:func:`_dh_lines`) into ``Zs``."""
    zo = noff[k]
    for j in range(ZNl.shape[1]):
        J = zo + j
        au, bu, al, bl, gu, gl = _dh_lines(acts[k], alphas[k], DZl[0, j], DZh[0, j], min(ZNl[0, j], ZPl[0, j]),
                                           max(ZNh[0, j], ZPh[0, j]))
        Zs[_AU, J], Zs[_BU, J], Zs[_AL, J], Zs[_BL, J], Zs[_GDU, J], Zs[_GDL, J] = au, bu, al, bl, gu, gl


@_jit(f"UniTuple({_M}, 2)(i8, {_M}, {_M}, b1, b1, b1, f8[::1], f8[::1], {_M}, {_M}, i8, i8[::1])")
def _act_back(k, GP, GN, use_p, use_n, mix, const, slack, Zs, Hs, n0, noff):
    """Coefficients on ``h'^(k+1), h^(k+1)`` -> on ``z'^(k), z^(k)`` through the relaxations of
    layer k's activation (upper bound of the objective).  Per neuron: relax both networks
    (option A), or write ``gp h' + gn h = (gp+gn) h + gp dh`` (B, D) / ``(gp+gn) h' - gn dh``
    (C, E) and bound the ``dh`` term by its interval (B, C) or by a line in ``dz = z' - z``
    (D, E: NeuroDiff's symbolic difference, :func:`_dh_lines`, kept symbolic down to ``x``),
    whichever has the smallest estimated slack."""
    rows, n = GP.shape
    FP = np.zeros((rows, n))
    FN = np.zeros((rows, n))
    zo = noff[k]
    ho = n0 + noff[k]
    g = gam(n)
    for i in range(rows):
        cval = 0.0
        cabs = 0.0
        E = 0.0
        for j in range(n):
            gp = GP[i, j] if use_p else 0.0
            gn = GN[i, j] if use_n else 0.0
            if gp == 0.0 and gn == 0.0:
                continue
            J = zo + j
            opt = 0
            if mix and use_p and use_n and (Zs[_GAPN, J] > 0.0 or Zs[_GAPP, J] > 0.0):
                sg = gp + gn
                wd = Zs[_DHH, J] - Zs[_DHL, J]
                cA = abs(gp) * Zs[_GAPP, J] + abs(gn) * Zs[_GAPN, J]
                cB = abs(sg) * Zs[_GAPN, J] + abs(gp) * wd
                cC = abs(sg) * Zs[_GAPP, J] + abs(gn) * wd
                cD = abs(sg) * Zs[_GAPN, J] + abs(gp) * (Zs[_GDU, J] if gp > 0.0 else Zs[_GDL, J])
                cE = abs(sg) * Zs[_GAPP, J] + abs(gn) * (Zs[_GDU, J] if gn < 0.0 else Zs[_GDL, J])
                best = cA
                if cB < best:
                    opt, best = 1, cB
                if cC < best:
                    opt, best = 2, cC
                if cD < best:
                    opt, best = 3, cD
                if cE < best:
                    opt, best = 4, cE
            if opt == 0:
                if gp != 0.0:
                    if gp > 0.0:
                        s, t = Zs[_SUP, J], Zs[_TUP, J]
                    else:
                        s, t = Zs[_SLP, J], Zs[_TLP, J]
                    f = gp * s
                    FP[i, j] = f
                    if f != 0.0:
                        E += abs(f) * Zs[_ZMAXP, J]
                    if t != 0.0:
                        cv = gp * t
                        cval += cv
                        cabs += abs(cv)
                if gn != 0.0:
                    if gn > 0.0:
                        s, t = Zs[_SUN, J], Zs[_TUN, J]
                    else:
                        s, t = Zs[_SLN, J], Zs[_TLN, J]
                    f = gn * s
                    FN[i, j] = f
                    if f != 0.0:
                        E += abs(f) * Zs[_ZMAXN, J]
                    if t != 0.0:
                        cv = gn * t
                        cval += cv
                        cabs += abs(cv)
            else:
                sg = gp + gn
                if opt == 1 or opt == 3:
                    w = gp
                    net = 0
                else:
                    w = -gn
                    net = 1
                fd = 0.0
                if w != 0.0:
                    if opt <= 2:  # the dh term by its interval
                        cv = max(w * Zs[_DHL, J], w * Zs[_DHH, J])
                    else:  # w dh <= w (a dz + b), dz = z' - z
                        if w > 0.0:
                            a, bb = Zs[_AU, J], Zs[_BU, J]
                        else:
                            a, bb = Zs[_AL, J], Zs[_BL, J]
                        fd = w * a
                        cv = w * bb
                        if fd != 0.0:
                            E += abs(fd) * (Zs[_ZMAXP, J] + Zs[_ZMAXN, J])
                    cval += cv
                    cabs += abs(cv)
                f = 0.0
                if sg != 0.0:
                    E += abs(sg) * Hs[_HMAXN + net, ho + j]
                    if net == 0:
                        if sg > 0.0:
                            s, t = Zs[_SUN, J], Zs[_TUN, J]
                        else:
                            s, t = Zs[_SLN, J], Zs[_TLN, J]
                    else:
                        if sg > 0.0:
                            s, t = Zs[_SUP, J], Zs[_TUP, J]
                        else:
                            s, t = Zs[_SLP, J], Zs[_TLP, J]
                    f = sg * s
                    if f != 0.0:
                        E += abs(f) * Zs[_ZMAXN + net, J]
                    if t != 0.0:
                        cv = sg * t
                        cval += cv
                        cabs += abs(cv)
                if net == 0:
                    FN[i, j] = f - fd
                    FP[i, j] = fd
                else:
                    FP[i, j] = f + fd
                    FN[i, j] = -fd
                if fd != 0.0:  # rounding of the sum f -+ fd
                    E += abs(FP[i, j]) * Zs[_ZMAXP, J] + abs(FN[i, j]) * Zs[_ZMAXN, J]
        err = up(up(up(E * (1.0 + g)) * (2.0 * U)) + up(up(cabs * (1.0 + g)) * (2.0 * g)))
        slack[i] = up(slack[i] + err)
        const[i] = up(const[i] + cval)
    return FP, FN


@_jit("f8(f8[::1], i8)")
def _underflow(hmax, n):
    """Underflow part of a matrix-product error: ``n eta / 2`` per product entry times ``sum |h|max``
    (Higham §2.1), plus the bias dot products, rounded up generously."""
    s = 0.0
    for v in hmax:
        s += v
    return up(up(s + 1.0) * ((n + 2) * ETA * 2.0))


@_jit("b1(f8[::1])")
def _all_zero(v):
    """Whether every entry of ``v`` is zero (stops at the first that is not)."""
    for x in v:
        if x != 0.0:
            return False
    return True


@_jit(f"{_M}({_M}, {_A})")
def _dot_cols(F, W):
    """``F @ W`` skipping the all-zero columns of ``F`` (neurons inactive in every row, e.g. dead
    relus): the same sums without their zero terms, so the same error bound holds."""
    rows, n = F.shape
    keep = np.zeros(n, dtype=np.bool_)
    cnt = 0
    for j in range(n):
        for i in range(rows):
            if F[i, j] != 0.0:
                keep[j] = True
                cnt += 1
                break
    if cnt == 0:
        return np.zeros((rows, W.shape[1]))
    if cnt * 4 > n * 3:
        return np.dot(F, np.ascontiguousarray(W))
    idx = np.nonzero(keep)[0]
    Fs = np.empty((rows, cnt))
    Ws = np.empty((cnt, W.shape[1]))
    for t in range(cnt):
        j = idx[t]
        for i in range(rows):
            Fs[i, t] = F[i, j]
        Ws[t, :] = W[j, :]
    return np.dot(Fs, Ws)


@_jit(f"UniTuple({_M}, 2)(i8, {_M}, {_M}, b1, b1, i8, f8[::1], f8[::1], {_M}, {_M}, " + _NET_SIG + ")")
def _lin_back(k, FP, FN, use_p, use_n, noise_mode, const, slack, Zs, Hs, widths, woff, noff, acts, hasD, alphas,
              W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Coefficients on ``z'^(k), z^(k)`` -> on ``h'^(k), h^(k)`` through layer k's affine map.
    Perturbed: ``FP z' = FP Wc h' + FP bc + FP e`` with ``FP e <= |FP| (R |h'| + rb)``;
    ``noise_mode`` 1 substitutes ``|h'| <= a h' + b`` (exact for relu outputs, a = 1, b = 0),
    0 concretizes ``R |h'|`` with ``|h'|max``.  Matrix-product errors: Higham §3.1 times the
    precomputed ``|W| |h|max`` (``Zs[_VN/_VP]``)."""
    n_in = widths[k]
    n_out = widths[k + 1]
    a, b = woff[k], woff[k + 1]
    zo = noff[k]
    ho = 0 if k == 0 else widths[0] + noff[k - 1]
    rows = FP.shape[0]
    g = gam(n_out)
    GP = np.zeros((rows, n_in))
    GN = np.zeros((rows, n_in))
    if use_p:
        GP = _dot_cols(FP, Wc[a:b].reshape((n_out, n_in)))
        aF = np.abs(FP)
        e1 = np.dot(aF, Zs[_VP, zo:zo + n_out].copy())
        bcs = bc[zo:zo + n_out].copy()
        cb = np.dot(FP, bcs)
        cba = np.dot(aF, np.abs(bcs))
        rbs = np.dot(aF, rb[zo:zo + n_out].copy())
        if noise_mode == 0:
            nz = np.dot(aF, Zs[_RP, zo:zo + n_out].copy())
            Q = GP[:, :0]
        else:
            nz = rbs
            if _all_zero(R[a:b]):  # no weight noise in this layer (a point perturbation): Q = 0
                Q = np.zeros((rows, n_in))
            else:
                Q = _dot_cols(aF, R[a:b].reshape((n_out, n_in)))
        uf = _underflow(Hs[_HMAXP, ho:ho + n_in], n_out)
        for i in range(rows):
            err = up(up(up(e1[i] * (1.0 + g)) * g) + up(up(cba[i] * (1.0 + g)) * g) + uf)
            const[i] = up(up(const[i] + cb[i]) + up(nz[i] * (1.0 + 2.0 * g)))
            if noise_mode == 1:
                E = 0.0
                cs = 0.0
                for j in range(n_in):
                    q = Q[i, j]
                    if q == 0.0:
                        continue
                    hm = Hs[_HMAXP, ho + j]
                    f = q * Hs[_ABSA, ho + j]
                    nv = GP[i, j] + f
                    GP[i, j] = nv
                    E += (g * q + 2.0 * U * (abs(f) + abs(nv))) * hm
                    bj = Hs[_ABSB, ho + j]
                    if bj != 0.0:
                        cs += q * bj
                err = up(err + up(E * (1.0 + 2.0 * g)))
                const[i] = up(const[i] + up(cs * (1.0 + 2.0 * g)))
            slack[i] = up(slack[i] + err)
    if use_n:
        GN = _dot_cols(FN, W0[a:b].reshape((n_out, n_in)))
        aF = np.abs(FN)
        e1 = np.dot(aF, Zs[_VN, zo:zo + n_out].copy())
        b0s = b0[zo:zo + n_out].copy()
        cb = np.dot(FN, b0s)
        cba = np.dot(aF, np.abs(b0s))
        uf = _underflow(Hs[_HMAXN, ho:ho + n_in], n_out)
        for i in range(rows):
            err = up(up(up(e1[i] * (1.0 + g)) * g) + up(up(cba[i] * (1.0 + g)) * g) + uf)
            slack[i] = up(slack[i] + err)
            const[i] = up(const[i] + cb[i])
    return GP, GN


@_jit(f"f8[::1]({_M}, {_M}, f8[::1], f8[::1], f8[::1], f8[::1])")
def _concretize(GP, GN, l0, u0, const, slack):
    """``max over x in [l0, u0]`` of ``(GP + GN) x + const + slack``, rounded up."""
    rows, n = GP.shape
    g = gam(n)
    ub = np.empty(rows)
    for i in range(rows):
        E = 0.0
        tot = 0.0
        for j in range(n):
            G = GP[i, j] + GN[i, j]
            if G == 0.0:
                continue
            E += abs(G) * max(abs(l0[j]), abs(u0[j]))
            tot = up(tot + max(up(G * l0[j]), up(G * u0[j])))
        r = up(up(const[i] + up(slack[i] + up(up(E * (1.0 + g)) * (2.0 * U)))) + tot)
        ub[i] = r if r == r else INF
    return ub


@_jit(f"f8[::1](i8, {_M}, {_M}, b1, b1, b1, i8, f8[::1], f8[::1], {_M}, {_M}, " + _NET_SIG + ")")
def _backsub(kz, FP, FN, use_p, use_n, mix, noise_mode, l0, u0, Zs, Hs, widths, woff, noff, acts, hasD, alphas,
             W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Upper bounds of ``FP z'^(kz) + FN z^(kz)`` (one per row) over the cell, by back-substitution
    down to the shared input ``x``."""
    rows = FP.shape[0]
    const = np.zeros(rows)
    slack = np.zeros(rows)
    n0 = widths[0]
    k = kz
    while True:
        GP, GN = _lin_back(k, FP, FN, use_p, use_n, noise_mode, const, slack, Zs, Hs, widths, woff, noff, acts, hasD,
                           alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd)
        if k == 0:
            return _concretize(GP, GN, l0, u0, const, slack)
        FP, FN = _act_back(k - 1, GP, GN, use_p, use_n, mix, const, slack, Zs, Hs, n0, noff)
        k -= 1


@_jit(f"void(i8, {_M}, {_M}, {_M}, {_M}, {_M}, i8[::1], f8[::1], i8[::1])")
def _store_stats(k, ZNl, ZNh, ZPl, ZPh, Zs, acts, alphas, noff):
    """Relaxation lines, magnitudes and gaps of layer k (both networks) into ``Zs``."""
    zo = noff[k]
    m = ZNl.shape[1]
    code = acts[k]
    al = alphas[k]
    for j in range(m):
        J = zo + j
        Zs[_ZMAXN, J] = max(abs(ZNl[0, j]), abs(ZNh[0, j]))
        Zs[_ZMAXP, J] = max(abs(ZPl[0, j]), abs(ZPh[0, j]))
        lo, hi = ZNl[0, j], ZNh[0, j]
        sL, tL, sU, tU = relax(code, al, lo, min(max(hi, lo), INF))
        Zs[_SLN, J], Zs[_TLN, J], Zs[_SUN, J], Zs[_TUN, J] = sL, tL, sU, tU
        Zs[_GAPN, J] = max((sU - sL) * lo + tU - tL, (sU - sL) * hi + tU - tL)
        lo, hi = ZPl[0, j], max(ZPh[0, j], ZPl[0, j])
        sL, tL, sU, tU = relax(code, al, lo, hi)
        Zs[_SLP, J], Zs[_TLP, J], Zs[_SUP, J], Zs[_TUP, J] = sL, tL, sU, tU
        Zs[_GAPP, J] = max((sU - sL) * lo + tU - tL, (sU - sL) * hi + tU - tL)


@_jit(f"void(i8, i8, {_M}, {_M}, {_M}, {_M}, {_M}, {_M}, " + _NET_SIG + ")")
def _store_h(k, ho, HNl, HNh, HPl, HPh, Zs, Hs, widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT,
             aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Magnitudes and |h'| lines of ``h^(k)`` and the products ``|W| |h|max`` of layer k."""
    n_in = widths[k]
    n_out = widths[k + 1]
    a, b = woff[k], woff[k + 1]
    zo = noff[k]
    for j in range(n_in):
        Hs[_HMAXN, ho + j] = max(abs(HNl[0, j]), abs(HNh[0, j]))
        Hs[_HMAXP, ho + j] = max(abs(HPl[0, j]), abs(HPh[0, j]))
        aa, bb = _abs_line(HPl[0, j], HPh[0, j])
        Hs[_ABSA, ho + j] = aa
        Hs[_ABSB, ho + j] = bb
    g = gam(n_in)
    vN = np.dot(Hs[_HMAXN, ho:ho + n_in].copy(), aW0T[a:b].reshape((n_in, n_out)))
    vP = np.dot(Hs[_HMAXP, ho:ho + n_in].copy(), aWcT[a:b].reshape((n_in, n_out)))
    rP = np.dot(Hs[_HMAXP, ho:ho + n_in].copy(), RT[a:b].reshape((n_in, n_out)))
    for j in range(n_out):
        Zs[_VN, zo + j] = up(vN[j] * (1.0 + 2.0 * g))
        Zs[_VP, zo + j] = up(vP[j] * (1.0 + 2.0 * g))
        Zs[_RP, zo + j] = up(up(rP[j] * (1.0 + 2.0 * g)) + rb[zo + j])


@_jit("i8[::1](i8, f8[::1], f8[::1], b1)")
def _unstable(code, lo, hi, refine_all):
    """Indices of neurons to refine by CROWN: all with ``hi > lo`` (``refine_all``), else those
    whose linear relaxation on ``[lo, hi]`` is not exact."""
    m = lo.shape[0]
    keep = np.zeros(m, dtype=np.bool_)
    for j in range(m):
        l, u = lo[j], hi[j]
        if refine_all:
            keep[j] = u > l
        elif code == RELU or code == LEAKY:
            keep[j] = l < 0.0 < u
        elif code == HARDTANH:
            keep[j] = (l < -1.0 < u) or (l < 1.0 < u)
        elif code == IDENTITY:
            keep[j] = False
        else:
            keep[j] = u > l
    return np.nonzero(keep)[0].astype(np.int64)


@_jit("i8[::1](i8, f8[::1], f8[::1], f8[::1], f8[::1])")
def _dz_rows(code, nl, nh, pl, ph):
    """Indices of the neurons whose difference ``dz`` is refined by CROWN: all but those on which
    both networks are in the same linear piece of a piecewise-linear activation (there
    ``dh = slope * dz`` and every relaxation of the neuron is exact, so its ``dz`` interval is
    never used)."""
    m = nl.shape[0]
    keep = np.ones(m, dtype=np.bool_)
    if code == RELU or code == LEAKY:
        for j in range(m):
            keep[j] = not ((nl[j] >= 0.0 and pl[j] >= 0.0) or (nh[j] <= 0.0 and ph[j] <= 0.0))
    elif code == HARDTANH:
        for j in range(m):
            lo = min(nl[j], pl[j])
            hi = max(nh[j], ph[j])
            keep[j] = not ((lo >= -1.0 and hi <= 1.0) or hi <= -1.0 or lo >= 1.0)
    elif code == IDENTITY:
        keep[:] = False
    return np.nonzero(keep)[0].astype(np.int64)


@_jit("void(f8[::1], f8[::1], f8[::1], f8[::1], f8[:], f8[:], b1[::1])")
def _clip_nominal(nl, nh, dl, dh, clo, chi, infeas):
    """Intersect the nominal bounds ``[nl, nh]`` in place with ``[clo - dh, chi - dl]``, where
    ``[clo, chi]`` clips the perturbed ``z'`` (a phase split, or the bounds of a parent cell, see
    :meth:`hybridq.bab.engine.CellEngine.split`) and ``[dl, dh]`` encloses ``dz = z' - z``: ``z =
    z' - dz`` (ends rounded outward).  An empty result proves that no input of the cell meets the
    clips (``infeas[0]`` set; the bounds are then left as they were)."""
    for j in range(nl.shape[0]):
        lo = nl[j]
        hi = nh[j]
        if clo[j] > -INF:
            v = dn(clo[j] - dh[j])
            if v == v and v > lo:
                lo = v
        if chi[j] < INF:
            v = up(chi[j] - dl[j])
            if v == v and v < hi:
                hi = v
        if lo > hi:
            infeas[0] = True
        else:
            nl[j] = lo
            nh[j] = hi


@_jit("i8[::1](i8[::1], f8[::1], f8[::1], f8[::1], f8[::1], f8)")
def _wide_dz(idx, nl, nh, dl, dh, ratio):
    """The entries of ``idx`` whose difference interval ``[dl, dh]`` is wider than ``ratio`` times
    the nominal interval ``[nl, nh]``: elsewhere ``z' in z + dz`` (after the ``dz`` rows) is about
    as tight as a CROWN pass of the perturbed network, which is then skipped (``inter_mode`` 3)."""
    keep = np.zeros(idx.shape[0], dtype=np.bool_)
    for t in range(idx.shape[0]):
        j = idx[t]
        keep[t] = not (dh[j] - dl[j] <= ratio * (nh[j] - nl[j]))
    return idx[keep]


@_jit(f"{_M}(i8[::1], i8)")
def _unit_rows(idx, n):
    """Rows ``[e_idx; -e_idx]``: objectives for the upper and (negated) lower bounds."""
    q = idx.shape[0]
    F = np.zeros((2 * q, n))
    for t in range(q):
        F[t, idx[t]] = 1.0
        F[q + t, idx[t]] = -1.0
    return F


_LP_OUT = ", ".join([_M] * 10 + ["b1[::1]", _M, _M])


_LC_SIG = (f"void(i8, {_M}, {_M}, {_M}, {_M}, {_M}, i8, b1, i8, b1, f8, " + ", ".join([_M] * 12 + ["b1[::1]"])
           + ", " + _NET_SIG + ")")


@_jit(_LC_SIG)
def _linear_cell(c, XL, XH, CLO, CHI, A, noise_mode, mix, inter_mode, refine_all, dz_ratio, NL, NH, PL, PH, oNl, oNh, oPl, oPh,
                 oDl, oDh, aL, aH, infeas, widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT,
                 DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Method ``linear`` for cell ``c`` (see :func:`linear_pass`); writes row ``c`` of the outputs."""
    L = widths.shape[0] - 1
    N = noff[L]
    n0 = widths[0]
    nL = widths[L]
    m = A.shape[0]
    Zs = np.zeros((_NZS, N))
    Hs = np.zeros((4, n0 + N))
    l0 = XL[c].copy()
    u0 = XH[c].copy()
    HNl = XL[c:c + 1].copy()
    HNh = XH[c:c + 1].copy()
    HPl = HNl.copy()
    HPh = HNh.copy()
    DHl = np.zeros(HNl.shape)
    DHh = np.zeros(HNl.shape)
    inf_c = np.zeros(1, dtype=np.bool_)
    for k in range(L):
        ho = 0 if k == 0 else n0 + noff[k - 1]
        o0, o1 = noff[k], noff[k + 1]
        nk = o1 - o0
        _store_h(k, ho, HNl, HNh, HPl, HPh, Zs, Hs, widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc,
                 WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd)
        ZNl, ZNh, ZPl, ZPh, DZl, DZh = _affine_step(k, HNl, HNh, HPl, HPh, DHl, DHh, True, widths, woff, noff,
                                                    acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT,
                                                    aDT, RdT, b0, bc, rb, db, rbd)
        # clips on z' (phase splits, or bounds a parent cell proved): z = z' - dz lies in clip - dz
        _clip_nominal(ZNl[0], ZNh[0], DZl[0], DZh[0], CLO[c, o0:o1], CHI[c, o0:o1], inf_c)
        if k >= 1:
            code = acts[k]
            # nominal: refine only neurons whose relaxation is not exact (CROWN on those rows)
            idx = _unstable(code, ZNl[0], ZNh[0], refine_all)
            if idx.size > 0:
                FN = _unit_rows(idx, nk)
                ub = _backsub(k, np.zeros(FN.shape), FN, False, True, False, noise_mode, l0, u0, Zs, Hs, widths,
                              woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT,
                              b0, bc, rb, db, rbd)
                q = idx.size
                for t in range(q):
                    j = idx[t]
                    ZNh[0, j] = min(ZNh[0, j], ub[t])
                    ZNl[0, j] = max(ZNl[0, j], -ub[q + t])
            pl = np.empty(nk)
            ph = np.empty(nk)
            if inter_mode >= 1:
                for j in range(nk):
                    pl[j] = max(ZPl[0, j], dn(ZNl[0, j] + DZl[0, j]), CLO[c, o0 + j])
                    ph[j] = min(ZPh[0, j], up(ZNh[0, j] + DZh[0, j]), CHI[c, o0 + j])
            if inter_mode >= 1:
                idx = _unstable(code, pl, ph, refine_all)
                if inter_mode == 3:
                    idx = _wide_dz(idx, ZNl[0], ZNh[0], DZl[0], DZh[0], dz_ratio)
                if idx.size > 0:
                    FP = _unit_rows(idx, nk)
                    ub = _backsub(k, FP, np.zeros(FP.shape), True, False, False, noise_mode, l0, u0, Zs, Hs,
                                  widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT,
                                  aDT, RdT, b0, bc, rb, db, rbd)
                    q = idx.size
                    for t in range(q):
                        j = idx[t]
                        ZPh[0, j] = min(ZPh[0, j], ub[t])
                        ZPl[0, j] = max(ZPl[0, j], -ub[q + t])
            if inter_mode >= 2:
                for j in range(nk):  # z' after its own refinement
                    pl[j] = max(pl[j], ZPl[0, j])
                    ph[j] = min(ph[j], ZPh[0, j])
                idx = _dz_rows(code, ZNl[0], ZNh[0], pl, ph)
                q = idx.size
                if q > 0:
                    FP = _unit_rows(idx, nk)
                    ub = _backsub(k, FP, -FP, True, True, mix, noise_mode, l0, u0, Zs, Hs, widths, woff, noff, acts,
                                  hasD, alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd)
                    for t in range(q):
                        j = idx[t]
                        DZh[0, j] = min(DZh[0, j], ub[t])
                        DZl[0, j] = max(DZl[0, j], -ub[q + t])
        _combine(ZNl, ZNh, ZPl, ZPh, DZl, DZh, CLO[c:c + 1, o0:o1], CHI[c:c + 1, o0:o1], True, inf_c)
        NL[c, o0:o1] = ZNl[0]
        NH[c, o0:o1] = ZNh[0]
        PL[c, o0:o1] = ZPl[0]
        PH[c, o0:o1] = ZPh[0]
        _store_stats(k, ZNl, ZNh, ZPl, ZPh, Zs, acts, alphas, noff)
        HNl, HNh, HPl, HPh, DHl, DHh = _act_step(acts[k], alphas[k], ZNl, ZNh, ZPl, ZPh, DZl, DZh, True)
        for j in range(nk):
            Zs[_DHL, o0 + j] = DHl[0, j]
            Zs[_DHH, o0 + j] = DHh[0, j]
        if mix:
            _store_dlines(k, ZNl, ZNh, ZPl, ZPh, DZl, DZh, Zs, acts, alphas, noff)
        if k == L - 1:
            for j in range(nk):
                Hs[_HMAXN, n0 + o0 + j] = max(abs(HNl[0, j]), abs(HNh[0, j]))
                Hs[_HMAXP, n0 + o0 + j] = max(abs(HPl[0, j]), abs(HPh[0, j]))
    # joint output rows: A h', -A h', (h' - h), (h - h')
    rows = 2 * m + 2 * nL
    GP = np.zeros((rows, nL))
    GN = np.zeros((rows, nL))
    for i in range(m):
        for j in range(nL):
            GP[i, j] = A[i, j]
            GP[m + i, j] = -A[i, j]
    for j in range(nL):
        GP[2 * m + j, j] = 1.0
        GN[2 * m + j, j] = -1.0
        GP[2 * m + nL + j, j] = -1.0
        GN[2 * m + nL + j, j] = 1.0
    const = np.zeros(rows)
    slack = np.zeros(rows)
    FP, FN = _act_back(L - 1, GP, GN, True, True, mix, const, slack, Zs, Hs, n0, noff)
    ub = _backsub(L - 1, FP, FN, True, True, mix, noise_mode, l0, u0, Zs, Hs, widths, woff, noff, acts, hasD,
                  alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd)
    for i in range(rows):
        ub[i] = up(ub[i] + up(const[i] + slack[i]))
    for i in range(m):
        aH[c, i] = ub[i]
        aL[c, i] = -ub[m + i]
    for j in range(nL):
        DHh[0, j] = min(DHh[0, j], ub[2 * m + j])
        DHl[0, j] = max(DHl[0, j], -ub[2 * m + nL + j])
    oNl[c] = HNl[0]
    oNh[c] = HNh[0]
    oPl[c] = HPl[0]
    oPh[c] = HPh[0]
    oDl[c] = DHl[0]
    oDh[c] = DHh[0]
    infeas[c] = inf_c[0]


@_jit(f"Tuple(({_LP_OUT}))({_M}, {_M}, {_M}, {_M}, {_M}, i8, b1, i8, b1, f8, " + _NET_SIG + ")", parallel=True, entry=True)
def linear_pass(XL, XH, CLO, CHI, A, noise_mode, mix, inter_mode, refine_all, dz_ratio, widths, woff, noff, acts, hasD, alphas,
                W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Method ``linear`` for a batch of cells (parallel over cells).

    Per cell and layer: interval and difference images (as :func:`interval_pass`), the nominal
    pre-activations tightened by CROWN back-substitution (layers >= 1); ``inter_mode`` >= 1 also
    the perturbed ones (noise substituted), >= 2 also the differences ``dz`` (joint; only where
    the two networks are not in the same linear piece, :func:`_dz_rows`); only the
    neurons whose relaxation is not exact unless ``refine_all`` (tighter ``dh`` intervals); then
    ``z' ∩= (z + dz) ∩ clips``.  At the end one joint back-substitution bounds the rows of
    ``A h'_L`` (perturbed, noise substituted) and the deviation ``h'_L - h_L`` (both networks,
    shared ``x``).

    Returns the outputs of :func:`interval_pass` followed by ``aL, aH (n, m)``: bounds of
    ``A h'_L``.  The deviation outputs are already intersected with the joint bounds.
    """
    n = XL.shape[0]
    L = widths.shape[0] - 1
    NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas = _alloc_out(n, noff[L], widths[L])
    aL = np.empty((n, A.shape[0]))
    aH = np.empty((n, A.shape[0]))
    for c in prange(n):
        _linear_cell(c, XL, XH, CLO, CHI, A, noise_mode, mix, inter_mode, refine_all, dz_ratio, NL, NH, PL, PH, oNl, oNh, oPl,
                     oPh, oDl, oDh, aL, aH, infeas, widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT,
                     aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd)
    return NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas, aL, aH


@_jit(f"Tuple(({_LP_OUT}))({_M}, {_M}, {_M}, {_M}, {_M}, i8, b1, i8, b1, f8, " + _NET_SIG + ")", entry=True)
def linear_pass_serial(XL, XH, CLO, CHI, A, noise_mode, mix, inter_mode, refine_all, dz_ratio, widths, woff, noff, acts, hasD,
                       alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Serial :func:`linear_pass` (small batches: no thread wake-up cost); same body (:func:`_linear_cell`)."""
    n = XL.shape[0]
    L = widths.shape[0] - 1
    NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas = _alloc_out(n, noff[L], widths[L])
    aL = np.empty((n, A.shape[0]))
    aH = np.empty((n, A.shape[0]))
    for c in range(n):
        _linear_cell(c, XL, XH, CLO, CHI, A, noise_mode, mix, inter_mode, refine_all, dz_ratio, NL, NH, PL, PH, oNl, oNh, oPl,
                     oPh, oDl, oDh, aL, aH, infeas, widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT,
                     aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd)
    return NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas, aL, aH
