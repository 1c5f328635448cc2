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


def test_byte_order_mark_and_fractional_output_index(tmp_path, nets):
    """A spreadsheet's UTF-8 CSV starts with a byte-order mark: the header 'id,...' was refused as the
    unknown column '\\ufeffid', a header 'network,...' was read as a data row, a JSON list was a parse
    error.  'outputs = 0.5' checked output 0 (int() truncated it)."""
    bom = "\ufeff"
    (tmp_path / "a.csv").write_text(bom + "id,network,point,perturb,delta\nn1,tiny.npz,0;1,abs:0.001,1\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text(bom + "network,point,perturb,delta\ntiny.npz,0;1,abs:0.001,1\n", encoding="utf-8")
    (tmp_path / "c.json").write_text(bom + json.dumps([{"network": "tiny.npz", "point": [0, 1], "perturb": "abs:0.001",
                                                        "delta": 1, "outputs": 0.5}]), encoding="utf-8")
    assert [i.id for i in load_instances(tmp_path / "a.csv")] == ["n1"]
    b = load_instances(tmp_path / "b.csv")
    assert len(b) == 1 and b[0].network == tmp_path / "tiny.npz" and b[0].options["delta"] == "1"
    rows = run_batch(load_instances(tmp_path / "c.json"), tmp_path / "r.csv", _cfg())
    assert rows[0].result == "error" and "got 0.5" in rows[0].message
    (tmp_path / "d.csv").write_text("network,point,perturb,delta\ntiny.npz,\"0,,1\",abs:0.001,1\n")
    rows = run_batch(load_instances(tmp_path / "d.csv"), tmp_path / "r2.csv", _cfg())
    assert rows[0].result == "error" and "empty entry" in rows[0].message


def _abc(tmp_path):
    lst = tmp_path / "abc.csv"
    lst.write_text("id,network,point,perturb,delta\n" + "".join(f"{i},tiny.npz,0;{v},abs:0.001,1\n"
                                                                 for i, v in (("a", 0), ("b", 0.5), ("c", 1))))
    return load_instances(lst)


def test_results_edited_by_hand_resume_without_losing_or_repeating_rows(tmp_path, nets):
    """A results file whose last line lost its line end (rows deleted in an editor): the next row was
    glued to it (row 'b' lost, re-run on every resume); a file whose columns were reordered by hand got
    rows in RESULT_COLUMNS order under its own header, so every resume ran every instance again."""
    res = tmp_path / "r.csv"
    run_batch(_abc(tmp_path), res, _cfg())
    lines = res.read_text().splitlines()
    res.write_text("\n".join(lines[:2]))                     # header + row a, no final line end
    assert [r.id for r in run_batch(_abc(tmp_path), res, _cfg())] == ["b", "c"]
    assert run_batch(_abc(tmp_path), res, _cfg()) == []
    assert [(r["id"], r["result"]) for r in read_results(res)] == [("a", "unsat"), ("b", "unsat"), ("c", "unsat")]
    res2 = tmp_path / "r2.csv"
    res2.write_text("result,id\nunsat,a\n")
    assert [r.id for r in run_batch(_abc(tmp_path), res2, _cfg())] == ["b", "c"]
    assert run_batch(_abc(tmp_path), res2, _cfg()) == []
    assert res2.read_text().splitlines() == ["result,id", "unsat,a", "unsat,b", "unsat,c"]
    res3 = tmp_path / "r3.csv"                                 # a row cut short by a kill: not done
    res3.write_text(lines[0] + "\r\n" + lines[1] + "\r\nb,uns")
    assert [r.id for r in run_batch(_abc(tmp_path), res3, _cfg())] == ["b", "c"]


def test_second_batch_on_the_same_results_file_is_refused(tmp_path, nets):
    """Two 'hybridq run' on one results file each ran every instance and both appended their rows."""
    import subprocess
    import sys

    res = tmp_path / "r.csv"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                               "from hybridq.batch import _open_results\n"
                               f"f = _open_results(Path({str(res)!r}))\nprint('held', flush=True)\ntime.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="another 'hybridq run' is writing this results file"):
            run_batch(_abc(tmp_path), res, _cfg())
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert [r.id for r in run_batch(_abc(tmp_path), res, _cfg())] == ["a", "b", "c"]


def test_box_cell_with_semicolons(tmp_path, nets):
    """A CSV box cell '0:1;0:0.5' (no quotes needed, as for points) was refused as 'box lower ends must be
    numbers'; an empty entry is an error, not a dropped dimension."""
    (tmp_path / "l.csv").write_text("network,box,perturb,delta\ntiny.npz,0:1;0:0.5,abs:0.001,1\ntiny.npz,0:1;;0:0.5,abs:0.001,1\n")
    rows = run_batch(load_instances(tmp_path / "l.csv"), tmp_path / "r.csv", _cfg())
    assert [r.result for r in rows] == ["unsat", "error"] and "empty entry (number 2)" in rows[1].message


def test_results_to_a_device_still_written(tmp_path, nets):
    """'-o /dev/stdout' (or /dev/null): no file to lock or resume from, rows are still written."""
    import os
    from pathlib import Path

    assert [r.id for r in run_batch(_abc(tmp_path), Path(os.devnull), _cfg())] == ["a", "b", "c"]


def test_generated_id_never_equals_another_instances_id(tmp_path, nets):
    """Rows 'a', 'a', 'a#2': the second became 'a#2' like the third, so the third was skipped as done
    (silently lost from the batch)."""
    lst = tmp_path / "l.csv"
    lst.write_text("id,network,point,perturb,delta\n" + "".join(f"{i},tiny.npz,0;{v},abs:0.001,1\n"
                                                                 for i, v in (("a", 0), ("a", 0.5), ("a#2", 1))))
    insts = load_instances(lst)
    assert [i.id for i in insts] == ["a", "a#2", "a#2#2"]
    assert [r.id for r in run_batch(insts, tmp_path / "r.csv", _cfg())] == ["a", "a#2", "a#2#2"]


def test_fractional_label_or_output_index_is_an_error_row(tmp_path, nets, capsys):
    """A JSON 'label': 1.5 was truncated to 1 and 'outputs': [0.5] to [0] (the instances ran and
    answered another question); a CSV label 'max' or '1.5' gave Python's 'invalid literal for int()'."""
    lst = tmp_path / "l.json"
    lst.write_text(json.dumps([
        {"id": "lab", "network": "tiny.npz", "point": [1, 0], "property": "decision", "label": 1.5},
        {"id": "outs", "network": "tiny.npz", "point": [1, 0], "delta": 1, "outputs": [0.5]},
        {"id": "ok", "network": "tiny.npz", "point": [1, 0], "property": "decision", "label": 1}]))
    csv_lst = tmp_path / "l.csv"
    csv_lst.write_text("id,network,point,property,label\nmax,tiny.npz,\"1,0\",decision,max\n"
                       "half,tiny.npz,\"1,0\",decision,1.5\n")
    for src, res in ((lst, tmp_path / "r1.csv"), (csv_lst, tmp_path / "r2.csv")):
        with pytest.raises(SystemExit) as e:
            main(["run", str(src), "--perturb", "abs:1e-3", "-o", str(res), "--jobs", "1", "--backend", "none"])
        assert e.value.code == 0
    capsys.readouterr()
    rows = {}
    for p in (tmp_path / "r1.csv", tmp_path / "r2.csv"):
        with open(p, newline="") as f:
            rows.update({r["id"]: r for r in csv.DictReader(f)})
    assert rows["lab"]["result"] == "error" and rows["lab"]["message"] == "label must be a non-negative integer, got 1.5"
    assert rows["outs"]["result"] == "error" and "output index must be a non-negative integer, got 0.5" in rows["outs"]["message"]
    assert rows["ok"]["result"] == "unsat"
    assert rows["max"]["message"] == "label must be a non-negative integer, got 'max'"
    assert rows["half"]["message"] == "label must be a non-negative integer, got '1.5'"


def test_results_saved_with_a_byte_order_mark_resume(tmp_path, nets):
    """A results file saved by a spreadsheet starts with a byte-order mark: it was 'not a hybridq results
    file (no 'id' column)'."""
    res = tmp_path / "r.csv"
    res.write_text("\ufeffid,result\r\na,unsat\r\n", encoding="utf-8")
    assert [r.id for r in run_batch(_abc(tmp_path), res, _cfg())] == ["b", "c"]
    assert [r["id"] for r in read_results(res)] == ["a", "b", "c"]


def test_counterexample_files_never_replace_an_input(tmp_path, nets):
    """'--counterexamples .' beside the networks: instance 'tiny' (sat) wrote its counterexample to
    tiny.npz, replacing the network (which then no longer loaded)."""
    lst = tmp_path / "l.csv"
    lst.write_text("id,network,vnnlib,perturb\ntiny,tiny.npz,prop.vnnlib,abs:0.1\n")
    before = (tmp_path / "tiny.npz").read_bytes()
    with pytest.raises(ConfigError, match=r"counterexample file .*tiny.npz of instance 'tiny' would overwrite the input"):
        run_batch(load_instances(lst), tmp_path / "r.csv", _cfg(), cex_dir=tmp_path)
    assert (tmp_path / "tiny.npz").read_bytes() == before and not (tmp_path / "r.csv").exists()
    rows = run_batch(load_instances(lst), tmp_path / "r.csv", _cfg(), cex_dir=tmp_path / "cx")
    assert rows[0].result == "sat" and (tmp_path / "cx" / "tiny.npz").is_file()


def test_corrupt_gz_network_is_an_error_row_naming_the_file(tmp_path, nets):
    """A truncated .gz network gave 'internal error EOFError: Compressed file ended ...', a non-gzip one
    'Not a gzipped file' without the file name."""
    import gzip

    gz = gzip.compress((tmp_path / "tiny.npz").read_bytes())
    (tmp_path / "cut.npz.gz").write_bytes(gz[:40])
    (tmp_path / "txt.npz.gz").write_text("not gzip")
    (tmp_path / "ok.npz.gz").write_bytes(gz)
    lst = tmp_path / "l.csv"
    lst.write_text("network,point,perturb,delta\n" + "".join(f"{n}.npz.gz,0;1,abs:0.001,1\n" for n in ("cut", "txt", "ok")))
    rows = run_batch(load_instances(lst), tmp_path / "r.csv", _cfg())
    assert [r.result for r in rows] == ["error", "error", "unsat"]
    for r, n in zip(rows[:2], ("cut", "txt")):
        assert r.message.startswith(f"{tmp_path / (n + '.npz.gz')}: not a readable .gz file"), r.message


def test_empty_instance_list_or_a_folder_is_a_bad_list(tmp_path, capsys):
    """An empty list (an empty file, a CSV header alone, ``[]``, a TOML file without
    ``[[instance]]``) printed 'done: nothing to run (all instances already in the results)', exit 0,
    as if a batch had finished; a folder was 'instance list not found'.  Both are a bad list now:
    one error line, exit 3, and no results file is created."""
    for name, text in (("e.csv", ""), ("h.csv", "id,network,vnnlib\n"), ("e.json", "[]"),
                       ("d.json", '{"defaults": {"perturb": "fp16"}, "instances": []}'), ("e.toml", 'perturb = "fp16"\n')):
        lst = tmp_path / name
        lst.write_text(text)
        with pytest.raises(ConfigError, match="no instances|a list of instances"):
            load_instances(lst)
        with pytest.raises(SystemExit) as e:
            main(["run", str(lst), "--perturb", "fp16", "-o", str(tmp_path / "r.csv")])
        err = capsys.readouterr().err
        assert e.value.code == 3 and err.count("\n") == 1 and err.startswith("hybridq: error: ") and "instances" in err, err
        assert not (tmp_path / "r.csv").exists()
    with pytest.raises(ConfigError, match="is a folder"):
        load_instances(tmp_path)


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full")
def test_results_that_cannot_be_written_name_the_file(tmp_path, nets, capsys, monkeypatch):
    """'-o /dev/full' printed 'hybridq: error: [Errno 28] No space left on device' (which file?);
    a results file that fills the disk mid-batch the same.  Both now name the results file; the rows
    written before stay, and a rerun resumes after them."""
    lst = tmp_path / "abc.csv"
    _abc(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["run", str(lst), "-o", "/dev/full", "--jobs", "1", "--backend", "none"])
    err = capsys.readouterr().err
    assert e.value.code == 3 and err.count("\n") == 1 and "/dev/full" in err and "No space left" in err, err
    import csv as csv_

    real, calls = csv_.DictWriter.writerow, []

    def full_after_one(self, row):
        calls.append(row)
        if len(calls) > 2:  # the header, then instance a
            raise OSError(28, "No space left on device")
        return real(self, row)

    monkeypatch.setattr(csv_.DictWriter, "writerow", full_after_one)
    out = tmp_path / "res.csv"
    with pytest.raises(SystemExit) as e:
        main(["run", str(lst), "-o", str(out), "--jobs", "1", "--backend", "none"])
    err = capsys.readouterr().err
    assert e.value.code == 3 and err.count("\n") == 1 and str(out) in err and "No space left" in err, err
    monkeypatch.setattr(csv_.DictWriter, "writerow", real)
    with out.open(newline="") as f:
        assert [r["id"] for r in csv_.DictReader(f)] == ["a"]
    assert [r.id for r in run_batch(load_instances(lst), out, _cfg())] == ["b", "c"]


def test_counterexample_folder_that_is_a_file_is_refused_before_the_run(tmp_path, nets, capsys):
    """'<results>_counterexamples' (or --counterexamples) naming an existing file: every 'sat'
    instance lost its counterexample files, noted only in the results row's message, with exit 0
    and nothing on the terminal.  It is refused before the run now (one line, exit 3), and the file
    is left as it was."""
    lst = tmp_path / "sat.csv"
    lst.write_text("id,network,point,perturb,delta\na,tiny.npz,1;0,abs:0.5,0.01\n")
    blocker = tmp_path / "r_counterexamples"
    blocker.write_text("precious\n")
    with pytest.raises(ConfigError, match="r_counterexamples"):
        run_batch(load_instances(lst), tmp_path / "r.csv", _cfg())
    for extra in ([], ["--counterexamples", str(blocker / "sub")]):
        with pytest.raises(SystemExit) as e:
            main(["run", str(lst), "-o", str(tmp_path / "r.csv"), "--jobs", "1", "--backend", "none", *extra])
        err = capsys.readouterr().err
        assert e.value.code == 3 and err.count("\n") == 1 and str(blocker) in err and "not a folder" in err, err
    assert blocker.read_text() == "precious\n"
    assert not (tmp_path / "r.csv").exists() or "a," not in (tmp_path / "r.csv").read_text()
    rows = run_batch(load_instances(lst), tmp_path / "r.csv", _cfg(), cex_dir=tmp_path / "cx")
    assert [r.result for r in rows] == ["sat"] and (tmp_path / "cx" / "a.npz").is_file()
