"""Activation quantization: the network that really runs, with every activation rounded.

A deployed int8 (or fp16) model rounds more than its parameters: the input, each layer's output
and, in some graphs, the accumulator before the bias are quantized too.  A *quantization point*
``Q`` acts on one tensor ``v`` (DESIGN.md §1, "optional activation quantization")::

    affine (intB, uintB, qM.N, a runtime's QuantizeLinear):
        Q(v) = s (clip(round(v / s) + z, qmin, qmax) - z)        round half to even
    dynamic (onnxruntime's DynamicQuantizeLinear; the scale follows the tensor itself):
        s = (max(0, max v) - min(0, min v)) / (qmax - qmin),  z = clip(round(qmin - min(0, min v) / s))
    float (fp16, bf16, fp8_*, float:e=,m=):
        Q(v) = fl(v)  (round to nearest even, subnormals; overflow is an error)

Enclosure (no kernel change).  On the representable range ``[lo - s/2, hi + s/2]``
(``lo = s (qmin - z)``, ``hi = s (qmax - z)``) round to nearest errs by at most ``s/2``
(Higham, 2nd ed., §2.1); beyond it a saturating quantizer returns ``lo`` or ``hi``, an error of at
most ``max(hu - hi, lo - hl)`` for values in ``[hl, hu]``.  A float format errs by at most
``u |v| + 2^(emin - p)`` (``u = 2^-p``).  These per-neuron noises are modelled *exactly as
per-neuron noise terms of the bound pass*:

* a point on a layer's pre-activation (or on the accumulator before the bias) adds its radius
  to that layer's bias radius, the per-neuron noise ``e_k`` of DESIGN.md §2;
* a point on a layer's output (or on the input) becomes a *noise layer* inserted after it:
  ``h -> I h + 0`` with weight radius ``u`` on the diagonal (floats) and bias radius
  ``s/2`` (fixed point), activation ``identity``.  Its nominal parameters are the identity, so
  the nominal network is unchanged, and the linear relaxation keeps every noise term as one
  variable that the following layers back-substitute through (the correlation of ``W a`` over
  the neurons of the next layer is kept, which an enlarged bias of the next layer would lose).

Ranges (clipping and dynamic scales) depend on the input set: :meth:`ActModel.expand` computes
certified bounds of every quantized tensor over the input box (:func:`hybridq.bounds.bounds`,
``linear``), layer by layer, and either raises (``saturate=False``: a value may leave the range)
or enlarges that neuron's radius to the clipping error (``saturate=True``, the runtime's
behaviour).  A point's radius depends only on earlier points, so ``n_points + 1`` bound passes
reach the fixed point.

Runtime arithmetic.  ``rel`` (per point) adds a relative slack to the rounding radius
(``s (1/2 + rel)``) for a runtime that divides by ``s`` in float32; :attr:`ActModel.radius`
holds the relative radius that encloses a runtime's float32 dot products and requantization (see
:mod:`hybridq.io.onnx_quant`).

The *really rounded* network (:meth:`ActModel.exact_logits`) applies every ``Q`` exactly in
:class:`fractions.Fraction` arithmetic: a counterexample of that network is a counterexample of
the deployed model, not only of the noise model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

from hybridq.errors import PerturbationError
from hybridq.exact import float_down, float_up
from hybridq.formats import FloatFormat, parse_format
from hybridq.network import Layer, Network, _act_fraction, _exact_affine, activate

__all__ = ["QuantPoint", "ActModel", "Expanded", "parse_act_spec", "split_act_spec", "round_half_even"]

#: where a point acts: the input, a layer's accumulator before the bias, its pre-activation, its output
WHERE = ("input", "mid", "pre", "post")


def round_half_even(v: Fraction) -> int:
    """The integer nearest to ``v``, ties to even (exact)."""
    f = math.floor(v)
    d = v - f
    if d > Fraction(1, 2) or (d == Fraction(1, 2) and f % 2 == 1):
        return f + 1
    return f


def _up(a):
    return np.nextafter(np.asarray(a, dtype=np.float64), np.inf)


@dataclass(frozen=True)
class QuantPoint:
    """One activation quantizer.

    Parameters
    ----------
    where : {"input", "mid", "pre", "post"}
        The network input (after its normalization), layer ``layer``'s accumulator ``W h`` before
        the bias, its pre-activation ``z``, or its output ``act(z)``.
    layer : int
        0-based layer index (``-1`` for ``input``).
    kind : {"affine", "dynamic", "float"}
    scale : float or (n,) float64
        Quantization step ``s > 0`` (affine; one per tensor or per neuron).
    zero_point : int or (n,) int
    qmin, qmax : int
        The integer range.
    fmt : FloatFormat or None
        For ``kind="float"``.
    saturate : bool
        A value outside the range: the clip is modelled (``True``) or an error (``False``).
    rel : float
        Relative slack of the rounding radius, ``s (1/2 + rel)`` (runtime float32 division).
    name : str
        Where it came from (an ONNX tensor name or a spec part), for messages.
    """

    where: str
    layer: int
    kind: str = "affine"
    scale: object = 1.0
    zero_point: object = 0
    qmin: int = -128
    qmax: int = 127
    fmt: FloatFormat | None = None
    saturate: bool = False
    rel: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.where not in WHERE:
            raise ValueError(f"where must be one of {WHERE}, got {self.where!r}")
        if self.kind not in ("affine", "dynamic", "float"):
            raise ValueError(f"unknown quantization kind {self.kind!r}")
        if self.kind == "float" and self.fmt is None:
            raise ValueError("a float quantization point needs its format")
        if self.kind == "affine":
            s = np.asarray(self.scale, dtype=np.float64)
            if not np.all(np.isfinite(s)) or np.any(s <= 0):
                raise PerturbationError(f"{self.label}: scale must be finite and > 0, got {self.scale!r}")
            z = np.asarray(self.zero_point)
            if np.any(z < self.qmin) or np.any(z > self.qmax):
                raise PerturbationError(f"{self.label}: zero point {self.zero_point!r} outside [{self.qmin}, {self.qmax}]")

    @property
    def label(self) -> str:
        at = "the input" if self.where == "input" else f"layer {self.layer + 1} " + {
            "mid": "accumulator", "pre": "pre-activation", "post": "output"}[self.where]
        return f"activation quantization of {at}" + (f" ({self.name})" if self.name else "")

    def range(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` of the representable values, shape ``(n,)`` (affine only)."""
        s = np.broadcast_to(np.asarray(self.scale, dtype=np.float64), (n,))
        z = np.broadcast_to(np.asarray(self.zero_point, dtype=np.float64), (n,))
        return s * (self.qmin - z), s * (self.qmax - z)

    # ------------------------------------------------------------ exact rounding
    def exact(self, v: list) -> list:
        """``Q(v)`` for one tensor of Fractions, exactly (see the module docstring).

        Raises
        ------
        PerturbationError
            A float format overflows, or (``saturate=False``) a value leaves the range.
        """
        if self.kind == "float":
            return [_round_float(t, self.fmt, self.label, j) for j, t in enumerate(v)]
        n = len(v)
        if self.kind == "dynamic":
            mn, mx = min(min(v), Fraction(0)), max(max(v), Fraction(0))
            if mx == mn:
                return list(v)
            s = (mx - mn) / (self.qmax - self.qmin)
            z = min(max(round_half_even(self.qmin - mn / s), self.qmin), self.qmax)
            ss, zz = [s] * n, [z] * n
        else:
            ss = [Fraction(float(a)) for a in np.broadcast_to(np.asarray(self.scale, dtype=np.float64), (n,))]
            zz = [int(a) for a in np.broadcast_to(np.asarray(self.zero_point), (n,))]
        out = []
        for j, (t, s, z) in enumerate(zip(v, ss, zz)):
            k = round_half_even(t / s) + z
            if not self.qmin <= k <= self.qmax:
                if not self.saturate and self.kind == "affine":
                    raise PerturbationError(f"{self.label}: neuron {j} value {float(t)!r} is outside the range "
                                            f"[{float(s * (self.qmin - z))!r}, {float(s * (self.qmax - z))!r}]")
                k = min(max(k, self.qmin), self.qmax)
            out.append(s * (k - z))
        return out

    def simulate(self, v: np.ndarray) -> np.ndarray:
        """``Q(v)`` in float64 for a batch ``(m, n)`` (for attacks; not a proof)."""
        if self.kind == "float":
            q, _ = _float_round_nocheck(v, self.fmt)
            return q
        if self.kind == "dynamic":
            mn = np.minimum(v.min(axis=1, keepdims=True), 0.0)
            mx = np.maximum(v.max(axis=1, keepdims=True), 0.0)
            s = np.where(mx > mn, (mx - mn) / (self.qmax - self.qmin), 1.0)
            z = np.clip(np.rint(self.qmin - mn / s), self.qmin, self.qmax)
        else:
            s = np.asarray(self.scale, dtype=np.float64)
            z = np.asarray(self.zero_point, dtype=np.float64)
        k = np.clip(np.rint(v / s) + z, self.qmin, self.qmax)
        return s * (k - z)


