"""Backend-independent SMT encodings of one cell query, and the map from a model back to weights.

Two encodings of "some ``(x, theta)`` in the cell violates the property":

*reduced* (DESIGN.md §2, exact): per layer ``k`` and neuron ``j`` one variable ``z'_kj`` with
    ``|z'_k - (C_k h'_{k-1} + c_k)| <= R_k |h'_{k-1}| + rb_k``   (``C, c`` the box centre, ``R, rb``
    the radii).  For fixed ``h'`` the rows of ``W_k`` use disjoint parameters, so this set of
    pre-activations is exactly the one the parameter box reaches (attained at
    ``t = c + r * sign(h') * lam``, ``lam in [-1, 1]``); for ReLU/sigmoid inputs ``|h'| = h'`` and
    the constraint is linear (LRA), otherwise ``|h'|`` is an if-then-else.
*pure* (the seed paper, Murthy, Das, Islam, arXiv:1903.10672): every weight and bias is a real
    variable in its box and ``z'_k = W_k h'_{k-1} + b_k`` has products of variables (NRA).

Both share the input (the network's clamp + normalization, a monotone affine map per coordinate),
the activations (ReLU / leaky ReLU / hardtanh as if-then-else, fixed where the bounds make a
neuron stable), the nominal network ``theta0`` on the same ``x`` (deviation only), the output
de-normalization and the property.  Constants are exact rationals (``Fraction`` of the float64
values); terms are built through a small :class:`Arith` adapter so z3 and dReal share the code.
Constant sub-terms are folded exactly (a point input makes the first layer and the whole nominal
network constant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol, Sequence

import numpy as np

from hybridq.network import PIECEWISE_LINEAR, iv_precision
from hybridq.properties import Decision, Deviation, OutputConstraint

__all__ = ["Arith", "EncodingUnsupported", "Query", "Encoding", "encode", "pullback", "ENCODINGS"]

ENCODINGS = ("reduced", "pure")

_F0, _F1 = Fraction(0), Fraction(1)


class EncodingUnsupported(Exception):
    """The backend's arithmetic cannot express this query (the message says why)."""


class Arith(Protocol):
    """Term builder of one solver context (constants are passed as ``Fraction``)."""

    def real(self, name: str) -> Any: ...
    def const(self, q: Fraction) -> Any: ...
    def sum(self, terms: list) -> Any: ...
    def scale(self, q: Fraction, t: Any) -> Any: ...
    def mul(self, a: Any, b: Any) -> Any: ...
    def ite(self, c: Any, a: Any, b: Any) -> Any: ...
    def and_(self, fs: list) -> Any: ...
    def or_(self, fs: list) -> Any: ...
    def abs(self, t: Any) -> Any: ...
    def sigmoid(self, t: Any) -> Any: ...
    def tanh(self, t: Any) -> Any: ...
    def exp(self, t: Any) -> Any: ...
    def boolval(self, b: bool) -> Any: ...


def _fr(v: float) -> Fraction | None:
    v = float(v)
    return None if not math.isfinite(v) else Fraction(v)


def _rows(bounds, attr: str, sizes: Sequence[int]) -> list[np.ndarray] | None:
    vals = getattr(bounds, attr, None)
    if vals is None:
        return None
    if len(vals) != len(sizes):
        raise ValueError(f"neuron_bounds.{attr} has {len(vals)} layers, the network {len(sizes)}")
    out = []
    for k, (v, n) in enumerate(zip(vals, sizes)):
        a = np.asarray(v, dtype=np.float64).reshape(-1)
        if a.size != n:
            raise ValueError(f"neuron_bounds.{attr}[{k}] has {a.size} entries, layer {k} has {n} neurons "
                             "(pass the row of this one cell)")
        out.append(a)
    return out


