"""Small defects found by a bug hunt and by a new user (issue 11): each one asserted fixed."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest

from cli_helpers import one_error_line as _one_error, run_cli as _run, save_tiny
from hybridq.io import load_network, load_vnnlib






@pytest.fixture
def tiny(tmp_path):
    return save_tiny(tmp_path)


NNET = """// a 2-2-1 network
2,2,1,2
2,2,1
0
-1,-1
1,1
0,0,0
1,1,1
1,0
0,1
0
0
1,1
0.5"""


@pytest.mark.parametrize("commas", [True, False])
def test_nnet_without_trailing_commas_or_final_newline(tmp_path, commas):
    text = NNET if not commas else "\n".join(l + "," if not l.startswith("//") else l for l in NNET.splitlines())
    p = tmp_path / "n.nnet"
    p.write_text(text)  # no final newline
    net = load_network(p)
    assert net.widths == (2, 2, 1)
    assert float(net.forward(np.array([0.5, 0.25]))[0]) == pytest.approx(0.5 + 0.75)


def test_truncated_nnet_still_refused(tmp_path):
    p = tmp_path / "t.nnet"
    p.write_text("\n".join(NNET.splitlines()[:-2]))
    from hybridq.errors import ModelFormatError

    with pytest.raises(ModelFormatError, match="truncated"):
        load_network(p)


@pytest.mark.parametrize("op", ["Neg", "Cast", "Transpose"])
def test_constant_only_onnx_op_on_the_input_says_what_is_unsupported(tmp_path, op):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    attrs = {"to": TensorProto.FLOAT} if op == "Cast" else {}
    node = helper.make_node(op, ["x"], ["h"], **attrs)
    W = helper.make_tensor("W", TensorProto.FLOAT, [2, 1], [1.0, 2.0])
    mm = helper.make_node("MatMul", ["h", "W"], ["y"])
    g = helper.make_graph([node, mm], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], initializer=[W])
    p = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), p)
    from hybridq.errors import UnsupportedLayerError

    with pytest.raises(UnsupportedLayerError) as e:
        load_network(p)
    msg = str(e.value)
    assert f"{op!r} is supported on constants" in msg and "running tensor" in msg
    assert op not in msg.split("ops on the running tensor:")[1]


def test_infeasible_output_constraint_is_not_blamed_on_the_input_box(tmp_path):
    p = tmp_path / "p.vnnlib"
    p.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
                 "(assert (<= (- Y_0 Y_0) -1))\n")
    from hybridq.errors import ModelFormatError

    with pytest.raises(ModelFormatError) as e:
        load_vnnlib(p, 1, 1)
    assert "variables cancel out" in str(e.value) and "empty input box" not in str(e.value)


def test_no_arguments_prints_the_help_once(capsys):
    code, out, err = _run(capsys)
    assert code == 0 and (out + err).count("Usage: hybridq") == 1


def test_help_shows_no_bool_or_braces(capsys):
    for cmd in ([], ["verify"], ["bounds"], ["quantify"], ["run"]):
        code, out, _ = _run(capsys, *cmd, "--help")
        assert code == 0 and "<bool>" not in out and "{" not in out.splitlines()[0], out
    code, out, _ = _run(capsys, "verify", "--help")
    assert out.startswith("Usage: hybridq verify [OPTIONS] NETWORK")


def test_huge_box_leaks_no_numpy_warning(capsys, tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, out, err = _run(capsys, "verify", tiny, "--perturb", "abs:1e-3", "--box=-1e300:1e300,-1e300:1e300",
                              "--delta", "1", "--backend", "none", "--jobs", "1", "--timeout", "5", "--no-progress")
    assert "Warning" not in err and "overflow" not in err and code in (0, 1, 2), err


def test_point_text_file_with_commas(capsys, tiny, tmp_path):
    pt = tmp_path / "pt.txt"
    pt.write_text("1,0")
    code, out, err = _run(capsys, "verify", tiny, "--perturb", "abs:1e-2", "--point", pt, "--delta", "1",
                          "--backend", "none", "--jobs", "1", "--no-progress")
    assert code == 0 and out.startswith("robust"), err
    pt.write_text("1 0\n")
    code, out, err = _run(capsys, "verify", tiny, "--perturb", "abs:1e-2", "--point", pt, "--delta", "1",
                          "--backend", "none", "--jobs", "1", "--no-progress")
    assert code == 0, err
    pt.write_text("1,x")
    code, out, err = _run(capsys, "verify", tiny, "--perturb", "abs:1e-2", "--point", pt, "--delta", "1")
    assert code == 3 and "pt.txt" in _one_error(err)


def test_plot_format_follows_the_suffix_or_is_refused(capsys, tiny, tmp_path):
    code, out, err = _run(capsys, "verify", tiny, "--perturb", "abs:1e-2", "--box", "0:1,0:1", "--delta", "1",
                          "--plot", tmp_path / "p.jpg", "--backend", "none", "--jobs", "1", "--no-progress")
    assert code == 3 and ".png" in _one_error(err) and not (tmp_path / "p.jpg").exists()
    code, out, err = _run(capsys, "verify", tiny, "--perturb", "abs:1e-2", "--box", "0:1,0:1", "--delta", "1",
                          "--plot", tmp_path / "p.svg", "--backend", "none", "--jobs", "1", "--no-progress")
    assert code == 0, err
    assert (tmp_path / "p.svg").read_text().lstrip().startswith(("<?xml", "<svg"))


def test_toml_paths_are_relative_to_the_toml_file(capsys, tiny, tmp_path, monkeypatch):
    sub = tmp_path / "job"
    sub.mkdir()
    (sub / "pt.txt").write_text("1,0")
    (sub / "job.toml").write_text('perturb = "abs:1e-2"\npoint = "pt.txt"\ndelta = 1.0\njson = "out.json"\n'
                                  'backend = "none"\njobs = 1\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = _run(capsys, "verify", tiny, "--config", sub / "job.toml", "--no-progress")
    assert code == 0, err
    assert (sub / "out.json").exists() and not (elsewhere / "out.json").exists()


@pytest.mark.parametrize("args", [("--point", "0,0", "--delta", "1e-5000"), ("--point", "0,1e-5000", "--delta", "1"),
                                  ("--box=0:1e-5000,0:1", "--delta", "1"), ("--point", "0,0", "--decision", "--kappa", "1e-5000"),
                                  ("--point", "0,0", "--delta", "1e100000000")])
def test_numbers_too_long_for_exact_arithmetic_one_error_line(capsys, tiny, args):
    """'--delta 1e-5000' ran the whole verification and then failed with Python's 'Exceeds the limit
    (4300 digits) for integer string conversion' (the exact delta went into the JSON problem); a
    huge exponent built a 10^100000000 integer first."""
    code, out, err = _run(capsys, "verify", tiny, "--perturb", "abs:0.1", *args, "--jobs", "1", "--no-progress")
    assert code == 3 and "digits as an exact number" in _one_error(err), err


def test_numbers_too_long_for_exact_arithmetic_library(tmp_path):
    from hybridq import Deviation, perturbation
    from hybridq.errors import PerturbationError

    net = load_network(save_tiny(tmp_path))
    with pytest.raises(ValueError, match="more than 4000 digits"):
        Deviation("1e-5000")
    with pytest.raises(PerturbationError, match="more than 4000 digits"):
        perturbation("abs:1e-5000", net)
    p = tmp_path / "p.vnnlib"
    p.write_text("(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)"
                 "(assert (>= X_0 0))(assert (<= X_0 1e-5000))(assert (>= X_1 0))(assert (<= X_1 1))(assert (<= Y_0 0))")
    with pytest.raises(Exception, match="more than 4000 digits"):
        load_vnnlib(p, 2, 1)
    assert Deviation("1e-400").delta_exact == Fraction(1, 10**400)  # small, but within the limit: kept exactly


@pytest.mark.parametrize("cmd,args,what", [
    ("verify", ("--point", "0,,1", "--delta", "1"), "--point has an empty entry (number 2)"),
    ("verify", ("--box=0:1,,0:1", "--delta", "1"), "--box has an empty entry (number 2)"),
    ("verify", ("--point", "0,1", "--delta", "1", "--outputs", "0.5"), "output index must be a non-negative integer, got 0.5"),
    ("quantify", ("--point", "0,1", "--outputs", "0.5"), "output index must be a non-negative integer, got 0.5")])
def test_list_typos_are_refused_not_guessed(capsys, tiny, cmd, args, what):
    """'--point 0,,1' ran at the point (0, 1) (the empty entry was dropped) and '--outputs 0.5'
    checked output 0 (int() truncated it): a typo answered a question the user did not ask."""
    code, out, err = _run(capsys, cmd, tiny, "--perturb", "abs:0.1", *args, "--jobs", "1", "--no-progress")
    assert code == 3 and what in _one_error(err), err


def test_list_trailing_separator_is_still_accepted(capsys, tiny):
    code, out, err = _run(capsys, "verify", tiny, "--perturb", "abs:0.001", "--point", "0,1,", "--delta", "1",
                          "--jobs", "1", "--no-progress")
    assert code == 0 and out.startswith("robust"), (out, err)


def test_toml_with_byte_order_mark_and_box_pairs(capsys, tiny, tmp_path):
    """A config saved with a byte-order mark was 'invalid TOML ... line 1, column 1'; 'box = [[0, 1], ...]'
    (the form instance lists take) was 'bad --box entry [0, 1]'."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("\ufeffperturb = \"abs:0.001\"\nbox = [[0, 0.5], [\"0\", 1]]\ndelta = 1\n", encoding="utf-8")
    code, out, err = _run(capsys, "verify", tiny, "--config", cfg, "--jobs", "1", "--no-progress", "--json", tmp_path / "r.json")
    assert code == 0 and out.startswith("robust"), (out, err)
    import json
    boxes = json.loads((tmp_path / "r.json").read_text())["problem"]["input_set"]["boxes"]
    assert [boxes[0]["lower"], boxes[0]["upper"]] == [[0, 0], [0.5, 1]]


