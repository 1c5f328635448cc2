"""Batch runs (``hybridq run``): instance lists, VNN-COMP result words, counterexample files, resume,
per-instance timeouts."""

from __future__ import annotations

import csv
import json
import time
from fractions import Fraction

import numpy as np
import pytest

from hybridq import Deviation, Layer, Network
from hybridq.batch import (RESULT_COLUMNS, load_instances, read_results, read_vnncomp_counterexample, run_batch,
                           write_vnncomp_counterexample)
from hybridq.cli import main
from hybridq.config import make_config
from hybridq.errors import ConfigError


@pytest.fixture
def nets(tmp_path):
    """``tiny``: y = relu(x0 - x1) + 0.5 x0; ``hard``: a 4-40-40-40-2 relu net whose deviation
    query (rel:0.01, delta 0.2 on [-1, 1]^4) takes far longer than a second."""
    tiny = Network((Layer([[1.0, -1.0], [0.5, 0.0]], [0.0, 0.0], "relu"), Layer([[1.0, 1.0]], [0.0], "identity")))
    tiny.save(tmp_path / "tiny.npz")
    rng = np.random.default_rng(0)
    w = [4, 40, 40, 40, 2]
    hard = Network(tuple(Layer(rng.normal(size=(w[i + 1], w[i])) / np.sqrt(w[i]), rng.normal(size=w[i + 1]) * 0.1,
                               "relu" if i < len(w) - 2 else "identity") for i in range(len(w) - 1)))
    hard.save(tmp_path / "hard.npz")
    (tmp_path / "prop.vnnlib").write_text(
        "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
        "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= X_1 1.0))\n"
        "(assert (>= Y_0 1.4))\n")  # unsafe: y >= 1.4; max of y on the box is 1.5 (nominal)
    return {"tiny": tiny, "hard": hard}


def _cfg():
    return make_config(jobs=1, backend="none")


def test_vnncomp_csv_rows_words_and_counterexample(tmp_path, nets):
    """Header-less VNN-COMP rows plus the optional perturb/property/delta columns: unsat, sat, error."""
    lst = tmp_path / "instances.csv"
    lst.write_text(
        "tiny.npz,prop.vnnlib,30,fp16,deviation,0.01\n"      # |dev| <= 0.01 under fp16 rounding: holds
        "tiny.npz,prop.vnnlib,30,abs:0.1\n"                    # vnnlib: y >= 1.4 is reachable: sat
        "missing.onnx,prop.vnnlib,30,fp16\n"                   # error row
        "tiny.npz,prop.vnnlib,30,fp17,deviation,0.1\n")        # bad spec: error row
    insts = load_instances(lst)
    assert [i.id for i in insts] == ["tiny:prop", "tiny:prop#2", "missing:prop", "tiny:prop#3"]
    assert insts[0].timeout == 30.0 and insts[0].options == {"perturb": "fp16", "property": "deviation", "delta": "0.01"}
    res = tmp_path / "out.csv"
    rows = run_batch(insts, res, _cfg())
    assert [r.result for r in rows] == ["unsat", "sat", "error", "error"]
    assert [r.verdict for r in rows] == ["robust", "not_robust", "", ""]
    assert "missing.onnx" in rows[2].message and "fp17" in rows[3].message
    assert rows[0].cells >= 1 and rows[0].time_s > 0
    back = read_results(res)
    assert [r["result"] for r in back] == ["unsat", "sat", "error", "error"]
    assert list(back[0]) == list(RESULT_COLUMNS)
    # the counterexample file parses back to the input hybridq re-checked, and it is a violation
    cpath = back[1]["counterexample"]
    assert cpath.endswith(".counterexample")
    with open(cpath) as f:
        text = f.read()
    assert text.startswith("sat\n((X_0 ") and text.rstrip().endswith(")")
    x, y = read_vnncomp_counterexample(cpath)
    assert x.shape == (2,) and y.shape == (1,)
    assert np.all((0.0 <= x) & (x <= 1.0))
    npz = np.load(cpath[: -len(".counterexample")] + ".npz")
    assert np.array_equal(npz["x"], x)  # the same float64 values, bit for bit
    params = ((npz["W0"], npz["b0"]), (npz["W1"], npz["b1"]))
    exact = nets["tiny"].exact_logits(x, params)
    assert exact[0] >= Fraction(14, 10)  # inside the unsafe set, in exact arithmetic
    assert y[0] == float(exact[0])


def test_resume_skips_done_instances(tmp_path, nets):
    lst = tmp_path / "list.json"
    lst.write_text(json.dumps({"defaults": {"perturb": "fp16", "delta": 0.01, "timeout": 30},
                               "instances": [{"id": "a", "network": "tiny.npz", "box": "0:1,0:1"},
                                             {"id": "b", "network": "tiny.npz", "box": [[0, 2], [0, 1]]}]}))
    res = tmp_path / "r.csv"
    first = run_batch(load_instances(lst)[:1], res, _cfg())
    assert [r.id for r in first] == ["a"]
    second = run_batch(load_instances(lst), res, _cfg())
    assert [r.id for r in second] == ["b"]  # 'a' is already in the file
    assert run_batch(load_instances(lst), res, _cfg()) == []
    back = read_results(res)
    assert [r["id"] for r in back] == ["a", "b"] and all(r["result"] == "unsat" for r in back)