@dataclass
class Query:
    """A validated cell query in plain data (see :meth:`build`)."""

    network: Any
    perturbation: Any
    prop: Any
    lower: np.ndarray
    upper: np.ndarray
    pre_lo: list  # per layer (n_k,) float64 clips on the perturbed pre-activations
    pre_hi: list
    nom_lo: list  # per layer (n_k,) float64 bounds of the nominal pre-activations
    nom_hi: list
    encoding: str = "reduced"
    ibp: bool = True
    extra: dict = field(default_factory=dict)
    xlo: list = field(default_factory=list)  # exact input bounds: the cell box within the exact box
    xhi: list = field(default_factory=list)

    @classmethod
    def build(cls, network, perturbation, cell, prop, neuron_bounds=None, encoding="reduced",
              ibp=True, box=None) -> "Query":
        """Validate the arguments of ``Backend.check`` (raises ``ValueError`` /
        ``PerturbationError`` naming the bad argument).  ``box`` (an :class:`hybridq.InputBox`,
        optional) is the problem's exact input box: the query's input ranges are the cell's
        float box intersected with it, exactly (``xlo``/``xhi``)."""
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        perturbation.check_network(network)
        if isinstance(prop, Decision):  # sense None: the network's
            prop = prop.resolve(network)
        if not isinstance(prop, (Deviation, Decision, OutputConstraint)):
            raise ValueError(f"unsupported property {type(prop).__name__}; use Deviation, Decision or OutputConstraint")
        n_out = network.n_out
        if isinstance(prop, Deviation):
            prop.selected(n_out)
        elif isinstance(prop, Decision):
            prop.spec_matrix(n_out)
        else:
            for A, _ in prop.disjuncts:
                if A.shape[1] != n_out:
                    raise ValueError(f"output constraint has {A.shape[1]} columns, the network {n_out} outputs")
        lower = np.asarray(cell.lower, dtype=np.float64).reshape(-1)
        upper = np.asarray(cell.upper, dtype=np.float64).reshape(-1)
        if lower.shape != (network.n_in,) or upper.shape != (network.n_in,):
            raise ValueError(f"cell input box has shape {lower.shape}, the network has {network.n_in} inputs")
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))) or np.any(lower > upper):
            raise ValueError("cell input box must be finite with lower <= upper")
        sizes = [l.n_out for l in network.layers]
        plo = np.asarray(cell.pre_lo, dtype=np.float64).reshape(-1)
        phi = np.asarray(cell.pre_hi, dtype=np.float64).reshape(-1)
        if plo.size != sum(sizes) or phi.size != sum(sizes):
            raise ValueError(f"cell phase clips have {plo.size} entries, the network {sum(sizes)} neurons")
        cuts = np.cumsum([0] + sizes)
        pre_lo = [plo[cuts[k]:cuts[k + 1]].copy() for k in range(len(sizes))]
        pre_hi = [phi[cuts[k]:cuts[k + 1]].copy() for k in range(len(sizes))]
        nom_lo = [np.full(n, -np.inf) for n in sizes]
        nom_hi = [np.full(n, np.inf) for n in sizes]
        if neuron_bounds is not None:
            for attr, dst, fn in (("pre_lo", pre_lo, np.maximum), ("pre_hi", pre_hi, np.minimum),
                                  ("nom_pre_lo", nom_lo, np.maximum), ("nom_pre_hi", nom_hi, np.minimum)):
                rows = _rows(neuron_bounds, attr, sizes)
                if rows is not None:
                    for k, r in enumerate(rows):
                        dst[k] = fn(dst[k], r)
        xlo, xhi = [Fraction(float(v)) for v in lower], [Fraction(float(v)) for v in upper]
        if box is not None:
            if box.n_in != network.n_in:
                raise ValueError(f"input box has {box.n_in} dimensions, the network has {network.n_in} inputs")
            xlo = [max(a, b) for a, b in zip(xlo, box.exact_lower)]
            xhi = [min(a, b) for a, b in zip(xhi, box.exact_upper)]
        return cls(network, perturbation, prop, lower, upper, pre_lo, pre_hi, nom_lo, nom_hi, encoding, bool(ibp),
                   xlo=xlo, xhi=xhi)

    # ------------------------------------------------------------------ helpers
    def confirm(self, x: np.ndarray, params) -> bool:
        """Exact re-check: ``x`` (floats and/or Fractions) in the query's exact input ranges,
        ``params`` in the perturbation box, the property violated in exact arithmetic at
        ``(x, params)``."""
        if not all(a <= v <= b for v, a, b in zip(x, self.xlo, self.xhi)):
            return False
        if not self.perturbation.contains(params):
            return False
        return bool(self.prop.check_exact(self.network, x, params))

    def violation_scale(self) -> Fraction:
        """A positive scale (1 + the property's threshold) for the retry margins."""
        p = self.prop
        if isinstance(p, Deviation):
            return 1 + p.delta_exact
        if isinstance(p, Decision):
            return 1 + p.kappa_exact
        return 1 + max(abs(v) for _, c in p.exact for v in c)


