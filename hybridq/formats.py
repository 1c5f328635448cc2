"""Number formats: round a float64 tensor to a format and give a sound radius per entry.

Every format turns a float64 tensor ``t`` into its quantized value ``q`` (returned as float64,
exactly the value the format stores) and a radius array ``r`` with ``|q - t| <= r`` in *exact*
real arithmetic, entry by entry.  This is DESIGN.md §1's "perturbation model from a number
format"; :mod:`hybridq.perturbation` turns it into a :class:`~hybridq.perturbation.Perturbation`.

Format strings (case-insensitive):

==========================  ==================================================================
``fp32`` ``fp16``           IEEE binary32 / binary16, round to nearest, ties to even
``bf16``                    bfloat16 (8 exponent bits, p = 8)
``fp8_e4m3``                OCP FP8 E4M3 "fn" (no inf, largest finite 448, p = 4)
``fp8_e5m2``                OCP FP8 E5M2 (IEEE-like, largest finite 57344, p = 3)
``float:e=E,m=M``           generic IEEE-like float, E exponent bits (2..11), M stored significand
                            bits (1..52), so p = M + 1; subnormals and an overflow threshold
``float:p=P``               P significand bits (1..53, hidden bit included) and an unbounded
                            exponent: no subnormals, no overflow
``qM.N``                    signed fixed point: sign bit + M integer bits + N fractional bits,
                            i.e. ``1 + M + N`` bits, values ``k * 2^-N`` in ``[-2^M, 2^M - 2^-N]``
``intB[:OPT,...]``          integer affine quantization with B bits (2..16), see :class:`IntFormat`
==========================  ==================================================================

Reference rounding: ``numpy.float32`` / ``numpy.float16`` and ``ml_dtypes`` (``bfloat16``,
``float8_e4m3fn``, ``float8_e5m2``).  ``ml_dtypes`` 0.6 converts float64 through float32 and
so rounds *twice* (``1 + 2^-8 + 2^-30`` becomes bfloat16 ``1.0``, 2^-30 above the tie); we
therefore first round float64 to float32 *to odd* (Boldo & Melquiond, "Emulation of FMA and
correctly rounded sums: proved algorithms using rounding to odd", IEEE TC 57(4), 2008: rounding
to odd at >= p + 2 bits followed by round-to-nearest-even at p bits equals one direct
round-to-nearest-even), then let the library round float32 to the format.  The generic
``float:`` formats have no library; they round with exact float64 scaling by powers of two and
``numpy.rint`` (ties to even).

After rounding, :func:`check_enclosed` re-checks ``|q - t| <= r`` exactly (a float pre-filter,
:class:`fractions.Fraction` for the borderline entries): a radius that does not enclose the
rounding error is never returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hybridq.errors import PerturbationError

__all__ = [
    "FLOAT_FORMATS",
    "VALID_FORMATS",
    "FloatFormat",
    "FixedFormat",
    "IntFormat",
    "parse_format",
    "quantize_array",
    "check_enclosed",
]

#: One line per accepted format form, used in error messages.
VALID_FORMATS = (
    "fp32 | fp16 | bf16 | fp8_e4m3 | fp8_e5m2",
    "float:e=E,m=M (E=2..11 exponent bits, M=1..52 significand bits) | float:p=P (P=1..53, unbounded exponent)",
    "qM.N (signed fixed point, M integer bits, N fractional bits)",
    "intB[:OPT,...] (B=2..16; OPT: per_tensor|per_channel, sym|asym, maxabs|minmax)",
)


def _tensor_index(where: str, idx: tuple) -> str:
    return f"{where}[{', '.join(str(int(i)) for i in idx)}]"


def check_enclosed(q: np.ndarray, t: np.ndarray, r: np.ndarray, where: str) -> None:
    """Raise unless ``|q - t| <= r`` holds exactly for every entry.

    A float pre-filter (``fl(|q - t|)`` errs by at most one rounding, relative ``2^-53``,
    subtraction results in the subnormal range are exact, and ``fl(q - t) = 0`` only for
    ``q = t``) leaves only entries within a relative ``2^-50`` of their radius, which are decided
    with :class:`fractions.Fraction`.

    Raises
    ------
    PerturbationError
        An entry whose rounding error exceeds its radius (an internal invariant; never expected).
    """
    d = np.abs(q - t)
    maybe = (d >= r * (1.0 - 2.0**-50)) & (d != 0.0)  # fl(q - t) = 0 only when q = t
    for idx in zip(*np.nonzero(maybe)):
        if abs(Fraction(float(q[idx])) - Fraction(float(t[idx]))) > Fraction(float(r[idx])):
            raise PerturbationError(
                f"{_tensor_index(where, idx)} = {float(t[idx])!r}: rounding error "
                f"{abs(float(q[idx]) - float(t[idx]))!r} exceeds the radius {float(r[idx])!r} (internal error)"
            )


# ----------------------------------------------------------------------------------- floats
def _round_to_odd_f32(t: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounded to odd: the truncation, with its last bit set when inexact."""
    with np.errstate(over="ignore"):
        a = t.astype(np.float32)
    back = a.astype(np.float64)
    inexact = back != t
    away = inexact & (np.abs(back) > np.abs(t))
    a[away] = np.nextafter(a[away], np.float32(0.0))  # now a = round toward zero of t
    even = (a.view(np.uint32) & np.uint32(1)) == 0
    fix = inexact & even
    a[fix] = np.nextafter(a[fix], np.copysign(np.float32(np.inf), t[fix]).astype(np.float32))
    return a


