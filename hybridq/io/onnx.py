"""ONNX reader: turns a feed-forward ONNX graph into a :class:`hybridq.Network`.

The graph is interpreted symbolically, node by node in the file's (topological) order, as one chain
of operations on the single non-constant input tensor:

* constant sub-graphs (initializers, ``Constant`` nodes, and ops whose inputs are all constant,
  plus ``Shape`` of the running tensor) are folded with NumPy;
* ``Sub``/``Add``/``Mul``/``Div`` by constants *before the first dense layer* are folded into the
  network's fixed input normalization ``(x - mean) / std`` (a negative factor flips the sign of the
  first layer's weight column);
* ``Gemm`` (alpha, beta, transA, transB) and ``MatMul`` in both operand orders (``x @ W`` row-vector
  and ``W @ x`` column-vector convention) start a dense layer; ``Add``/``Sub``/``Mul``/``Div`` by
  constants right after it fold into its weights and bias;
* ``Relu``, ``LeakyRelu``, ``Sigmoid``, ``Tanh``, ``Clip(-1, 1)`` (hardtanh) and ``Clip(0, ·)`` (relu)
  close the layer; a dense layer followed directly by another gets the identity activation;
* ``Flatten``, ``Reshape``, ``Squeeze``, ``Unsqueeze`` and ``Identity`` only relabel the shape (all
  keep the C-order of the elements; a dense op then requires a vector-shaped operand);
* a final ``Softmax`` becomes the ``softmax`` output transform, a final ``Sigmoid`` on one output the
  ``sigmoid`` output transform.

Everything else raises :class:`~hybridq.errors.UnsupportedLayerError` naming the op and node.
Tensors are read with ``onnx.numpy_helper`` and widened to float64 (float32 -> float64 is exact).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hybridq.errors import HybridqError, ModelFormatError, UnsupportedLayerError
from hybridq.io.compressed import read_bytes
from hybridq.network import Layer, Network

__all__ = ["load_onnx", "SUPPORTED_OPS", "read_model", "build_network"]

log = logging.getLogger(__name__)

#: ONNX ops the reader understands (on the running tensor or on constants).
SUPPORTED_OPS = (
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip",
    "Softmax", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Constant", "Shape",
    "Gather", "Concat", "Cast", "Transpose", "Neg",
)
_SHAPE_OPS = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity")
_ARITH = ("Add", "Sub", "Mul", "Div")
#: Ops folded on constants only (a use on the running tensor gets its own message).
_CONST_ONLY_OPS = ("Constant", "Shape", "Gather", "Concat", "Cast", "Transpose", "Neg")
_MAX_CONST_ELEMENTS = 50_000_000


class _Graph:
    """The interpreter state (see the module docstring)."""

    def __init__(self, path: Path, onnx_mod) -> None:
        self.path = path
        self.onnx = onnx_mod
        self.consts: dict[str, np.ndarray] = {}
        self.data: set[str] = set()        # names aliasing the running tensor
        self.stale: set[str] = set()       # earlier values of the running tensor
        self.shape: tuple[int, ...] = ()
        self.phase = "pre"                  # pre (no dense layer yet) | linear | act | done
        self.mean = self.std = self.sign = None
        self.W = self.b = None               # pending dense layer
        self.layers: list[Layer] = []
        self.output = "identity"
        self.where = ""
        self.opset = 1
        self.last_act: tuple[str, str] | None = None

    # ----------------------------------------------------------- helpers
    def fail(self, msg: str, unsupported: bool = False):
        cls = UnsupportedLayerError if unsupported else ModelFormatError
        return cls(f"{self.path}: {self.where}: {msg}")

    def const(self, name: str, what: str = "constant", finite: bool = True) -> np.ndarray:
        if name not in self.consts:
            raise self.fail(f"{what} input {name!r} must be a constant (initializer or Constant node)", True)
        a = self.consts[name]
        if finite and a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            bad = a[~np.isfinite(a)].reshape(-1)[0]
            raise self.fail(f"tensor {name!r} contains the non-finite value {float(bad)!r}")
        return a

    def fconst(self, name: str, what: str) -> np.ndarray:
        a = self.const(name, what)
        if a.dtype.kind not in "biuf":
            raise self.fail(f"tensor {name!r} has non-numeric dtype {a.dtype}")
        return np.asarray(a, dtype=np.float64)

    def set_data(self, out: str, shape, alias: bool = False) -> None:
        if not alias:
            self.stale |= self.data
            self.data = set()
        self.data.add(out)
        self.shape = tuple(int(s) for s in shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def attrs(self, node) -> dict:
        h = self.onnx.helper
        out = {}
        for a in node.attribute:
            v = h.get_attribute_value(a)
            if a.type == self.onnx.AttributeProto.TENSOR:
                v = self.onnx.numpy_helper.to_array(v)
            elif isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            out[a.name] = v
        return out

    # ---------------------------------------------------------- dense ops
    def close_layer(self, activation: str, alpha: float = 0.01) -> None:
        try:
            self.layers.append(Layer(self.W, self.b, activation, alpha))
        except ModelFormatError as e:
            raise self.fail(str(e)) from None
        self.W = self.b = None
        self.phase = "act"

    def dense(self, W: np.ndarray, out: str, out_shape) -> None:
        """Start a dense layer ``h -> W h`` (W: (m, n) with n the running size)."""
        if self.phase == "done":
            raise self.fail("no dense layer may follow the final Softmax", True)
        if W.shape[1] != self.size:
            raise self.fail(f"weight shape {W.shape} does not match the {self.size} incoming values")
        if self.phase == "linear":
            self.close_layer("identity")
        if self.phase == "pre":
            W = W * self.sign[None, :]
        self.W, self.b = np.array(W, dtype=np.float64), np.zeros(W.shape[0])
        self.phase = "linear"
        self.set_data(out, out_shape)

    def op_matmul(self, node, ins, out) -> None:
        a, b = ins[0], ins[1]
        if a in self.data and b in self.data:
            raise self.fail("MatMul of the running tensor with itself", True)
        if a in self.data:
            C = self.fconst(b, "MatMul weight")
            vec = C.ndim == 1
            C2 = C.reshape(-1, 1) if vec else C
            if C2.ndim != 2:
                raise self.fail(f"MatMul weight of rank {C.ndim} is not supported", True)
            if not self.shape or self.size != self.shape[-1]:
                raise self.fail(f"MatMul on a running tensor of shape {self.shape} (not a row vector)", True)
            shp = self.shape[:-1] + (() if vec else (C2.shape[1],))
            self.dense(C2.T, out, shp)
        else:
            C = self.fconst(a, "MatMul weight")
            if C.ndim != 2:
                raise self.fail(f"MatMul weight of rank {C.ndim} in W @ x order is not supported", True)
            s = self.shape
            if len(s) == 1:
                shp = (C.shape[0],)
            elif len(s) >= 2 and s[-1] == 1 and s[-2] == self.size:
                shp = s[:-2] + (C.shape[0], 1)
            else:
                raise self.fail(f"W @ x needs a column vector, the running tensor has shape {s}", True)
            self.dense(C, out, shp)

    def op_gemm(self, node, ins, out) -> None:
        at = self.attrs(node)
        alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
        ta, tb = int(at.get("transA", 0)), int(at.get("transB", 0))
        if len(self.shape) != 2:
            raise self.fail(f"Gemm needs a 2-D operand, the running tensor has shape {self.shape}", True)
        if ins[0] in self.data and ins[1] not in self.data:
            row = self.shape[::-1] if ta else self.shape
            if row[0] != 1:
                raise self.fail(f"Gemm on a batch of {row[0]} rows is not supported", True)
            B = self.fconst(ins[1], "Gemm B")
            if B.ndim != 2:
                raise self.fail(f"Gemm B must be 2-D, got shape {B.shape}")
            Bt = B.T if tb else B                      # (k, m)
            W, shp = alpha * Bt.T, (1, Bt.shape[1])
        elif ins[1] in self.data and ins[0] not in self.data:
            col = self.shape[::-1] if tb else self.shape
            if col[1] != 1:
                raise self.fail(f"Gemm with {col[1]} columns is not supported", True)
            A = self.fconst(ins[0], "Gemm A")
            if A.ndim != 2:
                raise self.fail(f"Gemm A must be 2-D, got shape {A.shape}")
            W = alpha * (A.T if ta else A)             # (m, k)
            shp = (W.shape[0], 1)
        else:
            raise self.fail("Gemm needs exactly one running-tensor operand", True)
        self.dense(W, out, shp)
        if len(ins) > 2 and ins[2]:
            C = self.fconst(ins[2], "Gemm C")
            try:
                c = np.broadcast_to(C, shp).reshape(-1)
            except ValueError:
                raise self.fail(f"Gemm C of shape {C.shape} does not broadcast to {shp}") from None
            self.b = self.b + beta * c

    # ---------------------------------------------------------- elementwise
    def op_arith(self, node, op, ins, out) -> None:
        if len(ins) != 2:
            raise self.fail(f"{op} needs two inputs")
        if ins[0] in self.data and ins[1] in self.data:
            raise self.fail(f"{op} of the running tensor with itself", True)
        data_first = ins[0] in self.data
        c = self.fconst(ins[1] if data_first else ins[0], f"{op} operand")
        try:
            shp = np.broadcast_shapes(self.shape, c.shape)
        except ValueError:
            raise self.fail(f"{op} operand of shape {c.shape} does not broadcast to {self.shape}") from None
        if int(np.prod(shp, dtype=np.int64)) != self.size:
            raise self.fail(f"{op} operand of shape {c.shape} broadcasts the running tensor {self.shape} to {shp}", True)
        c = np.broadcast_to(c, shp).reshape(-1).astype(np.float64)
        if op == "Div" and not data_first:
            raise self.fail("division by the running tensor (constant / x) is not supported", True)
        if op in ("Mul", "Div") and np.any(c == 0):
            raise self.fail(f"{op} by zero is not supported", op == "Mul")
        if self.phase == "pre":
            if op == "Sub" and not data_first:
                self.sign = -self.sign
                op = "Add"
            if op == "Add":
                self.mean = self.mean - self.sign * c * self.std
            elif op == "Sub":
                self.mean = self.mean + self.sign * c * self.std
            else:
                self.std = self.std * np.abs(c) if op == "Div" else self.std / np.abs(c)
                self.sign = self.sign * np.sign(c)
        elif self.phase == "linear":
            if op == "Add":
                self.b = self.b + c
            elif op == "Sub" and data_first:
                self.b = self.b - c
            elif op == "Sub":
                self.W, self.b = -self.W, c - self.b
            elif op == "Mul":
                self.W, self.b = self.W * c[:, None], self.b * c
            else:
                self.W, self.b = self.W / c[:, None], self.b / c
        else:
            raise self.fail(f"{op} by a constant after an activation cannot be folded into a dense layer", True)
        self.set_data(out, shp)

    def op_activation(self, node, op, ins, out) -> None:
        if self.phase != "linear":
            where = "the input" if self.phase == "pre" else "another activation"
            raise self.fail(f"activation {op} applied to {where}; it must follow a dense layer", True)
        at = self.attrs(node)
        if op == "Relu":
            self.close_layer("relu")
        elif op == "LeakyRelu":
            self.close_layer("leaky_relu", float(at.get("alpha", 0.01)))
        elif op == "Sigmoid":
            self.close_layer("sigmoid")
        elif op == "Tanh":
            self.close_layer("tanh")
        else:  # Clip
            lo, hi = at.get("min"), at.get("max")
            if len(ins) > 1 and ins[1]:
                lo = float(self.fconst(ins[1], "Clip min").reshape(-1)[0])
            if len(ins) > 2 and ins[2]:
                hi = float(self.fconst(ins[2], "Clip max").reshape(-1)[0])
            if lo == -1.0 and hi == 1.0:
                self.close_layer("hardtanh")
            elif lo == 0.0 and (hi is None or hi == np.inf or hi >= 3.4e38):
                self.close_layer("relu")
            else:
                raise self.fail(f"Clip({lo}, {hi}) is not supported (only Clip(-1, 1) and Clip(0, inf))", True)
        self.last_act = (op, out)
        self.set_data(out, self.shape)

    def op_shape(self, node, op, ins, out) -> None:
        at = self.attrs(node)
        s = self.shape
        if op == "Identity":
            self.set_data(out, s, alias=True)
            return
        if op == "Flatten":
            ax = int(at.get("axis", 1))
            ax = ax + len(s) if ax < 0 else ax
            if not 0 <= ax <= len(s):
                raise self.fail(f"Flatten axis {at.get('axis')} out of range for shape {s}")
            new = (int(np.prod(s[:ax], dtype=np.int64)), int(np.prod(s[ax:], dtype=np.int64)))
        elif op == "Reshape":
            if len(ins) < 2 or not ins[1]:
                raise self.fail("Reshape without a shape input")
            t = [int(v) for v in self.const(ins[1], "Reshape shape").reshape(-1)]
            if not int(at.get("allowzero", 0)):
                t = [s[i] if v == 0 and i < len(s) else v for i, v in enumerate(t)]
            if t.count(-1) > 1 or any(v < -1 for v in t):
                raise self.fail(f"invalid Reshape target {t}")
            if -1 in t:
                rest = int(np.prod([v for v in t if v != -1], dtype=np.int64))
                if rest <= 0 or self.size % rest:
                    raise self.fail(f"cannot reshape {s} to {t}")
                t[t.index(-1)] = self.size // rest
            new = tuple(t)
        elif op == "Squeeze":
            axes = at.get("axes")
            if len(ins) > 1 and ins[1]:
                axes = self.const(ins[1], "Squeeze axes").reshape(-1).tolist()
            axes = [i for i, d in enumerate(s) if d == 1] if axes is None else [a % max(len(s), 1) for a in axes]
            if any(s[a] != 1 for a in axes):
                raise self.fail(f"Squeeze of axes {axes} of shape {s} that are not 1")
            new = tuple(d for i, d in enumerate(s) if i not in axes)
        else:  # Unsqueeze
            axes = at.get("axes")
            if len(ins) > 1 and ins[1]:
                axes = self.const(ins[1], "Unsqueeze axes").reshape(-1).tolist()
            if axes is None:
                raise self.fail("Unsqueeze without axes")
            r = len(s) + len(axes)
            axes = sorted(int(a) % r for a in axes)
            new = list(s)
            for a in axes:
                new.insert(a, 1)
            new = tuple(new)
        if int(np.prod(new, dtype=np.int64)) != self.size:
            raise self.fail(f"{op} changes the number of elements: {s} -> {new}")
        self.set_data(out, new)

    # ---------------------------------------------------------- constants
    def fold(self, node, op, ins, outs) -> None:
        at = self.attrs(node)
        if op == "Constant":
            if "value" in at:
                v = np.asarray(at["value"])
            elif "value_float" in at or "value_int" in at:
                v = np.asarray(at.get("value_float", at.get("value_int")))
            elif "value_floats" in at or "value_ints" in at:
                v = np.asarray(at.get("value_floats", at.get("value_ints")))
            else:
                raise self.fail(f"Constant with unsupported attributes {sorted(at)}", True)
            self.consts[outs[0]] = v
            return
        if op == "Shape":
            self.consts[outs[0]] = np.array(self.shape, dtype=np.int64)
            return
        x = [self.const(i, f"{op} operand", finite=False) if i else None for i in ins]
        if op in ("Identity", "Neg", "Transpose", "Cast", "Flatten", "Squeeze", "Unsqueeze") and not x:
            raise self.fail(f"{op} without an input")
        if op == "Identity":
            v = x[0]
        elif op == "Neg":
            v = -x[0]
        elif op in _ARITH:
            v = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](x[0], x[1])
        elif op == "MatMul":
            v = np.matmul(x[0], x[1])
        elif op == "Transpose":
            v = np.transpose(x[0], at.get("perm"))
        elif op == "Cast":
            v = x[0].astype(self.onnx.helper.tensor_dtype_to_np_dtype(int(at["to"])))
        elif op == "Gather":
            v = np.take(x[0], np.asarray(x[1], dtype=np.int64), axis=int(at.get("axis", 0)))
        elif op == "Concat":
            v = np.concatenate([np.atleast_1d(a) for a in x if a is not None], axis=int(at.get("axis", 0)))
        elif op == "Flatten":
            ax = int(at.get("axis", 1)) % (x[0].ndim + 1) if x[0].ndim else 0
            v = x[0].reshape(int(np.prod(x[0].shape[:ax], dtype=np.int64)), -1)
        elif op == "Reshape":
            t = [int(d) for d in x[1].reshape(-1)]
            t = [x[0].shape[i] if d == 0 and i < x[0].ndim else d for i, d in enumerate(t)]
            v = x[0].reshape(t)
        elif op == "Squeeze":
            axes = at.get("axes") if len(x) < 2 or x[1] is None else x[1].reshape(-1).tolist()
            v = np.squeeze(x[0], axis=None if axes is None else tuple(axes))
        elif op == "Unsqueeze":
            axes = at.get("axes") if len(x) < 2 or x[1] is None else x[1].reshape(-1).tolist()
            v = np.expand_dims(x[0], tuple(axes))
        else:
            raise self.fail(f"unsupported ONNX op {op!r} on constants; supported: {', '.join(SUPPORTED_OPS)}", True)
        v = np.asarray(v)
        if v.size > _MAX_CONST_ELEMENTS:
            raise self.fail(f"folded constant of shape {v.shape} is too large")
        self.consts[outs[0]] = v

    # ---------------------------------------------------------------- run
    def node(self, idx: int, node) -> None:
        op = node.op_type
        self.where = f"node {node.name or '#' + str(idx)!r} ({op})"
        if node.domain not in ("", "ai.onnx"):
            raise self.fail(f"unsupported op {op!r} of domain {node.domain!r}", True)
        ins, outs = list(node.input), [o for o in node.output]
        if not outs or not outs[0]:
            raise self.fail("node has no output")
        for i in ins:
            if i and i not in self.data and i not in self.consts:
                if i in self.stale:
                    raise self.fail(f"reads {i!r}, an earlier value of the running tensor: only chains of "
                                    "operations are supported (no branches or skip connections)", True)
                raise self.fail(f"reads the undefined tensor {i!r}")
        reads_data = any(i in self.data for i in ins if i)
        if op == "Shape" and reads_data:
            self.fold(node, op, ins, outs)
        elif not reads_data:
            self.fold(node, op, ins, outs)
        elif op == "MatMul":
            self.op_matmul(node, ins, outs[0])
        elif op == "Gemm":
            self.op_gemm(node, ins, outs[0])
        elif op in _ARITH:
            self.op_arith(node, op, ins, outs[0])
        elif op in ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip"):
            self.op_activation(node, op, ins, outs[0])
        elif op in _SHAPE_OPS:
            self.op_shape(node, op, ins, outs[0])
        elif op == "Softmax":
            at = self.attrs(node)
            ax = int(at.get("axis", -1 if self.opset >= 13 else 1))
            ax = ax + len(self.shape) if ax < 0 else ax
            if self.phase == "pre" or not 0 <= ax < len(self.shape) or self.shape[ax] != self.size:
                raise self.fail(f"Softmax over axis {at.get('axis')} of shape {self.shape} is not supported", True)
            if self.phase == "linear":
                self.close_layer("identity")
            self.phase = "done"
            self.output = "softmax"
            self.set_data(outs[0], self.shape)
        elif op in _CONST_ONLY_OPS:
            raise self.fail(f"ONNX op {op!r} is supported on constants (weights, shapes) only, not on the network's "
                            f"running tensor (here it reads {', '.join(repr(i) for i in ins if i in self.data)}); "
                            f"ops on the running tensor: {', '.join(o for o in SUPPORTED_OPS if o not in _CONST_ONLY_OPS)}",
                            True)
        else:
            raise self.fail(f"unsupported ONNX op {op!r}; supported: {', '.join(SUPPORTED_OPS)}", True)


def _input_shape(g, value_info) -> tuple[int, ...]:
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        raise g.fail(f"graph input {value_info.name!r} has no static tensor shape")
    dims = []
    for i, d in enumerate(t.tensor_type.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif i == 0 and len(t.tensor_type.shape.dim) >= 2:
            dims.append(1)  # symbolic batch dimension
        else:
            raise g.fail(f"graph input {value_info.name!r} has a non-static dimension {i}")
    return tuple(dims)


def load_onnx(path: str | Path) -> Network:
    """Load a feed-forward ONNX model (read only; the file is never modified).

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file (raw protobuf; external tensor data next to it is read too; ``.onnx.gz``:
        gzip-compressed, :mod:`hybridq.io.compressed`).

    Returns
    -------
    Network
        Layers as described in the module docstring; the input normalization holds the folded
        ``Sub``/``Div``/``Mul``/``Add`` preprocessing; inputs are the flattened (C-order) graph input.

    Raises
    ------
    ModelFormatError
        Missing file, bytes that are not a valid ONNX model, a graph that fails ``onnx.checker``,
        a missing or non-static input, undefined tensors, shape mismatches, NaN/inf tensors (the message
        names the file and node).
    UnsupportedLayerError
        An op outside :data:`SUPPORTED_OPS` or a supported op used in an unsupported way (branches,
        activations on the input, arithmetic after an activation, ...), naming the op and node.
    """
    import onnx

    path = Path(path)
    model = read_model(path)
    return build_network(model, _Graph(path, onnx))


def read_model(path: Path):
    """Read and check an ONNX file (see :func:`load_onnx` for the errors)."""
    import onnx
    import onnx.numpy_helper

    try:
        raw = read_bytes(path)
    except OSError as e:
        raise ModelFormatError(f"{path}: cannot read the file: {e.strerror or e}") from None
    try:
        model = onnx.load_model_from_string(raw)
        if not model.HasField("graph") or not model.graph.node:
            raise ModelFormatError(f"{path}: not an ONNX model with a graph (empty or truncated file?)")
        if not model.opset_import:
            raise ModelFormatError(f"{path}: the ONNX model has no opset_import (truncated file?)")
        if any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer):
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        onnx.checker.check_model(model)
    except ModelFormatError:
        raise
    except Exception as e:  # DecodeError, ValidationError, OSError, ... from a corrupt file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFormatError(f"{path}: not a valid ONNX model: {type(e).__name__}: {msg[:300]}") from None

    return model


def build_network(model, g: _Graph) -> Network:
    """Interpret ``model``'s graph with the interpreter ``g`` (a :class:`_Graph`) into a Network."""
    import onnx
    import onnx.numpy_helper

    path = g.path
    g.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=1)
    try:
        g.where = "initializers"
        for t in model.graph.initializer:
            g.consts[t.name] = onnx.numpy_helper.to_array(t)
        g.where = "graph inputs"
        inputs = [v for v in model.graph.input if v.name not in g.consts]
        if len(inputs) != 1:
            raise g.fail(f"expected one non-constant graph input, found {[v.name for v in inputs]}")
        shape = _input_shape(g, inputs[0])
        g.set_data(inputs[0].name, shape)
        n_in = g.size
        g.mean, g.std, g.sign = np.zeros(n_in), np.ones(n_in), np.ones(n_in)
        for idx, node in enumerate(model.graph.node):
            g.node(idx, node)
        g.where = "graph outputs"
        outs = [v.name for v in model.graph.output]
        if len(outs) != 1:
            raise g.fail(f"expected one graph output, found {outs}", True)
        if outs[0] not in g.data:
            raise g.fail(f"the graph output {outs[0]!r} is not the result of the dense-layer chain")
        if g.phase == "pre":
            raise g.fail("the graph has no dense (Gemm/MatMul) layer")
        if g.phase == "linear":
            g.close_layer("identity")
        last = g.layers[-1]
        if g.last_act is not None and g.last_act[0] == "Sigmoid" and outs[0] in g.data and last.n_out == 1 \
                and g.output == "identity" and last.activation == "sigmoid":
            g.layers[-1] = Layer(last.W, last.b, "identity")
            g.output = "sigmoid"
        if g.size != last.n_out:
            raise g.fail(f"output has {g.size} values but the last layer has {last.n_out}")
        log.debug("%s: %d dense layers %s, output %s", path, len(g.layers), [l.activation for l in g.layers], g.output)
        try:
            return Network(tuple(g.layers), output=g.output, input_mean=g.mean, input_std=g.std, name=path.stem)
        except ModelFormatError as e:
            raise type(e)(f"{path}: {e}") from None
    except HybridqError:
        raise
    except Exception as e:  # numpy errors on inconsistent shapes, bad attributes, ...
        raise ModelFormatError(f"{path}: {g.where}: {type(e).__name__}: {e}") from None
