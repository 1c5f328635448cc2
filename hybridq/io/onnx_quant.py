"""Quantized ONNX reader: the deployed model of a QDQ or QOperator file, built exactly.

Files written by ``onnxruntime.quantization.quantize_static`` / ``quantize_dynamic`` for MLPs:

* **QDQ** (``QuantFormat.QDQ``): ``DequantizeLinear`` of integer initializers (weights int8/uint8,
  per-tensor or per-channel ``axis``; biases int32 with scale ``s_x s_w``, or int8) and
  ``QuantizeLinear -> DequantizeLinear`` pairs on the running tensor (the input, a ``MatMul``
  result before its bias ``Add``, a layer's pre-activation, an activation's output);
* **QOperator**: ``QuantizeLinear``, ``QGemm`` (com.microsoft), ``QLinearMatMul``,
  ``QLinearAdd`` (com.microsoft), ``DequantizeLinear``;
* **dynamic**: ``DynamicQuantizeLinear``, ``MatMulInteger``, ``Cast``, ``Mul`` by the product of
  the dynamic and the weight scale, float bias ``Add``.

Every dequantized constant ``s (q - z)`` is computed in float64 and is exact there (a float32
scale times an integer below ``2^29``; larger integers are refused).  Each quantizer on the
running tensor becomes a :class:`hybridq.actquant.QuantPoint` (``saturate=True``, as the
runtime clips).  A quantizer on a pre-activation whose range starts at 0 (zero point ``qmin``;
onnxruntime drops a ``Relu`` it can fold into the quantizer this way) is exactly ``relu``
followed by the quantizer, and is read so.  Anything else -- another op, ``block_size``,
float8 or int4 types, ``QGemm`` with ``alpha != 1`` or ``transA`` -- raises
:class:`~hybridq.errors.UnsupportedLayerError` naming the node and op.

Runtime arithmetic (onnxruntime CPU, MLAS kernels).  The integer path accumulates exactly in
int32 and requantizes with a float32 multiplier, rounding half to even; the float path
(unfused ``DequantizeLinear -> Gemm``) computes in float32.  Either way the real value of a
layer's result is multiplied by ``(1 + d)`` with ``|d| <= gamma_{n+5}`` for ``u = 2^-24``
(Higham, 2nd ed., Lemma 3.1 and §3.1: ``n`` products and sums, the dequantization of the input
and of the weights, the multiplier and its product): a relative radius ``gamma_{n+5}`` on every
weight and bias (:func:`runtime_radius`).  The float32 division ``v / s`` of a quantizer moves
``v / s`` by at most ``2^-23 |v / s| <= 2^-14`` steps on the clipped range, hence the rounding
radius ``s (1/2 + 2^-14)`` (``QuantPoint.rel``).  This *enlarges* the noise instead of modelling
MLAS's exact instruction sequence; the exact re-check uses the ideal rounding (round half to
even of the exact value), which the runtime matches except within those slacks of a tie.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hybridq.actquant import ActModel, QuantPoint
from hybridq.errors import ModelFormatError, UnsupportedLayerError
from hybridq.io.onnx import _Graph, build_network, read_model
from hybridq.network import Layer, Network

__all__ = ["load_quantized_onnx", "runtime_radius", "QUANT_OPS"]

#: Quantization ops the reader understands (besides :data:`hybridq.io.onnx.SUPPORTED_OPS`).
QUANT_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QGemm", "QLinearMatMul",
             "QLinearAdd", "MatMulInteger")
_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255),
           np.dtype(np.int16): (-32768, 32767), np.dtype(np.uint16): (0, 65535)}
_RT_REL = 2.0 ** -14
_EXACT_INT = 2**29


def runtime_radius(W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relative radii ``gamma_{n+5} |W|``, ``gamma_{n+5} |b|`` (``u = 2^-24``, ``n`` = fan-in),
    rounded up, enclosing onnxruntime's float32 arithmetic of one layer (module docstring)."""
    n = W.shape[1] + 5
    u = 2.0 ** -24
    g = np.nextafter(n * u / (1 - n * u), np.inf) * (1 + 2.0**-40)
    return np.nextafter(g * np.abs(W), np.inf), np.nextafter(g * np.abs(b), np.inf)


