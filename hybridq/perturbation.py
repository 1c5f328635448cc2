"""Perturbation models: a radius for every parameter, i.e. the box ``Theta`` of DESIGN.md §1.

A :class:`Perturbation` is the box ``prod [c_i - r_i, c_i + r_i]`` around a centre ``c`` (the
nominal parameters ``theta0`` or, for ``point:FORMAT``, a concrete quantized copy ``theta_q``) with
radii ``r`` of the same structure as :data:`hybridq.network.Params`.  Deviation properties always
compare against the network's nominal ``theta0``, whatever the centre.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hybridq.errors import PerturbationError
from hybridq.exact import float_down
from hybridq.formats import VALID_FORMATS, parse_format

__all__ = ["Perturbation"]


def _frozen(a) -> np.ndarray:
    arr = np.array(a, dtype=np.float64, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Perturbation:
    """A parameter box.

    Parameters
    ----------
    center : Params
        ``((W_1, b_1), ..., (W_L, b_L))``, the box centre (float64, same shapes as the network).
    radius : Params
        Radii of the same shapes, ``>= 0`` and finite.
    spec : str
        The spec string it came from (for reports).
    exact : tuple or None
        Per layer ``(rule_W, rule_b)``: ``None`` where ``radius`` is the exact radius, else
        ``("abs", EPS)`` or ``("rel", EPS)`` with ``EPS`` the ``Fraction`` the user wrote, whose
        exact box ``|t - c| <= EPS`` (``<= EPS |c|``) lies inside the float box (``radius`` is
        rounded up).  :meth:`contains` and :meth:`snap_inside` decide against the exact box, so a
        counterexample's parameters are those of the spec as written.
    pre_clip : (lo, hi) or None
        Known bounds of the perturbed pre-activations ``z'_k`` (all layers concatenated, shape
        ``(n_neurons,)`` each, ``-inf``/``inf`` where none), valid for every parameter of the box
        and every input of the input set this box was built for (e.g. the range of a saturating
        quantizer, :meth:`hybridq.actquant.ActModel.expand`).  :func:`hybridq.bounds.bounds`
        intersects its own bounds with them, as with a cell's phase clips.  A box with other
        centre or radii must not keep them.

    Raises
    ------
    PerturbationError
        Shapes that do not match, negative, NaN or inf radii.
    """

    center: tuple
    radius: tuple
    spec: str = "custom"
    exact: tuple | None = None
    pre_clip: tuple | None = None

    def __post_init__(self) -> None:
        if len(self.center) != len(self.radius):
            raise PerturbationError("centre and radius have different numbers of layers")
        center, radius = [], []
        for k, ((W, b), (RW, rb)) in enumerate(zip(self.center, self.radius)):
            W, b, RW, rb = _frozen(W), _frozen(b), _frozen(RW), _frozen(rb)
            if W.shape != RW.shape or b.shape != rb.shape:
                raise PerturbationError(f"layer {k}: radius shapes {RW.shape}, {rb.shape} do not match {W.shape}, {b.shape}")
            for name, arr in (("W", W), ("b", b), ("weight radius", RW), ("bias radius", rb)):
                if not np.all(np.isfinite(arr)):
                    raise PerturbationError(f"layer {k}: {name} contains NaN or inf")
            if np.any(RW < 0) or np.any(rb < 0):
                raise PerturbationError(f"layer {k}: negative radius")
            center.append((W, b))
            radius.append((RW, rb))
        object.__setattr__(self, "center", tuple(center))
        object.__setattr__(self, "radius", tuple(radius))
        if self.exact is not None and len(self.exact) != len(center):
            raise PerturbationError("exact radius rules and centre have different numbers of layers")
        if self.pre_clip is not None:
            lo, hi = (_frozen(a) for a in self.pre_clip)
            n = sum(b.shape[0] for _, b in center)
            if lo.shape != (n,) or hi.shape != (n,):
                raise PerturbationError(f"pre_clip: two arrays of {n} entries (all layers' neurons) expected")
            if np.isnan(lo).any() or np.isnan(hi).any() or np.any(lo > hi):
                raise PerturbationError("pre_clip: NaN or an empty interval")
            object.__setattr__(self, "pre_clip", (lo, hi))

    @property
    def n_layers(self) -> int:
        return len(self.center)

    def check_network(self, network) -> None:
        """Raise ``PerturbationError`` unless the shapes match ``network``."""
        if len(network.layers) != self.n_layers:
            raise PerturbationError(f"perturbation has {self.n_layers} layers, the network {len(network.layers)}")
        for k, (l, (W, b)) in enumerate(zip(network.layers, self.center)):
            if l.W.shape != W.shape or l.b.shape != b.shape:
                raise PerturbationError(f"layer {k}: perturbation shapes {W.shape} do not match the network's {l.W.shape}")

    def lower(self) -> tuple:
        """The corner ``c - r`` (exact in float64 only up to rounding; use for sampling, not proofs)."""
        return tuple((W - RW, b - rb) for (W, b), (RW, rb) in zip(self.center, self.radius))

    def upper(self) -> tuple:
        """The corner ``c + r`` (float64; see :meth:`lower`)."""
        return tuple((W + RW, b + rb) for (W, b), (RW, rb) in zip(self.center, self.radius))

    def sample(self, rng: np.random.Generator) -> tuple:
        """One parameter set drawn uniformly from the box, clipped into it."""
        out = []
        for (W, b), (RW, rb) in zip(self.center, self.radius):
            out.append((W + RW * rng.uniform(-1, 1, W.shape), b + rb * rng.uniform(-1, 1, b.shape)))
        return tuple(out)

    def max_radius(self) -> float:
        return max(max(float(np.max(RW, initial=0.0)), float(np.max(rb, initial=0.0))) for RW, rb in self.radius)

    def contains(self, params) -> bool:
        """Exactly decide ``|t - c| <= r`` for every parameter (Fraction check where float is
        borderline), ``r`` the exact radius of the spec as written (see ``exact``)."""
        for t, c, r, rule in self._triples(params):
            if _outside(t, c, r).any():
                return False
            if rule is not None:
                near = np.flatnonzero(_outside(t, c, _inner_radius(rule, c)))
                kind, eps = rule
                for i in near:  # between the inner float radius and the float radius: decide exactly
                    ci = Fraction(float(c.flat[i]))
                    if abs(Fraction(float(t.flat[i])) - ci) > (eps if kind == "abs" else eps * abs(ci)):
                        return False
        return True

    def snap_inside(self, params) -> tuple:
        """Move parameters that lie (exactly) outside the box onto its boundary, one ulp at a time
        towards the centre (for a spec with decimal epsilons: the largest float box inside the
        exact one); returns new arrays, the input is not modified."""
        out = []
        rules = self.exact or ((None, None),) * self.n_layers
        for (W, b), (cW, cb), (rW, rb), (eW, eb) in zip(params, self.center, self.radius, rules):
            pair = []
            for t, c, r, rule in ((W, cW, rW, eW), (b, cb, rb, eb)):
                if rule is not None:
                    r = _inner_radius(rule, c)
                t = np.clip(np.array(t, dtype=np.float64, copy=True), c - r, c + r)
                for _ in range(8):
                    bad = _outside(t, c, r)
                    if not bad.any():
                        break
                    t[bad] = np.nextafter(t[bad], c[bad])
                pair.append(t)
            out.append(tuple(pair))
        return tuple(out)

    def _triples(self, params):
        rules = self.exact or ((None, None),) * self.n_layers
        for (W, b), (cW, cb), (rW, rb), (eW, eb) in zip(params, self.center, self.radius, rules):
            yield np.asarray(W, dtype=np.float64), cW, rW, eW
            yield np.asarray(b, dtype=np.float64), cb, rb, eb


def _inner_radius(rule: tuple, c: np.ndarray) -> np.ndarray:
    """Float radii ``<=`` the exact radius of ``rule`` at every entry (rounded toward zero): the
    float box they span lies inside the exact decimal box."""
    kind, eps = rule
    e = float_down(eps)
    if kind == "abs":
        return np.full(c.shape, e)
    with np.errstate(over="ignore", under="ignore"):
        r = e * np.abs(c)  # one rounding to nearest: one step toward zero makes it a lower bound
    return np.where(r > 0.0, np.nextafter(r, 0.0), 0.0)


def _outside(t: np.ndarray, c: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Boolean mask of entries with ``|t - c| > r`` in exact arithmetic.

    ``t - c = s + e`` exactly with Knuth's TwoSum (``s = fl(t - c)``, ``|e| <= ulp(s)/2``; Knuth,
    TAOCP vol. 2, 4.2.2), so ``|t - c| > r`` iff ``|s| > r`` or ``|s| == r`` and ``e`` points away
    from zero: a strict float comparison decides every other case because ``|e|`` is below the
    spacing of the floats around ``s``.
    """
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        s = t - c
        bb = s - t
        e = (t - (s - bb)) + (-c - bb)
    a = np.abs(s)
    away = np.where(s >= 0, e, -e) > 0
    return (a > r) | ((a == r) & away)


