"""Branch and bound: verdicts against dense sampling and pure SMT, exact counterexamples,
determinism across worker counts, timeouts, every property kind."""

from __future__ import annotations

import numpy as np
import pytest

from hybridq import Decision, Deviation, InputBox, Layer, Network, OutputConstraint, Perturbation
from hybridq.bab import verify
from hybridq.perturbation import perturbation


def _net(seed, sizes, act="relu"):
    rng = np.random.default_rng(seed)
    layers = [Layer(rng.normal(size=(sizes[i + 1], sizes[i])), 0.3 * rng.normal(size=sizes[i + 1]),
                    act if i < len(sizes) - 2 else "identity") for i in range(len(sizes) - 1)]
    return Network(tuple(layers))


def _sampled_max_dev(net, pert, box, rng, n_theta=60, n_x=400):
    """Dense sampling lower bound of the max deviation (random vertices of the parameter box)."""
    best = 0.0
    X = box.lower + (box.upper - box.lower) * rng.uniform(size=(n_x, box.n_in))
    y0 = net.forward(X)
    for _ in range(n_theta):
        p = tuple((c + r * rng.choice((-1.0, 1.0), size=c.shape), cb + rb * rng.choice((-1.0, 1.0), size=cb.shape))
                  for (c, cb), (r, rb) in zip(pert.center, pert.radius))
        best = max(best, float(np.abs(net.forward(X, p) - y0).max()))
    return best


def _check_cex(net, pert, box, prop, res):
    cx = res.counterexample
    assert cx is not None
    assert box.contains(cx.x) and pert.contains(cx.params)
    assert prop.check_exact(net, cx.x, cx.params)


@pytest.mark.parametrize("seed", range(6))
def test_deviation_verdicts_agree_with_sampling(seed):
    net = _net(seed, [2, 5, 1])
    pert = perturbation("abs:0.02", net)
    box = InputBox(-np.ones(2), np.ones(2))
    rng = np.random.default_rng(100 + seed)
    sampled = _sampled_max_dev(net, pert, box, rng)
    # well below the sampled maximum: must be refuted with an exact counterexample
    lo = verify(net, pert, box, Deviation(0.8 * sampled), backend="none", jobs=1, timeout=60)
    assert lo.verdict == "not_robust"
    _check_cex(net, pert, box, Deviation(0.8 * sampled), lo)
    # far above: must be proved, and the certified bound must cover the sampled maximum
    hi = verify(net, pert, box, Deviation(3.0 * sampled), backend="none", jobs=1, timeout=60)
    assert hi.verdict == "robust"
    assert hi.bound + 3.0 * sampled >= sampled
    assert hi.stats.proved_bounds >= 1 and hi.stats.open == 0 and hi.stats.undecided_volume == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_verdict_equals_pure_smt(seed):
    from hybridq.smt import Sat, Unsat, pure_smt

    net = _net(10 + seed, [2, 4, 1])
    pert = perturbation("abs:0.05", net)
    box = InputBox(-np.ones(2), np.ones(2))
    rng = np.random.default_rng(seed)
    sampled = _sampled_max_dev(net, pert, box, rng, 30, 200)
    for delta in (0.9 * sampled, 1.1 * sampled):
        prop = Deviation(delta)
        res = verify(net, pert, box, prop, backend="z3", jobs=1, timeout=60, smt_max_unstable=2)
        ref = pure_smt(net, pert, box, prop, "z3", 30.0)
        if isinstance(ref, Unsat):
            assert res.verdict == "robust"
        elif isinstance(ref, Sat):
            assert res.verdict == "not_robust"
        if res.verdict == "not_robust":
            _check_cex(net, pert, box, prop, res)


def test_decision_at_a_point_uses_phase_splits_and_smt():
    net = _net(3, [3, 8, 8, 3])
    x = np.array([0.2, -0.4, 0.7])
    label = int(np.argmax(net.forward(x)))
    # growing epsilon: robust for a tiny box, refuted for a huge one
    small = verify(net, perturbation("abs:1e-6", net), x, Decision(label), jobs=1)
    assert small.verdict == "robust"
    big = verify(net, perturbation("abs:0.5", net), x, Decision(label), jobs=1)
    assert big.verdict == "not_robust"
    _check_cex(net, perturbation("abs:0.5", net), InputBox.point(x), Decision(label), big)
    # a middle epsilon with SMT off exercises phase splitting at a point input
    mid = verify(net, perturbation("abs:0.02", net), x, Decision(label), backend="none", jobs=1, timeout=60)
    assert mid.verdict in ("robust", "not_robust")
    assert mid.stats.splits_input == 0


