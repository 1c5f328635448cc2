"""The Perturbation box: exact containment (TwoSum) against Fraction, snapping inside."""

from fractions import Fraction

import numpy as np
from hypothesis import given, settings, strategies as st

from hybridq.perturbation import Perturbation, _outside

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)


@settings(max_examples=300, deadline=None)
@given(c=finite, r=st.floats(min_value=0, max_value=1e300), k=st.integers(-3, 3), sign=st.sampled_from([-1.0, 1.0]))
def test_outside_matches_fraction(c, r, k, sign):
    t = c + sign * r
    for _ in range(abs(k)):
        t = np.nextafter(t, np.inf if k > 0 else -np.inf)
    if not np.isfinite(t):
        return
    got = bool(_outside(np.array([t]), np.array([c]), np.array([r]))[0])
    assert got == (abs(Fraction(t) - Fraction(c)) > Fraction(r))


def test_snap_inside_and_contains():
    rng = np.random.default_rng(1)
    c = ((rng.normal(size=(4, 3)), rng.normal(size=4)),)
    r = ((np.abs(c[0][0]) * 2.0**-11, np.full(4, 1e-3)),)
    p = Perturbation(c, r)
    outside = ((c[0][0] + 1.5 * r[0][0], c[0][1] - 2 * r[0][1]),)
    assert not p.contains(outside)
    snapped = p.snap_inside(outside)
    assert p.contains(snapped)
    assert np.array_equal(outside[0][0], c[0][0] + 1.5 * r[0][0])  # input untouched
    for (W, b), (cW, cb), (rW, rb) in zip(snapped, c, r):
        for t, cc, rr in ((W, cW, rW), (b, cb, rb)):
            for ti, ci, ri in zip(t.ravel(), cc.ravel(), rr.ravel()):
                assert abs(Fraction(ti) - Fraction(ci)) <= Fraction(ri)
