"""Decision equivalence (SameDecision): the exact semantics (ties), the product network, proofs and
counterexamples for parameter boxes and for onnxruntime-quantized models, and the CLI flag."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from hybridq import InputBox, Layer, Network, SameDecision, perturbation
from hybridq.equivalence import branch_params, product_network, verify_same_decision
from cli_helpers import one_error_line, run_cli as run


def _linear(W, b=None):
    W = np.asarray(W, dtype=np.float64)
    return Network((Layer(W, np.zeros(W.shape[0]) if b is None else np.asarray(b, float), "identity"),))


def test_exact_semantics_ties_kappa_sense_and_one_output():
    net = _linear(np.eye(2))
    swap = ((np.array([[0.0, 1.0], [1.0, 0.0]]), np.zeros(2)),)
    same = ((np.eye(2) * 2, np.zeros(2)),)
    tie = ((np.array([[1.0, 0.0], [1.0, 0.0]]), np.zeros(2)),)
    p = SameDecision()
    assert p.check_exact(net, [1.0, 0.0], swap)          # nominal class 0, perturbed class 1
    assert not p.check_exact(net, [1.0, 0.0], same)
    assert p.check_exact(net, [1.0, 0.0], tie)           # a perturbed tie is a flip
    assert not p.check_exact(net, [0.5, 0.5], swap)      # a nominal tie constrains nothing
    assert not SameDecision("1").check_exact(net, [1.0, 0.0], swap)  # nominal margin 1 is not > 1
    assert SameDecision("0.999").check_exact(net, [1.0, 0.0], swap)
    assert SameDecision(sense="min").check_exact(net, [1.0, 0.0], swap)     # argmin 1 vs argmin 0
    assert not SameDecision(sense="min").check_exact(net, [1.0, 0.0], same)
    one = _linear([[1.0]])
    neg = ((np.array([[-1.0]]), np.zeros(1)),)
    zero = ((np.array([[0.0]]), np.zeros(1)),)
    assert p.check_exact(one, [0.5], neg) and p.check_exact(one, [-0.5], neg)
    assert p.check_exact(one, [0.5], zero)               # y' = 0 is a tie: a flip of class 1
    assert not p.check_exact(one, [0.0], neg)            # y = 0: the nominal network has no class
    assert not p.check_exact(one, [Fraction(1, 10)], ((np.array([[2.0]]), np.zeros(1)),))
    # the float margin agrees in sign away from the boundaries
    y0, y1 = np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 1.0], [2.0, 0.0]])
    m = p.margin(net, y1, y0)
    assert m[0] > 0 and m[1] < 0
    with pytest.raises(ValueError, match="kappa"):
        SameDecision(-1)
    with pytest.raises(ValueError, match="argmin"):
        SameDecision(sense="min").class_matrix(1)


def _relu_net(seed=0):
    rng = np.random.default_rng(seed)
    return Network((Layer(rng.normal(size=(6, 2)), rng.normal(size=6), "relu"),
                    Layer(rng.normal(size=(3, 6)), rng.normal(size=3), "identity")))


def test_product_network_is_both_networks_side_by_side():
    net = _relu_net(1)
    pert = perturbation("abs:0.05", net)
    P, PP = product_network(net, pert.center, pert.radius)
    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, (50, 2))
    params = tuple((W + rng.uniform(-1, 1, W.shape) * RW, b + rng.uniform(-1, 1, b.shape) * rb)
                   for (W, b), (RW, rb) in zip(pert.center, pert.radius))
    Pparams = tuple((cW.copy(), cb.copy()) for cW, cb in PP.center)
    for k, ((W, b), l) in enumerate(zip(params, net.layers)):
        Pparams[k][0][l.n_out:, (0 if k == 0 else l.n_in):] = W
        Pparams[k][1][l.n_out:] = b
    assert PP.contains(Pparams)
    Y = P.forward(X, Pparams)
    assert np.allclose(Y[:, :3], net.forward(X)) and np.allclose(Y[:, 3:], net.forward(X, params))
    assert all(np.array_equal(a, c) and np.array_equal(b_, d) for (a, b_), (c, d) in zip(branch_params(net, Pparams), params))
    assert all(np.all(R[:l.n_out] == 0) for (R, _), l in zip(PP.radius, net.layers))  # the nominal branch is fixed
    # known pre-activation bounds of the perturbed network stay on its block only
    n = sum(l.n_out for l in net.layers)
    clip = (np.arange(n) - 100.0, np.arange(n) + 100.0)
    _, PC = product_network(net, pert.center, pert.radius, pre_clip=clip)
    lo, hi = PC.pre_clip
    o = 0
    for k, l in enumerate(net.layers):
        m = l.n_out
        assert np.all(np.isneginf(lo[2 * o:2 * o + m])) and np.all(np.isposinf(hi[2 * o:2 * o + m]))
        assert np.array_equal(lo[2 * o + m:2 * o + 2 * m], clip[0][o:o + m])
        assert np.array_equal(hi[2 * o + m:2 * o + 2 * m], clip[1][o:o + m])
        o += m


def _brute_disagreement(net, pert, box, n=4000, seed=0):
    """Sampled inputs and parameter vertices where the float classes differ (strict nominal margin)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(box.lower, box.upper, (n, box.n_in))
    c0 = np.argmax(net.forward(X), axis=1)
    for _ in range(8):
        params = tuple((W + np.sign(rng.normal(size=W.shape)) * RW, b + np.sign(rng.normal(size=b.shape)) * rb)
                       for (W, b), (RW, rb) in zip(pert.center, pert.radius))
        if np.any(np.argmax(net.forward(X, params), axis=1) != c0):
            return True
    return False