def test_unreadable_box_npy_names_the_file(capsys, tiny, tmp_path):
    bad = tmp_path / "b.npy"
    bad.write_text("not an array")
    code, out, err = _run(capsys, "verify", tiny, "--perturb", "abs:0.1", "--box", bad, "--delta", "1", "--jobs", "1")
    assert code == 3 and f"box file {bad} is not a .npy file" in _one_error(err), err


def test_outputs_never_overwrite_an_input(capsys, tiny, tmp_path):
    """'--counterexample NET.npz' replaced the network by the counterexample, '--json prop.vnnlib' the
    property, 'run -o' a network of the list: the user's input was lost after one typo."""
    vnn = tmp_path / "p.vnnlib"
    vnn.write_text("(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)"
                   "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 1))(assert (>= Y_0 0.5))")
    before = {p: p.read_bytes() for p in (tiny, vnn)}
    cases = [("verify", tiny, "--perturb", "abs:0.1", "--vnnlib", vnn, "--counterexample", tiny, "--jobs", "1"),
             ("verify", tiny, "--perturb", "abs:0.1", "--vnnlib", vnn, "--json", vnn, "--jobs", "1"),
             ("bounds", tiny, "--perturb", "abs:0.1", "--vnnlib", vnn, "--json", tmp_path / "." / tiny.name),
             ("quantify", tiny, "--perturb", "abs:0.1", "--vnnlib", vnn, "--json", tiny, "--jobs", "1"),
             ("verify", tiny, "--perturb", "abs:0.1", "--vnnlib", vnn, "--json", tmp_path / "a.json",
              "--counterexample", tmp_path / "a.json", "--jobs", "1")]
    for args in cases:
        code, out, err = _run(capsys, *args)
        assert code == 3 and ("would overwrite an input" in _one_error(err) or "is also the --json file" in err), (args, err)
    lst = tmp_path / "l.csv"
    lst.write_text(f"network,vnnlib,perturb\n{tiny.name},{vnn.name},abs:0.1\n")
    for res in (lst, tiny):
        code, out, err = _run(capsys, "run", lst, "-o", res, "--jobs", "1")
        assert code == 3 and "is an input of the batch" in _one_error(err), err
    assert {p: p.read_bytes() for p in (tiny, vnn)} == before and lst.read_text().count("\n") == 2


