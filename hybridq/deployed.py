"""Verify the model that really runs: a float network against its quantized (deployed) copy.

:func:`verify_deployed` and :func:`deviation_deployed` run the ordinary branch and bound on the
noise-layer network of :meth:`hybridq.actquant.ActModel.expand` (every bound method, attack and SMT
backend applies unchanged), then turn what they find into statements about the *rounded* network:

* ``robust``: proved for every rounding error the noise model allows, so for the rounded network;
* ``not_robust``: a concrete input ``x`` at which the exactly rounded deployed network
  (:meth:`~hybridq.actquant.ActModel.exact_logits`, every quantizer applied in Fraction
  arithmetic) violates the property.  The counterexample's ``kind`` says which parameters:
  ``"rounded network"`` (the deployed parameters) or ``"rounded network, parameters in the
  box"`` (a parameter set of the perturbation box, e.g. ``int8@weights;act=int8``).  A witness
  of the noise model alone -- some admissible noise values, but not the rounding the network
  does at ``x`` -- is not reported as a counterexample: the verdict is then ``unknown`` and the
  message says so;
* ``note``: when an ONNX file and onnxruntime are at hand, whether the runtime reproduces it.

The maximum deviation ``[witnessed, proved]``: proved by :func:`hybridq.quantify` on the noise
model; witnessed by the exactly rounded network at the best input found (:func:`search_rounded`:
samples and signed-gradient steps on the unrounded deployed network, ranked by the float64
simulation of the rounding, the best re-evaluated exactly).
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from hybridq.actquant import ActModel, QuantPoint
from hybridq.equivalence import SameDecision
from hybridq.errors import ModelFormatError
from hybridq.inputs import as_input_box
from hybridq.network import Layer, Network, activate, activation_slope
from hybridq.properties import Decision, Deviation
from hybridq.result import Counterexample, Quantity, Result

__all__ = ["against", "verify_deployed", "deviation_deployed", "fewest_act_bits", "search_rounded", "climb_rounded",
           "runtime_outputs", "load_against"]

log = logging.getLogger(__name__)


def against(float_net: Network, model: ActModel) -> ActModel:
    """The deployed ``model`` measured against its float original ``float_net``.

    The layer structure must agree: number of layers, shapes, activations (a deployed ``relu``
    that a quantizer absorbed, see :mod:`hybridq.io.onnx_quant`, matches a float ``identity``
    layer only as that quantizer on the pre-activation), input normalization and output transform.

    Raises
    ------
    ModelFormatError
        Naming the first layer (or the pre/post-processing) that differs.
    """
    q = model.network
    if len(float_net.layers) != len(q.layers):
        raise ModelFormatError(f"the float model has {len(float_net.layers)} dense layers, the deployed model {len(q.layers)}")
    layers, points = list(q.layers), list(model.points)
    for k, (f, d) in enumerate(zip(float_net.layers, q.layers)):
        if f.W.shape != d.W.shape:
            raise ModelFormatError(f"layer {k + 1} differs: weight shape {f.W.shape} in the float model, {d.W.shape} deployed")
        if f.activation == d.activation and (f.activation != "leaky_relu" or f.alpha == d.alpha):
            continue
        post = model.point("post", k)
        if (f.activation, d.activation) == ("identity", "relu") and post is not None and post.kind == "affine" \
                and post.zero_point == post.qmin and model.point("pre", k) is None:
            # the quantizer clips at 0 on an identity layer: keep the float structure, quantize z itself
            layers[k] = Layer(d.W, d.b, "identity")
            points[points.index(post)] = QuantPoint("pre", k, post.kind, post.scale, post.zero_point, post.qmin,
                                                    post.qmax, None, post.saturate, post.rel, post.name)
            continue
        raise ModelFormatError(f"layer {k + 1} differs: activation {f.activation} in the float model, {d.activation} deployed")
    for name in ("input_mean", "input_std", "output_mean", "output_std"):
        if not np.array_equal(getattr(float_net, name), getattr(q, name)):
            raise ModelFormatError(f"the input/output processing differs: {name} of the float and the deployed model")
    if (float_net.input_lower is None) != (q.input_lower is None) or float_net.output != q.output:
        raise ModelFormatError("the input clamp or the output transform differs between the float and the deployed model")
    return ActModel(float_net, tuple((l.W, l.b) for l in layers), model.radius, tuple(points), name=model.name,
                    out_rel=model.out_rel)


# ----------------------------------------------------------------------------------- budget
def _total(options: dict, config) -> float | None:
    """The call's budget in seconds: ``timeout=`` or the config's (``None``: unlimited)."""
    total = options.get("timeout")
    if total is None:
        total = getattr(config, "timeout", None)
    return None if total is None else float(total)


def _clock(t0: float, total: float | None):
    """``() -> seconds left`` of a budget ``total`` started at ``t0`` (``inf`` without one)."""
    if total is None:
        return lambda: float("inf")
    return lambda: t0 + total - time.perf_counter()


# ----------------------------------------------------------------------------- rounded search
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


def _float32_inside(x, box):
    """``x`` rounded to float32 values inside ``box`` (as float64), or ``None`` if the box is too thin."""
    y = np.asarray(x, dtype=np.float32)
    lo, hi = box.lower, box.upper
    for _ in range(2):
        y = np.where(y.astype(np.float64) < lo, np.nextafter(y, np.float32(np.inf)), y)
        y = np.where(y.astype(np.float64) > hi, np.nextafter(y, np.float32(-np.inf)), y)
    y = y.astype(np.float64)
    return y if np.all(y >= lo) and np.all(y <= hi) else None


def _exact_deviation(model: ActModel, prop: Deviation, x) -> Fraction:
    """``max_j |y_j(x; rounded) - y_j(x; float)|`` over the selected outputs, exactly (logits)."""
    yq = model.exact_logits(x)
    y0 = model.network.exact_logits(x)
    return max(abs(yq[j] - y0[j]) for j in prop.selected(model.network.n_out))


def runtime_outputs(onnx_path, x) -> np.ndarray | None:
    """onnxruntime's output of ``onnx_path`` at one input (``None`` without onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - onnxruntime is in the test extra
        return None
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    return np.asarray(sess.run(None, {inp.name: np.asarray(x, dtype=np.float32).reshape(shape)})[0],
                      dtype=np.float64).reshape(-1)


