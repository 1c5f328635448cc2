"""Activation quantization: the noise-layer enclosure contains the exactly rounded network, for
every activation format and bound method; exact rounding; spec parsing and range errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hybridq import InputBox, Layer, Network
from hybridq.actquant import QuantPoint, act_model, round_half_even, split_act_spec
from hybridq.bounds import METHODS, bounds
from hybridq.errors import PerturbationError
from hybridq.formats import parse_format

SPECS = ["act=int8", "act=uint8;input=act=int8", "act=int4:saturate", "act=q2.3:saturate", "act=fp16", "act=bf16",
         "act=fp8_e4m3", "int8:per_channel@weights;act=int8", "point:int8;layer1=act=uint4;input=act=int8:sym",
         "rel:1e-3;act=int8:sym",
         # given scales that clip on most boxes: the exact clamp layers (folded after relu, K-shifted otherwise)
         "act=int4:scale=0.05,saturate", "act=int4:scale=0.1,zp=-8,saturate", "act=uint4:scale=0.2,saturate",
         "int8@weights;act=int4:scale=0.1,zp=3,saturate;input=act=int4:scale=0.1,saturate"]


def _net(seed, acts):
    rng = np.random.default_rng(seed)
    w = [3, 5, 4, 2]
    return Network(tuple(Layer(rng.normal(size=(w[k + 1], w[k])), rng.normal(size=w[k + 1]), a)
                         for k, a in enumerate(acts)))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), spec=st.sampled_from(SPECS),
       acts=st.sampled_from([("relu", "relu", "identity"), ("leaky_relu", "hardtanh", "identity"),
                             ("identity", "relu", "relu")]),
       width=st.sampled_from([0.0, 0.05, 1.0]))
def test_bounds_enclose_the_exactly_rounded_network(seed, spec, acts, width):
    net = _net(seed, acts)
    rng = np.random.default_rng(seed + 1)
    c = rng.uniform(-1, 1, 3)
    box = InputBox(c - width, c + width)
    model = act_model(net, spec, box)
    exp = model.expand(box)
    X = rng.uniform(box.lower, box.upper, (12, 3))
    X[0] = box.lower
    X[1] = box.upper
    Y = np.array([[float(v) for v in model.exact_logits(x)] for x in X])
    for method in METHODS:
        ob = bounds(exp.network, exp.perturbation, box, method=method)
        assert np.all(Y >= ob.logit_lo[0]) and np.all(Y <= ob.logit_hi[0]), (method, spec)
        # the deviation of the rounded network from the float one, exactly, inside the deviation bounds
        Y0 = np.array([[float(v) for v in net.exact_logits(x)] for x in X])
        d = Y - Y0
        assert np.all(d >= ob.dev_logit_lo[0] - 1e-12) and np.all(d <= ob.dev_logit_hi[0] + 1e-12)


def test_noise_layers_keep_the_nominal_network():
    net = _net(0, ("relu", "relu", "identity"))
    box = InputBox(-np.ones(3), np.ones(3))
    exp = act_model(net, "act=int8;input=act=int8", box).expand(box)
    # the input quantizer (no clipping on this box) goes into layer 1's bias radius, the others are layers
    assert len(exp.network.layers) == 6 and exp.layer_of == (0, 2, 4)
    assert np.all(exp.perturbation.radius[0][1] > 0)
    x = np.array([0.3, -0.2, 0.9])
    assert exp.network.exact_logits(x) == net.exact_logits(x)


def test_round_half_even_and_exact_quantizer():
    assert [round_half_even(Fraction(v, 2)) for v in (-3, -1, 1, 3, 5)] == [-2, 0, 0, 2, 2]
    q = QuantPoint("post", 0, "affine", 0.5, 1, 0, 3, saturate=True)
    # values -0.5 + 0.5 k: grid s (k - z); 0.25 is a tie between 0 and 0.5 -> even integer (k = 1 -> 0)
    assert q.exact([Fraction(1, 4), Fraction(3, 4), Fraction(10), Fraction(-3)]) == [0, 1, 1, Fraction(-1, 2)]
    f = QuantPoint("post", 0, "float", fmt=parse_format("fp16"))
    assert f.exact([Fraction(1) + Fraction(1, 2**11)]) == [1]          # tie to even
    assert f.exact([Fraction(1) + Fraction(3, 2**11)]) == [Fraction(1) + Fraction(2, 2**10)]
    with pytest.raises(PerturbationError, match="overflows fp16"):
        f.exact([Fraction(70000)])
    strict = QuantPoint("post", 0, "affine", 0.5, 1, 0, 3)
    with pytest.raises(PerturbationError, match="outside the range"):
        strict.exact([Fraction(5)])


def test_spec_parsing_and_errors():
    assert split_act_spec("int8@weights; act=uint8 ;layer2=act=fp16") == ("int8@weights", ["act=uint8", "layer2=act=fp16"])
    assert split_act_spec("act=int8") == (None, ["act=int8"])
    # the prefixes are read as parameter parts read them: 'layerK:' / 'input:' like 'layerK=' / 'input='
    assert split_act_spec("input:act=int8;layer1:fp16;layer2 : act=uint8") == ("layer1:fp16", ["input:act=int8", "layer2:act=uint8"])
    assert split_act_spec("inputs=act=int8") == ("inputs=act=int8", [])  # refused by perturbation(), naming the forms
    net = _net(1, ("relu", "relu", "identity"))
    box = InputBox(-np.ones(3), np.ones(3))
    m = act_model(net, "layer2:act=int8:scale=0.5,zp=-3,saturate;input=act=q1.4", box)
    assert [(p.where, p.layer, p.scale, p.zero_point, p.saturate) for p in m.points] == [
        ("input", -1, 1 / 16, 0, False), ("post", 1, 0.5, -3, True)]
    m2 = act_model(net, "layer2=act=int8:scale=0.5,zp=-3,saturate;input:act=q1.4", box)
    assert [(p.where, p.layer, p.scale, p.zero_point, p.saturate) for p in m2.points] == [
        ("input", -1, 1 / 16, 0, False), ("post", 1, 0.5, -3, True)]
    for bad, why in [("act=int99", "2 <= B <= 16"), ("act=float:p=5", "not an activation format"),
                     ("layer9=act=int8", "layers 1..3"), ("act=int8:foo", "unknown option"),
                     ("act=int8:zp=3", "zp=Z needs scale=S"), ("act=int8:scale=x", "needs a number"),
                     ("layer0:act=int8", r"layer0: the network has layers 1\.\.3 \(layerK= or layerK:, counted from 1\)"),
                     ("inputs=act=int8", r"'inputs' is not a target; use layerK=\.\.\. or layerK:\.\.\."),
                     ("layer2act=int8", "'layer2act' is not a target")]:
        with pytest.raises(PerturbationError, match=why):
            act_model(net, bad, box)
    # a given scale too small for the values reached: an error naming layer and neuron, unless saturate
    with pytest.raises(PerturbationError, match=r"layer 1 output .*neuron \d+ may reach .*saturate"):
        act_model(net, "layer1=act=int8:scale=0.001", box).expand(box)
    # the clip is modelled exactly.  After a relu layer: one relu layer [relu(h + a); relu(h + a - hi)]
    # whose combination is folded into the next layer; after the identity (last) layer: a noise layer,
    # a relu clamp layer and a combining layer
    model = act_model(net, "layer1=act=int8:scale=0.001,saturate;layer3=act=int8:scale=0.001,saturate", box)
    exp = model.expand(box)
    assert len(exp.saturated) == 2 and exp.layer_of == (0, 2, 3)
    acts = [l.activation for l in exp.network.layers]
    assert acts == ["relu", "relu", "relu", "identity", "identity", "relu", "identity"]
    assert float(exp.perturbation.radius[1][1].max()) == pytest.approx(0.0005)
    x = np.array([0.9, -0.9, 0.5])
    assert exp.network.exact_logits(x) == net.exact_logits(x)      # the nominal network is unchanged
    ob = bounds(exp.network, exp.perturbation, box, method="linear")
    for x in np.random.default_rng(0).uniform(-1, 1, (50, 3)):
        y = np.array([float(v) for v in model.exact_logits(x)])
        assert np.all(y >= ob.logit_lo[0]) and np.all(y <= ob.logit_hi[0])


def test_point_input_outside_a_non_saturating_range_is_an_error():
    """At a point the deployed model is decided by an interval pass over the rounded network; it
    saturated every quantizer, so act=q2.4 (range [-4, 3.9375], no ':saturate') with a logit of 5
    was 'robust' (deviation bound 1.0625, the clip) where a box or the exact evaluation says the
    value leaves the range."""
    from hybridq import Decision, Deviation
    from hybridq.deployed import verify_deployed

    net = Network((Layer(np.array([[5.0]]), np.zeros(1), "identity"),))
    point = InputBox.point([1.0])
    model = act_model(net, "act=q2.4", point)
    for prop in (Deviation(2), Decision(1)):
        with pytest.raises(PerturbationError, match=r"layer 1 output .*neuron 0 .*outside the range.*saturate"):
            verify_deployed(model, point, prop, jobs=1, timeout=10)
    sat = act_model(net, "act=q2.4:saturate", point)
    res = verify_deployed(sat, point, Deviation("1.0625"), jobs=1, timeout=10)  # 5 -> 3.9375
    assert res.verdict == "robust"
    res = verify_deployed(sat, point, Deviation("1.06"), jobs=1, timeout=10)
    assert res.verdict == "not_robust" and res.counterexample.value == 1.0625


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000),
       spec=st.sampled_from(["act=int4:scale=0.05,saturate", "act=int4:scale=0.1,zp=-8,saturate",
                             "act=uint4:scale=0.2,saturate",
                             "int8@weights;act=int4:scale=0.1,zp=3,saturate;input=act=int4:scale=0.1,saturate"]),
       acts=st.sampled_from([("relu", "relu", "identity"), ("identity", "relu", "relu")]))
def test_clamp_ranges_bound_the_noise_model_and_the_outputs(seed, spec, acts):
    """``pre_clip`` (a saturating quantizer's range as bounds of z') holds for every parameter of the
    noise model's box, not only the real rounding: sampled parameters (corners included) and inputs,
    every layer's pre-activation inside it; and the output bounds lie within the output quantizer's
    range (widened by its noise), where the relaxation of the clamp alone was wider."""
    from hybridq.network import activate

    net = _net(seed, acts)
    rng = np.random.default_rng(seed + 2)
    c = rng.uniform(-1, 1, 3)
    box = InputBox(c - 1.0, c + 1.0)
    model = act_model(net, spec, box)
    exp = model.expand(box)
    pert = exp.perturbation
    if pert.pre_clip is None:
        assert not exp.saturated
        return
    lo, hi = pert.pre_clip
    offs = np.concatenate([[0], np.cumsum([b.shape[0] for _, b in pert.center])])
    X = rng.uniform(box.lower, box.upper, (40, 3))
    X[0], X[1] = box.lower, box.upper
    for t in range(40):
        params = pert.sample(rng) if t % 2 else tuple(  # a random corner of the parameter box
            (W + RW * rng.choice([-1.0, 1.0], W.shape), b + rb * rng.choice([-1.0, 1.0], b.shape))
            for (W, b), (RW, rb) in zip(pert.center, pert.radius))
        h = exp.network.normalize(X)
        for k, (l, (W, b)) in enumerate(zip(exp.network.layers, params)):
            z = h @ W.T + b
            s = slice(offs[k], offs[k + 1])
            tol = 1e-9 * (1 + np.abs(z))
            assert np.all(z >= lo[s] - tol) and np.all(z <= hi[s] + tol), (k, spec)
            h = activate(z, l.activation, l.alpha)
    # the exactly rounded network, and its output bounds inside the output quantizer's clipped range
    ob = bounds(exp.network, pert, box, method="linear")
    Y = np.array([[float(v) for v in model.exact_logits(x)] for x in X[:12]])
    assert np.all(Y >= ob.logit_lo[0]) and np.all(Y <= ob.logit_hi[0])
    last = model.point("post", 2) or model.point("pre", 2)
    if acts[-1] == "identity" and last is not None and any("layer 3" in s for s in exp.saturated):
        rlo, rhi = last.range(2)
        # a neuron without a clip row on a side stays v + a there, within 2 s/2 of the range
        slack = float(np.max(last.scale)) * (1 + 2 * last.rel) + float(np.max(pert.radius[-1][1])) + 1e-12
        assert np.all(ob.logit_lo[0] >= rlo - slack) and np.all(ob.logit_hi[0] <= rhi + slack)
