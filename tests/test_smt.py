"""SMT backends: table, exactness of the reduced encoding, properties, cells, bounds and errors."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest

from hybridq.cell import Cell
from hybridq.errors import BackendUnavailableError, PerturbationError
from hybridq.inputs import InputBox
from hybridq.network import Layer, Network
from hybridq.perturbation import Perturbation
from hybridq.properties import Decision, Deviation, OutputConstraint
from hybridq.smt import (BACKENDS, PREFERENCE, Sat, Unknown, Unsat, backends_table, get_backend, pure_smt)
from hybridq.smt import encode as enc


def _dreal_import_error() -> str | None:
    try:
        import dreal  # noqa: F401
    except Exception as err:  # noqa: BLE001 - ImportError or a broken libibex.so
        return f"{type(err).__name__}: {err}"
    return None


DREAL_ERR = _dreal_import_error()
requires_dreal = pytest.mark.skipif(DREAL_ERR is not None, reason=f"dReal not importable ({DREAL_ERR})")
#: Backends of the parametrized exactness tests; dReal runs where it imports and is reported as a
#: skip with the import error elsewhere (CI has no libibex.so).
AVAILABLE = ["z3", "milp", pytest.param("dreal", marks=requires_dreal)]
#: Relative slack above an exact maximum at which each backend must prove it (see the test).
EXACT_SLACK = {"z3": Fraction(0), "milp": Fraction(1, 10**9), "dreal": Fraction(1, 10**6)}


def radius_like(params, eps_w, eps_b=None):
    eps_b = eps_w if eps_b is None else eps_b
    return tuple((np.full(W.shape, eps_w), np.full(b.shape, eps_b)) for W, b in params)


def root(net, lower, upper):
    return Cell.root(lower, upper, sum(l.n_out for l in net.layers))


def recheck(net, pert, cell, prop, out):
    assert isinstance(out, Sat)
    assert np.all(out.x >= cell.lower) and np.all(out.x <= cell.upper)
    assert pert.contains(out.params)
    assert prop.check_exact(net, out.x, out.params)


# ---------------------------------------------------------------- backend table
def test_backend_table_lists_z3_available_and_dreal_with_reason():
    rows = {r[0]: r for r in backends_table()}
    assert [r[0] for r in backends_table()] == list(PREFERENCE)
    assert rows["z3"][1] is True and set(rows["z3"][2]) == {"LRA", "NRA"}
    assert rows["dreal"][1] is (DREAL_ERR is None)
    assert "transcendental" in rows["dreal"][2] and "delta" in rows["dreal"][2]
    assert BACKENDS["z3"].package == "z3-solver" and BACKENDS["dreal"].package == "dreal"
    assert rows["milp"][1] is True and "MILP" in rows["milp"][2] and BACKENDS["milp"].package == "highspy"
    if DREAL_ERR is not None:
        assert "libibex.so" in rows["dreal"][3] and "pip install dreal" in rows["dreal"][3]


def test_get_backend_auto_and_errors():
    b = get_backend("auto")
    assert b.name == "auto"
    relu = Network((Layer(np.ones((2, 2)), np.zeros(2), "relu"), Layer(np.ones((1, 2)), np.zeros(1), "identity")))
    leaky = Network((Layer(np.ones((2, 2)), np.zeros(2), "leaky_relu"), Layer(np.ones((1, 2)), np.zeros(1))))
    sig = Network((Layer(np.ones((2, 2)), np.zeros(2), "sigmoid"), Layer(np.ones((1, 2)), np.zeros(1))))
    # per cell by what the query is, whatever is installed: never dReal for piecewise-linear cells
    assert b.choose(relu, Deviation(0.1)) == ("milp", "z3")
    assert b.choose(leaky, Deviation(0.1)) == ("z3",)
    assert b.choose(sig, Deviation(0.1)) == ("dreal", "z3")
    out = b.check(relu, Perturbation(relu.params, tuple((np.full_like(W, 0.01), np.full_like(c, 0.01))
                                                          for W, c in relu.params)),
                  root(relu, [0, 0], [1, 1]), Deviation(10.0), 10)
    assert isinstance(out, Unsat) and out.stats["backend"] == "milp"
    assert get_backend("z3").name == "z3"
    with pytest.raises(ValueError, match="unknown SMT backend 'cvc9'"):
        get_backend("cvc9")


@pytest.mark.skipif(DREAL_ERR is None, reason="dReal is importable here")
def test_dreal_missing_raises_with_install_message():
    with pytest.raises(BackendUnavailableError) as err:
        get_backend("dreal")
    msg = str(err.value)
    assert "libibex.so" in msg and "pip install dreal" in msg and "z3" in msg
    import hybridq.smt.dreal as mod  # the module itself imports without dReal

    assert mod.DrealBackend.name == "dreal"


# -------------------------------------------------------------- exactness (§2)
def test_extreme_noise_is_attained_by_weights_in_the_box():
    """For sampled x and a random point of the box, each neuron's extreme noise
    +-(R|h'| + rb) is reached by concrete weights inside the box (exact Fractions), and the
    float64 weights of the pullback reach it to rounding and lie in the box."""
    rng = np.random.default_rng(7)
    for trial in range(8):
        widths = [int(rng.integers(2, 5))] + [int(rng.integers(2, 7)) for _ in range(2)] + [2]
        acts = [str(rng.choice(["relu", "identity", "leaky_relu", "hardtanh"])) for _ in widths[2:]] + ["identity"]
        net = Network(tuple(Layer(rng.normal(size=(widths[k + 1], widths[k])), rng.normal(size=widths[k + 1]),
                                  acts[k]) for k in range(len(widths) - 1)))
        pert = Perturbation(net.params, tuple((0.1 * np.abs(W) * (rng.random(W.shape) < 0.8), np.full(b.shape, 0.05))
                                              for W, b in net.params))
        x = rng.uniform(-2, 2, net.n_in)
        params = pert.sample(rng)
        h = [Fraction(float(v)) for v in x]
        for k, layer in enumerate(net.layers):
            (C, c), (R, rb) = pert.center[k], pert.radius[k]
            for j in range(layer.n_out):
                cen = Fraction(float(c[j])) + sum(Fraction(float(C[j, i])) * h[i] for i in range(layer.n_in))
                bnd = Fraction(float(rb[j])) + sum(Fraction(float(R[j, i])) * abs(h[i]) for i in range(layer.n_in))
                for s in (-1, 1):
                    sg = [(v > 0) - (v < 0) for v in h]
                    t = [Fraction(float(C[j, i])) + s * sg[i] * Fraction(float(R[j, i])) for i in range(layer.n_in)]
                    tb = Fraction(float(c[j])) + s * Fraction(float(rb[j]))
                    assert all(abs(t[i] - Fraction(float(C[j, i]))) <= Fraction(float(R[j, i])) for i in range(layer.n_in))
                    z = tb + sum(t[i] * h[i] for i in range(layer.n_in))
                    assert z == cen + s * bnd
            # continue through the layer with the sampled parameters
            W, b = params[k]
            z = [Fraction(float(b[j])) + sum(Fraction(float(W[j, i])) * h[i] for i in range(layer.n_in))
                 for j in range(layer.n_out)]
            h = [enc._act_const(v, layer.activation, Fraction(layer.alpha)) for v in z]
        # the pullback reaches the extreme pre-activations of layer 1 (float weights, in the box)
        box = InputBox.point(x)
        q = enc.Query.build(net, pert, Cell.root(box.lower, box.upper, sum(net.widths[1:])), Deviation(1.0))
        (C, c), (R, rb) = pert.center[0], pert.radius[0]
        hx = [Fraction(float(v)) for v in x]
        cen = [Fraction(float(c[j])) + sum(Fraction(float(C[j, i])) * hx[i] for i in range(net.n_in)) for j in range(len(c))]
        bnd = [Fraction(float(rb[j])) + sum(Fraction(float(R[j, i])) * abs(hx[i]) for i in range(net.n_in)) for j in range(len(c))]
        s = rng.choice([-1, 1], len(c))
        target = [cen[j] + int(s[j]) * bnd[j] for j in range(len(c))]
        xr, p = enc.pullback(q, [Fraction(float(v)) for v in x], [target])
        assert pert.contains(p)
        W, b = p[0]
        for j in range(len(c)):
            z = Fraction(float(b[j])) + sum(Fraction(float(W[j, i])) * hx[i] for i in range(net.n_in))
            assert abs(z - target[j]) <= Fraction(1, 10**12) * (1 + abs(target[j]))


@pytest.mark.parametrize("backend", AVAILABLE)
def test_reduced_encoding_is_exact_for_one_layer(backend):
    """One affine layer at a point x: the largest deviation is exactly B = R|x| + rb (times the
    output scale).  The encoding must be Sat just below B and Unsat at B: a sound but loose
    encoding would not be Unsat there, an unsound one would not be Sat below."""
    rng = np.random.default_rng(3)
    net = Network((Layer(rng.normal(size=(2, 3)), rng.normal(size=2), "identity"),),
                  output_std=np.array([2.0, 0.5]), output_mean=np.array([1.0, -1.0]))
    pert = Perturbation(net.params, (((np.abs(net.params[0][0]) * 0.03), np.array([0.01, 0.0])),))
    x = np.array([0.3, -1.7, 0.9])
    cell = root(net, x, x)
    b = get_backend(backend)
    for j in range(2):
        B = (Fraction(float(pert.radius[0][1][j])) + sum(Fraction(float(r)) * abs(Fraction(float(v)))
                                                         for r, v in zip(pert.radius[0][0][j], x)))
        B *= Fraction(float(net.output_std[j]))
        # exact rationals (z3) prove it at B itself; the certified float stage (milp) and the
        # delta-complete dReal (which answers delta-sat at B, correctly unconfirmed) just above
        Bt = B * (1 + EXACT_SLACK[backend])
        d_hi = float(Bt) if Fraction(float(Bt)) >= Bt else float(np.nextafter(float(Bt), np.inf))
        out = b.check(net, pert, cell, Deviation(d_hi, outputs=(j,)), 20)
        assert isinstance(out, Unsat), out
        prop = Deviation(float(B) * (1 - 1e-9), outputs=(j,))
        out = b.check(net, pert, cell, prop, 20)
        recheck(net, pert, cell, prop, out)


# ------------------------------------------------------------------- properties
def small_relu_net():
    W1 = np.array([[1.0, -1.0], [0.5, 1.0], [-1.0, 0.25]])
    b1 = np.array([0.1, -0.2, 0.3])
    W2 = np.array([[1.0, -0.5, 0.75], [-1.0, 1.0, 0.5]])
    b2 = np.array([0.2, -0.1])
    return Network((Layer(W1, b1, "relu"), Layer(W2, b2, "identity")))


@pytest.mark.parametrize("encoding", ["reduced", "pure"])
def test_decision_property_matches_sampled_worst_margin(encoding):
    net = small_relu_net()
    pert = Perturbation(net.params, radius_like(net.params, 0.05))
    lo, hi = np.array([0.5, -0.6]), np.array([0.7, -0.4])
    cell = root(net, lo, hi)
    label = int(np.argmax(net.forward((lo + hi) / 2)))
    rng = np.random.default_rng(0)
    worst = min(float(np.min(-Decision(label).margin(net, net.forward(rng.uniform(lo, hi, (50, 2)), pert.sample(rng)))))
                for _ in range(200))
    b = get_backend("z3")
    sat_prop = Decision(label, kappa=worst + 0.01)  # a sampled pair already breaks it
    recheck(net, pert, cell, sat_prop, b.check(net, pert, cell, sat_prop, 20, encoding=encoding))
    unsat_prop = Decision(label, kappa=0.0)
    out = b.check(net, pert, cell, unsat_prop, 20, encoding=encoding)
    assert isinstance(out, Unsat), (worst, out)


def test_output_constraint_unsafe_set():
    net = small_relu_net()
    pert = Perturbation(net.params, radius_like(net.params, 0.02))
    x = np.array([0.6, -0.5])
    cell = root(net, x, x)
    y0 = net.forward(x)
    b = get_backend("z3")
    # unsafe: y_0 >= y0_0 + 0.01 OR y_1 <= y0_1 - 10 (the first is reachable, the second not)
    reach = OutputConstraint(((np.array([[-1.0, 0.0]]), np.array([-(y0[0] + 0.01)])),
                              (np.array([[0.0, 1.0]]), np.array([y0[1] - 10.0]))))
    recheck(net, pert, cell, reach, b.check(net, pert, cell, reach, 20))
    far = OutputConstraint(((np.array([[-1.0, 0.0], [0.0, 1.0]]), np.array([-(y0[0] + 5.0), 100.0])),))
    assert isinstance(b.check(net, pert, cell, far, 20), Unsat)


def test_score_space_sigmoid_uses_exact_logit_threshold():
    W = np.array([[0.8, -1.2]])
    net = Network((Layer(W, np.array([0.3]), "identity"),), output="sigmoid")
    pert = Perturbation(net.params, ((np.full((1, 2), 0.05), np.array([0.02])),))
    x = np.array([0.7, 0.4])
    cell = root(net, x, x)
    y0 = float(net.forward(x)[0])
    B = 0.02 + 0.05 * (0.7 + 0.4)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    dmax = max(sig(y0 + B) - sig(y0), sig(y0) - sig(y0 - B))
    b = get_backend("z3")
    prop = Deviation(dmax * (1 - 1e-6), space="score")
    recheck(net, pert, cell, prop, b.check(net, pert, cell, prop, 20))
    assert isinstance(b.check(net, pert, cell, Deviation(dmax * (1 + 1e-6), space="score"), 20), Unsat)
    # on a box the nominal logit varies: not expressible in LRA -> Unknown with the reason
    out = b.check(net, pert, root(net, x - 0.1, x + 0.1), Deviation(0.01, space="score"), 20)
    assert isinstance(out, Unknown) and out.kind == "unsupported" and "logit threshold" in out.reason


def test_sigmoid_hidden_layer_is_unknown_on_z3():
    net = Network((Layer(np.eye(2), np.zeros(2), "sigmoid"), Layer(np.ones((1, 2)), np.zeros(1), "identity")))
    pert = Perturbation(net.params, radius_like(net.params, 0.01))
    out = get_backend("z3").check(net, pert, root(net, [0, 0], [1, 1]), Deviation(0.5), 5)
    assert isinstance(out, Unknown) and out.kind == "unsupported"
    assert "sigmoid" in out.reason and "dreal" in out.reason


@requires_dreal
def test_dreal_sigmoid_hidden_layer():  # pragma: no cover - needs libibex.so
    net = Network((Layer(np.eye(2), np.zeros(2), "sigmoid"), Layer(np.ones((1, 2)), np.zeros(1), "identity")))
    pert = Perturbation(net.params, radius_like(net.params, 0.01))
    cell = root(net, [0, 0], [1, 1])
    b = get_backend("dreal", delta=1e-4)
    assert isinstance(b.check(net, pert, cell, Deviation(1.0), 30), Unsat)
    out = b.check(net, pert, cell, Deviation(1e-4), 30)
    assert not isinstance(out, Unsat)
    if isinstance(out, Sat):
        recheck(net, pert, cell, Deviation(1e-4), out)


def test_point_perturbation_quantized_copy_against_theta0():
    """Radius 0 around a quantized copy: the verdict is the exact deviation of the copy."""
    net = small_relu_net()
    q = tuple((np.round(W * 8) / 8, np.round(b * 8) / 8) for W, b in net.params)
    pert = Perturbation(q, radius_like(net.params, 0.0))
    x = np.array([0.3, -0.2])
    dev = [abs(a - b) for a, b in zip(net.exact_logits(x, q), net.exact_logits(x))]
    d = float(max(dev))
    b = get_backend("z3")
    cell = root(net, x, x)
    assert isinstance(b.check(net, pert, cell, Deviation(d), 10), Unsat)
    prop = Deviation(d * (1 - 1e-9))
    out = b.check(net, pert, cell, prop, 10)
    recheck(net, pert, cell, prop, out)
    assert all(np.array_equal(W, Wq) for (W, _), (Wq, _) in zip(out.params, q))


def test_clamp_normalization_and_denormalization():
    net = Network((Layer(np.array([[2.0, -1.0], [0.5, 0.5]]), np.array([0.1, 0.0]), "relu"),
                   Layer(np.array([[1.0, -2.0]]), np.array([0.5]), "identity")),
                  input_mean=[0.5, -0.25], input_std=[3.0, 0.75], input_lower=[-1.0, -1.0], input_upper=[1.0, 1.0],
                  output_mean=[10.0], output_std=[4.0])
    pert = Perturbation(net.params, radius_like(net.params, 0.03))
    lo, hi = np.array([0.5, -3.0]), np.array([2.0, 0.0])  # crosses the clamp
    cell = root(net, lo, hi)
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(300):
        xs = rng.uniform(lo, hi, (20, 2))
        worst = max(worst, float(np.max(np.abs(net.forward(xs, pert.sample(rng)) - net.forward(xs)))))
    b = get_backend("z3")
    prop = Deviation(worst * 0.999)
    recheck(net, pert, cell, prop, b.check(net, pert, cell, prop, 20))
    out_hi = b.check(net, pert, cell, Deviation(worst * 1.5), 20)
    assert isinstance(out_hi, Unsat)
    assert isinstance(pure_smt(net, pert, InputBox(lo, hi), Deviation(worst * 1.5), timeout=20), Unsat)


# ------------------------------------------------------------ cells and bounds
def test_phase_clip_restricts_the_cell():
    """1-1-1 ReLU net; in the inactive phase of the hidden neuron y' is the output bias alone."""
    net = Network((Layer(np.array([[1.0]]), np.array([0.0]), "relu"), Layer(np.array([[1.0]]), np.array([0.0]), "identity")))
    pert = Perturbation(net.params, ((np.array([[0.1]]), np.array([0.1])), (np.array([[0.1]]), np.array([0.05]))))
    b = get_backend("z3")
    above = lambda v: OutputConstraint(((np.array([[-1.0]]), np.array([-v])),))  # noqa: E731  y' >= v
    cell = root(net, [-1.0], [1.0])
    assert isinstance(b.check(net, pert, cell, above(0.06), 10), Sat)
    inactive = Cell(np.array([-1.0]), np.array([1.0]), np.array([-np.inf, -np.inf]), np.array([0.0, np.inf]), depth=1)
    assert isinstance(b.check(net, pert, inactive, above(0.0500001), 10), Unsat)
    prop = above(0.0499)
    out = b.check(net, pert, inactive, prop, 10)
    recheck(net, pert, inactive, prop, out)
    z1 = Fraction(float(out.params[0][0][0, 0])) * Fraction(float(out.x[0])) + Fraction(float(out.params[0][1][0]))
    assert z1 <= 0  # the witness lies in the clipped phase


@dataclass
class Bounds:
    pre_lo: list
    pre_hi: list
    nom_pre_lo: list
    nom_pre_hi: list


def interval_bounds(net, pert, lo, hi, slack=1e-9):
    """Plain interval arithmetic with a generous outward slack (sound for these tiny nets)."""
    hl, hh = net.normalize(lo[None])[0], net.normalize(hi[None])[0]
    nl, nh = hl.copy(), hh.copy()
    out = Bounds([], [], [], [])
    for l, (C, c), (R, rb) in zip(net.layers, pert.center, pert.radius):
        mag = np.maximum(np.abs(hl), np.abs(hh))
        zl = np.maximum(C, 0) @ hl + np.minimum(C, 0) @ hh + c - (R @ mag + rb)
        zh = np.maximum(C, 0) @ hh + np.minimum(C, 0) @ hl + c + (R @ mag + rb)
        W, b = l.W, l.b
        ml = np.maximum(W, 0) @ nl + np.minimum(W, 0) @ nh + b
        mh = np.maximum(W, 0) @ nh + np.minimum(W, 0) @ nl + b
        s = slack * (1 + np.abs(zl) + np.abs(zh))
        out.pre_lo.append(zl - s)
        out.pre_hi.append(zh + s)
        out.nom_pre_lo.append((ml - s)[None])  # (1, n_k) rows are accepted too
        out.nom_pre_hi.append((mh + s)[None])
        act = (lambda v: np.maximum(v, 0)) if l.activation == "relu" else (lambda v: v)
        hl, hh, nl, nh = act(zl - s), act(zh + s), act(ml - s), act(mh + s)
    return out


def test_neuron_bounds_do_not_change_verdicts():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_smt_crosscheck import pick_property, random_case

    b = get_backend("z3")
    agree = 0
    for seed in range(300, 322):
        rng, net, pert, box = random_case(seed)
        prop = pick_property(rng, net, pert, box)
        cell = root(net, box.lower, box.upper)
        nb = interval_bounds(net, pert, box.lower, box.upper)
        a = b.check(net, pert, cell, prop, 2.0)
        c = b.check(net, pert, cell, prop, 2.0, neuron_bounds=nb)
        if isinstance(c, Sat):
            recheck(net, pert, cell, prop, c)
        if not isinstance(a, Unknown) and not isinstance(c, Unknown):
            assert type(a) is type(c), seed
            agree += 1
    assert agree >= 15


# ---------------------------------------------------------------------- errors
def test_bad_arguments_raise_clear_errors():
    net = small_relu_net()
    pert = Perturbation(net.params, radius_like(net.params, 0.01))
    b = get_backend("z3")
    with pytest.raises(ValueError, match="cell input box"):
        b.check(net, pert, Cell.root([0.0], [1.0], 5), Deviation(0.1), 1)
    with pytest.raises(ValueError, match="phase clips"):
        b.check(net, pert, Cell.root([0.0, 0.0], [1.0, 1.0], 4), Deviation(0.1), 1)
    with pytest.raises(ValueError, match="encoding"):
        b.check(net, pert, root(net, [0, 0], [1, 1]), Deviation(0.1), 1, encoding="fancy")
    with pytest.raises(ValueError, match="label 5"):
        b.check(net, pert, root(net, [0, 0], [1, 1]), Decision(5), 1)
    bad = Bounds([np.zeros(3), np.zeros(1)], [np.zeros(3), np.zeros(2)], None, None)
    with pytest.raises(ValueError, match="neuron_bounds.pre_lo"):
        b.check(net, pert, root(net, [0, 0], [1, 1]), Deviation(0.1), 1, neuron_bounds=bad)
    other = Perturbation(((np.zeros((3, 3)), np.zeros(3)),), ((np.zeros((3, 3)), np.zeros(3)),))
    with pytest.raises(PerturbationError):
        b.check(net, other, root(net, [0, 0], [1, 1]), Deviation(0.1), 1)


def test_timeout_gives_unknown_quickly():
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_smt_crosscheck import pick_property, random_case

    rng, net, pert, box = random_case(37)  # a hard instance (z3 needs > 20 s)
    prop = pick_property(rng, net, pert, box)
    t0 = time.perf_counter()
    out = get_backend("z3").check(net, pert, root(net, box.lower, box.upper), prop, 0.2)
    assert time.perf_counter() - t0 < 3.0
    assert isinstance(out, Unknown) and out.kind == "timeout"


def test_pure_entry_point_equals_check_with_pure_encoding():
    net = small_relu_net()
    pert = Perturbation(net.params, radius_like(net.params, 0.05))
    box = InputBox([0.1, 0.1], [0.3, 0.4])
    for d in (0.01, 5.0):
        a = pure_smt(net, pert, box, Deviation(d), backend="z3", timeout=20)
        c = get_backend("z3").check(net, pert, root(net, box.lower, box.upper), Deviation(d), 20, encoding="pure", ibp=False)
        assert type(a) is type(c) and a.stats["encoding"] == "pure"
    assert isinstance(a, Unsat)


# ------------------------------------------------------- unconfirmed models
class _Garbling:
    """Wraps the z3 backend; the first ``n_bad`` models are replaced by one without a violation
    (the nominal weights at the box centre), as a delta-sat box or a rounding mishap could give."""

    def __init__(self, n_bad):
        from hybridq.smt.z3 import Z3Backend

        class B(Z3Backend):
            bad = n_bad

            def solve(self, ar, formula, timeout):
                ans = super().solve(ar, formula, timeout)
                if ans.status == "sat" and B.bad > 0:
                    B.bad -= 1
                    ans.value = lambda term: None  # x -> box centre, weights -> the centre (no deviation)
                return ans

        self.backend = B()


def test_model_failing_the_exact_recheck_is_retried_or_unconfirmed():
    net = small_relu_net()
    pert = Perturbation(net.params, radius_like(net.params, 0.05))
    cell = root(net, [0.5, -0.6], [0.7, -0.4])
    prop = Deviation(0.01)
    out = _Garbling(1).backend.check(net, pert, cell, prop, 20)
    recheck(net, pert, cell, prop, out)
    assert out.stats["retries"] >= 1
    out = _Garbling(100).backend.check(net, pert, cell, prop, 20)
    assert isinstance(out, Unknown) and out.kind == "unconfirmed" and "re-check" in out.reason


def test_softmax_score_deviation_is_unknown_on_z3():
    net = Network((Layer(np.eye(2), np.zeros(2), "identity"),), output="softmax")
    pert = Perturbation(net.params, radius_like(net.params, 0.01))
    out = get_backend("z3").check(net, pert, root(net, [0, 0], [0, 0]), Deviation(0.01, space="score"), 5)
    assert isinstance(out, Unknown) and out.kind == "unsupported" and "softmax" in out.reason


def test_leaky_and_hardtanh_layers_reduced_agrees_with_pure_and_sampling():
    """Sign-changing hidden activations need |h'| as an if-then-else in the reduced encoding."""
    rng = np.random.default_rng(11)
    b = get_backend("z3", rlimit=300_000)
    finished = 0
    for trial in range(8):
        acts = [str(rng.choice(["leaky_relu", "hardtanh"])) for _ in range(2)]
        net = Network((Layer(rng.normal(size=(4, 2)), rng.normal(size=4) * 0.5, acts[0], alpha=0.1),
                       Layer(rng.normal(size=(3, 4)) / 2, rng.normal(size=3) * 0.5, acts[1], alpha=0.2),
                       Layer(rng.normal(size=(1, 3)), rng.normal(size=1), "identity")))
        pert = Perturbation(net.params, radius_like(net.params, 0.05))
        x0 = rng.uniform(-1, 1, 2)
        lo, hi = x0 - 0.2, x0 + 0.2
        cell = root(net, lo, hi)
        worst = 0.0
        samples = []
        for _ in range(60):
            p = pert.sample(rng)
            xs = np.vstack([rng.uniform(lo, hi, (20, 2)), [lo, hi, [lo[0], hi[1]], [hi[0], lo[1]]]])
            dev = np.abs(net.forward(xs, p) - net.forward(xs))[:, 0]
            worst = max(worst, float(dev.max()))
            samples.append((xs[int(np.argmax(dev))], p))
        prop = Deviation(worst * float(rng.choice([0.8, 1.3])))
        red = b.check(net, pert, cell, prop, 20)
        pure = b.check(net, pert, cell, prop, 20, encoding="pure", ibp=False)
        for out in (red, pure):
            if isinstance(out, Sat):
                recheck(net, pert, cell, prop, out)
            if isinstance(out, Unsat):
                assert not any(prop.check_exact(net, x, p) for x, p in samples)
        if not isinstance(red, Unknown) and not isinstance(pure, Unknown):
            finished += 1
            assert type(red) is type(pure), (trial, red, pure)
    assert finished >= 4


@pytest.mark.parametrize("bias", [-1.0, -46.0])
def test_score_space_sigmoid_threshold_keeps_its_sign(bias):
    """Negative logit thresholds (nominal score below one half): ``mpf.man_exp`` dropped the sign,
    so ``y' > t_up`` became ``y' > |t_up|`` and z3 proved 'robust' where the score moves by more than
    delta (bias -46: y0 = -45 and y' up to -44, deviation 4.9e-20 > 4e-20, which float64 sigmoids do
    not even see, so only the SMT stage decides it)."""
    W = np.array([[0.8, -1.2]])
    net = Network((Layer(W, np.array([bias]), "identity"),), output="sigmoid")
    pert = Perturbation(net.params, ((np.zeros((1, 2)), np.array([1.0])),))
    x = np.array([0.7, 0.4])
    cell = root(net, x, x)
    y0 = Fraction(0.8) * Fraction(0.7) - Fraction(1.2) * Fraction(0.4) + Fraction(bias)
    t_up, t_dn = enc._sigmoid_thresholds(y0, Fraction(1, 100))
    assert t_up < 0 and (t_dn is None or t_dn < t_up)
    import mpmath

    with mpmath.workdps(60):
        sig = lambda v: 1 / (1 + mpmath.exp(-mpmath.mpf(v.numerator) / v.denominator))  # noqa: E731
        dmax = max(sig(y0 + 1) - sig(y0), sig(y0) - sig(y0 - 1))
        below, above = str(dmax * (1 - mpmath.mpf("1e-6"))), str(dmax * (1 + mpmath.mpf("1e-6")))
    b = get_backend("z3")
    recheck(net, pert, cell, Deviation(below, space="score"), b.check(net, pert, cell, Deviation(below, space="score"), 20))
    assert isinstance(b.check(net, pert, cell, Deviation(above, space="score"), 20), Unsat)


def test_exact_violation_that_float_misses_reports_margin_zero():
    """y0 = -45, y' up to -44: the score deviation 4.9e-20 > 4e-20 is exact, but float64 sigmoids
    cancel to 0 there; the counterexample's float margin was printed as 'margin -4e-20'."""
    from hybridq import verify

    net = Network((Layer(np.array([[1.0]]), np.array([0.0]), "leaky_relu", 0.5),
                   Layer(np.array([[1.0]]), np.array([-46.0]), "identity")), output="sigmoid")
    pert = Perturbation(net.params, ((np.zeros((1, 1)), np.zeros(1)), (np.zeros((1, 1)), np.array([1.0]))))
    res = verify(net, pert, np.array([1.0]), Deviation("4e-20", space="score"), jobs=1, timeout=20)
    assert res.verdict == "not_robust"
    assert res.counterexample.margin >= 0 and "margin -" not in res.summary()
    assert res.counterexample.value > 4e-20
