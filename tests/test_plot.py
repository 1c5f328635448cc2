"""hybridq.plot: the cell map of real verify/quantify runs is written as a PNG that opens, and the
cells it draws match the run's statistics."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from hybridq import ConfigError
from hybridq.bab import verify
from hybridq.inputs import InputBox
from hybridq.network import Layer, Network
from hybridq.perturbation import perturbation
from hybridq.plot import STATUSES, plot_cells, plot_study
from hybridq.properties import Deviation
from hybridq.quantify import quantify
from hybridq.result import LeafCell, Result, Stats

BOX = InputBox([-1.0, -1.0], [1.0, 1.0])


def _net(widths=(2, 6, 6, 1), seed=3) -> Network:
    rng = np.random.default_rng(seed)
    layers = [Layer(rng.normal(0, 0.7, (widths[k + 1], widths[k])), rng.normal(0, 0.2, widths[k + 1]),
                    "relu" if k < len(widths) - 2 else "identity") for k in range(len(widths) - 1)]
    return Network(tuple(layers), output="sigmoid", name="plot-test")


def _stats_counts(stats) -> dict:
    return {"bounds": stats.proved_bounds, "smt": stats.proved_smt, "counterexample": stats.refuted,
            "open": stats.open + stats.pending}


def _check_png(path) -> np.ndarray:
    assert path.exists() and path.stat().st_size > 5000
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600
    assert float(np.std(img[..., :3])) > 0.05  # not a blank canvas
    return img


def _colour_fraction(img: np.ndarray, hex_colour: str) -> float:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    return float(np.mean(np.all(np.abs(img[..., :3] - rgb) < 0.02, axis=-1)))


def test_verify_robust_plot_counts_match_stats(tmp_path):
    net = _net()
    pert = perturbation("abs:1e-3", net)
    res = verify(net, pert, BOX, Deviation(0.5, "logit"), backend="none", jobs=1, seed=0)
    assert res.verdict == "robust"
    s = plot_cells(res, tmp_path / "robust.png", box=BOX)
    img = _check_png(tmp_path / "robust.png")
    assert s.counts == _stats_counts(res.stats)
    assert s.n_cells == len(res.leaves) == sum(_stats_counts(res.stats).values())
    assert s.counts["counterexample"] == 0 and s.n_counterexamples == 0
    # robust by bounds: the "bounds" colour covers a visible part of the picture
    assert _colour_fraction(img, "#009E73") > 0.05
    # the leaves tile the box: their areas add up to the box's area
    area = sum(float(np.prod(c.upper - c.lower)) for c in res.leaves)
    assert area == pytest.approx(BOX.volume, rel=1e-9)
    # the title states the verdict and the counts
    title = s.figure._suptitle.get_text()
    assert "robust" in title and f"{len(res.leaves)} leaf cells" in title


def test_verify_not_robust_marks_the_counterexample(tmp_path):
    net = _net()
    pert = perturbation("abs:5e-2", net)
    res = verify(net, pert, BOX, Deviation(1e-3, "logit"), backend="none", jobs=1, seed=0)
    assert res.verdict == "not_robust"
    s = plot_cells(res, tmp_path / "cex.png", box=BOX)
    _check_png(tmp_path / "cex.png")
    assert s.counts == _stats_counts(res.stats)
    assert s.counts["counterexample"] >= 1 and s.n_counterexamples == 1
    # the marker sits at the counterexample's input, inside a refuted cell
    x = res.counterexample.x
    assert any(c.status == "counterexample" and np.all(c.lower <= x) and np.all(x <= c.upper) for c in res.leaves)
    offsets = [c.get_offsets() for c in s.figure.axes[0].collections if c.get_gid() == "counterexample"]
    assert len(offsets) == 1 and np.allclose(offsets[0][0], x)


def test_quantify_plot_heatmap_holds_the_proved_bound(tmp_path):
    net = _net()
    q = quantify(net, "abs:1e-2", BOX, space="score", tol=0.1, backend="none", jobs=1, seed=0)
    assert q.leaves is not None and 0 < q.lower <= q.upper
    s = plot_cells(q, tmp_path / "q.png", box=BOX)
    _check_png(tmp_path / "q.png")
    assert s.counts == _stats_counts(q.stats)
    # every leaf's certified deviation bound is at most the proved maximum, the largest within tol
    bounds = np.array([c.bound for c in q.leaves])
    assert np.all(bounds <= q.upper)
    heat = [c for c in s.figure.axes[1].collections if c.get_gid() == "bound:value"]
    assert len(heat) == 1 and np.max(heat[0].get_array()) == pytest.approx(np.max(bounds))
    assert "max deviation" in s.figure._suptitle.get_text()


def test_local_point_run_draws_marker_sized_cells(tmp_path):
    net = _net()
    x = np.array([0.2, -0.4])
    res = verify(net, perturbation("abs:1e-3", net), InputBox.point(x), Deviation(0.05, "score"),
                 backend="none", jobs=1)
    assert res.verdict == "robust"
    s = plot_cells(res, tmp_path / "pt.png")
    _check_png(tmp_path / "pt.png")
    assert s.counts == _stats_counts(res.stats) and s.n_cells >= 1


def test_synthetic_counts_and_errors(tmp_path):
    leaves = [LeafCell(np.array([0.0, 0.0]), np.array([0.5, 1.0]), "bounds", 0.1),
              LeafCell(np.array([0.5, 0.0]), np.array([1.0, 0.5]), "smt", 0.2),
              LeafCell(np.array([0.5, 0.5]), np.array([1.0, 1.0]), "open", np.inf),
              LeafCell(np.array([0.5, 0.5]), np.array([1.0, 1.0]), "open", 0.3)]
    res = Result("unknown", Deviation(0.25), None, 0.05, Stats(proved_bounds=1, proved_smt=1, open=2), leaves)
    s = plot_cells(res, None)
    assert s.path is None
    assert s.counts == {"bounds": 1, "smt": 1, "open": 2, "counterexample": 0}
    assert set(s.counts) == set(STATUSES)
    bad = Result("unknown", Deviation(0.1), None, 0.0, Stats(), [LeafCell(np.zeros(2), np.ones(2), "maybe", 0.0)])
    with pytest.raises(ConfigError, match="unknown leaf-cell status 'maybe'"):
        plot_cells(bad)
    with pytest.raises(ConfigError, match="at most two inputs"):
        plot_cells(Result("robust", Deviation(0.1), leaves=None))
    three = Result("robust", Deviation(0.1), leaves=[LeafCell(np.zeros(3), np.ones(3), "bounds", 0.0)])
    with pytest.raises(ConfigError, match="2-input network"):
        plot_cells(three)


def test_plot_study_png(tmp_path):
    rows = [dict(network=n, scope=sc, family=f, radius=r, proved=k * r * 1.05, witnessed=k * r)
            for n, k in (("relu", 3.0), ("linear", 5.0)) for sc in ("local", "global")
            for f, rs in (("abs", (1e-4, 1e-3, 1e-2)), ("fixed", (2.0**-9, 2.0**-5)), ("point", (2.0**-9,)))
            for r in rs]
    fig = plot_study(rows, tmp_path / "study.png")
    _check_png(tmp_path / "study.png")
    assert len(fig.axes) == 2
    # one proved line per (network, family) in each panel
    assert sum(1 for ln in fig.axes[0].get_lines() if ln.get_linestyle() != "None") == 6
    with pytest.raises(ConfigError, match="lacks"):
        plot_study([{"network": "relu"}])


def _cli(args) -> int:
    from hybridq.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    return int(e.value.code)


def test_cli_plot_verify_and_quantify(tmp_path, capsys):
    net = _net()
    path = tmp_path / "net.npz"
    net.save(path)
    common = [path, "--perturb", "abs:1e-3", "--box=-1:1,-1:1", "--backend", "none", "--jobs", "1", "--no-progress"]
    code = _cli(["verify", *common, "--delta", "0.5", "--plot", tmp_path / "v.png", "--json", tmp_path / "v.json"])
    assert code == 0
    _check_png(tmp_path / "v.png")
    import json

    stats = json.loads((tmp_path / "v.json").read_text())["result"]["stats"]
    assert "robust" in capsys.readouterr().out
    assert stats["proved_bounds"] >= 1
    code = _cli(["quantify", *common, "--space", "score", "--plot", tmp_path / "q.png"])
    assert code == 0
    _check_png(tmp_path / "q.png")
    assert "max deviation" in capsys.readouterr().out
    # a network with more than two inputs: one clear line, exit 3, no file
    big = Network((Layer(np.eye(3)[:2], np.zeros(2), "relu"), Layer(np.ones((1, 2)), np.zeros(1), "identity")))
    big.save(tmp_path / "big.npz")
    code = _cli(["verify", tmp_path / "big.npz", "--perturb", "abs:1e-3", "--box=-1:1,-1:1,-1:1", "--delta", "1",
                 "--backend", "none", "--jobs", "1", "--no-progress", "--plot", tmp_path / "big.png"])
    assert code == 3 and not (tmp_path / "big.png").exists()
    assert "at most two inputs" in capsys.readouterr().err
