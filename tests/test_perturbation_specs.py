"""Perturbation spec strings, quantize, format families, and the real ACAS Xu / mnistfc networks."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from hybridq import Layer, Network, Perturbation
from hybridq.errors import PerturbationError
from hybridq.formats import quantize_array
from hybridq.perturbation import format_family, perturbation, quantize


@pytest.fixture
def net() -> Network:
    W1 = np.array([[1.0, -2.5, 0.0], [0.3, 7.0, -0.1]])
    W2 = np.array([[0.5, 0.25], [-1.5, 1e-9]])
    return Network((Layer(W1, np.array([0.1, -0.2])), Layer(W2, np.array([1e-3, 0.0]), "identity")))


def test_abs_rel_targets_and_overrides(net):
    p = perturbation("abs:1e-3", net)
    assert isinstance(p, Perturbation) and p.spec == "abs:1e-3"
    for (W, b), (RW, rb) in zip(net.params, p.radius):
        assert np.all(RW == 1e-3) and np.all(rb == 1e-3)
        assert Fraction(float(RW[0, 0])) >= Fraction("1e-3")
    p = perturbation("abs:0.3", net)  # float(0.3) < 3/10 exactly: rounded up by one ulp
    assert Fraction(0.3) < Fraction(3, 10) <= Fraction(float(p.radius[0][0][0, 0]))
    assert p.radius[0][0][0, 0] == np.nextafter(0.3, 1.0)
    p = perturbation("rel:1e-2@biases", net)
    assert np.all(p.radius[0][0] == 0) and np.all(p.radius[1][0] == 0)
    for (W, b), (RW, rb) in zip(net.params, p.radius):
        for bi, ri in zip(b, rb):
            assert Fraction(float(ri)) >= Fraction(1, 100) * abs(Fraction(float(bi)))
            assert float(ri) <= 0.01 * abs(bi) * (1 + 1e-15)
    assert p.radius[1][1][1] == 0.0  # rel radius of a zero bias is zero
    p = perturbation("abs:1e-3@weights; layer2=abs:1e-2", net)
    assert np.all(p.radius[0][0] == 1e-3) and np.all(p.radius[0][1] == 0)
    assert np.all(p.radius[1][0] == 1e-2) and np.all(p.radius[1][1] == 1e-2)
    p = perturbation("abs:1;layer1=abs:2@biases;rel:0@weights", net)  # later parts override
    assert np.all(p.radius[0][1] == 2) and np.all(p.radius[1][1] == 1)
    assert all(np.all(RW == 0) for RW, _ in p.radius)
    for (W, b), (cW, cb) in zip(net.params, p.center):
        assert np.array_equal(W, cW) and np.array_equal(b, cb)


def test_format_box_contains_its_quantized_network(net):
    for spec in ["fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "q3.5", "int8", "int4:per_channel,asym",
                 "float:p=3", "int8:per_channel@weights;fp16@biases"]:
        p = perturbation(spec, net)
        qnet = quantize(net, spec)
        assert p.contains(qnet.params), spec
        assert all(np.array_equal(c, t) for (c, _), (t, _) in zip(p.center, net.params))
        pt = perturbation(";".join("point:" + part for part in spec.split(";")), net)
        assert pt.max_radius() == 0.0
        for (cW, cb), (qW, qb) in zip(pt.center, qnet.params):
            assert np.array_equal(cW, qW) and np.array_equal(cb, qb)


def test_quantize_values_and_partial(net):
    q = quantize(net, "fp8_e4m3")
    assert q.layers[0].W[1, 0] == 0.3125 and q.layers[0].W[1, 1] == 7.0 and q.layers[1].W[1, 1] == 0.0
    q = quantize(net, "fp8_e4m3@weights")
    assert np.array_equal(q.layers[0].b, net.layers[0].b)  # biases kept
    q = quantize(net, "point:fp16")
    assert q.layers[0].W[1, 0] == float(np.float16(0.3))
    with pytest.raises(PerturbationError, match="quantize needs number formats"):
        quantize(net, "abs:1e-3")


def test_overflow_and_saturation_name_layer_tensor_index_value(net):
    big = Network((Layer(np.array([[1.0, 70000.0]]), np.array([0.0])),))
    with pytest.raises(PerturbationError, match=r"fp16: layer 1 W\[0, 1\] = 70000\.0 overflows \(largest finite value 65504\.0\)"):
        perturbation("fp16", big)
    with pytest.raises(PerturbationError, match=r"float:e=2,m=1: layer 1 W\[1, 1\] = 7\.0 overflows \(largest finite value 3\.0\)"):
        perturbation("fp8_e4m3;layer1=float:e=2,m=1", net)  # max of e=2,m=1 is 3
    with pytest.raises(PerturbationError, match=r"q2\.3: layer 1 W\[1, 1\] = 7\.0 saturates"):
        quantize(net, "q2.3")
    assert perturbation("fp16@biases", big).max_radius() == 0.0  # weights not selected: no overflow


@pytest.mark.parametrize("bad,why", [
    ("foo", "unknown number format 'foo'"),
    ("abs:-1e-3", "negative"),
    ("abs:nan", "not a finite number"),
    ("rel:inf", "not a finite number"),
    ("abs:", "not a finite number"),
    ("abs:1e999", "too large"),
    ("layer3=abs:1", "layers 1..2"),
    ("layer0=abs:1", "layers 1..2"),
    ("abs:1@bias", "unknown target"),
    ("abs:1;;fp16", "empty part"),
    ("", "empty spec"),
    ("point:abs:1", "in part 'point:abs:1'"),
    ("int8:sym,minmax", "minmax needs asym"),
    ("rel:1e308", "overflows float64 on layer 1 W"),
    ("layer3:abs:1", "layer3: the network has layers 1..2 (layerK= or layerK:, counted from 1)"),
    ("layerx=abs:1", "'layerx' is not a target; use layerK=... or layerK:... (K = 1..L, counted from 1 as in W_K), "
                     "input=act=... or input:act=..."),
    ("layer2abs:1", "'layer2abs' is not a target"),
    ("input=fp16", "the input has no parameters; input= or input: takes act= parts only"),
])
def test_bad_specs_one_clear_message(net, bad, why):
    with pytest.raises(PerturbationError) as ei:
        perturbation(bad, net)
    msg = str(ei.value)
    assert why in msg
    for form in ("abs:EPS", "rel:EPS", "point:FORMAT", "fp8_e4m3", "qM.N", "intB", "float:p=P", "layerK="):
        assert form in msg  # the message lists the valid forms


def test_layer_colon_is_layer_equals(net):
    """``layerK:`` selects like ``layerK=`` (as ``layer2:act=int8`` does for act= parts): the same
    centre, radius and exact rules; the spec string is kept as written."""
    for eq, colon in [("layer2=abs:1e-2", "layer2:abs:1e-2"), ("abs:1e-3;layer1=fp16@weights", "abs:1e-3;layer1:fp16@weights"),
                      ("layer2=point:int8", "Layer2 : point:int8"), ("layer1=rel:0.1;layer2=q2.3@biases", "layer1:rel:0.1;layer2:q2.3@biases")]:
        a, b = perturbation(eq, net), perturbation(colon, net)
        for (cWa, cba), (cWb, cbb), (rWa, rba), (rWb, rbb) in zip(a.center, b.center, a.radius, b.radius):
            assert cWa.tobytes() == cWb.tobytes() and cba.tobytes() == cbb.tobytes()
            assert rWa.tobytes() == rWb.tobytes() and rba.tobytes() == rbb.tobytes()
        assert a.exact == b.exact and b.spec == colon
    p = perturbation("layer2:abs:1e-2", net)
    assert np.all(p.radius[0][0] == 0) and np.all(p.radius[1][0] == 1e-2) and np.all(p.radius[1][1] == 1e-2)


def test_perturbation_passthrough(net):
    p = perturbation("abs:1e-3", net)
    assert perturbation(p, net) is p
    other = Network((Layer(np.ones((1, 3)), np.zeros(1)),))
    with pytest.raises(PerturbationError):
        perturbation(p, other)


def test_format_family(net):
    fl = format_family("float", max_bits=10)
    assert fl == [(p, f"float:p={p}") for p in range(2, 11)]
    it = format_family("int", options="per_channel,asym")
    assert [b for b, _ in it] == list(range(2, 17)) and it[0][1] == "int2:per_channel,asym"
    fx = format_family("fixed", net, max_bits=12)
    assert fx[0] == (4, "q3.0") and fx[-1] == (12, "q3.8")  # max 7.0 < 2^3 - 1/2
    bits = [b for b, _ in fx]
    assert bits == sorted(set(bits))
    for _, spec in fx:  # no member saturates
        assert perturbation(spec, net).contains(quantize(net, spec).params)
    with pytest.raises(PerturbationError, match="saturates"):
        quantize(net, "q2.0")  # one integer bit fewer does
    # the radius shrinks along a family
    radii = [perturbation(s, net).max_radius() for _, s in fl]
    assert all(a >= b for a, b in zip(radii, radii[1:])) and radii[0] > radii[-1]
    with pytest.raises(PerturbationError, match="needs the network"):
        format_family("fixed")
    with pytest.raises(PerturbationError, match="unknown format family"):
        format_family("posit")
    with pytest.raises(PerturbationError, match="valid forms"):
        format_family("int", options="per_row")


def test_fixed_family_m_is_minimal_for_negative_range():
    n = Network((Layer(np.array([[-4.0, 3.4]]), np.array([0.0])),))
    fam = format_family("fixed", n, max_bits=8)
    assert fam[0][1] == "q2.0"  # -4 is representable, 3.4 < 3.5
    for _, spec in fam:
        quantize(n, spec)


# ------------------------------------------------------------------------- real networks
FORMATS = ["fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "float:e=4,m=3", "float:p=8", "q8.8", "q3.12",
           "int8", "int4", "int8:per_channel", "int4:per_channel,asym", "int8:asym,maxabs", "point:fp16"]


def _load(path):
    try:
        from hybridq.io import load_network
    except ImportError:  # until hybridq.io.load_network lands
        from hybridq.io.nnet import load_nnet
        from hybridq.io.onnx import load_onnx

        return load_nnet(path) if str(path).endswith(".nnet") else load_onnx(path)
    return load_network(path)


@pytest.mark.requires_shared
@pytest.mark.parametrize("rel", ["acasxu/nnet/ACASXU_run2a_1_1_batch_2000.nnet", "mnistfc/mnist-net_256x2.onnx",
                                 "mnistfc/mnist-net_256x4.onnx", "mnistfc/mnist-net_256x6.onnx"])
def test_real_networks_every_format(networks_dir, rel):
    path = networks_dir / rel
    if not path.exists():
        pytest.skip(f"{path} is absent")
    net = _load(path)
    allp = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in net.params])
    for spec in FORMATS:
        if spec == "q3.12" and (np.max(allp) >= 8 - 2.0**-13 or np.min(allp) < -8 - 2.0**-13):
            with pytest.raises(PerturbationError, match="saturates"):  # ACAS Xu has |w| up to 20
                perturbation(spec, net)
            continue
        p = perturbation(spec, net)
        qp = quantize(net, spec).params
        assert p.contains(qp), spec
        assert all(np.all(np.isfinite(RW)) and np.all(np.isfinite(rb)) for RW, rb in p.radius)
    # fp32 on float32-stored weights is exact (mnistfc is float32; the .nnet text is not)
    if rel.endswith(".onnx"):
        assert all(np.array_equal(W, qW) for (W, _), (qW, _) in zip(net.params, quantize(net, "fp32").params))
    # spot-check the quantized copy against the element-wise format
    W = net.params[0][0]
    q, r = quantize_array(W, "bf16")
    assert np.array_equal(q, quantize(net, "bf16").params[0][0])
    assert np.max(r / np.where(W == 0, 1, np.abs(W))) <= 2.0**-8


def test_pre_clip_is_checked_and_clips_the_bounds(net):
    """``Perturbation.pre_clip``: shapes and empty intervals refused with one clear error; given,
    the bound pass intersects the perturbed pre-activations (so the logits and the deviation) with it."""
    from hybridq.bounds import bounds

    p = perturbation("abs:0.01", net)
    n = sum(b.shape[0] for _, b in p.center)
    with pytest.raises(PerturbationError, match="pre_clip: two arrays of"):
        Perturbation(p.center, p.radius, pre_clip=(np.zeros(n - 1), np.ones(n - 1)))
    with pytest.raises(PerturbationError, match="empty interval"):
        Perturbation(p.center, p.radius, pre_clip=(np.ones(n), np.zeros(n)))
    x = np.full(net.n_in, 0.1)
    box = (x - 0.5, x + 0.5)
    ob = bounds(net, p, box)
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    m = net.n_out
    mid = 0.5 * (ob.logit_lo[0] + ob.logit_hi[0])
    lo[-m:], hi[-m:] = mid - 1e-3, mid + 1e-3  # not a valid enclosure: only to see that it is applied
    oc = bounds(net, Perturbation(p.center, p.radius, pre_clip=(lo, hi)), box)
    assert np.all(oc.logit_lo[0] >= mid - 1e-3 - 1e-12) and np.all(oc.logit_hi[0] <= mid + 1e-3 + 1e-12)  # outward
    assert np.any(ob.logit_hi[0] - ob.logit_lo[0] > 0.1)  # the clip did something
    assert np.all(oc.dev_logit_hi[0] <= np.nextafter(mid + 1e-3 - ob.nom_pre_lo[-1][0], np.inf) + 1e-12)