def test_parameter_box_counterexample_and_proof():
    net = _relu_net(0)
    pert = perturbation("abs:0.02", net)
    wide = InputBox(np.full(2, -2.0), np.full(2, 2.0))
    X = np.random.default_rng(0).uniform(-2, 2, (4000, 2))
    assert len(set(np.argmax(net.forward(X), axis=1))) > 1   # the nominal class changes on the box
    r = verify_same_decision(net, pert, wide, jobs=1, timeout=30, seed=0)
    assert r.verdict == "not_robust"
    cx = r.counterexample
    assert pert.contains(cx.params) and wide.contains(cx.x)
    assert SameDecision().check_exact(net, cx.x, cx.params)
    y0, y1 = net.exact_logits(cx.x), net.exact_logits(cx.x, cx.params)
    c = max(range(3), key=lambda j: y0[j])
    assert all(y0[c] > y0[j] for j in range(3) if j != c) and any(y1[j] >= y1[c] for j in range(3) if j != c)
    # a box on which the nominal class is fixed and the perturbation cannot move it
    x0 = X[np.argmax(np.sort(net.forward(X), axis=1)[:, -1] - np.sort(net.forward(X), axis=1)[:, -2])]
    small = InputBox(x0 - 0.01, x0 + 0.01)
    r = verify_same_decision(net, pert, small, jobs=1, timeout=30)
    assert r.verdict == "robust" and not _brute_disagreement(net, pert, small)
    # a margin kappa larger than twice any deviation exempts every input near a boundary
    r = verify_same_decision(net, pert, wide, SameDecision(4), jobs=1, timeout=60)
    assert r.verdict == "robust"


