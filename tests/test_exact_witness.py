"""Counterexamples are re-checked against the exact decimal numbers the user wrote.

Every spec here has constants that are not float64 values (decimals strictly between two adjacent
doubles) at input-box ends and in output constraints, chosen so that the outward-rounded float
problem is violated while the decimal problem is not (no ``not_robust`` allowed), or so that the
decimal problem is violated by a margin of 1e-40 (``not_robust`` required, at the exact point).
"""

from __future__ import annotations

from decimal import Context, Decimal
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from hybridq import Decision, Deviation, InputBox, Layer, Network, OutputConstraint
from hybridq.bab import verify
from cli_helpers import run_cli as _cli
from hybridq.io.vnnlib import parse_vnnlib
from hybridq.perturbation import perturbation

TINY = Fraction(1, 10 ** 40)


def dec(q: Fraction) -> str:
    """The exact decimal text of a rational whose denominator has only the factors 2 and 5."""
    s = format(Context(prec=3000).divide(Decimal(q.numerator), Decimal(q.denominator)), "f")
    assert Fraction(s) == q, "not a finite decimal"
    return s


def between(f: float) -> Fraction:
    """The midpoint of ``f`` and the next double up: a decimal that no double equals."""
    q = (Fraction(f) + Fraction(float(np.nextafter(f, np.inf)))) / 2
    assert Fraction(float(q)) != q
    return q


def vnnlib(lo, hi, rows) -> str:
    """VNNLIB text: box ``[lo_i, hi_i]`` (exact decimals) and a conjunction of ``Y_j <= c`` /
    ``Y_j >= c`` rows given as ``(j, op, c)``."""
    n_out = 1 + max(j for j, _, _ in rows)
    head = "".join(f"(declare-const X_{i} Real)\n" for i in range(len(lo)))
    head += "".join(f"(declare-const Y_{j} Real)\n" for j in range(max(n_out, 2)))
    box = "".join(f"(assert (>= X_{i} {dec(a)}))\n(assert (<= X_{i} {dec(b)}))\n" for i, (a, b) in enumerate(zip(lo, hi)))
    out = "".join(f"(assert ({op} Y_{j} {dec(c)}))\n" for j, op, c in rows)
    return head + box + out


def relu_net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    return Network((Layer(rng.normal(size=(4, 2)), 0.3 * rng.normal(size=4), "relu"),
                    Layer(rng.normal(size=(2, 4)), 0.3 * rng.normal(size=2), "identity")))


def linear_net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    return Network((Layer(rng.normal(size=(3, 2)), rng.normal(size=3), "identity"),
                    Layer(rng.normal(size=(2, 3)), rng.normal(size=2), "identity")))


def exact_affine(net: Network):
    """``(A, a)`` with ``y = A x + a`` exactly, for a network of identity layers."""
    A = [[Fraction(int(i == j)) for j in range(net.n_in)] for i in range(net.n_in)]
    a = [Fraction(0)] * net.n_in
    for l in net.layers:
        W = [[Fraction(float(w)) for w in row] for row in l.W]
        A = [[sum(W[i][k] * A[k][j] for k in range(len(A))) for j in range(net.n_in)] for i in range(len(W))]
        a = [sum(W[i][k] * a[k] for k in range(len(a))) + Fraction(float(l.b[i])) for i in range(len(W))]
    return A, a


def run(net, text, pert="abs:0", backend="auto"):
    ((box, con),) = parse_vnnlib(text, net.n_in, net.n_out)
    return box, con, verify(net, perturbation(pert, net), box, con, backend=backend, jobs=1, timeout=60)


def assert_exact_cex(net, box, con, res, x_expected=None):
    assert res.verdict == "not_robust"
    cx = res.counterexample
    x = cx.x_exact if cx.x_exact is not None else tuple(Fraction(float(v)) for v in cx.x)
    assert box.contains_exact(x)
    assert con.check_exact(net, np.array(x, dtype=object), cx.params)
    if x_expected is not None:
        assert tuple(x) == tuple(x_expected)


