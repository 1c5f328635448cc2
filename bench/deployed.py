"""Issue 14: float models against their onnxruntime-quantized (deployed) copies.

    python bench/deployed.py [--timeout 60] [--jobs 1] [--only mnist|acas] [--out bench/results/deployed.md]

mnistfc 256x2 and 256x4 and ACAS Xu 1_1 are quantized with ``onnxruntime.quantization.
quantize_static`` (QDQ, int8 weights per channel, int8 activations; calibration: the VNNLIB box
centres and 32 points drawn uniformly from each box).  For every VNNLIB box of
../shared/data/networks/mnistfc and the ACAS Xu props 1-4 boxes: the max deviation between the
float model and the rounded deployed model as ``[witnessed, proved]`` (hybridq.deployed.
deviation_deployed, logits, ``--timeout`` seconds), the decision-equivalence verdict
(hybridq.SameDecision: at every input of the box the deployed model picks the float model's class
there; ``--timeout``) and times; each witness is re-run on onnxruntime.  Networks are read from ../shared/data/networks.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("HYBRIDQ_SHARED", ROOT.parent / "shared")) / "data" / "networks"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/networks")

from hybridq import Deviation, InputBox, SameDecision, load_network, load_vnnlib  # noqa: E402
from hybridq.deployed import _float32_inside, deviation_deployed, load_against, runtime_outputs, verify_deployed  # noqa: E402


def quantize(src: Path, boxes, out: Path, seed: int = 0) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(seed)
    model = onnx.load(str(src))
    if max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:
        # per-channel DequantizeLinear needs opset 13 (onnxruntime's advice: convert first)
        from onnx import version_converter

        model = version_converter.convert_version(model, 13)
    # initializers listed as graph inputs (old IR versions, e.g. ACAS Xu): the quantizer adds
    # initializers that are not, which the checker then refuses; drop them from the inputs
    inits = {t.name for t in model.graph.initializer}
    keep = [v for v in model.graph.input if v.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.ir_version = max(model.ir_version, 7)
    src = out.with_suffix(".float.onnx")
    onnx.save(model, str(src))
    inp = model.graph.input[0]
    shape = [d.dim_value if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim]
    pts = []
    for b in boxes:
        pts.append(b.center)
        pts.extend(rng.uniform(b.lower, b.upper, (32, b.n_in)))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{inp.name: np.asarray(p, dtype=np.float32).reshape(shape)} for p in pts])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def run(name, src, vnnlibs, tmp, timeout, jobs, witnesses=None):
    net = load_network(src)
    boxes = []
    for v in vnnlibs:
        for b, con in load_vnnlib(v, net.n_in, net.n_out):
            boxes.append((v.stem, b))
    qpath = quantize(src, [b for _, b in boxes], tmp / f"{name}.int8.onnx")
    model = load_against(src, qpath)
    rows = []
    for vname, box in boxes:
        t = time.perf_counter()
        exp = model.expand(box)
        t_exp = time.perf_counter() - t
        t = time.perf_counter()
        q = deviation_deployed(model, box, Deviation(0.0), tol=0.1, timeout=timeout, jobs=jobs, expanded=exp)
        t_dev = time.perf_counter() - t
        if witnesses is not None:  # the witness input, for analyses after the run (e.g. the noise model at it)
            np.save(Path(witnesses) / f"{name}_{vname}.npy", q.witness.x)
        x = _float32_inside(q.witness.x, box)  # the runtime reads float32: the nearest such input in the box
        y_rt = runtime_outputs(qpath, x) if x is not None else None
        rt = float(np.max(np.abs(y_rt - net.forward(x)))) if y_rt is not None else float("nan")
        t = time.perf_counter()
        r = verify_deployed(model, box, SameDecision(), onnx_path=qpath, timeout=timeout, jobs=jobs, expanded=exp)
        t_dec = time.perf_counter() - t
        note = "; ".join(v for v in (r.counterexample.kind, r.counterexample.note) if v) if r.counterexample is not None \
            else r.message[:100]
        t = time.perf_counter()
        qc = deviation_deployed(model, InputBox.point(box.center), Deviation(0.0))
        t_c = time.perf_counter() - t
        rows.append(dict(net=name, box=vnnname(vname, box), cwit=qc.lower, cproved=qc.upper, t_c=t_c, t_exp=t_exp, sat=len(exp.saturated), wit=q.lower, proved=q.upper, ratio=q.ratio, t_dev=t_dev,
                         rt=rt, dec=r.verdict, t_dec=t_dec, note=note, msg=q.message[:80]))
        print(rows[-1], flush=True)
    return rows


def vnnname(v, box):
    return f"{v} (eps {float(np.max(box.upper - box.lower)) / 2:.3g})"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--only", choices=["mnist", "acas"], default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "deployed.md"))
    ap.add_argument("--witnesses", default=None, help="folder: save each box's witness input there (.npy)")
    a = ap.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if a.only in (None, "mnist"):
            vs = sorted((DATA / "mnistfc").glob("*.vnnlib"))
            for w in ("256x2", "256x4"):
                rows += run(f"mnist-net_{w}", DATA / "mnistfc" / f"mnist-net_{w}.onnx", vs, tmp, a.timeout, a.jobs,
                            a.witnesses)
        if a.only in (None, "acas"):
            vs = [DATA / "acasxu" / "vnnlib" / f"prop_{i}.vnnlib" for i in (1, 2, 3, 4)]
            rows += run("ACASXU_1_1", DATA / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx", vs, tmp,
                        a.timeout, a.jobs, a.witnesses)
    load = os.getloadavg()[0]
    lines = [
        "# Float model vs its onnxruntime int8 deployment (issue 14)",
        "",
        f"`python bench/deployed.py --timeout {a.timeout:g} --jobs {a.jobs}`; load average at the end {load:.1f} "
        f"on {os.cpu_count()} cores. quantize_static: QDQ, int8 weights per channel, int8 activations, calibration "
        "on the VNNLIB centres + 32 points per box. Max deviation of the logits, `[witnessed, proved]`: witnessed by "
        "the exactly rounded deployed network, proved for every rounding error the noise model admits (and "
        "onnxruntime's float32 slack); the witness search (search_rounded, logit_extremes: the float logits' extremes "
        "beyond the deployed output quantizer's range by MILP, 20 %; the noise model's witness, climb_rounded, 15 %) takes "
        f"up to 35 % of the {a.timeout:g} s. `runtime at witness` = onnxruntime's max |deviation| at the witness rounded to the nearest "
        "float32 input in the box. Decision equivalence (`verify --same-decision`): at every input of the box the "
        "deployed model picks the float model's class at that input (argmax; ACAS Xu: argmin; a tie of the deployed model "
        "is a flip); a counterexample is one of the exactly rounded network, re-run on onnxruntime. Centre: the same max "
        "deviation at the box centre alone (interval pass over the rounded network; exact witness).",
        "",
        "| network | box | centre: [witnessed, proved] (s) | ranges (s) | clipping quantizers | box: witnessed | proved | proved/witnessed | runtime at witness | time (s) | decision equivalence | time (s) | note |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['net']} | {r['box']} | [{r['cwit']:.6g}, {r['cproved']:.6g}] ({r['t_c']:.1f}) | {r['t_exp']:.1f} | {r['sat']} | {r['wit']:.4g} | {r['proved']:.4g} | {r['ratio']:.2f} | {r['rt']:.4g} | "
                     f"{r['t_dev']:.1f} | {r['dec']} | {r['t_dec']:.1f} | {r['note'] or r['msg']} |")
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
