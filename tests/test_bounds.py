"""Soundness of the bound pass against exact evaluation (Fractions / mpmath intervals).

For random small networks of every activation and output transform, every method's bounds must
contain the exact real value at sampled points ``(x, theta)`` of the cell: box vertices, the
parameter corners ``theta0 +- r`` (snapped inside the box), random sign corners and uniform samples.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridq import Layer, Network, Perturbation, perturbation
from hybridq.bounds import METHODS, bounds
from hybridq.cell import Cell
from hybridq.network import ACTIVATIONS, iv_precision

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)


def _net(rng, acts, widths, output="identity", prep=False):
    layers = [Layer(rng.normal(size=(widths[i + 1], widths[i])) / np.sqrt(widths[i]),
                    rng.normal(size=widths[i + 1]) * 0.3, a, alpha=0.1) for i, a in enumerate(acts)]
    kw = {}
    if prep:
        n_in, n_out = widths[0], widths[-1]
        kw = dict(input_mean=rng.normal(size=n_in) * 0.1, input_std=rng.uniform(0.5, 2.0, n_in),
                  input_lower=np.full(n_in, -0.8), input_upper=np.full(n_in, 0.9),
                  output_mean=rng.normal(size=n_out), output_std=rng.uniform(0.5, 3.0, n_out))
    return Network(layers, output, **kw)


def _pert(rng, net, eps, shift=False):
    center = []
    for W, b in net.params:
        if shift:  # a centre that is not theta0 (e.g. a quantized copy)
            W = W + rng.choice([-1.0, 0.0, 1.0], size=W.shape) * eps * 0.5
            b = b + rng.choice([-1.0, 0.0, 1.0], size=b.shape) * eps * 0.5
        center.append((W, b))
    radius = [(np.full(W.shape, eps) * rng.uniform(0.0, 1.0, W.shape), np.full(b.shape, eps)) for W, b in net.params]
    return Perturbation(tuple(center), tuple(radius))


def _samples(rng, pert, lo, hi, n_rand=3):
    """(x, theta) pairs: vertices / random x with corner / sign-corner / uniform theta."""
    n_in = lo.size
    xs = [lo.copy(), hi.copy(), 0.5 * (lo + hi)]
    for _ in range(2):
        xs.append(np.where(rng.random(n_in) < 0.5, lo, hi))
    xs.append(rng.uniform(lo, hi))
    thetas = [pert.snap_inside(pert.lower()), pert.snap_inside(pert.upper())]
    for _ in range(n_rand):
        sgn = [(rng.choice([-1.0, 1.0], W.shape), rng.choice([-1.0, 1.0], b.shape)) for W, b in pert.center]
        thetas.append(pert.snap_inside(tuple((W + s * R, b + t * r) for (W, b), (s, t), (R, r)
                                             in zip(pert.center, sgn, pert.radius))))
        thetas.append(pert.snap_inside(pert.sample(rng)))
    pairs = []
    for i, x in enumerate(xs):
        for j, th in enumerate(thetas):
            if (i + j) % 2 == 0 or i < 2:
                pairs.append((x, th))
    return pairs


def _contains(lo: float, hi: float, v) -> bool:
    """Exact value ``v`` (Fraction) in ``[lo, hi]``; for an mpmath interval ``v`` (200 bits, width
    ~1e-60) the enclosed real value can only be excluded when ``v`` misses ``[lo, hi]``."""
    if isinstance(v, Fraction):
        return Fraction(lo) <= v <= Fraction(hi)
    return mpmath.mpf(lo) <= v.b and v.a <= mpmath.mpf(hi)


def _sub(a, b):
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a - b
    with iv_precision():
        to = lambda v: mpmath.iv.mpf(v.numerator) / v.denominator if isinstance(v, Fraction) else v  # noqa: E731
        return to(a) - to(b)


def _lin(c, y):
    if all(isinstance(v, Fraction) for v in y):
        return sum((Fraction(float(ci)) * v for ci, v in zip(c, y)), Fraction(0))
    with iv_precision():
        to = lambda v: mpmath.iv.mpf(v.numerator) / v.denominator if isinstance(v, Fraction) else v  # noqa: E731
        return sum((mpmath.iv.mpf(float(ci)) * to(v) for ci, v in zip(c, y)), mpmath.iv.mpf(0))


def _exact_pre(net, x, params):
    """Exact pre-activations of every layer (piecewise-linear nets only), concatenated."""
    from hybridq.network import _act_fraction

    h = []
    for i, xi in enumerate(x):
        v = Fraction(float(xi))
        if net.input_lower is not None:
            v = min(max(v, Fraction(float(net.input_lower[i]))), Fraction(float(net.input_upper[i])))
        h.append((v - Fraction(float(net.input_mean[i]))) / Fraction(float(net.input_std[i])))
    out = []
    for l, (W, b) in zip(net.layers, params):
        z = [Fraction(float(b[j])) + sum(Fraction(float(W[j, i])) * h[i] for i in range(len(h)))
             for j in range(W.shape[0])]
        out.extend(z)
        h = [_act_fraction(v, l.activation, l.alpha) for v in z]
    return out


def _check_enclosure(net, pert, lo, hi, rng, spec=None, methods=METHODS):
    res = {m: bounds(net, pert, (lo[None, :], hi[None, :]), method=m, spec=spec) for m in methods}
    theta0 = net.params
    for x, th in _samples(rng, pert, lo, hi):
        assert pert.contains(th)
        y = net.exact_logits(x, th)
        y0 = net.exact_logits(x, theta0)
        s = net.exact_scores(x, th)
        s0 = net.exact_scores(x, theta0)
        pre = _exact_pre(net, x, th) if net.is_piecewise_linear else None
        pre0 = _exact_pre(net, x, theta0) if net.is_piecewise_linear else None
        for m, B in res.items():
            for j in range(net.n_out):
                assert _contains(B.logit_lo[0, j], B.logit_hi[0, j], y[j]), (m, "logit", j)
                assert _contains(B.dev_logit_lo[0, j], B.dev_logit_hi[0, j], _sub(y[j], y0[j])), (m, "dev", j)
                assert _contains(B.score_lo[0, j], B.score_hi[0, j], s[j]), (m, "score", j)
                assert _contains(B.dev_score_lo[0, j], B.dev_score_hi[0, j], _sub(s[j], s0[j])), (m, "dev_score", j)
            if spec is not None:
                for r in range(spec.shape[0]):
                    assert _contains(B.spec_lo[0, r], B.spec_hi[0, r], _lin(spec[r], y)), (m, "spec", r)
            if pre is not None:
                plo = np.concatenate([a[0] for a in B.pre_lo])
                phi = np.concatenate([a[0] for a in B.pre_hi])
                nlo = np.concatenate([a[0] for a in B.nom_pre_lo])
                nhi = np.concatenate([a[0] for a in B.nom_pre_hi])
                for j, (v, v0) in enumerate(zip(pre, pre0)):
                    assert _contains(plo[j], phi[j], v), (m, "pre", j)
                    assert _contains(nlo[j], nhi[j], v0), (m, "nom_pre", j)
    return res


@st.composite
def _case(draw, acts_from=ACTIVATIONS):
    seed = draw(st.integers(0, 2 ** 31 - 1))
    depth = draw(st.integers(1, 3))
    acts = [draw(st.sampled_from(acts_from)) for _ in range(depth)]
    last = draw(st.sampled_from(("identity", "identity", "relu", "tanh")))
    output = draw(st.sampled_from(("identity", "sigmoid", "softmax")))
    eps = draw(st.sampled_from((0.0, 1e-3, 0.05, 0.3)))
    width = draw(st.sampled_from((0.0, 0.01, 0.5)))
    prep = draw(st.booleans())
    shift = draw(st.booleans())
    return seed, acts + [last], output, eps, width, prep, shift


def _run_case(case):
    seed, acts, output, eps, width, prep, shift = case
    rng = np.random.default_rng(seed)
    n_out = 1 if output == "sigmoid" else 2
    widths = [2] + [3] * (len(acts) - 1) + [n_out]
    net = _net(rng, acts, widths, output, prep)
    pert = _pert(rng, net, eps, shift)
    c = rng.uniform(-1, 1, 2)
    lo, hi = c - width, c + width
    spec = rng.normal(size=(2, n_out))
    return _check_enclosure(net, pert, lo, hi, rng, spec=spec)


@SETTINGS
@given(_case(acts_from=("relu", "identity", "leaky_relu", "hardtanh")))
def test_enclosure_piecewise_linear(case):
    _run_case(case)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(_case(acts_from=("sigmoid", "tanh")))
def test_enclosure_smooth(case):
    _run_case(case)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_enclosure_each_activation(act):
    rng = np.random.default_rng(7)
    for depth in (1, 2, 3):
        net = _net(rng, [act] * depth + ["identity"], [2] + [3] * depth + [2], "softmax", prep=depth == 2)
        pert = _pert(rng, net, 0.02, shift=depth == 3)
        _check_enclosure(net, pert, np.array([-0.3, 0.1]), np.array([0.2, 0.4]), rng, spec=np.array([[1.0, -1.0]]))


def test_ordering_and_tightness():
    """diff / linear deviation bounds are never wider than interval's (they intersect it), and
    linear is strictly tighter on a deep relu net with a small box."""
    rng = np.random.default_rng(3)
    net = _net(rng, ["relu"] * 4 + ["identity"], [4, 16, 16, 16, 16, 3])
    pert = _pert(rng, net, 1e-3)
    lo = rng.uniform(-1, 1, (20, 4))
    hi = lo + 0.02
    res = {m: bounds(net, pert, (lo, hi), method=m) for m in METHODS}
    wi = res["interval"].dev_logit_hi - res["interval"].dev_logit_lo
    for m in ("diff", "linear"):
        w = res[m].dev_logit_hi - res[m].dev_logit_lo
        assert np.all(w <= wi)
        assert np.all(res[m].dev_logit_lo >= res["interval"].dev_logit_lo)
    wl = res["linear"].dev_logit_hi - res["linear"].dev_logit_lo
    assert np.mean(wl) < 0.5 * np.mean(wi)
    # batch rows equal single-cell calls
    one = bounds(net, pert, (lo[5], hi[5]), method="linear")
    assert np.array_equal(one.dev_logit_hi[0], res["linear"].dev_logit_hi[5])


def test_zero_radius_point_is_tight():
    rng = np.random.default_rng(4)
    net = _net(rng, ["relu", "tanh", "identity"], [3, 5, 5, 2])
    pert = _pert(rng, net, 0.0)
    x = rng.normal(size=3)
    y = net.forward(x)
    for m in METHODS:
        B = bounds(net, pert, x, method=m)
        assert np.all(B.logit_lo[0] <= y + 1e-9) and np.all(y - 1e-9 <= B.logit_hi[0])
        assert np.all(B.logit_hi[0] - B.logit_lo[0] < 1e-9)
        assert np.all(np.abs(B.dev_logit_hi) < 1e-9) and np.all(np.abs(B.dev_logit_lo) < 1e-9)


def test_linear_variants_sound():
    rng = np.random.default_rng(5)
    net = _net(rng, ["relu", "leaky_relu", "identity"], [2, 3, 3, 2])
    pert = _pert(rng, net, 0.05, shift=True)
    lo, hi = np.array([-0.2, 0.1]), np.array([0.3, 0.2])
    for kw in (dict(noise="concretize"), dict(mix=False), dict(inter=0), dict(inter=2), dict(refine="unstable")):
        B = bounds(net, pert, (lo, hi), method="linear", **kw)
        for x, th in _samples(rng, pert, lo, hi):
            d = _sub(net.exact_logits(x, th)[0], net.exact_logits(x)[0])
            assert _contains(B.dev_logit_lo[0, 0], B.dev_logit_hi[0, 0], d), kw


def test_cells_phase_clips():
    """Clips on perturbed pre-activations: bounds enclose every sample that satisfies them;
    contradictory clips are flagged infeasible."""
    rng = np.random.default_rng(6)
    net = _net(rng, ["relu", "identity"], [2, 4, 2])
    pert = _pert(rng, net, 0.02)
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    n = sum(net.widths[1:])
    free = Cell.root(lo, hi, n)
    act = Cell.root(lo, hi, n)
    act.pre_lo[0] = 0.0
    dead = Cell.root(lo, hi, n)
    dead.pre_hi[0] = 0.0
    empty = Cell.root(lo, hi, n)
    empty.pre_lo[1] = 1e6
    for m in METHODS:
        B = bounds(net, pert, cells=[free, act, dead, empty], method=m)
        assert list(B.infeasible) == [False, False, False, True]
        assert B.pre_lo[0][1, 0] >= 0.0 and B.pre_hi[0][2, 0] <= 0.0
        for x, th in _samples(rng, pert, lo, hi, n_rand=4):
            z0 = _exact_pre(net, x, th)[0]
            y = net.exact_logits(x, th)
            for row, ok in ((0, True), (1, z0 >= 0), (2, z0 <= 0)):
                if ok:
                    for j in range(2):
                        assert _contains(B.logit_lo[row, j], B.logit_hi[row, j], y[j]), (m, row, j)


def test_bad_arguments():
    rng = np.random.default_rng(8)
    net = _net(rng, ["relu", "identity"], [2, 3, 2])
    pert = _pert(rng, net, 0.01)
    with pytest.raises(ValueError, match="inverted box"):
        bounds(net, pert, (np.array([1.0, 0.0]), np.array([0.0, 1.0])))
    with pytest.raises(ValueError, match="NaN"):
        bounds(net, pert, np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="shape"):
        bounds(net, pert, np.zeros(3))
    with pytest.raises(ValueError, match="different shapes"):
        bounds(net, pert, (np.zeros((2, 2)), np.zeros((3, 2))))
    with pytest.raises(ValueError, match="empty"):
        bounds(net, pert, (np.zeros((0, 2)), np.zeros((0, 2))))
    with pytest.raises(ValueError, match="unknown bound method"):
        bounds(net, pert, np.zeros(2), method="crown")
    with pytest.raises(ValueError, match="spec"):
        bounds(net, pert, np.zeros(2), spec=np.ones((1, 3)))
    with pytest.raises(ValueError, match="pre_lo"):
        bounds(net, pert, cells=[Cell(np.zeros(2), np.ones(2), np.zeros(2), np.ones(2))])
    other = _net(rng, ["relu", "identity"], [2, 4, 2])
    with pytest.raises(ValueError):
        bounds(other, pert, np.zeros(2))


def test_acasxu_real_network(networks_dir):
    """ACAS Xu 1_1: fp16 bounds contain float evaluations at parameter corners (small margin for
    the float forward's own rounding), and the linear bound at the auto_LiRPA anchor point is
    narrower than CROWN's (issue 7: y0 width 0.0631 at eps = 4.9e-4)."""
    from hybridq.io import load_network
    from hybridq.perturbation import perturbation

    net = load_network(networks_dir / "acasxu" / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet")
    pert = perturbation("fp16", net)
    rng = np.random.default_rng(9)
    lo = np.array([[55947.691, -0.1, 0.2, 1145.0, 0.0], [58000.0, 1.0, -2.0, 1150.0, 30.0]])
    hi = lo + np.array([500.0, 0.1, 0.1, 10.0, 5.0])
    for m in METHODS:
        B = bounds(net, pert, (lo, hi), method=m)
        for c in range(2):
            xs = rng.uniform(lo[c], hi[c], (50, 5))
            y0 = net.forward(xs)
            for th in (pert.lower(), pert.upper(), pert.sample(rng)):
                y = net.forward(xs, th)
                tol = 1e-9 * (1 + np.abs(y))
                assert np.all(y >= B.logit_lo[c] - tol) and np.all(y <= B.logit_hi[c] + tol), m
                assert np.all(y - y0 >= B.dev_logit_lo[c] - tol) and np.all(y - y0 <= B.dev_logit_hi[c] + tol), m
    onnx_net = load_network(networks_dir / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx")
    x = 0.5 * (np.array([-0.303531156, -0.009549297, 0.493380324, 0.3, 0.3])
               + np.array([-0.298552812, 0.009549297, 0.5, 0.5, 0.5]))
    eps = 4.9e-4
    box = Perturbation(onnx_net.params,
                       tuple((np.full(W.shape, eps), np.full(b.shape, eps)) for W, b in onnx_net.params))
    B = bounds(onnx_net, box, x, method="linear")
    assert B.logit_hi[0, 0] - B.logit_lo[0, 0] < 0.0631
    y = onnx_net.forward(x)
    assert B.logit_lo[0, 0] <= y[0] <= B.logit_hi[0, 0]


def test_dh_lines_enclose_activation_differences():
    """NeuroDiff's lines ``al dz + bl <= f(z') - f(z) <= au dz + bu`` (kernel helper
    ``_dh_lines``) hold exactly at random pairs ``z, z'`` of ``[a, b]`` with ``z' - z`` in
    ``[dl, du]``, for the piecewise-linear activations (Fractions), including the kink at 0."""
    from hybridq.kernels import ACT_CODES
    from hybridq.kernels.linear import _dh_lines
    from hybridq.network import _act_fraction

    rng = np.random.default_rng(21)
    checked = 0
    for act in ("relu", "leaky_relu", "hardtanh", "identity"):
        code = ACT_CODES[act]
        for _ in range(60):
            a = float(rng.uniform(-3, 1))
            b = a + float(rng.choice([0.0, rng.uniform(0, 4)]))
            dl = float(rng.uniform(-1, 0.3)) * float(rng.choice([1.0, 1e-4]))
            du = dl + float(rng.uniform(0, 1)) * float(rng.choice([1.0, 1e-4]))
            au, bu, al, bl, gu, gl = _dh_lines(code, 0.1, dl, du, a, b)
            assert gu >= 0.0 and gl >= 0.0
            for _ in range(40):
                z = Fraction(float(rng.uniform(a, b)))
                d = Fraction(float(rng.choice([dl, du, 0.0, rng.uniform(dl, du)])))
                zp = z + d
                if not (Fraction(a) <= zp <= Fraction(b)) or not (Fraction(dl) <= d <= Fraction(du)):
                    continue
                dh = _act_fraction(zp, act, 0.1) - _act_fraction(z, act, 0.1)
                assert Fraction(al) * d + Fraction(bl) <= dh <= Fraction(au) * d + Fraction(bu), (act, a, b, dl, du)
                checked += 1
        # an unstable relu difference: the chord slopes of max(0, dz) and min(0, dz)
    au, bu, al, bl, _, _ = _dh_lines(ACT_CODES["relu"], 0.0, -1.0, 3.0, -5.0, 5.0)
    assert au == pytest.approx(0.75) and bu == pytest.approx(0.75) and al == pytest.approx(0.25)
    assert bl == pytest.approx(-0.75)
    assert _dh_lines(ACT_CODES["relu"], 0.0, -np.inf, 1.0, -1.0, 1.0)[4] == np.inf
    assert checked > 1000


@pytest.mark.parametrize("seed", range(6))
def test_symbolic_difference_point_perturbation_sound(seed):
    """``point:fp16`` copies (the NeuroDiff question): the linear pass's deviation bounds (every
    ``inter``) contain the exact deviation ``y(x; fp16) - y(x)`` (Fractions) at box vertices and
    random points of wide boxes, where many neurons are unstable and the ``dz``-line relaxation
    of the difference neurons is chosen."""
    from hybridq.perturbation import perturbation

    rng = np.random.default_rng(100 + seed)
    acts = [rng.choice(["relu", "relu", "leaky_relu", "hardtanh"]) for _ in range(3)] + ["identity"]
    n_in = int(rng.integers(2, 5))
    net = _net(rng, acts, [n_in, 8, 8, 6, 2], prep=seed % 2 == 1)
    pert = perturbation("point:fp16", net)
    lo = rng.uniform(-1, 0, n_in)
    hi = lo + rng.uniform(0.2, 1.5, n_in)
    res = {inter: bounds(net, pert, (lo, hi), method="linear", inter=inter) for inter in (0, 1, 2, 3)}
    xs = [np.where(rng.random(n_in) < 0.5, lo, hi) for _ in range(6)] + [rng.uniform(lo, hi) for _ in range(14)]
    for x in xs:
        y = net.exact_logits(x, pert.center)
        y0 = net.exact_logits(x)
        for inter, B in res.items():
            for j in range(2):
                assert _contains(B.dev_logit_lo[0, j], B.dev_logit_hi[0, j], y[j] - y0[j]), (inter, j)
    # the difference bound stays far below the nominal output range (bounding both networks
    # separately gives widths of the order of the output range)
    B = res[2]
    assert np.all(B.dev_logit_hi[0] - B.dev_logit_lo[0] < 0.05 * (B.logit_hi[0] - B.logit_lo[0]))


@pytest.mark.parametrize("seed", range(6))
def test_inter3_and_inherited_clips_sound(seed):
    """``inter`` 3 (the perturbed network's CROWN rows only where ``dz`` is wide; every
    ``dz_ratio``) and children whose clips are their parent's perturbed bounds (as the branch and
    bound's children carry them; the nominal bounds are then clipped through ``z = z' - dz``):
    the bounds of every pre-activation of both networks and of the deviation contain the exact
    values (Fractions) at vertices and random points of each child, under a ``point:fp16`` copy
    and under a parameter box around a shifted centre."""
    from hybridq.perturbation import perturbation

    rng = np.random.default_rng(300 + seed)
    acts = [rng.choice(["relu", "relu", "leaky_relu", "hardtanh"]) for _ in range(3)] + ["identity"]
    n_in = int(rng.integers(2, 5))
    net = _net(rng, acts, [n_in, 8, 8, 6, 2], prep=seed % 2 == 1)
    pert = perturbation("point:fp16", net) if seed < 4 else _pert(rng, net, 0.01, shift=True)
    lo = rng.uniform(-1, 0, n_in)
    hi = lo + rng.uniform(0.2, 1.5, n_in)
    n = sum(net.widths[1:])
    for ratio in (0.0, 0.1, np.inf):
        root = bounds(net, pert, cells=[Cell.root(lo, hi, n)], method="linear", inter=3, dz_ratio=ratio)
        plo = np.concatenate([a[0] for a in root.pre_lo])
        phi = np.concatenate([a[0] for a in root.pre_hi])
        d = int(rng.integers(n_in))
        mid = 0.5 * (lo[d] + hi[d])
        kids = []
        for a, b in ((lo[d], mid), (mid, hi[d])):
            c = Cell.root(lo, hi, n)
            c.lower[d], c.upper[d] = a, b
            c.pre_lo[:], c.pre_hi[:] = plo, phi
            kids.append(c)
        B = bounds(net, pert, cells=kids, method="linear", inter=3, dz_ratio=ratio)
        assert not B.infeasible.any()
        for r, c in enumerate(kids):
            xs = [np.where(rng.random(n_in) < 0.5, c.lower, c.upper) for _ in range(4)]
            xs += [rng.uniform(c.lower, c.upper) for _ in range(6)]
            th = pert.center if seed < 4 else pert.snap_inside(pert.sample(rng))
            for x in xs:
                y, y0 = net.exact_logits(x, th), net.exact_logits(x)
                pre, pre0 = _exact_pre(net, x, th), _exact_pre(net, x, net.params)
                for j in range(2):
                    assert _contains(B.dev_logit_lo[r, j], B.dev_logit_hi[r, j], y[j] - y0[j]), (ratio, r, j)
                clo = np.concatenate([a[r] for a in B.pre_lo])
                chi = np.concatenate([a[r] for a in B.pre_hi])
                nlo = np.concatenate([a[r] for a in B.nom_pre_lo])
                nhi = np.concatenate([a[r] for a in B.nom_pre_hi])
                for j, (v, v0) in enumerate(zip(pre, pre0)):
                    assert _contains(clo[j], chi[j], v), (ratio, r, "pre", j)
                    assert _contains(nlo[j], nhi[j], v0), (ratio, r, "nom_pre", j)
            # the clips hold: no child bound is wider than its parent's
            assert np.all(clo >= plo) and np.all(chi <= phi)
    # a clip that contradicts the nominal bounds through z = z' - dz proves the cell empty
    c = Cell.root(lo, hi, n)
    nom = bounds(net, pert, cells=[c], method="linear", inter=3)
    c.pre_hi[0] = nom.nom_pre_lo[0][0, 0] - 1.0
    assert bounds(net, pert, cells=[c], method="linear", inter=3).infeasible[0]


def test_softmax_scores_with_logit_gaps_beyond_exp_range():
    """Logits that differ by more than ~709 (exp overflows float64): the softmax score bounds
    stay finite and enclose the exact scores (``_exp_lo`` gave ``inf - inf = NaN`` before)."""
    W1 = np.eye(2)
    W2 = np.array([[-400.0, 0.0], [400.0, 0.0]])
    net = Network((Layer(W1, np.zeros(2), "relu"), Layer(W2, np.zeros(2), "identity")), output="softmax")
    pert = perturbation("abs:0.001", net)
    for method in METHODS:
        ob = bounds(net, pert, np.array([1.0, 0.5]), method=method)
        for a in (ob.score_lo, ob.score_hi, ob.dev_score_lo, ob.dev_score_hi):
            assert not np.isnan(a).any(), method
        # nominal scores: s_0 = 1 / (1 + e^800) in (0, 2^-1000), s_1 = 1 - s_0
        assert ob.score_lo[0, 0] == 0.0 and 0.0 < ob.score_hi[0, 0] < 2.0**-1000
        assert ob.score_lo[0, 1] < 1.0 <= ob.score_hi[0, 1]
        assert ob.dev_score_lo[0, 0] < 0.0 < ob.dev_score_hi[0, 0] < 2.0**-1000