def test_output_constraint_property():
    net = _net(4, [2, 6, 2])
    pert = perturbation("abs:0.01", net)
    box = InputBox(np.array([-0.5, -0.5]), np.array([0.5, 0.5]))
    y = net.forward(box.lower + (box.upper - box.lower) * np.random.default_rng(0).uniform(size=(2000, 2)))
    top = float(y[:, 0].max())
    # unsafe: y0 >= top + 10 (unreachable) -> robust; y0 >= top - 0.1 (reached nominally) -> not robust
    far = OutputConstraint(((np.array([[-1.0, 0.0]]), np.array([-(top + 10.0)])),))
    near = OutputConstraint(((np.array([[-1.0, 0.0]]), np.array([-(top - 0.1)])),))
    assert verify(net, pert, box, far, jobs=1).verdict == "robust"
    res = verify(net, pert, box, near, jobs=1)
    assert res.verdict == "not_robust"
    _check_cex(net, pert, box, near, res)


def test_jobs_one_and_two_identical():
    net = _net(7, [2, 8, 8, 1])
    pert = perturbation("abs:0.01", net)
    box = InputBox(-np.ones(2), np.ones(2))
    from hybridq.attack import attack

    w = attack(net, pert, Deviation(0.0), box.lower, box.upper, np.random.default_rng(0), 256, 30, 16, False).value
    prop = Deviation(1.05 * w)  # tight enough that the dz-line linear pass needs several rounds
    kw = dict(backend="none", timeout=120, batch_size=16, seed=3)
    a = verify(net, pert, box, prop, jobs=1, **kw)
    b = verify(net, pert, box, prop, jobs=2, **kw)
    assert a.stats.rounds > 1 and a.stats.cells > 16  # really used several rounds and chunks
    assert (a.verdict, a.stats.cells, a.stats.proved_bounds, a.stats.refuted, a.stats.splits_input) == \
           (b.verdict, b.stats.cells, b.stats.proved_bounds, b.stats.refuted, b.stats.splits_input)
    assert a.bound == b.bound
    assert [(c.status, c.bound) for c in a.leaves] == [(c.status, c.bound) for c in b.leaves]


def test_timeout_gives_unknown_with_undecided_volume():
    net = _net(8, [2, 16, 16, 1])
    pert = perturbation("abs:0.01", net)
    box = InputBox(-np.ones(2), np.ones(2))
    sampled = _sampled_max_dev(net, pert, box, np.random.default_rng(0), 20, 200)
    res = verify(net, pert, box, Deviation(1.02 * sampled), backend="none", jobs=1, timeout=0.5, batch_size=4)
    if res.verdict == "unknown":
        assert res.stats.timed_out and res.stats.undecided_volume > 0 and res.message
    else:  # found a counterexample above the sampled value before the deadline
        assert res.verdict == "not_robust"


def test_leaves_cover_the_box_for_two_inputs():
    net = _net(9, [2, 6, 1])
    pert = perturbation("abs:0.01", net)
    box = InputBox(-np.ones(2), np.ones(2))
    from hybridq.attack import attack

    w = attack(net, pert, Deviation(0.0), box.lower, box.upper, np.random.default_rng(0), 256, 30, 16, False).value
    res = verify(net, pert, box, Deviation(1.2 * w), backend="none", jobs=1, timeout=60)
    assert res.verdict == "robust"
    vol = sum(float(np.prod(c.upper - c.lower)) for c in res.leaves)
    assert vol == pytest.approx(4.0)
    assert {c.status for c in res.leaves} <= {"bounds"}
    assert all(c.bound <= 1.2 * w for c in res.leaves)