# ------------------------------------------------------------------------- spec strings
# Spec grammar: see perturbation()'s docstring; the number formats are in hybridq.formats.

__all__ += ["perturbation", "quantize", "format_family", "split_target", "SPEC_GRAMMAR", "TARGET_FORMS"]

#: The spec grammar, quoted in every spec error message.
SPEC_GRAMMAR = """spec   := part (';' part)*
part   := ['layerK=' | 'layerK:'] model ['@weights' | '@biases' | '@all']      (K = 1..L, as in W_K)
model  := 'abs:EPS' | 'rel:EPS' | FORMAT | 'point:FORMAT'          (EPS: a number >= 0)
FORMAT := """ + "\n        | ".join(VALID_FORMATS)

#: A part's target prefix: ``layerK=`` / ``layerK:`` (layer K, 1-based), ``input=`` / ``input:`` (act= parts).
_TARGET = re.compile(r"(?:layer(\d+)|(input))[=:](.*)")
#: The accepted target prefixes, as error messages name them.
TARGET_FORMS = "layerK=... or layerK:... (K = 1..L, counted from 1 as in W_K), input=act=... or input:act=..."
_TARGETS = {"weights": ("W",), "w": ("W",), "biases": ("b",), "b": ("b",), "all": ("W", "b")}