def test_fractional_output_index_and_nonpositive_tol_are_refused(capsys, tiny):
    """'--outputs 0.5' was truncated to output 0 by int() and the run answered for output 0;
    'quantify --tol 0' was read as "not given" (0.1) and '--tol inf' failed as 'delta ... nan'."""
    base = ("--perturb", "abs:1e-2", "--point", "1,0", "--jobs", "1", "--no-progress")
    code, out, err = _run(capsys, "verify", tiny, *base, "--delta", "1", "--outputs", "0.5")
    assert code == 3 and "output index must be a non-negative integer, got 0.5" in _one_error(err)
    code, out, err = _run(capsys, "quantify", tiny, *base, "--outputs", "0.5")
    assert code == 3 and "got 0.5" in _one_error(err)
    code, out, err = _run(capsys, "verify", tiny, *base, "--delta", "1", "--outputs", "0")  # a whole number still works
    assert code == 0 and out.startswith("robust"), err
    for tol in ("0", "inf", "-0.5"):
        code, out, err = _run(capsys, "quantify", tiny, *base, f"--tol={tol}")
        assert code == 3 and "--tol must be a finite number > 0" in _one_error(err) and out == "", (tol, err)


@pytest.mark.parametrize("args, words", [
    # --ball with --box: the box was checked, the ball dropped without a word
    (("verify", "--box=0:1,0:1", "--ball", "0.1", "--delta", "1"), "--ball"),
    (("quantify", "--box=0:1,0:1", "--ball", "0.1"), "--ball"),
    # --label with a deviation (or the VNNLIB) property: no class is protected
    (("verify", "--point", "1,0", "--delta", "1", "--label", "0"), "--label"),
    # --space / --outputs with --decision: the classes are compared, no deviation space
    (("verify", "--point", "1,0", "--decision", "--space", "score"), "--space"),
    (("verify", "--point", "1,0", "--decision", "--outputs", "0"), "--outputs"),
    # quantify --what deviation computes the maximum: --delta / --decision / --label had no effect
    (("quantify", "--point", "1,0", "--delta", "0.1"), "--delta"),
    (("quantify", "--point", "1,0", "--decision"), "--decision"),
    (("quantify", "--point", "1,0", "--label", "0"), "--label"),
    # quantify --what epsilon|bits varies its family: a --perturb without act= parts was not used
    (("quantify", "--point", "1,0", "--delta", "0.1", "--what", "epsilon", "--family", "rel"), "--perturb"),
    (("quantify", "--point", "1,0", "--delta", "0.1", "--what", "bits", "--family", "fixed"), "--perturb"),
])
def test_options_the_question_does_not_use_are_refused(capsys, tiny, args, words):
    """A new user's mistakes that hybridq answered as if the option were not there (a verdict,
    exit 0 or 1, for a question other than the one typed): each is now one error line, exit 3."""
    cmd, *rest = args
    code, out, err = _run(capsys, cmd, tiny, "--perturb", "abs:1e-2", *rest, "--jobs", "1", "--no-progress")
    assert code == 3 and out == "", (out, err)
    assert words in _one_error(err)


