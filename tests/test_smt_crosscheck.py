"""Cross-check of the reduced (per-neuron-noise) and the pure (every weight a variable) SMT
encodings on random small networks, against dense sampling and exact re-checks."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from hybridq.cell import Cell
from hybridq.inputs import InputBox
from hybridq.network import Layer, Network
from hybridq.perturbation import Perturbation
from hybridq.properties import Decision, Deviation
from hybridq.smt import Sat, Unknown, Unsat, get_backend, pure_smt

N_CASES = 200
TIMEOUT = 20.0  # wall-clock safety net; the deterministic z3 resource limit decides
RLIMIT = 150_000  # about 0.5 s of z3 work


def random_case(seed: int):
    """A random small network, perturbation, input box and property (seeded)."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(2, 5))
    hidden = [int(rng.integers(1, 9)) for _ in range(int(rng.integers(1, 3)))]
    n_out = int(rng.integers(1, 4))
    widths = [n_in] + hidden + [n_out]
    layers = []
    for k in range(len(widths) - 1):
        act = "identity" if k == len(widths) - 2 else str(rng.choice(["relu", "relu", "identity"]))
        W = rng.normal(size=(widths[k + 1], widths[k])) / np.sqrt(widths[k])
        layers.append(Layer(W, rng.normal(size=widths[k + 1]) * 0.5, act))
    kw = {}
    if rng.random() < 0.3:
        kw = dict(input_mean=rng.normal(size=n_in) * 0.1, input_std=rng.uniform(0.5, 2.0, n_in),
                  output_mean=rng.normal(size=n_out), output_std=rng.uniform(0.5, 2.0, n_out))
    if rng.random() < 0.2:
        kw.update(input_lower=np.full(n_in, -0.8), input_upper=np.full(n_in, 0.9))
    net = Network(tuple(layers), **kw)
    eps = float(rng.choice([0.005, 0.02, 0.05, 0.1, 0.2]))
    centre, radius = [], []
    for W, b in net.params:
        rW = eps * (np.abs(W) if rng.random() < 0.5 else np.ones_like(W))
        rW = np.where(rng.random(W.shape) < 0.15, 0.0, rW)  # some exact parameters
        rb = np.where(rng.random(b.shape) < 0.15, 0.0, eps * np.ones_like(b))
        if rng.random() < 0.15:  # a shifted centre (a quantized copy), deviation still vs theta0
            W = W + rng.normal(size=W.shape) * eps * 0.3
        centre.append((W, b))
        radius.append((rW, rb))
    pert = Perturbation(tuple(centre), tuple(radius))
    x0 = rng.uniform(-1, 1, n_in)
    width = 0.0 if rng.random() < 0.35 else float(rng.choice([0.02, 0.1, 0.3]))
    box = InputBox(x0 - width, x0 + width)
    return rng, net, pert, box


def sample_pairs(rng, net, pert, box, n_theta=100, n_x=20):
    """Dense sampling of (x, theta) incl. corners of both boxes; yields (x (n, n_in), params)."""
    lo, hi = box.lower, box.upper
    corners = np.array([[lo[i] if (m >> i) & 1 == 0 else hi[i] for i in range(box.n_in)]
                        for m in range(2 ** box.n_in)])
    for t in range(n_theta):
        if t == 0:
            params = pert.lower()
        elif t == 1:
            params = pert.upper()
        elif t < n_theta // 3:  # random corners of the parameter box
            params = tuple((c + r * rng.choice([-1.0, 1.0], c.shape), cb + rb * rng.choice([-1.0, 1.0], cb.shape))
                           for (c, cb), (r, rb) in zip(pert.center, pert.radius))
        else:
            params = pert.sample(rng)
        params = pert.snap_inside(params)
        xs = np.vstack([corners, rng.uniform(lo, hi, (n_x, box.n_in))])
        yield xs, params


def pick_property(rng, net, pert, box):
    """A deviation or decision property with a threshold near the sampled worst case."""
    y0 = net.forward(box.center)
    if net.n_out > 1 and rng.random() < 0.5:
        label = int(np.argmax(y0))
        worst = np.inf
        for xs, params in sample_pairs(rng, net, pert, box, n_theta=20, n_x=5):
            worst = min(worst, float(np.min(Decision(label).margin(net, net.forward(xs, params)) * -1)))
        kappa = max(0.0, worst * float(rng.uniform(0.5, 1.5)))
        return Decision(label, kappa)
    worst = 0.0
    for xs, params in sample_pairs(rng, net, pert, box, n_theta=20, n_x=5):
        worst = max(worst, float(np.max(np.abs(net.forward(xs, params) - net.forward(xs)))))
    return Deviation(max(worst * float(rng.uniform(0.5, 2.0)), 1e-6))


def exact_violation(net, pert, box, prop, x, params) -> bool:
    return box.contains(x) and pert.contains(params) and prop.check_exact(net, x, params)


def assert_sat_rechecks(net, pert, box, prop, out):
    assert isinstance(out.x, np.ndarray) and out.x.shape == (net.n_in,)
    assert box.contains(out.x), "Sat input outside the box"
    assert pert.contains(out.params), "Sat parameters outside the box"
    assert prop.check_exact(net, out.x, out.params), "Sat did not re-check exactly"


@pytest.mark.slow
def test_reduced_and_pure_agree_and_sampling_finds_no_missed_violation():
    z3b = get_backend("z3", rlimit=RLIMIT, logic="QF_NRA")  # nlsat alone: fastest on these
    counts = {"both": 0, "unsat": 0, "sat": 0, "unknown": 0, "sampled_violations": 0}
    for seed in range(N_CASES):
        rng, net, pert, box = random_case(seed)
        prop = pick_property(rng, net, pert, box)
        cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in net.layers))
        red = z3b.check(net, pert, cell, prop, TIMEOUT)
        pure = pure_smt(net, pert, box, prop, backend=z3b, timeout=TIMEOUT)
        for out in (red, pure):
            assert isinstance(out, (Sat, Unsat, Unknown))
            if isinstance(out, Sat):
                assert_sat_rechecks(net, pert, box, prop, out)
        if not isinstance(red, Unknown) and not isinstance(pure, Unknown):
            counts["both"] += 1
            assert type(red) is type(pure), f"seed {seed}: reduced {red} vs pure {pure}"
        counts["unsat" if isinstance(red, Unsat) else "sat" if isinstance(red, Sat) else "unknown"] += 1
        if isinstance(red, Unsat) or isinstance(pure, Unsat):
            for xs, params in sample_pairs(rng, net, pert, box):
                m = prop.margin(net, net.forward(xs, params), net.forward(xs))
                for i in np.flatnonzero(m >= -1e-9):
                    hit = exact_violation(net, pert, box, prop, xs[i], params)
                    counts["sampled_violations"] += hit
                    assert not hit, f"seed {seed}: sampling found a violation where an encoding says Unsat"
    print(counts)
    # the generator must exercise both verdicts and most queries must finish
    assert counts["unsat"] >= 30 and counts["sat"] >= 30, counts
    assert counts["both"] >= 0.7 * N_CASES, counts