def _spec_error(spec: str, why: str) -> PerturbationError:
    return PerturbationError(f"invalid perturbation spec {spec!r}: {why}\nvalid forms:\n{SPEC_GRAMMAR}")


def split_target(part: str, n_layers: int | None, fail) -> tuple:
    """A spec part's target and the rest: the one reading of ``layerK=`` / ``layerK:`` / ``input=`` /
    ``input:`` for parameter parts (:func:`perturbation`) and ``act=`` parts
    (:func:`hybridq.actquant.parse_act_spec`).

    Parameters
    ----------
    part : str
        One part, lower case, spaces removed (``layer2:fp16``, ``input=act=int8``, ``abs:1e-3``).
    n_layers : int or None
        ``L``: ``K`` must be in ``1..L`` (layer ``K`` is ``W_K``, ``b_K`` and that layer's output);
        ``None``: not checked.
    fail : callable(str) -> Exception
        Makes the exception raised, from the reason (the caller adds its spec and its grammar).

    Returns
    -------
    (target, rest)
        ``target``: ``None`` (no prefix: every layer), the 0-based layer index, or ``"input"``.

    Raises
    ------
    Exception
        ``fail(why)``: a part that starts with ``layer`` or ``input`` but is not one of
        :data:`TARGET_FORMS`, or ``K`` out of range; ``why`` names the accepted forms.
    """
    if not part.startswith(("layer", "input")):
        return None, part
    m = _TARGET.fullmatch(part)
    if m is None:
        head = re.split(r"[=:]", part, maxsplit=1)[0]
        raise fail(f"{head!r} is not a target; use {TARGET_FORMS}")
    if m[2]:
        return "input", m[3]
    k = int(m[1])
    if n_layers is not None and not 1 <= k <= n_layers:
        raise fail(f"layer{k}: the network has layers 1..{n_layers} (layerK= or layerK:, counted from 1)")
    return k - 1, m[3]