def _round_float(t: Fraction, fmt: FloatFormat, label: str, j: int) -> Fraction:
    """Round a Fraction to ``fmt``, nearest even, exactly (subnormals below ``2^emin``)."""
    if t == 0:
        return Fraction(0)
    a = abs(t)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    if fmt.emin is not None:
        e = max(e, fmt.emin)
    sp = Fraction(2) ** (e - fmt.p + 1)
    q = round_half_even(t / sp) * sp
    if fmt.max_finite is not None and abs(q) > Fraction(fmt.max_finite):
        raise PerturbationError(f"{label}: neuron {j} value {float(t)!r} overflows {fmt.name}")
    return q


def _float_round_nocheck(v: np.ndarray, fmt: FloatFormat):
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            return fmt.round(v, "activation")
        except PerturbationError:
            return np.full_like(v, np.nan), None


# ------------------------------------------------------------------------------------ model
@dataclass(frozen=True)
class Expanded:
    """A network with noise layers and its parameter box (see :meth:`ActModel.expand`).

    Attributes
    ----------
    network : Network
        The nominal network with one identity layer per ``input``/``post`` point.
    perturbation : Perturbation
        Centre: the deployed parameters and the identity layers; radii: the deployed radii plus
        the quantization noise (fixed point: bias radius; floats: diagonal weight radius too).
        Its ``pre_clip``: the clamps' ranges as bounds of the perturbed pre-activations (the
        layer that combines a clamp's rows, or the layer it was folded into), ``None`` without
        clamps.
    layer_of : tuple of int
        Index in ``network.layers`` of each original layer.
    passes : int
        Bound passes spent on ranges.
    saturated : list of str
        Points whose radius was enlarged by clipping (for reports).
    """

    network: Network
    perturbation: object
    layer_of: tuple
    passes: int = 0
    saturated: list = field(default_factory=list)


