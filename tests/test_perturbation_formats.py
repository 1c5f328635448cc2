"""Number formats: |quantize(t) - t| <= radius(t) exactly, the radius is attained, overflow raises.

The float reference is an independent round-to-nearest-even in Fraction arithmetic; the library
rounding (numpy / ml_dtypes with the round-to-odd pre-step) must agree with it bit for bit.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridq.errors import PerturbationError
from hybridq.formats import FLOAT_FORMATS, parse_format, quantize_array

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (spec, p, emin, max_finite or None); emin None: unbounded exponent
FLOATS = [
    ("fp32", 24, -126, float(np.finfo(np.float32).max)),
    ("fp16", 11, -14, 65504.0),
    ("bf16", 8, -126, float(np.ldexp(2 - 2.0**-7, 127))),
    ("fp8_e4m3", 4, -6, 448.0),
    ("fp8_e5m2", 3, -14, 57344.0),
    ("float:e=4,m=3", 4, -6, 240.0),
    ("float:e=3,m=5", 6, -2, 15.75),
    ("float:p=5", 5, None, None),
    ("float:p=12", 12, None, None),
]


def floor_log2(a: Fraction) -> int:
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    return e


def round_half_even(k: Fraction) -> int:
    n = k.numerator // k.denominator
    frac = k - n
    if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and n % 2 == 1):
        n += 1
    return n


def ref_float(t: float, p: int, emin: int | None) -> Fraction:
    """Round to nearest even with p significand bits, unbounded exponent above, subnormals below 2^emin."""
    x = Fraction(t)
    if x == 0:
        return Fraction(0)
    e = floor_log2(abs(x))
    if emin is not None:
        e = max(e, emin)
    sp = Fraction(2) ** (e - p + 1)
    n = round_half_even(abs(x) / sp)
    return (1 if x > 0 else -1) * n * sp


def grid_values(draw, p: int, emin: int | None, mx: float | None) -> list[float]:
    """Integers m * 2^k with up to p + 2 bits: representable values, ties, subnormals, powers of two,
    values next to the maximum; plus their float64 neighbours and plain random floats."""
    lo_k = (emin if emin is not None else -30) - p - 2
    hi_k = (int(np.floor(np.log2(mx))) if mx is not None else 30) - p
    out = []
    n = draw(st.integers(1, 30))
    for _ in range(n):
        kind = draw(st.sampled_from(["grid", "grid", "near", "random", "max", "tiny"]))
        sign = draw(st.sampled_from([-1.0, 1.0]))
        if kind in ("grid", "near"):
            m = draw(st.integers(1, 2 ** (p + 2)))
            k = draw(st.integers(lo_k, hi_k))
            v = float(np.ldexp(float(m), k))
            if kind == "near":
                v = float(np.nextafter(v, draw(st.sampled_from([0.0, np.inf]))))
        elif kind == "tiny":  # float64 subnormals and the bottom of the normal range
            v = float(np.ldexp(float(draw(st.integers(1, 2**53 - 1))), draw(st.integers(-1126, -1000))))
        elif kind == "max" and mx is not None:
            half = float(np.ldexp(1.0, int(np.floor(np.log2(mx))) - p))
            v = draw(st.sampled_from([mx, mx + half / 2, float(np.nextafter(mx + half, 0.0)), mx - half, mx + half]))
        else:
            bound = mx * 1.1 if mx is not None else 1e30
            v = draw(st.floats(-bound, bound, allow_nan=False, allow_infinity=False))
        out.append(sign * v)
    return out


def overflows(t: float, p: int, emin, mx) -> bool:
    return mx is not None and abs(ref_float(t, p, emin)) > Fraction(mx)


@pytest.mark.parametrize("spec,p,emin,mx", FLOATS)
@SETTINGS
@given(data=st.data())
def test_float_rounding_exact_and_enclosed(spec, p, emin, mx, data):
    vals = [v for v in grid_values(data.draw, p, emin, mx) if not overflows(v, p, emin, mx)]
    t = np.array(vals, dtype=np.float64)
    q, r = quantize_array(t, spec)
    for ti, qi, ri in zip(t, q, r):
        ref = ref_float(float(ti), p, emin)
        assert Fraction(float(qi)) == ref, (spec, float(ti))
        err = abs(Fraction(float(qi)) - Fraction(float(ti)))
        assert err <= Fraction(float(ri)), (spec, float(ti), float(ri))
        # never looser than Higham's u|t| + half the subnormal spacing
        sub = Fraction(2) ** (emin - p) if emin is not None else 0
        assert Fraction(float(ri)) <= Fraction(2) ** -p * abs(Fraction(float(ti))) + sub


@pytest.mark.parametrize("spec,p,emin,mx", FLOATS)
def test_float_radius_attained_at_ties(spec, p, emin, mx):
    """At the ties (2j - 1) 2^(e-p) + 2^e of a binade, and (2j - 1) 2^(emin-p) below 2^emin,
    the error equals the radius exactly: the formula is tight."""
    top = int(np.floor(np.log2(mx))) if mx is not None else 40
    j = np.arange(1, 41, dtype=np.float64)
    for e in [0, -3, top - 1, top] + ([emin] if emin is not None else [-60]):
        if emin is not None and e < emin:
            continue
        t = 2.0**e + (2 * j - 1) * 2.0 ** (e - p)
        t = t[t < 2.0 ** (e + 1)]
        if mx is not None:
            t = t[t < mx]
        q, r = quantize_array(np.concatenate([t, -t]), spec)
        assert np.array_equal(np.abs(q - np.concatenate([t, -t])), r), (spec, e)
    if emin is not None:
        t = (2 * j - 1) * 2.0 ** (emin - p)
        t = t[t < 2.0**emin]
        q, r = quantize_array(t, spec)
        assert np.array_equal(np.abs(q - t), r) and np.all(r == 2.0 ** (emin - p)), spec


@pytest.mark.parametrize("spec,p,emin,mx", FLOATS)
def test_float_powers_of_two_and_zero_exact(spec, p, emin, mx):
    ks = np.arange(emin - p + 1 if emin is not None else -50, (int(np.log2(mx)) if mx else 50) + 1)
    t = np.concatenate([np.ldexp(1.0, ks), -np.ldexp(1.0, ks), [0.0, -0.0]])
    q, r = quantize_array(t, spec)
    assert np.array_equal(q, t)
    assert np.all(r[-2:] == 0.0)


@pytest.mark.parametrize("spec,p,emin,mx", [f for f in FLOATS if f[3] is not None])
def test_float_overflow_threshold(spec, p, emin, mx):
    top = int(np.floor(np.log2(mx)))
    T = mx + float(np.ldexp(1.0, top - p))  # halfway to the next (missing) value
    max_is_odd = int(Fraction(mx) / Fraction(2) ** (top - p + 1)) % 2 == 1
    below = float(np.nextafter(T, 0.0))
    q, _ = quantize_array(np.array([below, -below]), spec)
    assert np.array_equal(q, [mx, -mx])
    for v in ([T] if max_is_odd else []) + [float(np.nextafter(T, np.inf)), 2 * T, 1e300]:
        for s in (v, -v):
            with pytest.raises(PerturbationError, match="overflows"):
                quantize_array(np.array([0.5, s]), spec)
    if not max_is_odd:  # E4M3: 464 is a tie that rounds to the even 448
        q, r = quantize_array(np.array([T]), spec)
        assert q[0] == mx and abs(q[0] - T) == r[0]


def test_e4m3_tie_and_library_double_rounding_fixed():
    # ml_dtypes rounds float64 -> float32 -> format: 1 + 2^-8 + 2^-30 would become bf16 1.0
    t = np.array([1 + 2.0**-8 + 2.0**-30, 1 + 2.0**-4 + 2.0**-30, 1 + 2.0**-3 + 2.0**-30])
    q_bf16, _ = quantize_array(t[:1], "bf16")
    q_e4m3, _ = quantize_array(t[1:2], "fp8_e4m3")
    q_e5m2, _ = quantize_array(t[2:], "fp8_e5m2")
    assert q_bf16[0] == 1 + 2.0**-7 and q_e4m3[0] == 1 + 2.0**-3 and q_e5m2[0] == 1.25


def test_generic_float_matches_library_formats():
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.normal(0, 100, 3000), rng.normal(0, 1e-6, 3000), np.ldexp(rng.uniform(-1, 1, 2000), -20)])
    for lib, gen in (("fp16", "float:e=5,m=10"), ("bf16", "float:e=8,m=7"), ("fp8_e5m2", "float:e=5,m=2")):
        tt = t[np.abs(t) < FLOAT_FORMATS[lib].max_finite]
        assert np.array_equal(quantize_array(tt, lib)[0], quantize_array(tt, gen)[0]), lib
        assert np.array_equal(quantize_array(tt, lib)[1], quantize_array(tt, gen)[1]), lib


# ----------------------------------------------------------------------------- fixed point
@pytest.mark.parametrize("M,N", [(0, 0), (2, 3), (4, 8), (1, 20)])
@SETTINGS
@given(data=st.data())
def test_fixed_rounding_exact_and_enclosed(M, N, data):
    lo, hi = -(2.0**M), 2.0**M - 2.0**-N
    ints = data.draw(st.lists(st.integers(-(2 ** (M + N + 1)), 2 ** (M + N + 1) - 1), min_size=1, max_size=30))
    rnd = data.draw(st.lists(st.floats(lo - 0.5, hi + 0.5, allow_nan=False), max_size=10))
    # k 2^-(N+1): grid points (even k) and ties (odd k); plus random values
    t = np.array([np.ldexp(float(k), -N - 1) for k in ints] + rnd)
    exact = [Fraction(round_half_even(Fraction(float(v)) * 2**N), 2**N) for v in t]
    ok = np.array([Fraction(lo) <= e <= Fraction(hi) for e in exact])
    if not ok.all():
        with pytest.raises(PerturbationError, match="saturates"):
            quantize_array(t, f"q{M}.{N}")
    t = t[ok]
    if t.size == 0:
        return
    q, r = quantize_array(t, f"q{M}.{N}")
    for ti, qi, ri, e in zip(t, q, r, [e for e, o in zip(exact, ok) if o]):
        assert Fraction(float(qi)) == e
        assert abs(e - Fraction(float(ti))) <= Fraction(float(ri))
        assert float(ri) == (0.0 if ti == 0 else 2.0 ** (-N - 1))


def test_fixed_ties_attain_radius_and_saturation():
    t = (np.arange(-16, 15) + 0.5) / 4.0  # ties of q2.2, all inside [-4, 3.75]
    q, r = quantize_array(t, "q2.2")
    assert np.all(np.abs(q - t) == r) and np.all(r == 0.125)
    with pytest.raises(PerturbationError, match=r"q2\.2: t\[1\] = 3\.875 saturates"):
        quantize_array(np.array([0.0, 3.875]), "q2.2")  # tie rounds to the even 4.0: out of range
    q, _ = quantize_array(np.array([-4.0, -4.0625, 3.8]), "q2.2")  # -4.0625 rounds to -4.0
    assert np.array_equal(q, [-4.0, -4.0, 3.75])


# ---------------------------------------------------------------------------- int affine
INTS = ["int8", "int4", "int2", "int16", "int8:per_channel", "int8:asym", "int4:per_channel,asym",
        "int8:asym,maxabs", "int3:per_channel,asym,minmax"]


def _special_matrix(draw) -> np.ndarray:
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 8))
    special = st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0**-1070, -(2.0**-1030), 1e-300, 3.0, 1e300 / 3, -7.25])
    vals = st.one_of(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), special,
                     st.floats(-1e-6, 1e-6, allow_nan=False))
    return np.array(draw(st.lists(vals, min_size=rows * cols, max_size=rows * cols))).reshape(rows, cols)


@pytest.mark.parametrize("spec", INTS)
@SETTINGS
@given(data=st.data())
def test_int_enclosed_and_on_grid(spec, data):
    t = _special_matrix(data.draw)
    fmt = parse_format(spec)
    groups = t if fmt.per_channel else t.reshape(1, -1)
    if any(0 < np.max(np.abs(g)) < 2.0**-1000 for g in groups):
        with pytest.raises(PerturbationError, match="scale"):
            quantize_array(t, spec)
        return
    q, r = quantize_array(t, spec)
    for idx in np.ndindex(t.shape):
        err = abs(Fraction(float(q[idx])) - Fraction(float(t[idx])))
        assert err <= Fraction(float(r[idx]))
    qg = q if fmt.per_channel else q.reshape(1, -1)
    rg = r if fmt.per_channel else r.reshape(1, -1)
    for row, rrow, trow in zip(qg, rg, groups):
        assert len(np.unique(row)) <= 2**fmt.B  # at most 2^B levels per group
        a = np.max(np.abs(trow))
        if a > 0:  # radius = scale/2 up to the 2^-30 float margin
            levels = (2 ** (fmt.B - 1) - 1) if fmt.sym else (2**fmt.B - 1) / 2
            s = a / levels if (fmt.sym or not fmt.minmax) else (max(trow.max(), 0) - min(trow.min(), 0)) / (2**fmt.B - 1)
            nz = rrow[trow != 0]
            assert np.all(np.abs(nz / (s / 2) - 1) < 1e-8)
    assert np.all(r[t == 0] == 0) and np.all(q[t == 0] == 0)


@pytest.mark.parametrize("spec", INTS)
def test_int_radius_attained_within_factor_2(spec):
    rng = np.random.default_rng(1)
    t = rng.uniform(-3, 1, (4, 500))
    q, r = quantize_array(t, spec)
    ratio = np.abs(q - t) / r
    assert np.all(ratio <= 1.0)
    assert np.all(ratio.max(axis=1) >= 0.5)  # attained within a factor 2 in every channel
    assert ratio.max() > 0.99


def test_int_symmetric_levels_and_zero_point():
    t = np.array([[-1.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.0, 0.0]])
    q, r = quantize_array(t, "int2:per_channel")  # sym int2: levels -1, 0, 1 times s = 1
    assert np.array_equal(q, [[-1.0, 0.0, 0.0, 1.0], [0, 0, 0, 0]])  # 0.5 is a tie: rint -> 0
    assert np.all(r[1] == 0) and r[0, 2] >= 0.5
    q, _ = quantize_array(np.array([0.0, 0.3, 2.55]), "int8:asym")  # [0, 2.55] / 255: s = 0.01, z = 0
    assert q[0] == 0.0 and abs(q[1] - 0.3) < 1e-12 and abs(q[2] - 2.55) < 1e-12


@pytest.mark.parametrize("bad", ["int1", "int17", "int8:foo", "int8:sym,asym", "int8:sym,minmax", "q1", "fp7",
                                 "float:e=12,m=3", "float:p=0", "float:p=54", "float:e=5,m=0", "int8:per_channel,per_tensor"])
def test_bad_format_strings(bad):
    with pytest.raises(PerturbationError, match="valid forms"):
        parse_format(bad)


def test_check_enclosed_decides_borderline_exactly():
    from hybridq.formats import check_enclosed

    t = np.array([1.0 + 2.0**-52, 0.0, 3.0])
    q = np.array([1.0, 0.0, 3.0])
    check_enclosed(q, t, np.array([2.0**-52, 0.0, 0.0]), "t")  # error exactly the radius
    with pytest.raises(PerturbationError, match=r"t\[0\] = 1\.0000000000000002"):
        check_enclosed(q, t, np.array([np.nextafter(2.0**-52, 0.0), 0.0, 0.0]), "t")
    with pytest.raises(PerturbationError, match=r"W\[1\]"):
        check_enclosed(np.array([0.0, 2.0**-1074]), np.array([0.0, 0.0]), np.zeros(2), "W")