def _runtime_note(onnx_path, model: ActModel, prop, x) -> str:
    if onnx_path is None:
        return ""
    y = runtime_outputs(onnx_path, x)
    if y is None:
        return "onnxruntime not installed: not re-run on the runtime"
    if np.any(np.asarray(x, dtype=np.float32).astype(np.float64) != x):
        return "x is not a float32 vector: not re-run on onnxruntime"
    if isinstance(prop, SameDecision):  # the runtime's class (a tie counts as a flip) against the float model's
        g, gf = prop.class_logits(y[None])[0], prop.class_logits(model.network.forward(x[None]))[0]
        c, top = int(np.argmax(gf)), [int(j) for j in np.flatnonzero(g == g.max())]
        what = f"class {top[0]}" if len(top) == 1 else "a tie of classes " + ", ".join(map(str, top))
        return (f"onnxruntime shows it too ({what}, float model class {c})" if top != [c]
                else f"onnxruntime does not show it (class {c}, as the float model)")
    m = float(prop.margin(model.network, y[None], model.network.forward(x[None]))[0])
    return (f"onnxruntime shows the violation too (float margin {m:.3g})" if m >= 0
            else f"onnxruntime does not show it (float margin {m:.3g})")


# ------------------------------------------------------------------------------- point inputs
def _point_bounds(model: ActModel, box, prop):
    """At a point of a piecewise-linear network: ``(x, [lo, hi] of the rounded logits, exact nominal
    logits)`` from :meth:`ActModel.interval_logits`, else ``None`` (then the noise model runs)."""
    if tuple(box.exact_lower) != tuple(box.exact_upper) or not model.network.is_piecewise_linear:
        return None
    if isinstance(prop, Deviation) and prop.space != "logit":
        return None
    x = box.snap(box.lower)  # the exact point (floats, or Fractions for decimals no float64 holds)
    lo, hi = model.interval_logits(box.lower, box.upper)  # the float box around it
    return x, lo, hi, model.network.exact_logits(x)


def _cx(x, params, margin, value, kind, note=""):
    """A counterexample at the exact point ``x`` (floats and Fractions; ``x_exact`` keeps the latter)."""
    xf = np.array([float(v) for v in x])
    x_exact = tuple(Fraction(v) for v in x) if any(Fraction(float(v)) != v for v in x) else None
    return Counterexample(xf, params, margin, value, kind=kind, note=note, x_exact=x_exact)