@dataclass(frozen=True)
class ActModel:
    """A network whose activations are quantized: the model that really runs.

    Parameters
    ----------
    network : Network
        The nominal (float) network ``theta0``; deviation is measured against it.
    center : Params
        The deployed parameters (the quantized copy, or ``theta0``).
    radius : Params
        Parameter radii around ``center`` (a weight perturbation, or a runtime's relative slack).
    points : tuple of QuantPoint
        At most one per ``(where, layer)``.
    name : str
    out_rel : float
        Relative rounding of the returned logits (``2^-24``: a runtime returns float32), enclosed as
        ``|y| out_rel + 2^-149`` more on the last layer's bias radius.
    """

    network: Network
    center: tuple
    radius: tuple
    points: tuple
    name: str = "deployed"
    out_rel: float = 0.0

    def __post_init__(self) -> None:
        seen = set()
        pts = []
        for p in self.points:
            key = (p.where, p.layer)
            if key in seen:
                raise PerturbationError(f"two activation quantizers on the same tensor: {p.label}")
            if p.where != "input" and not 0 <= p.layer < len(self.network.layers):
                raise PerturbationError(f"{p.label}: the network has layers 1..{len(self.network.layers)}")
            seen.add(key)
            pts.append(p)
        order = {"input": 0, "mid": 1, "pre": 2, "post": 3}
        pts.sort(key=lambda p: (p.layer, order[p.where]))
        object.__setattr__(self, "points", tuple(pts))

    def point(self, where: str, layer: int = -1):
        for p in self.points:
            if p.where == where and p.layer == layer:
                return p
        return None

    # --------------------------------------------------------------- the rounded net
    def exact_logits(self, x, params=None) -> list:
        """Logits of the really rounded network at one input, in exact Fractions.

        ``params`` (default ``center``) are the parameters of the original layers.  Only
        piecewise-linear networks (relu, identity, leaky relu, hardtanh).

        Raises
        ------
        PerturbationError
            A value leaves a non-saturating range or overflows a float format.
        UnsupportedLayerError
            Sigmoid or tanh.
        """
        net = self.network
        p = self.center if params is None else params
        from hybridq.network import exact_input

        x = exact_input(x, net.n_in)  # floats and Fractions (a decimal input end that is no double)
        h = net.exact_normalized(x)
        if (q := self.point("input")) is not None:
            h = q.exact(h)
        for k, (l, (W, b)) in enumerate(zip(net.layers, p)):
            W = np.asarray(W, dtype=np.float64)
            z = _exact_affine(W, np.zeros(W.shape[0]), h)  # W h exactly; the bias comes after "mid"
            if (q := self.point("mid", k)) is not None:
                z = q.exact(z)
            z = [a + Fraction(float(c)) for a, c in zip(z, np.asarray(b, dtype=np.float64))]
            if (q := self.point("pre", k)) is not None:
                z = q.exact(z)
            h = [_act_fraction(v, l.activation, l.alpha) for v in z]
            if (q := self.point("post", k)) is not None:
                h = q.exact(h)
        return net.exact_denormalized(h)

    def forward(self, X, params=None, acc1=None) -> np.ndarray:
        """Logits of the rounded network in float64 for a batch ``(m, n_in)`` (attacks only).

        ``acc1 (m, n_1)``, optional: the first layer's accumulator ``W_1 h_0`` (``h_0`` the
        normalized, quantized input) when the caller already has it (``X`` is then unused): a
        search that moves one input coordinate updates it in ``O(n_1)``."""
        net = self.network
        p = self.center if params is None else params
        if acc1 is None:
            h = net.normalize(np.atleast_2d(np.asarray(X, dtype=np.float64)))
            if (q := self.point("input")) is not None:
                h = q.simulate(h)
        for k, (l, (W, b)) in enumerate(zip(net.layers, p)):
            z = acc1 if k == 0 and acc1 is not None else h @ np.asarray(W).T
            if (q := self.point("mid", k)) is not None:
                z = q.simulate(z)
            z = z + b
            if (q := self.point("pre", k)) is not None:
                z = q.simulate(z)
            h = activate(z, l.activation, l.alpha)
            if (q := self.point("post", k)) is not None:
                h = q.simulate(h)
        return h * net.output_std + net.output_mean

    def interval_logits(self, lower, upper) -> tuple[np.ndarray, np.ndarray]:
        """Certified bounds of the rounded network's logits over an input box, quantizers included.

        Interval arithmetic on the rounded network itself: every quantizer is monotone, so the
        image of ``[a, b]`` is ``[Q(a), Q(b)]``, computed exactly (Fractions), after widening by the
        runtime slack ``rel * s``; dynamic quantizers use their noise bound; the parameters range
        over ``center +- radius``.  Dot products are widened by ``gamma_{n+2}`` (Higham, 2nd ed.,
        §3.1) and rounded outward.  Tight for a point or a very small box (the rounding then
        collapses most intervals onto one grid point); loose for wide boxes (no correlation).

        Returns
        -------
        lo, hi : (n_out,) float64

        Raises
        ------
        PerturbationError
            An interval end leaves the range of a non-saturating affine quantizer (as
            :meth:`expand` does), or a float format overflows.
        """
        net = self.network
        dn = lambda a: np.nextafter(a, -np.inf)  # noqa: E731
        x1 = net.normalize(np.asarray(lower, dtype=np.float64)[None])[0]
        x2 = net.normalize(np.asarray(upper, dtype=np.float64)[None])[0]
        lo, hi = np.minimum(x1, x2), np.maximum(x1, x2)
        for _ in range(4):
            lo, hi = dn(lo), _up(hi)
        if (q := self.point("input")) is not None:
            lo, hi = _q_interval(q, lo, hi)
        for k, (l, (W, b), (RW, rb)) in enumerate(zip(net.layers, self.center, self.radius)):
            W, b, RW, rb = (np.asarray(a, dtype=np.float64) for a in (W, b, RW, rb))
            lo, hi = _affine_interval(W, RW, lo, hi)
            if (q := self.point("mid", k)) is not None:
                lo, hi = _q_interval(q, lo, hi)
            lo, hi = dn(lo + dn(b - rb)), _up(hi + _up(b + rb))
            if (q := self.point("pre", k)) is not None:
                lo, hi = _q_interval(q, lo, hi)
            lo, hi = activate(lo, l.activation, l.alpha), activate(hi, l.activation, l.alpha)
            if l.activation not in ("relu", "identity", "hardtanh"):
                for _ in range(4):
                    lo, hi = dn(lo), _up(hi)
            if (q := self.point("post", k)) is not None:
                lo, hi = _q_interval(q, lo, hi)
        if self.out_rel:
            mag = np.maximum(np.abs(lo), np.abs(hi))
            e = _up(_up(mag * self.out_rel) + 2.0**-149)
            lo, hi = dn(lo - e), _up(hi + e)
        s, m = net.output_std, net.output_mean
        return dn(dn(lo * s) + m), _up(_up(hi * s) + m)

    def rounded_view(self, params=None) -> "RoundedView":
        """A network-like object whose ``exact_logits(x, params)`` is the rounded network for any
        non-``None`` params and the nominal network for ``None`` (for ``Property.check_exact``)."""
        return RoundedView(self, self.center if params is None else params)

    # ----------------------------------------------------------------- enclosure
    def expand(self, inputs, method: str = "linear") -> Expanded:
        """The noise-layer network and parameter box enclosing the rounded network on ``inputs``.

        Built quantizer by quantizer: the range of each quantized tensor is bounded by one bound
        pass over the network built so far (a prefix of the final one, so its bounds are sound for
        the final one too).  A quantizer on the input or on a layer's output (or pre-activation of
        an identity layer) whose range may be left gets, when it saturates, two more layers that
        model the clip exactly: ``Q(h)`` lies in ``{clamp(h + a, lo, hi) : |a| <= r}`` for every
        ``h`` (inside the range by the rounding bound, beyond it because ``h + a`` is beyond too),
        and ``clamp(v, lo, hi) = relu(v + K) - K - relu(v - hi) + relu(lo - v)`` for ``v >= -K``
        (a relu layer with the pass-through and the clipped neurons, then an identity layer
        combining them; in the nominal network the clip rows have bias ``-M`` below every
        nominal value, so the nominal network stays the float one).  ``K`` and ``M`` are powers of
        two.  A quantizer on an accumulator or on the pre-activation of a nonlinear layer whose
        range may be left gets its radius enlarged by the clipping error instead.

        Parameters
        ----------
        inputs : InputBox (or anything :func:`hybridq.inputs.as_input_box` takes)
        method : str
            Bound method for the ranges.

        Returns
        -------
        Expanded

        Raises
        ------
        PerturbationError
            ``saturate=False`` and a value may leave its range (naming layer, neuron and range),
            or a float format may overflow.
        """
        from hybridq.inputs import as_input_box

        net = self.network
        box = as_input_box(inputs, net.n_in)
        b = _Builder(net, box, method)
        post = {p.layer: p for p in self.points if p.where == "post"}
        pre = {p.layer: p for p in self.points if p.where == "pre"}
        for k, l in enumerate(net.layers):  # a pre-activation quantizer of an identity layer quantizes its output
            if k in pre and l.activation == "identity" and k not in post:
                post[k] = pre.pop(k)
        q_in = self.point("input")
        r_in = _input_radius(q_in, net, box) if q_in is not None else None
        if q_in is not None and r_in is None:
            b.quantize_output(q_in, net.n_in)
        layer_of = []
        for k, (l, (W, bias), (RW, rb)) in enumerate(zip(net.layers, self.center, self.radius)):
            W = np.asarray(W, dtype=np.float64)
            bias = np.asarray(bias, dtype=np.float64)
            RW = np.asarray(RW, dtype=np.float64)
            rb = np.asarray(rb, dtype=np.float64)
            if k == 0 and r_in is not None:
                rb = _up(rb + _dot_up(_up(np.abs(W) + RW), r_in))
            inner = [q for q in (self.point("mid", k), pre.get(k)) if q is not None]
            for q in inner:
                if q.kind == "float":  # Q(z) = z (1 + d) + e: a relative radius on the row
                    u = 2.0 ** -q.fmt.p
                    RW = _up(RW + _up(u * _up(np.abs(W) + RW)))
                    rb = _up(rb + _up(u * _up(np.abs(bias) + rb)))
            i = b.add(l, [W, bias], [RW, rb])
            layer_of.append(i)
            for q in inner:
                b.quantize_inner(q, i)
            if k in post:
                b.quantize_output(post[k], l.n_out)
        enet = b.network(final=True)
        from hybridq.perturbation import Perturbation

        if self.out_rel:
            from hybridq.bounds import bounds

            pert = b.perturbation("activation quantization")
            ob = bounds(enet, pert, box, method=method)
            b.passes += 1
            mag = np.maximum(np.abs(ob.pre_lo[-1][0]), np.abs(ob.pre_hi[-1][0]))
            b.radius[-1][1] = _up(b.radius[-1][1] + _up(_up(mag * self.out_rel) + 2.0**-149))
        pert = b.perturbation("activation quantization")
        return Expanded(enet, pert, tuple(layer_of), b.passes, b.saturated)


