"""Network loaders: .nnet, ONNX (synthetic graphs and the shipped VNN-COMP nets), .npz round trips."""

from __future__ import annotations

import os
import re

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx_builders import make_model, reference_forward, save, write_nnet
from test_network import random_network

from hybridq import Layer, ModelFormatError, Network, load_network, load_vnnlib
from hybridq.io.nnet import load_nnet
from hybridq.io.npz import load_npz
from hybridq.io.onnx import load_onnx
from hybridq.io.vnnlib import decision_label
from hybridq.network import ACTIVATIONS, OUTPUTS

RNG = np.random.default_rng(20261129)
NORMALIZATION = ("input_mean", "input_std", "input_lower", "input_upper", "output_mean", "output_std")


def assert_same_network(a: Network, b: Network) -> None:
    """Bit-for-bit equal layers, activations, output transform and normalization constants."""
    assert len(a.layers) == len(b.layers) and a.output == b.output
    for la, lb in zip(a.layers, b.layers):
        assert la.W.shape == lb.W.shape and la.W.tobytes() == lb.W.tobytes()
        assert la.b.tobytes() == lb.b.tobytes()
        assert (la.activation, la.alpha) == (lb.activation, lb.alpha)
    for key in NORMALIZATION:
        va, vb = getattr(a, key), getattr(b, key)
        assert (va is None) == (vb is None), key
        if va is not None:
            assert va.tobytes() == vb.tobytes(), key


def f32(a):
    return np.asarray(a, dtype=np.float32)


def check_against_reference(path, model, n_samples=5, in_shape=None, rtol=1e-12):
    """load_onnx(path) evaluates like the reference interpreter on random inputs."""
    net = load_onnx(path)
    shape = in_shape or [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    for _ in range(n_samples):
        x = RNG.uniform(-2, 2, shape)
        ref = np.asarray(reference_forward(model, x)).reshape(-1)
        got = net.scores(x.reshape(-1))
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-12)
    return net


# ----------------------------------------------------------------------------- synthetic ONNX
@pytest.mark.parametrize("transA", [0, 1])
@pytest.mark.parametrize("transB", [0, 1])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 2.0)])
def test_gemm_attributes_data_as_A(tmp_path, transA, transB, alpha, beta):
    W = f32(RNG.normal(size=(3, 4)))               # layer (out=3, in=4)
    B = W if transB else W.T
    in_shape = [4, 1] if transA else [1, 4]
    node = helper.make_node("Gemm", ["x", "B", "C"], ["y"], alpha=alpha, beta=beta, transA=transA, transB=transB)
    model = make_model([node], {"B": B, "C": f32(RNG.normal(size=3))}, in_shape, [1, 3])
    net = check_against_reference(save(model, tmp_path / "g.onnx"), model)
    np.testing.assert_array_equal(net.layers[0].W, alpha * W.astype(np.float64))
    assert net.widths == (4, 3)


@pytest.mark.parametrize("transA", [0, 1])
@pytest.mark.parametrize("transB", [0, 1])
def test_gemm_data_as_B_column_convention(tmp_path, transA, transB):
    W = f32(RNG.normal(size=(2, 3)))
    A = W.T if transA else W
    in_shape = [1, 3] if transB else [3, 1]
    node = helper.make_node("Gemm", ["A", "x", "C"], ["y"], alpha=1.5, beta=0.5, transA=transA, transB=transB)
    model = make_model([node], {"A": A, "C": f32(RNG.normal(size=(2, 1)))}, in_shape, [2, 1])
    check_against_reference(save(model, tmp_path / "g.onnx"), model)


@pytest.mark.parametrize("order,in_shape", [("row", [1, 4]), ("row", [4]), ("col", [4]), ("col", [4, 1]),
                                            ("col", [1, 4, 1])])
