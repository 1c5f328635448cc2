"""Scalar kernels: outward rounding, activation enclosures and rigorous relaxation intercepts.

See :mod:`hybridq.kernels` for the soundness argument (``up`` / ``dn``, libm slack, intercepts as
outward-rounded bounds of ``max (f(z) - s z)`` over ``[l, u]``)."""

from __future__ import annotations

import math

import numpy as np

from hybridq.kernels.common import ETA, FSLACK, HARDTANH, IDENTITY, INF, LEAKY, RELU, SIGMOID, U, _jit


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