def _round_generic(t: np.ndarray, p: int, emin: int | None) -> np.ndarray:
    """Round to ``p`` significand bits, ties to even, subnormal below ``2^emin`` (exact float64 ops)."""
    _, e = np.frexp(t)
    e = e.astype(np.int64) - 1  # t in [2^e, 2^(e+1))
    if emin is not None:
        e = np.maximum(e, emin)
    k = e - p + 1  # spacing 2^k
    with np.errstate(over="ignore"):
        return np.ldexp(np.rint(np.ldexp(t, -k)), k)


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format with round to nearest, ties to even.

    Parameters
    ----------
    name : str
        Canonical spec string.
    p : int
        Significand precision, hidden bit included (unit roundoff ``u = 2^-p``).
    emin, emax : int or None
        Exponent range of the normal numbers, ``[2^emin, 2^(emax+1))``; ``None``: unbounded.
    max_finite : float or None
        Largest finite value (``None``: unbounded).
    dtype : numpy dtype, str or None
        The reference library type (``None``: generic rounding, :func:`_round_generic`); a string
        names an ``ml_dtypes`` type, imported on first use (importing ``ml_dtypes`` takes seconds).
    bits : int
        Storage bits (for ``float:p=P``: ``P``, the significand bits).

    Notes
    -----
    Radius (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §2.1, Thm 2.2
    and the subnormal spacing of §2.1): for ``t`` in the binade ``[2^e, 2^(e+1))`` the format's
    numbers are spaced ``2^(e-p+1)``, so round to nearest errs by at most half of that,
    ``r(t) = 2^(max(e, emin) - p)``; ``max(., emin)`` gives half the subnormal spacing
    ``2^(emin-p)`` below ``2^emin``.  This is ``<= u |t|`` (Higham's ``fl(t) = t(1 + d)``,
    ``|d| <= u``) and tighter by up to a factor 2; it is attained exactly at the ties
    ``(2j + 1) 2^(e-p)``.  ``r(0) = 0`` (zero is exact).  Values rounding above the binade still
    land within ``2^(e-p)`` (the upper binade's first point is on this binade's grid).  Powers of
    two are exact.  Every radius is a power of two, exact in float64.

    Overflow: a value overflows when round to nearest with an unbounded exponent would give
    more than ``max_finite``: ``|t| > T`` with ``T = max_finite + 2^(emax-p)``, and ``|t| = T``
    too when ``max_finite`` has an odd last significand bit (IEEE formats, where the tie goes to
    infinity; not E4M3, whose max 448 is even, so 464 rounds to 448 and 464.01 to NaN).
    """

    name: str
    p: int
    emin: int | None
    emax: int | None
    max_finite: float | None
    dtype: object | None
    bits: int

    def _overflow(self, a: np.ndarray) -> np.ndarray:
        if self.max_finite is None:
            return np.zeros(a.shape, dtype=bool)
        T = float(np.ldexp(1.0, self.emax - self.p)) + self.max_finite  # exact: p + 1 bits
        odd = int(Fraction(self.max_finite) / Fraction(2) ** (self.emax - self.p + 1)) % 2 == 1
        return (a >= T) if odd else (a > T)

    def round(self, t: np.ndarray, where: str = "t", per_channel: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Quantized copy and radius of ``t`` (any shape, float64); see the class notes.

        Raises
        ------
        PerturbationError
            An entry overflows the format (names ``where``, the index and the value).
        """
        t = np.asarray(t, dtype=np.float64)
        a = np.abs(t)
        over = self._overflow(a)
        if over.any():
            idx = tuple(np.argwhere(over)[0])
            raise PerturbationError(
                f"{self.name}: {_tensor_index(where, idx)} = {float(t[idx])!r} overflows "
                f"(largest finite value {self.max_finite!r})"
            )
        if self.dtype is np.float32:
            q = t.astype(np.float32).astype(np.float64)
        elif self.dtype is not None:
            dtype = self.dtype
            if isinstance(dtype, str):  # an ml_dtypes type, imported on first use (its import takes seconds)
                import ml_dtypes

                dtype = getattr(ml_dtypes, dtype)
            q = _round_to_odd_f32(t).astype(dtype).astype(np.float64)
        else:
            q = _round_generic(t, self.p, self.emin)
        if not np.all(np.isfinite(q)):  # float:p=P rounding up past float64's max
            idx = tuple(np.argwhere(~np.isfinite(q))[0])
            raise PerturbationError(f"{self.name}: {_tensor_index(where, idx)} = {float(t[idx])!r} overflows")
        _, e = np.frexp(t)
        e = e.astype(np.int64) - 1
        if self.emin is not None:
            e = np.maximum(e, self.emin)
        # exponents below -1074 give 0: such t have <= p significant bits and are exact
        r = np.where(t == 0.0, 0.0, np.ldexp(1.0, e - self.p))
        check_enclosed(q, t, r, where)
        return q, r