def test_one_output_binary_classifier():
    rng = np.random.default_rng(4)
    one = Network((Layer(rng.normal(size=(6, 2)), rng.normal(size=6), "relu"),
                   Layer(rng.normal(size=(1, 6)), rng.normal(size=1), "identity")))
    pert = perturbation("abs:0.02", one)
    box = InputBox(np.full(2, -2.0), np.full(2, 2.0))
    r = verify_same_decision(one, pert, box, jobs=1, timeout=30)
    assert r.verdict == "not_robust"
    y0, y1 = one.exact_logits(r.counterexample.x)[0], one.exact_logits(r.counterexample.x, r.counterexample.params)[0]
    assert (y0 > 0 and y1 <= 0) or (y0 < 0 and y1 >= 0)     # class 1 iff y > 0; y' = 0 is a flip
    r = verify_same_decision(one, pert, box, SameDecision(3), jobs=1, timeout=30)
    assert r.verdict == "robust" and r.stats.open == 0 and r.stats.refuted == 0


# ----------------------------------------------------------------------------- deployed
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def boundary_model(tmp_path_factory):
    """A 3-6-5-2 float MLP whose class changes inside [-1, 1]^3 (seed 3), quantized by onnxruntime."""
    import onnxruntime.quantization as oq

    from onnx_builders import save
    from test_onnx_quant import _mlp, _Reader

    d = tmp_path_factory.mktemp("eq")
    src = save(_mlp("gemm", 3), d / "boundary.onnx")
    out = d / "boundary.int8.onnx"
    oq.quantize_static(str(src), str(out), _Reader(), quant_format=oq.QuantFormat.QDQ,
                       activation_type=oq.QuantType.QInt8, weight_type=oq.QuantType.QInt8, per_channel=True)
    return src, out


def test_deployed_boundary_counterexample_rerun_on_onnxruntime(boundary_model):
    from hybridq.deployed import load_against, runtime_outputs, verify_deployed

    src, qf = boundary_model
    model = load_against(src, qf)
    box = InputBox(np.full(3, -0.5), np.full(3, 0.5))
    r = verify_deployed(model, box, SameDecision(), onnx_path=qf, jobs=1, timeout=60)
    assert r.verdict == "not_robust" and r.counterexample.kind == "rounded network"
    x = r.counterexample.x
    assert box.contains(x) and np.all(x.astype(np.float32) == x)
    y0, yq = model.network.exact_logits(x), model.exact_logits(x)
    c = 0 if y0[0] > y0[1] else 1
    assert y0[c] != y0[1 - c] and yq[1 - c] >= yq[c]          # the float class, not kept by the rounded network
    assert "onnxruntime" in r.counterexample.note
    g = runtime_outputs(qf, x)
    shows = not g[c] > g[1 - c]
    assert r.counterexample.note.startswith("onnxruntime shows it too" if shows else "onnxruntime does not show it")


def test_deployed_counterexample_file_is_complete(boundary_model, tmp_path):
    """Like every counterexample: both networks' outputs, the violated constraint and the property,
    also after a round trip through the ``.npz`` file."""
    from hybridq.deployed import load_against, verify_deployed
    from hybridq.result import Counterexample

    src, qf = boundary_model
    model = load_against(src, qf)
    box = InputBox(np.full(3, -0.5), np.full(3, 0.5))
    cx = verify_deployed(model, box, SameDecision(), onnx_path=qf, jobs=1, timeout=60).counterexample
    cx.save(tmp_path / "c.npz")
    for c in (cx, Counterexample.load(tmp_path / "c.npz")):
        assert np.array_equal(c.outputs_nominal, [float(v) for v in model.network.exact_logits(c.x)])
        assert np.array_equal(c.outputs_perturbed, [float(v) for v in model.exact_logits(c.x)])
        k, j = int(np.argmax(c.outputs_perturbed)), int(np.argmax(c.outputs_nominal))
        assert k != j and c.violated == f"the perturbed network's class ({k}, a tie counts as a flip) is the nominal class {j}"
        assert c.property["kind"] == "same_decision" and c.spec == model.name and c.kind == "rounded network"