class _Builder:
    """The expanded network under construction (see :meth:`ActModel.expand`)."""

    def __init__(self, net: Network, box, method: str) -> None:
        self.net, self.box, self.method = net, box, method
        self.layers: list = []
        self.center: list = []
        self.radius: list = []
        self.passes = 0
        self.saturated: list = []
        self.pending = None
        #: layer index -> what bounds its perturbed pre-activation whatever the input (a clamp's range):
        #: ("base", lo, hi): ``z' in [lo, hi] +- its bias radius`` (weight radius 0); ("fold", lo, hi,
        #: W, b, RWP, umax): ``z' = W c + b + e`` with ``c in [lo, hi]``, ``|e| <= RWP umax + bias radius``
        self.clip: dict = {}

    def add(self, layer: Layer, center, radius) -> int:
        if self.pending is not None:  # fold a clamp's combination [I, -E_C] into this layer
            P, delta, clamp = self.pending
            self.pending = None
            W0, W, RW = layer.W @ P, np.asarray(center[0]) @ P, np.asarray(radius[0]) @ np.abs(P)
            rb = np.asarray(radius[1], dtype=np.float64)
            if np.any(delta):
                rb = _up(rb + _dot_up(_up(np.abs(center[0]) + radius[0]), delta))
            layer = Layer(W0, layer.b, layer.activation, layer.alpha)
            if clamp is not None:  # z' = center W (P u) + b + e: P u is the clamp's output
                clo, chi, umax = clamp
                self.clip[len(self.layers)] = ("fold", clo, chi, np.asarray(center[0], dtype=np.float64),
                                               np.asarray(center[1], dtype=np.float64), _up(RW), umax)
            center, radius = [W, center[1]], [RW, rb]
        self.layers.append(layer)
        self.center.append([np.asarray(center[0], dtype=np.float64), np.asarray(center[1], dtype=np.float64)])
        self.radius.append([np.asarray(radius[0], dtype=np.float64), np.array(radius[1], dtype=np.float64)])
        return len(self.layers) - 1

    def network(self, final: bool = False) -> Network:
        n = self.net
        if final and self.pending is not None:  # a clamp after the last layer: its combination as a layer
            P, delta, clamp = self.pending
            self.pending = None
            i = self.add(Layer(P, np.zeros(P.shape[0]), "identity"), [P, np.zeros(P.shape[0])],
                         [np.zeros(P.shape), delta])
            if clamp is not None:
                self.clip[i] = ("base", clamp[0], clamp[1])
        if final:
            return Network(tuple(self.layers), n.output, n.input_mean, n.input_std, n.input_lower, n.input_upper,
                           n.output_mean, n.output_std, n.name)
        return Network(tuple(self.layers), "identity", n.input_mean, n.input_std, n.input_lower, n.input_upper)

    def pre_clip(self):
        """``(lo, hi)`` over all layers' neurons: the clamps' ranges as bounds of the perturbed
        pre-activations (see :attr:`clip`; outward rounded), ``-inf``/``inf`` elsewhere; ``None``
        when there are none.  Valid for every input of the box (the clamp bounds its output
        whatever its input) and every parameter of the box built so far."""
        if not self.clip:
            return None
        lo = [np.full(c[1].shape[0], -np.inf) for c in self.center]
        hi = [np.full(c[1].shape[0], np.inf) for c in self.center]
        for i, c in self.clip.items():
            rb = self.radius[i][1]
            if c[0] == "base":
                lo[i], hi[i] = np.nextafter(c[1] - rb, -np.inf), _up(c[2] + rb)
            else:
                _, clo, chi, W, b, RWP, umax = c
                a, z = _affine_interval(W, np.zeros_like(W), clo, chi)
                e = _up(_dot_up(RWP, umax) + rb)
                lo[i] = np.nextafter(np.nextafter(a + b, -np.inf) - e, -np.inf)
                hi[i] = _up(_up(z + b) + e)
        return np.concatenate(lo), np.concatenate(hi)

    def perturbation(self, spec: str):
        from hybridq.perturbation import Perturbation

        return Perturbation(tuple(map(tuple, self.center)), tuple(map(tuple, self.radius)), spec,
                            pre_clip=self.pre_clip())

    def bounds(self):
        from hybridq.bounds import bounds

        pert = self.perturbation("prefix")
        self.passes += 1
        return bounds(self.network(), pert, self.box, method=self.method)

    def quantize_inner(self, q: QuantPoint, i: int) -> None:
        """A quantizer on layer ``i``'s accumulator (before the bias) or pre-activation: bias radius."""
        ob = self.bounds()
        lo, hi = ob.pre_lo[i][0], ob.pre_hi[i][0]
        if q.where == "mid":  # the accumulator W h = z - b, the bias and its radius removed
            c, r0 = self.center[i][1], self.radius[i][1]
            lo = np.nextafter(np.nextafter(lo - c, -np.inf) + r0, -np.inf)
            hi = _up(_up(hi - c) - r0)
            hi = np.maximum(hi, lo)
        r, msg = _radius(q, lo, hi)
        if msg and not q.saturate:
            raise PerturbationError(msg)
        if msg:
            self.saturated.append(q.label)
        self.radius[i][1] = _up(self.radius[i][1] + r)

    def quantize_output(self, q: QuantPoint, n: int) -> None:
        """A quantizer on the current output (or the input): a noise layer, and clamp layers if needed."""
        eye = np.eye(n)
        rw = np.zeros((n, n))
        if q.kind == "float":
            np.fill_diagonal(rw, 2.0 ** -q.fmt.p)
        i = self.add(Layer(eye, np.zeros(n), "identity"), [eye, np.zeros(n)], [rw, np.zeros(n)])
        ob = self.bounds()  # radius 0 for now: the noise layer's pre-activation is the tensor itself
        lo, hi = ob.pre_lo[i][0], ob.pre_hi[i][0]
        nlo, nhi = ob.nom_pre_lo[i][0], ob.nom_pre_hi[i][0]
        r = _radius(q, lo, hi)[0] if q.kind != "affine" else _up(np.broadcast_to(
            np.asarray(q.scale, dtype=np.float64), (n,)) * (0.5 + q.rel))
        if q.kind != "affine":
            self.radius[i][1] = r
            return
        rlo, rhi = q.range(n)
        up = np.flatnonzero(hi > rhi + r)
        dn = np.flatnonzero(lo < rlo - r)
        if (up.size or dn.size) and not q.saturate:
            raise PerturbationError(_radius(q, lo, hi)[1])
        if not (up.size or dn.size):
            self.radius[i][1] = r
            return
        self.saturated.append(q.label)
        self.radius[i][1] = r
        top = float(np.max(np.abs(np.concatenate([rlo, rhi]))))
        # clip levels s (qmin - z), s (qmax - z) that float64 rounds: that error after the clamp
        delta = np.zeros(n)
        sc = np.broadcast_to(np.asarray(q.scale, dtype=np.float64), (n,))
        zc = np.broadcast_to(np.asarray(q.zero_point), (n,))
        for j in np.concatenate([up, dn]):
            for lev, k in ((rhi[j], q.qmax), (rlo[j], q.qmin)):
                err = abs(Fraction(float(lev)) - Fraction(float(sc[j])) * (k - int(zc[j])))
                if err:
                    delta[j] = max(delta[j], float(_up(float(err))))
        prev = self.layers[i - 1] if i > 0 else None
        if prev is not None and prev.activation == "relu" and not dn.size and np.all(rlo <= 0):
            # h >= 0 and 0 is a grid point, so Q(h) = clamp(h + a, lo, hi) = relu(h + a) - relu(h + a - hi):
            # the noise layer itself becomes that relu layer (the clip rows with their own noise, a
            # superset), and its combination [I, -E_C] is folded into the next layer
            self.layers.pop()
            self.center.pop()
            self.radius.pop()
            m = n + up.size
            Wc = np.zeros((m, n))
            Wc[np.arange(n), np.arange(n)] = 1.0
            Wc[n + np.arange(up.size), up] = 1.0
            M = _pow2_above(max(float(np.max(np.abs(nhi))), top, 1e-300))
            bc = np.concatenate([np.zeros(n), -rhi[up]])
            b0 = np.concatenate([np.zeros(n), np.full(up.size, -M)])
            self.add(Layer(Wc, b0, "relu"), [Wc, bc], [np.zeros((m, n)), np.concatenate([r, r[up]])])
            P = np.zeros((n, m))
            P[np.arange(n), np.arange(n)] = 1.0
            P[up, n + np.arange(up.size)] = -1.0
            # what the next layer sees, P u = relu(h + a1) - relu(h + a2 - hi) on the clipped rows (two
            # noises: within 2 r of clamp(h + a1, 0, hi), which is 1-Lipschitz), relu(h + a1) elsewhere
            lo_a, hi_a = np.maximum(np.nextafter(lo - r, -np.inf), 0.0), np.maximum(_up(hi + r), 0.0)
            clo, chi = lo_a.copy(), hi_a.copy()
            r2 = _up(2.0 * r[up])
            clo[up] = np.nextafter(np.minimum(lo_a[up], rhi[up]) - r2, -np.inf)
            chi[up] = _up(np.minimum(hi_a[up], rhi[up]) + r2)
            umax = np.concatenate([hi_a, np.maximum(_up(hi_a[up] - rhi[up]), 0.0)])
            self.pending = (P, delta, (clo, chi, umax))
            return
        vmin = min(float(np.min(lo - r)), float(np.min(nlo)))
        K = _pow2_above(max(0.0, -vmin)) if vmin < 0 else 0.0
        M = _pow2_above(max(float(np.max(np.abs(nhi))), float(np.max(np.abs(nlo))), top, 1e-300))
        m = n + up.size + dn.size
        Wc = np.zeros((m, n))
        Wc[np.arange(n), np.arange(n)] = 1.0
        Wc[n + np.arange(up.size), up] = 1.0
        Wc[n + up.size + np.arange(dn.size), dn] = -1.0
        bc = np.concatenate([np.full(n, K), -rhi[up], rlo[dn]])
        b0 = np.concatenate([np.full(n, K), np.full(up.size + dn.size, -M)])
        self.add(Layer(Wc, b0, "relu"), [Wc, bc], [np.zeros((m, n)), np.zeros(m)])
        Wm = np.zeros((n, m))
        Wm[np.arange(n), np.arange(n)] = 1.0
        Wm[up, n + np.arange(up.size)] = -1.0
        Wm[dn, n + up.size + np.arange(dn.size)] = 1.0
        i = self.add(Layer(Wm, np.full(n, -K), "identity"), [Wm, np.full(n, -K)], [np.zeros((n, m)), delta])
        # its output is clamp(v + a, lo, hi) exactly (one noise a, |a| <= r), v in [lo, hi] of the tensor
        # (monotone in v + a: the clamp of the ends; no level where that neuron has no clip row)
        L = np.full(n, -np.inf)
        U = np.full(n, np.inf)
        L[dn], U[up] = rlo[dn], rhi[up]
        self.clip[i] = ("base", np.minimum(np.maximum(np.nextafter(lo - r, -np.inf), L), U),
                        np.minimum(np.maximum(_up(hi + r), L), U))


