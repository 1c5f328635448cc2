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
from hybridq.network import Layer, Network
from hybridq.properties import Decision, Deviation
from hybridq.bab.api import describe
from hybridq.result import Counterexample, Quantity, Result
from hybridq.rounded_search import climb_rounded, logit_extremes, search_rounded

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


def _float32_inside(x, box):
    """``x`` rounded to float32 values inside ``box`` (as float64), or ``None`` if the box is too thin."""
    y = np.asarray(x, dtype=np.float32)
    lo, hi = box.lower, box.upper
    for _ in range(2):
        y = np.where(y.astype(np.float64) < lo, np.nextafter(y, np.float32(np.inf)), y)
        y = np.where(y.astype(np.float64) > hi, np.nextafter(y, np.float32(-np.inf)), y)
    y = y.astype(np.float64)
    return y if np.all(y >= lo) and np.all(y <= hi) else None


class _Evaluated:
    """Both networks' exact logits at one input, evaluated once: a stand-in network for
    ``Property.check_exact`` and :func:`hybridq.report.explain_counterexample` whose
    ``exact_logits(x, params)`` / ``forward(x, params)`` are the deployed (rounded) network's for
    any ``params`` and the float model's for ``None``, whatever ``x`` (the input they were
    evaluated at)."""

    def __init__(self, net: Network, y_nom: list, y_rounded: list) -> None:
        self.net, self.y_nom, self.y_rounded = net, y_nom, y_rounded
        self.n_out, self.output = net.n_out, net.output
        self.decision_sense = net.decision_sense

    def exact_logits(self, x=None, params=None) -> list:
        return self.y_nom if params is None else self.y_rounded

    def forward(self, x=None, params=None) -> np.ndarray:
        return np.array([float(v) for v in self.exact_logits(x, params)])

    def scores(self, x=None, params=None) -> np.ndarray:
        from hybridq.network import output_transform

        return output_transform(self.forward(x, params)[None], self.output)[0]

    def exact_scores(self, x=None, params=None) -> list:
        from hybridq.actquant import _scores_of

        y = self.exact_logits(x, params)
        return y if self.output == "identity" else _scores_of(y, self.output)

    def deviation(self, prop: Deviation) -> Fraction:
        """``max_j |y_j(rounded) - y_j(float)|`` over the selected outputs (logits), exactly."""
        return max(abs(self.y_rounded[j] - self.y_nom[j]) for j in prop.selected(self.n_out))


def _evaluate(model: ActModel, x, params=None, y_nom=None) -> _Evaluated:
    """One exact evaluation of the rounded network (``params``: default the deployed ones) and,
    unless ``y_nom`` is given, of the float model at ``x``."""
    return _Evaluated(model.network, model.network.exact_logits(x) if y_nom is None else y_nom,
                      model.exact_logits(x, params))


def _exact_deviation(model: ActModel, prop: Deviation, x) -> Fraction:
    """``max_j |y_j(x; rounded) - y_j(x; float)|`` over the selected outputs, exactly (logits)."""
    return _evaluate(model, x).deviation(prop)


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