@dataclass
class Encoding:
    """The constraints of one query, the violation formula and the terms a model is read from."""

    constraints: list
    violation: Any
    x_terms: list  # raw clamped input per coordinate: Fraction or term
    z_terms: list  # per layer, perturbed pre-activations: Fraction or term
    trivially_false: bool = False

    def formula(self, ar: Arith):
        f = _and(ar, self.constraints + [self.violation])
        return ar.boolval(f) if isinstance(f, bool) else f


# ---------------------------------------------------------------- term helpers
def _is_c(v) -> bool:
    return isinstance(v, Fraction)


def _t(ar: Arith, v):
    return ar.const(v) if _is_c(v) else v


def _affine(ar: Arith, coeffs, vals, const: Fraction):
    """``const + sum coeffs_i * vals_i`` with constants folded exactly."""
    terms = []
    for q, v in zip(coeffs, vals):
        if q == 0:
            continue
        if _is_c(v):
            const += q * v
        else:
            terms.append(ar.scale(q, v))
    if not terms:
        return const
    if const != 0:
        terms.append(ar.const(const))
    return ar.sum(terms)


def _le(ar: Arith, a, b):
    if _is_c(a) and _is_c(b):
        return bool(a <= b)
    return _t(ar, a) <= _t(ar, b)


def _lt(ar: Arith, a, b):
    if _is_c(a) and _is_c(b):
        return bool(a < b)
    return _t(ar, a) < _t(ar, b)


def _and(ar: Arith, fs: list):
    fs2 = [f for f in fs if f is not True]
    if any(f is False for f in fs2):
        return False
    if not fs2:
        return True
    return fs2[0] if len(fs2) == 1 else ar.and_(fs2)


def _or(ar: Arith, fs: list):
    fs2 = [f for f in fs if f is not False]
    if any(f is True for f in fs2):
        return True
    if not fs2:
        return False
    return fs2[0] if len(fs2) == 1 else ar.or_(fs2)


# ----------------------------------------------------------- exact intervals
def _iv_act(lo: Fraction, hi: Fraction, act: str, alpha: Fraction):
    if act in PIECEWISE_LINEAR:
        return _act_const(lo, act, alpha), _act_const(hi, act, alpha)
    slack = 1e-12  # float sigmoid/tanh err ~1e-16: a generous outward margin
    if act == "sigmoid":
        f = lambda z: 0.5 * (1.0 + math.tanh(0.5 * max(min(float(z), 700.0), -700.0)))
        return max(_F0, Fraction(f(lo) - slack)), min(_F1, Fraction(f(hi) + slack))
    f = lambda z: math.tanh(max(min(float(z), 700.0), -700.0))
    return max(-_F1, Fraction(f(lo) - slack)), min(_F1, Fraction(f(hi) + slack))


def _act_const(v: Fraction, act: str, alpha: Fraction) -> Fraction:
    if act == "relu":
        return v if v > 0 else _F0
    if act == "identity":
        return v
    if act == "leaky_relu":
        return v if v >= 0 else alpha * v
    if act == "hardtanh":
        return min(max(v, -_F1), _F1)
    raise EncodingUnsupported(f"no exact constant evaluation of {act}")