def _dot_up(A: np.ndarray, r: np.ndarray) -> np.ndarray:
    """An upper bound of ``A @ r`` for nonnegative ``A (m, n)``, ``r (n,)``: the float64 sum of ``n``
    nonnegative terms errs by at most ``gamma_n`` relative (Higham, 2nd ed., §3.1), so it is
    widened by ``2 n u`` and rounded up."""
    n = A.shape[1]
    return _up(_up(A @ r) * (1.0 + 2.0 * (n + 1) * 2.0**-53))


def _input_radius(q: QuantPoint, net: Network, box) -> np.ndarray | None:
    """Per-input rounding radius of an input quantizer when the box needs no clipping (then the
    noise enters the first layer's bias radius as ``(|W_1| + R_1) r``, which saves an input-wide
    noise layer); ``None`` when some input may be clipped (a noise layer with clamp is needed)."""
    x1, x2 = net.normalize(box.lower[None])[0], net.normalize(box.upper[None])[0]
    lo, hi = np.minimum(x1, x2), np.maximum(x1, x2)
    for _ in range(4):  # the normalization's own rounding, outward
        lo, hi = np.nextafter(lo, -np.inf), _up(hi)
    if q.kind != "affine":
        r, _ = _radius(q, lo, hi)
        if q.kind == "float":  # |fl(x) - x| <= u |x| + half the subnormal spacing
            r = _up(r + _up(2.0 ** -q.fmt.p * np.maximum(np.abs(lo), np.abs(hi))))
        return r
    r, msg = _radius(q, lo, hi)
    return None if msg else r


