"""Every numba kernel of the bound pass (DESIGN.md §3), outward rounded.

All compiled code of hybridq lives here, behind one decorator (:func:`_jit`): explicit float64
signatures, ``cache=True``, ``error_model="numpy"``, never ``fastmath``.  Kernels take contiguous
arrays and scalars, never raise and never touch Python objects; :mod:`hybridq.bounds` validates
every argument first.

Floating-point soundness
------------------------
Every returned bound encloses the exact real value.  Three devices are used:

* single operations are rounded outward with ``nextafter`` (:func:`up`, :func:`dn`): for a
  round-to-nearest result ``v = fl(a op b)`` the exact value lies in ``[dn(v), up(v)]``;
* a dot product (or matrix product: ``np.dot`` -> BLAS, any summation order, with or without FMA) of
  length ``n`` is off by at most ``gamma_n * sum_i |a_i||b_i| + n*eta`` with
  ``gamma_n = n u / (1 - n u)``, ``u = 2^-53`` and ``eta = 2^-1074`` for underflow
  (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.1 eq. (3.4)-(3.5) and §2.1
  for underflow); :func:`gam` returns ``gamma_{n+2}`` rounded up, a margin for the few extra
  operations that follow;
* libm ``exp`` / ``tanh`` are not correctly rounded: sigmoid / tanh values and derivatives get 16
  ulps of relative slack plus ``eta`` (glibc documents <= 2 ulps for these functions).

Linear relaxations (CROWN-style) choose their slopes heuristically but compute every intercept
rigorously as an outward-rounded bound of ``max (f(z) - s z)`` (upper line) or ``min`` (lower line)
over ``[l, u]``: at the break points for piecewise-linear ``f``; for sigmoid / tanh (convex on
``z <= 0``, concave on ``z >= 0``) at the endpoints of the part where ``f - s z`` is convex (max) /
concave (min), and by the tangent inequality with an enclosure of the derivative on the other part.
So a slope that is off by rounding costs tightness, never soundness.

Back-substitution keeps, per objective row, a float constant and a non-negative *slack* that
bounds every rounding error so far (coefficient products and matrix products times the largest
magnitude of the variable they multiply); the final upper bound is ``up(const + slack + ...)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["ACT_CODES", "interval_pass", "interval_pass_serial", "linear_pass", "linear_pass_serial", "score_sigmoid",
           "score_softmax", "relax", "f_lo", "f_hi", "dprime_range", "sig_fwd"]

U = 2.0 ** -53          # unit roundoff of float64
ETA = 5e-324            # 2^-1074, smallest subnormal
FSLACK = 16.0 * U       # relative slack for libm exp/tanh based values
INF = np.inf

RELU, IDENTITY, LEAKY, HARDTANH, SIGMOID, TANH = 0, 1, 2, 3, 4, 5
#: activation name -> kernel code
ACT_CODES = {"relu": RELU, "identity": IDENTITY, "leaky_relu": LEAKY, "hardtanh": HARDTANH,
             "sigmoid": SIGMOID, "tanh": TANH}


def _jit(sig, parallel=False):
    """The project decorator: explicit signature, cached, numpy error model, no fastmath."""
    return njit(sig, cache=True, error_model="numpy", fastmath=False, parallel=parallel, nogil=True)


# ----------------------------------------------------------------------------- scalar helpers
@_jit("f8(f8)")
def up(x):
    """A float ``>= nextafter(x, +inf)`` (one or two ulps up), so ``>=`` the exact value of an
    operation whose round-to-nearest result is ``x``.  Proof: ``d = |x| 2^-52 >= ulp(x)`` (exact
    scaling; where it underflows the final ``+ eta`` is the subnormal spacing), so ``x + d`` lies at
    or above the next float and rounding is monotone.  Cheaper than libm ``nextafter``."""
    if x == -INF or x != x:
        return x
    return (x + abs(x) * 2.220446049250313e-16) + ETA


@_jit("f8(f8)")
def dn(x):
    """A float ``<= nextafter(x, -inf)`` (mirror of :func:`up`)."""
    if x == INF or x != x:
        return x
    return (x - abs(x) * 2.220446049250313e-16) - ETA


@_jit("f8(i8)")
def gam(n):
    """``gamma_{n+2}`` (Higham §3.1) rounded up."""
    nu = (n + 2) * U
    return up(up(nu) / dn(1.0 - nu))


@_jit("f8(i8, f8)")
def sig_fwd(code, z):
    """Float evaluation of a smooth activation (sigmoid / tanh); accurate to a few ulps."""
    if code == SIGMOID:
        if z >= 0.0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)
    return math.tanh(z)


@_jit("f8(i8, f8)")
def _dprime(code, z):
    """Float derivative of sigmoid / tanh (relative error a few ulps, no cancellation)."""
    if code == SIGMOID:
        e = math.exp(-abs(z))
        return e / ((1.0 + e) * (1.0 + e))
    e = math.exp(-2.0 * abs(z))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


@_jit("f8(i8, f8, f8)")
def f_lo(code, alpha, z):
    """A lower bound of ``act(z)`` (exact real value)."""
    if code == RELU:
        return z if z > 0.0 else 0.0
    if code == IDENTITY:
        return z
    if code == LEAKY:
        return z if z >= 0.0 else dn(alpha * z)
    if code == HARDTANH:
        return min(max(z, -1.0), 1.0)
    if z == -INF:
        return 0.0 if code == SIGMOID else -1.0
    if z == INF:
        return dn(1.0)
    v = sig_fwd(code, z)
    lo = dn(dn(v - abs(v) * FSLACK) - ETA)
    return max(lo, 0.0 if code == SIGMOID else -1.0)


@_jit("f8(i8, f8, f8)")
def f_hi(code, alpha, z):
    """An upper bound of ``act(z)`` (exact real value)."""
    if code == RELU:
        return z if z > 0.0 else 0.0
    if code == IDENTITY:
        return z
    if code == LEAKY:
        return z if z >= 0.0 else up(alpha * z)
    if code == HARDTANH:
        return min(max(z, -1.0), 1.0)
    if z == INF:
        return 1.0
    if z == -INF:
        return up(0.0) if code == SIGMOID else up(-1.0)
    v = sig_fwd(code, z)
    return min(up(up(v + abs(v) * FSLACK) + ETA), 1.0)


@_jit("f8(i8, f8)")
def _dp_lo(code, z):
    v = _dprime(code, z)
    return max(dn(dn(v - v * FSLACK) - ETA), 0.0)


@_jit("f8(i8, f8)")
def _dp_hi(code, z):
    v = _dprime(code, z)
    return up(up(v + v * FSLACK) + ETA)


@_jit("UniTuple(f8, 2)(i8, f8, f8, f8)")
def dprime_range(code, alpha, a, b):
    """Enclosure ``[dmin, dmax]`` of the difference quotients ``(f(z') - f(z)) / (z' - z)`` for
    ``z, z'`` in ``[a, b]``: the range of the (generalised) derivative on ``[a, b]``
    (mean value theorem; for the monotone piecewise-linear activations the convex hull of slopes)."""
    if code == IDENTITY:
        return 1.0, 1.0
    if code == RELU:
        if a >= 0.0:
            return 1.0, 1.0
        if b <= 0.0:
            return 0.0, 0.0
        return 0.0, 1.0
    if code == LEAKY:
        if a >= 0.0:
            return 1.0, 1.0
        if b <= 0.0:
            return alpha, alpha
        return min(alpha, 1.0), 1.0
    if code == HARDTANH:
        if a >= -1.0 and b <= 1.0:
            return 1.0, 1.0
        if b <= -1.0 or a >= 1.0:
            return 0.0, 0.0
        return 0.0, 1.0
    # sigmoid / tanh: derivative even, unimodal with its maximum at 0
    if a <= 0.0 <= b:
        dmax = _dp_hi(code, 0.0)
    else:
        dmax = _dp_hi(code, min(abs(a), abs(b)))
    if a == -INF or b == INF:
        dmin = 0.0
    else:
        dmin = _dp_lo(code, max(abs(a), abs(b)))
    return dmin, dmax


# ------------------------------------------------------------------- rigorous line intercepts
@_jit("f8(i8, f8, f8, f8)")
def _g_hi(code, alpha, s, z):
    """Upper bound of ``act(z) - s z``."""
    return up(f_hi(code, alpha, z) - dn(s * z))


@_jit("f8(i8, f8, f8, f8)")
def _g_lo(code, alpha, s, z):
    """Lower bound of ``act(z) - s z``."""
    return dn(f_lo(code, alpha, z) - up(s * z))


@_jit("f8(i8, f8, f8, f8, f8, b1)")
def _pwl_extreme(code, alpha, s, l, u, upper):
    """max (upper) / min (lower) of ``act(z) - s z`` on ``[l, u]`` for piecewise-linear ``act``,
    rounded outward: the extremes lie at the endpoints or the break points (0; -1 and 1)."""
    best = _g_hi(code, alpha, s, l) if upper else _g_lo(code, alpha, s, l)
    v = _g_hi(code, alpha, s, u) if upper else _g_lo(code, alpha, s, u)
    best = max(best, v) if upper else min(best, v)
    for p in (-1.0, 0.0, 1.0):
        if p == 0.0 and code == HARDTANH:
            continue
        if p != 0.0 and code != HARDTANH:
            continue
        if l < p < u:
            v = _g_hi(code, alpha, s, p) if upper else _g_lo(code, alpha, s, p)
            best = max(best, v) if upper else min(best, v)
    return best


@_jit("f8(i8, f8, f8, f8)")
def _solve_dprime(code, s, a, b):
    """Approximate point ``d`` in ``[a, b]`` (one sign of z) with ``f'(d) = s`` (bisection; only
    tightness depends on it)."""
    fa = _dprime(code, a)
    fb = _dprime(code, b)
    if (fa - s) * (fb - s) > 0.0:
        return a if abs(fa - s) < abs(fb - s) else b
    for _ in range(40):
        m = 0.5 * (a + b)
        if (_dprime(code, m) - s) * (fa - s) > 0.0:
            a = m
            fa = _dprime(code, a)
        else:
            b = m
    return 0.5 * (a + b)


@_jit("f8(i8, f8, f8, f8, f8, b1)")
def _tangent_extreme(code, s, a, b, d, upper):
    """Rigorous bound of max (upper, ``g`` concave) or min (lower, ``g`` convex) of
    ``g(z) = f(z) - s z`` on ``[a, b]`` via ``g(z) <= / >= g(d) + g'(d)(z - d)``, with ``g'(d)``
    enclosed in ``[f'_lo(d) - s, f'_hi(d) - s]``."""
    gl = dn(_dp_lo(code, d) - s)
    gh = up(_dp_hi(code, d) - s)
    ad = dn(a - d)
    bd = up(b - d)
    if upper:
        base = _g_hi(code, 0.0, s, d)
        ext = max(max(up(gl * ad), up(gl * bd)), max(up(gh * ad), up(gh * bd)))
        return up(base + ext)
    base = _g_lo(code, 0.0, s, d)
    ext = min(min(dn(gl * ad), dn(gl * bd)), min(dn(gh * ad), dn(gh * bd)))
    return dn(base + ext)


@_jit("f8(i8, f8, f8, f8, b1)")
def _s_extreme(code, s, l, u, upper):
    """max (upper) / min (lower) of ``f(z) - s z`` on ``[l, u]`` for sigmoid / tanh, rounded
    outward (f convex on z <= 0, concave on z >= 0)."""
    if upper:
        best = -INF
        if l <= 0.0:  # convex part: endpoints
            best = max(_g_hi(code, 0.0, s, l), _g_hi(code, 0.0, s, min(u, 0.0)))
        if u >= 0.0:  # concave part: tangent at the stationary point
            a = max(l, 0.0)
            d = _solve_dprime(code, s, a, u)
            best = max(best, _tangent_extreme(code, s, a, u, d, True))
        return best
    best = INF
    if u >= 0.0:  # concave part: endpoints
        best = min(_g_lo(code, 0.0, s, u), _g_lo(code, 0.0, s, max(l, 0.0)))
    if l <= 0.0:  # convex part
        b = min(u, 0.0)
        d = _solve_dprime(code, s, l, b)
        best = min(best, _tangent_extreme(code, s, l, b, d, False))
    return best


@_jit("UniTuple(f8, 4)(i8, f8, f8, f8)")
def relax(code, alpha, l, u):
    """Sound linear relaxation ``sL z + tL <= act(z) <= sU z + tU`` for every real ``z`` in
    ``[l, u]``; returns ``(sL, tL, sU, tU)``.

    Slopes: CROWN's choices (Zhang et al., "Efficient Neural Network Robustness Certification
    with General Activation Functions", NeurIPS 2018): chord on the convex (upper) / concave
    (lower) side, adaptive 0/1 slope for relu-like kinks, tangents for sigmoid / tanh (through
    the far endpoint when the interval spans 0).  Intercepts: rigorous (see the module docstring).
    """
    if code == IDENTITY:
        return 1.0, 0.0, 1.0, 0.0
    if not (u - l > 1e-290) or not (np.isfinite(l) and np.isfinite(u)):
        return 0.0, f_lo(code, alpha, l), 0.0, f_hi(code, alpha, u)
    w = u - l
    if code == RELU:
        if l >= 0.0:
            return 1.0, 0.0, 1.0, 0.0
        if u <= 0.0:
            return 0.0, 0.0, 0.0, 0.0
        sU = u / w
        sL = 1.0 if u >= -l else 0.0
    elif code == LEAKY:
        if l >= 0.0:
            return 1.0, 0.0, 1.0, 0.0
        if u <= 0.0:
            return alpha, 0.0, alpha, 0.0
        sU = (u - alpha * l) / w
        sL = alpha if -l > u else 1.0
    elif code == HARDTANH:
        if l >= -1.0 and u <= 1.0:
            return 1.0, 0.0, 1.0, 0.0
        if u <= -1.0:
            return 0.0, -1.0, 0.0, -1.0
        if l >= 1.0:
            return 0.0, 1.0, 0.0, 1.0
        fl_ = min(max(l, -1.0), 1.0)
        fu_ = min(max(u, -1.0), 1.0)
        chord = (fu_ - fl_) / w
        if u <= 1.0:      # convex on [l, u]
            sU = chord
            sL = 1.0 if (u + 1.0) >= (-1.0 - l) else 0.0
        elif l >= -1.0:   # concave on [l, u]
            sL = chord
            sU = 1.0 if (u - 1.0) <= (1.0 - l) else 0.0
        else:
            sU = 2.0 / w
            sL = 2.0 / w
    else:
        fl_ = sig_fwd(code, l)
        fu_ = sig_fwd(code, u)
        chord = (fu_ - fl_) / w
        if u <= 0.0:
            sU = chord
            sL = _dprime(code, 0.5 * (l + u))
        elif l >= 0.0:
            sL = chord
            sU = _dprime(code, 0.5 * (l + u))
        else:
            if _dprime(code, u) >= chord:
                sU = chord
            else:  # tangent at d in [0, u] through (l, f(l))
                a, b = 0.0, u
                for _ in range(30):
                    d = 0.5 * (a + b)
                    if sig_fwd(code, d) + _dprime(code, d) * (l - d) >= fl_:
                        b = d
                    else:
                        a = d
                sU = _dprime(code, b)
            if _dprime(code, l) >= chord:
                sL = chord
            else:  # tangent at d in [l, 0] through (u, f(u))
                a, b = l, 0.0
                for _ in range(30):
                    d = 0.5 * (a + b)
                    if sig_fwd(code, d) + _dprime(code, d) * (u - d) <= fu_:
                        a = d
                    else:
                        b = d
                sL = _dprime(code, a)
        return sL, _s_extreme(code, sL, l, u, False), sU, _s_extreme(code, sU, l, u, True)
    return sL, _pwl_extreme(code, alpha, sL, l, u, False), sU, _pwl_extreme(code, alpha, sU, l, u, True)


@_jit("UniTuple(f8, 2)(f8, f8)")
def _abs_line(l, u):
    """Upper line ``|h| <= a h + b`` on ``[l, u]`` (chord; rigorous intercept, |h| - a h convex)."""
    if l >= 0.0:
        return 1.0, 0.0
    if u <= 0.0:
        return -1.0, 0.0
    if not (np.isfinite(l) and np.isfinite(u)):
        return 0.0, INF
    a = (u + l) / (u - l)
    a = min(max(a, -1.0), 1.0)
    b = max(up(up(1.0 + a) * (-l)), up(up(1.0 - a) * u))
    return a, b


# ------------------------------------------------------------------------ network arrays
# A packed network (see hybridq.bounds.PackedNetwork) is passed as the argument list NET:
#   widths (L+1,) i8, woff (L+1,) i8 offsets of layer k's block in the flat weight arrays,
#   noff (L+1,) i8 offsets of z^(k) in the concatenated neuron arrays, acts (L,) i8, hasD (L,) i8,
#   alphas (L,) f8, W0 / Wc / R (row-major (out, in) blocks), W0T / aW0T / WcT / aWcT / RT /
#   DT / aDT / RdT ((in, out) blocks: transposes, |.| of the transposes), b0 / bc / rb / db / rbd.
# Layer k (0-based): z^(k) = W_k h^(k) + b_k, h^(k+1) = act_k(z^(k)), h^(0) = x (normalized).
# Perturbed: W' in [Wc - R, Wc + R], b' in [bc - rb, bc + rb].  Difference form (against theta0):
# W' = W0 + D + d with |d| <= Rd (Rd = R + rounding error of D = fl(Wc - W0)), likewise b.
_NET_NAMES = ("widths", "woff", "noff", "acts", "hasD", "alphas", "W0", "W0T", "aW0T", "Wc", "WcT",
              "aWcT", "R", "RT", "DT", "aDT", "RdT", "b0", "bc", "rb", "db", "rbd")
_NET_SIG = "i8[::1], i8[::1], i8[::1], i8[::1], i8[::1]" + ", f8[::1]" * 17
_M = "f8[:, ::1]"


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


_A = "f8[:, :]"


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


@_jit(f"Tuple(({_IP_OUT}))({_M}, {_M}, {_M}, {_M}, b1, i8, " + _NET_SIG + ")", parallel=True)
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
    N = noff[L]
    nL = widths[L]
    NL = np.empty((n, N))
    NH = np.empty((n, N))
    PL = np.empty((n, N))
    PH = np.empty((n, N))
    oNl = np.empty((n, nL))
    oNh = np.empty((n, nL))
    oPl = np.empty((n, nL))
    oPh = np.empty((n, nL))
    oDl = np.empty((n, nL))
    oDh = np.empty((n, nL))
    infeas = np.zeros(n, dtype=np.bool_)
    nb = (n + block - 1) // block
    for bi in prange(nb):
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
    return NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas


@_jit(f"Tuple(({_IP_OUT}))({_M}, {_M}, {_M}, {_M}, b1, i8, " + _NET_SIG + ")")
def interval_pass_serial(XL, XH, CLO, CHI, do_diff, block, widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T,
                         Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Serial :func:`interval_pass` (small batches: no thread wake-up cost)."""
    n = XL.shape[0]
    L = widths.shape[0] - 1
    N = noff[L]
    nL = widths[L]
    NL = np.empty((n, N))
    NH = np.empty((n, N))
    PL = np.empty((n, N))
    PH = np.empty((n, N))
    oNl = np.empty((n, nL))
    oNh = np.empty((n, nL))
    oPl = np.empty((n, nL))
    oPh = np.empty((n, nL))
    oDl = np.empty((n, nL))
    oDh = np.empty((n, nL))
    infeas = np.zeros(n, dtype=np.bool_)
    nb = (n + block - 1) // block
    for bi in range(nb):
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
    return NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas




