"""Train the two networks of the seed-paper study (Murthy, Das, Islam, arXiv 1903.10672).

The paper compares two small MLPs for binary classification of a 2-D input, identical except for
the hidden activation (ReLU vs linear), with one sigmoid output.  We rebuild that setting:

* data: two interleaved half-moons scaled into ``[-1, 1]^2`` (fixed seed, 400 points, 300 train /
  100 test), generated here in code;
* architecture ``2-8-8-1``; hidden activation ``relu`` or ``identity``; identity last layer whose
  logit goes through a sigmoid (``Network.output = "sigmoid"``);
* loss: mean binary cross-entropy plus a small L2 penalty (``1e-3 * |W|^2``), minimised with
  ``scipy.optimize.minimize(method="L-BFGS-B")`` on the flattened parameters with the analytic
  gradient, from a fixed Glorot-uniform initialisation (deterministic: no randomness after seeding).

Run ``python3 bench/paper/train.py`` from the repo root; it writes ``bench/paper/relu.npz``,
``bench/paper/linear.npz`` (the hybridq ``.npz`` format, via :meth:`hybridq.Network.save`) and
``bench/paper/data.npz`` (the data set), and prints the accuracies.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from hybridq.network import Layer, Network  # noqa: E402

ARCH = (2, 8, 8, 1)
SEED = 20190326  # the seed paper's arXiv date
L2 = 1e-3
N_POINTS, N_TRAIN = 400, 300
INPUT_BOX = (np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def make_moons(n: int = N_POINTS, noise: float = 0.12, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half-moons in ``[-1, 1]^2``.

    Returns
    -------
    x : (n, 2) float64, inside ``[-1, 1]^2`` (clipped after the noise).
    y : (n,) float64 in {0, 1}.
    """
    rng = np.random.default_rng(seed)
    n0 = n // 2
    n1 = n - n0
    t0 = rng.uniform(0, np.pi, n0)
    t1 = rng.uniform(0, np.pi, n1)
    a = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    b = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    x = np.concatenate([a, b]) + rng.normal(0.0, noise, (n, 2))
    # raw moons span about [-1.2, 2.2] x [-0.7, 1.2]: map to [-1, 1]^2
    x = (x - np.array([0.5, 0.25])) / np.array([1.6, 1.0])
    x = np.clip(x, -1.0, 1.0)
    y = np.concatenate([np.zeros(n0), np.ones(n1)])
    perm = rng.permutation(n)
    return x[perm], y[perm]


def _shapes(arch=ARCH):
    return [((arch[k + 1], arch[k]), (arch[k + 1],)) for k in range(len(arch) - 1)]


def _unflatten(theta: np.ndarray, arch=ARCH):
    out, i = [], 0
    for sw, sb in _shapes(arch):
        nw, nb = sw[0] * sw[1], sb[0]
        out.append((theta[i:i + nw].reshape(sw), theta[i + nw:i + nw + nb]))
        i += nw + nb
    return out


def _init(arch=ARCH, seed: int = SEED) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    parts = []
    for (o, i), _ in _shapes(arch):
        lim = np.sqrt(6.0 / (i + o))
        parts += [rng.uniform(-lim, lim, o * i), np.zeros(o)]
    return np.concatenate(parts)


def loss_and_grad(theta: np.ndarray, x: np.ndarray, y: np.ndarray, activation: str, arch=ARCH):
    """Mean binary cross-entropy + ``L2 * sum W^2`` and its gradient (backprop, float64)."""
    params = _unflatten(theta, arch)
    hs, zs = [x], []
    h = x
    for k, (W, b) in enumerate(params):
        z = h @ W.T + b
        zs.append(z)
        last = k == len(params) - 1
        h = z if (last or activation == "identity") else np.maximum(z, 0.0)
        hs.append(h)
    logit = hs[-1][:, 0]
    # stable BCE with logits: log(1 + e^l) - y l
    loss = np.mean(np.logaddexp(0.0, logit) - y * logit)
    loss += L2 * sum(float(np.sum(W * W)) for W, _ in params)
    p = 0.5 * (1.0 + np.tanh(0.5 * logit))
    delta = ((p - y) / x.shape[0])[:, None]
    grads = []
    for k in range(len(params) - 1, -1, -1):
        W, _ = params[k]
        gW = delta.T @ hs[k] + 2.0 * L2 * W
        gb = delta.sum(axis=0)
        grads.append((gW, gb))
        if k > 0:
            delta = delta @ W
            if activation == "relu":
                delta = delta * (zs[k - 1] > 0)
    grads.reverse()
    return float(loss), np.concatenate([np.concatenate([gW.ravel(), gb]) for gW, gb in grads])


def train(activation: str, x: np.ndarray, y: np.ndarray, arch=ARCH) -> Network:
    """Fit one network with L-BFGS-B (deterministic) and return it as a hybridq ``Network``."""
    res = minimize(loss_and_grad, _init(arch), args=(x, y, activation, arch), jac=True,
                   method="L-BFGS-B", options={"maxiter": 3000, "gtol": 1e-9})
    params = _unflatten(res.x, arch)
    layers = [Layer(W, b, activation if k < len(params) - 1 else "identity")
              for k, (W, b) in enumerate(params)]
    return Network(tuple(layers), output="sigmoid", name=f"moons-{activation}")


def accuracy(net: Network, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((net.scores(x)[:, 0] > 0.5) == (y > 0.5)))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: bench/paper)")
    args = ap.parse_args(argv)
    x, y = make_moons()
    xtr, ytr, xte, yte = x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "data.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
             box_lower=INPUT_BOX[0], box_upper=INPUT_BOX[1])
    report = {}
    for name, act in (("relu", "relu"), ("linear", "identity")):
        net = train(act, xtr, ytr)
        net.save(args.out / f"{name}.npz")
        wmax = max(float(np.max(np.abs(W))) for W, _ in net.params)
        report[name] = {"train_acc": accuracy(net, xtr, ytr), "test_acc": accuracy(net, xte, yte),
                        "max_abs_weight": wmax}
        print(f"{name:7s} 2-8-8-1  train acc {report[name]['train_acc']:.3f}  "
              f"test acc {report[name]['test_acc']:.3f}  max|w| {wmax:.3f}")
    (args.out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