def _point_deviation(model: ActModel, box, prop: Deviation) -> Quantity | None:
    """Max deviation at a point: witnessed by the exactly rounded network, proved by the interval
    pass over the rounded network (only the runtime slack between them)."""
    import time

    from hybridq.result import Stats

    t0 = time.perf_counter()
    pb = _point_bounds(model, box, prop)
    if pb is None:
        return None
    x, lo, hi, y0 = pb
    sel = prop.selected(model.network.n_out)
    proved = max(max(Fraction(float(hi[j])) - y0[j], y0[j] - Fraction(float(lo[j]))) for j in sel)
    up = float(proved)
    if Fraction(up) < proved:
        up = float(np.nextafter(up, np.inf))
    w = _exact_deviation(model, prop, x)
    wf = float(w)
    if Fraction(wf) > w:
        wf = float(np.nextafter(wf, -np.inf))
    stats = Stats(cells=1)
    stats.time["total"] = time.perf_counter() - t0
    return Quantity("deviation", wf, max(up, wf), [], _cx(x, model.center, 0.0, wf, "rounded network"), stats)


def _point_verdict(model: ActModel, box, prop, onnx_path) -> Result | None:
    """At a point: robust when the interval pass proves it, not_robust when the exactly rounded
    network violates it, else ``None`` (a runtime tie within the slack: the noise model decides)."""
    import time

    from hybridq.result import Stats

    if not isinstance(prop, (Deviation, Decision)):
        return None
    t0 = time.perf_counter()
    pb = _point_bounds(model, box, prop)
    if pb is None:
        return None
    x, lo, hi, y0 = pb
    stats = Stats(cells=1)
    if isinstance(prop, Deviation):
        sel = prop.selected(model.network.n_out)
        worst = max(max(Fraction(float(hi[j])) - y0[j], y0[j] - Fraction(float(lo[j]))) for j in sel)
        proved = worst <= Fraction(prop.delta)
        bound = float(worst - Fraction(prop.delta))
    else:
        C = prop.spec_matrix(model.network.n_out)
        low = np.where(C > 0, C * lo, C * hi).sum(axis=1) if C.size else np.array([np.inf])
        low = np.nextafter(low, -np.inf) - np.abs(low) * 2.0**-50  # the sum of a few products, outward
        proved = bool(np.min(low) > prop.kappa)
        bound = float(prop.kappa - np.min(low))
    if proved:
        stats.proved_bounds = 1
        stats.time["total"] = time.perf_counter() - t0
        dev = float(worst) if isinstance(prop, Deviation) else float("nan")
        return Result("robust", prop, None, bound, stats, None, "", deviation_bound=dev)
    if prop.check_exact(model.rounded_view(), x, model.center):
        yq = np.array([float(v) for v in model.exact_logits(x)])
        xf = np.array([float(v) for v in x])
        m = float(prop.margin(model.network, yq[None], model.network.forward(xf[None]))[0])
        value = float(_exact_deviation(model, prop, x)) if isinstance(prop, Deviation) else None
        stats.refuted = 1
        stats.time["total"] = time.perf_counter() - t0
        xf = np.array([float(v) for v in x])
        cx = _cx(x, model.center, max(m, 0.0), value, "rounded network",
                 _runtime_note(onnx_path, model, prop, xf) if all(Fraction(float(v)) == v for v in x)
                 else "x is a decimal no float32 holds: not re-run on onnxruntime")
        return Result("not_robust", prop, cx, bound, stats)
    return None


# ------------------------------------------------------------------------ decision equivalence
def _same_decision_cx(model: ActModel, box, prop: SameDecision, x, onnx_path):
    """A counterexample of decision equivalence at ``x`` (snapped into the exact box) for the
    exactly rounded network, or ``None``; the float32 input next to ``x`` is tried first (the
    runtime can then re-run it)."""
    xs = [y for y in (_float32_inside(np.asarray(x, dtype=np.float64), box),) if y is not None]
    for xc in xs + [x]:
        xe = box.snap(np.asarray(xc, dtype=np.float64) if not isinstance(xc, np.ndarray) or xc.dtype != object else xc)
        if not prop.check_exact(model.rounded_view(), xe, model.center):
            continue
        xf = np.array([float(v) for v in xe])
        yq = np.array([float(v) for v in model.exact_logits(xe)])
        m = float(prop.margin(model.network, yq[None], model.network.forward(xf[None]))[0])
        exact = all(Fraction(float(v)) == v for v in xe)
        note = _runtime_note(onnx_path, model, prop, xf) if exact else \
            "x is a decimal no float32 holds: not re-run on onnxruntime"
        return _cx(xe, model.center, m if m > 0 else 0.0, None, "rounded network", note)
    return None


