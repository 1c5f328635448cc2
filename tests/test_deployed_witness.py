"""A deployed file's parameters are fixed: ``verify --against`` reports only counterexamples of the
exactly rounded network itself, never parameters taken from the noise model's expansion (whose
biases carry the activation-noise radius)."""

from __future__ import annotations

import numpy as np
import pytest

from hybridq import Deviation, InputBox
from hybridq.deployed import load_against, runtime_outputs, verify_deployed

ort = pytest.importorskip("onnxruntime")
oq = pytest.importorskip("onnxruntime.quantization")
from onnx_builders import make_model, save  # noqa: E402
from onnx import helper  # noqa: E402


def _relu_mlp(rng, n, h):
    Ws = [rng.normal(size=(h, n)), rng.normal(size=(h, h)), rng.normal(size=(1, h))]
    bs = [rng.normal(size=h), rng.normal(size=h), rng.normal(size=1)]
    nodes, inits, cur = [], {}, "x"
    for i, (W, b) in enumerate(zip(Ws, bs)):
        inits[f"W{i}"], inits[f"b{i}"] = W.T.astype(np.float32), b.astype(np.float32)
        nodes += [helper.make_node("MatMul", [cur, f"W{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}" if i < 2 else "y"])]
        if i < 2:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [f"h{i}"]))
            cur = f"h{i}"
    return make_model(nodes, inits, [1, n], [1, 1])


class _Reader(oq.CalibrationDataReader):
    def __init__(self, n):
        rng = np.random.default_rng(0)
        self.it = iter([{"x": rng.uniform(-1, 1, size=(1, n)).astype(np.float32)} for _ in range(50)])

    def get_next(self):
        return next(self.it, None)


@pytest.mark.parametrize("seed", range(3))
def test_against_counterexamples_are_the_rounded_network(tmp_path, seed):
    rng = np.random.default_rng(seed)
    src = save(_relu_mlp(rng, 2, 4), tmp_path / "f.onnx")
    q = tmp_path / "q.onnx"
    oq.quantize_static(str(src), str(q), _Reader(2), quant_format=oq.QuantFormat.QDQ)
    model = load_against(src, q)
    box = InputBox(-np.ones(2), np.ones(2))
    X = rng.uniform(-1, 1, (400, 2)).astype(np.float32).astype(np.float64)
    sampled = max(float(np.max(np.abs(runtime_outputs(q, x) - model.network.forward(x)))) for x in X)
    for delta in (0.5 * sampled, 2.0 * sampled, 10.0 * sampled, 1.0):
        r = verify_deployed(model, box, Deviation(delta), onnx_path=q, jobs=1, timeout=20)
        if r.verdict == "not_robust":
            cx = r.counterexample
            assert cx.kind == "rounded network" and cx.params is model.center
            assert Deviation(delta).check_exact(model.rounded_view(), cx.x, model.center)
        st = r.stats
        assert st.cells == st.proved_bounds + st.proved_smt + st.refuted + st.splits_input + st.splits_phase + st.open
