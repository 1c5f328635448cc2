"""Branch and bound on a Dask cluster (``distributed.LocalCluster`` of 2 worker processes):
identical results to ``jobs=1``, a worker killed mid-run, an unreachable scheduler, a cluster
shut down mid-run, and the one-line error without the ``dask`` extra."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from hybridq import Deviation, InputBox, Layer, Network
from hybridq.attack import attack
from hybridq.bab import verify
from hybridq.cli import main
from hybridq.perturbation import perturbation
from hybridq.quantify import quantify

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::UserWarning:distributed.*")


def _net(seed, sizes, act="relu"):
    rng = np.random.default_rng(seed)
    layers = [Layer(rng.normal(size=(sizes[i + 1], sizes[i])), 0.3 * rng.normal(size=sizes[i + 1]),
                    act if i < len(sizes) - 2 else "identity") for i in range(len(sizes) - 1)]
    return Network(tuple(layers))


def _witnessed(net, pert, box):
    return attack(net, pert, Deviation(0.0), box.lower, box.upper, np.random.default_rng(0), 256, 30, 16, False).value


def _start(n_workers):
    cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"})
    return cluster, distributed.Client(cluster)


@pytest.fixture(scope="module")
def client():
    cluster, c = _start(2)
    yield c
    c.close()
    cluster.close()


def _fingerprint(r):
    """Everything a run decides (timings excluded)."""
    cx = r.counterexample if hasattr(r, "counterexample") else r.witness
    s = r.stats
    fp = [r.verdict if hasattr(r, "verdict") else (r.lower, r.upper), s.cells, s.rounds, s.proved_bounds,
          s.refuted, s.splits_input, s.splits_phase, s.open, s.decided_fraction, r.message]
    if hasattr(r, "bound"):
        fp.append(r.bound)
    if hasattr(r, "steps"):
        fp.append([{k: v for k, v in st.items() if k != "seconds"} for st in r.steps])
    if cx is not None:
        fp += [cx.x.tobytes(), [a.tobytes() for p in cx.params for a in p]]
    if getattr(r, "leaves", None):
        fp.append([(c.status, c.bound, c.lower.tobytes()) for c in r.leaves])
    return fp


def _runs():
    net = _net(7, [2, 8, 8, 1])
    pert = perturbation("abs:0.01", net)
    box = InputBox(-np.ones(2), np.ones(2))
    w = _witnessed(net, pert, box)
    net2 = _net(8, [2, 16, 16, 1])
    pert2 = perturbation("abs:0.01", net2)
    w2 = _witnessed(net2, pert2, box)
    kw = dict(backend="none", timeout=300, batch_size=16, seed=3)
    return {
        "verify 2-8-8-1": lambda **e: verify(net, pert, box, Deviation(1.2 * w), **kw, **e),
        "verify 2-16-16-1": lambda **e: verify(net2, pert2, box, Deviation(1.02 * w2), **kw, **e),
        "quantify deviation": lambda **e: quantify(net, pert, box, what="deviation", tol=0.05, **kw, **e),
        "quantify epsilon": lambda **e: quantify(net, None, box, Deviation(1.2 * w), what="epsilon", tol=0.5,
                                                 eps_range=(1e-3, 0.1), **kw, **e),
    }


@pytest.mark.parametrize("name", list(_runs()))
def test_same_results_as_one_process(client, name):
    run = _runs()[name]
    a, b = run(jobs=1), run(executor=client)
    assert a.stats.cells > 16  # several chunks per round, so the cluster really ran some
    assert _fingerprint(a) == _fingerprint(b)


def _kill_a_busy_worker(c, how):
    """Wait until a worker runs a chunk, then kill it (by PID) or shut the whole cluster down."""
    pids = c.run(os.getpid)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        busy = [w for w, keys in c.processing().items() if any(str(k).startswith("hybridq-chunk") for k in keys)]
        if busy:
            how(pids[busy[0]])
            return True
        time.sleep(0.005)
    return False


def test_worker_killed_mid_run_gives_the_same_verdict(client):
    net = _net(8, [2, 16, 16, 1])
    pert = perturbation("abs:0.01", net)
    box = InputBox(-np.ones(2), np.ones(2))
    prop = Deviation(1.02 * _witnessed(net, pert, box))
    kw = dict(backend="none", timeout=300, batch_size=16, seed=3)
    a = verify(net, pert, box, prop, jobs=1, **kw)
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("r", verify(net, pert, box, prop, executor=client, **kw)))
    th.start()
    killed = _kill_a_busy_worker(client, lambda pid: os.kill(pid, signal.SIGKILL))
    th.join()
    assert killed
    assert a.verdict == "robust" and a.stats.cells > 100
    assert _fingerprint(out["r"]) == _fingerprint(a)


def test_unreachable_scheduler_is_exit_3_at_once(capsys, tmp_path):
    net = _net(7, [2, 8, 8, 1])
    p = tmp_path / "n.npz"
    net.save(p)
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as e:
        main(["verify", str(p), "--perturb", "fp16", "--point", "0,0", "--delta", "1", "--cluster", "tcp://127.0.0.1:9"])
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert e.value.code == 3 and len(lines) == 1 and lines[0].startswith("hybridq: error: ")
    assert "tcp://127.0.0.1:9" in lines[0] and "Traceback" not in err
    assert took < 20  # the connect timeout is 5 s


def test_without_distributed_one_line_names_the_extra(capsys, tmp_path, monkeypatch):
    net = _net(7, [2, 8, 8, 1])
    p = tmp_path / "n.npz"
    net.save(p)
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(SystemExit) as e:
        main(["verify", str(p), "--perturb", "fp16", "--point", "0,0", "--delta", "1", "--cluster", "local:2"])
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert e.value.code == 3 and len(lines) == 1 and "hybridq[dask]" in lines[0]


def test_cluster_shut_down_mid_run_is_exit_2_with_a_partial_result(capsys, tmp_path):
    net = _net(8, [2, 16, 16, 1])
    pert = perturbation("abs:0.01", net)
    box = InputBox(-np.ones(2), np.ones(2))
    delta = 1.02 * _witnessed(net, pert, box)
    p, js = tmp_path / "n.npz", tmp_path / "r.json"
    net.save(p)
    cluster, c = _start(1)
    addr = cluster.scheduler_address
    out = {}

    def cli():
        try:
            main(["verify", str(p), "--perturb", "abs:0.01", "--box", "-1:1,-1:1", "--delta", repr(delta),
                  "--backend", "none", "--timeout", "60", "--json", str(js), "--no-progress", "--cluster", addr])
        except SystemExit as e:
            out["code"] = e.code
            out["t"] = time.monotonic()

    th = threading.Thread(target=cli)
    th.start()
    try:
        assert _kill_a_busy_worker(c, lambda pid: cluster.close())
        t_closed = time.monotonic()
    finally:
        th.join()
        c.close()
        cluster.close()
    import json

    res = json.loads(js.read_text())["result"]  # the result section of the JSON document
    assert out["code"] == 2 and out["t"] - t_closed < 30
    assert res["verdict"] == "unknown" and "cluster lost" in res["message"]
    assert res["stats"]["cells"] >= 1 and res["stats"]["undecided_volume"] > 0