class _QGraph(_Graph):
    """The float interpreter plus quantized tensors (see the module docstring)."""

    def __init__(self, path, onnx_mod) -> None:
        super().__init__(path, onnx_mod)
        self.points: list[QuantPoint] = []
        self.qstate = None       # (scale, zp, qmin, qmax) of the running tensor when it is integer
        self.dyn: dict = {}      # dynamic scale / zero-point symbols -> "scale" | "zp" | ("scale*", w_scale)
        self.acc = None          # pending weight scale of a MatMulInteger accumulator
        self.bias_added = False
        self.layer_points: set = set()
        self.dq: dict = {}       # dequantized constant -> (integer dtype, scales (flat), zero points (flat))
        self.dq_src = None       # (name, scale) of the running tensor's last DequantizeLinear output

    # ------------------------------------------------------------ helpers
    def qparams(self, ins, i_scale, i_zp, dtype=None, what="quantizer"):
        s = np.asarray(self.const(ins[i_scale], f"{what} scale"), dtype=np.float64)
        if len(ins) > i_zp and ins[i_zp]:
            z = np.asarray(self.const(ins[i_zp], f"{what} zero point"))
        else:
            z = np.zeros((), dtype=np.uint8 if dtype is None else dtype)
        if z.dtype not in _RANGES:
            raise self.fail(f"{what} of type {z.dtype} is not supported (int8, uint8, int16, uint16)", True)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise self.fail(f"{what} scale must be finite and > 0")
        return s, z.astype(np.int64), _RANGES[z.dtype]

    def dequant_const(self, node, ins, out) -> None:
        at = self.attrs(node)
        if "block_size" in at and int(at["block_size"]) != 0:
            raise self.fail("DequantizeLinear with block_size (blocked quantization) is not supported", True)
        q = self.const(ins[0], "DequantizeLinear input")
        if q.dtype.kind not in "iu":
            raise self.fail(f"DequantizeLinear of a {q.dtype} tensor is not supported", True)
        s = np.asarray(self.const(ins[1], "DequantizeLinear scale"), dtype=np.float64)
        z = np.asarray(self.const(ins[2], "zero point"), dtype=np.int64) if len(ins) > 2 and ins[2] else np.zeros((), np.int64)
        if s.ndim == 1 and s.size > 1:
            ax = int(at.get("axis", 1)) % max(q.ndim, 1)
            shape = [1] * q.ndim
            shape[ax] = -1
            s, z = s.reshape(shape), (z.reshape(shape) if z.ndim == 1 else z)
        d = q.astype(np.int64) - z
        if np.any(np.abs(d) >= _EXACT_INT):
            raise self.fail(f"integers of {ins[0]!r} reach {int(np.abs(d).max())}: their dequantization is not exact "
                            "in float64 (only |q - z| < 2^29 is supported)", True)
        self.consts[out] = d.astype(np.float64) * s
        self.dq[out] = (q.dtype, np.asarray(s, dtype=np.float64).reshape(-1), np.asarray(z, dtype=np.int64).reshape(-1))

    def check_bias_scale(self, ins) -> None:
        """An int32 bias ``DequantizeLinear`` of a ``Gemm`` between a dequantized input and a dequantized
        weight: onnxruntime fuses the group into ``QGemm``, whose int32 bias has the scale ``s_x s_w``
        and zero point 0 by definition, so the bias's own scale and zero point are ignored (measured:
        a bias scale of 1e-40 s_x s_w changed nothing in onnxruntime's output).  A bias whose scale or
        zero point differs would make the deployed model another than the graph's: refused."""
        if len(ins) < 3 or not ins[2] or ins[2] not in self.dq or self.dq[ins[2]][0] != np.int32:
            return
        d, w = (0, 1) if ins[0] in self.data else (1, 0)
        if self.dq_src is None or self.dq_src[0] != ins[d] or ins[w] not in self.dq:
            return
        _, bs, bz = self.dq[ins[2]]
        ws = self.dq[ins[w]][1]
        expected = (np.float32(self.dq_src[1]) * ws.astype(np.float32)).astype(np.float64)  # float32, as the runtime
        try:
            bs_, ex_ = np.broadcast_arrays(bs, expected)
        except ValueError:
            bs_, ex_ = bs, None
        if np.any(bz != 0) or ex_ is None or np.any(np.abs(bs_ - ex_) > 2.0**-22 * np.abs(ex_)):
            raise self.fail(f"the int32 bias {ins[2]!r} has scale {bs.tolist()[:4]} and zero point {bz.tolist()[:4]}, "
                            f"but onnxruntime's fused QGemm takes an int32 bias with scale input scale x weight scale "
                            f"({expected.tolist()[:4]}) and zero point 0; requantize the bias with those", True)

    def add_point(self, kind, s, z, rng, name) -> None:
        if self.phase == "pre":
            where, layer = "input", -1
        elif self.phase == "linear":
            where, layer = ("pre" if self.bias_added else "mid"), len(self.layers)
        elif self.phase == "act":
            where, layer = "post", len(self.layers) - 1
        else:
            raise self.fail("a quantizer after the final Softmax is not supported", True)
        if kind == "affine" and (np.asarray(s).size > 1 or np.asarray(z).size > 1):
            raise self.fail("per-axis quantization of an activation is not supported", True)
        self.points.append(QuantPoint(where, layer, kind, float(np.asarray(s).reshape(-1)[0]) if kind == "affine" else 1.0,
                                      int(np.asarray(z).reshape(-1)[0]) if kind == "affine" else 0, rng[0], rng[1],
                                      None, True, _RT_REL, name))
        if where in ("mid", "pre"):
            self.layer_points.add(where)

    def dense(self, W, out, out_shape) -> None:
        super().dense(W, out, out_shape)
        self.bias_added = False
        self.layer_points = set()

    def op_gemm(self, node, ins, out) -> None:
        self.check_bias_scale(ins)
        super().op_gemm(node, ins, out)
        self.bias_added = len(ins) > 2 and bool(ins[2])

    def op_arith(self, node, op, ins, out) -> None:
        if self.phase == "linear" and self.layer_points:
            bias = op in ("Add", "Sub") and ins[0] in self.data and "pre" not in self.layer_points
            if not bias:
                raise self.fail(f"{op} after an activation quantizer of the same layer cannot be folded", True)
        super().op_arith(node, op, ins, out)
        if self.phase == "linear":
            self.bias_added = True

    # ------------------------------------------------------------ quantized ops
    def q_node(self, node, op, ins, outs) -> None:
        at = self.attrs(node)
        if op == "QuantizeLinear":
            if self.qstate is not None:
                raise self.fail("QuantizeLinear of a tensor that is already quantized", True)
            if "block_size" in at and int(at["block_size"]) != 0:
                raise self.fail("QuantizeLinear with block_size is not supported", True)
            s, z, rng = self.qparams(ins, 1, 2)
            self.add_point("affine", s, z, rng, outs[0])
            self.qstate = (s, z, rng, outs[0])
            self.set_data(outs[0], self.shape)
        elif op == "DequantizeLinear":
            if self.qstate is None:
                raise self.fail("DequantizeLinear of a tensor that is not quantized", True)
            s, z, rng = self.qparams(ins, 1, 2)
            s0, z0, rng0, src = self.qstate
            if np.any(s != s0) or np.any(z != z0) or rng != rng0:
                raise self.fail(f"DequantizeLinear scale/zero point differ from those of the quantizer {src!r}", True)
            self.qstate = None
            self.set_data(outs[0], self.shape)
            self.dq_src = (outs[0], float(np.asarray(s).reshape(-1)[0]))
        elif op == "DynamicQuantizeLinear":
            if self.qstate is not None:
                raise self.fail("DynamicQuantizeLinear of a quantized tensor", True)
            self.add_point("dynamic", 1.0, 0, (0, 255), outs[0])
            self.qstate = ("dynamic",)
            self.dyn[outs[1]], self.dyn[outs[2]] = "scale", "zp"
            self.set_data(outs[0], self.shape)
        elif op == "MatMulInteger":
            if self.qstate != ("dynamic",) or ins[0] not in self.data:
                raise self.fail("MatMulInteger is supported only on the output of DynamicQuantizeLinear", True)
            if len(ins) < 3 or self.dyn.get(ins[2]) != "zp":
                raise self.fail("MatMulInteger must use the zero point of its DynamicQuantizeLinear", True)
            Wq = np.asarray(self.const(ins[1], "MatMulInteger weight"))
            wz = np.asarray(self.const(ins[3], "weight zero point"), dtype=np.int64) if len(ins) > 3 and ins[3] else 0
            if Wq.ndim != 2:
                raise self.fail(f"MatMulInteger weight of rank {Wq.ndim} is not supported", True)
            W = (Wq.astype(np.int64) - wz).astype(np.float64)
            self.qstate = None
            self.acc = "pending"
            self._dense_rows(W.T, outs[0])
        elif op in ("QGemm", "QLinearMatMul"):
            self.qlinear(node, op, ins, outs, at)
        elif op == "QLinearAdd":
            if self.phase != "linear" or "mid" not in self.layer_points or ins[0] not in self.data:
                raise self.fail("QLinearAdd is supported only as the bias of a QLinearMatMul", True)
            self.check_in(ins, 1, 2)
            bs, bz, brng = self.qparams(ins, 4, 5, what="QLinearAdd B")
            bq = np.asarray(self.const(ins[3], "QLinearAdd B")).astype(np.int64)
            b = (bq - bz).astype(np.float64) * bs
            self.b = self.b + np.broadcast_to(b.reshape(-1), self.b.shape)
            self.bias_added = True
            s, z, rng = self.qparams(ins, 6, 7, what="QLinearAdd output")
            self.add_point("affine", s, z, rng, outs[0])
            self.qstate = (s, z, rng, outs[0])
            self.set_data(outs[0], self.shape)
        else:  # pragma: no cover - dispatch covers QUANT_OPS
            raise self.fail(f"unsupported op {op!r}", True)

    def check_in(self, ins, i_scale, i_zp) -> None:
        """The running tensor's recorded quantizer must be the one an op reads."""
        if self.qstate is None or self.qstate == ("dynamic",):
            raise self.fail("a QLinear op needs a statically quantized input", True)
        s, z, rng = self.qparams(ins, i_scale, i_zp)
        s0, z0, rng0, _ = self.qstate
        if np.any(s != s0) or np.any(z != z0) or rng != rng0:
            raise self.fail("input scale/zero point differ from the quantizer of the running tensor", True)

    def _dense_rows(self, W: np.ndarray, out: str) -> None:
        if not self.shape or self.size != self.shape[-1]:
            raise self.fail(f"a dense op on a running tensor of shape {self.shape} (not a row vector)", True)
        self.dense(W, out, self.shape[:-1] + (W.shape[0],))

    def qlinear(self, node, op, ins, outs, at) -> None:
        if ins[0] not in self.data:
            raise self.fail(f"{op} must read the running tensor as its first input", True)
        self.check_in(ins, 1, 2)
        Bq = np.asarray(self.const(ins[3], f"{op} weight"))
        bs, bz, _ = self.qparams(ins, 4, 5, what=f"{op} weight")
        if Bq.ndim != 2:
            raise self.fail(f"{op} weight of rank {Bq.ndim} is not supported", True)
        if op == "QGemm":
            if float(at.get("alpha", 1.0)) != 1.0 or int(at.get("transA", 0)):
                raise self.fail("QGemm with alpha != 1 or transA is not supported", True)
            tb = int(at.get("transB", 0))
            Bt = Bq if tb else Bq.T                                # (out, in)
            W = (Bt.astype(np.int64) - (bz.reshape(-1, 1) if bz.size > 1 else bz)).astype(np.float64)
            W = W * (bs.reshape(-1, 1) if bs.size > 1 else bs)
            self.qstate = None
            self._dense_rows(W, outs[0])
            if len(ins) > 6 and ins[6]:
                C = np.asarray(self.const(ins[6], "QGemm bias")).astype(np.int64)
                if np.any(np.abs(C) >= _EXACT_INT):
                    raise self.fail("QGemm bias beyond 2^29 is not supported (inexact in float64)", True)
                a_s = np.asarray(self.const(ins[1], "QGemm A scale"), dtype=np.float64)
                self.b = self.b + np.broadcast_to(C.reshape(-1).astype(np.float64) * (a_s * bs).reshape(-1), self.b.shape)
                self.bias_added = True
            if len(ins) > 7 and ins[7]:
                s, z, rng = self.qparams(ins, 7, 8, what="QGemm output")
                self.add_point("affine", s, z, rng, outs[0])
                self.qstate = (s, z, rng, outs[0])
        else:  # QLinearMatMul: x @ B, B (in, out), per-channel scales along axis 1
            W = (Bq.astype(np.int64) - (bz.reshape(1, -1) if bz.size > 1 else bz)).astype(np.float64)
            W = (W * (bs.reshape(1, -1) if bs.size > 1 else bs)).T
            self.qstate = None
            self._dense_rows(W, outs[0])
            s, z, rng = self.qparams(ins, 6, 7, what="QLinearMatMul output")
            self.add_point("affine", s, z, rng, outs[0])
            self.qstate = (s, z, rng, outs[0])
        self.set_data(outs[0], self.shape)

    def dyn_mul(self, node, ins, outs) -> bool:
        """``Mul(dynamic scale, weight scale)`` and ``Mul(accumulator, that product)``."""
        a, b = ins[0], ins[1]
        if self.dyn.get(a) == "scale" or self.dyn.get(b) == "scale":
            c = b if self.dyn.get(a) == "scale" else a
            self.dyn[outs[0]] = ("scale*", np.asarray(self.fconst(c, "weight scale"), dtype=np.float64))
            return True
        sym = next((v for v in (a, b) if isinstance(self.dyn.get(v), tuple)), None)
        if sym is not None:
            other = b if sym == a else a
            if self.acc != "pending" or other not in self.data:
                raise self.fail("Mul by a dynamic scale is supported only on a MatMulInteger result", True)
            ws = self.dyn[sym][1].reshape(-1)
            self.W = self.W * (ws[:, None] if ws.size > 1 else ws)
            self.acc = None
            self.set_data(outs[0], self.shape)
            return True
        return False

    # ------------------------------------------------------------------ dispatch
    def node(self, idx: int, node) -> None:
        op = node.op_type
        self.where = f"node {node.name or '#' + str(idx)!r} ({op})"
        ins, outs = list(node.input), list(node.output)
        if node.domain not in ("", "ai.onnx", "com.microsoft"):
            raise self.fail(f"unsupported op {op!r} of domain {node.domain!r}", True)
        if node.domain == "com.microsoft" and op not in ("QGemm", "QLinearAdd"):
            raise self.fail(f"unsupported op {op!r} of domain {node.domain!r}", True)
        if op in ("Mul",) and any(i in self.dyn for i in ins) and self.dyn_mul(node, ins, outs):
            return
        if op == "DequantizeLinear" and ins and ins[0] in self.consts:
            self.dequant_const(node, ins, outs[0])
            return
        if op in QUANT_OPS:
            if op == "DequantizeLinear" and ins[0] not in self.data:
                raise self.fail(f"reads the undefined tensor {ins[0]!r}")
            if op not in ("DequantizeLinear",) and (not ins or ins[0] not in self.data):
                raise self.fail(f"{op} on constants is not supported (only on the running tensor)", True)
            self.q_node(node, op, ins, outs)
            return
        if op == "Cast" and ins and ins[0] in self.data and self.acc == "pending":
            self.set_data(outs[0], self.shape, alias=True)
            return
        if self.qstate is not None and any(i in self.data for i in ins if i):
            raise self.fail(f"{op} on an integer (quantized) tensor is not supported", True)
        if self.acc is not None and any(i in self.data for i in ins if i):
            raise self.fail(f"{op} on an integer MatMulInteger accumulator (expected Cast and Mul by the scale)", True)
        super().node(idx, node)