def _act_term(ar: Arith, z, lo, hi, act: str, alpha: Fraction):
    """``act(z)`` given sound bounds ``lo <= z <= hi`` (Fractions or None)."""
    if _is_c(z) and act in PIECEWISE_LINEAR:
        return _act_const(z, act, alpha)
    pos = lo is not None and lo >= 0
    neg = hi is not None and hi <= 0
    if act == "identity":
        return z
    if act == "relu":
        if pos:
            return z
        if neg:
            return _F0
        if hasattr(ar, "max"):  # dReal: Max contracts far better than if_then_else
            return ar.max(z, ar.const(_F0))
        return ar.ite(z > ar.const(_F0), z, ar.const(_F0))
    if act == "leaky_relu":
        if pos:
            return z
        if neg:
            return ar.scale(alpha, z)
        return ar.ite(z >= ar.const(_F0), z, ar.scale(alpha, z))
    if act == "hardtanh":
        if lo is not None and hi is not None and lo >= -1 and hi <= 1:
            return z
        if lo is not None and lo >= 1:
            return _F1
        if hi is not None and hi <= -1:
            return -_F1
        m1, p1 = ar.const(-_F1), ar.const(_F1)
        return ar.ite(z < m1, m1, ar.ite(z > p1, p1, z))
    if act == "sigmoid":
        return ar.sigmoid(_t(ar, z))
    if act == "tanh":
        return ar.tanh(_t(ar, z))
    raise EncodingUnsupported(f"unsupported activation {act}")


def _round_out(v: Fraction, direction: int) -> Fraction:
    """The float64 next to ``v`` in ``direction`` (-1 down, +1 up), as an exact Fraction; ``v``
    itself (exact, so still a valid bound) when that float would overflow the float64 range."""
    try:
        f = float(v)
        if (direction < 0 and Fraction(f) > v) or (direction > 0 and Fraction(f) < v):
            f = float(np.nextafter(f, direction * math.inf))
        return Fraction(f)
    except (OverflowError, ValueError):  # |v| beyond float64 (float(v) or Fraction(+-inf) overflows)
        return v


def _meet(a, b, fn):
    if a is None:
        return b
    if b is None:
        return a
    return fn(a, b)


# ------------------------------------------------------------------- encoding
def _input_layer(ar: Arith, q: Query, x_fixed, cons):
    """Raw clamped input terms and normalized inputs ``h_0`` with exact intervals."""
    net = q.network
    lo_box = q.xlo if x_fixed is None else x_fixed
    hi_box = q.xhi if x_fixed is None else x_fixed
    x_terms, h, hlo, hhi = [], [], [], []
    for i in range(net.n_in):
        lo, hi = Fraction(lo_box[i]), Fraction(hi_box[i])
        if net.input_lower is not None:
            cl, cu = Fraction(float(net.input_lower[i])), Fraction(float(net.input_upper[i]))
            lo, hi = min(max(lo, cl), cu), min(max(hi, cl), cu)
        if lo == hi:
            xc = lo
        else:
            xc = ar.real(f"x{i}")
            cons += [_le(ar, lo, xc), _le(ar, xc, hi)]
        x_terms.append(xc)
        mean, std = Fraction(float(net.input_mean[i])), Fraction(float(net.input_std[i]))
        inv = 1 / std
        h.append(_affine(ar, [inv], [xc], -mean * inv))
        hlo.append((lo - mean) * inv)
        hhi.append((hi - mean) * inv)
    return x_terms, h, hlo, hhi


def _abs_term(ar: Arith, v, lo, hi):
    if _is_c(v):
        return abs(v)
    if lo is not None and lo >= 0:
        return v
    if hi is not None and hi <= 0:
        return ar.scale(-_F1, v)
    return ar.abs(v)