# ------------------------------------------------------------------------ output transforms
@_jit(f"UniTuple({_M}, 4)({_M}, {_M}, {_M}, {_M}, {_M}, {_M})")
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


@_jit("f8(f8)")
def _exp_lo(v):
    if v == -INF or v != v:
        return 0.0
    e = math.exp(dn(v))
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


@_jit(f"UniTuple({_M}, 4)({_M}, {_M}, {_M}, {_M}, {_M}, {_M})")
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


# --------------------------------------------------------------- linear relaxation (CROWN)
# Per-cell work arrays: Zs (17, N) at z-level, Hs (4, n0 + N) at h-level (h^(0) = x first).
_ZMAXN, _ZMAXP, _SLN, _TLN, _SUN, _TUN, _GAPN, _SLP, _TLP, _SUP, _TUP, _GAPP, _DHL, _DHH, _VN, _VP, _RP = range(17)
_HMAXN, _HMAXP, _ABSA, _ABSB = range(4)


@_jit(f"UniTuple({_M}, 2)(i8, {_M}, {_M}, b1, b1, b1, f8[::1], f8[::1], {_M}, {_M}, i8, i8[::1])")
def _act_back(k, GP, GN, use_p, use_n, mix, const, slack, Zs, Hs, n0, noff):
    """Coefficients on ``h'^(k+1), h^(k+1)`` -> on ``z'^(k), z^(k)`` through the relaxations of
    layer k's activation (upper bound of the objective).  Per neuron: relax both networks
    (option A), or write ``gp h' + gn h = (gp+gn) h + gp dh`` (B) / ``(gp+gn) h' - gn dh`` (C) and
    bound the ``dh`` term by its interval, whichever has the smaller estimated slack."""
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
                if cB < cA and cB <= cC:
                    opt = 1
                elif cC < cA:
                    opt = 2
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
                if opt == 1:
                    w = gp
                    net = 0
                else:
                    w = -gn
                    net = 1
                if w != 0.0:
                    cv = max(w * Zs[_DHL, J], w * Zs[_DHH, J])
                    cval += cv
                    cabs += abs(cv)
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
                    if net == 0:
                        FN[i, j] = f
                    else:
                        FP[i, j] = f
                    if t != 0.0:
                        cv = sg * t
                        cval += cv
                        cabs += abs(cv)
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


