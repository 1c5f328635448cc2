"""Falsification: look for a violating pair ``(x, theta)`` in a cell, re-check it exactly.

The search (DESIGN.md §3) evaluates the input box's centre, corners and uniform samples, each
paired with the parameter-box vertex that a first-order model of the violation margin prefers
(``theta = c + r * sign(d margin / d theta)``, the maximiser of the linearised margin, exact for
one layer by DESIGN.md §2) and with random vertices; the best starts are then improved by
projected sign-gradient steps on ``x`` and ``theta`` jointly.  Gradients are computed by hand
(back-propagation in NumPy through the MLP, batched with per-sample parameters).

Nothing found here is reported before :func:`confirm` has re-checked it in exact arithmetic
(``prop.check_exact``, against the exact numbers of the property) with parameters inside the box
(``perturbation.contains``) and, given the problem's exact input box, the input moved into it
(:meth:`hybridq.InputBox.snap`): the search runs on the outward-rounded float box, whose ends may
lie up to one float64 spacing outside the decimal box the user wrote.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hybridq.network import interval_bounds, output_transform
from hybridq.properties import Decision, Deviation, OutputConstraint
from hybridq.result import Counterexample

__all__ = ["AttackResult", "attack", "confirm", "margin_and_grad", "exact_deviation"]

logger = logging.getLogger(__name__)

_FMAX = Fraction(float(np.finfo(np.float64).max))


@dataclass
class AttackResult:
    """Best pair found: float margin (``>= 0`` violates), the pair, and its re-checked form.

    ``counterexample`` is set only when the pair re-checked exactly.
    """

    margin: float
    x: np.ndarray
    params: tuple
    value: float
    counterexample: Counterexample | None = None


# --------------------------------------------------------------------------- activations
def _act(z, a, alpha):
    if a == "relu":
        return np.maximum(z, 0.0)
    if a == "identity":
        return z
    if a == "leaky_relu":
        return np.where(z >= 0.0, z, alpha * z)
    if a == "hardtanh":
        return np.clip(z, -1.0, 1.0)
    if a == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * z))
    return np.tanh(z)


def _dact(z, h, a, alpha):
    if a == "relu":
        return (z > 0.0).astype(np.float64)
    if a == "identity":
        return np.ones_like(z)
    if a == "leaky_relu":
        return np.where(z >= 0.0, 1.0, alpha)
    if a == "hardtanh":
        return ((z > -1.0) & (z < 1.0)).astype(np.float64)
    if a == "sigmoid":
        return h * (1.0 - h)
    return 1.0 - h * h


# --------------------------------------------------------------------------- forward / backward
def _forward(network, x, Ws, bs):
    """Batched forward; ``Ws[k]`` is ``(n, out, in)`` (per sample) or ``(out, in)`` (shared)."""
    xn = network.normalize(x)
    hs, zs = [xn], []
    h = xn
    for l, W, b in zip(network.layers, Ws, bs):
        z = np.einsum("noi,ni->no", W, h) + b if W.ndim == 3 else h @ W.T + b
        h = _act(z, l.activation, l.alpha)
        zs.append(z)
        hs.append(h)
    y = h * network.output_std + network.output_mean
    return y, (hs, zs)


def _backprop(network, x, cache, Ws, gy):
    """Back-propagation of ``sum_n gy[n] . y[n]``: the gradients w.r.t. every pre-activation
    (list of ``(n, n_k)``) and w.r.t. the raw input ``x`` (``(n, n_in)``)."""
    hs, zs = cache
    g = gy * network.output_std
    gzs = [None] * len(Ws)
    for k in range(len(Ws) - 1, -1, -1):
        l = network.layers[k]
        gz = g * _dact(zs[k], hs[k + 1], l.activation, l.alpha)
        gzs[k] = gz
        W = Ws[k]
        g = np.einsum("noi,no->ni", W, gz) if W.ndim == 3 else gz @ W
    gx = g / network.input_std
    if network.input_lower is not None:
        inside = (x >= network.input_lower) & (x <= network.input_upper)
        gx = gx * inside
    return gzs, gx


def _backward(network, x, cache, Ws, gy, want_params=True):
    """Gradients of ``sum_n gy[n] . y[n]`` w.r.t. ``x`` (raw) and the per-sample parameters."""
    gzs, gx = _backprop(network, x, cache, Ws, gy)
    if not want_params:
        return gx, [None] * len(Ws), [None] * len(Ws)
    hs = cache[0]
    return gx, [gz[:, :, None] * h[:, None, :] for gz, h in zip(gzs, hs)], list(gzs)


def _first_order_gain(perturbation, cache, gzs) -> np.ndarray:
    """``max over theta in the box`` of the linearised change ``g_theta . (theta - c)`` per row:
    ``sum_k |gz_k| R_k |h_{k-1}| + |gz_k| . rb_k`` (per-sample gradient ``gz_k h_{k-1}^T``, so no
    per-sample weight arrays are formed).  ``(n,)``."""
    hs = cache[0]
    total = np.zeros(hs[0].shape[0])
    for k, (RW, rb) in enumerate(perturbation.radius):
        a = np.abs(gzs[k])
        total += np.einsum("ni,ni->n", a @ np.asarray(RW), np.abs(hs[k])) + a @ np.asarray(rb)
    return total


def _first_order(network, perturbation, prop, X, C, mg0, info):
    """First-order model of the best violation margin at the box vertices, per row of ``X``.

    At the box centre ``c`` the margin is ``mg0``; its linearisation in ``theta`` is maximised over
    the box by ``|g_theta| . r`` (:func:`_first_order_gain`).  For a deviation every selected output
    is tried (with the sign of its deviation at ``c``) and the best kept; the gradients returned
    are those of that output's margin, so the vertex ``c + r sign(g)`` realises the model.

    Returns ``(score (n,), gyp (n, n_out), gyn (n, n_out))``."""
    yp, cache, yn, ncache, gyp, gyn = info
    if not isinstance(prop, Deviation):
        gzs, _ = _backprop(network, X, cache, C, gyp)
        return mg0 + _first_order_gain(perturbation, cache, gzs), gyp, gyn
    n, m = yp.shape
    sel = np.array(prop.selected(m))
    if prop.space == "score":
        sp, sn, out = output_transform(yp, network.output), output_transform(yn, network.output), network.output
    else:
        sp, sn, out = yp, yn, "identity"
    best = np.full(n, -np.inf)
    bp, bn = np.zeros((n, m)), np.zeros((n, m))
    for j in sel:
        jj = np.full(n, j)
        d = sp[:, j] - sn[:, j]
        sign = np.where(d >= 0, 1.0, -1.0)[:, None]
        gp = sign * _score_grad(yp, sp, jj, out)
        gzs, _ = _backprop(network, X, cache, C, gp)
        score = np.abs(d) + _first_order_gain(perturbation, cache, gzs) - prop.delta
        better = score > best
        best = np.where(better, score, best)
        bp[better] = gp[better]
        bn[better] = -(sign * _score_grad(yn, sn, jj, out))[better]
    return np.nan_to_num(best, nan=-np.inf), np.nan_to_num(bp), np.nan_to_num(bn)


def _score_grad(y, s, j, output):
    """Rows ``d s_j / d y`` for the chosen output ``j`` per row; ``y, s`` are ``(n, n_out)``."""
    n, m = y.shape
    rows = np.arange(n)
    if output == "identity":
        g = np.zeros((n, m))
        g[rows, j] = 1.0
        return g
    if output == "sigmoid":
        g = np.zeros((n, m))
        g[rows, j] = s[rows, j] * (1.0 - s[rows, j])
        return g
    g = -s * s[rows, j][:, None]
    g[rows, j] += s[rows, j]
    return g


def margin_and_grad(network, prop, yp, yn):
    """Violation margin per row and its gradients w.r.t. the perturbed and nominal logits.

    Parameters
    ----------
    yp, yn : (n, n_out) float64
        Perturbed and nominal logits.

    Returns
    -------
    margin : (n,) float64 (``>= 0`` violates in float64)
    gyp, gyn : (n, n_out) float64 (``gyn`` is zero unless the property is a deviation)
    """
    n, m = yp.shape
    rows = np.arange(n)
    gyn = np.zeros_like(yp)
    if isinstance(prop, Deviation):
        sel = np.array(prop.selected(m))
        if prop.space == "score":
            sp, sn = output_transform(yp, network.output), output_transform(yn, network.output)
        else:
            sp, sn = yp, yn
        d = sp[:, sel] - sn[:, sel]
        jj = np.argmax(np.abs(d), axis=1)
        dj = d[rows, jj]
        sign = np.where(dj >= 0, 1.0, -1.0)
        j = sel[jj]
        if prop.space == "score":
            gyp = sign[:, None] * _score_grad(yp, sp, j, network.output)
            gyn = -sign[:, None] * _score_grad(yn, sn, j, network.output)
        else:
            gyp = np.zeros_like(yp)
            gyp[rows, j] = sign
            gyn[rows, j] = -sign
        return np.abs(dj) - prop.delta, gyp, gyn
    if isinstance(prop, Decision):
        C = prop.spec_matrix(m)
        vals = yp @ C.T
        i = np.argmin(vals, axis=1)
        return prop.kappa - vals[rows, i], -C[i], gyn
    if isinstance(prop, OutputConstraint):
        best = np.full(n, -np.inf)
        gyp = np.zeros_like(yp)
        for A, c in prop.disjuncts:
            v = c[None, :] - yp @ A.T
            i = np.argmin(v, axis=1)
            vm = v[rows, i]
            better = vm > best
            best = np.where(better, vm, best)
            gyp[better] = -A[i[better]]
        return best, gyp, gyn
    raise TypeError(f"unsupported property {type(prop).__name__}")


# --------------------------------------------------------------------------- search
def _corners(lower, upper, k, rng):
    n = lower.size
    free = np.flatnonzero(upper > lower)
    if free.size == 0 or k <= 0:
        return np.empty((0, n))
    if 2 ** free.size <= k:
        bits = (np.arange(2 ** free.size)[:, None] >> np.arange(free.size)[None, :]) & 1
    else:
        bits = rng.integers(0, 2, size=(k, free.size))
    out = np.tile(lower, (bits.shape[0], 1))
    out[:, free] = np.where(bits == 1, upper[free], lower[free])
    return out


def _evaluate(network, prop, x, Ws, bs, nominal):
    """Float margins per row; a row whose margin is NaN or whose pair is not finite (float
    overflow on huge boxes) gets ``-inf``, so it is never picked as a candidate."""
    yp, cache = _forward(network, x, Ws, bs)
    yn, ncache = _forward(network, x, *nominal)
    mg, gyp, gyn = margin_and_grad(network, prop, yp, yn)
    ok = ~np.isnan(mg) & np.all(np.isfinite(x), axis=1)
    for a, per_sample_ndim in [(W, 3) for W in Ws] + [(b, 2) for b in bs]:
        a = np.asarray(a)
        if a.ndim == per_sample_ndim:
            ok &= np.all(np.isfinite(a.reshape(a.shape[0], -1)), axis=1)
        else:
            ok &= bool(np.all(np.isfinite(a)))
    mg = np.where(ok, mg, -np.inf)
    return mg, (yp, cache, yn, ncache, np.nan_to_num(gyp), np.nan_to_num(gyn))


def _rows(ok, new, old):
    """``new`` where ``ok`` else ``old``, row by row, through nested tuples / lists of arrays whose
    first dimension is the row (arrays shared by all rows are taken from ``new``)."""
    if isinstance(new, (tuple, list)):
        return type(new)(_rows(ok, a, b) for a, b in zip(new, old))
    if isinstance(new, np.ndarray) and new.ndim >= 1 and new.shape[0] == ok.shape[0] and np.shape(old) == new.shape:
        return np.where(ok.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
    return new


def _sign(g):
    """``sign(g)`` with NaN (from overflowed gradients) mapped to 0 (no move)."""
    return np.sign(np.nan_to_num(g, nan=0.0))


def _grads(network, x, Ws, info, nominal, want_params=True):
    yp, cache, yn, ncache, gyp, gyn = info
    gx, gWs, gbs = _backward(network, x, cache, Ws, gyp, want_params)
    if np.any(gyn):
        gx2, _, _ = _backward(network, x, ncache, nominal[0], gyn, False)
        gx = gx + gx2
    return gx, gWs, gbs


def attack(network, perturbation, prop, lower, upper, rng, samples=16, steps=8, restarts=2,
           confirm_exact=True, screen=0, box=None, starts=()) -> AttackResult:
    """Search a cell for a violation.

    Parameters
    ----------
    network : Network
    perturbation : Perturbation
    prop : Deviation | Decision | OutputConstraint
    lower, upper : (n_in,) float64
        The cell's input box (raw input space).
    rng : numpy.random.Generator
        Source of the random samples (fix it for reproducible results).
    samples : int
        Random inputs besides the centre and corners.
    steps : int
        Projected sign-gradient steps per start.
    restarts : int
        Starts improved by gradient steps.
    confirm_exact : bool
        Re-check the best candidate exactly when its float margin is ``>= 0``.
    screen : int
        When larger than the number of starts, draw this many uniform inputs in all, rank them by
        the first-order model of the margin at the best vertex (:func:`_first_order`, no per-sample
        weights: cheap) and keep the best as the starts.
    box : InputBox, optional
        The problem's exact input box (see :func:`confirm`); default: ``[lower, upper]`` exactly.
    starts : sequence of (x, params)
        Extra starting pairs (e.g. the MILP stage's best point, :meth:`hybridq.smt.milp.MilpBackend.check`):
        ``x`` is clipped into ``[lower, upper]`` and ``params`` into the parameter box; they compete
        with the sampled starts for the gradient restarts.

    Returns
    -------
    AttackResult
        The best pair by float margin; ``counterexample`` only when re-checked exactly.

    Notes
    -----
    Huge boxes (radii near the float64 range) overflow the float search; that is expected, so
    it runs under ``np.errstate`` and non-finite candidates are discarded (only finite pairs
    reach the exact re-check).
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _attack(network, perturbation, prop, lower, upper, rng, samples, steps, restarts, confirm_exact, screen,
                       box, starts)


def _attack(network, perturbation, prop, lower, upper, rng, samples, steps, restarts, confirm_exact, screen, box,
            starts=()):
    if isinstance(prop, Decision):  # sense None: the network's
        prop = prop.resolve(network)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    width = upper - lower
    C = [np.asarray(W) for W, _ in perturbation.center]
    Cb = [np.asarray(b) for _, b in perturbation.center]
    R = [np.asarray(W) for W, _ in perturbation.radius]
    Rb = [np.asarray(b) for _, b in perturbation.radius]
    nominal = ([l.W for l in network.layers], [l.b for l in network.layers])
    # the parameter box, clamped to finite floats (c +- r may overflow for radii near float max)
    big = np.finfo(np.float64).max
    lo_W = [np.clip(c - r, -big, big) for c, r in zip(C, R)]
    hi_W = [np.clip(c + r, -big, big) for c, r in zip(C, R)]
    lo_b = [np.clip(c - r, -big, big) for c, r in zip(Cb, Rb)]
    hi_b = [np.clip(c + r, -big, big) for c, r in zip(Cb, Rb)]

    # 1. inputs: centre, corners, samples; each with the gradient-preferred vertex
    xs = [0.5 * (lower + upper)[None, :], _corners(lower, upper, samples // 2, rng)]
    xs.append(lower + width * rng.uniform(0.0, 1.0, size=(max(samples - xs[1].shape[0], 1), lower.size)))
    X = np.clip(np.concatenate(xs), lower, upper)
    n = X.shape[0]
    if screen > n and np.any(width > 0):  # screen many more inputs by the first-order model, keep the n best
        X = np.concatenate([X, np.clip(lower + width * rng.uniform(0.0, 1.0, size=(screen - n, lower.size)),
                                       lower, upper)])
        mg0, info = _evaluate(network, prop, X, C, Cb, nominal)
        score, _, _ = _first_order(network, perturbation, prop, X, C, mg0, info)
        X = X[np.argsort(-score, kind="stable")[:n]]
    mg0, info = _evaluate(network, prop, X, C, Cb, nominal)
    # a point perturbation (every radius 0, e.g. point:fp16): the parameters are fixed, so the
    # search runs over the inputs alone with the shared weights (no per-sample weight arrays)
    point = not any(np.any(r) for r in R + Rb)
    if point:
        if starts:  # given inputs join the starts (the parameters are the fixed ones anyway)
            X = np.concatenate([X, np.clip(np.array([np.asarray(x, dtype=np.float64) for x, _ in starts]), lower, upper)])
            mg0, info = _evaluate(network, prop, X, C, Cb, nominal)
        Ws, bs, mg = C, Cb, mg0
        best_i = int(np.argmax(mg))
        best = (float(mg[best_i]), X[best_i].copy(), [c.copy() for c in C], [c.copy() for c in Cb])
    else:
        _, gyp, gyn = _first_order(network, perturbation, prop, X, C, mg0, info)
        _, gW, gb = _grads(network, X, C, info[:4] + (gyp, gyn), nominal)
        Ws = [np.clip(c[None] + r[None] * _sign(g), lo, hi) for c, r, g, lo, hi in zip(C, R, gW, lo_W, hi_W)]
        bs = [np.clip(c[None] + r[None] * _sign(g), lo, hi) for c, r, g, lo, hi in zip(Cb, Rb, gb, lo_b, hi_b)]
        h = n // 2
        if isinstance(prop, Deviation) and h > 0:
            # |y' - y| grows both ways: where the deviation at the centre is 0 (a box centred on the
            # nominal parameters) the first-order model cannot tell its two signs apart and took +;
            # the mirrored vertex c - r sign(g) is the other sign's, and each row keeps the better
            # (ACAS Xu 1_1 int8 at prop_3's centre: quantify's witness 10.7 -> 15.3 in 15 s)
            Wm = [np.clip(c[None] - r[None] * _sign(g[:h]), lo, hi) for c, r, g, lo, hi in zip(C, R, gW, lo_W, hi_W)]
            bm = [np.clip(c[None] - r[None] * _sign(g[:h]), lo, hi) for c, r, g, lo, hi in zip(Cb, Rb, gb, lo_b, hi_b)]
            mp, _ = _evaluate(network, prop, X[:h], [W[:h] for W in Ws], [b[:h] for b in bs], nominal)
            mm, _ = _evaluate(network, prop, X[:h], Wm, bm, nominal)
            flip = mm > mp
            for k in range(len(Ws)):
                Ws[k][:h][flip] = Wm[k][flip]
                bs[k][:h][flip] = bm[k][flip]
        # half of the samples also get a random vertex
        for k in range(len(Ws)):
            Ws[k][h:] = np.clip(C[k][None] + R[k][None] * rng.choice((-1.0, 1.0), size=(n - h,) + C[k].shape),
                                lo_W[k], hi_W[k])
            bs[k][h:] = np.clip(Cb[k][None] + Rb[k][None] * rng.choice((-1.0, 1.0), size=(n - h,) + Cb[k].shape),
                                lo_b[k], hi_b[k])
        if starts:  # given pairs join the starts (after the random draws: the same draws with or without them)
            X = np.concatenate([X, np.clip(np.array([np.asarray(x, dtype=np.float64) for x, _ in starts]), lower, upper)])
            for k in range(len(Ws)):
                Ws[k] = np.concatenate([Ws[k], np.clip(np.array([np.asarray(p[k][0], dtype=np.float64)
                                                                 for _, p in starts]), lo_W[k], hi_W[k])])
                bs[k] = np.concatenate([bs[k], np.clip(np.array([np.asarray(p[k][1], dtype=np.float64)
                                                                 for _, p in starts]), lo_b[k], hi_b[k])])
        mg, info = _evaluate(network, prop, X, Ws, bs, nominal)
        best_i = int(np.argmax(mg))
        best = (float(mg[best_i]), X[best_i].copy(), [W[best_i].copy() for W in Ws], [b[best_i].copy() for b in bs])
    if mg0.max() > best[0]:
        i = int(np.argmax(mg0))
        best = (float(mg0[i]), X[i].copy(), [c.copy() for c in C], [c.copy() for c in Cb])

    # 2. projected sign-gradient steps from the best starts; a row keeps a step only when it
    # raises its margin, and its input step grows after a success and shrinks after a failure
    # (narrow peaks need steps far below the box width)
    if steps > 0 and restarts > 0:
        order = np.argsort(-mg, kind="stable")[:restarts]
        x = X[order].copy()
        if not point:
            Ws = [W[order].copy() for W in Ws]
            bs = [b[order].copy() for b in bs]
        mg, info = _evaluate(network, prop, x, Ws, bs, nominal)
        ax = np.full(x.shape[0], 0.25)
        for t in range(steps):
            at = 1.0 if t == 0 else 0.5 * (1.0 - t / steps) + 0.05
            gx, gW, gb = _grads(network, x, Ws, info, nominal, want_params=not point)
            xn = np.clip(x + ax[:, None] * width * _sign(gx), lower, upper)
            if point:
                Wn, bn = Ws, bs
            else:
                Wn = [np.clip(W + at * 2.0 * r * _sign(g), lo, hi) for W, r, g, lo, hi in zip(Ws, R, gW, lo_W, hi_W)]
                bn = [np.clip(b + at * 2.0 * r * _sign(g), lo, hi) for b, r, g, lo, hi in zip(bs, Rb, gb, lo_b, hi_b)]
            mgn, infon = _evaluate(network, prop, xn, Wn, bn, nominal)
            ok = mgn > mg
            ax = np.where(ok, np.minimum(1.5 * ax, 0.5), 0.4 * ax)
            if not ok.any():
                continue
            if point:
                x, mg, info = _rows(ok, (xn, mgn, infon), (x, mg, info))
            else:
                x, Ws, bs, mg, info = _rows(ok, (xn, Wn, bn, mgn, infon), (x, Ws, bs, mg, info))
            i = int(np.argmax(mg))
            if mg[i] > best[0]:
                Wi = [c.copy() for c in C] if point else [W[i].copy() for W in Ws]
                bi = [c.copy() for c in Cb] if point else [b[i].copy() for b in bs]
                best = (float(mg[i]), x[i].copy(), Wi, bi)

    margin, xb, Wb, bb = best
    params = tuple(zip(Wb, bb))
    value = margin + prop.delta if isinstance(prop, Deviation) else margin
    res = AttackResult(margin, xb, params, value)
    if confirm_exact and margin >= 0.0:
        res.counterexample = confirm(network, perturbation, prop, xb, params, margin, box=box)
    return res


def confirm(network, perturbation, prop, x, params, margin: float, box=None) -> Counterexample | None:
    """Exact re-check of a candidate ``(x, params)``.

    The parameters are snapped into the perturbation box (``perturbation.snap_inside``) and must
    then lie in it (``perturbation.contains``); ``x`` is moved into the exact input box
    (:meth:`hybridq.InputBox.snap`: by less than one float64 spacing when it lies in the float
    box) and must lie in it; then ``prop.check_exact`` must hold against the property's exact
    numbers.

    Parameters
    ----------
    network : Network
    perturbation : Perturbation
    prop : Deviation | Decision | OutputConstraint
    x : (n_in,) float64 (or floats and Fractions)
        Candidate input.
    params : Params
        Candidate parameters.
    margin : float
        Its float64 violation margin (recorded in the counterexample).
    box : InputBox, optional
        The exact input set the user wrote.  Without it ``x`` is taken as it is.

    Returns
    -------
    Counterexample or None
        ``x`` is the float64 nearest to the exact input; ``x_exact`` holds the exact input when a
        coordinate is not a float64 (a decimal box end such as ``0.1``).
    """
    params = perturbation.snap_inside(params)
    if not perturbation.contains(params):
        return None
    if box is not None:
        xe = box.snap(x)
        if not box.contains_exact(xe):
            return None
    else:
        xe = np.array([v if isinstance(v, Fraction) else float(v) for v in np.asarray(x, dtype=object).reshape(-1)],
                      dtype=object)
    value = None
    if isinstance(prop, Deviation):  # one exact evaluation serves the check and the reported value
        devs = prop.exact_deviations(network, xe, params)
        if not prop.violated_by(devs):
            return None
        value = deviation_lower_bound(devs)
    elif not prop.check_exact(network, xe, params):
        return None
    # an exact violation that float64 misses (e.g. scores ~1e-20 that cancel) is still one: margin 0, never < 0
    return Counterexample(_nearest(xe), params, max(float(margin), 0.0), value, x_exact=_exact_or_none(xe))


def _nearest(xe) -> np.ndarray:
    """The float64 array nearest to an input of floats and Fractions."""
    return np.array([float(v) for v in xe], dtype=np.float64)


def _exact_or_none(xe) -> tuple | None:
    """``xe`` as a tuple of Fractions when some coordinate is not a float64, else None."""
    if all(not isinstance(v, Fraction) or Fraction(float(v)) == v for v in xe):
        return None
    return tuple(Fraction(v) for v in xe)


def exact_deviation(network, prop: Deviation, x, params) -> float:
    """``max_j |s_j(x; params) - s_j(x; theta0)|`` over the property's outputs, evaluated exactly
    and rounded toward zero (a certified lower bound of the true deviation)."""
    return deviation_lower_bound(prop.exact_deviations(network, x, params))


def deviation_lower_bound(deviations) -> float:
    """``max_j |d_j|`` of exact deviations (Fractions or mpmath intervals) rounded toward zero."""
    best = 0.0
    for d in deviations:
        if isinstance(d, Fraction) and abs(d) > _FMAX:  # beyond float64: the largest float, toward zero
            best = max(best, float(np.finfo(np.float64).max))
            continue
        lo, hi = interval_bounds([d])
        best = max(best, float(lo[0]), float(-hi[0]))
    return best
