"""VNNLIB reader: shipped ACAS Xu / MNIST / test specs, the supported grammar, semantics, errors."""

from __future__ import annotations

import itertools

from fractions import Fraction

import numpy as np
import pytest

from hybridq import InputBox, ModelFormatError, OutputConstraint, load_vnnlib
from hybridq.io.vnnlib import decision_label, parse_vnnlib

HEAD2 = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n" \
        "(declare-const Y_2 Real)\n"
BOX2 = "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 0.5))\n"


def dn(dec: str) -> float:
    """The largest float64 <= the decimal (how box lower ends are read: outward)."""
    f = float(dec)
    return float(np.nextafter(f, -np.inf)) if Fraction(f) > Fraction(dec) else f


def up(dec: str) -> float:
    """The smallest float64 >= the decimal (box upper ends and unsafe-set right-hand sides)."""
    f = float(dec)
    return float(np.nextafter(f, np.inf)) if Fraction(f) < Fraction(dec) else f


def rows(constraint: OutputConstraint):
    return [(A.tolist(), c.tolist()) for A, c in constraint.disjuncts]


# ----------------------------------------------------------------------------- shipped specs
def test_acasxu_property_1(networks_dir):
    ((box, oc),) = load_vnnlib(networks_dir / "acasxu" / "vnnlib" / "prop_1.vnnlib", 5, 5)
    assert box.lower.tolist() == [dn("0.6"), dn("-0.5"), dn("-0.5"), dn("0.45"), dn("-0.5")]
    assert box.upper.tolist() == [up("0.679857769"), up("0.5"), up("0.5"), up("0.5"), up("-0.45")]
    assert rows(oc) == [([[-1.0, 0, 0, 0, 0]], [up("-3.991125645861615")])]   # Y_0 >= 3.99...
    assert decision_label(oc) is None


def test_acasxu_property_3_conjunction_has_no_label(networks_dir):
    for path in (networks_dir / "acasxu" / "vnnlib" / "prop_3.vnnlib", networks_dir / "vnncomp2021_test" / "test_prop.vnnlib"):
        ((box, oc),) = load_vnnlib(path, 5, 5)
        assert box.lower[0] == pytest.approx(-0.303531156, abs=1e-9)
        ((A, c),) = oc.disjuncts                  # one disjunct: Y_0 <= Y_j for j = 1..4
        assert A.tolist() == [[1.0, -1, 0, 0, 0], [1.0, 0, -1, 0, 0], [1.0, 0, 0, -1, 0], [1.0, 0, 0, 0, -1]]
        assert c.tolist() == [0.0] * 4
        assert decision_label(oc) is None
        # COC minimal is unsafe: margin >= 0 exactly when y_0 is the smallest
        y = np.array([[0.0, 1, 2, 3, 4], [5.0, 1, 2, 3, 4]])
        assert (oc.margin(None, y) >= 0).tolist() == [True, False]


def test_acasxu_property_6_two_input_boxes(networks_dir):
    pairs = load_vnnlib(networks_dir / "acasxu" / "vnnlib" / "prop_6.vnnlib", 5, 5)
    assert len(pairs) == 2
    (b1, o1), (b2, o2) = pairs
    assert b1.lower[1] == dn("0.11140846") and b1.upper[1] == up("0.499999896")
    assert b2.lower[1] == dn("-0.499999896") and b2.upper[1] == up("-0.11140846")
    assert b1.upper[0] == b2.upper[0] == up("0.700434925")         # above the .nnet clamp, as PROVENANCE says
    for oc in (o1, o2):
        assert rows(oc) == [([[-1.0] + [1.0 if k == j else 0.0 for k in range(1, 5)]], [0.0]) for j in range(1, 5)]
        assert decision_label(oc) is None


def test_all_shipped_specs_parse(networks_dir):
    specs = sorted(networks_dir.glob("*/*.vnnlib")) + sorted(networks_dir.glob("*/*/*.vnnlib"))
    assert len(specs) >= 18
    for spec in specs:
        pairs = load_vnnlib(spec)
        assert pairs and all(isinstance(b, InputBox) and isinstance(o, OutputConstraint) for b, o in pairs)


def test_mnist_spec_box_and_label(networks_dir):
    ((box, oc),) = load_vnnlib(networks_dir / "mnistfc" / "prop_0_0.03.vnnlib", 784, 10)
    assert box.n_in == 784
    assert np.all(box.lower >= 0) and np.all(box.upper <= 1) and np.all(box.upper - box.lower <= 0.0600001)
    assert box.upper[783] == 0.029999999329447746 and box.lower[783] == 0.0
    assert len(oc.disjuncts) == 9 and decision_label(oc) == 8
    ((_, oc),) = load_vnnlib(networks_dir / "eran_sigmoid" / "mnist_spec_idx_7167_eps_0.01200.vnnlib", 784, 10)
    assert decision_label(oc) == 1