def test_deployed_proved_with_margin_and_on_a_one_class_box(boundary_model):
    from hybridq.deployed import load_against, runtime_outputs, verify_deployed

    src, qf = boundary_model
    model = load_against(src, qf)
    box = InputBox(np.full(3, -0.5), np.full(3, 0.5))
    r = verify_deployed(model, box, SameDecision("0.5"), onnx_path=qf, jobs=1, timeout=60)
    assert r.verdict == "robust"
    # what it says, sampled on onnxruntime: where the float model wins by more than 0.5, the runtime agrees
    rng = np.random.default_rng(5)
    X = rng.uniform(-0.5, 0.5, (400, 3)).astype(np.float32).astype(np.float64)
    Y0 = model.network.forward(X)
    for x, y0 in zip(X, Y0):
        if abs(y0[0] - y0[1]) > 0.5:
            y = runtime_outputs(qf, x)
            assert np.argmax(y) == np.argmax(y0) and y[0] != y[1]
    # a small box inside one float class: the deployed network keeps it (step 2 of the proof)
    X = rng.uniform(-1, 1, (2000, 3))
    Y = model.network.forward(X)
    x0 = X[np.argmax(np.abs(Y[:, 0] - Y[:, 1]))]
    r = verify_deployed(model, InputBox(x0 - 0.02, x0 + 0.02), SameDecision(), onnx_path=qf, jobs=1, timeout=60)
    assert r.verdict == "robust"
    # at a point: the interval pass over the rounded network decides it
    r = verify_deployed(model, InputBox.point(np.float32(x0).astype(np.float64)), SameDecision(), onnx_path=qf)
    assert r.verdict == "robust" and r.stats.cells == 1


def test_cli_same_decision(capsys, boundary_model, tmp_path):
    src, qf = boundary_model
    box = "--box=-0.5:0.5,-0.5:0.5,-0.5:0.5"
    out_json = tmp_path / "r.json"
    code, out, _ = run(capsys, "verify", src, "--against", qf, "--same-decision", box, "-j", 1, "--no-progress",
                       "--timeout", 60, "--json", out_json)
    assert code == 1 and out.startswith("not_robust: counterexample (rounded network)") and "onnxruntime" in out
    doc = json.loads(out_json.read_text())
    assert doc["result"]["property"]["kind"] == "same_decision" and doc["result"]["property"]["sense"] == "max"
    code, out, _ = run(capsys, "verify", src, "--against", qf, "--same-decision", "--kappa", "0.5", box, "-j", 1,
                       "--no-progress", "--timeout", 60)
    assert code == 0 and out.startswith("robust")
    code, out, _ = run(capsys, "verify", src, "--perturb", "abs:0.001", "--same-decision", "--kappa", "0.5", box,
                       "-j", 1, "--no-progress", "--timeout", 60)
    assert code == 0 and out.startswith("robust")
    for extra, msg in ((["--label", "1"], "--label applies to --decision only"),
                       (["--delta", "1"], "give one of --same-decision, --decision and --delta"),
                       (["--space", "score"], "--space and --outputs apply to --delta only"),
                       (["--outputs", "0"], "--space and --outputs apply to --delta only"),
                       (["--kappa", "1e400"], "kappa of about 10^400 is beyond the float64 range")):
        code, _, err = run(capsys, "verify", src, "--against", qf, "--same-decision", box, *extra)
        assert code == 3 and msg in one_error_line(err)


def test_slow_exact_rechecks_stay_within_the_timeout():
    """Every candidate's exact re-check counts against the timeout: with re-checks of 0.4 s each and
    24 candidates the run used to take about 10 s of a 2 s budget; now it stops re-checking when one
    more does not fit (at most one re-check past the deadline) and the verdict stays honest."""
    import time

    from hybridq.equivalence import decide_same_decision

    net = _relu_net(0)
    box = InputBox(np.full(2, -1.0), np.full(2, 1.0))
    pert = perturbation("abs:0.5", net)  # wide enough that bounds cannot settle every class pair
    calls = []

    def confirm(x, params):  # an exact re-check that finds nothing, slowly
        calls.append(x)
        time.sleep(0.4)
        return None

    def more(xs):
        return [box.center + 0.01 * k for k in range(30)]

    t = time.perf_counter()
    res = decide_same_decision(SameDecision().resolve(net), net, net, pert, box, confirm, extra_candidates=more,
                               timeout=2.0, jobs=1)
    elapsed = time.perf_counter() - t
    assert res.verdict in ("unknown", "robust") and res.counterexample is None
    assert 1 <= len(calls) < 24
    assert elapsed < 2.0 + 3.0, elapsed