def _network(ar: Arith, q: Query, h, hlo, hhi, cons, perturbed: bool, tag: str):
    """Encode the layers; returns (pre-activation terms per layer, output terms y)."""
    net = q.network
    pure = perturbed and q.encoding == "pure"
    z_layers = []
    for k, layer in enumerate(net.layers):
        act, alpha = layer.activation, Fraction(layer.alpha)
        if perturbed:
            (C, c), (R, rb) = q.perturbation.center[k], q.perturbation.radius[k]
            clip_lo, clip_hi = q.pre_lo[k], q.pre_hi[k]
        else:
            C, c = layer.W, layer.b
            clip_lo, clip_hi = q.nom_lo[k], q.nom_hi[k]
        ilo, ihi = _ibp_layer(q, k, hlo, hhi, perturbed)
        if perturbed and not pure:  # |h'| with known signs folded
            a = [_abs_term(ar, v, lo, hi) for v, lo, hi in zip(h, hlo, hhi)]
        zs, new_h, new_lo, new_hi = [], [], [], []
        for j in range(layer.n_out):
            crow = [Fraction(float(w)) for w in C[j]]
            cj = Fraction(float(c[j]))
            if not perturbed:
                z = _affine(ar, crow, h, cj)
            elif pure:
                z = _pure_neuron(ar, h, crow, cj, R[j], float(rb[j]), cons, f"{tag}{k}_{j}")
            else:
                cen = _affine(ar, crow, h, cj)
                bnd = _affine(ar, [Fraction(float(r)) for r in R[j]], a, Fraction(float(rb[j])))
                if _is_c(bnd) and bnd == 0:
                    z = cen
                else:
                    z = ar.real(f"{tag}z{k}_{j}")
                    cons += [_le(ar, _affine(ar, [_F1, -_F1], [cen, bnd], _F0), z),
                             _le(ar, z, _affine(ar, [_F1, _F1], [cen, bnd], _F0))]
            # clips / neuron bounds (phase splits or sound bounds) and the exact interval bounds
            cl, ch = _fr(clip_lo[j]), _fr(clip_hi[j])
            if cl is not None:
                cons.append(_le(ar, cl, z))
            if ch is not None:
                cons.append(_le(ar, z, ch))
            lo_j, hi_j = _meet(ilo[j], cl, max), _meet(ihi[j], ch, min)
            if q.ibp and not _is_c(z):  # as short floats rounded outward: cheap for the solver
                cons += [_le(ar, _round_out(ilo[j], -1), z), _le(ar, z, _round_out(ihi[j], 1))]
            if hi_j < lo_j:  # the clips make the cell empty; the constraints say so
                hi_j = lo_j
            slo, shi = (lo_j, hi_j) if q.ibp else (cl, ch)
            zs.append(z)
            new_h.append(_act_term(ar, z, slo, shi, act, alpha))
            lo_a, hi_a = _iv_act(lo_j, hi_j, act, alpha)
            new_lo.append(lo_a)
            new_hi.append(hi_a)
        z_layers.append(zs)
        h, hlo, hhi = new_h, new_lo, new_hi
    y = [_affine(ar, [Fraction(float(s))], [v], Fraction(float(m)))
         for v, s, m in zip(h, net.output_std, net.output_mean)]
    ylo = [lo * Fraction(float(s)) + Fraction(float(m)) for lo, s, m in zip(hlo, net.output_std, net.output_mean)]
    yhi = [hi * Fraction(float(s)) + Fraction(float(m)) for hi, s, m in zip(hhi, net.output_std, net.output_mean)]
    return z_layers, y, ylo, yhi


def _pure_neuron(ar: Arith, h, crow, cj: Fraction, rrow, rb: float, cons, name: str):
    """``z = sum_i t_i h_i + b`` with every perturbed weight a variable in its box (seed paper)."""
    rbj = Fraction(rb)
    prods, const = [], (cj if rbj == 0 else _F0)
    for i, (w, r) in enumerate(zip(crow, rrow)):
        r = Fraction(float(r))
        if r == 0:
            if w != 0:
                if _is_c(h[i]):
                    const += w * h[i]
                else:
                    prods.append(ar.scale(w, h[i]))
            continue
        t = ar.real(f"w{name}_{i}")
        cons += [_le(ar, w - r, t), _le(ar, t, w + r)]
        if _is_c(h[i]):
            if h[i] != 0:
                prods.append(ar.scale(h[i], t))
        else:
            prods.append(ar.mul(t, h[i]))
    if rbj != 0:
        t = ar.real(f"b{name}")
        cons += [_le(ar, cj - rbj, t), _le(ar, t, cj + rbj)]
        prods.append(t)
    if not prods:
        return const
    if const != 0:
        prods.append(ar.const(const))
    z = ar.real(f"z{name}")
    cons.append(z == ar.sum(prods))
    return z


