"""Test helpers: build small ONNX graphs, evaluate ONNX graphs with an independent NumPy reference
interpreter (node by node, float64, no hybridq code), and write ``.nnet`` text files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_model(nodes, inits: dict, in_shape, out_shape, opset: int = 13, in_name="x", out_name="y"):
    """A ModelProto from nodes, ``{name: array}`` initializers and the I/O shapes."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(out_shape))],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32) if np.asarray(v).dtype.kind == "f"
                                             else np.asarray(v), name=k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def save(model, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def _attrs(node) -> dict:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = numpy_helper.to_array(v) if a.type == onnx.AttributeProto.TENSOR else v
    return out


def reference_forward(model, x: np.ndarray) -> np.ndarray:
    """Evaluate the graph on one input ``x`` (the graph input's shape) in float64 NumPy."""
    env = {t.name: numpy_helper.to_array(t).astype(np.float64) if numpy_helper.to_array(t).dtype.kind == "f"
           else numpy_helper.to_array(t) for t in model.graph.initializer}
    inp = [v.name for v in model.graph.input if v.name not in env][0]
    env[inp] = np.asarray(x, dtype=np.float64)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    for n in model.graph.node:
        a = _attrs(n)
        x = [env[i] if i else None for i in n.input]
        op = n.op_type
        if op == "Constant":
            r = np.asarray(a["value"], dtype=np.float64) if "value" in a else np.asarray(a.get("value_floats"))
        elif op == "Gemm":
            A = x[0].T if a.get("transA", 0) else x[0]
            B = x[1].T if a.get("transB", 0) else x[1]
            r = a.get("alpha", 1.0) * (A @ B)
            if len(x) > 2 and x[2] is not None:
                r = r + a.get("beta", 1.0) * x[2]
        elif op == "MatMul":
            r = np.matmul(x[0], x[1])
        elif op in ("Add", "Sub", "Mul", "Div"):
            r = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](x[0], x[1])
        elif op == "Relu":
            r = np.maximum(x[0], 0)
        elif op == "LeakyRelu":
            r = np.where(x[0] >= 0, x[0], a.get("alpha", 0.01) * x[0])
        elif op == "Sigmoid":
            r = 1 / (1 + np.exp(-x[0]))
        elif op == "Tanh":
            r = np.tanh(x[0])
        elif op == "Clip":
            lo = x[1] if len(x) > 1 and x[1] is not None else a.get("min", -np.inf)
            hi = x[2] if len(x) > 2 and x[2] is not None else a.get("max", np.inf)
            r = np.clip(x[0], lo, hi)
        elif op == "Softmax":
            ax = a.get("axis", -1 if opset >= 13 else 1)
            e = np.exp(x[0] - x[0].max(axis=ax, keepdims=True))
            r = e / e.sum(axis=ax, keepdims=True)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            r = x[0].reshape(int(np.prod(x[0].shape[:ax])), -1)
        elif op == "Reshape":
            shp = [x[0].shape[i] if d == 0 else d for i, d in enumerate(x[1].astype(int).tolist())]
            r = x[0].reshape(shp)
        elif op == "Squeeze":
            axes = x[1].astype(int).tolist() if len(x) > 1 else a.get("axes")
            r = np.squeeze(x[0], axis=None if axes is None else tuple(axes))
        elif op == "Unsqueeze":
            axes = x[1].astype(int).tolist() if len(x) > 1 else a["axes"]
            r = np.expand_dims(x[0], tuple(axes))
        elif op == "Shape":
            r = np.array(x[0].shape, dtype=np.int64)
        elif op == "Gather":
            r = np.take(x[0], x[1], axis=a.get("axis", 0))
        elif op == "Concat":
            r = np.concatenate(x, axis=a["axis"])
        elif op == "Identity":
            r = x[0]
        else:
            raise NotImplementedError(op)
        env[n.output[0]] = r
    return env[model.graph.output[0].name]


def write_nnet(path: Path, weights, biases, lo, hi, mean, rng, header_comment=True) -> Path:
    """Write a ``.nnet`` file in the Reluplex/NNet layout (``%.17g`` so values round-trip)."""
    sizes = [weights[0].shape[1]] + [W.shape[0] for W in weights]
    lines = ["// test network", "// second comment line"] if header_comment else []
    f = lambda v: ",".join(f"{float(t):.17g}" for t in np.atleast_1d(v)) + ","
    lines += [f"{len(weights)},{sizes[0]},{sizes[-1]},{max(sizes)},", ",".join(map(str, sizes)) + ",", "0,",
              f(lo), f(hi), f(mean), f(rng)]
    for W, b in zip(weights, biases):
        lines += [f(row) for row in W]
        lines += [f(v) for v in b]
    path.write_text("\n".join(lines) + "\n")
    return path