def _ieee(name: str, e_bits: int, m_bits: int, dtype, bits: int) -> FloatFormat:
    emax = 2 ** (e_bits - 1) - 1
    p = m_bits + 1
    max_finite = float(np.ldexp(2.0 - 2.0 ** (1 - p), emax))
    return FloatFormat(name, p, 1 - emax, emax, max_finite, dtype, bits)


#: The named float formats.
FLOAT_FORMATS = {
    "fp32": _ieee("fp32", 8, 23, np.float32, 32),
    "fp16": _ieee("fp16", 5, 10, np.float16, 16),
    "bf16": _ieee("bf16", 8, 7, "bfloat16", 16),
    # OCP E4M3 "fn": bias 7, exponent 1111 is normal except the NaN pattern S.1111.111
    "fp8_e4m3": FloatFormat("fp8_e4m3", 4, -6, 8, 448.0, "float8_e4m3fn", 8),
    "fp8_e5m2": _ieee("fp8_e5m2", 5, 2, "float8_e5m2", 8),
}
_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
            "fp8_e4m3fn": "fp8_e4m3", "e4m3": "fp8_e4m3", "e5m2": "fp8_e5m2"}


# ------------------------------------------------------------------------------ fixed point
@dataclass(frozen=True)
class FixedFormat:
    """Signed fixed point ``qM.N``: sign + ``M`` integer + ``N`` fractional bits.

    Values are ``k 2^-N`` with integer ``k`` in ``[-2^(M+N), 2^(M+N) - 1]``, i.e. the range
    ``[-2^M, 2^M - 2^-N]``; ``bits = 1 + M + N``.  Rounding to nearest, ties to even, is
    ``rint(t 2^N) 2^-N``, exact in float64 (scaling by powers of two, integers below ``2^53``).

    Notes
    -----
    Radius ``2^-(N+1)``, half the quantization step (Higham, 2nd ed., §2.1: round to nearest on
    a grid of spacing ``s`` errs by at most ``s/2``; attained at the ties ``(k + 1/2) 2^-N``),
    ``0`` where ``t = 0``.  A value whose rounding leaves the range would saturate: an error.
    """

    M: int
    N: int

    @property
    def name(self) -> str:
        return f"q{self.M}.{self.N}"

    @property
    def bits(self) -> int:
        return 1 + self.M + self.N

    def round(self, t: np.ndarray, where: str = "t", per_channel: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Quantized copy and radius of ``t`` (any shape, float64).

        Raises
        ------
        PerturbationError
            Saturation: an entry rounds outside ``[-2^M, 2^M - 2^-N]``.
        """
        t = np.asarray(t, dtype=np.float64)
        with np.errstate(over="ignore"):
            q = np.ldexp(np.rint(np.ldexp(t, self.N)), -self.N)
        hi = float(np.ldexp(1.0, self.M)) - float(np.ldexp(1.0, -self.N))
        lo = -float(np.ldexp(1.0, self.M))
        bad = ~((q >= lo) & (q <= hi))
        if bad.any():
            idx = tuple(np.argwhere(bad)[0])
            raise PerturbationError(
                f"{self.name}: {_tensor_index(where, idx)} = {float(t[idx])!r} saturates "
                f"(representable range [{lo!r}, {hi!r}])"
            )
        r = np.where(t == 0.0, 0.0, float(np.ldexp(1.0, -self.N - 1)))
        check_enclosed(q, t, r, where)
        return q, r


# ------------------------------------------------------------------------- integer affine
_INT_MARGIN = 2.0**-30


@dataclass(frozen=True)
class IntFormat:
    """Integer affine quantization ``t ~ s (k - z)`` with ``B``-bit integers ``k``.

    Options (spec ``intB:OPT,OPT,...``; defaults ``per_tensor,sym``):

    - ``per_tensor`` | ``per_channel``: one scale for the tensor, or one per output row of ``W``
      (biases always use one scale per layer's bias vector);
    - ``sym``: ``z = 0``, ``k`` in ``[-(2^(B-1) - 1), 2^(B-1) - 1]`` (narrow range), scale
      ``s = max|t| / (2^(B-1) - 1)`` (the range is always ``maxabs``);
    - ``asym``: ``k`` in ``[0, 2^B - 1]``, real range ``[lo, hi]`` with ``0`` included,
      ``s = (hi - lo) / (2^B - 1)``, zero point ``z = round(-lo / s)`` (so ``0`` is exact);
      ``[lo, hi] = [min(t, 0), max(t, 0)]`` for ``minmax`` (default) or ``[-max|t|, max|t|]``
      for ``maxabs``.

    Quantization ``k = clip(rint(t / s) + z)``, dequantized value ``fl((k - z) s)`` in float64.
    Source: Jacob et al., "Quantization and Training of Neural Networks for Efficient
    Integer-Arithmetic-Only Inference", CVPR 2018, §2.1 (affine scheme, zero point) and §2.3.

    Notes
    -----
    Radius ``s/2`` (round to nearest on the grid ``s Z``), made sound for the float64 evaluation
    of ``t / s`` and ``(k - z) s`` by a relative margin: ``r = s (1/2 + 2^-30)`` rounded up.
    The float errors are at most ``u (2|t| + s/2) + u 2^B s <= 2^(B-51) s`` (``u = 2^-53``,
    ``|t| <= (2^B - 1) s (1 + 2u)``), below ``2^-30 s`` for ``B <= 16``.  Clipping: the scale comes
    from the tensor's own range, so no value lies outside it; for ``asym`` the rounded zero point
    shifts the grid by less than ``s/2``, so a value at the end of the range may be clipped to
    the last level, with error still ``<= s/2``.  ``r = 0`` where ``t = 0`` and for all-zero
    groups.  The radius is attained within a factor 2 by any value halfway between two levels.
    """

    B: int
    per_channel: bool = False
    sym: bool = True
    minmax: bool = True

    @property
    def name(self) -> str:
        opts = ["per_channel" if self.per_channel else "per_tensor", "sym" if self.sym else "asym"]
        if not self.sym:
            opts.append("minmax" if self.minmax else "maxabs")
        return f"int{self.B}:{','.join(opts)}"

    @property
    def bits(self) -> int:
        return self.B

    def round(self, t: np.ndarray, where: str = "t", per_channel: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Quantized copy and radius of ``t`` (1-D, or 2-D with one channel per row).

        ``per_channel`` (the caller's flag) says whether the tensor has channels (``W``) at all;
        the format's own option decides whether they are used.

        Raises
        ------
        PerturbationError
            A scale that underflows (``max|t|`` below ``2^-1000``) or overflows.
        """
        t = np.asarray(t, dtype=np.float64)
        axis = 1 if (self.per_channel and per_channel and t.ndim == 2) else None
        a = np.max(np.abs(t), axis=axis, keepdims=True, initial=0.0)
        if self.sym:
            kmin, kmax = -(2 ** (self.B - 1) - 1), 2 ** (self.B - 1) - 1
            lo, hi = -a, a
        else:
            kmin, kmax = 0, 2**self.B - 1
            if self.minmax:
                lo = np.minimum(np.min(t, axis=axis, keepdims=True, initial=0.0), 0.0)
                hi = np.maximum(np.max(t, axis=axis, keepdims=True, initial=0.0), 0.0)
            else:
                lo, hi = -a, a
        with np.errstate(over="ignore"):
            s = (hi - lo) / float(kmax - kmin)
        nz = a > 0.0
        if np.any(nz & ~np.isfinite(s)) or np.any(nz & (a < 2.0**-1000)):
            g = np.argwhere(nz & (~np.isfinite(s) | (a < 2.0**-1000)))[0]
            raise PerturbationError(
                f"{self.name}: {where}: the scale of max|t| = {float(a[tuple(g)])!r} over- or underflows float64"
            )
        safe = np.where(nz, s, 1.0)
        z = np.zeros_like(safe) if self.sym else np.clip(np.rint(-lo / safe), kmin, kmax)
        k = np.clip(np.rint(t / safe) + z, kmin, kmax)
        q = np.where(nz, (k - z) * safe, t)
        r = np.where(nz, np.nextafter(safe * (0.5 + _INT_MARGIN), np.inf), 0.0)
        r = np.broadcast_to(r, t.shape)
        r = np.where(t == 0.0, 0.0, r)
        check_enclosed(q, t, r, where)
        return q, r


# ----------------------------------------------------------------------------------- parse
_FIXED = re.compile(r"q(\d+)\.(\d+)")
_INT = re.compile(r"int(\d+)(?::(.*))?")
_FLOAT_EM = re.compile(r"float:e=(\d+),m=(\d+)")
_FLOAT_P = re.compile(r"float:p=(\d+)")


def _bad_format(text: str, why: str = "") -> PerturbationError:
    lines = "\n  ".join(VALID_FORMATS)
    head = f"invalid number format {text!r}: {why}" if why else f"unknown number format {text!r}"
    return PerturbationError(f"{head}\nvalid forms:\n  {lines}")


def parse_format(text: str):
    """Parse a format string (see the module table) into a format object.

    Returns
    -------
    FloatFormat, FixedFormat or IntFormat
        Each has ``name`` (canonical spec), ``bits`` and ``round(t, where, per_channel)``.

    Raises
    ------
    PerturbationError
        Unknown format or options out of range; the message lists the valid forms.
    """
    s = text.strip().lower().replace(" ", "")
    s = _ALIASES.get(s, s)
    if s in FLOAT_FORMATS:
        return FLOAT_FORMATS[s]
    if m := _FLOAT_EM.fullmatch(s):
        E, Mb = int(m[1]), int(m[2])
        if not (2 <= E <= 11 and 1 <= Mb <= 52):
            raise _bad_format(text, "float:e=E,m=M needs 2 <= E <= 11 and 1 <= M <= 52")
        return _ieee(f"float:e={E},m={Mb}", E, Mb, None, 1 + E + Mb)
    if m := _FLOAT_P.fullmatch(s):
        P = int(m[1])
        if not 1 <= P <= 53:
            raise _bad_format(text, "float:p=P needs 1 <= P <= 53")
        return FloatFormat(f"float:p={P}", P, None, None, None, None, P)
    if m := _FIXED.fullmatch(s):
        M, N = int(m[1]), int(m[2])
        if M > 1000 or N > 1000:
            raise _bad_format(text, "qM.N needs M, N <= 1000")
        return FixedFormat(M, N)
    if m := _INT.fullmatch(s):
        B = int(m[1])
        if not 2 <= B <= 16:
            raise _bad_format(text, "intB needs 2 <= B <= 16")
        opts = [o for o in (m[2] or "").split(",") if o]
        known = {"per_tensor", "per_channel", "sym", "asym", "maxabs", "minmax"}
        for o in opts:
            if o not in known:
                raise _bad_format(text, f"unknown int option {o!r} (options: {', '.join(sorted(known))})")
        for pair in (("per_tensor", "per_channel"), ("sym", "asym"), ("maxabs", "minmax")):
            if all(p in opts for p in pair):
                raise _bad_format(text, f"options {pair[0]!r} and {pair[1]!r} exclude each other")
        sym = "asym" not in opts
        if sym and "minmax" in opts:
            raise _bad_format(text, "sym uses the max-abs range; minmax needs asym")
        return IntFormat(B, per_channel="per_channel" in opts, sym=sym, minmax="maxabs" not in opts)
    raise _bad_format(text)


def quantize_array(values, fmt, per_channel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Quantize one array and give its radius.

    Parameters
    ----------
    values : array_like float64, any shape (2-D: rows are channels for ``intB:per_channel``)
    fmt : str or format object
    per_channel : bool
        Whether rows are channels (``False`` for bias vectors).

    Returns
    -------
    q, r : float64 arrays of ``values``' shape, with ``|q - values| <= r`` exactly.

    Raises
    ------
    PerturbationError
        Unknown format, overflow or saturation.
    """
    f = parse_format(fmt) if isinstance(fmt, str) else fmt
    return f.round(np.asarray(values, dtype=np.float64), "t", per_channel)