def load_quantized_onnx(path: str | Path) -> ActModel:
    """Load a quantized ONNX MLP as the deployed model (module docstring).

    Returns
    -------
    ActModel
        ``network``: the dequantized network (nominal parameters = the dequantized ones);
        ``center``: the same parameters; ``radius``: :func:`runtime_radius` per layer;
        ``points``: one :class:`~hybridq.actquant.QuantPoint` per runtime quantizer.

    Raises
    ------
    ModelFormatError
        Unreadable or malformed file (see :func:`hybridq.io.load_onnx`), mismatched scales.
    UnsupportedLayerError
        An op or pattern outside the supported set, naming node and op.
    """
    import onnx

    path = Path(path)
    model = read_model(path)
    g = _QGraph(path, onnx)
    net = build_network(model, g)
    if g.qstate is not None and g.qstate != ("dynamic",):
        raise UnsupportedLayerError(f"{path}: the graph output is an integer tensor (no final DequantizeLinear)")
    if g.qstate is not None or g.acc is not None:
        raise UnsupportedLayerError(f"{path}: the graph ends inside a dynamic quantization pattern")
    layers = list(net.layers)
    points = []
    for p in g.points:
        l = layers[p.layer] if p.layer >= 0 else None
        if p.where == "pre" and p.kind == "affine" and l.activation == "identity" and p.zero_point == p.qmin:
            # Q(z) with its range starting at 0 equals Q(relu(z)): the Relu the quantizer absorbed
            layers[p.layer] = Layer(l.W, l.b, "relu")
            p = QuantPoint("post", p.layer, p.kind, p.scale, p.zero_point, p.qmin, p.qmax, None, p.saturate, p.rel, p.name)
        points.append(p)
    try:
        net = Network(tuple(layers), net.output, net.input_mean, net.input_std, net.input_lower, net.input_upper,
                      net.output_mean, net.output_std, net.name)
        radius = tuple(runtime_radius(l.W, l.b) for l in net.layers)
        # the graph returns float32 (the last DequantizeLinear rounds s (q - z)): out_rel = 2^-24
        return ActModel(net, net.params, radius, tuple(points), name=path.stem, out_rel=2.0**-24)
    except ModelFormatError as e:
        raise ModelFormatError(f"{path}: {e}") from None
