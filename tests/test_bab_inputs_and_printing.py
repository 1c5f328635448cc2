"""verify / quantify / bounds share one input conversion; printed certified numbers round outward;
the certified deviation bound survives a huge ``delta``."""

from __future__ import annotations

import re
from fractions import Fraction as F

import numpy as np
import pytest

from hybridq import Decision, Deviation, InputBox, Layer, Network, bounds, perturbation, quantify, verify
from hybridq.result import fmt_bound


def _tiny():
    rng = np.random.default_rng(0)
    return Network((Layer(rng.normal(size=(3, 2)), rng.normal(size=3)),
                    Layer(rng.normal(size=(2, 3)), rng.normal(size=2), "identity")))


def test_input_box_as_list_is_a_box_everywhere():
    """A box given as a list ``[lower, upper]`` is the same box for verify, quantify and bounds;
    a wrong dimension is one clear ValueError."""
    net = _tiny()
    pert = perturbation("abs:0.1", net)
    lo, hi = np.zeros(2), np.ones(2)
    as_list = verify(net, pert, [lo, hi], Deviation(0.5), backend="none", jobs=1, seed=0)
    as_box = verify(net, pert, InputBox(lo, hi), Deviation(0.5), backend="none", jobs=1, seed=0)
    assert as_list.verdict == as_box.verdict == "not_robust"  # the box reaches a deviation ~1.21
    assert as_list.stats.total_volume == as_box.stats.total_volume == 1.0
    q1 = quantify(net, pert, [lo, hi], backend="none", jobs=1)
    q2 = quantify(net, pert, InputBox(lo, hi), backend="none", jobs=1)
    assert (q1.lower, q1.upper) == (q2.lower, q2.upper)
    b1, b2 = bounds(net, pert, [lo, hi]), bounds(net, pert, InputBox(lo, hi))
    assert np.array_equal(b1.dev_logit_hi, b2.dev_logit_hi)
    for bad in ([np.zeros(3), np.ones(3)], np.zeros(4), InputBox(np.zeros(1), np.ones(1))):
        for call in (lambda: verify(net, pert, bad, Deviation(0.5), backend="none", jobs=1),
                     lambda: quantify(net, pert, bad, backend="none", jobs=1),
                     lambda: bounds(net, pert, bad)):
            with pytest.raises(ValueError, match="2 inputs"):
                call()
    with pytest.raises(ValueError, match="shape"):
        verify(net, pert, np.zeros((2, 2)), Deviation(0.5), backend="none", jobs=1)


def test_verify_spec_string_and_missing_property():
    net = _tiny()
    a = verify(net, "abs:0.01", np.zeros(2), Deviation(1.0), backend="none", jobs=1)
    b = verify(net, perturbation("abs:0.01", net), np.zeros(2), Deviation(1.0), backend="none", jobs=1)
    assert a.verdict == b.verdict == "robust" and a.deviation_bound == b.deviation_bound
    with pytest.raises(ValueError, match="property"):
        verify(net, "abs:0.01", np.zeros(2), None, backend="none", jobs=1)
    with pytest.raises(TypeError, match="perturbation"):
        verify(net, 0.01, np.zeros(2), Deviation(1.0), backend="none", jobs=1)


def test_deviation_bound_kept_apart_from_delta():
    net = _tiny()
    pert = perturbation("abs:0.1", net)
    box = InputBox(np.zeros(2), np.ones(2))
    q = quantify(net, pert, box, backend="none", jobs=1)
    small = verify(net, pert, box, Deviation(10.0), backend="none", jobs=1)
    huge = verify(net, pert, box, Deviation(1e17), backend="none", jobs=1)
    for r in (small, huge):
        assert r.verdict == "robust"
        assert q.lower <= r.deviation_bound < 10.0
        assert r.bound <= 0.0 and F(r.bound) >= F(r.deviation_bound) - F(r.property.delta)
        assert r.to_dict()["deviation_bound"] == r.deviation_bound
        printed = re.search(r"certified max deviation <= (\S+)", r.summary()).group(1)
        assert F(printed) >= F(r.deviation_bound)


@pytest.mark.parametrize("digits", [1, 3, 6])
def test_fmt_bound_rounds_outward(digits):
    rng = np.random.default_rng(digits)
    vals = list(rng.normal(size=300) * 10.0 ** rng.integers(-320, 308, size=300))
    vals += [0.0, 1.0, -2.5, 1.2345641, 999999.5, 5e-324, np.finfo(np.float64).max, -np.finfo(np.float64).max]
    for v in vals:
        v = float(v)
        up, down = fmt_bound(v, "up", digits), fmt_bound(v, "down", digits)
        assert F(down) <= F(v) <= F(up), (v, down, up)
        assert F(up) - F(down) <= abs(F(v)) * F(2, 10 ** (digits - 1)), (v, down, up)
        assert len(up.lstrip("-").replace(".", "").split("e")[0].lstrip("0")) <= digits
    assert fmt_bound(1.2345641, "up") == "1.23457" and fmt_bound(1.2345641, "down") == "1.23456"
    assert fmt_bound(1e17, "up") == f"{1e17:.6g}" and fmt_bound(2.5, "down") == "2.5"
    assert fmt_bound(float("inf"), "down") == "inf"
    with pytest.raises(ValueError, match="direction"):
        fmt_bound(1.0, "nearest")


def test_decision_with_huge_radius_is_refuted_without_warnings():
    # abs:1e308 drives the spec-row bounds to infinity: no NaN warning (errors under pytest), an exact flip
    rng = np.random.default_rng(0)
    net = Network((Layer(rng.normal(size=(3, 2)), rng.normal(size=3)),
                   Layer(rng.normal(size=(2, 3)), rng.normal(size=2), "identity")))
    res = verify(net, "abs:1e308", np.zeros(2), Decision(0), backend="none", jobs=1)
    assert res.verdict == "not_robust"
    cx = res.counterexample
    assert Decision(0).check_exact(net, cx.x, cx.params)