def _affine_interval(W, RW, lo, hi):
    """``[W] [h]`` for ``W in [W - RW, W + RW]``, ``h in [lo, hi]``, outward (midpoint-radius)."""
    mid = 0.5 * lo + 0.5 * hi
    rad = _up(np.maximum(_up(hi - mid), _up(mid - lo)))
    c = W @ mid
    mag = _up(np.abs(mid) + rad)
    r = _up(np.abs(W) @ rad + RW @ mag)
    n = W.shape[1] + 2
    err = _up((np.abs(W) + RW) @ mag * (2.0 * n * 2.0**-53) + 2.0**-1020)
    return np.nextafter(c - _up(r + err), -np.inf), _up(c + _up(r + err))


def _q_interval(q: QuantPoint, lo, hi):
    """``[Q(lo - slack), Q(hi + slack)]`` (monotone ``Q``), exact ends rounded outward."""
    n = lo.size
    if q.kind == "dynamic":
        r, _ = _radius(q, lo, hi)
        return np.nextafter(lo - r, -np.inf), _up(hi + r)
    a = [Fraction(float(v)) for v in lo]
    b = [Fraction(float(v)) for v in hi]
    if q.kind == "affine":
        sl = np.broadcast_to(np.asarray(q.scale, dtype=np.float64), (n,))
        a = [v - Fraction(q.rel) * Fraction(float(t)) for v, t in zip(a, sl)]
        b = [v + Fraction(q.rel) * Fraction(float(t)) for v, t in zip(b, sl)]
    if q.kind == "affine" and not q.saturate:  # a value that may leave the range is an error, as in expand
        try:
            qa, qb = q.exact(a), q.exact(b)
        except PerturbationError as e:
            raise PerturbationError(f"{e}; add ':saturate' to model the clip") from None
    else:
        sat = replace(q, saturate=True)
        qa, qb = sat.exact(a), sat.exact(b)
    out_lo = np.array([float_down(v) for v in qa])
    out_hi = np.array([float_up(v) for v in qb])
    return out_lo, out_hi


