"""Properties: float margins and exact re-checks agree, including at exact ties."""

from fractions import Fraction

import numpy as np
import pytest

from hybridq import Decision, Deviation, InputBox, Layer, Network, OutputConstraint


def _net(act="relu", output="identity"):
    W1 = np.array([[1.0, -0.5], [0.25, 0.75], [-1.0, 1.0]])
    b1 = np.array([0.1, -0.2, 0.0])
    W2 = np.array([[1.0, 0.5, -0.25], [-0.5, 1.0, 0.125]])
    b2 = np.array([0.0, 0.05])
    return Network((Layer(W1, b1, act), Layer(W2, b2, "identity")), output=output)


def _shift_bias(net, d):
    (W1, b1), (W2, b2) = net.params
    return ((W1, b1), (W2, b2 + np.array(d)))


def test_deviation_exact_boundary_is_not_a_violation():
    net = _net()
    x = np.array([0.5, 0.25])
    params = _shift_bias(net, [0.25, 0.0])  # logit 0 moves by exactly 0.25
    assert not Deviation(0.25).check_exact(net, x, params)
    assert Deviation(0.2).check_exact(net, x, params)
    assert not Deviation(0.3).check_exact(net, x, params)
    m = Deviation(0.2).margin(net, net.forward(x[None], params), net.forward(x[None]))
    assert m[0] == pytest.approx(0.05)


def test_deviation_score_space_uses_intervals_for_sigmoid():
    net = Network(_net().layers[:1] + (Layer(np.array([[1.0, -1.0, 0.5]]), np.array([0.0])),), output="sigmoid")
    x = np.array([0.3, -0.2])
    (W1, b1), (W2, b2) = net.params
    params = ((W1, b1), (W2, b2 + 1.0))
    s0, s1 = net.scores(x), net.scores(x, params)
    dev = abs(s1[0] - s0[0])
    assert Deviation(dev - 1e-9, space="score").check_exact(net, x, params)
    assert not Deviation(dev + 1e-9, space="score").check_exact(net, x, params)
    # logit space sees the full shift of 1
    assert Deviation(0.999, space="logit").check_exact(net, x, params)
    assert not Deviation(1.0, space="logit").check_exact(net, x, params)


def test_decision_margin_and_exact_tie():
    net = _net()
    x = np.array([0.0, 0.0])
    y = net.exact_logits(x)
    c = int(np.argmax(net.forward(x)))
    other = 1 - c
    gap = y[c] - y[other]
    assert gap > 0
    # raise the other logit by exactly the gap: a tie, which counts as a flip
    d = [0.0, 0.0]
    d[other] = float(gap)
    assert Fraction(float(gap)) == gap
    params = _shift_bias(net, d)
    assert Decision(c).check_exact(net, x, params)
    assert not Decision(c).check_exact(net, x, None)
    assert Decision(c, kappa=float(gap)).check_exact(net, x, None)
    m = Decision(c).margin(net, net.forward(x[None], params))
    assert m[0] == pytest.approx(0.0, abs=1e-15)


def test_output_constraint_disjunction():
    net = _net()
    x = np.array([0.5, 0.5])
    y = net.forward(x)
    # unsafe: y0 >= y1  (as -y0 + y1 <= 0), or y1 <= -10
    A1, c1 = np.array([[-1.0, 1.0]]), np.array([0.0])
    A2, c2 = np.array([[0.0, 1.0]]), np.array([-10.0])
    prop = OutputConstraint(((A1, c1), (A2, c2)))
    expect = bool(y[0] >= y[1])
    assert prop.check_exact(net, x, None) == expect
    assert (prop.margin(net, y[None])[0] >= 0) == expect
    with pytest.raises(ValueError, match="no disjunct"):
        OutputConstraint(())


@pytest.mark.parametrize(
    "make",
    [
        lambda: Deviation(-1.0),
        lambda: Deviation(float("nan")),
        lambda: Deviation(0.1, space="prob"),
        lambda: Decision(0, kappa=-0.5),
        lambda: Decision(-1),
        lambda: InputBox([0.0, 1.0], [1.0, 0.0]),
        lambda: InputBox([], []),
        lambda: InputBox([0.0, np.nan], [1.0, 1.0]),
        lambda: InputBox([0.0], [1.0, 2.0]),
        lambda: InputBox.ball([0.0, 0.0], -0.1),
    ],
)
def test_bad_arguments_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_input_box_basics():
    b = InputBox.ball([1.0, 2.0], 0.5)
    assert np.array_equal(b.lower, [0.5, 1.5]) and np.array_equal(b.upper, [1.5, 2.5])
    assert b.volume == 1.0 and not b.is_point and b.contains([1.0, 2.0])
    assert InputBox.point([3.0]).is_point and InputBox.point([3.0]).volume == 0.0
    with pytest.raises(ValueError, match="3 inputs"):
        b.check_dim(3)


def test_decision_on_a_binary_classifier_is_the_sign_of_the_logit():
    W1, b1 = np.array([[1.0, -1.0]]), np.array([0.0])
    net = Network((Layer(W1, b1, "identity"),), output="sigmoid")
    x = np.array([0.75, 0.25])  # y = 0.5: class 1
    assert not Decision(1).check_exact(net, x, None)
    assert Decision(0).check_exact(net, x, None)
    assert Decision(1, kappa=0.5).check_exact(net, x, None)  # margin exactly kappa counts as a flip
    flipped = ((W1, np.array([-0.5])),)  # y = 0 exactly: a tie is a flip
    assert Decision(1).check_exact(net, x, flipped)
    assert Decision(1).margin(net, net.forward(x[None]))[0] == pytest.approx(-0.5)
    assert Decision(0).margin(net, net.forward(x[None]))[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="binary"):
        Decision(2).spec_matrix(1)