def _eps(text: str, spec: str) -> tuple[float, Fraction]:
    """EPS parsed exactly: ``(float64 rounded up, Fraction)`` (the float box covers the decimal one)."""
    from hybridq.exact import TooManyDigits, parse_exact

    try:
        e = parse_exact(text, "epsilon")
    except ValueError as err:
        why = str(err) if isinstance(err, TooManyDigits) else f"epsilon {text!r} is not a finite number"
        raise _spec_error(spec, why) from None
    if e < 0:
        raise _spec_error(spec, f"epsilon {text!r} is negative")
    try:
        f = float(e)
    except OverflowError:
        raise _spec_error(spec, f"epsilon {text!r} is too large") from None
    if Fraction(f) < e:
        f = float(np.nextafter(f, np.inf))
    if not np.isfinite(f):
        raise _spec_error(spec, f"epsilon {text!r} is too large")
    return f, e


def _parse_spec(spec: str, n_layers: int) -> list:
    """``[(layers, tensors, kind, arg)]``: kind in abs / rel / format / point."""
    if not isinstance(spec, str) or not spec.strip():
        raise _spec_error(str(spec), "empty spec")
    parts = []
    for raw in spec.split(";"):
        part = raw.strip().lower().replace(" ", "")
        if not part:
            raise _spec_error(spec, "empty part between ';'")
        target, part = split_target(part, n_layers, lambda why: _spec_error(spec, why))
        if target == "input":
            raise _spec_error(spec, f"in part {raw.strip()!r}: the input has no parameters; input= or input: "
                                    "takes act= parts only (input=act=int8)")
        layers = tuple(range(n_layers)) if target is None else (target,)
        tensors = ("W", "b")
        if "@" in part:
            part, tgt = part.rsplit("@", 1)
            if tgt not in _TARGETS:
                raise _spec_error(spec, f"unknown target '@{tgt}' (use @weights, @biases or @all)")
            tensors = _TARGETS[tgt]
        if part.startswith(("abs:", "rel:")):
            parts.append((layers, tensors, part[:3], _eps(part[4:], spec)))
            continue
        kind = "format"
        if part.startswith("point:"):
            kind, part = "point", part[len("point:"):]
        try:
            fmt = parse_format(part)
        except PerturbationError as e:
            raise _spec_error(spec, f"in part {raw.strip()!r}: {str(e).splitlines()[0]}") from None
        parts.append((layers, tensors, kind, fmt))
    return parts


