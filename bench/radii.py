"""Radius table: for each real network and number format, the largest relative and absolute radius.

Usage (from the repo root)::

    PYTHONPATH=. python3 bench/radii.py [--networks ../shared/data/networks]

For every network (ACAS Xu 1_1, mnistfc 256x2/4/6) and format it prints
``max r/|t|`` over the non-zero parameters, ``max r``, the mean relative radius, whether the
format overflows / saturates (the error message), and the time of ``perturbation(spec, net)``
(which includes the exact enclosure re-check).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hybridq import load_network
from hybridq.errors import PerturbationError
from hybridq.perturbation import format_family, perturbation

NETS = [
    "acasxu/nnet/ACASXU_run2a_1_1_batch_2000.nnet",
    "mnistfc/mnist-net_256x2.onnx",
    "mnistfc/mnist-net_256x4.onnx",
    "mnistfc/mnist-net_256x6.onnx",
]
FORMATS = ["fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "float:p=8", "float:e=4,m=3", "q3.12", "FIXED.8",
           "int16", "int8", "int8:per_channel", "int8:asym", "int8:per_channel,asym", "int4", "int4:per_channel,asym"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "networks"))
    args = ap.parse_args()
    root = Path(args.networks)
    print(f"{'network':<28} {'format':<24} {'max r/|t|':>10} {'mean r/|t|':>10} {'max r':>10} {'time s':>7}  status")
    for rel in NETS:
        path = root / rel
        if not path.exists():
            print(f"{rel:<28} (absent: {path})")
            continue
        net = load_network(path)
        t = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in net.params])
        nz = t != 0
        M = format_family("fixed", net)[0][1].split(".")[0]  # qM with the fewest safe integer bits
        for spec in FORMATS:
            spec = spec.replace("FIXED", M)
            t0 = time.perf_counter()
            try:
                p = perturbation(spec, net)
            except PerturbationError as e:
                dt = time.perf_counter() - t0
                print(f"{path.stem[:28]:<28} {spec:<24} {'-':>10} {'-':>10} {'-':>10} {dt:7.3f}  {str(e).splitlines()[0]}")
                continue
            dt = time.perf_counter() - t0
            r = np.concatenate([np.concatenate([RW.ravel(), rb]) for RW, rb in p.radius])
            relr = r[nz] / np.abs(t[nz])
            print(f"{path.stem[:28]:<28} {spec:<24} {relr.max():10.3e} {relr.mean():10.3e} {r.max():10.3e} {dt:7.3f}  ok")


if __name__ == "__main__":
    main()