def _pow2_above(x: float) -> float:
    """The power of two ``2^e >= 2 x`` (``x > 0``)."""
    return float(np.ldexp(1.0, int(np.frexp(2.0 * x)[1])))


def _radius(q: QuantPoint, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, str]:
    """Per-neuron noise radius of point ``q`` for values in ``[lo, hi]`` (module docstring), and a
    message when a value may leave the range (the clip is in the radius only when ``q.saturate``)."""
    n = lo.size
    if q.kind == "float":
        f = q.fmt
        if f.max_finite is not None:
            T = float(np.ldexp(1.0, f.emax - f.p)) + f.max_finite
            bad = np.flatnonzero((hi >= T) | (lo <= -T))
            if bad.size:
                j = int(bad[0])
                raise PerturbationError(f"{q.label}: neuron {j} may reach [{lo[j]!r}, {hi[j]!r}] and overflow {f.name} "
                                        f"(largest finite {f.max_finite!r})")
        return np.full(n, float(np.ldexp(1.0, f.emin - f.p)) if f.emin is not None else 0.0), ""
    half = 0.5 + q.rel
    if q.kind == "dynamic":
        mn, mx = min(float(lo.min()), 0.0), max(float(hi.max()), 0.0)
        s = _up(_up(mx - mn) / (q.qmax - q.qmin))
        return np.full(n, float(_up(s * half))), ""
    s = np.broadcast_to(np.asarray(q.scale, dtype=np.float64), (n,))
    rlo, rhi = q.range(n)
    r = _up(s * half)
    over = _up(hi - rhi)          # clipping error above the range
    under = _up(rlo - lo)         # and below it
    clip = (over > r) | (under > r)
    if not np.any(clip):
        return r, ""
    j = int(np.flatnonzero(clip)[0])
    msg = (f"{q.label}: neuron {j} may reach [{float(lo[j])!r}, {float(hi[j])!r}], outside the representable range "
           f"[{float(rlo[j])!r}, {float(rhi[j])!r}]; add ':saturate' to model the clip")
    return (np.maximum(r, np.maximum(over, under)) if q.saturate else r), msg


class RoundedView:
    """Duck-typed network for ``Property.check_exact``: nominal logits for ``params=None``, the
    rounded network's (with the given original-layer parameters) otherwise."""

    def __init__(self, model: ActModel, params) -> None:
        self.model, self.params = model, params
        self.output = model.network.output
        self.n_out = model.network.n_out
        self.n_in = model.network.n_in

    def exact_logits(self, x, params=None):
        if params is None:
            return self.model.network.exact_logits(x)
        return self.model.exact_logits(x, self.params)

    def exact_scores(self, x, params=None):
        if self.output == "identity":
            return self.exact_logits(x, params)
        # scores of exact logits: reuse the network's own output transform on a constant network
        y = self.exact_logits(x, params)
        return _scores_of(y, self.output)


def _scores_of(y, output):
    import mpmath

    from hybridq.network import as_interval, iv_precision

    with iv_precision():
        yi = [as_interval(v) for v in y]
        if output == "sigmoid":
            return [1 / (1 + mpmath.iv.exp(-v)) for v in yi]
        exps = [mpmath.iv.exp(v - yi[0]) for v in yi]
        tot = sum(exps[1:], exps[0])
        return [e / tot for e in exps]


# ------------------------------------------------------------------------------- spec strings
ACT_GRAMMAR = """act part := ['layerK=' | 'layerK:' | 'input=' | 'input:'] 'act=' AFORMAT [':' OPT (',' OPT)*]
AFORMAT  := intB | uintB (B = 2..16, affine) | qM.N (fixed point) | fp16 | bf16 | fp8_e4m3 | fp8_e5m2 | float:e=E,m=M
OPT      := scale=S | zp=Z | sym | saturate        (no scale: calibrated on the input box)"""


def split_act_spec(spec: str) -> tuple[str | None, list[str]]:
    """Split a perturbation spec into its parameter part and its ``act=`` parts.

    Returns
    -------
    (str or None, list of str)
        The parameter spec (``None`` when only ``act=`` parts were given) and the act parts.
    """
    from hybridq.perturbation import split_target

    rest, acts = [], []
    for raw in str(spec).split(";"):
        part = raw.strip()
        low = part.lower().replace(" ", "")
        try:  # the prefix as perturbation() reads it; a bad one is refused there (layers checked later)
            _, body = split_target(low, None, PerturbationError)
        except PerturbationError:
            body = low
        if body.startswith("act="):
            acts.append(low)
        elif part:
            rest.append(part)
    return (";".join(rest) if rest else None), acts


def _act_error(part: str, why: str) -> PerturbationError:
    return PerturbationError(f"invalid activation spec {part!r}: {why}\nvalid forms:\n{ACT_GRAMMAR}")