def test_bad_arguments():
    net = _net(0, [2, 3, 1])
    pert = perturbation("abs:0.01", net)
    with pytest.raises(ValueError, match="dimensions"):
        verify(net, pert, np.zeros(3), Deviation(0.1))
    with pytest.raises(ValueError, match="out of range"):
        verify(net, pert, np.zeros(2), Deviation(0.1, outputs=(4,)))
    with pytest.raises(ValueError, match="label"):
        verify(net, pert, np.zeros(2), Decision(3))
    from hybridq.errors import ConfigError, PerturbationError

    with pytest.raises(ConfigError, match="backend"):
        verify(net, pert, np.zeros(2), Deviation(0.1), backend="cvc9")
    with pytest.raises(ConfigError, match="unknown configuration key"):
        verify(net, pert, np.zeros(2), Deviation(0.1), bogus=1)
    other = perturbation("abs:0.01", _net(0, [2, 4, 1]))
    with pytest.raises(PerturbationError):
        verify(net, other, np.zeros(2), Deviation(0.1))


def test_decision_with_one_output_is_the_sign_of_the_logit():
    # a one-output network is a binary classifier (class 1 iff y > 0): a large box flips it,
    # a zero-radius box keeps the nominal class
    net = _net(1, [2, 4, 1])
    x = np.array([0.1, 0.2])
    c = int(net.predict(x))
    res = verify(net, perturbation("abs:0.5", net), x, Decision(c), jobs=1)
    assert res.verdict == "not_robust"
    assert Decision(c).check_exact(net, res.counterexample.x, res.counterexample.params)
    res = verify(net, perturbation("abs:0", net), x, Decision(c), jobs=1)
    assert res.verdict == "robust"


def test_split_follows_the_dimension_weights():
    """``process`` multiplies the smear by ``dim_weight``: a weight that singles out one input
    makes every input split cut that input, and the children carry the dimension they were cut
    along and, once processed, the relative drop of their bound from the parent's."""
    from hybridq.bab.engine import CellEngine, Problem
    from hybridq.bab.splitting import dim_weight
    from hybridq.cell import Cell
    from hybridq.config import make_config

    net = _net(4, [3, 8, 8, 2])
    pert = perturbation("abs:0.01", net)
    lo, hi = -np.ones(3), np.ones(3)
    eng = CellEngine(Problem(net, pert, Deviation(0.0), make_config(None), "maximize", lo, hi))
    n = sum(l.n_out for l in net.layers)
    for d in range(3):
        w = np.full(3, 1e-9)
        w[d] = 1.0
        root = Cell.root(lo, hi, n)
        root.priority = np.inf
        (out,) = eng.process([(0, root)], threshold=0.0, witnessed=0.0, deadline=None, dim_weight=w)
        assert out.status == "split" and out.split == "input"
        assert [c.split_dim for c in out.children] == [d, d]
        assert out.children[0].upper[d] == 0.0 and out.children[1].lower[d] == 0.0
        assert np.isnan(out.gain)  # the root was not made by an input split
        for c in out.children:
            c.priority = out.ub
        kids = eng.process([(1, out.children[0]), (2, out.children[1])], 0.0, 0.0, None, dim_weight=w)
        for k in kids:
            assert 0.0 <= k.gain <= 1.0
    # no observations: every dimension gets the prior; observed drops rank the dimensions
    np.testing.assert_array_equal(dim_weight(np.zeros(3), np.zeros(3)), [0.1, 0.1, 0.1])
    w = dim_weight(np.array([0.0, 5.0, 0.5]), np.array([10.0, 10.0, 1.0]))
    assert w[1] > w[2] > w[0] and w[0] == pytest.approx(0.1 / 11)


def test_deviation_properties_refine_the_differences_by_default():
    from hybridq.bab.engine import CellEngine, Problem
    from hybridq.config import make_config

    net = _net(4, [3, 8, 2])
    pert = perturbation("abs:0.01", net)
    box = (-np.ones(3), np.ones(3))
    mk = lambda prop, **kw: CellEngine(Problem(net, pert, prop, make_config(None, **kw), "verify", *box))  # noqa: E731
    assert mk(Deviation(0.1)).inter == 3
    assert mk(Decision(0)).inter == 1
    assert mk(Deviation(0.1), bound_inter=0).inter == 0
    from hybridq.errors import ConfigError
    for bad in (4, True, "2", -1, 2.0):
        with pytest.raises(ConfigError, match="bound_inter"):
            make_config(None, bound_inter=bad)
    for bad in (-1, 10 ** 11, 1e3):
        with pytest.raises(ConfigError, match="attack_screen"):
            make_config(None, attack_screen=bad)