def _cx(x, params, margin, value, kind, note="", ev: _Evaluated | None = None, prop=None, spec: str = ""):
    """A counterexample at the exact point ``x`` (floats and Fractions; ``x_exact`` keeps the
    latter), completed by :func:`_complete` from ``ev`` when given."""
    xf = np.array([float(v) for v in x])
    x_exact = tuple(Fraction(v) for v in x) if any(Fraction(float(v)) != v for v in x) else None
    cx = Counterexample(xf, params, margin, value, kind=kind, note=note, x_exact=x_exact)
    if ev is not None:
        describe(cx, ev, spec, prop)
    return cx


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
    ev = _evaluate(model, x, y_nom=y0)
    w = ev.deviation(prop)
    wf = float(w)
    if Fraction(wf) > w:
        wf = float(np.nextafter(wf, -np.inf))
    stats = Stats(cells=1)
    stats.time["total"] = time.perf_counter() - t0
    return Quantity("deviation", wf, max(up, wf), [], _cx(x, model.center, 0.0, wf, "rounded network", ev=ev, prop=prop,
                                                         spec=model.name), stats)


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
    ev = _evaluate(model, x, y_nom=y0)  # the rounded network once, the float one from the bounds
    if prop.check_exact(ev, x, model.center):
        xf = np.array([float(v) for v in x])
        m = float(prop.margin(model.network, ev.forward(xf, model.center)[None], ev.forward(xf)[None])[0])
        value = float(ev.deviation(prop)) if isinstance(prop, Deviation) else None
        stats.refuted = 1
        stats.time["total"] = time.perf_counter() - t0
        cx = _cx(x, model.center, max(m, 0.0), value, "rounded network",
                 _runtime_note(onnx_path, model, prop, xf) if all(Fraction(float(v)) == v for v in x)
                 else "x is a decimal no float32 holds: not re-run on onnxruntime", ev=ev, prop=prop, spec=model.name)
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
        ev = _evaluate(model, xe)
        if not prop.check_exact(ev, xe, model.center):
            continue
        xf = np.array([float(v) for v in xe])
        m = float(prop.margin(model.network, ev.forward(xf, model.center)[None], ev.forward(xf)[None])[0])
        exact = all(Fraction(float(v)) == v for v in xe)
        note = _runtime_note(onnx_path, model, prop, xf) if exact else \
            "x is a decimal no float32 holds: not re-run on onnxruntime"
        return _cx(xe, model.center, m if m > 0 else 0.0, None, "rounded network", note, ev=ev, prop=prop,
                   spec=model.name)
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
        y_nom = None  # the float model's exact logits: once per input
        for params, kind in kinds:
            ev = _evaluate(model, xe, params, y_nom)
            y_nom = ev.y_nom
            if prop.check_exact(ev, xe, params):
                m = float(prop.margin(model.network, ev.forward(x, params)[None], ev.forward(x)[None])[0])
                value = float(ev.deviation(prop)) if isinstance(prop, Deviation) else None
                note = _runtime_note(onnx_path, model, prop, x) if params is model.center else ""
                res.counterexample = Counterexample(x, params, max(m, 0.0), value, kind=kind, note=note,
                                                    x_exact=x_exact)
                describe(res.counterexample, ev, model.name, prop)
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
                       extremes: float | None = None, **options) -> Quantity:
    """The maximum deviation of the rounded deployed network from the float one, ``[witnessed, proved]``.

    ``proved`` is certified for the noise model (so for the rounded network); ``witnessed`` is the
    exact deviation of the rounded network at the best input found (rounded toward zero): the best
    of :func:`search_rounded`, the inputs of :func:`logit_extremes` (the float logits' extremes
    beyond the deployed output quantizer's range, by MILP, for ``extremes`` seconds; default: 30 %
    of the timeout, at most 30 s; 20 s without a timeout), the noise model's own witness, and
    :func:`climb_rounded` from the best of those for ``search`` seconds (default: 15 % of the
    timeout, at most 10 s; 3 s without a timeout); these shares are taken from the branch and
    bound's.  ``expanded``: as for :func:`verify_deployed`.

    The timeout covers the whole call: the ranges (:meth:`ActModel.expand`, unless ``expanded`` is
    given), :func:`search_rounded` (at most half the search share), one exact evaluation of its
    best input (which also times such an evaluation), :func:`logit_extremes` (at most a third of
    what is left then), the branch and bound (what is left less the climb and two exact
    evaluations), :func:`climb_rounded` (at most half of what is left before the branch and
    bound) and the exact re-check of the other candidates, best simulated deviation first, only
    while one more evaluation fits.  What can still run past it: the branch and bound's
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
    best_ev = _evaluate(model, bx)
    best = best_ev.deviation(prop)
    t_exact = time.perf_counter() - t
    ext = extremes if extremes is not None else (min(0.3 * total, 30.0) if total else 20.0)
    if total:
        ext = min(ext, max(left() - 2 * t_exact, 0.0) / 3)
    found = logit_extremes(model, box, prop, ext, starts=[x_s]) if ext > 0 else []
    if total:
        # the branch and bound gets what is left less the climb and two exact evaluations (its own
        # exact witness and ours); with a deadline the witness search must fit the same budget
        climb = min(climb, max(left() - 2 * t_exact, 0.0) / 2)
        options = {**options, "timeout": max(left() - climb - 2 * t_exact, 0.01)}
    q = quantify(exp.network, exp.perturbation, box, prop, "deviation", tol=tol, config=config, progress=progress,
                 **options)
    cands = ([] if q.witness is None else [q.witness.x]) + found
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
        ev = _evaluate(model, x)
        d = ev.deviation(prop)
        if d > best:
            best, bx, best_ev = d, x, ev
    w = float(best)
    if Fraction(w) > best:
        w = float(np.nextafter(w, -np.inf))
    noise_w = q.lower
    q.lower = w
    if q.upper > w * (1 + tol):
        gap = (f"the noise model reaches {noise_w:.4g}, the rounded network {w:.4g} at the inputs found: "
               "the rest of the gap is rounding errors that the noise model lets align") if noise_w > w else \
            (f"the rounded network reaches {w:.4g} at the inputs found; the proof holds for every rounding error "
             "the noise model admits")
        q.message = gap + ("; " + q.message if q.message else "")
    q.witness = _cx(bx, model.center, 0.0, w, "rounded network", ev=best_ev, prop=prop, spec=model.name)
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
