"""The witness search on the rounded deployed network: the float network's MILP of
:func:`hybridq.rounded_search.logit_extremes` is the float network (checked point by point), and
its search finds the input that drives a float logit furthest beyond a saturating output
quantizer (checked against a dense grid on 2-input networks)."""

from __future__ import annotations

import numpy as np
import pytest

from hybridq import Deviation, InputBox, Layer, Network
from hybridq.actquant import act_model
from hybridq.bounds import bounds
from hybridq.deployed import _exact_deviation, deviation_deployed
from hybridq.perturbation import Perturbation
from hybridq.rounded_search import _float_milp, _float_milp_point, logit_extremes

pytest.importorskip("highspy")


def _net(rng, sizes, mean=None, std=None):
    layers = [Layer(rng.normal(size=(b, a)) / np.sqrt(a), rng.normal(size=b) * 0.3, "relu" if i < len(sizes) - 2
                    else "identity") for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    n = sizes[0]
    return Network(tuple(layers), "identity", np.zeros(n) if mean is None else mean,
                   np.ones(n) if std is None else std)


def _zero(net):
    return Perturbation(net.params, tuple((np.zeros_like(W), np.zeros_like(b)) for W, b in net.params), "none")


@pytest.mark.parametrize("seed", range(6))
def test_float_milp_is_the_float_network(seed):
    rng = np.random.default_rng(seed)
    n = 3
    net = _net(rng, [n, 7, 6, 4], mean=rng.normal(size=n) * 0.1, std=rng.uniform(0.5, 2, n))
    lo = rng.uniform(-1, 0, n)
    hi = lo + rng.uniform(0.1, 1.5, n)
    box = InputBox(lo, hi)
    ob = bounds(net, _zero(net), box)
    pre_lo, pre_hi = [p[0] for p in ob.pre_lo], [p[0] for p in ob.pre_hi]
    Y, y0, A, rlo, rhi, clo, chi, integ = _float_milp(net, lo, hi, pre_lo, pre_hi)
    assert int(integ.sum()) == sum(int(np.sum((a < 0) & (b > 0))) for a, b in zip(pre_lo[:-1], pre_hi[:-1]))
    for x in rng.uniform(lo, hi, (50, n)):
        v = _float_milp_point(net, x, ob, clo.size)
        assert v is not None and np.allclose(v[:n], x)
        assert np.all(v >= clo - 1e-12) and np.all(v <= chi + 1e-12)
        r = A @ v
        assert np.all(r >= rlo - 1e-9) and np.all(r <= rhi + 1e-9)
        assert np.allclose(Y @ v + y0, net.forward(x[None])[0], atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_logit_extremes_reach_the_saturated_deviation(seed):
    rng = np.random.default_rng(seed)
    net = _net(rng, [2, 8, 8, 1])
    box = InputBox(np.full(2, -1.0), np.full(2, 1.0))
    g = np.linspace(-1, 1, 301)
    X = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    y = net.forward(X)[:, 0]
    last = net.layers[-1]  # centre the logit's range on 0: [-R, R] on the grid
    net = Network(net.layers[:-1] + (Layer(last.W, last.b - 0.5 * (y.max() + y.min()), "identity"),), "identity",
                  net.input_mean, net.input_std)
    y = net.forward(X)[:, 0]
    # an output quantizer whose range is half the float logit's: it saturates at both ends
    s = float(0.5 * (y.max() - y.min()) / 2 / 127)
    model = act_model(net, f"layer3=act=int8:scale={s!r},zp=0,saturate", box)
    xs = logit_extremes(model, box, Deviation(0.0), budget=10.0)
    assert len(xs) == 2 and all(box.contains(x) for x in xs)
    f = [float(net.forward(x[None])[0, 0]) for x in xs]
    tol = 1e-6 * (1 + np.max(np.abs(y)))
    assert max(f) >= y.max() - tol and min(f) <= y.min() + tol  # the MILP's optima, at least the grid's best
    # the witnessed deviation of the whole search reaches the saturation at the grid's extremes
    sat = max(float(y.max()) - 127 * s, -128 * s - float(y.min()))
    q = deviation_deployed(model, box, Deviation(0.0), timeout=30, jobs=1, seed=0)
    assert q.lower >= sat - 1e-6 and q.lower <= float(_exact_deviation(model, Deviation(0.0), q.witness.x)) + 1e-12
    # the witness is complete like every counterexample: outputs of both networks and the constraint
    w = q.witness
    assert np.allclose(w.outputs_nominal, net.forward(w.x[None])[0])
    assert np.allclose(w.outputs_perturbed, [float(v) for v in model.exact_logits(w.x)])
    assert w.violated.startswith("|y_0(x; theta) - y_0(x; theta0)|") and w.property["kind"] == "deviation"


def test_no_candidates_without_a_saturating_output_quantizer():
    rng = np.random.default_rng(0)
    net = _net(rng, [2, 5, 1])
    box = InputBox(np.full(2, -1.0), np.full(2, 1.0))
    assert logit_extremes(act_model(net, "layer1=act=int8", box), box, Deviation(0.0), 5.0) == []  # no output point
    wide = act_model(net, "layer2=act=int8:scale=1.0,zp=0,saturate", box)  # range [-128, 127]: never reached
    assert logit_extremes(wide, box, Deviation(0.0), 5.0) == []
    assert logit_extremes(wide, InputBox.point(np.zeros(2)), Deviation(0.0), 5.0) == []
