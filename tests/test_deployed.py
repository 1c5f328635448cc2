"""A float ONNX model against its onnxruntime-quantized copy: verdicts and deviations of the rounded
deployed network, counterexamples re-run on onnxruntime, the CLI's --against and act= specs."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from hybridq import Decision, Deviation, InputBox, Layer, Network
from hybridq.actquant import act_model
from hybridq.deployed import against, deviation_deployed, load_against, runtime_outputs, verify_deployed
from hybridq.errors import ModelFormatError

pytest.importorskip("onnxruntime")
from test_onnx_quant import _quantize  # noqa: E402
from cli_helpers import run_cli as run  # noqa: E402

BOX = InputBox(np.full(3, -0.2), np.full(3, 0.3))
BOX_ARG = "--box=-0.2:0.3,-0.2:0.3,-0.2:0.3"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return _quantize(tmp_path_factory.mktemp("dep"), "gemm", "static", "QDQ", "QInt8", True)


@pytest.fixture(scope="module")
def quantity(files):
    model = load_against(*files)
    return model, deviation_deployed(model, BOX, timeout=20, jobs=1, seed=0)


def test_max_deviation_witnessed_exactly_and_proved(files, quantity):
    model, q = quantity
    assert 0 < q.lower <= q.upper
    x = q.witness.x
    yq, y0 = model.exact_logits(x), model.network.exact_logits(x)
    assert Fraction(q.lower) <= max(abs(a - b) for a, b in zip(yq, y0))
    # onnxruntime's deviation from the float model never exceeds the proved value
    rng = np.random.default_rng(3)
    X = rng.uniform(BOX.lower, BOX.upper, (300, 3)).astype(np.float32).astype(np.float64)
    dev = [np.max(np.abs(runtime_outputs(files[1], x) - model.network.forward(x))) for x in X]
    assert max(dev) <= q.upper


def test_verdicts_and_runtime_confirmation(files, quantity):
    model, q = quantity
    r = verify_deployed(model, BOX, Deviation(q.lower * 0.9), onnx_path=files[1], jobs=1, timeout=20)
    assert r.verdict == "not_robust"
    cx = r.counterexample
    assert cx.kind == "rounded network" and "onnxruntime shows the violation too" in cx.note
    assert np.all(cx.x.astype(np.float32) == cx.x) and BOX.contains(cx.x)      # an input the runtime can take
    assert Deviation(q.lower * 0.9).check_exact(model.rounded_view(), cx.x, model.center)
    assert "counterexample (rounded network)" in r.summary()
    r = verify_deployed(model, BOX, Deviation(q.upper * 1.01), jobs=1, timeout=20)
    assert r.verdict == "robust"
    label = int(model.network.predict(BOX.center))
    assert verify_deployed(model, BOX, Decision(label), jobs=1, timeout=20).verdict == "robust"


def test_layer_structure_must_agree(files):
    model = load_against(*files)
    net = model.network
    other = Network(net.layers[:2] + (Layer(np.ones((2, 5)), np.zeros(2), "relu"),))
    with pytest.raises(ModelFormatError, match="layer 3 differs: activation relu in the float model, identity deployed"):
        against(other, model)
    with pytest.raises(ModelFormatError, match="3 dense layers, the deployed model 2|float model has 2 dense layers"):
        against(Network(net.layers[:2]), model)




def test_cli_against(capsys, files, quantity):
    src, qf = files
    _, q = quantity
    code, out, _ = run(capsys, "verify", src, "--against", qf, "--delta", q.lower * 0.9, BOX_ARG, "-j", 1,
                       "--no-progress", "--timeout", 20)
    assert code == 1 and "counterexample (rounded network)" in out and "onnxruntime shows" in out
    code, out, _ = run(capsys, "verify", src, "--against", qf, "--decision", BOX_ARG, "-j", 1, "--no-progress")
    assert code == 0 and out.startswith("robust")
    code, out, _ = run(capsys, "bounds", src, "--against", qf, BOX_ARG)
    assert code == 0 and len(out.splitlines()) == 3
    code, _, err = run(capsys, "verify", src, "--against", qf, "--perturb", "fp16", "--delta", 1, BOX_ARG)
    assert code == 3 and "drop --perturb" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "verify", src, "--against", src, "--delta", 1, BOX_ARG)
    assert code == 0  # a float file is its own (trivially equal) deployed model: no quantizers at all


def test_cli_act_spec_and_activation_bits(capsys, files):
    src, _ = files
    code, out, _ = run(capsys, "verify", src, "--perturb", "point:int8@weights;act=int8", "--delta", 10, BOX_ARG,
                       "-j", 1, "--no-progress")
    assert code == 0 and out.startswith("robust")
    code, out, _ = run(capsys, "quantify", src, "--perturb", "point:int8@weights;act=int8", "--what", "bits",
                       "--decision", BOX_ARG, "-j", 1, "--no-progress")
    assert code == 0 and out.startswith("fewest bits proved robust")
    bits = int(out.split("robust ")[1].split(";")[0])
    assert 2 <= bits <= 16
    # the fewest-bits answer is itself proved, one bit less is not
    from hybridq.io import load_network

    net = load_network(src)
    label = int(net.predict(BOX.center))
    r = verify_deployed(act_model(net, f"point:int8@weights;act=int{bits}", BOX), BOX, Decision(label), jobs=1)
    assert r.verdict == "robust"
    code, _, err = run(capsys, "verify", src, "--perturb", "act=int99", "--delta", 1, BOX_ARG)
    assert code == 3 and "2 <= B <= 16" in err


def test_point_deviation_is_tight_and_contains_the_runtime(files):
    model = load_against(*files)
    x = np.array([0.125, -0.0625, 0.25])      # float32 values: the runtime sees the same input
    q = deviation_deployed(model, InputBox.point(x))
    # at a point the interval pass over the rounded network leaves only the runtime's float32 slack
    assert q.lower <= q.upper <= q.lower + 1e-5
    assert Fraction(q.lower) <= max(abs(a - b) for a, b in zip(model.exact_logits(x), model.network.exact_logits(x)))
    rt = np.max(np.abs(runtime_outputs(files[1], x) - model.network.forward(x)))
    assert q.lower - 1e-6 <= rt <= q.upper
    r = verify_deployed(model, InputBox.point(x), Deviation(q.upper), onnx_path=files[1])
    assert r.verdict == "robust" and r.stats.cells == 1
    r = verify_deployed(model, InputBox.point(x), Deviation(q.lower / 2), onnx_path=files[1])
    assert r.verdict == "not_robust" and r.counterexample.kind == "rounded network"
    assert "onnxruntime shows the violation too" in r.counterexample.note


def test_climb_on_the_rounded_network_never_loses_ground(files):
    from hybridq.deployed import _exact_deviation, climb_rounded, search_rounded

    model = load_against(*files)
    prop = Deviation(0.0)
    x0 = np.full(3, 0.05)
    x = climb_rounded(model, BOX, prop, x0, budget=1.0)
    assert BOX.contains(x)
    sim = lambda v: np.max(np.abs(model.forward(v[None]) - model.network.forward(v[None])))  # noqa: E731
    assert sim(x) >= sim(x0)
    # the simulated rounding is the exact rounded network (away from ties): the climb's gain is real
    assert abs(float(_exact_deviation(model, prop, x)) - sim(x)) < 1e-9
    xs, _ = search_rounded(model, BOX, prop)
    assert sim(climb_rounded(model, BOX, prop, xs, budget=1.0)) >= sim(xs)


def test_deviation_within_timeout_even_with_a_long_search_share(files):
    """The witness search's share is part of the timeout: ``search=10`` with ``timeout=2`` used to
    climb for 10 s after the branch and bound; now the search, the climb and the exact re-checks fit
    the 2 s (a margin for the branch and bound's round in flight at its deadline)."""
    import time

    model = load_against(*files)
    t = time.perf_counter()
    q = deviation_deployed(model, BOX, timeout=2.0, search=10.0, jobs=1, seed=0)
    elapsed = time.perf_counter() - t
    assert elapsed < 2.0 + 3.0, elapsed
    assert 0 < q.lower <= q.upper
    x = q.witness.x
    assert Fraction(q.lower) <= max(abs(a - b) for a, b in zip(model.exact_logits(x), model.network.exact_logits(x)))