def test_tiny_test_specs(networks_dir):
    d = networks_dir / "vnncomp2021_test"
    ((box, oc),) = load_vnnlib(d / "test_nano.vnnlib", 1, 1)
    assert (box.lower.tolist(), box.upper.tolist(), rows(oc)) == ([-1.0], [1.0], [([[1.0]], [-1.0])])
    for name in ("test_tiny", "test_small"):     # X bounds inside the (or (and ...)) disjunct
        ((box, oc),) = load_vnnlib(d / f"{name}.vnnlib", 1, 1)
        assert (box.lower.tolist(), box.upper.tolist(), rows(oc)) == ([-1.0], [1.0], [([[-1.0]], [-100.0])])


# ----------------------------------------------------------------------------- grammar and semantics
def test_disjunctions_with_input_boxes_are_grouped():
    text = HEAD2 + """
    ; comment (with parentheses
    (assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (>= Y_0 Y_1))
                (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (<= Y_2 -3))
                (and (>= X_0 -2) (<= X_0 -1) (>= X_1 0) (<= X_1 1))))
    """
    (b1, o1), (b2, o2) = parse_vnnlib(text, 2, 3)
    assert b1.lower.tolist() == [0, 0] and b1.upper.tolist() == [1, 1]
    assert rows(o1) == [([[-1.0, 1.0, 0.0]], [0.0]), ([[0.0, 0.0, 1.0]], [-3.0])]
    assert b2.lower.tolist() == [-2, 0] and b2.upper.tolist() == [-1, 1]
    assert rows(o2) == [([[0.0, 0.0, 0.0]], [0.0])]               # no output constraint: always unsafe
    assert o2.margin(None, np.array([[1e9, -1e9, 0.0]]))[0] >= 0


def test_and_of_ors_expands_to_dnf_and_matches_direct_evaluation():
    text = HEAD2 + BOX2 + """
    (assert (or (>= Y_0 Y_1) (<= (+ Y_0 (* 2 Y_1)) -1)))
    (assert (or (and (<= Y_2 0.5) (>= (- Y_0 Y_2) 0.25)) (= Y_1 Y_2) (<= (- Y_2) (* 0.5 3))))
    """
    ((box, oc),) = parse_vnnlib(text, 2, 3)
    assert len(oc.disjuncts) == 2 * 3
    assert box.lower.tolist() == [-1, 0] and box.upper.tolist() == [1, 0.5]

    def direct(y0, y1, y2):
        a = y0 >= y1 or y0 + 2 * y1 <= -1
        b = (y2 <= 0.5 and y0 - y2 >= 0.25) or y1 == y2 or -y2 <= 1.5
        return a and b

    rng = np.random.default_rng(1)
    ys = np.vstack([rng.integers(-4, 5, size=(400, 3)) / 4.0, [[0.0, 1.0, 1.0]]])  # exact quarter grid hits ties
    got = oc.margin(None, ys) >= 0
    want = np.array([direct(*y) for y in ys])
    assert got.tolist() == want.tolist()
    assert want.any() and not want.all()


def test_numbers_parse_exactly_and_round_outward():
    text = "(declare-const X_0 Real)(declare-const Y_0 Real)" \
           "(assert (>= X_0 0.1))(assert (<= X_0 1e-1))(assert (<= (* 3 Y_0) 0.3))"
    ((box, oc),) = parse_vnnlib(text, 1, 1)
    # the float box contains the decimal one: lower end rounded down, upper end up (float 0.1 > 1/10)
    assert Fraction(box.lower[0]) < Fraction(1, 10) < Fraction(box.upper[0]) and box.upper[0] == 0.1
    assert box.lower[0] == np.nextafter(0.1, 0.0)
    # the unsafe set 3 y <= 3/10 is enlarged: float 0.3 < 3/10, so the next float up
    ((A, c),) = oc.disjuncts
    assert A.tolist() == [[3.0]] and Fraction(c[0]) >= Fraction(3, 10) and c[0] == np.nextafter(0.3, 1.0)


def test_decision_label_recognizes_only_the_argmax_form():
    def oc(pairs, n=4, scale=1.0, rhs=0.0):
        ds = []
        for c, j in pairs:
            r = np.zeros(n)
            r[c], r[j] = scale, -scale
            ds.append(([r], [rhs]))
        return OutputConstraint(tuple(ds))

    assert decision_label(oc([(2, 0), (2, 1), (2, 3)])) == 2
    assert decision_label(oc([(2, 3), (2, 0), (2, 1)], scale=0.5)) == 2      # order and positive scale
    assert decision_label(oc([(2, 0), (2, 1)])) is None                     # class 3 missing
    assert decision_label(oc([(2, 0), (2, 1), (2, 1), (2, 3)])) is None     # duplicate
    assert decision_label(oc([(2, 0), (1, 2), (2, 3)])) is None             # mixed labels
    assert decision_label(oc([(2, 0), (2, 1), (2, 3)], rhs=0.5)) is None    # a margin is not argmax
    both = OutputConstraint(((np.array([[1.0, -1.0, 0, 0], [1.0, 0, -1.0, 0]]), np.zeros(2)),))
    assert decision_label(both) is None
    text = "(declare-const X_0 Real)" + "".join(f"(declare-const Y_{j} Real)" for j in range(3)) + \
           "(assert (<= X_0 1))(assert (>= X_0 0))(assert (or (and (>= Y_0 Y_1)) (and (>= Y_2 Y_1))))"
    ((_, parsed),) = parse_vnnlib(text, 1, 3)
    assert decision_label(parsed) == 1