# ----------------------------------------------------------------------- the issue's reproductions
@pytest.mark.parametrize("point, c", [("0.5", "0.49999999999999999999"), ("0.1", "0.09999999999999999999")])
def test_issue_reproduction_y_equals_x_is_robust(point, c):
    net = Network((Layer([[1.0]], [0.0], "identity"),))
    text = (f"(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 {point}))(assert (<= X_0 {point}))"
            f"(assert (<= Y_0 {c}))")
    _, _, res = run(net, text)
    assert res.verdict == "robust"  # z3 decides the exact decimal problem
    _, _, res = run(net, text, backend="none")
    assert res.verdict in ("robust", "unknown")  # bounds and attacks alone: never a wrong not_robust


@pytest.mark.parametrize("point, c", [("0.5", "0.50000000000000000001"), ("0.1", "0.10000000000000000001")])
def test_issue_reproduction_really_violated(point, c):
    net = Network((Layer([[1.0]], [0.0], "identity"),))
    text = (f"(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 {point}))(assert (<= X_0 {point}))"
            f"(assert (<= Y_0 {c}))")
    box, con, res = run(net, text, backend="none")
    assert_exact_cex(net, box, con, res, (Fraction(point),))
    assert (res.counterexample.x_exact is None) == (point == "0.5")  # 0.1 is no double: kept exactly


# ----------------------------------------------------------------------- generated specs
@pytest.mark.parametrize("seed", range(8))
def test_decimal_point_box_relu(seed):
    """Point box at a decimal between two doubles; ``Y_j <= y_j(d) -+ 1e-40``."""
    net = relu_net(seed)
    rng = np.random.default_rng(1000 + seed)
    d = [between(float(v)) for v in rng.uniform(-1, 1, size=2)]
    y = net.exact_logits(np.array(d, dtype=object))
    j = int(rng.integers(2))
    # float box [f, next(f)] per input: y_j moves by about 1e-16 over it, far more than 1e-40
    _, _, res = run(net, vnnlib(d, d, [(j, "<=", y[j] - TINY)]))
    assert res.verdict == "robust"
    box, con, res = run(net, vnnlib(d, d, [(j, "<=", y[j] + TINY)]), backend="none")
    assert_exact_cex(net, box, con, res, tuple(d))
    box, con, res = run(net, vnnlib(d, d, [(j, ">=", y[j] + TINY)]))
    assert res.verdict == "robust"


@pytest.mark.parametrize("seed", range(8))
def test_decimal_box_ends_linear(seed):
    """Box ``[d1, d2]`` with decimal ends; ``Y_j <= min_box y_j -+ 1e-40`` (the minimum sits at
    an exact corner of the decimal box, one float spacing inside the float box)."""
    net = linear_net(seed)
    rng = np.random.default_rng(2000 + seed)
    c0 = rng.uniform(-1, 1, size=2)
    lo = [between(float(v)) for v in c0 - 0.25]
    hi = [between(float(v)) for v in c0 + 0.25]
    A, a = exact_affine(net)
    j = int(rng.integers(2))
    corner = [l if A[j][i] > 0 else h for i, (l, h) in enumerate(zip(lo, hi))]
    ymin = sum(A[j][i] * corner[i] for i in range(2)) + a[j]
    _, _, res = run(net, vnnlib(lo, hi, [(j, "<=", ymin - TINY)]))
    assert res.verdict in ("robust", "unknown")
    _, _, res = run(net, vnnlib(lo, hi, [(j, "<=", ymin - TINY)]), backend="none")
    assert res.verdict in ("robust", "unknown")
    # only points within about 1e-40 of the exact corner violate: z3 finds one, an exact rational
    box, con, res = run(net, vnnlib(lo, hi, [(j, "<=", ymin + TINY)]))
    assert_exact_cex(net, box, con, res)