def _ibp_layer(q: Query, k: int, hlo, hhi, perturbed: bool):
    """Exact interval of the layer-``k`` pre-activations from input intervals (Fractions)."""
    layer = q.network.layers[k]
    if perturbed:
        (C, c), (R, rb) = q.perturbation.center[k], q.perturbation.radius[k]
    else:
        C, c, R, rb = layer.W, layer.b, None, None
    mags = [max(abs(lo), abs(hi)) for lo, hi in zip(hlo, hhi)]
    lo_out, hi_out = [], []
    for j in range(layer.n_out):
        lo = hi = Fraction(float(c[j]))
        for i in range(layer.n_in):
            w = float(C[j, i])
            if w > 0:
                lo, hi = lo + Fraction(w) * hlo[i], hi + Fraction(w) * hhi[i]
            elif w < 0:
                lo, hi = lo + Fraction(w) * hhi[i], hi + Fraction(w) * hlo[i]
        if perturbed:
            bnd = Fraction(float(rb[j])) + sum((Fraction(float(R[j, i])) * mags[i]
                                                for i in range(layer.n_in) if R[j, i] != 0), _F0)
            lo, hi = lo - bnd, hi + bnd
        lo_out.append(lo)
        hi_out.append(hi)
    return lo_out, hi_out


# ------------------------------------------------------------------- property
def _diff(ar: Arith, a, b):
    return _affine(ar, [_F1, -_F1], [a, b], _F0)


def _mpf_fraction(v) -> Fraction:
    """The exact value of an mpmath number or of an interval end (``iv.mpf(...).a`` / ``.b``, a
    point interval), sign included (``mpf.man_exp`` drops the sign, and converting an interval
    end with ``mpmath.mpf`` rounds it to the 53-bit context precision)."""
    import mpmath  # here, not at the top: only sigmoid / tanh encodings need it (start-up)
    from mpmath import libmp

    raw = v._mpi_[0] if hasattr(v, "_mpi_") else mpmath.mpf(v)._mpf_
    p, q = libmp.to_rational(raw)
    return Fraction(p, q)


def _sigmoid_thresholds(y0: Fraction, d: Fraction):
    """Logit thresholds ``(t_up, t_dn)`` with ``sigmoid(y') > sigmoid(y0) + d  =>  y' > t_up`` and
    ``sigmoid(y') < sigmoid(y0) - d  =>  y' < t_dn`` (``None``: impossible).  Computed in 200-bit
    interval arithmetic and rounded outward, so the encoded region contains the exact one."""
    import mpmath

    iv = mpmath.iv
    with iv_precision(200):
        s0 = 1 / (1 + iv.exp(-(iv.mpf(y0.numerator) / y0.denominator)))
        div = iv.mpf(d.numerator) / d.denominator
        up = iv.mpf(s0.a) + div
        dn = iv.mpf(s0.b) - div
        t_up = t_dn = None
        if up.a < 1:
            pa = iv.mpf(up.a)
            t_up = _mpf_fraction(iv.log(pa / (1 - pa)).a)
        if dn.b > 0:
            pb = iv.mpf(dn.b)
            t_dn = _mpf_fraction(iv.log(pb / (1 - pb)).b)
    return t_up, t_dn


