"""quantify: max deviation [witnessed, proved] against exact values, epsilon and bits bisections."""

from __future__ import annotations

import numpy as np
import pytest

from hybridq import Decision, Deviation, InputBox, Layer, Network
from hybridq.bab import verify
from hybridq.errors import ConfigError
from hybridq.perturbation import perturbation
from hybridq.quantify import quantify


def _linear_net():
    # y = 0.5 x0 - 2 x1 + 0.25: under abs:EPS on W and b the max deviation over a box is
    # EPS * (max|x0| + max|x1| + 1), attained at a corner
    return Network((Layer([[0.5, -2.0]], [0.25], "identity"),))


def test_max_deviation_of_a_linear_layer_is_exact():
    net = _linear_net()
    box = InputBox(np.array([-1.0, -3.0]), np.array([2.0, 1.0]))
    q = quantify(net, "abs:0.125", box, tol=0.01, jobs=1)
    true = 0.125 * (2.0 + 3.0 + 1.0)
    assert q.lower == pytest.approx(true, rel=1e-12)
    assert q.lower <= true <= q.upper <= true * 1.01 + 1e-12
    assert q.witness is not None and Deviation(q.lower * (1 - 1e-9)).check_exact(net, q.witness.x, q.witness.params)


@pytest.mark.parametrize("seed", range(3))
def test_max_deviation_brackets_the_truth(seed):
    rng = np.random.default_rng(seed)
    net = Network((Layer(rng.normal(size=(6, 2)), 0.3 * rng.normal(size=6), "relu"),
                   Layer(rng.normal(size=(1, 6)), [0.0], "identity")))
    pert = perturbation("abs:0.02", net)
    box = InputBox(-np.ones(2), np.ones(2))
    q = quantify(net, pert, box, tol=0.2, jobs=1, timeout=60)
    assert 0 < q.lower <= q.upper <= 1.2 * q.lower + 1e-12
    # proved is certified: verify at just above it says robust; just below witnessed: not robust
    assert verify(net, pert, box, Deviation(q.upper * 1.0001), jobs=1, timeout=60).verdict == "robust"
    r = verify(net, pert, box, Deviation(q.lower * 0.999), jobs=1, timeout=60)
    assert r.verdict == "not_robust" and r.counterexample.value > q.lower * 0.999


def test_score_space_and_outputs():
    rng = np.random.default_rng(5)
    net = Network((Layer(rng.normal(size=(4, 2)), rng.normal(size=4), "tanh"),
                   Layer(rng.normal(size=(3, 4)), rng.normal(size=3), "identity")), output="softmax")
    q = quantify(net, "rel:0.01", np.array([0.3, -0.2]), Deviation(0.0, "score", (1,)), tol=0.05, jobs=1)
    assert 0 < q.lower <= q.upper <= 1.05 * q.lower + 1e-12 and q.upper < 1.0


def test_largest_epsilon_linear():
    net = _linear_net()
    x = np.array([1.0, -1.0])  # |x|_1 + 1 = 3: deviation = 3 EPS, so EPS* = delta / 3
    q = quantify(net, None, x, Deviation(0.03), "epsilon", family="abs", eps_range=(1e-6, 1.0), tol=0.01, jobs=1)
    assert q.lower <= 0.01 <= q.upper and q.upper / q.lower <= 1.01
    assert all(s["verdict"] in ("robust", "not_robust") for s in q.steps)


def test_fewest_float_bits_is_consistent():
    rng = np.random.default_rng(2)
    net = Network((Layer(rng.normal(size=(5, 3)), rng.normal(size=5), "relu"),
                   Layer(rng.normal(size=(3, 5)), rng.normal(size=3), "identity")))
    x = np.array([0.1, 0.5, -0.3])
    label = int(np.argmax(net.forward(x)))
    q = quantify(net, None, x, Decision(label), "bits", family="float", jobs=1)
    assert np.isfinite(q.upper) and q.lower < q.upper
    spec = {s["bits"]: s["spec"] for s in q.steps}
    assert verify(net, perturbation(spec[int(q.upper)], net), x, Decision(label), jobs=1).verdict == "robust"
    if q.lower > 0:
        assert verify(net, perturbation(spec[int(q.lower)], net), x, Decision(label), jobs=1).verdict != "robust"