def test_per_instance_timeout_honoured(tmp_path, nets):
    lst = tmp_path / "list.toml"
    lst.write_text('perturb = "rel:0.01"\nproperty = "deviation"\ndelta = 0.2\n'
                   '[[instance]]\nid = "slow"\nnetwork = "hard.npz"\nbox = "-1:1,-1:1,-1:1,-1:1"\ntimeout = 1.0\n'
                   '[[instance]]\nid = "fast"\nnetwork = "tiny.npz"\nbox = "0:1,0:1"\ntimeout = 30\n')
    # warm-up: the kernels are loaded (or compiled, in a fresh checkout) on first use, inside the first run
    run_batch(load_instances(lst), tmp_path / "warm.csv", _cfg())
    t = time.perf_counter()
    rows = run_batch(load_instances(lst), tmp_path / "r.csv", _cfg())
    wall = time.perf_counter() - t
    assert [r.result for r in rows] == ["timeout", "unsat"]
    assert rows[0].verdict == "unknown" and rows[0].cells > 0
    assert rows[0].time_s < 1.0 + 4.0  # a chunk of cells or an attack in flight may run past the deadline
    assert wall < 30


def test_counterexample_format_roundtrip(tmp_path):
    x = np.array([0.1, -2.5e-8, 1623.99, 1.0 / 3.0])
    y = np.array([-0.0102734, 7.0])
    p = tmp_path / "c.counterexample"
    write_vnncomp_counterexample(p, x, y)
    lines = p.read_text().splitlines()
    assert lines[0] == "sat" and lines[1] == "((X_0 0.1)" and lines[-1] == " (Y_1 7.0))"
    xb, yb = read_vnncomp_counterexample(p)
    assert np.array_equal(xb, x) and np.array_equal(yb, y)
    p.write_text("((X_1 1.0) (X_0 2.0) (Y_0 3e-1))")  # no 'sat' line, any order and layout
    xb, yb = read_vnncomp_counterexample(p)
    assert xb.tolist() == [2.0, 1.0] and yb.tolist() == [0.3]
    p.write_text("((X_0 1.0) (X_2 2.0) (Y_0 1))")
    with pytest.raises(ConfigError, match="numbered"):
        read_vnncomp_counterexample(p)


def test_instance_list_errors(tmp_path):
    bad = tmp_path / "l.csv"
    bad.write_text("id,network,colour\na,n.onnx,red\n")
    with pytest.raises(ConfigError, match="colour"):
        load_instances(bad)
    bad.write_text("n.onnx,p.vnnlib,-3\n")
    with pytest.raises(ConfigError, match="timeout"):
        load_instances(bad)
    bad.write_text("n.onnx,p.vnnlib,1,fp16,deviation,0.1,0,extra\n")
    with pytest.raises(ConfigError, match="at most 7"):
        load_instances(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_instances(tmp_path / "none.csv")


def test_cli_run_and_resume(tmp_path, nets, capsys):
    lst = tmp_path / "instances.csv"
    lst.write_text("id,network,box,delta,outputs\nok,tiny.npz,\"0:1,0:1\",0.01,0\nbad,tiny.npz,\"1:0,0:1\",0.01,0\n")
    out = tmp_path / "res.csv"
    with pytest.raises(SystemExit) as e:
        main(["run", str(lst), "--perturb", "fp16", "-o", str(out), "--jobs", "1", "--backend", "none"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "ok  unsat" in text and "bad  error" in text and "inverted" in text
    assert "1 unsat, 1 error" in text
    with open(out, newline="") as f:
        assert [r["result"] for r in csv.DictReader(f)] == ["unsat", "error"]
    with pytest.raises(SystemExit) as e:
        main(["run", str(lst), "--perturb", "fp16", "-o", str(out), "--jobs", "1"])
    assert e.value.code == 0 and "nothing to run" in capsys.readouterr().out


def test_interrupted_instance_not_recorded_and_resumed(tmp_path, nets, monkeypatch):
    import hybridq.bab

    lst = tmp_path / "list.json"
    lst.write_text(json.dumps([{"id": i, "network": "tiny.npz", "box": "0:1,0:1", "perturb": "fp16", "delta": 0.01}
                               for i in ("a", "b", "c")]))
    real = hybridq.bab.verify
    calls = []

    def interrupting(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(hybridq.bab, "verify", interrupting)
    res = tmp_path / "r.csv"
    with pytest.raises(KeyboardInterrupt):
        run_batch(load_instances(lst), res, _cfg())
    assert [r["id"] for r in read_results(res)] == ["a"]  # 'b' was interrupted: not recorded
    monkeypatch.setattr(hybridq.bab, "verify", real)
    assert [r.id for r in run_batch(load_instances(lst), res, _cfg())] == ["b", "c"]
    assert [r["result"] for r in read_results(res)] == ["unsat"] * 3
