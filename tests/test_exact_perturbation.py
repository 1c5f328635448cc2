"""Counterexample parameters lie in the perturbation box *as written*: ``rel:EPS`` (whose float
radius is rounded up) and ``abs:EPS`` with a decimal EPS that is no double."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from hybridq import Decision, Deviation, Layer, Network, verify
from hybridq.perturbation import perturbation


def _ident():
    return Network((Layer(np.array([[1.0]]), np.array([0.0]), "identity"),))


@pytest.mark.parametrize("spec", ["rel:0.5", "rel:0.1", "abs:0.4999999999999999999", "abs:0.1"])
def test_contains_and_snap_decide_against_the_exact_box(spec):
    net = _ident()
    pert = perturbation(spec, net)
    kind, eps = spec.split(":")
    eps = Fraction(eps)
    rW, rb = (eps, Fraction(0) if kind == "rel" else eps)
    rng = np.random.default_rng(0)
    # parameters at the float box's corners and one ulp inside them: inside the float box, but
    # inside the exact box only where the exact radius says so
    for sign in (-1.0, 1.0):
        for steps in range(3):
            W = pert.center[0][0] + sign * pert.radius[0][0]
            b = pert.center[0][1] + sign * pert.radius[0][1]
            for _ in range(steps):
                W, b = np.nextafter(W, pert.center[0][0]), np.nextafter(b, pert.center[0][1])
            params = ((W, b),)
            exact_in = abs(Fraction(float(W[0, 0])) - 1) <= rW and abs(Fraction(float(b[0]))) <= rb
            assert pert.contains(params) == exact_in
            snapped = pert.snap_inside(params)
            assert pert.contains(snapped)
            assert abs(Fraction(float(snapped[0][0][0, 0])) - 1) <= rW
            assert abs(Fraction(float(snapped[0][1][0]))) <= rb
    assert pert.contains(((pert.center[0][0], pert.center[0][1]),))


def test_rel_box_at_its_exact_maximum_is_never_refuted():
    """y = w x at x = 0.5 with |w - 1| <= 0.5|1|: the deviation is at most 0.25 exactly, so
    delta = 0.25 holds (the float radius, rounded up, would allow 0.25 + 2^-54)."""
    net = _ident()
    for delta in ("0.25", "0.2500000000000000001"):
        res = verify(net, "rel:0.5", np.array([0.5]), Deviation(delta), jobs=1, timeout=30)
        assert res.verdict in ("robust", "unknown")
    res = verify(net, "rel:0.5", np.array([0.5]), Deviation("0.2499999999999999"), jobs=1, timeout=30)
    assert res.verdict == "not_robust"
    W = res.counterexample.params[0][0]
    assert abs(Fraction(float(W[0, 0])) - 1) <= Fraction(1, 2)


def test_abs_decimal_epsilon_decision():
    """y = w x + b at x = 1, |w - 1|, |b| <= 0.4999999999999999999: the logit stays >= 1 - 2 eps > 0,
    so the sign never flips (the float radius 0.5 would allow y = 0)."""
    net = _ident()
    res = verify(net, "abs:0.4999999999999999999", np.array([1.0]), Decision(1), jobs=1, timeout=30)
    assert res.verdict in ("robust", "unknown")
    res = verify(net, "abs:0.5000000000000000001", np.array([1.0]), Decision(1), jobs=1, timeout=30)
    assert res.verdict == "not_robust"