def test_matmul_both_orders(tmp_path, order, in_shape):
    W1, W2 = f32(RNG.normal(size=(5, 4))), f32(RNG.normal(size=(2, 5)))
    b1 = f32(RNG.normal(size=(5,) if len(in_shape) == 1 or order == "row" else (5, 1)))
    if order == "row":
        nodes = [helper.make_node("MatMul", ["x", "W1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["h1"]),
                 helper.make_node("Relu", ["h1"], ["r1"]), helper.make_node("MatMul", ["r1", "W2"], ["y"])]
        inits = {"W1": W1.T, "W2": W2.T, "b1": b1}
    else:
        nodes = [helper.make_node("MatMul", ["W1", "x"], ["m1"]), helper.make_node("Add", ["b1", "m1"], ["h1"]),
                 helper.make_node("Relu", ["h1"], ["r1"]), helper.make_node("MatMul", ["W2", "r1"], ["y"])]
        inits = {"W1": W1, "W2": W2, "b1": b1}
    model = make_model(nodes, inits, in_shape, [2])
    net = check_against_reference(save(model, tmp_path / "m.onnx"), model)
    assert [l.activation for l in net.layers] == ["relu", "identity"]
    np.testing.assert_array_equal(net.layers[0].W, W1.astype(np.float64))
    np.testing.assert_array_equal(net.layers[0].b, b1.reshape(-1).astype(np.float64))
    np.testing.assert_array_equal(net.layers[1].b, np.zeros(2))


def test_preprocessing_folds_into_input_normalization(tmp_path):
    # input [1,1,1,5]: ((x - m) / d) * s + a, then Flatten and a Gemm; s has a negative entry.
    m, d = f32([0.5, -1, 2, 0, 3]), f32([2, 4, 0.5, 1, 8])
    s, a = f32([1, -2, 1, 3, 1]), f32([0.25, 0, 0, -1, 0])
    W, b = f32(RNG.normal(size=(3, 5))), f32(RNG.normal(size=3))
    nodes = [
        helper.make_node("Sub", ["x", "m"], ["t1"]), helper.make_node("Div", ["t1", "d"], ["t2"]),
        helper.make_node("Mul", ["s", "t2"], ["t3"]), helper.make_node("Add", ["t3", "a"], ["t4"]),
        helper.make_node("Flatten", ["t4"], ["f"], axis=1), helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1),
    ]
    model = make_model(nodes, {"m": m.reshape(1, 1, 1, 5), "d": d, "s": s, "a": a, "W": W, "b": b}, [1, 1, 1, 5], [1, 3])
    net = check_against_reference(save(model, tmp_path / "p.onnx"), model, rtol=1e-9)
    assert np.all(net.input_std > 0)
    # (x - m)/d*s + a = sign(s) (x - mean) / std with std = d/|s| and mean = m - a d / s
    m, d, s, a = (v.astype(np.float64) for v in (m, d, s, a))
    np.testing.assert_allclose(net.input_std, d / np.abs(s), rtol=1e-15)
    np.testing.assert_allclose(net.input_mean, m - a * d / s, rtol=1e-15)
    np.testing.assert_array_equal(net.layers[0].W[:, 1], -W[:, 1].astype(np.float64))


def test_constant_minus_input_and_constant_nodes(tmp_path):
    c = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(f32([1.0, 2.0]), "c"))
    nodes = [c, helper.make_node("Sub", ["c", "x"], ["t"]), helper.make_node("MatMul", ["t", "W"], ["y"])]
    model = make_model(nodes, {"W": f32([[1.0], [3.0]])}, [1, 2], [1, 1])
    net = check_against_reference(save(model, tmp_path / "c.onnx"), model)
    # y = (1 - x0) + 3 (2 - x1) at x = (0.5, 1): 0.5 + 3 = 3.5
    assert net.forward(np.array([0.5, 1.0]))[0] == pytest.approx(3.5, abs=1e-15)


@pytest.mark.parametrize("act,expected", [("Relu", "relu"), ("LeakyRelu", "leaky_relu"), ("Sigmoid", "sigmoid"),
                                          ("Tanh", "tanh"), ("Clip", "hardtanh"), ("Clip6", "hardtanh")])
def test_hidden_activations(tmp_path, act, expected):
    inits = {"W1": f32(RNG.normal(size=(3, 6)) * 2), "W2": f32(RNG.normal(size=(6, 2)))}
    opset = 13
    if act == "LeakyRelu":
        anode = helper.make_node("LeakyRelu", ["h"], ["r"], alpha=0.2)
    elif act == "Clip":
        inits |= {"lo": f32(-1.0), "hi": f32(1.0)}
        anode = helper.make_node("Clip", ["h", "lo", "hi"], ["r"])
    elif act == "Clip6":  # opset 6 style attributes
        anode, opset = helper.make_node("Clip", ["h"], ["r"], min=-1.0, max=1.0), 6
    else:
        anode = helper.make_node(act, ["h"], ["r"])
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), anode, helper.make_node("MatMul", ["r", "W2"], ["y"])]
    model = make_model(nodes, inits, [1, 3], [1, 2], opset=opset)
    net = check_against_reference(save(model, tmp_path / "a.onnx"), model)
    assert net.layers[0].activation == expected
    if act == "LeakyRelu":
        assert net.layers[0].alpha == pytest.approx(0.2)


