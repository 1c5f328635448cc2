"""Generated malformed / truncated .nnet, ONNX and .npz files: each raises ModelFormatError, quickly,
with a message that names the file (and the line, layer, op or node where it applies)."""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx_builders import make_model, write_nnet

from hybridq import Layer, ModelFormatError, Network, UnsupportedLayerError, load_network

RNG = np.random.default_rng(5)

# ------------------------------------------------------------------ valid base files
_W = [RNG.normal(size=(4, 3)), RNG.normal(size=(2, 4))]
_B = [RNG.normal(size=4), RNG.normal(size=2)]
_NORM = ([-1, -2, -3], [1, 2, 3], [0.5, 0, 1, 10.0], [2, 1, 4, 3.0])


def _nnet_text(Ws=_W, bs=_B, norm=_NORM) -> str:
    with tempfile.TemporaryDirectory() as d:
        return write_nnet(Path(d) / "n.nnet", Ws, bs, *norm).read_text()


NNET = _nnet_text()
NNET_LINES = NNET.splitlines()   # 2 comments, 7 header lines, then W1 rows (4), b1 (4), W2 rows (2), b2 (2)


def _onnx_model(nodes=None, inits=None, in_shape=(1, 3), out_shape=(1, 2)):
    inits = inits if inits is not None else {"W1": _W[0].T.astype(np.float32), "b1": _B[0].astype(np.float32),
                                             "W2": _W[1].T.astype(np.float32), "b2": _B[1].astype(np.float32)}
    nodes = nodes if nodes is not None else [
        helper.make_node("MatMul", ["x", "W1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]), helper.make_node("MatMul", ["r1", "W2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["y"])]
    return make_model(nodes, inits, list(in_shape), list(out_shape))


ONNX = _onnx_model().SerializeToString()


def _npz_bytes(**override) -> bytes:
    net = Network(tuple(Layer(W, b, a) for W, b, a in zip(_W, _B, ("relu", "identity"))))
    with tempfile.TemporaryDirectory() as d:
        net.save(Path(d) / "n.npz")
        with np.load(Path(d) / "n.npz") as z:
            arrays = {k: z[k] for k in z.files}
    for k, v in override.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


NPZ = _npz_bytes()


def _spread(n_bytes: int, count: int) -> list[int]:
    return sorted({int(v) for v in np.linspace(0, n_bytes, count, endpoint=False)})


def _replace_line(i: int, text: str) -> bytes:
    lines = list(NNET_LINES)
    lines[i] = text
    return ("\n".join(lines) + "\n").encode()


def _drop_line(i: int) -> bytes:
    return ("\n".join(NNET_LINES[:i] + NNET_LINES[i + 1:]) + "\n").encode()


def _onnx_with(nodes, inits=None, **kw) -> bytes:
    return _onnx_model(nodes, inits, **kw).SerializeToString()


def _n(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, **attrs)


_W1, _W2 = _W[0].T.astype(np.float32), _W[1].T.astype(np.float32)

CASES: list[tuple[str, str, bytes]] = []
# .nnet: truncations at many offsets (anything short of the full last line is detected)
CASES += [(f"nnet-trunc-{o}", ".nnet", NNET.encode()[:o]) for o in _spread(len(NNET) - 1, 24)]
CASES += [
    ("nnet-trunc-last-comma", ".nnet", NNET.encode()[:-2]),
    ("nnet-bad-number", ".nnet", _replace_line(9, NNET_LINES[9].replace(",", ",1.2.3,", 1))),
    ("nnet-letters", ".nnet", _replace_line(12, "abc,")),
    ("nnet-nan-weight", ".nnet", _replace_line(10, "nan," + ",".join(NNET_LINES[10].split(",")[1:]))),
    ("nnet-inf-bias", ".nnet", _replace_line(14, "inf,")),
    ("nnet-neg-inf-w2", ".nnet", _replace_line(17, "-inf,1,2,3,")),
    ("nnet-nan-mean", ".nnet", _replace_line(7, "nan,0,1,10,")),
    ("nnet-short-row", ".nnet", _replace_line(9, "1.0,2.0,")),
    ("nnet-long-row", ".nnet", _replace_line(9, "1,2,3,4,")),
    ("nnet-two-biases", ".nnet", _replace_line(13, "1,2,")),
    ("nnet-missing-row", ".nnet", _drop_line(10)),
    ("nnet-trailing-data", ".nnet", (NNET + "1.0,\n").encode()),
    ("nnet-header-3", ".nnet", _replace_line(2, "2,3,2,")),
    ("nnet-header-float", ".nnet", _replace_line(2, "2.5,3,2,4,")),
    ("nnet-header-zero", ".nnet", _replace_line(2, "0,3,2,4,")),
    ("nnet-huge-sizes", ".nnet", _replace_line(3, "3,1000000000,2,")),
    ("nnet-sizes-count", ".nnet", _replace_line(3, "3,4,4,2,")),
    ("nnet-sizes-input", ".nnet", _replace_line(3, "5,4,2,")),
    ("nnet-sizes-hidden", ".nnet", _replace_line(3, "3,5,2,")),
    ("nnet-min-gt-max", ".nnet", _replace_line(5, "2,3,4,")),
    ("nnet-zero-range", ".nnet", _replace_line(8, "2,0,4,3,")),
    ("nnet-means-count", ".nnet", _replace_line(7, "0.5,0,1,")),
    ("nnet-empty", ".nnet", b""),
    ("nnet-comments-only", ".nnet", b"// nothing\n// here\n"),
    ("nnet-binary", ".nnet", bytes(RNG.integers(0, 256, 300, dtype=np.uint8))),
    ("nnet-utf8", ".nnet", "3,\u00e9,\n".encode()),
]
# ONNX: truncations, garbage, unsupported or inconsistent graphs
CASES += [(f"onnx-trunc-{o}", ".onnx", ONNX[:o]) for o in _spread(len(ONNX), 16)]
CASES += [
    ("onnx-garbage", ".onnx", bytes(RNG.integers(0, 256, 500, dtype=np.uint8))),
    ("onnx-text", ".onnx", b"this is not a protobuf\n"),
    ("onnx-empty", ".onnx", b""),
    ("onnx-conv", ".onnx", _onnx_with([_n("Conv", ["x", "W1"], ["y"])])),
    ("onnx-maxpool", ".onnx", _onnx_with([_n("MatMul", ["x", "W1"], ["m"]), _n("MaxPool", ["m"], ["y"], kernel_shape=[2])])),
    ("onnx-nan-weight", ".onnx", _onnx_with(None, {"W1": np.where(np.eye(3, 4) > 0, np.nan, _W1).astype(np.float32),
                                                   "b1": _B[0].astype(np.float32), "W2": _W2, "b2": _B[1].astype(np.float32)})),
    ("onnx-inf-bias", ".onnx", _onnx_with(None, {"W1": _W1, "b1": np.full(4, np.inf, np.float32), "W2": _W2,
                                                 "b2": _B[1].astype(np.float32)})),
    ("onnx-weight-shape", ".onnx", _onnx_with([_n("MatMul", ["x", "W2"], ["y"])], {"W2": _W2}, out_shape=(1, 2))),
    ("onnx-bias-shape", ".onnx", _onnx_with([_n("MatMul", ["x", "W1"], ["m"]), _n("Add", ["m", "b"], ["y"])],
                                            {"W1": _W1, "b": np.ones(3, np.float32)}, out_shape=(1, 4))),
    ("onnx-reshape-size", ".onnx", _onnx_with([_n("Reshape", ["x", "s"], ["r"]), _n("MatMul", ["r", "W1"], ["y"])],
                                              {"s": np.array([1, 4], np.int64), "W1": _W1}, out_shape=(1, 4))),
    ("onnx-relu-on-input", ".onnx", _onnx_with([_n("Relu", ["x"], ["r"]), _n("MatMul", ["r", "W1"], ["y"])], {"W1": _W1},
                                               out_shape=(1, 4))),
    ("onnx-add-after-relu", ".onnx", _onnx_with([_n("MatMul", ["x", "W1"], ["m"]), _n("Relu", ["m"], ["r"]),
                                                 _n("Add", ["r", "b"], ["y"])], {"W1": _W1, "b": np.ones(4, np.float32)},
                                                out_shape=(1, 4))),
    ("onnx-skip-connection", ".onnx", _onnx_with([_n("MatMul", ["x", "W"], ["m"]), _n("Relu", ["m"], ["r"]),
                                                  _n("Add", ["r", "m"], ["y"])], {"W": np.eye(3, dtype=np.float32)},
                                                 out_shape=(1, 3))),
    ("onnx-clip-relu6", ".onnx", _onnx_with([_n("MatMul", ["x", "W1"], ["m"]), _n("Clip", ["m", "lo", "hi"], ["y"])],
                                            {"W1": _W1, "lo": np.float32(0), "hi": np.float32(6)}, out_shape=(1, 4))),
    ("onnx-data-times-data", ".onnx", _onnx_with([_n("Mul", ["x", "x"], ["m"]), _n("MatMul", ["m", "W1"], ["y"])],
                                                 {"W1": _W1}, out_shape=(1, 4))),
    ("onnx-no-dense", ".onnx", _onnx_with([_n("Identity", ["x"], ["y"])], {}, out_shape=(1, 3))),
    ("onnx-gemm-after-softmax", ".onnx", _onnx_with([_n("MatMul", ["x", "W1"], ["m"]), _n("Softmax", ["m"], ["s"]),
                                                     _n("MatMul", ["s", "W2"], ["y"])], {"W1": _W1, "W2": _W2})),
    ("onnx-div-by-zero", ".onnx", _onnx_with([_n("Div", ["x", "z"], ["d"]), _n("MatMul", ["d", "W1"], ["y"])],
                                             {"z": np.zeros(3, np.float32), "W1": _W1}, out_shape=(1, 4))),
    ("onnx-batch-2", ".onnx", _onnx_with(None, in_shape=(2, 3), out_shape=(2, 2))),
    ("onnx-matrix-input", ".onnx", _onnx_with([_n("MatMul", ["x", "W"], ["y"])], {"W": np.ones((2, 2), np.float32)},
                                              in_shape=(1, 3, 2), out_shape=(1, 3, 2))),
]
# .npz: truncations, garbage, missing arrays, bad names and values
CASES += [(f"npz-trunc-{o}", ".npz", NPZ[:o]) for o in _spread(len(NPZ), 12)]
_npy = io.BytesIO()
np.save(_npy, np.ones(3))
CASES += [
    ("npz-garbage", ".npz", bytes(RNG.integers(0, 256, 400, dtype=np.uint8))),
    ("npz-empty", ".npz", b""),
    ("npz-single-npy", ".npz", _npy.getvalue()),
    ("npz-missing-W1", ".npz", _npz_bytes(W1=None)),
    ("npz-missing-b0", ".npz", _npz_bytes(b0=None)),
    ("npz-missing-activations", ".npz", _npz_bytes(activations=None)),
    ("npz-unknown-activation", ".npz", _npz_bytes(activations=np.array(["relu", "swish"]))),
    ("npz-activation-count", ".npz", _npz_bytes(activations=np.array(["relu"]))),
    ("npz-activations-2d", ".npz", _npz_bytes(activations=np.array([["relu", "identity"]]))),
    ("npz-activations-numbers", ".npz", _npz_bytes(activations=np.array([1.0, 2.0]))),
    ("npz-unknown-output", ".npz", _npz_bytes(output=np.array("argmax"))),
    ("npz-nan-weight", ".npz", _npz_bytes(W0=np.full((4, 3), np.nan))),
    ("npz-inf-bias", ".npz", _npz_bytes(b1=np.array([np.inf, 0.0]))),
    ("npz-shape-chain", ".npz", _npz_bytes(W1=np.ones((2, 5)))),
    ("npz-bias-shape", ".npz", _npz_bytes(b0=np.ones(3))),
    ("npz-weight-1d", ".npz", _npz_bytes(W0=np.ones(3))),
    ("npz-string-weights", ".npz", _npz_bytes(W0=np.array([["a"] * 3] * 4))),
    ("npz-alphas-length", ".npz", _npz_bytes(alphas=np.array([0.1]))),
    ("npz-bad-alpha", ".npz", _npz_bytes(alphas=np.array([2.0, 0.0]))),
    ("npz-std-zero", ".npz", _npz_bytes(input_std=np.zeros(3))),
    ("npz-mean-length", ".npz", _npz_bytes(input_mean=np.zeros(4))),
    ("npz-inf-output-mean", ".npz", _npz_bytes(output_mean=np.array([np.inf, 0.0]))),
    ("npz-clamp-one-sided", ".npz", _npz_bytes(input_lower=np.zeros(3))),
    ("npz-extra-layer", ".npz", _npz_bytes(W7=np.ones((2, 2)))),
]


def test_enough_generated_cases():
    assert len(CASES) >= 50
    for suffix in (".nnet", ".onnx", ".npz"):
        assert sum(c[1] == suffix for c in CASES) >= 20


@pytest.mark.parametrize("suffix,data", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_file_raises_model_format_error(tmp_path, suffix, data):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(ModelFormatError) as info:
        load_network(path)
    assert time.perf_counter() - start < 5.0          # no hang, no slow path
    assert str(path) in str(info.value)               # the message names the file
    assert path.read_bytes() == data                  # the user's file is untouched


# ------------------------------------------------------------------ messages name the spot
def _load_bytes(tmp_path, name: str, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return load_network(p)


def test_nnet_messages_name_line_and_layer(tmp_path):
    with pytest.raises(ModelFormatError, match=r"line 10: not a comma-separated list of numbers"):
        _load_bytes(tmp_path, "a.nnet", _replace_line(9, "1.0,x2,3,"))
    with pytest.raises(ModelFormatError, match=r"line 11: layer 1 weights contains the non-finite value nan"):
        _load_bytes(tmp_path, "b.nnet", _replace_line(10, "nan,1,2,"))
    with pytest.raises(ModelFormatError, match=r"line 20: layer 2 biases contains the non-finite value inf"):
        _load_bytes(tmp_path, "c.nnet", _replace_line(19, "inf,"))
    with pytest.raises(ModelFormatError, match=r"line 10: layer 1 weight row 0 has 2 values, expected 3"):
        _load_bytes(tmp_path, "d.nnet", _replace_line(9, "1,2,"))
    with pytest.raises(ModelFormatError, match=r"ends after line 20; expected bias 1 of layer 2"):
        _load_bytes(tmp_path, "e.nnet", "\n".join(NNET_LINES[:-1]).encode() + b"\n")
    with pytest.raises(ModelFormatError, match=r"layer sizes \[5, 4, 2\] disagree"):
        _load_bytes(tmp_path, "f.nnet", _replace_line(3, "5,4,2,"))


def test_onnx_messages_name_op_and_node(tmp_path):
    node = helper.make_node("Conv", ["x", "W1"], ["y"], name="conv_7")
    with pytest.raises(UnsupportedLayerError, match=r"node 'conv_7' \(Conv\): unsupported ONNX op 'Conv'"):
        _load_bytes(tmp_path, "a.onnx", _onnx_with([node]))
    bad = {"W1": _W1, "b1": np.array([0, 0, np.nan, 0], np.float32), "W2": _W2, "b2": _B[1].astype(np.float32)}
    with pytest.raises(ModelFormatError, match=r"\(Add\): tensor 'b1' contains the non-finite value nan"):
        _load_bytes(tmp_path, "b.onnx", _onnx_with(None, bad))
    skip = [_n("MatMul", ["x", "W"], ["m"], name="mm"), _n("Relu", ["m"], ["r"]), _n("Add", ["r", "m"], ["y"], name="res")]
    with pytest.raises(UnsupportedLayerError, match=r"node 'res' \(Add\).*no branches or skip connections"):
        _load_bytes(tmp_path, "c.onnx", _onnx_with(skip, {"W": np.eye(3, dtype=np.float32)}, out_shape=(1, 3)))


def test_npz_messages_name_array_and_layer(tmp_path):
    with pytest.raises(ModelFormatError, match=r"missing the array 'W1' of layer 1"):
        _load_bytes(tmp_path, "a.npz", _npz_bytes(W1=None))
    with pytest.raises(ModelFormatError, match=r"layer 0: W: non-finite value"):
        _load_bytes(tmp_path, "b.npz", _npz_bytes(W0=np.full((4, 3), np.nan)))
    with pytest.raises(UnsupportedLayerError, match=r"'swish'"):
        _load_bytes(tmp_path, "c.npz", _npz_bytes(activations=np.array(["relu", "swish"])))


def test_real_acasxu_truncations(networks_dir, tmp_path):
    raw = (networks_dir / "acasxu" / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet").read_bytes()
    onx = (networks_dir / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx").read_bytes()
    for data, suffix in ((raw, ".nnet"), (onx, ".onnx")):
        for o in _spread(len(data) - 2, 8)[1:]:
            with pytest.raises(ModelFormatError):
                _load_bytes(tmp_path, f"t{o}{suffix}", data[:o])