def _same_decision_point(model: ActModel, box, prop: SameDecision, onnx_path):
    """At a point: ``robust`` when the interval pass over the rounded network keeps the float
    model's exact class, ``not_robust`` when the exactly rounded network decides otherwise, else
    ``None`` (a runtime tie within the slack)."""
    import time

    from hybridq.result import Stats

    t0 = time.perf_counter()
    pb = _point_bounds(model, box, Decision(0))
    if pb is None:
        return None
    x, lo, hi, y0 = pb
    stats = Stats(cells=1)
    g0 = [Fraction(0), y0[0]] if len(y0) == 1 else ([-v for v in y0] if prop.sense == "min" else list(y0))
    cls = [c for c in range(len(g0)) if all(g0[c] - g0[k] > prop.kappa_exact for k in range(len(g0)) if k != c)]
    if cls:
        c = cls[0]
        G = prop.class_matrix(model.network.n_out)
        glo = np.where(G > 0, G * lo, G * hi).sum(axis=1)  # at most two nonzero terms per row: exact
        ghi = np.where(G > 0, G * hi, G * lo).sum(axis=1)
        keep = all(Fraction(float(glo[c])) > Fraction(float(ghi[j])) for j in range(len(g0)) if j != c)
    if not cls or keep:
        stats.proved_bounds = 1
        stats.time["total"] = time.perf_counter() - t0
        return Result("robust", prop, None, float("nan"), stats)
    cx = _same_decision_cx(model, box, prop, x, onnx_path)
    if cx is None:
        return None
    stats.refuted = 1
    stats.time["total"] = time.perf_counter() - t0
    return Result("not_robust", prop, cx, float("nan"), stats)


def _same_decision(model: ActModel, box, prop: SameDecision, onnx_path, method, config, progress, expanded,
                   options) -> Result:
    """Decision equivalence of the rounded deployed network and the float one on ``box``
    (:func:`hybridq.equivalence.decide_same_decision` on the noise-layer network; counterexamples
    of the exactly rounded network only)."""
    from hybridq.equivalence import class_walks, decide_same_decision, disagreement_candidates

    if (quick := _same_decision_point(model, box, prop, onnx_path)) is not None:
        return quick
    exp = model.expand(box, method) if expanded is None else expanded
    net = model.network

    def confirm(x, params):  # the noise model's parameters say nothing about the rounded network
        return _same_decision_cx(model, box, prop, x, onnx_path)

    def more(xs):
        xs = list(xs) + (class_walks(net, prop, box) if net.is_piecewise_linear else [])
        return disagreement_candidates(net.forward, model.forward, prop, box, xs)

    res = decide_same_decision(prop, net, exp.network, exp.perturbation, box, confirm, extra_candidates=more,
                               config=config, progress=progress, **options)
    if res.verdict == "unknown" and not res.message:
        res.message = "undecided"
    return res