def test_smt_budget_stops_calls():
    """A cell's SMT call gets at most what is left of ``smt_budget`` (charged at its time limit
    when it ends without an answer); below ``smt_first_timeout`` no call is made at all."""
    net = _net(3, [3, 8, 8, 3])
    x = np.array([0.2, -0.4, 0.7])
    label = int(np.argmax(net.forward(x)))
    pert = perturbation("abs:0.165", net)  # the root is left open, its children go to SMT
    on = verify(net, pert, x, Decision(label), backend="z3", jobs=1, timeout=120)
    off = verify(net, pert, x, Decision(label), backend="z3", jobs=1, timeout=120, smt_budget=0.4)
    assert on.stats.smt_calls > 0
    assert off.stats.smt_calls == 0 and off.stats.proved_smt == 0
    assert on.verdict in ("robust", "unknown") and off.verdict in ("robust", "unknown")  # never a contradiction
    # z3's limits are wall-clock: on a loaded machine calls may end unanswered, and only then may
    # the run with the budget stay undecided
    assert on.verdict == "robust" or on.stats.smt_unknown > 0
    from hybridq.errors import ConfigError
    with pytest.raises(ConfigError, match="smt_budget"):
        verify(net, pert, x, Decision(label), smt_budget=-1.0)


def test_timeout_is_kept_between_the_chunks_of_a_round(monkeypatch):
    """In-process runs check the deadline between chunks and put the unprocessed cells back in
    the queue (counted as pending): a round of slow chunks does not overrun the timeout."""
    import time

    from hybridq.bab.engine import CellEngine

    orig = CellEngine.process

    def slow(self, *args, **kw):
        time.sleep(0.25)
        return orig(self, *args, **kw)

    monkeypatch.setattr(CellEngine, "process", slow)
    net = _net(5, [2, 8, 8, 1])
    pert = perturbation("abs:0.05", net)
    from hybridq import quantify

    t = time.perf_counter()  # maximizing to a tolerance it cannot reach: only the timeout stops it
    # rounds of 1, 2, 4, 8 cells (one chunk each) start at 0, 0.25, 0.75 and 1.75 s
    q = quantify(net, pert, InputBox(-np.ones(2), np.ones(2)), tol=1e-12, jobs=1, timeout=2.0)
    took = time.perf_counter() - t
    assert q.stats.timed_out and q.stats.open + q.stats.pending >= 1 and q.upper >= q.lower > 0
    assert took < 3.0  # the whole 4th round would end at 3.75 s


def test_ctrl_c_stops_after_the_chunk_in_flight_with_a_partial_result():
    """The first SIGINT only sets a flag (a compiled kernel is never cut short); the run stops at
    the next chunk or round with ``interrupted`` set and the cells left counted as open, and the
    previous SIGINT handler is restored.  A bisection stops at the interrupted step."""
    import os
    import signal

    net = _net(5, [2, 8, 8, 1])
    pert = perturbation("abs:0.05", net)
    box = InputBox(-np.ones(2), np.ones(2))
    calls = []

    def progress(stats, pending):
        calls.append(pending)
        if len(calls) >= 3:  # from the third round on (a run may end on the round it was sent in)
            os.kill(os.getpid(), signal.SIGINT)

    # Python's own handler, as in a terminal (a CI script's background job starts with SIGINT ignored)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupted_runs(net, pert, box, calls, progress)
    finally:
        signal.signal(signal.SIGINT, outer)


def _interrupted_runs(net, pert, box, calls, progress):
    import signal

    from hybridq import quantify

    before = signal.getsignal(signal.SIGINT)
    q = quantify(net, pert, box, tol=1e-12, jobs=1, progress=progress)  # never converges by itself
    assert signal.getsignal(signal.SIGINT) is before
    assert q.stats.interrupted and q.message == "interrupted" and q.stats.open + q.stats.pending >= 1
    assert len(calls) == 3 and 0 < q.lower <= q.upper
    calls.clear()
    q = quantify(net, None, box, Deviation(1.0), what="epsilon", family="abs", eps_range=(1e-6, 1.0), tol=1e-9,
                 max_steps=60, jobs=1, progress=progress, backend="none")
    assert signal.getsignal(signal.SIGINT) is before
    assert q.stats.interrupted and q.message == "interrupted"
    assert len(q.steps) < 60