def _violation(ar: Arith, q: Query, yp, yn, margin: Fraction):
    p, net = q.prop, q.network
    # the exact numbers the user wrote (hybridq.exact): an Unsat over the cell's (outward) float box
    # then holds for them, and a model violates them, not only their float images
    if isinstance(p, Decision):
        k = p.kappa_exact - margin
        rows = p.spec_matrix(net.n_out)  # rows e_c - e_j (or +-1 for a binary classifier)
        return _or(ar, [_le(ar, _affine(ar, [Fraction(float(a)) for a in row], yp, _F0), k) for row in rows])
    if isinstance(p, OutputConstraint):
        ds = []
        for A, cvec in p.exact:
            rows = [_le(ar, _affine(ar, list(row), yp, _F0), rhs - margin) for row, rhs in zip(A, cvec)]
            ds.append(_and(ar, rows))
        return _or(ar, ds)
    d = p.delta_exact + margin
    sel = p.selected(net.n_out)
    if p.space == "logit" or net.output == "identity":
        fs = []
        for j in sel:
            dv = _diff(ar, yp[j], yn[j])
            fs += [_lt(ar, d, dv), _lt(ar, dv, -d)]
        return _or(ar, fs)
    if net.output == "sigmoid":
        fs = []
        for j in sel:
            if _is_c(yn[j]):  # the monotone logit threshold (exact up to 200-bit outward rounding)
                t_up, t_dn = _sigmoid_thresholds(yn[j], p.delta_exact)
                if t_up is not None:
                    fs.append(_lt(ar, t_up + margin, yp[j]))
                if t_dn is not None:
                    fs.append(_lt(ar, yp[j], t_dn - margin))
            else:
                try:
                    dv = ar.sigmoid(_t(ar, yp[j])) - ar.sigmoid(_t(ar, yn[j]))
                except EncodingUnsupported as err:
                    raise EncodingUnsupported(
                        "score-space deviation of a sigmoid output is exact in LRA only through the logit "
                        "threshold at a constant nominal logit (a point input); " + str(err)) from None
                fs += [_lt(ar, d, dv), _lt(ar, dv, -d)]
        return _or(ar, fs)
    # softmax scores: s_j = 1 / sum_i exp(y_i - y_j)
    try:
        fs = []
        for j in sel:
            sp = ar.const(_F1) / ar.sum([ar.exp(_t(ar, _diff(ar, yp[i], yp[j]))) for i in range(net.n_out)])
            sn = ar.const(_F1) / ar.sum([ar.exp(_t(ar, _diff(ar, yn[i], yn[j]))) for i in range(net.n_out)])
            fs += [_lt(ar, d, sp - sn), _lt(ar, sp - sn, -d)]
    except EncodingUnsupported as err:
        raise EncodingUnsupported("score-space deviation of a softmax output needs exp; " + str(err)) from None
    return _or(ar, fs)


def encode(ar: Arith, q: Query, margin: Fraction = _F0, x_fixed: np.ndarray | None = None) -> Encoding:
    """Build the query's constraints and violation formula with the term builder ``ar``.

    Parameters
    ----------
    ar : Arith
        A fresh term builder of the backend.
    q : Query
    margin : Fraction
        Require the property to be violated by at least this much (retries after rounding).
    x_fixed : (n_in,) float64, optional
        Fix the raw input at this point of the cell box.

    Raises
    ------
    EncodingUnsupported
        The backend cannot express an activation or the score transform.
    """
    cons: list = []
    x_terms, h0, lo, hi = _input_layer(ar, q, x_fixed, cons)
    z_p, yp, _, _ = _network(ar, q, h0, lo, hi, cons, True, "p")
    yn = None
    if isinstance(q.prop, Deviation):
        _, yn, _, _ = _network(ar, q, h0, lo, hi, cons, False, "n")
    viol = _violation(ar, q, yp, yn, Fraction(margin))
    trivially_false = viol is False or any(c is False for c in cons)
    cons = [c for c in cons if c is not True]
    return Encoding(cons, viol, x_terms, z_p, trivially_false)


# ------------------------------------------------------------------- pullback
def _round_in(t: Fraction, c: float, r: float) -> float:
    """Nearest float64 to ``t`` (which lies in ``[c - r, c + r]``), moved one ulp towards ``c``
    when rounding left the box (one step suffices: ``c`` is a float inside the box)."""
    f = float(t)
    if abs(Fraction(f) - Fraction(c)) > Fraction(r):
        f = float(np.nextafter(f, c))
    return f