@pytest.mark.parametrize("seed", range(4))
def test_decimal_kappa_and_delta(seed):
    """Decision margin and deviation tolerance given as decimals: the exact margin at a point
    -+ 1e-40 decides."""
    net = relu_net(seed)
    rng = np.random.default_rng(3000 + seed)
    d = np.array([between(float(v)) for v in rng.uniform(-1, 1, size=2)], dtype=object)
    y = net.exact_logits(d)
    c = 0 if y[0] > y[1] else 1
    m = abs(y[0] - y[1])
    box = InputBox.point(d)
    pert = perturbation("abs:0", net)
    assert verify(net, pert, box, Decision(c, m - TINY), jobs=1).verdict == "robust"
    res = verify(net, pert, box, Decision(c, m), backend="none", jobs=1)
    assert res.verdict == "not_robust" and res.counterexample.x_exact == tuple(d)
    # a deviation: shift one bias by an exact 2^-10; deviation = 2^-10 exactly
    b1 = net.layers[1].b.copy()
    b1[0] += 2.0 ** -10
    p_shift = perturbation("abs:0", net)
    p_shift = type(p_shift)(((net.layers[0].W, net.layers[0].b), (net.layers[1].W, b1)), p_shift.radius)
    assert verify(net, p_shift, box, Deviation(Fraction(1, 1024)), jobs=1).verdict == "robust"
    assert verify(net, p_shift, box, Deviation(Fraction(1, 1024) - TINY), jobs=1).verdict == "not_robust"


def test_float_problem_is_outward_and_exact_numbers_are_kept():
    box = InputBox(["0.1", Fraction(1, 3)], ["0.1", "0.5"])
    assert box.lower[0] < 0.1 == box.upper[0] and box.exact_lower[0] == Fraction(1, 10)
    assert Fraction(box.lower[1]) < Fraction(1, 3) and not box.is_exact_float
    assert box.contains_exact(box.snap(box.lower)) and not box.contains_exact(box.lower)
    assert Deviation("0.1").delta < 0.1 and Deviation("0.1").delta_exact == Fraction(1, 10)
    assert Decision(0, "0.1").kappa == 0.1 and Fraction(Decision(0, "0.1").kappa) > Fraction(1, 10)
    oc = OutputConstraint(((np.array([["0.1"]], dtype=object), np.array(["0.3"], dtype=object)),))
    assert oc.disjuncts[0][1][0] > 0.3 - 1e-17 and oc.exact[0][1][0] == Fraction(3, 10)
    assert 0 < oc.coef_err[0][0] < 1e-17


def test_exact_logits_at_fraction_inputs():
    net = Network((Layer([[3.0]], [0.0], "identity"),))
    assert net.exact_logits(np.array([Fraction(1, 3)], dtype=object)) == [Fraction(1)]
    sig = Network((Layer([[1.0]], [0.0], "sigmoid"), Layer([[1.0]], [0.0], "identity")))
    (v,) = sig.exact_logits([Fraction(1, 10)])
    with mpmath.workdps(80):
        s = 1 / (1 + mpmath.exp(-mpmath.mpf(1) / 10))
        assert v.a <= s <= v.b and v.b - v.a < mpmath.mpf(10) ** -50


# ----------------------------------------------------------------------- the command line


@pytest.fixture
def margin_net(tmp_path):
    """y0 = x, y1 = 0: class 0 (argmax) wins by exactly x."""
    p = tmp_path / "m.npz"
    Network((Layer([[1.0], [0.0]], [0.0, 0.0], "identity"),)).save(p)
    return p


def test_cli_point_and_kappa_are_read_exactly(capsys, margin_net):
    code, out, _ = _cli(capsys, "verify", margin_net, "--perturb", "abs:0", "--point", "0.1", "--decision",
                        "--label", "0", "--kappa", "0.09999999999999999999", "--jobs", "1")
    assert code == 0 and out.startswith("robust")
    code, out, _ = _cli(capsys, "verify", margin_net, "--perturb", "abs:0", "--point", "0.1", "--decision",
                        "--label", "0", "--kappa", "0.10000000000000000001", "--jobs", "1", "--backend", "none")
    assert code == 1 and out.startswith("not_robust")