def test_attack_allowance_shares_out_the_attacks():
    """The run's attack allowance (``ATTACK_FREE`` + ``attack_share`` per cell examined, less the
    attacks made) is shared out in chunk order; a chunk attacks at most its share, the first
    cells due first; ``attack_share >= 1`` lifts the limit."""
    from hybridq.bab.engine import CellEngine, Problem
    from hybridq.bab.scheduler import ATTACK_FREE, attack_allowance
    from hybridq.cell import Cell
    from hybridq.config import make_config
    from hybridq.errors import ConfigError

    assert attack_allowance(0, 0, 1 / 32, 8) == [ATTACK_FREE // 8] * 8
    assert attack_allowance(320, ATTACK_FREE + 7, 1 / 32, 8) == [1, 1, 1, 0, 0, 0, 0, 0]  # 10 - 7 = 3 left
    assert attack_allowance(10 ** 6, 10 ** 9, 1 / 32, 4) == [0, 0, 0, 0]
    assert min(attack_allowance(10 ** 6, 10 ** 9, 1.0, 4)) > 10 ** 6
    for bad in (-0.1, True, "x"):
        with pytest.raises(ConfigError, match="attack_share"):
            make_config(None, attack_share=bad)
    net = _net(4, [3, 8, 8, 2])
    pert = perturbation("abs:0.01", net)
    lo, hi = -10 * np.ones(3), 10 * np.ones(3)
    prop = Deviation(4.0 * _sampled_max_dev(net, pert, InputBox(lo, hi), np.random.default_rng(0)))
    eng = CellEngine(Problem(net, pert, prop, make_config(None, backend="none"), "verify", lo, hi))
    items = [(i, Cell.root(lo + 0.1 * i, hi, 18)) for i in range(4)]  # depth 0: all due
    for _, c in items:
        c.priority = np.inf  # no parent bound (as the queue gives the root)
    for allow, want in ((2, [True, True, False, False]), (0, [False] * 4), (1 << 30, [True] * 4)):
        outs = eng.process(items, 0.0, 0.0, None, attack_allow=allow)
        assert [o.attacked for o in outs] == want
        assert all(o.status == "split" for o in outs)  # the wide box is neither proved nor refuted


def test_phase_split_ranks_huge_unstable_neurons_without_nan():
    """A relu neuron with pre-activation bounds +-1e308 (``quantify --perturb abs:1e300`` on
    ``bench/paper/relu.npz``): ``a b / (a + b)`` overflowed to ``inf / inf``, a NaN score, which
    printed numpy's 'invalid value encountered in divide' RuntimeWarning before the error line and
    made ``phase_split`` report no splittable neuron.  Now the widest neuron is split, silently."""
    import warnings

    from hybridq.bab.splitting import phase_split
    from hybridq.cell import Cell

    net = _net(1, [2, 3, 1])
    plo = [np.array([-1.0, -1e308, -2.0]), np.array([-5.0])]
    phi = [np.array([1.0, 1e308, 0.5]), np.array([5.0])]
    gh = [np.ones(3), np.ones(1)]
    cell = Cell(np.zeros(2), np.ones(2), np.concatenate(plo), np.concatenate(phi))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kids = phase_split(net, [0, 3, 4], cell, plo, phi, gh)
    assert len(kids) == 2
    assert kids[0].pre_hi[1] == 0.0 and kids[1].pre_lo[1] == 0.0  # neuron 1, the widest, at its kink
    assert kids[0].pre_lo[1] == -1e308 and kids[1].pre_hi[1] == 1e308
    # finite ordinary bounds still rank by -lo hi / (hi - lo): 1 * 1 / 2 = 0.5 beats 2 * 0.5 / 2.5 = 0.4
    plo[0][1], phi[0][1] = -0.1, 0.1
    cell = Cell(np.zeros(2), np.ones(2), np.concatenate(plo), np.concatenate(phi))
    kids = phase_split(net, [0, 3, 4], cell, plo, phi, gh)
    assert kids[0].pre_hi[0] == 0.0 and kids[1].pre_lo[0] == 0.0
