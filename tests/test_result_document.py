"""Self-describing outputs: the JSON document of verify / quantify / bounds validated against the
published schema, the counterexample .npz layout and bit-exact read-back, safe-direction printed
margins, and short ``print(result)`` / ``print(quantity)``."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from hybridq import Decision, Deviation, InputBox, Layer, Network, perturbation, quantify, verify
from cli_helpers import run_cli as _run, save_tiny
from hybridq.report import SCHEMA_PATH
from hybridq.result import Counterexample, Result, Stats

jsonschema = pytest.importorskip("jsonschema")


def _schema():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)




@pytest.fixture
def tiny(tmp_path):
    """y = relu(x0 - x1) + 0.5 x0 (2 inputs, 1 output), saved as .npz."""
    return save_tiny(tmp_path)


def test_verify_json_records_what_was_asked_and_validates(capsys, tiny, tmp_path):
    out = tmp_path / "r.json"
    code, stdout, err = _run(capsys, "verify", tiny, "--perturb", "abs:1e-2", "--point", "1,0", "--delta", "1e-3",
                             "--jobs", "1", "--seed", "3", "--timeout", "60", "--json", out, "--no-progress")
    assert code == 1, (stdout, err)
    doc = json.loads(out.read_text())
    _schema().validate(doc)
    assert doc["format"] == "hybridq-result" and doc["command"] == "verify"
    net = doc["problem"]["network"]
    assert net["path"] == str(tiny.resolve()) and net["sha256"] == hashlib.sha256(tiny.read_bytes()).hexdigest()
    assert doc["problem"]["perturbation"] == {"spec": "abs:1e-2"}
    assert doc["problem"]["input_set"]["boxes"] == [{"kind": "point", "lower": [1.0, 0.0], "upper": [1.0, 0.0]}]
    assert doc["problem"]["property"] == {"kind": "deviation", "delta": float(np.nextafter(1e-3, 0)),
                                          "delta_exact": "1/1000", "space": "logit", "outputs": None}
    assert doc["settings"]["seed"] == 3 and doc["settings"]["jobs"] == 1 and doc["settings"]["timeout"] == 60.0
    assert set(doc["versions"]) >= {"hybridq", "z3", "numba", "numpy", "python"} and doc["versions"]["numba"]
    res = doc["result"]
    assert res["verdict"] == "not_robust" and res["summary"] == stdout.strip()
    cx = res["counterexample"]
    assert cx["x"] == [1.0, 0.0] and len(cx["outputs_nominal"]) == 1 and len(cx["outputs_perturbed"]) == 1
    assert abs(cx["outputs_perturbed"][0] - cx["outputs_nominal"][0]) > 1e-3  # really violated
    assert cx["violated"] == "|y_0(x; theta) - y_0(x; theta0)| <= 0.001"
    # the parameters file the JSON points to (written beside it: no --counterexample was given)
    loaded = Counterexample.load(cx["params_file"])
    assert loaded.x.tolist() == cx["x"] and loaded.params[0][0].shape == (2, 2)


def test_bounds_json_has_the_same_top_level_layout(capsys, tiny, tmp_path):
    out = tmp_path / "b.json"
    code, stdout, err = _run(capsys, "bounds", tiny, "--perturb", "abs:1e-2", "--box", "0:1,0:1", "--json", out)
    assert code == 0, err
    doc = json.loads(out.read_text())
    _schema().validate(doc)
    assert doc["command"] == "bounds" and doc["problem"]["property"] is None
    row = doc["result"]["rows"][0]
    assert row["box"] == 0 and row["output"] == 0 and row["logit"][0] <= row["logit"][1]
    assert set(doc) == {"format", "format_version", "command", "problem", "settings", "versions", "result"}


def test_bounds_json_to_a_bad_path_fails_before_printing(capsys, tiny, tmp_path):
    code, stdout, err = _run(capsys, "bounds", tiny, "--perturb", "abs:1e-2", "--box", "0:1,0:1",
                             "--json", tmp_path / "nope" / "x.json")
    assert code == 3 and stdout == "" and "does not exist" in err


def test_quantify_json_validates_and_library_documents_too(tmp_path):
    rng = np.random.default_rng(0)
    net = Network((Layer(rng.normal(size=(4, 2)), rng.normal(size=4) * 0.1, "relu"),
                   Layer(rng.normal(size=(2, 4)), np.zeros(2), "identity")))
    x = np.array([0.2, -0.1])
    q = quantify(net, "abs:1e-3", InputBox.ball(x, 0.01), backend="none", jobs=1, tol=0.5)
    q.to_json(tmp_path / "q.json")
    doc = json.loads((tmp_path / "q.json").read_text())
    _schema().validate(doc)
    assert doc["command"] == "quantify" and doc["result"]["what"] == "deviation"
    assert doc["problem"]["network"]["path"] is None and doc["problem"]["network"]["n_inputs"] == 2
    qe = quantify(net, None, InputBox.point(x), Decision(int(net.predict(x))), what="epsilon", backend="none", jobs=1,
                  max_steps=4)
    qe.to_json(tmp_path / "e.json")
    doc = json.loads((tmp_path / "e.json").read_text())
    _schema().validate(doc)
    assert doc["problem"]["property"]["kind"] == "decision" and "sense" in doc["problem"]["property"]
    assert all("verdict" in st and "seconds" in st for st in doc["result"]["steps"])


def test_schema_rejects_documents_that_break_it(tmp_path):
    v = _schema()
    net = Network((Layer([[1.0]], [0.0], "identity"),))
    r = verify(net, perturbation("abs:0.1", net), InputBox.point([1.0]), Deviation(1.0), backend="none", jobs=1)
    r.to_json(tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    v.validate(doc)
    bad = json.loads(json.dumps(doc))
    bad["result"]["verdict"] = "sat"
    assert not v.is_valid(bad)
    bad = json.loads(json.dumps(doc))
    del bad["problem"]
    assert not v.is_valid(bad)


def test_counterexample_npz_layout_and_bit_exact_read_back(tmp_path):
    rng = np.random.default_rng(5)
    params = ((rng.normal(size=(3, 2)), rng.normal(size=3)), (rng.normal(size=(1, 3)), np.array([np.pi])))
    cx = Counterexample(np.array([0.1, 1 / 3]), params, 2.0 ** -60, 0.125, outputs_nominal=np.array([1 / 7]),
                        outputs_perturbed=np.array([2 / 7]), violated="|y_0(x; theta) - y_0(x; theta0)| <= 0.1",
                        property={"kind": "deviation", "delta": 0.1, "space": "logit", "outputs": None}, spec="abs:0.1")
    p = tmp_path / "cx.npz"
    cx.save(p)
    with np.load(p) as z:
        layout = str(z["layout"])
        assert "W{k} (out, in)" in layout and z["W0"].shape == (3, 2) and z["W1"].shape == (1, 3)
    back = Counterexample.load(p)
    assert back.x.tobytes() == cx.x.tobytes() and back.margin == cx.margin and back.value == cx.value
    for (W, b), (W2, b2) in zip(params, back.params):
        assert W.tobytes() == W2.tobytes() and b.tobytes() == b2.tobytes()
    assert back.outputs_perturbed.tobytes() == cx.outputs_perturbed.tobytes()
    assert back.violated == cx.violated and back.property == cx.property and back.spec == "abs:0.1"
    with pytest.raises(ValueError, match="not a hybridq counterexample"):
        np.savez(tmp_path / "other.npz", a=np.zeros(2))
        Counterexample.load(tmp_path / "other.npz")


def test_printed_margin_is_rounded_down_and_prints_are_short():
    big = tuple((np.ones((300, 300)), np.ones(300)) for _ in range(3))
    # a margin whose 3-digit rounding to nearest would overstate it
    cx = Counterexample(np.zeros(300), big, 0.0012349999, None)
    r = Result("not_robust", Deviation(0.1), cx, 0.5, Stats(cells=1, refuted=1))
    line = r.summary()
    assert "margin 0.00123" in line  # rounded down, never 0.00124
    assert len(str(r)) < 400 and len(repr(r)) < 400 and len(repr(cx)) < 400
    assert str(r) == line
    from hybridq.result import Quantity

    q = Quantity("deviation", 0.1, 0.2, witness=cx)
    assert len(str(q)) < 300 and len(repr(q)) < 300 and "max deviation" in str(q)
