"""Network model: construction checks, float64 forward, exact (Fraction / mpmath interval) evaluation."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridq import Layer, ModelFormatError, Network, UnsupportedLayerError
from hybridq.network import ACTIVATIONS, OUTPUTS

TOL = 1e-9


def random_network(rng: np.random.Generator, activations, output: str, widths=None, normalize=True) -> Network:
    widths = widths or [int(rng.integers(1, 5)) for _ in range(len(activations) + 1)]
    layers = [
        Layer(rng.normal(size=(widths[k + 1], widths[k])), rng.normal(size=widths[k + 1]), act,
              float(rng.uniform(0.0, 0.3)))
        for k, act in enumerate(activations)
    ]
    kw = {}
    if normalize:
        n_in, n_out = widths[0], widths[-1]
        kw = dict(input_mean=rng.normal(size=n_in), input_std=rng.uniform(0.5, 2.0, n_in),
                  input_lower=-np.full(n_in, 2.0), input_upper=np.full(n_in, 2.0),
                  output_mean=rng.normal(size=n_out), output_std=rng.uniform(0.5, 3.0, n_out))
    return Network(tuple(layers), output=output, **kw)


def assert_exact_matches_float(values, floats) -> None:
    """Fractions within TOL (relative to magnitude) of the floats; intervals contain them (widened by TOL)."""
    assert len(values) == len(floats)
    for v, f in zip(values, floats):
        scale = 1.0 + abs(f)
        if isinstance(v, Fraction):
            assert abs(float(v) - f) <= TOL * scale, (v, f)
        else:
            lo, hi = float(v.a), float(v.b)
            assert lo - TOL * scale <= f <= hi + TOL * scale, (lo, f, hi)
            assert v.b - v.a <= 1e-30 * scale, "the 200-bit interval enclosure should be tight"


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("output", OUTPUTS)
def test_exact_agrees_with_float_every_activation_and_output(activation, output):
    rng = np.random.default_rng(abs(hash((activation, output))) % 2**32)
    for trial in range(4):
        net = random_network(rng, [activation, activation, "identity"], output)
        for _ in range(3):
            x = rng.uniform(-3, 3, net.n_in)  # partly outside the clamp [-2, 2]
            y = net.forward(x)
            exact = net.exact_logits(x)
            if activation in ("sigmoid", "tanh"):
                assert not isinstance(exact[0], Fraction)
            else:
                assert all(isinstance(v, Fraction) for v in exact)
            assert_exact_matches_float(exact, y)
            assert_exact_matches_float(net.exact_scores(x), net.scores(x))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    acts=st.lists(st.sampled_from(ACTIVATIONS), min_size=1, max_size=3),
    output=st.sampled_from(OUTPUTS),
)
def test_exact_agrees_with_float_mixed_layers(seed, acts, output):
    rng = np.random.default_rng(seed)
    net = random_network(rng, acts, output)
    x = rng.uniform(-3, 3, net.n_in)
    assert_exact_matches_float(net.exact_logits(x), net.forward(x))
    assert_exact_matches_float(net.exact_scores(x), net.scores(x))
    # substituted parameters go through the same paths
    params = tuple((W + 0.01 * rng.normal(size=W.shape), b - 0.01) for W, b in net.params)
    assert_exact_matches_float(net.exact_logits(x, params), net.forward(x, params))


def test_fraction_evaluation_is_exact_not_rounded():
    # 0.1 * 3 + 0.2 in binary floats: the exact value differs from the rounded float sum.
    net = Network((Layer([[0.1]], [0.2], "identity"),))
    (y,) = net.exact_logits(np.array([3.0]))
    assert y == Fraction(0.1) * 3 + Fraction(0.2)
    assert y != Fraction(float(net.forward(np.array([3.0]))[0]))  # float rounding is visible


def test_hand_computed_network():
    # h = relu([x0 - x1, x0 + x1 - 1]), y = 2 h0 - h1 + 0.5, with clamp and normalization
    net = Network(
        (Layer([[1.0, -1.0], [1.0, 1.0]], [0.0, -1.0], "relu"), Layer([[2.0, -1.0]], [0.5], "identity")),
        input_mean=[1.0, 0.0], input_std=[2.0, 1.0], input_lower=[-10, -1], input_upper=[10, 1],
        output_mean=[3.0], output_std=[4.0],
    )
    x = np.array([5.0, 3.0])          # x1 clamps to 1; x_n = (2, 1)
    # h = relu([1, 2]) = [1, 2]; y_n = 2 - 2 + 0.5 = 0.5; y = 0.5 * 4 + 3 = 5
    assert net.forward(x)[0] == pytest.approx(5.0, abs=1e-15)
    assert net.exact_logits(x) == [Fraction(5)]
    # one output: a binary classifier, class 1 iff the logit is > 0
    assert net.predict(np.array([x, x])).tolist() == [1, 1]


def test_leaky_relu_and_hardtanh_values():
    net = Network((Layer(np.eye(3), np.zeros(3), "leaky_relu", 0.25), Layer(4 * np.eye(3), np.zeros(3), "hardtanh")))
    x = np.array([-2.0, 0.1, 3.0])
    np.testing.assert_array_equal(net.forward(x), [-1.0, 0.4, 1.0])
    assert net.exact_logits(x) == [Fraction(-1), Fraction(0.1) * 4, Fraction(1)]


def test_softmax_and_sigmoid_scores():
    y = np.array([1.0, 2.0, 3.0])
    net = Network((Layer(np.eye(3), y, "identity"),), output="softmax")
    s = net.scores(np.zeros(3))
    np.testing.assert_allclose(s, np.exp(y) / np.exp(y).sum(), rtol=1e-14)
    ex = net.exact_scores(np.zeros(3))
    with mpmath.workdps(90):  # 300-bit reference, finer than the 200-bit enclosure
        ref = [mpmath.exp(v) / sum(mpmath.exp(u) for u in y) for v in y]
        for iv, r in zip(ex, ref):
            lo, hi = (mpmath.mpf(e) for e in iv._mpi_)  # exact endpoints
            assert lo - mpmath.mpf(10) ** -80 <= r <= hi + mpmath.mpf(10) ** -80
            assert hi - lo < mpmath.mpf(10) ** -50
    sig = Network((Layer([[1.0]], [0.0], "identity"),), output="sigmoid")
    assert sig.scores(np.array([0.0]))[0] == 0.5
    assert sig.scores(np.array([2.0]))[0] == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-15)


def test_forward_batched_shapes_and_params():
    rng = np.random.default_rng(3)
    net = random_network(rng, ["relu", "identity"], "identity", widths=[3, 4, 2])
    X = rng.normal(size=(7, 3))
    Y = net.forward(X)
    assert Y.shape == (7, 2)
    np.testing.assert_array_equal(Y[2], net.forward(X[2]))
    zero = tuple((np.zeros_like(W), np.zeros_like(b)) for W, b in net.params)
    np.testing.assert_array_equal(net.forward(X, zero), np.broadcast_to(net.output_mean, (7, 2)))
    assert net.with_params(zero).forward(X).tolist() == net.forward(X, zero).tolist()
    with pytest.raises(ValueError):
        net.forward(np.zeros((2, 4)))
    with pytest.raises(ValueError):
        net.forward(X, zero[:1])


def test_construction_errors():
    with pytest.raises(ModelFormatError, match="do not chain"):
        Network((Layer(np.ones((3, 2)), np.zeros(3)), Layer(np.ones((1, 4)), np.zeros(1))))
    with pytest.raises(ModelFormatError, match="non-finite"):
        Layer([[np.nan]], [0.0])
    with pytest.raises(ModelFormatError, match="non-finite"):
        Layer([[1.0]], [np.inf])
    with pytest.raises(UnsupportedLayerError, match="swish"):
        Layer([[1.0]], [0.0], "swish")
    with pytest.raises(UnsupportedLayerError, match="argmax"):
        Network((Layer([[1.0]], [0.0]),), output="argmax")
    with pytest.raises(ModelFormatError, match="positive"):
        Network((Layer([[1.0]], [0.0]),), input_std=[0.0])
    with pytest.raises(ModelFormatError):
        Network(())


def test_exact_affine_integer_path_equals_fraction_arithmetic():
    """The integer fast path of the exact evaluation against a product-by-product Fraction sum:
    huge and subnormal weights, zero rows, zero and decimal inputs."""
    from fractions import Fraction

    from hybridq.network import _exact_affine

    rng = np.random.default_rng(0)
    for t in range(60):
        n, m = (int(v) for v in rng.integers(1, 10, 2))
        W = rng.normal(size=(m, n)) * 10.0 ** rng.integers(-300, 300, size=(m, n)) * (rng.random((m, n)) < 0.7)
        if t % 3 == 0:
            W[0, :] = 0.0
        W[rng.random((m, n)) < 0.1] = 5e-324
        b = rng.normal(size=m) * 10.0 ** rng.integers(-20, 20, m)
        h = [Fraction(int(rng.integers(-10**6, 10**6)), int(rng.integers(1, 10**9))) for _ in range(n)]
        if t % 5 == 0:
            h[0] = Fraction(0)
        ref = [Fraction(float(b[j])) + sum((Fraction(float(W[j, i])) * h[i] for i in range(n)), Fraction(0))
               for j in range(m)]
        assert _exact_affine(W, b, h) == ref