# ----------------------------------------------------------------------------------- verify
def verify_deployed(model: ActModel, inputs, prop, *, onnx_path=None, method: str = "linear", config=None,
                    progress=None, expanded=None, **options) -> Result:
    """Decide ``prop`` for the rounded deployed network on ``inputs`` (module docstring).

    Parameters
    ----------
    model : ActModel
        From :func:`hybridq.io.onnx_quant.load_quantized_onnx` (with :func:`against`) or
        :func:`hybridq.actquant.act_model`.
    inputs : InputBox, point or (lower, upper)
    prop : Deviation | Decision | OutputConstraint
    onnx_path : path, optional
        The quantized file: a counterexample is re-run on onnxruntime and the note says whether the
        runtime shows it.
    method : str
        Bound method for the activation ranges.
    config, progress, options
        As for :func:`hybridq.verify`.
    expanded : Expanded, optional
        ``model.expand(inputs, method)`` when already at hand (it costs one bound pass per quantizer;
        otherwise it runs on the clock).

    Notes
    -----
    The timeout covers the whole call.  After a refutation of the noise model, the witness search
    (:func:`search_rounded`, :func:`climb_rounded`) gets 15 % of it (at most 3 s, taken from the
    branch and bound) and the exact re-check of candidates past the deadline is limited to the
    noise model's own witness (and its float32 neighbour); decision equivalence stops re-checking
    candidates when one more would not fit (:func:`hybridq.equivalence.decide_same_decision`).

    Returns
    -------
    Result
        Its counterexample (if any) has ``kind`` set; see the module docstring.

    Raises
    ------
    PerturbationError
        A range problem of a non-saturating quantizer (see :meth:`ActModel.expand`).
    """
    from hybridq.bab import verify

    t0 = time.perf_counter()
    box = as_input_box(inputs, model.network.n_in)
    if isinstance(prop, (Decision, SameDecision)):  # sense None: the network's (the expansion's is a plain default)
        prop = prop.resolve(model.network)
    total = _total(options, config)
    left = _clock(t0, total)
    if isinstance(prop, SameDecision):
        exp = model.expand(box, method) if expanded is None else expanded  # the ranges are on the clock
        if total is not None:
            options = {**options, "timeout": max(left(), 0.01)}
        return _same_decision(model, box, prop, onnx_path, method, config, progress, exp, options)
    if (quick := _point_verdict(model, box, prop, onnx_path)) is not None:
        return quick
    exp = model.expand(box, method) if expanded is None else expanded
    # the witness search after a refutation: 15 % of the budget (at most 3 s), taken from the branch and bound
    post = min(0.15 * total, 3.0) if total is not None else 3.0
    if total is not None:
        options = {**options, "timeout": max(left() - post, 0.01)}
    res = verify(exp.network, exp.perturbation, box, prop, config=config, progress=progress, **options)
    if res.verdict != "not_robust":
        return res
    cx = res.counterexample
    t = time.perf_counter()
    cands = [cx.x, search_rounded(model, box, prop, deadline=t + min(post, left()) / 2 if total else None)[0]]
    if isinstance(prop, Deviation) and not box.is_point and model.network.is_piecewise_linear:
        climb = min(post, left() / 2) if total is not None else post
        if climb > 0:
            cands.append(climb_rounded(model, box, prop, cands[0], climb))  # the real rounding's own landscape
    cands = [y for y in (_float32_inside(c, box) for c in cands) if y is not None] + cands  # runtime inputs first
    # the original layers' parameters of the witness (a clamp folded into a layer adds columns after
    # its own: the first n_in columns are the layer's weights)
    orig = tuple((np.asarray(cx.params[i][0])[:, :l.n_in], cx.params[i][1])
                 for i, l in zip(exp.layer_of, model.network.layers))
    kinds = [(model.center, "rounded network")]
    # witness parameters count only where the question has a parameter box of its own (a weight
    # perturbation beside act=) and they lie in it exactly: a deployed file's parameters are fixed
    # (its radius is the runtime's rounding slack), and the expansion's biases carry noise terms
    if onnx_path is None:
        from hybridq.perturbation import Perturbation

        own = Perturbation(model.center, model.radius, "deployed parameters")
        orig = own.snap_inside(orig)
        if own.contains(orig):
            kinds.append((orig, "rounded network, parameters in the box"))
    own = {id(cx.x), id(cands[0])}  # the noise model's witness (and its float32 neighbour, first)
    for xc in cands:
        if id(xc) not in own and left() <= 0:  # past the deadline: only the noise model's witness is re-checked
            continue
        xe = box.snap(xc)  # into the decimal box the user wrote (hybridq.exact)
        x = np.array([float(v) for v in xe])
        x_exact = tuple(Fraction(v) for v in xe) if any(Fraction(float(v)) != v for v in xe) else None
        for params, kind in kinds:
            view = model.rounded_view(params)
            if prop.check_exact(view, xe, params):
                yq = np.array([float(v) for v in view.exact_logits(xe, params)])
                m = float(prop.margin(model.network, yq[None], model.network.forward(x[None]))[0])
                value = None
                if isinstance(prop, Deviation):
                    value = float(_exact_deviation(ActModel(model.network, params, model.radius, model.points), prop, xe))
                note = _runtime_note(onnx_path, model, prop, x) if params is model.center else ""
                res.counterexample = Counterexample(x, params, max(m, 0.0), value, kind=kind, note=note,
                                                    x_exact=x_exact)
                return res
    res.verdict = "unknown"
    res.counterexample = None
    if res.stats.refuted > 0:  # the refuted cell stays open: the counts add up to the verdict
        res.stats.refuted -= 1
        res.stats.open += 1
    res.message = ("the noise model admits a violation (x, rounding errors) but the exactly rounded network "
                   "satisfies the property at the inputs found" + ("; " + res.message if res.message else ""))
    return res


