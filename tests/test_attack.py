"""Attack: hand-written gradients against finite differences, known maxima, exact re-check."""

from __future__ import annotations

import numpy as np
import pytest

from hybridq import Decision, Deviation, Layer, Network, OutputConstraint, Perturbation
from hybridq.attack import _backward, _forward, attack, confirm, margin_and_grad
from hybridq.result import Counterexample


def _net(rng, sizes, acts, output="identity", clamp=False):
    layers = [Layer(rng.normal(size=(sizes[i + 1], sizes[i])), rng.normal(size=sizes[i + 1]), acts[i])
              for i in range(len(sizes) - 1)]
    kw = {}
    if clamp:
        kw = dict(input_lower=np.full(sizes[0], -5.0), input_upper=np.full(sizes[0], 5.0))
    return Network(tuple(layers), output=output, input_mean=rng.normal(size=sizes[0]),
                   input_std=rng.uniform(0.5, 2.0, size=sizes[0]), **kw)


def _box(net, eps):
    return Perturbation(net.params, tuple((np.full(l.W.shape, eps), np.full(l.b.shape, eps)) for l in net.layers))


@pytest.mark.parametrize("acts,output,prop", [
    (("tanh", "sigmoid", "identity"), "softmax", Deviation(0.0, "score")),
    (("relu", "leaky_relu", "identity"), "identity", Deviation(0.1, "logit", (0, 2))),
    (("hardtanh", "tanh", "identity"), "identity", Decision(1, 0.2)),
    (("sigmoid", "relu", "identity"), "identity",
     OutputConstraint(((np.array([[1.0, -1.0, 0.0]]), np.array([0.0])), (np.array([[0.0, 1.0, -1.0], [1.0, 0, 0]]), np.array([0.5, 2.0]))))),
])
def test_gradients_match_finite_differences(acts, output, prop):
    rng = np.random.default_rng(3)
    net = _net(rng, [3, 5, 4, 3], acts, output, clamp=True)
    n = 3
    x = rng.normal(size=(n, 3))
    Ws = [np.stack([l.W + 0.1 * rng.normal(size=l.W.shape) for _ in range(n)]) for l in net.layers]
    bs = [np.stack([l.b + 0.1 * rng.normal(size=l.b.shape) for _ in range(n)]) for l in net.layers]
    nom = ([l.W for l in net.layers], [l.b for l in net.layers])

    def f(x, Ws, bs):
        yp, c = _forward(net, x, Ws, bs)
        yn, nc = _forward(net, x, *nom)
        m, gp, gn = margin_and_grad(net, prop, yp, yn)
        return m, c, nc, gp, gn

    m, c, nc, gp, gn = f(x, Ws, bs)
    gx, gW, gb = _backward(net, x, c, Ws, gp)
    gx = gx + _backward(net, x, nc, nom[0], gn, False)[0]
    e = 1e-6
    for i in range(3):
        xp = x.copy()
        xp[:, i] += e
        np.testing.assert_allclose((f(xp, Ws, bs)[0] - m) / e, gx[:, i], atol=2e-4)
    for k in range(len(Ws)):
        Wp = [w.copy() for w in Ws]
        Wp[k][:, 1, 0] += e
        np.testing.assert_allclose((f(x, Wp, bs)[0] - m) / e, gW[k][:, 1, 0], atol=2e-4)
        bp = [b.copy() for b in bs]
        bp[k][:, 0] += e
        np.testing.assert_allclose((f(x, Ws, bp)[0] - m) / e, gb[k][:, 0], atol=2e-4)


def test_single_layer_maximum_is_found_exactly():
    # y = w.x + b with |dw| <= r, |db| <= rb: max deviation r*|x|_1 + rb at a box corner
    net = Network((Layer([[0.5, -2.0]], [0.25], "identity"),))
    r, rb = 0.125, 0.0625
    pert = Perturbation(net.params, ((np.full((1, 2), r), np.full(1, rb)),))
    lower, upper = np.array([-1.0, -3.0]), np.array([2.0, 1.0])
    true_max = r * (2.0 + 3.0) + rb
    res = attack(net, pert, Deviation(true_max - 1e-3), lower, upper, np.random.default_rng(0))
    assert res.counterexample is not None
    assert res.counterexample.value == pytest.approx(true_max, abs=1e-12)
    assert pert.contains(res.counterexample.params)
    res = attack(net, pert, Deviation(true_max), lower, upper, np.random.default_rng(0))
    assert res.counterexample is None and res.margin <= 0.0


def test_attack_beats_random_sampling_and_rechecks():
    rng = np.random.default_rng(1)
    net = _net(rng, [2, 8, 8, 1], ("relu", "relu", "identity"))
    pert = _box(net, 0.01)
    lower, upper = -np.ones(2), np.ones(2)
    sampled = 0.0
    for _ in range(100):
        p = pert.sample(rng)
        X = rng.uniform(-1, 1, size=(200, 2))
        sampled = max(sampled, float(np.abs(net.forward(X, p) - net.forward(X)).max()))
    res = attack(net, pert, Deviation(sampled), lower, upper, np.random.default_rng(2))
    cx = res.counterexample
    assert cx is not None and cx.value > sampled
    assert np.all(cx.x >= lower) and np.all(cx.x <= upper)
    assert Deviation(sampled).check_exact(net, cx.x, cx.params) and pert.contains(cx.params)
    dev = float(np.abs(net.forward(cx.x, cx.params) - net.forward(cx.x))[0])
    assert dev == pytest.approx(cx.value, rel=1e-12)


def test_attack_is_deterministic_for_a_seed():
    rng = np.random.default_rng(5)
    net = _net(rng, [3, 6, 2], ("tanh", "identity"))
    pert = _box(net, 0.05)
    a = attack(net, pert, Decision(0), -np.ones(3), np.ones(3), np.random.default_rng(7))
    b = attack(net, pert, Decision(0), -np.ones(3), np.ones(3), np.random.default_rng(7))
    assert a.margin == b.margin and np.array_equal(a.x, b.x)


def test_confirm_rejects_outside_box_and_non_violations(tmp_path):
    net = Network((Layer([[1.0, 1.0]], [0.0], "identity"),))
    pert = Perturbation(net.params, ((np.full((1, 2), 0.5), np.zeros(1)),))
    x = np.array([1.0, 1.0])
    inside = ((np.array([[1.5, 1.5]]), np.array([0.0])),)
    assert confirm(net, pert, Deviation(0.999), x, inside, 1.0) is not None
    assert confirm(net, pert, Deviation(1.0), x, inside, 0.0) is None  # exactly 1.0: not > delta
    # slightly outside the box is snapped back inside before the check
    outside = ((np.array([[1.5 + 1e-9, 1.5]]), np.array([0.0])),)
    cx = confirm(net, pert, Deviation(0.9), x, outside, 1.0)
    assert cx is not None and pert.contains(cx.params) and cx.value == pytest.approx(1.0)
    cx.save(tmp_path / "cx.npz")
    with np.load(tmp_path / "cx.npz") as z:
        assert np.array_equal(z["x"], x) and np.array_equal(z["W0"], cx.params[0][0]) and "b0" in z


def test_counterexample_record_roundtrip():
    cx = Counterexample(np.zeros(2), ((np.ones((1, 2)), np.zeros(1)),), 0.5, 1.25)
    d = cx.to_dict()
    assert d["x"] == [0.0, 0.0] and d["margin"] == 0.5 and d["value"] == 1.25