_LC_SIG = (f"void(i8, {_M}, {_M}, {_M}, {_M}, {_M}, i8, b1, i8, b1, " + ", ".join([_M] * 12 + ["b1[::1]"])
           + ", " + _NET_SIG + ")")


@_jit(_LC_SIG)
def _linear_cell(c, XL, XH, CLO, CHI, A, noise_mode, mix, inter_mode, refine_all, NL, NH, PL, PH, oNl, oNh, oPl, oPh,
                 oDl, oDh, aL, aH, infeas, widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT,
                 DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Method ``linear`` for cell ``c`` (see :func:`linear_pass`); writes row ``c`` of the outputs."""
    L = widths.shape[0] - 1
    N = noff[L]
    n0 = widths[0]
    nL = widths[L]
    m = A.shape[0]
    Zs = np.zeros((17, N))
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
            if inter_mode >= 1:
                pl = np.empty(nk)
                ph = np.empty(nk)
                for j in range(nk):
                    pl[j] = max(ZPl[0, j], dn(ZNl[0, j] + DZl[0, j]), CLO[c, o0 + j])
                    ph[j] = min(ZPh[0, j], up(ZNh[0, j] + DZh[0, j]), CHI[c, o0 + j])
                idx = _unstable(code, pl, ph, refine_all)
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
                FP = _unit_rows(np.arange(nk), nk)
                ub = _backsub(k, FP, -FP, True, True, mix, noise_mode, l0, u0, Zs, Hs, widths, woff, noff, acts,
                              hasD, alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd)
                for j in range(nk):
                    DZh[0, j] = min(DZh[0, j], ub[j])
                    DZl[0, j] = max(DZl[0, j], -ub[nk + j])
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


@_jit(f"Tuple(({_LP_OUT}))({_M}, {_M}, {_M}, {_M}, {_M}, i8, b1, i8, b1, " + _NET_SIG + ")", parallel=True)
def linear_pass(XL, XH, CLO, CHI, A, noise_mode, mix, inter_mode, refine_all, widths, woff, noff, acts, hasD, alphas,
                W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Method ``linear`` for a batch of cells (parallel over cells).

    Per cell and layer: interval and difference images (as :func:`interval_pass`), the nominal
    pre-activations tightened by CROWN back-substitution (layers >= 1); ``inter_mode`` >= 1 also
    the perturbed ones (noise substituted), >= 2 also the differences ``dz`` (joint); only the
    neurons whose relaxation is not exact unless ``refine_all`` (tighter ``dh`` intervals); then
    ``z' ∩= (z + dz) ∩ clips``.  At the end one joint back-substitution bounds the rows of
    ``A h'_L`` (perturbed, noise substituted) and the deviation ``h'_L - h_L`` (both networks,
    shared ``x``).

    Returns the outputs of :func:`interval_pass` followed by ``aL, aH (n, m)``: bounds of
    ``A h'_L``.  The deviation outputs are already intersected with the joint bounds.
    """
    n = XL.shape[0]
    L = widths.shape[0] - 1
    N = noff[L]
    n0 = widths[0]
    nL = widths[L]
    m = A.shape[0]
    NL = np.empty((n, N))
    NH = np.empty((n, N))
    PL = np.empty((n, N))
    PH = np.empty((n, N))
    oNl = np.empty((n, nL))
    oNh = np.empty((n, nL))
    oPl = np.empty((n, nL))
    oPh = np.empty((n, nL))
    oDl = np.empty((n, nL))
    oDh = np.empty((n, nL))
    aL = np.empty((n, m))
    aH = np.empty((n, m))
    infeas = np.zeros(n, dtype=np.bool_)
    for c in prange(n):
        _linear_cell(c, XL, XH, CLO, CHI, A, noise_mode, mix, inter_mode, refine_all, NL, NH, PL, PH, oNl, oNh, oPl,
                     oPh, oDl, oDh, aL, aH, infeas, widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT,
                     aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd)
    return NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas, aL, aH


@_jit(f"Tuple(({_LP_OUT}))({_M}, {_M}, {_M}, {_M}, {_M}, i8, b1, i8, b1, " + _NET_SIG + ")", )
def linear_pass_serial(XL, XH, CLO, CHI, A, noise_mode, mix, inter_mode, refine_all, widths, woff, noff, acts, hasD,
                       alphas, W0, W0T, aW0T, Wc, WcT, aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd):
    """Serial :func:`linear_pass` (small batches: no thread wake-up cost).

    Per cell and layer: interval and difference images (as :func:`interval_pass`), the nominal
    pre-activations tightened by CROWN back-substitution (layers >= 1); ``inter_mode`` >= 1 also
    the perturbed ones (noise substituted), >= 2 also the differences ``dz`` (joint); only the
    neurons whose relaxation is not exact unless ``refine_all`` (tighter ``dh`` intervals); then
    ``z' ∩= (z + dz) ∩ clips``.  At the end one joint back-substitution bounds the rows of
    ``A h'_L`` (perturbed, noise substituted) and the deviation ``h'_L - h_L`` (both networks,
    shared ``x``).

    Returns the outputs of :func:`interval_pass` followed by ``aL, aH (n, m)``: bounds of
    ``A h'_L``.  The deviation outputs are already intersected with the joint bounds.
    """
    n = XL.shape[0]
    L = widths.shape[0] - 1
    N = noff[L]
    n0 = widths[0]
    nL = widths[L]
    m = A.shape[0]
    NL = np.empty((n, N))
    NH = np.empty((n, N))
    PL = np.empty((n, N))
    PH = np.empty((n, N))
    oNl = np.empty((n, nL))
    oNh = np.empty((n, nL))
    oPl = np.empty((n, nL))
    oPh = np.empty((n, nL))
    oDl = np.empty((n, nL))
    oDh = np.empty((n, nL))
    aL = np.empty((n, m))
    aH = np.empty((n, m))
    infeas = np.zeros(n, dtype=np.bool_)
    for c in range(n):
        _linear_cell(c, XL, XH, CLO, CHI, A, noise_mode, mix, inter_mode, refine_all, NL, NH, PL, PH, oNl, oNh, oPl,
                     oPh, oDl, oDh, aL, aH, infeas, widths, woff, noff, acts, hasD, alphas, W0, W0T, aW0T, Wc, WcT,
                     aWcT, R, RT, DT, aDT, RdT, b0, bc, rb, db, rbd)
    return NL, NH, PL, PH, oNl, oNh, oPl, oPh, oDl, oDh, infeas, aL, aH