def _apply(spec: str, network, formats_only: bool):
    """Centre, radius and exact-rule lists ``[[W, b], ...]`` for ``spec`` (later parts override
    earlier ones); ``formats_only``: the quantized copy (every format part acts as ``point:``)."""
    parts = _parse_spec(spec, len(network.layers))
    center = [[l.W, l.b] for l in network.layers]
    radius = [[np.zeros_like(l.W), np.zeros_like(l.b)] for l in network.layers]
    rules = [[None, None] for _ in network.layers]
    for layers, tensors, kind, arg in parts:
        if kind in ("abs", "rel"):
            arg, eps = arg
        if formats_only and kind in ("abs", "rel"):
            raise _spec_error(spec, f"quantize needs number formats; '{kind}:' is a radius, not a format")
        for k in layers:
            for name in tensors:
                i = 0 if name == "W" else 1
                t = network.layers[k].W if i == 0 else network.layers[k].b
                if kind == "abs":
                    c, r = t, np.full(t.shape, arg)
                elif kind == "rel":
                    with np.errstate(over="ignore"):
                        r = arg * np.abs(t)
                        c, r = t, np.where((t != 0.0) & (arg > 0.0), np.nextafter(r, np.inf), r)
                    if not np.all(np.isfinite(r)):
                        raise _spec_error(spec, f"rel:{arg!r} overflows float64 on layer {k + 1} {name}")
                else:
                    q, rq = arg.round(t, f"layer {k + 1} {name}", per_channel=(i == 0))
                    c, r = (q, np.zeros_like(t)) if (kind == "point" or formats_only) else (t, rq)
                center[k][i], radius[k][i] = c, r
                # the exact box where the float radius is larger (rel: rounded up; abs: a decimal
                # epsilon that is no double), for the exact re-checks
                exact_needed = (kind == "rel" and eps > 0) or (kind == "abs" and Fraction(arg) != eps)
                rules[k][i] = (kind, eps) if exact_needed else None
    return center, radius, rules


def perturbation(spec: str, network) -> Perturbation:
    """The parameter box a spec string describes (DESIGN.md §1).

    Grammar (the same strings as the CLI's ``--perturb`` and TOML configs)::

        spec   := part (';' part)*
        part   := ['layerK=' | 'layerK:'] model ['@weights' | '@biases' | '@all']
        model  := 'abs:EPS' | 'rel:EPS' | FORMAT | 'point:FORMAT'

    ``FORMAT`` is a number format of :mod:`hybridq.formats` (``fp32``, ``fp16``, ``bf16``,
    ``fp8_e4m3``, ``fp8_e5m2``, ``float:e=E,m=M``, ``float:p=P``, ``qM.N``, ``intB[:OPT,...]``).
    Parts apply left to right; each sets the centre and radius of the tensors it selects
    (all layers, or layer ``K`` counted from 1 as in ``W_K``; weights, biases or both) and
    overrides earlier parts there.  Tensors that no part selects keep their nominal value with
    radius 0.  ``layerK:`` is the same as ``layerK=`` (as in ``layer2:act=int8``, see
    :func:`split_target`).  Examples: ``abs:1e-3``, ``rel:1e-2@biases``, ``abs:1e-3;layer2=abs:1e-2``,
    ``int8:per_channel,asym@weights;fp16@biases``, ``point:fp16``.

    Radii:

    - ``abs:EPS``: ``EPS`` (parsed exactly, rounded up to float64);
    - ``rel:EPS``: ``EPS |t|`` rounded up by one ulp;
    - ``FORMAT``: centre ``theta0``, radius bounding the format's rounding error of each entry
      (sources and formulas in :mod:`hybridq.formats`: Higham 2nd ed. ch. 2 for floats and fixed
      point, Jacob et al. 2018 for ``intB``), re-checked exactly entry by entry;
    - ``point:FORMAT``: centre the quantized copy (:func:`quantize`), radius 0: the box is that
      one network, to compare against ``theta0`` (equivalence checking).

    Parameters
    ----------
    spec : str or Perturbation
        A spec string (a ``Perturbation`` is checked against ``network`` and returned).
    network : Network

    Returns
    -------
    Perturbation
        ``center``/``radius`` shaped like ``network.params``, ``spec`` the given string.

    Raises
    ------
    PerturbationError
        An unknown or malformed spec (the message lists the valid forms), a negative or NaN
        epsilon, a layer out of range, overflow of a float format or saturation of fixed point
        (naming the layer, tensor, index and value).
    """
    if isinstance(spec, Perturbation):
        spec.check_network(network)
        return spec
    center, radius, rules = _apply(spec, network, formats_only=False)
    exact = tuple(map(tuple, rules)) if any(r is not None for pair in rules for r in pair) else None
    return Perturbation(tuple(map(tuple, center)), tuple(map(tuple, radius)), spec.strip(), exact)