def deviation_deployed(model: ActModel, inputs, prop: Deviation | None = None, *, tol: float = 0.1,
                       method: str = "linear", config=None, progress=None, expanded=None, search: float | None = None,
                       **options) -> Quantity:
    """The maximum deviation of the rounded deployed network from the float one, ``[witnessed, proved]``.

    ``proved`` is certified for the noise model (so for the rounded network); ``witnessed`` is the
    exact deviation of the rounded network at the best input found (rounded toward zero): the best
    of :func:`search_rounded`, the noise model's own witness, and :func:`climb_rounded` from the
    best of those for ``search`` seconds (default: 15 % of the timeout, at most 10 s, taken from
    the branch and bound's share; 3 s without a timeout).  ``expanded``: as for
    :func:`verify_deployed`.

    The timeout covers the whole call: the ranges (:meth:`ActModel.expand`, unless ``expanded`` is
    given), :func:`search_rounded` (at most half the search share), one exact evaluation of its
    best input (which also times such an evaluation), the branch and bound (what is left less the
    climb and two exact evaluations), :func:`climb_rounded` (at most half of what is left before
    the branch and bound) and the exact re-check of the other candidates, best simulated deviation
    first, only while one more evaluation fits.  What can still run past it: the branch and bound's
    round in flight at its deadline (:mod:`hybridq.bab`; on a wide box the root cell's bound pass
    and attack) beyond the two evaluations kept for it, and one exact evaluation slower than the
    first.

    Raises
    ------
    PerturbationError
        A range problem (see :meth:`ActModel.expand`).
    """
    from hybridq.quantify import quantify

    t0 = time.perf_counter()
    prop = Deviation(0.0) if prop is None else prop
    box = as_input_box(inputs, model.network.n_in)
    if (pt := _point_deviation(model, box, prop)) is not None:
        return pt
    total = _total(options, config)
    left = _clock(t0, total)
    exp = model.expand(box, method) if expanded is None else expanded  # the ranges are on the clock
    climb = search if search is not None else (min(0.15 * total, 10.0) if total else 3.0)
    net = model.network
    # one exactly re-checked witness before the branch and bound (it also times an exact evaluation)
    t = time.perf_counter()
    x_s = search_rounded(model, box, prop, deadline=t + climb / 2 if total else None)[0]
    t = time.perf_counter()
    bx = box.snap(x_s)  # a witness of the decimal box the user wrote (hybridq.exact)
    best = _exact_deviation(model, prop, bx)
    t_exact = time.perf_counter() - t
    if total:
        # the branch and bound gets what is left less the climb and two exact evaluations (its own
        # exact witness and ours); with a deadline the witness search must fit the same budget
        climb = min(climb, max(left() - 2 * t_exact, 0.0) / 2)
        options = {**options, "timeout": max(left() - climb - 2 * t_exact, 0.01)}
    q = quantify(exp.network, exp.perturbation, box, prop, "deviation", tol=tol, config=config, progress=progress,
                 **options)
    cands = [] if q.witness is None else [q.witness.x]
    if climb > 0 and not box.is_point and net.is_piecewise_linear:
        climb = min(climb, left() - t_exact)
        if climb > 0:
            starts = [x_s] + cands
            sims = [float(np.max(np.abs(model.forward(c[None]) - net.forward(c[None])))) for c in starts]
            cands.append(climb_rounded(model, box, prop, starts[int(np.argmax(sims))], climb))
    cands += [y for y in (_float32_inside(c, box) for c in [x_s] + cands) if y is not None]  # inputs a runtime takes
    # the exact re-check: best simulated deviation first, while an exact evaluation fits the budget
    # (the witness above is already exact, so past the deadline nothing more runs)
    if cands:
        sims = [float(np.max(np.abs(model.forward(c[None]) - net.forward(c[None])))) for c in cands]
        cands = [cands[i] for i in np.argsort(sims)[::-1]]
    for x in cands:
        if total and left() < t_exact:
            break
        x = box.snap(x)
        d = _exact_deviation(model, prop, x)
        if d > best:
            best, bx = d, x
    w = float(best)
    if Fraction(w) > best:
        w = float(np.nextafter(w, -np.inf))
    noise_w = q.lower
    q.lower = w
    if q.upper > w * (1 + tol):
        gap = (f"the noise model reaches {noise_w:.4g}, the rounded network {w:.4g} at the inputs found: "
               "the rest of the gap is rounding errors that the noise model lets align")
        q.message = gap + ("; " + q.message if q.message else "")
    x_exact = tuple(Fraction(v) for v in bx) if any(Fraction(float(v)) != v for v in bx) else None
    q.witness = Counterexample(np.array([float(v) for v in bx]), model.center, 0.0, w, kind="rounded network",
                               x_exact=x_exact)
    if q.stats is not None:
        q.stats.time["total"] = time.perf_counter() - t0
    return q