def test_same_decision_in_toml_instance_lists_and_quantify(capsys, tmp_path):
    """``same_decision`` is a TOML key of verify, a property of ``hybridq run`` instance lists, and
    a property of ``quantify --what epsilon`` (not of ``--what deviation``: one clear line)."""
    import csv

    net = _relu_net(0)
    net.save(tmp_path / "net.npz")
    box = "-2:2,-2:2"
    (tmp_path / "job.toml").write_text(f'perturb = "abs:0.02"\nbox = "{box}"\nsame_decision = true\n')
    code, out, _ = run(capsys, "verify", tmp_path / "net.npz", "--config", tmp_path / "job.toml", "-j", 1,
                       "--no-progress", "--timeout", 30)
    assert code == 1 and out.startswith("not_robust")   # as the library call above: the classes differ there
    lst = tmp_path / "list.csv"
    lst.write_text("id,network,box,perturb,property,kappa\n"
                   f"wide,net.npz,\"{box}\",abs:0.02,same_decision,0\n"
                   f"margin,net.npz,\"{box}\",abs:0.02,same_decision,4\n")
    code, _, _ = run(capsys, "run", lst, "-o", tmp_path / "res.csv", "-j", 1, "--timeout", 60)
    with open(tmp_path / "res.csv") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert rows["wide"]["verdict"] == "not_robust" and rows["margin"]["verdict"] == "robust"
    code, out, _ = run(capsys, "quantify", tmp_path / "net.npz", "--what", "epsilon", "--family", "abs",
                       "--same-decision", "--kappa", "1", "--box", box, "-j", 1, "--no-progress", "--timeout", 60)
    assert code == 0 and out.startswith("largest epsilon proved robust") and "refuted (counterexample) at" in out
    lo = float(out.split("robust ")[1].split(";")[0])
    hi = float(out.split("refuted (counterexample) at ")[1].split(",")[0])
    assert 0 < lo < hi <= 1.2 * lo   # bisection to the 10 % tolerance
    r = verify_same_decision(net, perturbation(f"abs:{1.01 * hi!r}", net), InputBox(np.full(2, -2.0), np.full(2, 2.0)),
                             SameDecision(1), jobs=1, timeout=30)
    assert r.verdict == "not_robust"   # (just above) the refuted step, re-run through the library
    code, _, err = run(capsys, "quantify", tmp_path / "net.npz", "--perturb", "abs:0.02", "--same-decision",
                       "--box", box)
    assert code == 3 and "--same-decision is a yes/no property" in one_error_line(err)


def test_a_stage_that_cannot_fit_is_not_started(monkeypatch):
    """A stage's first round cannot be interrupted: when its estimate (ROOT_COST times the pair
    filter's time) exceeds the time left, the call ends at once as unknown (timed out)."""
    import time

    import hybridq.equivalence as eq

    net = _relu_net(0)
    pert = perturbation("abs:0.02", net)
    wide = InputBox(np.full(2, -2.0), np.full(2, 2.0))
    monkeypatch.setattr(eq, "ROOT_COST", (1e9, 1e9))
    t = time.perf_counter()
    r = verify_same_decision(net, pert, wide, SameDecision(4), jobs=1, timeout=30)
    assert r.verdict == "unknown" and r.stats.timed_out and time.perf_counter() - t < 10
    assert "first bound pass" in r.message and "does not fit" in r.message
    r = verify_same_decision(net, pert, wide, SameDecision(4), jobs=1)  # no timeout: every stage runs
    assert r.verdict == "robust"