def test_bad_quantify_arguments():
    net = _linear_net()
    with pytest.raises(ConfigError, match="what"):
        quantify(net, "abs:0.1", np.zeros(2), what="volume")
    with pytest.raises(ConfigError, match="property"):
        quantify(net, None, np.zeros(2), what="epsilon")
    with pytest.raises(ConfigError, match="tol"):
        quantify(net, "abs:0.1", np.zeros(2), tol=-1)
    with pytest.raises(ConfigError, match="family"):
        quantify(net, None, np.zeros(2), Deviation(0.1), "epsilon", family="log")


def test_deviation_past_float64_is_an_error_not_a_bracket():
    """abs:1e300 on a 2-4-2 relu net: logits reach ~1e600, so no float64 bracket exists; it printed
    [1.8e308, inf] with RuntimeWarnings and exit 0 ('tolerance reached') before."""
    import warnings

    from hybridq.cli import main

    rng = np.random.default_rng(1)
    net = Network((Layer(rng.normal(size=(4, 2)), rng.normal(size=4), "relu"),
                   Layer(rng.normal(size=(2, 4)), rng.normal(size=2), "identity")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="overflows float64"):
            quantify(net, perturbation("abs:1e300", net), np.array([0.5, 0.5]), backend="none", jobs=1, timeout=20)
        # an infinite proved bound never counts as the tolerance reached
        q = quantify(net, perturbation("abs:0.1", net), np.array([1e308, -1e308]), backend="none", jobs=1, timeout=20)
    assert q.lower < 1.8e308 and not q.upper <= q.lower * 1.1 and q.message


def test_cli_deviation_past_float64_one_error_line(tmp_path, capsys):
    from hybridq.cli import main

    rng = np.random.default_rng(1)
    net = Network((Layer(rng.normal(size=(4, 2)), rng.normal(size=4), "relu"),
                   Layer(rng.normal(size=(2, 4)), rng.normal(size=2), "identity")))
    p = tmp_path / "n.npz"
    net.save(p)
    with pytest.raises(SystemExit) as ei:
        main(["quantify", str(p), "--perturb", "abs:1e300", "--point", "0.5,0.5", "--jobs", "1", "--backend", "none",
              "--no-progress"])
    err = capsys.readouterr().err
    assert ei.value.code == 3
    assert err.count("\n") == 1 and err.startswith("hybridq: error: the deviation overflows float64"), err


def test_epsilon_bisection_interrupted_in_its_first_step_names_that_step():
    """Ctrl-C during the first step (epsilon = the range's top, 1) printed 'largest epsilon proved
    robust 0; not proved at inf' with upper None in the JSON, although the step at 1 had been run
    (here it had even found a counterexample); a timeout there said 'not proved at 1'.  The
    interrupted step now bounds the bracket like any other: upper 1, with that step's verdict."""
    rng = np.random.default_rng(0)
    w = [4, 40, 40, 2]
    net = Network(tuple(Layer(rng.normal(size=(w[i + 1], w[i])) / np.sqrt(w[i]), rng.normal(size=w[i + 1]) * 0.1,
                              "relu" if i < len(w) - 2 else "identity") for i in range(len(w) - 1)))

    def ctrl_c(*args, **kwargs):  # the scheduler's progress report: a Ctrl-C at the first one
        raise KeyboardInterrupt

    q = quantify(net, None, np.zeros(4), Deviation(0.2), "epsilon", family="rel", jobs=1, progress=ctrl_c)
    assert q.message == "interrupted" and len(q.steps) == 1 and q.steps[0]["epsilon"] == 1.0
    assert q.lower == 0.0 and q.upper == 1.0, q.summary()
    assert " at 1, 1 steps" in q.summary() and "inf" not in q.summary(), q.summary()
    assert q.not_proved_verdict == q.steps[0]["verdict"] != ""