def _act_exactish(v: Fraction, act: str, alpha: Fraction) -> Fraction:
    if act in PIECEWISE_LINEAR:
        return _act_const(v, act, alpha)
    z = max(min(float(v), 700.0), -700.0)
    return Fraction(0.5 * (1.0 + math.tanh(0.5 * z))) if act == "sigmoid" else Fraction(math.tanh(z))


def pullback(q: Query, x_model: Sequence, z_model: Sequence, exact_x: bool = False) -> tuple[np.ndarray, tuple]:
    """Concrete float64 ``(x, params)`` from a model's input and perturbed pre-activations.

    ``x`` is the model's (clamped) input rounded to float64 and clipped into the cell box.  Layer by
    layer, with ``h'`` the exact activations at ``x`` under the weights chosen so far, neuron ``j``
    gets ``lam_j = clip((z*_j - C_j h' - c_j) / (R_j |h'| + rb_j), -1, 1)`` (0 when the denominator
    is 0) and the weights ``t_ji = C_ji + R_ji sign(h'_i) lam_j``, ``b_j = c_j + rb_j lam_j``
    (DESIGN.md §2), which reach ``z*_j`` exactly at the model's ``x``; each is rounded to the
    nearest float64 inside its box.  The caller re-checks the result exactly.

    Parameters
    ----------
    q : Query
    x_model : n_in Fractions (or None)
    z_model : per layer, n_k Fractions (or None: keep the centre)
    exact_x : bool
        Keep the model's input exactly (a Fraction where no float64 equals it) instead of
        rounding it to float64: the witness is then the model's point itself (needed when the
        violation lives only at an exact decimal end of the user's box).

    Returns
    -------
    x : (n_in,) float64 (object array of floats and Fractions when needed), params : Params
        Each coordinate of ``x`` is the model's value rounded to the nearest float64 when that
        float lies in the query's exact input range (``xlo``/``xhi``), else the model's value
        clipped into that range, exactly (e.g. a decimal end ``0.1`` of the user's box).
    """
    net, pert = q.network, q.perturbation
    xs = []
    for v, lo, hi in zip(x_model, q.xlo, q.xhi):
        v = (lo + hi) / 2 if v is None else min(max(Fraction(v), lo), hi)
        f = float(v)
        xs.append(f if (Fraction(f) == v or (not exact_x and lo <= Fraction(f) <= hi)) else v)
    x = np.array(xs, dtype=np.float64 if all(isinstance(v, float) for v in xs) else object)
    h = net.exact_normalized(x)
    params = []
    for k, layer in enumerate(net.layers):
        (C, c), (R, rb) = pert.center[k], pert.radius[k]
        W = np.array(C, dtype=np.float64, copy=True)
        b = np.array(c, dtype=np.float64, copy=True)
        sg = [(v > 0) - (v < 0) for v in h]
        absh = [abs(v) for v in h]
        z = []
        for j in range(layer.n_out):
            cen = Fraction(float(c[j])) + sum((Fraction(float(w)) * v for w, v in zip(C[j], h) if w != 0.0), _F0)
            bnd = Fraction(float(rb[j])) + sum((Fraction(float(r)) * v for r, v in zip(R[j], absh) if r != 0.0), _F0)
            tgt = z_model[k][j] if k < len(z_model) else None
            lam = _F0 if (bnd == 0 or tgt is None) else min(max((Fraction(tgt) - cen) / bnd, -_F1), _F1)
            if lam != 0:
                for i in range(layer.n_in):
                    if R[j, i] != 0.0 and sg[i] != 0:
                        W[j, i] = _round_in(Fraction(float(C[j, i])) + Fraction(float(R[j, i])) * sg[i] * lam,
                                            float(C[j, i]), float(R[j, i]))
                if rb[j] != 0.0:
                    b[j] = _round_in(Fraction(float(c[j])) + Fraction(float(rb[j])) * lam, float(c[j]), float(rb[j]))
            z.append(Fraction(float(b[j])) + sum((Fraction(float(w)) * v for w, v in zip(W[j], h) if w != 0.0), _F0))
        alpha = Fraction(layer.alpha)
        h = [_act_exactish(v, layer.activation, alpha) for v in z]
        params.append((W, b))
    return x, tuple(params)
