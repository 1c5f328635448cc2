"""Quantized ONNX models written by onnxruntime's own quantizer: loaded exactly, and onnxruntime's
outputs lie inside hybridq's certified bounds of the deployed model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from hybridq.bounds import bounds
from hybridq.errors import HybridqError, UnsupportedLayerError
from hybridq.inputs import InputBox
from hybridq.io.onnx_quant import load_quantized_onnx
from onnx_builders import make_model, save

ort = pytest.importorskip("onnxruntime")
oq = pytest.importorskip("onnxruntime.quantization")

N_IN = 3


def _mlp(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    W1, b1 = rng.normal(size=(6, N_IN)), rng.normal(size=6)
    W2, b2 = rng.normal(size=(5, 6)) / 2, rng.normal(size=5)
    W3, b3 = rng.normal(size=(2, 5)), rng.normal(size=2)
    if kind == "gemm":
        nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["z1"], transB=1), helper.make_node("Relu", ["z1"], ["h1"]),
                 helper.make_node("Gemm", ["h1", "W2", "b2"], ["z2"], transB=1), helper.make_node("Relu", ["z2"], ["h2"]),
                 helper.make_node("Gemm", ["h2", "W3", "b3"], ["y"], transB=1)]
        inits = dict(W1=W1, b1=b1, W2=W2, b2=b2, W3=W3, b3=b3)
    else:
        nodes = [helper.make_node("MatMul", ["x", "W1t"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["z1"]),
                 helper.make_node("Relu", ["z1"], ["h1"]), helper.make_node("MatMul", ["h1", "W2t"], ["m2"]),
                 helper.make_node("Add", ["m2", "b2"], ["z2"]), helper.make_node("Relu", ["z2"], ["h2"]),
                 helper.make_node("MatMul", ["h2", "W3t"], ["m3"]), helper.make_node("Add", ["m3", "b3"], ["y"])]
        inits = dict(W1t=W1.T, b1=b1, W2t=W2.T, b2=b2, W3t=W3.T, b3=b3)
    return make_model(nodes, inits, [1, N_IN], [1, 2])


class _Reader(oq.CalibrationDataReader):
    def __init__(self, seed=1):
        rng = np.random.default_rng(seed)
        self.it = iter([{"x": rng.uniform(-1, 1, (1, N_IN)).astype(np.float32)} for _ in range(64)])

    def get_next(self):
        return next(self.it, None)


def _quantize(tmp_path, kind, mode, fmt="QDQ", act="QInt8", per_channel=False):
    src = save(_mlp(kind), tmp_path / f"{kind}.onnx")
    out = tmp_path / f"{kind}.{mode}.{fmt}.{act}.{per_channel}.onnx"
    if mode == "dynamic":
        oq.quantize_dynamic(str(src), str(out), weight_type=oq.QuantType.QInt8, per_channel=per_channel)
    else:
        oq.quantize_static(str(src), str(out), _Reader(), quant_format=getattr(oq.QuantFormat, fmt),
                           activation_type=getattr(oq.QuantType, act), weight_type=oq.QuantType.QInt8,
                           per_channel=per_channel)
    return src, out


def _ort_outputs(path, X):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    # one row per call: a dynamic quantizer's scale follows the whole tensor, so no batching
    return np.concatenate([sess.run(None, {name: X[i:i + 1]})[0] for i in range(X.shape[0])])


CASES = [
    ("gemm", "static", "QDQ", "QInt8", False),     # per-tensor int8
    ("gemm", "static", "QDQ", "QInt8", True),      # per-channel int8
    ("gemm", "static", "QDQ", "QUInt8", False),    # uint8 activations
    ("matmul", "static", "QDQ", "QUInt8", True),   # MatMul + Add: a quantizer before the bias too
    ("gemm", "dynamic", None, None, False),        # dynamic quantization
    ("gemm", "static", "QOperator", "QInt8", True),      # QGemm
    ("matmul", "static", "QOperator", "QUInt8", False),  # QLinearMatMul + QLinearAdd
]


@pytest.mark.parametrize("kind,mode,fmt,act,pc", CASES)
def test_onnxruntime_outputs_inside_certified_bounds(tmp_path, kind, mode, fmt, act, pc):
    _, path = _quantize(tmp_path, kind, mode, fmt, act, pc)
    model = load_quantized_onnx(path)
    box = InputBox(-np.ones(N_IN), np.ones(N_IN))
    exp = model.expand(box)
    ob = bounds(exp.network, exp.perturbation, box, method="linear")
    X = np.random.default_rng(7).uniform(-1, 1, (10_000, N_IN)).astype(np.float32)
    X[:4] = [[-1, -1, -1], [1, 1, 1], [-1, 1, -1], [0, 0, 0]]
    Y = _ort_outputs(path, X)
    assert np.all(Y >= ob.logit_lo[0]) and np.all(Y <= ob.logit_hi[0])
    # the exactly rounded deployed network reproduces the runtime up to its float32 output rounding
    for i in range(0, 200, 7):
        y = np.array([float(v) for v in model.exact_logits(X[i].astype(np.float64))])
        assert np.allclose(y, Y[i], rtol=1e-6, atol=1e-6), (i, y, Y[i])


def test_structure_of_loaded_models(tmp_path):
    _, path = _quantize(tmp_path, "gemm", "static", "QDQ", "QUInt8", True)
    m = load_quantized_onnx(path)
    # uint8 activations: onnxruntime folds each Relu into a quantizer whose range starts at 0
    assert [l.activation for l in m.network.layers] == ["relu", "relu", "identity"]
    assert [(p.where, p.layer) for p in m.points] == [("input", -1), ("post", 0), ("post", 1), ("pre", 2)]
    q = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    Wq, s = inits["W1_quantized"].astype(np.int64), inits["W1_scale"].astype(np.float64)
    assert np.array_equal(m.network.layers[0].W, Wq * s[:, None])   # per-channel, exact
    _, dyn = _quantize(tmp_path, "matmul", "dynamic")
    md = load_quantized_onnx(dyn)
    assert [(p.where, p.kind) for p in md.points] == [("input", "dynamic"), ("post", "dynamic"), ("post", "dynamic")]


def _qdq_model(nodes, inits):
    return make_model(nodes, inits, [1, 2], [1, 2])


def _base_inits():
    return {"Wq": np.array([[3, -2], [1, 4]], dtype=np.int8), "ws": np.array(0.5, dtype=np.float32),
            "wz": np.array(0, dtype=np.int8), "xs": np.array(0.25, dtype=np.float32), "xz": np.array(0, dtype=np.int8)}


def _bad_models():
    I = _base_inits()
    deqw = helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["W"])
    q = helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"])
    dq = helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"])
    gemm = helper.make_node("Gemm", ["xd", "W"], ["y"], transB=1)
    yield "per-axis activation", [deqw, helper.make_node("QuantizeLinear", ["x", "xs2", "xz2"], ["xq"], axis=1),
                                  helper.make_node("DequantizeLinear", ["xq", "xs2", "xz2"], ["xd"], axis=1), gemm], \
        dict(I, xs2=np.array([0.25, 0.5], dtype=np.float32), xz2=np.array([0, 0], dtype=np.int8)), UnsupportedLayerError
    yield "scale mismatch", [deqw, q, helper.make_node("DequantizeLinear", ["xq", "ws", "xz"], ["xd"]), gemm], I, UnsupportedLayerError
    yield "integer output", [deqw, helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
                             helper.make_node("QuantizeLinear", ["z", "xs", "xz"], ["y"])], I, UnsupportedLayerError
    yield "dequantize of a float", [deqw, helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xd"]), gemm], I, \
        UnsupportedLayerError
    yield "MatMulInteger without dynamic quantizer", [q, helper.make_node("MatMulInteger", ["xq", "Wq"], ["y"])], I, UnsupportedLayerError
    yield "quantized relu", [deqw, q, helper.make_node("Relu", ["xq"], ["r"]), helper.make_node("DequantizeLinear", ["r", "xs", "xz"], ["xd"]), gemm], I, UnsupportedLayerError
    yield "huge int32", [helper.make_node("DequantizeLinear", ["Wb", "ws"], ["W"]), q, dq, gemm], \
        dict(I, Wb=np.array([[2**30, 1], [1, 1]], dtype=np.int32)), UnsupportedLayerError


@pytest.mark.parametrize("name,nodes,inits,err", list(_bad_models()), ids=[b[0] for b in _bad_models()])
def test_unsupported_patterns_give_one_clear_error(tmp_path, name, nodes, inits, err):
    path = save(_qdq_model(nodes, inits), tmp_path / "bad.onnx")
    with pytest.raises(err) as e:
        load_quantized_onnx(path)
    msg = str(e.value)
    assert "\n" not in msg and "bad.onnx" in msg and ("node" in msg or "graph" in msg or "output" in msg), msg


def test_block_quantization_refused(tmp_path):
    I = _base_inits()
    nodes = [helper.make_node("DequantizeLinear", ["Wq", "ws2", "wz2"], ["W"], axis=1, block_size=1),
             helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)]
    m = make_model(nodes, dict(I, ws2=np.ones((2, 2), np.float32), wz2=np.zeros((2, 2), np.int8)), [1, 2], [1, 2], opset=21)
    m.ir_version = 10
    path = save(m, tmp_path / "blk.onnx")
    with pytest.raises(HybridqError, match="block"):
        load_quantized_onnx(path)


@pytest.mark.parametrize("change", ["scale", "zero_point"])
def test_bias_with_its_own_scale_or_zero_point_refused(tmp_path, change):
    """onnxruntime fuses DequantizeLinear -> Gemm(int32 bias) into QGemm, whose bias scale is
    input scale x weight scale and zero point 0: a bias DequantizeLinear with another scale or zero point
    is ignored by the runtime (its outputs do not change) but was read as written, so hybridq verified
    another model than the deployed one (max |onnxruntime - exact rounded network| 1.1 on this MLP)."""
    _, path = _quantize(tmp_path, "gemm", "static", "QDQ", "QInt8", True)
    q = onnx.load(str(path))
    name = "b1_quantized_" + change
    for t in q.graph.initializer:
        if t.name == name:
            a = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array((a * 2 if change == "scale" else a + 7).astype(a.dtype), name))
    bad = save(q, tmp_path / "bad.onnx")
    X = np.random.default_rng(3).uniform(-1, 1, (20, N_IN)).astype(np.float32)
    assert np.array_equal(_ort_outputs(bad, X), _ort_outputs(path, X))   # the runtime ignores the bias's own numbers
    with pytest.raises(UnsupportedLayerError, match="int32 bias 'b1'.*input scale x weight scale"):
        load_quantized_onnx(bad)
    load_quantized_onnx(path)  # the quantizer's own file stays accepted