def test_options_the_question_uses_still_run(capsys, tiny):
    """The legitimate neighbours of the refused combinations keep working."""
    for args in (("verify", "--point", "1,0", "--ball", "0.1", "--delta", "1"),
                 ("verify", "--point", "1,0", "--decision", "--label", "0"),
                 ("verify", "--point", "1,0", "--delta", "1", "--space", "score", "--outputs", "0"),
                 ("quantify", "--point", "1,0", "--space", "score", "--outputs", "0"),
                 ("quantify", "--point", "1,0", "--decision", "--label", "0", "--what", "epsilon")):
        cmd, *rest = args
        code, out, err = _run(capsys, cmd, tiny, *(("--perturb", "abs:1e-2") if "epsilon" not in rest else ()), *rest,
                              "--jobs", "1", "--no-progress", "--timeout", "30")
        assert code in (0, 1) and "error" not in err, (args, out, err)


def test_npy_input_that_is_not_npy_or_holds_objects_says_so(capsys, tiny, tmp_path):
    """A text file named .npy was 'unreadable: This file contains pickled (object) data. If you
    trust the file you can load it unsafely ...' (numpy's message for a file without its magic
    string), which suggests a pickle and how to load it unsafely; an object array's message named
    allow_pickle.  A folder given as --config was 'config file not found'."""
    txt = tmp_path / "t.npy"
    txt.write_text("0.5,0.25\n")
    obj = tmp_path / "o.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for opt, path, words in (("--point", txt, "not a .npy file"), ("--box", txt, "not a .npy file"),
                             ("--point", obj, "Python objects"), ("--box", obj, "Python objects")):
        code, out, err = _run(capsys, "verify", tiny, "--perturb", "abs:1e-2", opt, path, "--delta", "1")
        line = _one_error(err)
        assert code == 3 and words in line and "pickle" not in line and line.count(path.name) == 1, line
        assert "unreadable" not in line, line
    code, out, err = _run(capsys, "verify", tiny, "--config", tmp_path)
    assert code == 3 and "is a folder" in _one_error(err)


def test_serve_with_a_socket_in_a_missing_folder_names_the_folder(capsys, tmp_path, monkeypatch):
    """HYBRIDQ_SERVER=/no/such/dir/s.sock: 'hybridq serve' printed "[Errno 2] No such file or
    directory: '/no/such/dir/s.sock.log'"; it names the missing folder and the variable now (exit 3,
    nothing started).  A client with that setting still runs commands in its own process."""
    sock = tmp_path / "missing" / "s.sock"
    monkeypatch.setenv("HYBRIDQ_SERVER", str(sock))
    code, out, err = _run(capsys, "serve")
    line = _one_error(err)
    assert code == 3 and "HYBRIDQ_SERVER" in line and str(sock.parent) in line and "does not exist" in line, line
    assert not sock.parent.exists()
    from hybridq.client import socket_path

    assert socket_path(create=False) == str(sock)


def test_a_number_with_too_many_digits_is_not_echoed_whole(capsys, tiny):
    """A 5000-digit --point coordinate was refused with the whole number in the error line (5,100
    characters); the line now shows its start and end and its length."""
    big = "0." + "1" * 5000
    code, out, err = _run(capsys, "verify", tiny, "--perturb", "abs:1e-2", "--point", f"{big},0", "--delta", "1")
    line = _one_error(err)
    assert code == 3 and len(line) < 300 and "5002 characters" in line and "digits" in line, line