def fewest_act_bits(network: Network, spec: str, inputs, prop, family: str = "int", *, config=None,
                    **options) -> Quantity:
    """The fewest bits ``B`` of the activation format for which ``prop`` is proved.

    Every ``act=`` part of ``spec`` gets the format ``intB`` (``family="int"``) or ``uintB``
    (``"uint"``), options kept; the parameter parts stay.  Bisection over ``B = 2..16`` with
    :func:`verify_deployed` at each step (more bits are assumed never to hurt, as for
    ``quantify --what bits``); a step whose ranges cannot be represented without clipping (a
    :class:`~hybridq.errors.PerturbationError` without ``saturate``) counts as not proved.

    Returns
    -------
    Quantity
        ``what="bits"``: ``upper`` the fewest bits proved (``inf`` if none), ``lower`` the most bits
        not proved (``1`` if all were).

    Raises
    ------
    PerturbationError
        A family other than ``int``/``uint``, or a spec without ``act=`` parts.
    """
    import re
    import time

    from hybridq.actquant import act_model, split_act_spec
    from hybridq.errors import PerturbationError
    from hybridq.result import Stats

    fam = family.strip().lower()
    if fam not in ("int", "uint"):
        raise PerturbationError(f"activation bits: family must be int or uint, got {family!r}")
    wspec, acts = split_act_spec(spec)
    if not acts:
        raise PerturbationError("activation bits: the spec has no act= part")
    box = as_input_box(inputs, network.n_in)
    steps, stats, t0 = [], Stats(), time.perf_counter()

    def test(B: int) -> bool:
        parts = [re.sub(r"act=([^:;]+)", f"act={fam}{B}", a) for a in acts]
        sp = ";".join(([wspec] if wspec else []) + parts)
        t = time.perf_counter()
        try:
            r = verify_deployed(act_model(network, sp, box), box, prop, config=config, **options)
            verdict = r.verdict
            stats.add(r.stats)
        except PerturbationError as e:
            verdict = f"range: {str(e).splitlines()[0]}"
        steps.append({"value": B, "spec": sp, "verdict": verdict, "seconds": time.perf_counter() - t})
        return verdict == "robust"

    lo, hi = 1, 17          # lo: not proved (or below the family), hi: proved (17: none yet)
    if test(16):
        hi = 16
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if mid < 2:
                break
            if test(mid):
                hi = mid
            else:
                lo = mid
    else:
        lo = 16
    stats.time["total"] = time.perf_counter() - t0
    return Quantity("bits", float(lo), float(hi) if hi <= 16 else float("inf"), steps, stats=stats)


def load_against(float_path, quant_path) -> ActModel:
    """``against(load_network(float_path), load_quantized_onnx(quant_path))``, naming both files in errors."""
    from hybridq.io import load_network
    from hybridq.io.onnx_quant import load_quantized_onnx

    f = load_network(float_path)
    d = load_quantized_onnx(quant_path)
    try:
        return against(f, d)
    except ModelFormatError as e:
        raise ModelFormatError(f"{Path(float_path).name} vs {Path(quant_path).name}: {e}") from None