def quantize(network, spec: str):
    """The concrete quantized network: every selected tensor rounded to its format.

    ``spec`` uses the grammar of :func:`perturbation` with number formats only (``point:F`` is
    the same as ``F``); tensors no part selects are kept, e.g. ``int8:per_channel@weights``
    leaves the biases in float64.  Rounding: numpy / ml_dtypes (see :mod:`hybridq.formats`).

    Returns
    -------
    Network
        ``network.with_params(...)``, float64 parameters equal to the stored format values.

    Raises
    ------
    PerturbationError
        Malformed spec, ``abs:``/``rel:`` parts, overflow or saturation.
    """
    center, _, _ = _apply(spec, network, formats_only=True)
    return network.with_params(tuple(map(tuple, center)))


def _fixed_int_bits(network) -> int:
    """Smallest ``M >= 0`` such that no ``qM.N`` (any ``N >= 0``) saturates on ``network``:
    ``max t < 2^M - 1/2`` (the tie at ``N = 0``) and ``min t >= -2^M``."""
    hi = max(max(float(l.W.max()), float(l.b.max())) for l in network.layers)
    lo = min(min(float(l.W.min()), float(l.b.min())) for l in network.layers)
    M = 0
    while not (hi < 2.0**M - 0.5 and lo >= -(2.0**M)):
        M += 1
    return M


def format_family(name: str, network=None, *, max_bits: int | None = None, options: str = "") -> list:
    """A family of formats in ascending bits, for the fewest-bits search of ``quantify``.

    Parameters
    ----------
    name : {'float', 'fixed', 'int'}
        ``'float'``: ``float:p=P`` for ``P = 2..max_bits`` (default 24): ``P`` significand bits,
        unbounded exponent (no overflow, no subnormals), bits = ``P``;
        ``'fixed'``: ``qM.N`` for ``N = 0, 1, ...`` with ``M`` the fewest integer bits for which
        no ``N`` saturates on ``network`` (required), bits = ``1 + M + N`` up to ``max_bits``
        (default 32);
        ``'int'``: ``intB[:options]`` for ``B = 2..min(16, max_bits)``, bits = ``B``.
    network : Network, optional
        Needed for ``'fixed'``.
    max_bits : int, optional
    options : str
        Int options, e.g. ``'per_channel,asym'`` (validated).

    Returns
    -------
    list of (int, str)
        ``(bits, spec)`` pairs, bits strictly ascending; each spec is valid for
        :func:`perturbation` and :func:`quantize`.

    Raises
    ------
    PerturbationError
        Unknown family, invalid options, ``'fixed'`` without a network, or no member within
        ``max_bits``.
    """
    fam = name.strip().lower()
    if fam == "float":
        top = 24 if max_bits is None else min(max_bits, 53)
        out = [(p, f"float:p={p}") for p in range(2, top + 1)]
    elif fam == "fixed":
        if network is None:
            raise PerturbationError("format_family('fixed') needs the network to choose the integer bits M")
        M = _fixed_int_bits(network)
        top = 32 if max_bits is None else max_bits
        out = [(1 + M + N, f"q{M}.{N}") for N in range(0, max(0, top - M))]
    elif fam == "int":
        suffix = f":{options}" if options else ""
        parse_format(f"int8{suffix}")
        top = 16 if max_bits is None else min(max_bits, 16)
        out = [(B, f"int{B}{suffix}") for B in range(2, top + 1)]
    else:
        raise PerturbationError(f"unknown format family {name!r}; families: float, fixed, int")
    if not out:
        raise PerturbationError(f"format family {name!r} has no member within max_bits={max_bits}")
    return out