def test_cli_box_ends_are_read_exactly(capsys, margin_net, tmp_path):
    # margin x over [0.1, 0.2]: its minimum is exactly 0.1, so kappa just below it is robust
    code, out, _ = _cli(capsys, "verify", margin_net, "--perturb", "abs:0", "--box", "0.1:0.2", "--decision",
                        "--label", "0", "--kappa", "0.09999999999999999999", "--jobs", "1", "--backend", "none")
    assert code in (0, 2) and not out.startswith("not_robust")
    cfg = tmp_path / "c.toml"
    cfg.write_text('perturb = "abs:0"\npoint = [0.1]\ndecision = true\nlabel = 0\nkappa = 0.09999999999999999999\n')
    code, out, _ = _cli(capsys, "verify", margin_net, "--config", cfg, "--jobs", "1")
    assert code == 0 and out.startswith("robust")


def test_cli_delta_is_read_exactly(capsys, tmp_path):
    """``--delta`` below the exact deviation by 1e-40 refutes; at it, proves."""
    net = Network((Layer([[1.0]], [0.0], "identity"),))
    p = tmp_path / "id.npz"
    net.save(p)
    # abs:2^-10 on w and b at x = 1: max deviation exactly 2^-9 = 0.001953125
    code, out, _ = _cli(capsys, "verify", p, "--perturb", "abs:0.0009765625", "--point", "1", "--delta",
                        "0.001953125", "--jobs", "1")
    assert code == 0, out
    code, out, _ = _cli(capsys, "verify", p, "--perturb", "abs:0.0009765625", "--point", "1", "--delta",
                        "0.00195312499999999999999999", "--jobs", "1")
    assert code == 1, out


# ----------------------------------------------------------------------- decision sense
def sense_net(gap_low: float, gap_high: float) -> Network:
    """One input, three outputs ``y = (0, gap_low, gap_low + gap_high)`` at any x (zero weights):
    the argmin (class 0) wins by ``gap_low``, the argmax (class 2) by ``gap_high``."""
    return Network((Layer(np.zeros((3, 1)), [0.0, gap_low, gap_low + gap_high], "identity"),))


@pytest.mark.parametrize("gaps, robust_sense", [((0.5, 4.5), "max"), ((4.5, 0.5), "min")])
def test_argmin_and_argmax_flips_differ(gaps, robust_sense):
    net = sense_net(*gaps)
    pert = perturbation("abs:0.3", net)  # at x = 1 each output moves by up to 0.6
    x = np.array([1.0])
    res = {}
    for sense in ("max", "min"):
        label = int(net.predict(x, sense=sense))
        assert label == (2 if sense == "max" else 0)
        res[sense] = verify(net, pert, x, Decision(label, sense=sense), jobs=1)
    other = "min" if robust_sense == "max" else "max"
    assert res[robust_sense].verdict == "robust"
    assert res[other].verdict == "not_robust"
    cx = res[other].counterexample
    y = net.exact_logits(cx.x, cx.params)
    protected = 2 if other == "max" else 0
    rivals = [y[j] for j in range(3) if j != protected]
    # the protected class no longer wins strictly: some rival is >= it (max) or <= it (min)
    assert (max(rivals) >= y[protected]) if other == "max" else (min(rivals) <= y[protected])
    assert pert.contains(cx.params)


def test_decision_min_spec_rows_and_exact_check():
    d = Decision(1, sense="min")
    assert d.spec_matrix(3).tolist() == [[1.0, -1.0, 0.0], [0.0, -1.0, 1.0]]  # rows e_j - e_c: y_j - y_c > kappa
    net = sense_net(0.5, 4.5)  # y = (0, 0.5, 5): class 1 is not the argmin
    assert d.check_exact(net, np.array([0.0]), None)
    assert not Decision(0, sense="min").check_exact(net, np.array([0.0]), None)
    assert not Decision(0, "0.49999999999999999999", sense="min").check_exact(net, np.array([0.0]), None)
    assert Decision(0, "0.5", sense="min").check_exact(net, np.array([0.0]), None)
    with pytest.raises(ValueError, match="sense"):
        Decision(0, sense="argmin")
    with pytest.raises(ValueError, match="two outputs"):
        Decision(0, sense="min").spec_matrix(1)


