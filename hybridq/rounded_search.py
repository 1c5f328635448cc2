"""Witness search on the rounded deployed network (float64 simulation; candidates, never proofs).

:func:`hybridq.deployed.deviation_deployed` and :func:`~hybridq.deployed.verify_deployed` rank
the inputs found here by the float64 simulation of the rounding (:meth:`ActModel.forward`) and
re-check the best exactly; nothing found here is reported before that re-check.

* :func:`search_rounded`: samples and signed-gradient walks on the deployed network's
  clipping-but-no-rounding surrogate and on each float logit;
* :func:`climb_rounded`: steepest ascent over single-coordinate moves of the simulated rounding
  (the rounding makes the deviation piecewise constant in ``x``);
* :func:`logit_extremes`: where the deployed model's output quantizer saturates, the deviation of
  an output is the distance from the float logit to the clip level, so the input that drives the
  float logit furthest beyond the quantizer's range is a witness.  That is a float verification
  problem, solved as a MILP (HiGHS on :func:`hybridq.milp.model.build_model` of the float network;
  one binary per unstable ReLU), which beats gradient walks by far on wide boxes (mnistfc 256x2
  ``prop_0_0.03``: the float logit 9 reaches -0.123 against -0.066 from projected gradient, so the
  witnessed deviation grows from 0.0331 to 0.0904).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from hybridq.actquant import ActModel
from hybridq.inputs import as_input_box
from hybridq.network import Network, activate, activation_slope
from hybridq.properties import Deviation

__all__ = ["search_rounded", "climb_rounded", "logit_extremes"]

log = logging.getLogger(__name__)


def _grad_logit(model: ActModel, x: np.ndarray, j: int, deployed: bool) -> np.ndarray:
    """Gradient in ``x`` of the logit ``y_j``: of the float network, or (``deployed``) of the
    deployed network with every quantizer's clipping but without its rounding (a straight-through
    surrogate to steer the search: a saturated quantizer passes no gradient, an unsaturated one
    passes it unchanged).  Piecewise-linear and smooth activations."""
    net = model.network
    params = model.center if deployed else net.params

    def clip_mask(v, where, k):
        q = model.point(where, k) if deployed else None
        if q is None or q.kind != "affine":
            return np.ones_like(v), v
        lo, hi = q.range(v.size)
        return ((v >= lo) & (v <= hi)).astype(float), np.clip(v, lo, hi)

    h = net.normalize(x[None])[0]
    m_in, h = clip_mask(h, "input", -1)
    masks = []
    for k, (l, (W, b)) in enumerate(zip(net.layers, params)):
        m_mid, acc = clip_mask(W @ h, "mid", k)
        m_pre, z = clip_mask(acc + b, "pre", k)
        m = activation_slope(z, l.activation, l.alpha)
        m_post, h = clip_mask(activate(z, l.activation, l.alpha), "post", k)
        masks.append(m_mid * m_pre * m * m_post)
    v = np.zeros(net.n_out)
    v[j] = net.output_std[j]
    for (W, _), m in zip(reversed(params), reversed(masks)):
        v = np.asarray(W).T @ (v * m)
    return m_in * v / net.input_std


def _grad_dev(model: ActModel, x: np.ndarray, j: int, sign: float) -> np.ndarray:
    """Gradient in ``x`` of ``sign * (y_j(x; deployed) - y_j(x; float))`` (:func:`_grad_logit`)."""
    return sign * (_grad_logit(model, x, j, True) - _grad_logit(model, x, j, False))


def search_rounded(model: ActModel, inputs, prop, rng=None, samples: int = 512, steps: int = 12,
                   starts: int = 4, deadline: float | None = None) -> tuple[np.ndarray, float]:
    """Search an input where the rounded network does worst on ``prop`` (float64 simulation).

    Candidates: the box's centre and corners, ``samples`` uniform points, and ``steps`` signed
    gradient steps (step ``0.9^t 2 width/steps``, and a second walk with ``width/steps``; projected
    on the box) from the ``starts`` best
    samples for every output and sign, steered by the deployed network's clipping-but-no-rounding
    surrogate (:func:`_grad_logit`) and by each float logit alone (driven up and down: beyond a
    calibrated range the deployed network saturates and the deviation grows with the float logit).
    ``deadline`` (``time.perf_counter()`` scale): no walk starts after it (the samples are always
    ranked).

    Returns
    -------
    x : (n_in,) float64
        The best input found.
    margin : float
        Its float64 violation margin on the simulated rounded network (not a proof).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    box = as_input_box(inputs, model.network.n_in)
    lo, hi = box.lower, box.upper
    X = [box.center[None], lo[None], hi[None], rng.uniform(lo, hi, (samples, lo.size))]
    X = np.concatenate(X)
    net = model.network

    def margin(X):
        return prop.margin(net, model.forward(X), net.forward(X))

    m = margin(X)
    if not box.is_point and model.network.is_piecewise_linear:
        width = 2 * (hi - lo) / max(steps, 1)  # 0.9^t decay: about 1.4 box widths in all
        best = X[np.argsort(-m)[:starts]]
        outs = prop.selected(net.n_out) if isinstance(prop, Deviation) else range(net.n_out)
        walkers = []
        # the deviation's surrogate gradient, and each float logit driven to its extremes (where
        # the deployed network's quantizers saturate, the deviation is the distance to the clip)
        directions = [lambda x, j=j, sg=sg: _grad_dev(model, x, j, sg) for j in outs for sg in (1.0, -1.0)]
        directions += [lambda x, j=j, sg=sg: sg * _grad_logit(model, x, j, False) for j in outs for sg in (1.0, -1.0)]
        for grad in directions:
            if deadline is not None and time.perf_counter() > deadline:
                break
            for x0 in best:
                for decay in (0.9, 1.0):  # a decaying walk settles, a constant one (width/2) explores
                    x = x0.copy()
                    for t in range(steps):
                        x = np.clip(x + width * (0.9**t if decay < 1 else 0.5) * np.sign(grad(x)), lo, hi)
                        walkers.append(x.copy())
        if walkers:
            W_ = np.array(walkers)
            X = np.concatenate([X, W_])
            m = np.concatenate([m, margin(W_)])
    i = int(np.nanargmax(m))
    return X[i], float(m[i])