def parse_act_spec(parts: list[str], n_layers: int) -> list[dict]:
    """Parse ``act=`` parts into point descriptions ``{where, layer, ...}`` (later parts override).

    ``act=F`` quantizes the output of every layer ``1..L``; ``layerK=act=F`` (or ``layerK:act=F``)
    the output of layer ``K``; ``input=act=F`` (or ``input:act=F``) the network input (after its
    normalization).  The prefixes are read by :func:`hybridq.perturbation.split_target`, as in
    parameter parts.

    Raises
    ------
    PerturbationError
        Unknown format or option, a layer out of range (the message lists the valid forms).
    """
    from hybridq.perturbation import split_target

    out: dict = {}
    for part in parts:
        target, p = split_target(part.replace(" ", "").lower(), n_layers, lambda why: _act_error(part, why))
        if not p.startswith("act="):
            raise _act_error(part, "not an act= part")
        target = "all" if target is None else target
        p = p[len("act="):]
        segs = p.split(":")
        fmt, opts = (":".join(segs[:2]), ":".join(segs[2:])) if segs[0] == "float" else (segs[0], ":".join(segs[1:]))
        desc: dict = {"saturate": False, "sym": False, "scale": None, "zp": None}
        for o in [o for o in opts.split(",") if o]:
            if o in ("saturate", "sym"):
                desc[o] = True
            elif o.startswith(("scale=", "zp=")):
                k_, v = o.split("=", 1)
                try:
                    desc["scale" if k_ == "scale" else "zp"] = float(v) if k_ == "scale" else int(v)
                except ValueError:
                    raise _act_error(part, f"option {o!r} needs a number") from None
            else:
                raise _act_error(part, f"unknown option {o!r}")
        if desc["zp"] is not None and desc["scale"] is None:
            raise _act_error(part, "zp=Z needs scale=S")
        if desc["scale"] is not None and desc["zp"] is None:
            desc["zp"] = 0
        if m := re.fullmatch(r"(u?)int(\d+)", fmt):
            B = int(m[2])
            if not 2 <= B <= 16:
                raise _act_error(part, "intB needs 2 <= B <= 16")
            desc.update(kind="affine", qmin=0 if m[1] else -(2 ** (B - 1)), qmax=(2**B - 1) if m[1] else 2 ** (B - 1) - 1)
        elif m := re.fullmatch(r"q(\d+)\.(\d+)", fmt):
            M, N = int(m[1]), int(m[2])
            if M + N > 52:
                raise _act_error(part, "qM.N needs M + N <= 52")
            desc.update(kind="affine", qmin=-(2 ** (M + N)), qmax=2 ** (M + N) - 1, scale=2.0 ** -N, zp=0)
        else:
            try:
                f = parse_format(fmt)
            except PerturbationError:
                raise _act_error(part, f"unknown activation format {fmt!r}") from None
            if not isinstance(f, FloatFormat) or f.emin is None:
                raise _act_error(part, f"{fmt!r} is not an activation format (use intB, uintB, qM.N or an IEEE-like float)")
            desc.update(kind="float", fmt=f)
        desc["name"] = part
        targets = ["input"] if target == "input" else (range(n_layers) if target == "all" else [target])
        for t in targets:
            out[t] = dict(desc)
    return [dict(d, where="input" if t == "input" else "post", layer=-1 if t == "input" else t) for t, d in out.items()]


def act_model(network, spec: str, inputs, method: str = "linear") -> ActModel:
    """The :class:`ActModel` of a spec string with ``act=`` parts (and optional parameter parts).

    Points without ``scale=`` are calibrated on ``inputs``: the range ``[min, max]`` of the tensor
    over the input box (certified bounds of the network with the parameter perturbation), widened
    to include 0; ``s = (max - min) / (qmax - qmin)``, ``z = round(qmin - min / s)`` (``sym``:
    ``s = max|.| / qmax``, ``z = 0``).

    Raises
    ------
    PerturbationError
        A malformed spec or a range problem (see :meth:`ActModel.expand`).
    """
    from hybridq.bounds import bounds
    from hybridq.inputs import as_input_box
    from hybridq.perturbation import perturbation

    wspec, acts = split_act_spec(spec)
    pert = perturbation(wspec, network) if wspec else perturbation("abs:0", network)
    descs = parse_act_spec(acts, len(network.layers))
    descs.sort(key=lambda d: d["layer"])
    box = as_input_box(inputs, network.n_in)
    points: list = []
    for d in descs:
        if d["kind"] == "affine" and d["scale"] is None:
            # calibrated on the model with the earlier points in place: no value of the box is clipped
            if d["where"] == "input":
                lo, hi = network.normalize(box.lower[None])[0], network.normalize(box.upper[None])[0]
                lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
            else:
                # a placeholder quantizer that never clips keeps the layer an inner one, bounded as
                # in the final expansion (a last layer gets tighter bounds than expand could prove)
                hold = QuantPoint(d["where"], d["layer"], "affine", 1.0, 0, -(2**52), 2**52, saturate=True)
                e = ActModel(network, pert.center, pert.radius, tuple(points) + (hold,)).expand(box, method)
                ob = bounds(e.network, e.perturbation, box, method=method)
                l, i = network.layers[d["layer"]], e.layer_of[d["layer"]]
                lo = activate(ob.pre_lo[i][0], l.activation, l.alpha)
                hi = activate(ob.pre_hi[i][0], l.activation, l.alpha)
            # widened by 2^-20 relative: the bound pass's own rounding never lands just past the range
            mn, mx = min(float(lo.min()), 0.0) * (1 + 2.0**-20), max(float(hi.max()), 0.0) * (1 + 2.0**-20)
            if d["sym"]:
                s = max(-mn, mx) / d["qmax"]
                z = 0
            else:
                s = (mx - mn) / (d["qmax"] - d["qmin"])
                z = int(min(max(np.rint(d["qmin"] - mn / s), d["qmin"]), d["qmax"])) if s > 0 else 0
            # a float32 scale (as runtimes store it): s (k - z) is then exact in float64
            s = float(np.float32(s)) if s > 0 else 1.0
            if not d["sym"]:
                z = int(min(max(np.rint(d["qmin"] - mn / s), d["qmin"]), d["qmax"]))
            if mx > s * (d["qmax"] - z) + s / 2 or mn < s * (d["qmin"] - z) - s / 2:
                s = float(np.nextafter(np.float32(s), np.float32(np.inf)))
            d = dict(d, scale=s, zp=z)
        points.append(QuantPoint(d["where"], d["layer"], d["kind"], d["scale"] if d["scale"] is not None else 1.0,
                                 d["zp"] if d["zp"] is not None else 0, d.get("qmin", 0), d.get("qmax", 0),
                                 d.get("fmt"), d["saturate"], 0.0, d["name"]))
    return ActModel(network, pert.center, pert.radius, tuple(points), name=spec)