def test_decision_sense_is_saved_and_used_by_the_cli(capsys, tmp_path):
    p = tmp_path / "s.npz"
    import dataclasses

    dataclasses.replace(sense_net(4.5, 0.5), decision_sense="min").save(p)
    from hybridq import load_network

    assert load_network(p).decision_sense == "min"
    # the network's sense (min: class 0 by 4.5) is robust; '--decision max' (class 2 by 0.5) is not
    code, out, _ = _cli(capsys, "verify", p, "--perturb", "abs:0.3", "--point", "1", "--decision", "--jobs", "1")
    assert code == 0 and out.startswith("robust")
    code, out, _ = _cli(capsys, "verify", p, "--perturb", "abs:0.3", "--point", "1", "--decision", "max", "--jobs", "1")
    assert code == 1 and out.startswith("not_robust")
    code, out, _ = _cli(capsys, "verify", p, "--perturb", "abs:0.3", "--point", "1", "--decision", "--sense", "min",
                        "--jobs", "1")
    assert code == 0
    code, _, err = _cli(capsys, "verify", p, "--perturb", "abs:0.3", "--point", "1", "--sense", "min", "--delta", "1")
    assert code == 3 and "--sense applies to --decision" in err


@pytest.mark.requires_shared
def test_acasxu_files_decide_by_argmin(networks_dir):
    from hybridq import load_network

    nnet = load_network(networks_dir / "acasxu" / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet")
    onnx = load_network(networks_dir / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx")
    mnist = load_network(networks_dir / "mnistfc" / "mnist-net_256x2.onnx")
    assert (nnet.decision_sense, onnx.decision_sense, mnist.decision_sense) == ("min", "min", "max")


@pytest.mark.requires_shared
def test_renamed_acasxu_nnet_still_decides_by_argmin(networks_dir, tmp_path):
    """The .nnet files are recognised by their ACAS Xu input clamp, not only by name; a 5x5
    .nnet with another clamp stays argmax."""
    import shutil

    from hybridq import load_network

    src = networks_dir / "acasxu" / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet"
    renamed = tmp_path / "collision_avoidance_v2.nnet"
    shutil.copy(src, renamed)
    assert load_network(renamed).decision_sense == "min"
    text = src.read_text().replace("60760.0,3.141593,3.141593,1200.0,1200.0,", "60000.0,3.141593,3.141593,1200.0,1200.0,", 1)
    other = tmp_path / "other_5x5.nnet"
    other.write_text(text)
    net = load_network(other)
    assert net.n_in == 5 and net.n_out == 5 and net.decision_sense == "max"


@pytest.mark.requires_shared
def test_normalized_vnnlib_on_raw_nnet_warns(capsys, networks_dir):
    nnet = networks_dir / "acasxu" / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet"
    onnx = networks_dir / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx"
    prop = networks_dir / "acasxu" / "vnnlib" / "prop_3.vnnlib"
    args = ["--vnnlib", prop, "--center", "--perturb", "point:fp16", "--decision", "--jobs", "1"]
    code, out, err = _cli(capsys, "verify", nnet, *args)
    warn = [l for l in err.splitlines() if l.startswith("hybridq: warning:")]
    assert len(warn) == 1 and "input clamp range" in warn[0] and "units" in warn[0]
    assert code in (0, 1, 2) and out  # a warning, not an error: the run still gives its verdict
    code, out, err = _cli(capsys, "verify", onnx, *args)
    assert "warning" not in err


def test_every_attack_of_the_engine_confirms_in_the_exact_box():
    """The strong whole-box attack (run after some cells) and the per-cell attacks alike: a box
    whose float image reaches below the decimal end must never yield a witness there.  Margin
    ``x - kappa`` on [0.1, 0.2] with kappa just below 0.1 holds; the float box starts below 0.1."""
    net = Network((Layer([[1.0], [0.0]], [0.0, 0.0], "identity"),))
    box = InputBox(["0.1"], ["0.2"])
    res = verify(net, perturbation("abs:0", net), box, Decision(0, "0.09999999999999999999"), backend="none",
                 jobs=1, max_depth=12)
    assert res.verdict != "not_robust"
    from hybridq.bab.engine import CellEngine, Problem
    from hybridq.config import RunConfig

    prop = Decision(0, "0.09999999999999999999")
    eng = CellEngine(Problem(net, perturbation("abs:0", net), prop, RunConfig(), "verify", box.lower, box.upper, box))
    r = eng.root_attack()
    assert r.margin >= 0 and r.counterexample is None  # the float corner 0.0999.. violates, the decimal box does not


@pytest.mark.parametrize("backend", ["auto", "z3", "none"])
def test_decimal_coefficient_is_not_rounded_into_a_wrong_robust(backend):
    """``0.1 * Y_0 <= f - 1e-30`` at y = 2^60 + 512, with ``f`` the first double above y/10:
    exactly violated (y/10 = f - 3.2), but the coefficient's double (0.1 + 5.6e-18) gives
    ``0.1 y + 6.4 > f``, the right-hand side's double: bounds on the rounded row alone would
    prove it.  Never robust; the exact stages refute it."""
    net = Network((Layer([[1.0]], [0.0], "identity"),))
    y = Fraction(2 ** 60 + 512)
    f = Fraction(float(y / 10))
    f = f if f > y / 10 else Fraction(float(np.nextafter(float(f), np.inf)))
    c = f - Fraction(1, 10 ** 30)
    text = (f"(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 {int(y)}))(assert (<= X_0 {int(y)}))"
            f"(assert (<= (* 0.1 Y_0) {dec(c)}))")
    box, con, res = run(net, text, backend=backend)
    assert Fraction(float(con.disjuncts[0][0][0, 0])) * y > Fraction(float(con.disjuncts[0][1][0]))  # float row "holds"
    assert con.check_exact(net, np.array([float(y)]), None)  # the decimal row is violated
    assert_exact_cex(net, box, con, res, (y,))


@pytest.mark.parametrize("backend", ["auto", "z3", "none"])
def test_decimal_coefficients_that_cancel(backend):
    """``-0.3 Y_0 + 0.1 Y_1 <= 0`` with y = (x, 3x) at x = 2^60: exactly 0 <= 0, violated; with the
    coefficients' doubles the row is +32, which the bound pass alone would call safe.  The bound
    pass must widen the row by the coefficients' rounding error (``coef_err``), the exact stages
    then refute it; without them the verdict stays open, never robust."""
    net = Network((Layer([[1.0], [3.0]], [0.0, 0.0], "identity"),))
    x = 2 ** 60
    text = (f"(declare-const X_0 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)"
            f"(assert (>= X_0 {x}))(assert (<= X_0 {x}))(assert (<= (+ (* -0.3 Y_0) (* 0.1 Y_1)) 0))")
    box, con, res = run(net, text, backend=backend)
    A = con.disjuncts[0][0][0]
    assert Fraction(float(A[0])) * x + Fraction(float(A[1])) * 3 * x == 32  # the rounded row says safe
    if backend == "none":
        assert res.verdict == "unknown"
    else:
        assert_exact_cex(net, box, con, res, (Fraction(x),))


def test_cli_point_file_is_read_exactly(capsys, margin_net, tmp_path):
    """A .txt point file: numbers separated by commas or white space, read as decimals."""
    pt = tmp_path / "pt.txt"
    pt.write_text("0.1\n")
    code, out, _ = _cli(capsys, "verify", margin_net, "--perturb", "abs:0", "--point", pt, "--decision",
                        "--label", "0", "--kappa", "0.09999999999999999999", "--jobs", "1")
    assert code == 0 and out.startswith("robust")
    two = tmp_path / "two.txt"
    two.write_text("1,2")
    net2 = tmp_path / "n2.npz"
    Network((Layer([[1.0, 1.0]], [0.0], "identity"),)).save(net2)
    code, out, _ = _cli(capsys, "verify", net2, "--perturb", "abs:0", "--point", two, "--delta", "0", "--jobs", "1")
    assert code == 0, out


def test_decision_sense_spellings(capsys, tmp_path):
    """``--decision=min``, TOML ``decision = "min"`` and an instance list's ``decision`` column."""
    p = tmp_path / "s.npz"
    sense_net(4.5, 0.5).save(p)  # sense max by default: class 2 wins by 0.5 (flips), class 0 is argmin by 4.5
    base = ["--perturb", "abs:0.3", "--point", "1", "--jobs", "1"]
    code, out, _ = _cli(capsys, "verify", p, *base, "--decision")
    assert code == 1
    code, out, _ = _cli(capsys, "verify", p, *base, "--decision=min")
    assert code == 0, out
    cfg = tmp_path / "c.toml"
    cfg.write_text('perturb = "abs:0.3"\npoint = [1]\ndecision = "min"\n')
    code, out, _ = _cli(capsys, "verify", p, "--config", cfg, "--jobs", "1")
    assert code == 0, out
    cfg.write_text('perturb = "abs:0.3"\npoint = [1]\ndecision = "argmin"\n')
    code, _, err = _cli(capsys, "verify", p, "--config", cfg, "--jobs", "1")
    assert code == 3 and "decision" in err
    from hybridq.batch import Instance, _Loader, _problems

    inst = Instance(id="a", network=p, vnnlib=None, timeout=None)
    for dec_, want in (("min", 0), ("true", 2)):
        net, pert, probs = _problems(inst, {"perturb": "abs:0.3", "point": "1", "decision": dec_}, _Loader())
        assert probs[0][1].label == want and probs[0][1].sense == ("min" if dec_ == "min" else "max")


@pytest.mark.requires_shared
def test_normalized_vnnlib_on_raw_nnet_warns_in_batches(caplog, networks_dir):
    from hybridq.batch import Instance, _Loader, _problems

    inst = Instance(id="acas", network=networks_dir / "acasxu" / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet",
                    vnnlib=networks_dir / "acasxu" / "vnnlib" / "prop_3.vnnlib", timeout=None)
    with caplog.at_level("WARNING", logger="hybridq.batch"):
        _problems(inst, {"perturb": "fp16"}, _Loader())
    assert len(caplog.records) == 1 and "input clamp range" in caplog.records[0].getMessage()


@pytest.mark.requires_shared
def test_raw_unit_box_on_nnet_does_not_warn(networks_dir):
    """Reluplex's property 1 in raw units (feet, radians, feet/s) fits the clamp range; every
    shipped (normalized) VNN-COMP ACAS Xu property does not."""
    from hybridq import load_network, load_vnnlib
    from hybridq.io.vnnlib import clamp_mismatch

    net = load_network(networks_dir / "acasxu" / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet")
    raw = InputBox([55947.691, -3.141593, -3.141593, 1145, 0], [60760, 3.141593, 3.141593, 1200, 60])
    assert clamp_mismatch(net, [raw]) is None
    for i in (1, 3, 6):
        boxes = [b for b, _ in load_vnnlib(networks_dir / "acasxu" / "vnnlib" / f"prop_{i}.vnnlib", 5, 5)]
        assert "units probably differ" in clamp_mismatch(net, boxes)


def test_library_decision_takes_the_network_sense():
    import dataclasses

    net = dataclasses.replace(sense_net(4.5, 0.5), decision_sense="min")
    pert = perturbation("abs:0.3", net)
    x = np.array([1.0])
    assert int(net.predict(x)) == 0
    res = verify(net, pert, x, Decision(0), jobs=1)  # argmin class 0 by 4.5: robust
    assert res.verdict == "robust" and res.property.sense == "min"
    assert verify(net, pert, x, Decision(2, sense="max"), jobs=1).verdict == "not_robust"
    assert Decision(0).check_exact(net, x, None) is False and Decision(0).resolve(net).sense == "min"
    assert Decision(1).check_exact(net, x, None) is True  # class 1 is not the argmin
    assert Decision(0).spec_matrix(3).tolist()[0] == [1.0, -1.0, 0.0]  # no network at hand: argmax rows