def _first_inputs(model: ActModel, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(h0 of the rounded network, h0 of the float network)`` for raw inputs ``(m, n_in)``."""
    h = model.network.normalize(X)
    q = model.point("input")
    return (q.simulate(h) if q is not None else h), h


def _float_rest(net: Network, acc: np.ndarray) -> np.ndarray:
    """Float logits from the first layer's accumulator ``W_1 h_0`` ``(m, n_1)``."""
    h = None
    for k, l in enumerate(net.layers):
        z = (acc if k == 0 else h @ l.W.T) + l.b
        h = activate(z, l.activation, l.alpha)
    return h * net.output_std + net.output_mean


def climb_rounded(model: ActModel, box, prop: Deviation, x0, budget: float = 5.0, targets: int = 2,
                  coords: int = 96, rng=None) -> np.ndarray:
    """Steepest ascent of the rounded network's deviation over single-coordinate moves (float64
    simulation of every quantizer, :meth:`ActModel.forward`; not a proof).

    For the ``targets`` (output, sign) pairs with the largest deviation at ``x0``, repeatedly: for
    ``coords`` random coordinates, the moves one quantization step of the input quantizer (or a
    sixteenth of the box width) down and up and to both box ends are evaluated at once (the first
    layer's accumulators are updated in ``O(n_1)`` per move) and the best improving move is taken
    (or the best 8 together, when that is better).  The rounding makes the deviation piecewise
    constant in ``x``, so gradients of the unrounded network miss what this finds: inputs where
    the roundings of the first layers align.

    Returns
    -------
    (n_in,) float64
        The best input found (in the float box).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    net = model.network
    lo, hi = box.lower, box.upper
    q_in = model.point("input")
    if q_in is not None and q_in.kind == "affine":
        step = np.broadcast_to(np.asarray(q_in.scale, dtype=np.float64), (net.n_in,)) * net.input_std
    else:
        step = (hi - lo) / 16
    Wq = np.asarray(model.center[0][0], dtype=np.float64)
    Wf = net.layers[0].W
    sel = prop.selected(net.n_out)
    x0 = np.clip(np.asarray(x0, dtype=np.float64), lo, hi)
    d0 = model.forward(x0[None])[0] - net.forward(x0[None])[0]
    order = sorted(((abs(d0[j]), j, 1.0 if d0[j] >= 0 else -1.0) for j in sel), reverse=True)[:targets]
    free = np.flatnonzero(hi > lo)
    if free.size == 0:
        return x0
    t_end = time.perf_counter() + budget
    best_x, best_v = x0, -np.inf
    for n_t, (_, j, sgn) in enumerate(order):
        x = x0.copy()
        hq, hf = (a[0] for a in _first_inputs(model, x[None]))
        aq, af = Wq @ hq, Wf @ hf
        cur = sgn * d0[j]
        stop = time.perf_counter() + (t_end - time.perf_counter()) / (len(order) - n_t)
        while time.perf_counter() < stop:
            idx = rng.choice(free, size=min(coords, free.size), replace=False)
            cand_i = np.repeat(idx, 4)
            v = np.stack([x[idx] - step[idx], x[idx] + step[idx], lo[idx], hi[idx]], axis=1).reshape(-1)
            v = np.clip(v, lo[cand_i], hi[cand_i])
            Xc = np.repeat(x[None], 1, axis=0)
            hq_c, hf_c = _first_inputs(model, np.where(np.arange(net.n_in)[None] == cand_i[:, None], v[:, None], Xc))
            dq = hq_c[np.arange(cand_i.size), cand_i] - hq[cand_i]
            df = hf_c[np.arange(cand_i.size), cand_i] - hf[cand_i]
            Aq = aq[None] + dq[:, None] * Wq.T[cand_i]
            Af = af[None] + df[:, None] * Wf.T[cand_i]
            val = sgn * (model.forward(None, acc1=Aq)[:, j] - _float_rest(net, Af)[:, j])
            k = int(np.argmax(val))
            if not val[k] > cur:
                continue
            top = [i for i in np.argsort(-val) if val[i] > cur]
            moves, used = [], set()
            for i in top:
                if cand_i[i] not in used:
                    used.add(cand_i[i])
                    moves.append(i)
                if len(moves) == 8:
                    break
            xm = x.copy()
            xm[cand_i[moves]] = v[moves]
            vm = sgn * (model.forward(xm[None])[0, j] - net.forward(xm[None])[0, j])
            if vm > val[k]:
                x, cur = xm, vm
            else:
                x, cur = x.copy(), val[k]
                x[cand_i[k]] = v[k]
            hq, hf = (a[0] for a in _first_inputs(model, x[None]))
            aq, af = Wq @ hq, Wf @ hf
        if cur > best_v:
            best_x, best_v = x, cur
    return best_x

#: :func:`logit_extremes` starts no MILP with more binaries (unstable ReLUs of the float network):
#: mnistfc 256x4 prop_1_0.03 (708) gained nothing over its start in 6 s and HiGHS overran its
#: time limit by 6 s; 256x2 prop_0_0.03 (95) reaches -0.116 of the optimum -0.123 in 7 s.
MAX_BINARIES = 400


def _output_quantizer(model: ActModel):
    """The affine quantizer on the logits (the last layer's output or pre-activation), or ``None``."""
    L = len(model.network.layers) - 1
    for where in ("post", "pre"):
        q = model.point(where, L)
        if q is not None:
            ok = q.kind == "affine" and (where == "post" or model.network.layers[L].activation == "identity")
            return q if ok else None
    return None


def _float_milp(net: Network, lo: np.ndarray, hi: np.ndarray, pre_lo: list, pre_hi: list):
    """The float network's logits over the box ``[lo, hi]`` as a MILP, for search only.

    Columns: the raw inputs, then per unstable ReLU its output ``h`` and a binary ``d`` (big-M form
    ``h >= z``, ``h <= z - l (1 - d)``, ``h <= u d`` with the bound pass's pre-activation bounds
    ``l < 0 < u``); every pre-activation is substituted as an affine form of the columns (no
    column of its own: HiGHS finds good points on this compact form much sooner than on the
    certified model of :mod:`hybridq.milp.model`, which keeps float data exact for proofs and
    is not needed here).  Returns ``(Y, y0, A, row_lo, row_hi, col_lo, col_hi, integrality)`` with
    the logits ``y = Y v + y0``.
    """
    import scipy.sparse as sp

    n_in = net.n_in
    if net.input_lower is not None:  # the clamp maps the box onto its clipped part
        lo, hi = np.clip(lo, net.input_lower, net.input_upper), np.clip(hi, net.input_lower, net.input_upper)
    col_lo, col_hi, integ = [lo], [hi], [np.zeros(n_in)]
    E, e0 = np.diag(1.0 / net.input_std), -net.input_mean / net.input_std
    blocks, rlo, rhi = [], [], []
    L = len(net.layers)
    for k, layer in enumerate(net.layers):
        Z, z0 = layer.W @ E, layer.W @ e0 + layer.b
        if k == L - 1 or layer.activation == "identity":
            E, e0 = Z, z0
            continue
        l, u = np.asarray(pre_lo[k], dtype=np.float64), np.asarray(pre_hi[k], dtype=np.float64)
        act, uns = l >= 0, (l < 0) & (u > 0)
        iu = np.flatnonzero(uns)
        m, n0 = iu.size, E.shape[1]
        hcol, dcol = n0 + 2 * np.arange(m), n0 + 2 * np.arange(m) + 1  # (h, d) per neuron, side by side
        col_lo.append(np.zeros(2 * m))
        col_hi.append(np.stack([u[iu], np.ones(m)], axis=1).reshape(-1))
        integ.append(np.tile([0.0, 1.0], m))
        n1 = n0 + 2 * m
        Zu = np.zeros((m, n1))
        Zu[:, :n0] = Z[iu]
        r = np.arange(m)
        R1 = -Zu.copy()
        R1[r, hcol] = 1.0                      # h - z >= z0
        R2 = R1.copy()
        R2[r, dcol] = -l[iu]                   # h - z - l d <= z0 - l
        R3 = np.zeros((m, n1))
        R3[r, hcol], R3[r, dcol] = 1.0, -u[iu]  # h - u d <= 0
        blocks.append(np.stack([R1, R2, R3], axis=1).reshape(3 * m, n1))  # a neuron's three rows together
        rlo.append(np.stack([z0[iu], np.full(m, -np.inf), np.full(m, -np.inf)], axis=1).reshape(-1))
        rhi.append(np.stack([np.full(m, np.inf), z0[iu] - l[iu], np.zeros(m)], axis=1).reshape(-1))
        En = np.zeros((layer.n_out, n1))
        En[act, :n0] = Z[act]
        En[iu, hcol] = 1.0
        E, e0 = En, np.where(act, z0, 0.0)
    n = E.shape[1]
    A = sp.vstack([sp.csr_matrix(np.pad(B, ((0, 0), (0, n - B.shape[1])))) for B in blocks], format="csr") \
        if blocks else sp.csr_matrix((0, n))
    Y, y0 = E * net.output_std[:, None], e0 * net.output_std + net.output_mean
    return (Y, y0, A, np.concatenate(rlo) if rlo else np.zeros(0), np.concatenate(rhi) if rhi else np.zeros(0),
            np.concatenate(col_lo), np.concatenate(col_hi), np.concatenate(integ))


def logit_extremes(model: ActModel, box, prop: Deviation, budget: float, starts=(), targets: int = 2) -> list[np.ndarray]:
    """Inputs of ``box`` that drive a float logit furthest beyond the deployed output quantizer's range.

    Where a float logit ``y_j`` can leave the clip range ``[lo_j, hi_j]`` of the quantizer on the
    deployed model's logits (by the certified bounds of the float network over the box), the
    deployed logit saturates there and the deviation is ``lo_j - y_j`` (or ``y_j - hi_j``): the
    witness is the input minimizing (maximizing) the float logit.  For the ``targets`` (output,
    direction) pairs that can go furthest beyond the clip, HiGHS (``highspy``) maximizes ``s y_j``
    over the box on the MILP of the float network (:func:`_float_milp`), started from the input
    of ``starts`` (and the box centre) with the largest ``s y_j``, the first target for three times
    the time of each other within ``budget`` seconds (HiGHS often improves on its start only near
    the end of its branch and bound: mnistfc 256x2 ``prop_0_0.05``, 115 binaries, stays at its start
    for 8 s and reaches the optimum, logit 9 at -0.2145, in 17.7 s); its best point (optimal or
    not) is a candidate.

    Parameters
    ----------
    model : ActModel
    box : InputBox
    prop : Deviation
        Its selected outputs are the targets considered.
    budget : float
        Seconds for the whole call (the bound pass and the model build included).
    starts : sequence of (n_in,) float64
        Good inputs already found (e.g. by :func:`search_rounded`): HiGHS's first incumbent.
    targets : int
        At most this many (output, direction) pairs.

    Returns
    -------
    list of (n_in,) float64
        Candidates inside the float box (to be re-checked exactly by the caller); empty when the
        network is not relu/identity, the box is a point, there is no affine output quantizer, no
        float logit can leave its range, the MILP has more than :data:`MAX_BINARIES` binaries, or
        the budget is spent.
    """
    from hybridq.bounds import bounds
    from hybridq.perturbation import Perturbation

    t_end = time.perf_counter() + budget
    net = model.network
    box = as_input_box(box, net.n_in)
    q = _output_quantizer(model)
    if q is None or box.is_point or budget <= 0 or any(l.activation not in ("relu", "identity") for l in net.layers):
        return []
    lo, hi = q.range(net.n_out)
    lo, hi = lo * net.output_std + net.output_mean, hi * net.output_std + net.output_mean  # logit units
    zero = Perturbation(net.params, tuple((np.zeros_like(W), np.zeros_like(b)) for W, b in net.params), "none")
    ob = bounds(net, zero, box)
    flo, fhi = ob.logit_lo[0], ob.logit_hi[0]
    pot = [(lo[j] - flo[j], j, -1.0) for j in prop.selected(net.n_out)]
    pot += [(fhi[j] - hi[j], j, 1.0) for j in prop.selected(net.n_out)]
    pot = sorted((p for p in pot if p[0] > 0), reverse=True)[:targets]
    if not pot or time.perf_counter() >= t_end:
        return []
    unstable = sum(int(np.sum((ob.pre_lo[k][0] < 0) & (ob.pre_hi[k][0] > 0))) for k in range(len(net.layers) - 1))
    if unstable > MAX_BINARIES:
        return []
    Y, _, A, rlo, rhi, clo, chi, integ = _float_milp(net, box.lower, box.upper, [p[0] for p in ob.pre_lo],
                                                     [p[0] for p in ob.pre_hi])
    X0 = np.clip(np.array([box.center] + [np.asarray(x, dtype=np.float64) for x in starts]), box.lower, box.upper)
    F0 = net.forward(X0)
    weights = [3.0] + [1.0] * (len(pot) - 1)  # the most promising target: 3/4 of the time (what it leaves, the next)
    out = []
    for i, (_, j, s) in enumerate(pot):
        left = (t_end - time.perf_counter()) * weights[i] / sum(weights[i:])
        if left <= 0.05:
            break
        x0 = X0[int(np.argmax(s * F0[:, j]))]
        v = _highs_max(-s * Y[j], A, rlo, rhi, clo, chi, integ, _float_milp_point(net, x0, ob, clo.size), left)
        if v is not None:
            out.append(np.clip(v[:net.n_in], box.lower, box.upper))
    return out


def _float_milp_point(net: Network, x: np.ndarray, ob, n: int) -> np.ndarray:
    """The columns of :func:`_float_milp` at the input ``x`` (a feasible start for HiGHS)."""
    v = [np.asarray(x, dtype=np.float64)]
    h = net.normalize(x[None])[0]
    for k, layer in enumerate(net.layers[:-1]):
        z = layer.W @ h + layer.b
        h = activate(z, layer.activation, layer.alpha)
        if layer.activation == "relu":
            l, u = ob.pre_lo[k][0], ob.pre_hi[k][0]
            iu = np.flatnonzero((l < 0) & (u > 0))
            v.append(np.stack([np.clip(h[iu], 0.0, u[iu]), (z[iu] > 0).astype(float)], axis=1).reshape(-1))
    v = np.concatenate(v)
    return v if v.size == n else None


def _highs_max(c, A, rlo, rhi, clo, chi, integ, start, timeout: float):
    """``argmin c.v`` over the MILP by HiGHS within ``timeout`` seconds, from ``start``: its best
    solution (optimal or not), or ``None``."""
    from hybridq.milp.search import _highspy, _new_highs, warm_start

    hs = _highspy()
    h = _new_highs()
    inf = hs.kHighsInf
    lp = hs.HighsLp()
    lp.num_col_, lp.num_row_ = c.size, A.shape[0]
    lp.col_cost_ = np.asarray(c, dtype=np.float64)
    lp.col_lower_, lp.col_upper_ = clo.astype(np.float64), chi.astype(np.float64)
    lp.row_lower_ = np.where(np.isfinite(rlo), rlo, -inf)
    lp.row_upper_ = np.where(np.isfinite(rhi), rhi, inf)
    lp.a_matrix_.format_ = hs.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = c.size, A.shape[0]
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data.astype(np.float64)
    lp.integrality_ = [hs.HighsVarType.kInteger if t else hs.HighsVarType.kContinuous for t in integ]
    h.passModel(lp)
    h.setOptionValue("time_limit", float(timeout))
    if start is not None:
        warm_start(h, start)
    h.run()
    if h.getInfo().primal_solution_status < 1:
        return None
    v = np.array(h.getSolution().col_value, dtype=np.float64)
    return v if v.shape == (c.size,) and np.all(np.isfinite(v)) else None