BAD = {
    "strict": (BOX2 + "(assert (< Y_0 1))", "strict comparison '<'"),
    "mixed": (BOX2 + "(assert (<= X_0 Y_0))", "mixes input \\(X\\) and output \\(Y\\)"),
    "two-x": (BOX2 + "(assert (<= (+ X_0 X_1) 1))", "single X variable"),
    "undeclared": (BOX2 + "(assert (<= Y_7 1))", "Y_7 is used but not declared"),
    "unbalanced": (BOX2 + "(assert (<= Y_0 1)", "unbalanced '\\('"),
    "extra-paren": (BOX2 + "(assert (<= Y_0 1)))", "unbalanced '\\)'"),
    "unbounded": ("(assert (>= X_0 -1))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= Y_0 1))", "X_1 has no upper"),
    "infeasible": ("(assert (>= X_0 2))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 0))(assert (<= Y_0 1))",
                   "infeasible"),
    "nonlinear": (BOX2 + "(assert (<= (* Y_0 Y_1) 1))", "non-linear"),
    "bad-number": (BOX2 + "(assert (<= Y_0 1..5))", "expected a number"),
    "bad-op": (BOX2 + "(assert (<= (/ Y_0 2) 1))", "unsupported term operator '/'"),
    "bad-formula": (BOX2 + "(assert (not (<= Y_0 1)))", "unsupported formula operator 'not'"),
    "bad-command": (BOX2 + "(define-fun f () Real 1)", "unsupported command 'define-fun'"),
    "no-assert": ("", "has no assert"),
    "arity": (BOX2 + "(assert (<= Y_0))", "needs two operands"),
    "overflow-y": (BOX2 + "(assert (<= Y_0 1e400))", "10\\^400 is beyond the float64 range"),
    "overflow-x": ("(assert (>= X_0 -1e309))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 1))(assert (<= Y_0 1))",
                   "beyond the float64 range"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_specs_raise_with_line_numbers(name):
    body, msg = BAD[name]
    with pytest.raises(ModelFormatError, match=msg):
        parse_vnnlib(HEAD2 + body, 2, 3, source="spec.vnnlib")


def test_error_message_names_source_and_line():
    with pytest.raises(ModelFormatError, match=r"^spec.vnnlib: line 11: strict comparison"):
        parse_vnnlib(HEAD2 + BOX2 + "\n(assert (> Y_0 1))", 2, 3, source="spec.vnnlib")


def test_variable_counts_must_match_the_network(tmp_path):
    p = tmp_path / "p.vnnlib"
    p.write_text(HEAD2 + BOX2 + "(assert (<= Y_0 1))")
    assert len(load_vnnlib(p, 2, 3)) == 1
    with pytest.raises(ModelFormatError, match="declares 2 X variables but the network has 5 inputs"):
        load_vnnlib(p, 5, 3)
    with pytest.raises(ModelFormatError, match="declares 3 Y variables but the network has 10 outputs"):
        load_vnnlib(p, 2, 10)
    with pytest.raises(ModelFormatError, match="cannot read"):
        load_vnnlib(tmp_path / "missing.vnnlib")
    p.write_text("(declare-const X_1 Real)(declare-const Y_0 Real)(assert (<= Y_0 1))")
    with pytest.raises(ModelFormatError, match="not numbered"):
        load_vnnlib(p)


def test_dnf_blow_up_is_refused_quickly():
    ors = "".join(f"(assert (or (<= Y_0 {i}) (<= Y_1 {i})))" for i in range(20))   # 2^20 disjuncts
    with pytest.raises(ModelFormatError, match="more than"):
        parse_vnnlib(HEAD2 + BOX2 + ors, 2, 3)


def test_equal_boxes_share_one_pair():
    disj = " ".join(f"(and (>= X_0 -1) (<= X_0 1) (>= X_1 0) (<= X_1 0.5) (<= Y_{j} 0))" for j in range(3))
    ((box, oc),) = parse_vnnlib(HEAD2 + f"(assert (or {disj}))", 2, 3)
    assert len(oc.disjuncts) == 3
    for j, (A, c) in enumerate(oc.disjuncts):
        assert A.tolist() == [[1.0 if k == j else 0.0 for k in range(3)]] and c.tolist() == [0.0]
    assert list(itertools.chain(box.lower, box.upper)) == [-1, 0, 1, 0.5]