def test_final_softmax_and_sigmoid_become_output_transforms(tmp_path):
    W = f32(RNG.normal(size=(4, 3)))
    nodes = [helper.make_node("Gemm", ["x", "W"], ["z"]), helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    model = make_model(nodes, {"W": W}, [1, 4], [1, 3])
    net = check_against_reference(save(model, tmp_path / "s.onnx"), model)
    assert net.output == "softmax" and net.layers[-1].activation == "identity"
    nodes = [helper.make_node("Gemm", ["x", "W"], ["z"]), helper.make_node("Sigmoid", ["z"], ["y"])]
    model = make_model(nodes, {"W": W[:, :1]}, [1, 4], [1, 1])
    net = check_against_reference(save(model, tmp_path / "s1.onnx"), model)
    assert net.output == "sigmoid" and net.layers[-1].activation == "identity"


def test_shape_ops_dense_fold_and_stacked_linear_layers(tmp_path):
    # [1,6,1] -Squeeze-> [1,6] -Unsqueeze-> [1,1,6] -Reshape-> [1,6] -Identity-> Gemm, *2, -1,
    # then Gemm directly after Gemm (identity activation), /4, Tanh, Gemm.
    inits = {"ax": np.array([2], dtype=np.int64), "ax0": np.array([1], dtype=np.int64),
             "shp": np.array([0, -1], dtype=np.int64), "W1": f32(RNG.normal(size=(6, 4))),
             "two": f32(2.0), "one": f32(np.ones(4)), "W2": f32(RNG.normal(size=(4, 3))), "four": f32(4.0),
             "W3": f32(RNG.normal(size=(3, 2)))}
    nodes = [
        helper.make_node("Squeeze", ["x", "ax"], ["s"]), helper.make_node("Unsqueeze", ["s", "ax0"], ["u"]),
        helper.make_node("Reshape", ["u", "shp"], ["r"]), helper.make_node("Identity", ["r"], ["i"]),
        helper.make_node("Gemm", ["i", "W1"], ["g1"]), helper.make_node("Mul", ["g1", "two"], ["g1m"]),
        helper.make_node("Sub", ["g1m", "one"], ["g1s"]), helper.make_node("Gemm", ["g1s", "W2"], ["g2"]),
        helper.make_node("Div", ["g2", "four"], ["g2d"]), helper.make_node("Tanh", ["g2d"], ["t"]),
        helper.make_node("Gemm", ["t", "W3"], ["y"]),
    ]
    model = make_model(nodes, inits, [1, 6, 1], [1, 2])
    net = check_against_reference(save(model, tmp_path / "sh.onnx"), model)
    assert net.widths == (6, 4, 3, 2)
    assert [l.activation for l in net.layers] == ["identity", "tanh", "identity"]


def test_pytorch_view_pattern_shape_gather_concat(tmp_path):
    inits = {"i0": np.array(0, dtype=np.int64), "m1": np.array([-1], dtype=np.int64),
             "zero": np.array([0], dtype=np.int64), "W": f32(RNG.normal(size=(6, 2)))}
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]), helper.make_node("Gather", ["shp", "i0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero"], ["n1"]), helper.make_node("Concat", ["n1", "m1"], ["tgt"], axis=0),
        helper.make_node("Reshape", ["x", "tgt"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"]),
    ]
    model = make_model(nodes, inits, [1, 2, 3], [1, 2])
    net = check_against_reference(save(model, tmp_path / "v.onnx"), model)
    assert net.widths == (6, 2)


# ----------------------------------------------------------------------------- shipped networks
def _norm_box(net: Network):
    return (net.input_lower - net.input_mean) / net.input_std, (net.input_upper - net.input_mean) / net.input_std


def test_acasxu_nnet_and_onnx_agree(networks_dir):
    nnets = sorted((networks_dir / "acasxu" / "nnet").glob("*.nnet"))
    assert len(nnets) == 45
    rng = np.random.default_rng(45)
    worst = 0.0
    for p in nnets:
        a = load_network(p)
        b = load_network(networks_dir / "acasxu" / "onnx" / (p.stem + ".onnx"))
        assert a.widths == b.widths == (5, 50, 50, 50, 50, 50, 50, 5)
        assert [l.activation for l in a.layers] == [l.activation for l in b.layers] == ["relu"] * 6 + ["identity"]
        assert a.input_lower.tolist() == [0.0, -3.141593, -3.141593, 100.0, 0.0]
        assert a.output_mean[0] == 7.5188840201005975 and a.output_std[0] == 373.94992
        np.testing.assert_array_equal(b.input_mean, 0.0)   # the ONNX Sub has a zero mean
        lo, hi = _norm_box(a)
        xn = rng.uniform(lo, hi, (200, 5))                  # normalized inputs inside the clamp box
        raw = xn * a.input_std + a.input_mean
        y_onnx = b.forward(xn) * a.output_std + a.output_mean
        diff = np.abs(a.forward(raw) - y_onnx) / a.output_std
        worst = max(worst, float(diff.max()))
    assert worst < 1e-5


def test_acasxu_nnet_header_values(networks_dir):
    net = load_nnet(networks_dir / "acasxu" / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet")
    assert net.input_mean.tolist() == [19791.091, 0.0, 0.0, 650.0, 600.0]
    assert net.input_std.tolist() == [60261.0, 6.28318530718, 6.28318530718, 1100.0, 1200.0]
    assert net.layers[0].W[0, :2].tolist() == [5.40062e-02, -2.61092e+00]
    assert net.name == "ACASXU_run2a_1_1_batch_2000"
    # clamping: a point outside the box evaluates like its projection
    np.testing.assert_array_equal(net.forward(np.array([1e6, 9, -9, 0, 5000])),
                                  net.forward(np.array([60760, 3.141593, -3.141593, 100, 1200])))


MNIST = [("mnistfc/mnist-net_256x2.onnx", 2, "relu"), ("mnistfc/mnist-net_256x4.onnx", 4, "relu"),
         ("mnistfc/mnist-net_256x6.onnx", 6, "relu"), ("eran_sigmoid/ffnnSIGMOID__Point_6x200.onnx", 6, "sigmoid")]


@pytest.mark.parametrize("rel,depth,act", MNIST)
def test_mnist_networks_load_and_match_reference(networks_dir, rel, depth, act):
    path = networks_dir / rel
    net = load_network(path)
    width = 200 if act == "sigmoid" else 256
    assert net.widths == (784,) + (width,) * depth + (10,)
    assert [l.activation for l in net.layers] == [act] * depth + ["identity"]
    if act == "sigmoid":  # Sub(0.1307) and Div(0.3081) Constant nodes fold into the normalization
        np.testing.assert_array_equal(net.input_mean, np.float32(0.1307))
        np.testing.assert_array_equal(net.input_std, np.float32(0.3081))
    model = onnx.load(str(path))
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(7).uniform(0, 1, shape)
    np.testing.assert_allclose(net.forward(x.reshape(-1)), reference_forward(model, x).reshape(-1), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("rel,depth,act", MNIST)
def test_center_of_each_vnnlib_box_is_classified_as_the_protected_label(networks_dir, rel, depth, act):
    net = load_network(networks_dir / rel)
    specs = sorted((networks_dir / rel.split("/")[0]).glob("*.vnnlib"))
    assert specs
    for spec in specs:
        ((box, constraint),) = load_vnnlib(spec, net.n_in, net.n_out)
        label = decision_label(constraint)
        m = re.search(r"label: (\d+)", spec.read_text())
        if m:  # the mnistfc specs state their label in a comment
            assert label == int(m.group(1))
        assert label is not None
        assert int(net.predict(box.center)) == label, spec.name
        assert constraint.margin(net, net.forward(box.center[None]))[0] < 0  # the centre is safe


def test_vnncomp_test_networks_known_outputs(networks_dir):
    d = networks_dir / "vnncomp2021_test"
    xs = np.array([[-2.0], [-0.75], [0.0], [1.0], [3.0]])
    # nano: y = relu(x @ [[0.5]])
    nano = load_network(d / "test_nano.onnx")
    np.testing.assert_array_equal(nano.forward(xs)[:, 0], [0.0, 0.0, 0.0, 0.5, 1.5])
    # tiny and small: column-vector convention y = W2 relu(W1 relu(W0 x + B0) + B1) + B2
    for name in ("test_tiny", "test_small"):
        model = onnx.load(str(d / f"{name}.onnx"))
        init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
        net = load_network(d / f"{name}.onnx")
        n_layers = len(init) // 2
        assert len(net.layers) == n_layers
        for x in xs:
            h = x
            for k in range(n_layers):
                h = init[f"W{k}"] @ h + init[f"B{k}"]
                if k < n_layers - 1:
                    h = np.maximum(h, 0)
            np.testing.assert_allclose(net.forward(x), h, rtol=1e-15)
    small = load_network(d / "test_small.onnx")
    # by hand: x=0: relu(1.5)=1.5 (x2) -> 2*3+2.5 = 8.5 (x2) -> 3*17+3.5 = 54.5; x=1 -> 78.5; x=-2 -> 3*5+3.5
    np.testing.assert_array_equal(small.forward(np.array([[0.0], [1.0], [-2.0]]))[:, 0], [54.5, 78.5, 18.5])
    np.testing.assert_array_equal(load_network(d / "test_tiny.onnx").forward(xs)[:, 0], [0, 0, 0, 1, 3])


# ----------------------------------------------------------------------------- .npz and .nnet
@pytest.mark.parametrize("output", OUTPUTS)
def test_npz_round_trip_is_exact(tmp_path, output):
    rng = np.random.default_rng(len(output))
    net = random_network(rng, list(ACTIVATIONS), output)
    net = Network(net.layers, net.output, net.input_mean, net.input_std, net.input_lower, net.input_upper,
                  net.output_mean, net.output_std, name="my net")
    net.save(tmp_path / "n.npz")
    back = load_npz(tmp_path / "n.npz")
    assert_same_network(back, net)
    assert back.name == "my net"
    x = rng.normal(size=(5, net.n_in))
    assert net.forward(x).tobytes() == back.forward(x).tobytes()
    assert_same_network(load_network(tmp_path / "n.npz"), net)


def test_npz_round_trip_without_clamp_and_suffix(tmp_path):
    net = Network((Layer([[1.5, -2.0]], [0.25], "relu"),))
    net.save(tmp_path / "plain")                    # numpy appends .npz
    back = load_network(tmp_path / "plain.npz")
    assert_same_network(back, net)
    assert back.input_lower is None and back.name == "network"


def test_real_network_npz_round_trip(networks_dir, tmp_path):
    net = load_network(networks_dir / "acasxu" / "nnet" / "ACASXU_run2a_2_3_batch_2000.nnet")
    net.save(tmp_path / "acas.npz")
    back = load_network(tmp_path / "acas.npz")
    assert_same_network(back, net)
    x = np.random.default_rng(0).uniform(net.input_lower, net.input_upper, (50, 5))
    assert net.forward(x).tobytes() == back.forward(x).tobytes()


def test_nnet_generated_file_round_trips(tmp_path):
    rng = np.random.default_rng(11)
    Ws = [rng.normal(size=(4, 3)), rng.normal(size=(2, 4))]
    bs = [rng.normal(size=4), rng.normal(size=2)]
    p = write_nnet(tmp_path / "g.nnet", Ws, bs, [-1, -2, -3], [1, 2, 3], [0.5, 0, 1, 10.0], [2, 1, 4, 3.0])
    net = load_nnet(p)
    for l, W, b in zip(net.layers, Ws, bs):
        np.testing.assert_array_equal(l.W, W)
        np.testing.assert_array_equal(l.b, b)
    x = np.array([0.5, -5.0, 2.0])
    xn = (np.clip(x, [-1, -2, -3], [1, 2, 3]) - [0.5, 0, 1]) / [2, 1, 4]
    y = (Ws[1] @ np.maximum(Ws[0] @ xn + bs[0], 0) + bs[1]) * 3 + 10
    np.testing.assert_allclose(net.forward(x), y, rtol=1e-14)


def test_load_network_errors():
    with pytest.raises(ModelFormatError, match="unknown network file suffix '.h5'; supported: .nnet, .onnx, .npz"):
        load_network("model.h5")
    for suffix in (".nnet", ".onnx", ".npz"):
        with pytest.raises(ModelFormatError, match="no such file"):
            load_network(f"/nonexistent/dir/missing{suffix}")


def test_loading_never_modifies_the_file(tmp_path):
    rng = np.random.default_rng(2)
    W, b = rng.normal(size=(2, 3)), rng.normal(size=2)
    files = [write_nnet(tmp_path / "n.nnet", [W], [b], [-1] * 3, [1] * 3, [0] * 4, [1] * 4)]
    model = make_model([helper.make_node("MatMul", ["x", "W"], ["y"])], {"W": f32(W.T)}, [1, 3], [1, 2])
    files.append(save(model, tmp_path / "n.onnx"))
    Network((Layer(W, b, "identity"),)).save(tmp_path / "n.npz")
    files.append(tmp_path / "n.npz")
    for f in files:
        os.chmod(f, 0o444)
        before = (f.read_bytes(), os.stat(f).st_mtime_ns)
        assert load_network(f).widths == (3, 2)
        assert (f.read_bytes(), os.stat(f).st_mtime_ns) == before


def test_gzipped_files_load_as_the_plain_ones(networks_dir, tmp_path):
    """NAME.nnet.gz / .onnx.gz / .npz.gz / .vnnlib.gz (VNN-COMP ships .vnnlib.gz) are read through
    one path (hybridq.io.compressed): the same network, bit for bit, the same ACAS Xu decision sense
    (argmin, recognized by the .nnet clamp and by the ONNX file name), the same VNNLIB boxes; a .gz
    that is not gzip data is one ModelFormatError naming the file; nothing is written beside them."""
    import gzip

    from hybridq.io.compressed import format_suffix

    assert [format_suffix(n) for n in ("a.onnx", "a.ONNX.GZ", "a.vnnlib.gz", "a.gz", "a")] == [".onnx", ".onnx", ".vnnlib", "", ""]
    acas = networks_dir / "acasxu"
    sources = [acas / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet", acas / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx"]
    plain_npz = tmp_path / "plain.npz"
    load_network(sources[0]).save(plain_npz)
    for src in sources + [plain_npz]:
        gz = tmp_path / (src.name + ".gz")
        gz.write_bytes(gzip.compress(src.read_bytes()))
        a, b = load_network(src), load_network(gz)
        assert_same_network(a, b)
        assert a.decision_sense == b.decision_sense == "min", src
    vnn = acas / "vnnlib" / "prop_3.vnnlib"
    gz = tmp_path / "prop_3.vnnlib.gz"
    gz.write_bytes(gzip.compress(vnn.read_bytes()))
    (ba, ca), = load_vnnlib(vnn, 5, 5)
    (bb, cb), = load_vnnlib(gz, 5, 5)
    assert list(ba.lower) == list(bb.lower) and list(ba.upper) == list(bb.upper) and ca.exact == cb.exact
    assert len(ca.exact) == 1 and len(ca.exact[0][1]) == 4 and ba.lower[0] == pytest.approx(-0.303531156)  # prop_3: Y_0 <= Y_j, j = 1..4
    before = sorted(p.name for p in tmp_path.iterdir())
    (tmp_path / "text.vnnlib.gz").write_bytes(vnn.read_bytes())
    with pytest.raises(ModelFormatError, match=re.escape(f"{tmp_path / 'text.vnnlib.gz'}: not a readable .gz file: ")):
        load_vnnlib(tmp_path / "text.vnnlib.gz", 5, 5)
    (tmp_path / "cut.onnx.gz").write_bytes(gzip.compress(sources[1].read_bytes())[:100])
    with pytest.raises(ModelFormatError, match=re.escape(f"{tmp_path / 'cut.onnx.gz'}: not a readable .gz file: ")):
        load_network(tmp_path / "cut.onnx.gz")
    with pytest.raises(ModelFormatError, match=re.escape("unknown network file suffix '.txt'; supported: .nnet, .onnx, .npz "
                                                         "(each also gzip-compressed, e.g. .onnx.gz)")):
        load_network(gz.with_name("net.txt.gz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["text.vnnlib.gz", "cut.onnx.gz"])
