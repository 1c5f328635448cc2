"""The ``hybridq`` command line: ``verify``, ``bounds``, ``quantify``, ``run``, ``backends``.

The CLI only calls the library.  Exit codes: 0 robust, 1 not robust, 2 unknown (budget spent or
interrupted), 3 usage or input error (one line on stderr, no traceback).  A progress bar goes to
stderr, the one-line verdict to stdout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperCommand

try:  # typer >= 0.22 vendors its own copy of click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older typer on plain click
    from click import exceptions as _cx

from hybridq.client import process_start as _process_start
from hybridq.errors import ConfigError, HybridqError

__all__ = ["app", "main", "invoke"]

EXIT_USAGE = 3

#: Default overall budget (seconds) of each command when neither ``--timeout`` nor a TOML
#: ``timeout`` is given (``run``: per instance, where the instance list gives none).
DEFAULT_TIMEOUT = {"verify": 300.0, "quantify": 600.0, "run": 300.0}
#: Seconds kept back from ``--timeout`` for printing and writing the outputs after the search.
OUTPUT_RESERVE = 0.3
#: Seconds kept back from ``--timeout`` for closing a ``--cluster local:N`` after the search: this
#: share of what its start took (its worker processes shut down about as they started; measured
#: 0.4-0.5 s to close after a 0.9-1.1 s start), at least the floor.
CLUSTER_CLOSE_SHARE, CLUSTER_CLOSE_MIN = 0.75, 0.5
#: Image formats of ``--plot`` (taken from the file name's suffix).
PLOT_FORMATS = (".png", ".pdf", ".svg")
#: Seconds between two progress lines on a non-terminal stderr.
PROGRESS_EVERY = 5.0


#: When this command started (``--timeout`` is counted from here): the process start for the
#: console entry point, the call of :func:`main` when it is called with ``argv``.
T_START = time.monotonic()

app = typer.Typer(
    name="hybridq",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Prove or refute (with an exactly re-checked counterexample) that a network stays robust "
    "when its weights and biases are perturbed, e.g. by quantization.\n\n"
    "Exit codes: 0 robust, 1 not robust, 2 unknown, 3 usage or input error. Ctrl-C and SIGTERM stop "
    "the run with its partial result (exit 2).",
)

class _Command(TyperCommand):
    """Usage lines in the usual form: ``hybridq verify [OPTIONS] NETWORK`` (typer writes
    required arguments as ``{NETWORK}``)."""

    def collect_usage_pieces(self, ctx):
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in super().collect_usage_pieces(ctx)]


# ------------------------------------------------------------------ shared options
NetworkArg = typer.Argument(..., metavar="NETWORK", help="Network file (.nnet, .onnx or .npz).", show_default=False)
O = typer.Option
PERTURB = O(None, "--perturb", "-p", metavar="SPEC", help="Perturbation spec: abs:EPS, rel:EPS, fp16, bf16, int8[:per_channel], qM.N, point:FORMAT, ...")
POINT = O(None, "--point", metavar="X|FILE", help="Input point: comma-separated values or a .npy/.txt file.")
BOX = O(None, "--box", metavar="LO:HI,...|FILE", help="Input box: 'lo:hi,lo:hi,...' or a .npy file of shape (2, n_in).")
BALL = O(None, "--ball", metavar="R", help="L-inf radius of a ball around --point (or the VNNLIB box centre).")
CENTER = O(None, "--center/--no-center", help="Use the centre of the --vnnlib input box as a point input.")
VNNLIB = O(None, "--vnnlib", metavar="FILE", help="VNNLIB file: input box and output constraints.")
DELTA = O(None, "--delta", metavar="D", help="Deviation property: |s(x;theta) - s(x;theta0)| <= DELTA.")
DECISION = O(None, "--decision/--no-decision", help="Decision property: the class (VNNLIB label or nominal argmax/argmin at the centre) is kept; '--decision min' or '--decision max' sets --sense too.")
SENSE = O(None, "--sense", metavar="max|min", help="The class of --decision is the argmax or the argmin of the outputs (default: the network's; ACAS Xu files are min, others max).")
KAPPA = O(None, "--kappa", metavar="K", help="Decision margin: the class must win by more than KAPPA logits (--same-decision: "
          "only inputs where the nominal class wins by more than KAPPA are constrained).")
SAME = O(None, "--same-decision/--no-same-decision", help="Decision equivalence: at every input of the box the perturbed "
         "(--against: the deployed) network picks the nominal (float) network's class there (argmax, or argmin with --sense min; "
         "a tie of the perturbed network is a flip).")
LABEL = O(None, "--label", help="Protected class for --decision (default: VNNLIB label or the nominal argmax / argmin).")
SPACE = O(None, "--space", help="Deviation space: logit or score.")
OUTPUTS = O(None, "--outputs", metavar="J,...", help="Outputs checked by --delta, e.g. '0,2' (default: all).")
BACKEND = O(None, "--backend", help="Exact backend for open cells: auto (per cell: milp for relu nets, z3, dreal for sigmoid/tanh), milp, z3, dreal or none.")
JOBS = O(None, "--jobs", "-j", help="Worker processes (default: all cores).")
CLUSTER = O(None, "--cluster", help="Run the branch and bound on a Dask cluster: a scheduler address "
            "(tcp://HOST:8786) or local:N (a local cluster of N worker processes); needs hybridq[dask].")
TIMEOUT = O(None, "--timeout", help="Wall-clock budget of the whole command in seconds, start-up and output "
            "writing included (default: verify 300, quantify 600).")
SEED = O(None, "--seed", help="Attack seed (results are deterministic for a fixed seed).")
JSON = O(None, "--json", metavar="FILE", help="Write the result as a self-describing JSON document to this file (schema: "
         "hybridq/schema/result.schema.json); a counterexample's parameters go to --counterexample, else "
         "to JSON_STEM.counterexample.npz beside it.")
CEX = O(None, "--counterexample", metavar="FILE", help="Write a counterexample (.npz of x and every parameter) to this file.")
CONFIG = O(None, "--config", metavar="FILE", help="TOML file whose keys are these options.")
PLOT = O(None, "--plot", metavar="FILE", help="Draw the cell map of a 2-input run to this .png, .pdf or .svg file.")
PROGRESS = O(True, "--progress/--no-progress", help="Progress bar on stderr.")
AGAINST = O(None, "--against", metavar="FILE", help="Quantized ONNX file (QDQ, QOperator or dynamic, e.g. from onnxruntime's quantizer): "
            "verify that deployed model, every activation quantizer included, against the float NETWORK.")


def _fail(msg: str):
    raise ConfigError(msg)


def _merge(toml: dict, **cli):
    """CLI values win; missing ones come from the TOML job file."""
    return {k: (v if v is not None else toml.get(k)) for k, v in cli.items()}


def _vector(text, what: str):
    """Comma-separated numbers (or a list, or a .npy/.txt/.csv file) as float64."""
    import numpy as np

    return np.array([float(v) for v in _exact_vector(text, what)], dtype=np.float64)


def _load_npy(p: Path, what: str):
    """The float64 array ``(any shape)`` of the ``.npy`` file ``p``; a file that is not numpy's
    binary format (no magic string: numpy's own message then speaks of pickled data and of
    loading it unsafely), an object array or values that are not numbers are one error line."""
    import numpy as np

    why = None
    try:
        with open(p, "rb") as f:
            magic = f.read(6)
        if magic == b"\x93NUMPY":
            return np.asarray(np.load(p, allow_pickle=False), dtype=np.float64)
    except (OSError, ValueError, TypeError) as e:
        why = e
    if why is None:
        _fail(f"{what} {p} is not a .npy file (numpy's binary format, as np.save writes it)")
    if "allow_pickle" in str(why) or "Object arrays" in str(why):
        _fail(f"{what} {p} holds Python objects; save an array of numbers (np.save(path, np.asarray(x, float)))")
    _fail(f"{what} {p} is unreadable: {str(why).strip().splitlines()[0] if str(why).strip() else type(why).__name__}")


def _exact_vector(text, what: str):
    """Numbers as the user wrote them: an object array of Fractions parsed from the decimal text
    (comma-separated values, a TOML list, or a .txt/.csv file of numbers separated by commas or
    white space), or the exact binary values of a .npy file's floats."""
    import numpy as np

    from hybridq.exact import TooManyDigits, split_numbers, to_fraction

    if isinstance(text, (list, tuple)):
        vals = [str(v) for v in text]
    else:
        p = Path(text)
        if p.suffix.lower() in (".npy", ".txt", ".csv"):
            if not p.is_file():
                _fail(f"{what} file not found: {p}")
            if p.suffix.lower() == ".npy":
                vals = _load_npy(p, f"{what} file").reshape(-1).tolist()
            else:
                try:
                    vals = p.read_text(encoding="utf-8-sig").replace(",", " ").replace(";", " ").split()
                except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
                    _fail(f"{what} file {p} is unreadable: {e}")
        else:
            try:
                vals = split_numbers(text, what)
            except ValueError as e:
                _fail(str(e))
    out = []
    for v in vals:
        try:
            out.append(to_fraction(v, what) if isinstance(v, str) else to_fraction(float(v), what))
        except TooManyDigits as e:
            _fail(str(e))
        except (TypeError, ValueError):
            _fail(f"{what} must be finite comma-separated numbers, got {text!r}")
    if not out:
        _fail(f"{what} must be finite numbers, got {text!r}")
    return np.array(out, dtype=object)


def _tol(v) -> float:
    """``--tol`` (command line or TOML) as a float: 0.1 when not given; 0, a negative or a
    non-finite tolerance is an error (``0`` used to be read as "not given", i.e. 0.1)."""
    import math

    if v is None:
        return 0.1
    t = float(v)
    if not (math.isfinite(t) and t > 0):
        _fail(f"--tol must be a finite number > 0, got {v}")
    return t


def _number(v, what: str):
    """One number as the user wrote it (decimal text from the command line or a TOML value) as an
    exact Fraction; None stays None."""
    from hybridq.exact import TooManyDigits, to_fraction

    if v is None:
        return None
    try:
        return to_fraction(v, what)  # str / Decimal: the decimal text exactly; float: its binary value
    except TooManyDigits as e:
        _fail(str(e))
    except ValueError:
        _fail(f"{what} must be a finite number, got {v!r}")


def _box(text):
    import numpy as np

    from hybridq.exact import TooManyDigits, split_numbers, to_fraction
    from hybridq.inputs import InputBox

    if isinstance(text, (list, tuple)):  # TOML: ["0:1", ...] or [[0, 1], ...] (as in instance lists)
        parts = [f"{v[0]}:{v[1]}" if isinstance(v, (list, tuple)) and len(v) == 2 else str(v) for v in text]
    else:
        p = Path(text)
        if p.suffix.lower() == ".npy":
            if not p.is_file():
                _fail(f"box file not found: {p}")
            arr = _load_npy(p, "box file")
            if arr.ndim != 2 or 2 not in arr.shape:
                _fail(f"box file {p} must hold an array of shape (2, n_in), got {arr.shape}")
            arr = arr if arr.shape[0] == 2 else arr.T
            return InputBox(arr[0], arr[1])
        try:
            parts = split_numbers(text, "--box", ",")
        except ValueError as e:
            _fail(str(e))
    lo, hi = [], []
    for part in parts:
        a, sep, b = part.partition(":")
        try:
            if not sep:
                raise ValueError
            lo.append(to_fraction(a, "--box"))  # exact: the decimal the user wrote
            hi.append(to_fraction(b, "--box"))
        except TooManyDigits as e:
            _fail(str(e))
        except ValueError:
            _fail(f"bad --box entry {part!r}: expected finite LO:HI pairs separated by commas, e.g. '0:1,-1:1'")
    return InputBox(np.array(lo, dtype=object), np.array(hi, dtype=object))


def _problem(network, perturb, point, box, ball, center, vnnlib, delta, decision, kappa, label, space, outputs,
             need_property=True, sense=None, same_decision=False):
    """Load the network and build ``(network, perturbation, [(InputBox, property), ...])``.

    Every number of the problem is kept as the user wrote it (decimal text -> ``Fraction``):
    :class:`InputBox` and the properties round it outward for the bound pass and keep it exactly
    for the re-check of counterexamples.  Mistakes that need no library are reported before any
    library is imported (an input error answers in a fraction of a second)."""
    for opt, path in (("network", network), ("--vnnlib", vnnlib)):
        if path is not None and not Path(path).exists():
            _fail(f"{path}: no such file" if opt == "network" else f"{opt} file not found: {path}")
    if point is not None and box is not None:
        _fail("give either --point or --box, not both")
    if vnnlib is not None and (point is not None or box is not None):
        _fail("--vnnlib gives the input box: drop --point/--box (use --center or --ball for its centre)")
    if delta is not None and decision:
        _fail("give either --delta (deviation) or --decision, not both")
    if same_decision and (decision or delta is not None):
        _fail("give one of --same-decision, --decision and --delta")
    if same_decision and (space is not None or outputs is not None):
        _fail("--space and --outputs apply to --delta only (--same-decision compares the classes)")
    if same_decision and label is not None:
        _fail("--label applies to --decision only (--same-decision compares the classes input by input)")
    if kappa is not None and not (decision or same_decision):
        _fail("--kappa applies to --decision and --same-decision only")
    if ball is not None and box is not None:
        _fail("--ball is a radius around --point or the --vnnlib box's centre: with --box, drop --ball")
    if label is not None and not decision:
        _fail("--label applies to --decision only (the protected class)")
    # a deviation is asked by --delta, or by quantify's --what deviation (need_property False)
    if (space is not None or outputs is not None) and delta is None and (decision or need_property):
        _fail("--space and --outputs apply to --delta only" + (" (--decision compares the classes)" if decision else
              " (the VNNLIB file's output constraint is checked as written)"))
    if isinstance(decision, str):  # TOML: decision = "min" / "max"
        if decision not in ("max", "min"):
            _fail(f"decision must be true, false, 'max' or 'min', got {decision!r}")
        if sense is not None and sense != decision:
            _fail(f"decision = {decision!r} and --sense {sense} disagree")
        decision, sense = True, decision
    if sense is not None and not (decision or same_decision):
        _fail("--sense applies to --decision and --same-decision only")
    if sense is not None and sense not in ("max", "min"):
        _fail(f"--sense must be max or min, got {sense!r}")
    ball = _number(ball, "--ball")
    if ball is not None and ball < 0:
        _fail(f"--ball must be >= 0, got {float(ball):g}")
    from hybridq.actquant import split_act_spec
    from hybridq.inputs import InputBox
    from hybridq.io import decision_label, load_network, load_vnnlib
    from hybridq.perturbation import perturbation
    from hybridq.properties import Decision, Deviation

    net = load_network(network)
    # a spec with act= parts is built per input box (its ranges depend on it): see _deployed
    pert = perturbation(perturb, net) if perturb is not None and not split_act_spec(perturb)[1] else None
    pairs = []
    if vnnlib is not None:
        pairs = load_vnnlib(vnnlib, net.n_in, net.n_out)
        _warn_units(net, network, vnnlib, [b for b, _ in pairs])
    if box is not None:
        boxes = [_box(box)]
    elif point is not None:
        x = _exact_vector(point, "--point")
        boxes = [InputBox.ball(x, ball) if ball is not None else InputBox.point(x)]
    elif pairs:
        boxes = [b for b, _ in pairs]
        if center:
            boxes = [InputBox.point(b.exact_center) for b in boxes]
        if ball is not None:
            boxes = [InputBox.ball(b.exact_center, ball) for b in boxes]
    else:
        _fail("no input set: give --point, --box, --point with --ball, or --vnnlib")
    for b in boxes:
        b.check_dim(net.n_in)
    constraints = [c for _, c in pairs] if pairs else [None] * len(boxes)
    if len(constraints) != len(boxes):
        constraints = [constraints[0]] * len(boxes)
    sense = sense or net.decision_sense
    jobs = []
    for b, con in zip(boxes, constraints):
        if same_decision:
            from hybridq.equivalence import SameDecision  # only here: it imports the interval machinery

            prop = SameDecision(_number(kappa, "--kappa") or 0, sense)
        elif delta is not None:
            outs = None if outputs is None else tuple(_vector(outputs, "--outputs").tolist())  # Deviation refuses 0.5
            prop = Deviation(_number(delta, "--delta"), space or "logit", outs)
        elif decision:
            c = label
            if c is None and con is not None:
                c = decision_label(con, sense)
            if c is None:
                c = int(net.predict(b.center, sense=sense))
            prop = Decision(int(c), _number(kappa, "--kappa") or 0, sense)
        elif con is not None:
            prop = con
        elif need_property:
            _fail("no property: give --delta, --decision, --same-decision or --vnnlib")
        else:
            prop = None
        jobs.append((b, prop))
    return net, pert, jobs


def _deployed(network, net, perturb, against):
    """``None``, or ``box -> ActModel``: the deployed model of ``--against FILE`` or of ``act=`` spec parts."""
    from hybridq.actquant import act_model, split_act_spec

    if against is not None:
        if perturb is not None:
            _fail("--against verifies the quantized file as it is: drop --perturb")
        from hybridq.deployed import load_against

        model = load_against(network, against)
        return lambda b: model
    if perturb is not None and split_act_spec(perturb)[1]:
        return lambda b: act_model(net, perturb, b)
    return None


def _warn_units(net, network, vnnlib, boxes) -> None:
    """One warning line when a VNNLIB box does not fit the network's input clamp range (``.nnet``):
    the ``.nnet`` file takes raw units, and a VNNLIB written for the normalized ONNX inputs of the
    same network (VNN-COMP's ACAS Xu properties) then means nothing."""
    from hybridq.io.vnnlib import clamp_mismatch

    msg = clamp_mismatch(net, boxes)
    if msg:
        typer.echo(f"hybridq: warning: {vnnlib}: {msg}", err=True)


def _describe(network_path, net, perturb, boxes, prop, vnnlib, against) -> dict:
    """The ``problem`` section of the JSON result (:func:`hybridq.report.describe_problem`)."""
    from hybridq.report import describe_problem

    return describe_problem(net, perturb, boxes, prop, network_path=network_path, vnnlib=vnnlib, against=against)


def _settings(cfg, cluster_jobs=None) -> dict:
    """The ``settings`` section of the JSON result: the command's own budget, not the part of it
    left to the search; on a cluster, ``jobs`` is the cluster's worker threads (``cluster_jobs``)."""
    from hybridq.report import settings_dict

    d = settings_dict(cfg)
    if cluster_jobs is not None:
        d["jobs"] = int(cluster_jobs)
    return d


def _check_writable(opt: str, path: str) -> None:
    """Fail (exit 3) unless ``path`` can be written: its directory exists and takes a new file (probed
    with an anonymous temporary file there, which leaves nothing behind), or the file exists and is
    writable. A run must not end with its requested output lost (``/proc``, a read-only mount)."""
    import tempfile

    parent = Path(path).resolve().parent
    if not parent.is_dir():
        _fail(f"{opt} {path}: directory {parent} does not exist")
    if Path(path).is_dir():
        _fail(f"{opt} {path} is a directory")
    if Path(path).exists():
        if not os.access(path, os.W_OK):
            _fail(f"{opt} {path}: the file is not writable")
        return
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        _fail(f"{opt} {path}: cannot create a file in {parent} ({e.strerror or e})")


def _same_file(a, b) -> bool:
    """Whether the paths ``a`` and ``b`` name one file (links and relative paths resolved)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return Path(a).resolve() == Path(b).resolve()


def _check_outputs(net, json=None, counterexample=None, plot=None, inputs=(), derived_cex=False) -> None:
    """Fail before the run (exit 3) when an output file cannot be written, would overwrite one of the
    ``inputs`` (``(option, path)`` pairs: the network, ``--vnnlib``, ...) or another output, or a plot
    cannot be drawn.  ``derived_cex``: a counterexample would go to ``JSON_STEM.counterexample.npz``."""
    given = [(opt, path) for opt, path in (("--json", json), ("--counterexample", counterexample), ("--plot", plot))
             if path is not None]
    outs = list(given)
    if derived_cex and json is not None and counterexample is None:
        outs.append(("--json's counterexample file", str(Path(json).with_suffix("")) + ".counterexample.npz"))
    for i, (opt, path) in enumerate(outs):
        for iopt, ipath in inputs:
            if ipath is not None and Path(str(ipath)).exists() and _same_file(path, ipath):
                _fail(f"{opt} {path} is the {iopt} file: writing it would overwrite an input; give another name")
        for opt2, path2 in outs[:i]:
            if _same_file(path, path2):
                _fail(f"{opt} {path} is also the {opt2} file; give another name")
    for opt, path in given:
        _check_writable(opt, path)
    if plot is not None and Path(plot).suffix.lower() not in PLOT_FORMATS:
        _fail(f"--plot {plot}: the file name must end in {', '.join(PLOT_FORMATS)} (the image format)")
    if plot is not None and net.n_in > 2:
        _fail(f"--plot draws cell maps of networks with at most two inputs; this one has {net.n_in}")


def _inputs(network, against, config, o) -> list:
    """The input files of a command, as ``(option, path)`` pairs (outputs must not overwrite them)."""
    out = [("network", network), ("--against", against), ("--config", config), ("--vnnlib", o.get("vnnlib"))]
    out += [(opt, o.get(k)) for opt, k in (("--point", "point"), ("--box", "box")) if isinstance(o.get(k), (str, Path))]
    return out


def _write_outputs(writers) -> None:
    """Write each requested output (all are tried). The paths were probed before the run
    (:func:`_check_writable`); one that still fails (disk full, removed directory) is an error line
    and exit 3 after the verdict's summary: a script must not read a verdict's exit code while the
    file it asked for is missing."""
    failed = False
    for opt, write in writers:
        try:
            write()
        except (OSError, ValueError) as e:
            typer.echo(f"hybridq: error: could not write {opt}: {e}", err=True)
            failed = True
    if failed:
        raise typer.Exit(3)


def _progress_cb(enabled: bool):
    """A rich progress bar on a terminal stderr (cells proved / refuted / pending, volume decided);
    on a non-terminal stderr (logs of batch runs) one plain line every :data:`PROGRESS_EVERY`
    seconds."""
    if not enabled:
        return None, None
    if not sys.stderr.isatty():
        last = [time.monotonic()]

        def line(stats, pending):
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY:
                last[0] = now
                typer.echo(f"hybridq: progress: {stats.cells} cells examined ({stats.proved_bounds + stats.proved_smt} "
                           f"proved, {stats.refuted} refuted, {stats.splits_input + stats.splits_phase} split), "
                           f"{pending} pending, decided {100 * stats.decided_fraction:.1f}%, "
                           f"{now - T_START:.1f} s", err=True)

        return None, line
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), console=console, transient=True)
    task = prog.add_task("branch and bound", total=1.0, info="")

    def cb(stats, pending):
        prog.update(task, completed=stats.decided_fraction,
                    info=f"proved {stats.proved_bounds}+{stats.proved_smt} (bounds+SMT), refuted {stats.refuted}, "
                         f"pending {pending}, decided {100 * stats.decided_fraction:.1f}%")

    return prog, cb


def _cluster(spec, jobs=None):
    """``--cluster``: a connected Dask client (context manager), or None without the option.
    ``--jobs`` with ``--cluster`` is refused: the cluster's worker threads are the parallelism."""
    if spec is None:
        return contextlib.nullcontext(None)
    if jobs is not None:
        _fail("--jobs and --cluster both set the parallelism: the cluster's worker threads do the work; drop --jobs")
    return _timed_cluster(str(spec))


_close_reserve = 0.0  # seconds :func:`_left` keeps back for closing the open local cluster


@contextlib.contextmanager
def _timed_cluster(spec: str):
    """:func:`hybridq.bab.cluster.open_cluster`, timing a local cluster's start so that
    :func:`_left` keeps back the time its close will take (the budget covers the close too)."""
    from hybridq.bab.cluster import open_cluster

    global _close_reserve
    t = time.monotonic()
    with open_cluster(spec) as client:
        if spec.strip().startswith("local"):
            _close_reserve = max(CLUSTER_CLOSE_MIN, CLUSTER_CLOSE_SHARE * (time.monotonic() - t))
        try:
            yield client
        finally:
            _close_reserve = 0.0


def _run_config(toml_run: dict, backend, jobs, timeout, seed, command: str | None = None):
    """The :class:`RunConfig` of a command: CLI options over TOML keys over the defaults (all cores;
    the command's :data:`DEFAULT_TIMEOUT`)."""
    from hybridq.config import make_config

    run = dict(toml_run)
    for k, v in (("backend", backend), ("jobs", jobs), ("timeout", timeout), ("seed", seed)):
        if v is not None:
            run[k] = v
    if run.get("jobs") is None:
        run["jobs"] = os.cpu_count() or 1
    if run.get("timeout") is None and command in DEFAULT_TIMEOUT:
        run["timeout"] = DEFAULT_TIMEOUT[command]
    return make_config(**run)


def _left(cfg):
    """``cfg`` with its timeout cut to what is left of the command's budget (counted from
    :data:`T_START`, less :data:`OUTPUT_RESERVE` for writing the outputs and the close of a local
    cluster): the process ends within the budget whatever start-up and earlier boxes took."""
    from hybridq.config import make_config

    if cfg.timeout is None:
        return cfg
    left = cfg.timeout - (time.monotonic() - T_START) - OUTPUT_RESERVE - _close_reserve
    return make_config(cfg, timeout=max(left, 0.01))


def _stamp_command_time(stats) -> None:
    """``stats.time["command"]``: seconds from the command's start (:data:`T_START`: the process
    start, or the client's under ``hybridq serve``) to now, the summary line: what the user waited,
    start-up and loading included; the summary prints it first (:func:`hybridq.result.seconds_text`)."""
    stats.time["command"] = time.monotonic() - T_START


def _timeout_note(res, cfg) -> None:
    """Name the command's budget (not the part of it left to the search) in a timeout message."""
    if res.stats.timed_out and cfg.timeout is not None:
        res.message = f"timeout after {cfg.timeout:g} s"


def _load_toml(config):
    if config is None:
        return {}, {}
    from hybridq.config import load_toml

    return load_toml(config)


def _version(value: bool):
    if value:
        from hybridq import __version__

        typer.echo(f"hybridq {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = O(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")):
    """Prove or refute (with an exactly re-checked counterexample) that a network stays robust when its
    weights and biases are perturbed, e.g. by quantization.

    Exit codes: 0 robust, 1 not robust, 2 unknown, 3 usage or input error. Ctrl-C and SIGTERM stop
    the run with its partial result (exit 2).
    """


# ------------------------------------------------------------------ commands
@app.command(cls=_Command)
def verify(
    network: str = NetworkArg, perturb: Optional[str] = PERTURB, point: Optional[str] = POINT,
    box: Optional[str] = BOX, ball: Optional[str] = BALL, center: Optional[bool] = CENTER,
    vnnlib: Optional[str] = VNNLIB, delta: Optional[str] = DELTA, decision: Optional[bool] = DECISION,
    kappa: Optional[str] = KAPPA, sense: Optional[str] = SENSE, label: Optional[int] = LABEL,
    space: Optional[str] = SPACE, outputs: Optional[str] = OUTPUTS, backend: Optional[str] = BACKEND, jobs: Optional[int] = JOBS,
    timeout: Optional[float] = TIMEOUT, seed: Optional[int] = SEED, json: Optional[str] = JSON,
    counterexample: Optional[str] = CEX, config: Optional[str] = CONFIG, plot: Optional[str] = PLOT,
    progress: bool = PROGRESS, against: Optional[str] = AGAINST, cluster: Optional[str] = CLUSTER,
    same_decision: Optional[bool] = SAME,
):
    """Decide a property: robust (proved), not_robust (exact counterexample) or unknown.

    With --against QUANT.onnx: is the deployed model within --delta of NETWORK (or does it keep the
    class, --decision; or decide like NETWORK at every input, --same-decision) on every input; a
    counterexample is one of the exactly rounded network.

    Default overall budget 300 s (--timeout), counted from the start of the command."""
    run, job = _load_toml(config)
    o = _merge(job, perturb=perturb, point=point, box=box, ball=ball, center=center, vnnlib=vnnlib, delta=delta,
               decision=decision, kappa=kappa, sense=sense, label=label, space=space, outputs=outputs, json=json,
               counterexample=counterexample, plot=plot, same_decision=same_decision)
    if o["perturb"] is None and against is None:
        _fail("missing --perturb SPEC (e.g. fp16, int8:per_channel, abs:1e-3) or --against QUANT.onnx")
    cfg = _run_config(run, backend, jobs, timeout, seed, "verify")
    net, pert, problems = _problem(network, o["perturb"], o["point"], o["box"], o["ball"], o["center"], o["vnnlib"],
                                   o["delta"], o["decision"], o["kappa"], o["label"], o["space"], o["outputs"],
                                   sense=o["sense"], same_decision=bool(o["same_decision"]))
    deployed = _deployed(network, net, o["perturb"], against)
    _check_outputs(net, o["json"], o["counterexample"], o["plot"], _inputs(network, against, config, o), derived_cex=True)
    from hybridq.bab import verify as verify_
    from hybridq.result import combine

    results = []
    with _cluster(cluster, jobs) as client:
        prog, cb = _progress_cb(progress)
        try:
            if prog is not None:
                prog.start()
            for b, prop in problems:
                if deployed is not None:
                    from hybridq.deployed import verify_deployed

                    r = verify_deployed(deployed(b), b, prop, onnx_path=against, config=_left(cfg), progress=cb,
                                        executor=client)
                elif o["same_decision"]:
                    from hybridq.equivalence import verify_same_decision

                    r = verify_same_decision(net, pert, b, prop, config=_left(cfg), progress=cb, executor=client)
                else:
                    r = verify_(net, pert, b, prop, config=_left(cfg), progress=cb, executor=client)
                results.append(r)
                if r.verdict == "not_robust" or r.stats.interrupted or r.stats.timed_out:
                    break
        finally:
            if prog is not None:
                prog.stop()
    res = combine(results)
    _timeout_note(res, cfg)
    res.problem = _describe(network, net, o["perturb"], [b for b, _ in problems], results[0].property, o["vnnlib"],
                            against)
    res.settings = _settings(cfg, res.stats.jobs if cluster is not None else None)
    _stamp_command_time(res.stats)
    typer.echo(res.summary())
    writers = []
    cex_path = o["counterexample"]
    if cex_path is None and o["json"] and res.counterexample is not None:
        cex_path = str(Path(o["json"]).with_suffix("")) + ".counterexample.npz"  # the JSON points to it
    if cex_path and res.counterexample is not None:
        res.counterexample.params_file = str(Path(cex_path).resolve())
        writers.append(("--counterexample", lambda: res.counterexample.save(cex_path)))
    if o["json"]:
        writers.append(("--json", lambda: res.to_json(o["json"])))
    if o["plot"]:
        # the cell map (hybridq.plot) of a 2-input run
        from hybridq.plot import plot_cells

        writers.append(("--plot", lambda: plot_cells(res, o["plot"], box=problems[0][0] if len(problems) == 1 else None)))
    _write_outputs(writers)
    raise typer.Exit(res.exit_code)


@app.command(cls=_Command)
def bounds(
    network: str = NetworkArg, perturb: Optional[str] = PERTURB, point: Optional[str] = POINT,
    box: Optional[str] = BOX, ball: Optional[str] = BALL, center: Optional[bool] = CENTER,
    vnnlib: Optional[str] = VNNLIB, method: str = O("linear", "--method", help="interval, diff or linear."),
    json: Optional[str] = JSON, config: Optional[str] = CONFIG, against: Optional[str] = AGAINST,
):
    """Print certified bounds of the logits, scores and deviations over the input and parameter box
    (with --against or act= spec parts: of the deployed model, activation quantizers included)."""

    run, job = _load_toml(config)
    o = _merge(job, perturb=perturb, point=point, box=box, ball=ball, center=center, vnnlib=vnnlib, json=json)
    if o["perturb"] is None and against is None:
        _fail("missing --perturb SPEC (e.g. fp16, int8:per_channel, abs:1e-3) or --against QUANT.onnx")
    if method not in ("interval", "diff", "linear"):
        _fail(f"--method must be interval, diff or linear, got {method!r}")
    net, pert, problems = _problem(network, o["perturb"], o["point"], o["box"], o["ball"], o["center"], o["vnnlib"],
                                   None, None, None, None, None, None, need_property=False)
    deployed = _deployed(network, net, o["perturb"], against)
    _check_outputs(net, o["json"], inputs=_inputs(network, against, config, o))
    from hybridq.bounds import bounds as _bounds

    rows = []
    for i, (b, _) in enumerate(problems):
        if deployed is not None:
            exp = deployed(b).expand(b)
            ob = _bounds(exp.network, exp.perturbation, b, method=method)
        else:
            ob = _bounds(net, pert, b, method=method)
        for j in range(net.n_out):
            rows.append({"box": i, "output": j, "logit": [float(ob.logit_lo[0, j]), float(ob.logit_hi[0, j])],
                         "score": [float(ob.score_lo[0, j]), float(ob.score_hi[0, j])],
                         "deviation_logit": [float(ob.dev_logit_lo[0, j]), float(ob.dev_logit_hi[0, j])],
                         "deviation_score": [float(ob.dev_score_lo[0, j]), float(ob.dev_score_hi[0, j])]})
    typer.echo(f"{'output':>6}  {'logit lo':>12} {'logit hi':>12}  {'dev lo':>12} {'dev hi':>12}  {'score dev lo':>12} {'score dev hi':>12}")
    from hybridq.result import fmt_bound

    for r in rows:  # certified enclosures: lower ends printed rounded down, upper ends rounded up
        cols = [f"{fmt_bound(r[k][0], 'down'):>12} {fmt_bound(r[k][1], 'up'):>12}"
                for k in ("logit", "deviation_logit", "deviation_score")]
        typer.echo(f"{r['output']:>6}  " + "  ".join(cols))
    if o["json"]:
        from hybridq.report import document, write_json

        doc = document("bounds", {"method": method, "rows": rows},
                       _describe(network, net, o["perturb"], [b for b, _ in problems], None, o["vnnlib"], against))
        _write_outputs([("--json", lambda: write_json(o["json"], doc))])


@app.command(cls=_Command)
def quantify(
    network: str = NetworkArg, perturb: Optional[str] = PERTURB, point: Optional[str] = POINT,
    box: Optional[str] = BOX, ball: Optional[str] = BALL, center: Optional[bool] = CENTER,
    vnnlib: Optional[str] = VNNLIB,
    what: Optional[str] = O(None, "--what", help="deviation (the max deviation as witnessed and proved values), epsilon (largest robust EPS) or bits (fewest bits)."),
    family: Optional[str] = O(None, "--family", help="epsilon: abs or rel; bits: float, fixed or int[:options]; with act= spec parts: the activation format's bits, int or uint."),
    tol: Optional[float] = O(None, "--tol", help="Relative tolerance (default 0.1)."),
    delta: Optional[str] = DELTA, decision: Optional[bool] = DECISION, kappa: Optional[str] = KAPPA,
    sense: Optional[str] = SENSE, label: Optional[int] = LABEL, space: Optional[str] = SPACE, outputs: Optional[str] = OUTPUTS,
    backend: Optional[str] = BACKEND, jobs: Optional[int] = JOBS, timeout: Optional[float] = TIMEOUT,
    seed: Optional[int] = SEED, json: Optional[str] = JSON, config: Optional[str] = CONFIG,
    plot: Optional[str] = PLOT, progress: bool = PROGRESS, against: Optional[str] = AGAINST,
    cluster: Optional[str] = CLUSTER, same_decision: Optional[bool] = SAME,
    step_timeout: Optional[float] = O(None, "--step-timeout", help="epsilon/bits: seconds per bisection step "
                                      "(default: an eighth of the overall budget); a step past it counts as not proved."),
):
    """Compute the max deviation (witnessed, proved), the largest epsilon or the fewest bits.

    With --against QUANT.onnx (or act= spec parts), --what deviation bounds the deployed model's
    deviation: witnessed by the exactly rounded network, proved for every rounding error.

    Default overall budget 600 s (--timeout). Exit code 0 when the tolerance was reached, 2 when
    the run stopped early (timeout, Ctrl-C, SIGTERM)."""

    run, job = _load_toml(config)
    o = _merge(job, perturb=perturb, point=point, box=box, ball=ball, center=center, vnnlib=vnnlib, what=what,
               family=family, tol=tol, delta=delta, decision=decision, kappa=kappa, sense=sense, label=label, space=space,
               outputs=outputs, json=json, plot=plot, same_decision=same_decision)
    what = o["what"] or "deviation"
    if what not in ("deviation", "epsilon", "bits"):
        _fail(f"--what must be deviation, epsilon or bits, got {what!r}")
    if o["same_decision"] and what == "deviation":
        _fail("--same-decision is a yes/no property: quantify it with --what epsilon or --what bits "
              "(or ask 'verify --same-decision')")
    if what == "deviation" and o["perturb"] is None and against is None:
        _fail("--what deviation needs --perturb SPEC or --against QUANT.onnx")
    if against is not None and what != "deviation":
        _fail("--against works with --what deviation (or use 'verify --against')")
    if what == "deviation":  # the maximum itself: no threshold, no class
        for opt, key in (("--delta", "delta"), ("--decision", "decision"), ("--label", "label")):
            if o[key] is not None and o[key] is not False:
                _fail(f"{opt} does not apply to --what deviation (it computes the maximum deviation); "
                      "it belongs to --what epsilon or --what bits, or to 'verify'")
    elif o["perturb"] is not None:
        from hybridq.actquant import split_act_spec

        if not split_act_spec(o["perturb"])[1]:
            _fail(f"--what {what} varies the parameter box itself (--family): drop --perturb "
                  "(only act= parts, the activation quantizers, are used with --what bits)")
    tol_ = _tol(o["tol"])
    cfg = _run_config(run, backend, jobs, timeout, seed, "quantify")
    need = what != "deviation"
    net, pert, problems = _problem(network, o["perturb"], o["point"], o["box"], o["ball"], o["center"], o["vnnlib"],
                                   o["delta"], o["decision"], o["kappa"], o["label"], o["space"], o["outputs"],
                                   need_property=need, sense=o["sense"], same_decision=bool(o["same_decision"]))
    if len(problems) != 1:
        _fail(f"quantify takes one input box; the VNNLIB file has {len(problems)}")
    b, prop = problems[0]
    deployed = _deployed(network, net, o["perturb"], against)
    if deployed is not None and what == "epsilon":
        _fail("--what epsilon varies a parameter radius; the act= parts fix the deployed model (use deviation or bits)")
    _check_outputs(net, o["json"], None, o["plot"], _inputs(network, against, config, o))
    from hybridq.quantify import quantify as quantify_
    from hybridq.properties import Deviation

    if o["plot"] and what != "deviation":
        _fail("--plot draws the cells of a 2-input '--what deviation' run only")
    if what == "deviation":
        outs = None if o["outputs"] is None else tuple(_vector(o["outputs"], "--outputs").tolist())
        prop = Deviation(0.0, o["space"] or "logit", outs)
    family_ = o["family"] or ("abs" if what == "epsilon" else ("int" if deployed is not None else "float"))
    if cluster is not None and deployed is not None and what != "deviation":
        _fail("--cluster runs 'quantify --what deviation' or --what epsilon/bits without act= parts")
    with _cluster(cluster, jobs) as client:
        prog, cb = _progress_cb(progress and what == "deviation")
        try:
            if prog is not None:
                prog.start()
            if deployed is not None and what == "deviation":
                from hybridq.deployed import deviation_deployed

                res = deviation_deployed(deployed(b), b, prop, tol=tol_, config=_left(cfg), progress=cb,
                                         executor=client)
            elif deployed is not None:
                from hybridq.deployed import fewest_act_bits

                res = fewest_act_bits(net, o["perturb"], b, prop, family_, config=_left(cfg))
            else:
                res = quantify_(net, pert, b, prop, what, tol=tol_, family=family_,
                                config=_left(cfg), progress=cb, executor=client, step_timeout=step_timeout)
        finally:
            if prog is not None:
                prog.stop()
    _timeout_note(res, cfg)
    res.problem = _describe(network, net, o["perturb"] if what == "deviation" else f"family:{family_}", [b], prop,
                            o["vnnlib"], against)
    res.settings = _settings(cfg, res.stats.jobs if cluster is not None else None)
    _stamp_command_time(res.stats)
    typer.echo(res.summary())
    writers = []
    if o["json"]:
        writers.append(("--json", lambda: res.to_json(o["json"])))
    if o["plot"]:
        # the cell map and deviation heatmap (hybridq.plot) of a 2-input max-deviation run
        from hybridq.plot import plot_cells

        writers.append(("--plot", lambda: plot_cells(res, o["plot"], box=b)))
    _write_outputs(writers)
    # 0: the quantity to the tolerance; 2: stopped early (timeout, interrupt, tolerance not reached)
    raise typer.Exit(2 if res.message else 0)


@app.command(cls=_Command)
def run(
    instances: str = typer.Argument(..., metavar="INSTANCES", help="Instance list: VNN-COMP instances.csv (onnx,vnnlib,timeout rows, "
                                    "optional perturb,property,delta,outputs columns), a CSV with a header, .json or .toml.",
                                    show_default=False),
    results: str = O("results.csv", "--results", "-o", help="Results CSV (rows appended; instances already in it are skipped)."),
    cex_dir: Optional[str] = O(None, "--counterexamples", help="Folder of the counterexample files (default: <results>_counterexamples)."),
    perturb: Optional[str] = PERTURB, delta: Optional[str] = DELTA, outputs: Optional[str] = OUTPUTS,
    space: Optional[str] = SPACE, prop: Optional[str] = O(None, "--property", help="vnnlib, deviation or decision (default: deviation with --delta, else vnnlib)."),
    backend: Optional[str] = BACKEND, jobs: Optional[int] = JOBS,
    timeout: Optional[float] = O(None, "--timeout", help="Seconds per instance where the list gives none (default 300)."),
    seed: Optional[int] = SEED, config: Optional[str] = CONFIG, cluster: Optional[str] = CLUSTER,
):
    """Run a list of instances in one process; results in VNN-COMP's words (unsat/sat/timeout/unknown/error).

    Options are defaults for the instances that leave them empty. Exit code 0 when the list was run
    (whatever the verdicts), 2 when interrupted (a rerun resumes), 3 for a bad list or option."""
    from hybridq.batch import load_instances, run_batch

    run_toml, job = _load_toml(config)
    insts = load_instances(instances)
    if _same_file(results, instances) or any(_same_file(results, p) for i in insts for p in (i.network, i.vnnlib) if p):
        _fail(f"--results {results} is an input of the batch (the instance list or one of its files); give another name")
    _check_writable("--results", results)
    defaults = {k: v for k, v in job.items() if k in ("perturb", "delta", "outputs", "space", "decision", "kappa", "label", "sense")}
    for k, v in (("perturb", perturb), ("delta", delta), ("outputs", outputs), ("space", space), ("property", prop),
                 ("timeout", timeout)):
        if v is not None:
            defaults[k] = v
    if timeout is None and run_toml.get("timeout") is not None:
        defaults["timeout"] = run_toml["timeout"]
    defaults.setdefault("timeout", DEFAULT_TIMEOUT["run"])  # per instance, where the list gives none
    run_toml = {k: v for k, v in run_toml.items() if k != "timeout"}
    cfg = _run_config(run_toml, backend, jobs, None, seed)
    counts: dict = {}
    spent = [0.0]  # the instances' own seconds (each from its loading to its row)

    def show(row):
        counts[row.result] = counts.get(row.result, 0) + 1
        spent[0] += row.time_s
        # a sat row without its files (a full disk) says why, as error and unknown rows do
        lost = row.result == "sat" and not row.counterexample
        extra = f"  {row.message}" if (row.result in ("error", "unknown") or lost) and row.message else ""
        typer.echo(f"{row.id}  {row.result}  {row.time_s:.2f} s{extra}")

    try:
        with _cluster(cluster, jobs) as client:
            run_batch(insts, results, cfg, defaults, cex_dir, on_result=show, executor=client)
    except KeyboardInterrupt as e:
        why = str(e.args[0]) if e.args and e.args[0] else "interrupted"
        typer.echo(f"hybridq: {why}; rerun the same command to resume", err=True)
        raise typer.Exit(2)
    # the first number is what the user waited (from the command's start: start-up and the kernels
    # included); the instances' times, each from its loading to its row, leave those out
    typer.echo("done: " + (", ".join(f"{counts[w]} {w}" for w in ("unsat", "sat", "timeout", "unknown", "error")
                                     if w in counts) or "nothing to run (all instances already in the results)")
               + f", {time.monotonic() - T_START:.2f} s" + (f" (instances {spent[0]:.2f} s)" if counts else ""))


@app.command(cls=_Command)
def serve(
    action: str = typer.Argument("start", metavar="[start|stop|status]", help="start (default), stop or status."),
    foreground: bool = O(False, "--foreground", help="start: serve in this process (until Ctrl-C or 'stop')."),
    idle_timeout: float = O(3600.0, "--idle-timeout", help="start: exit after this many seconds without a request (0: never)."),
):
    """Keep hybridq warm in a server process: verify, bounds, quantify and run start in a fraction of a second.

    The server imports hybridq and loads the kernels once; while it runs, each 'hybridq verify ...'
    (bounds, quantify, run) is run by a fresh child of it in your working directory, with your
    environment, terminal and files, and exits with the same code. Optional: without a server (or
    with HYBRIDQ_SERVER=off, or a server of another hybridq) commands run in their own process.
    Socket: $HYBRIDQ_SERVER, else hybridq/server.sock under $XDG_RUNTIME_DIR or a per-user 0700
    folder in the temporary directory. Exit codes: start 0 (running), status 0 running / 1 not,
    stop 0 stopped / 1 none was running, 3 errors."""
    from hybridq import client as C

    if action not in ("start", "stop", "status"):
        _fail(f"serve takes start, stop or status, got {action!r}")
    path = C.socket_path(create=action == "start")
    if path is None:
        _fail("HYBRIDQ_SERVER is off")
    from hybridq import server as S

    if action == "status":
        st = C.control("status", path)
        if st is None:
            typer.echo(f"no hybridq server at {path}")
            raise typer.Exit(1)
        typer.echo(f"hybridq server running: pid {st['pid']}, {path}, hybridq {st['stamp']['version']} from "
                   f"{st['stamp']['package']}, up {st['uptime_s']:.0f} s, {st['served']} commands served, "
                   f"{st['running']} running")
        raise typer.Exit(0)
    if action == "stop":
        st = S.stop(path)
        typer.echo(f"hybridq server stopped (pid {st['pid']})" if st else f"no hybridq server at {path}")
        raise typer.Exit(0 if st else 1)
    if foreground:
        raise typer.Exit(S.serve_forever(path, idle_timeout or None))
    try:
        st = S.start_background(path, idle_timeout or None)
    except RuntimeError as e:
        _fail(f"could not start the server: {e}")
    typer.echo(f"hybridq server {'already running' if st['already'] else 'started'}: pid {st['pid']}, {path}"
               + ("" if st["already"] else f" (log: {st['log']}); stop it with 'hybridq serve stop'"))


@app.command(cls=_Command)
def backends():
    """List the SMT backends, their capabilities and availability."""
    from hybridq.smt import backends_table

    for name, ok, caps, hint in backends_table():
        typer.echo(f"{name:6} {'available' if ok else 'missing':9} {','.join(caps):28} {'' if ok else hint}".rstrip())


# ------------------------------------------------------------------ entry point
def _decision_sense_args(args: list[str]) -> list[str]:
    """Accept ``--decision min|max`` (and ``--decision=min|max``) as ``--decision --sense min|max``:
    ``--decision`` stays a flag (typer options cannot take an optional value)."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a == "--":
            out += args[i:]
            break
        if a.startswith("--decision=") and a.split("=", 1)[1] in ("min", "max"):
            out += ["--decision", "--sense", a.split("=", 1)[1]]
        elif a == "--decision" and i + 1 < len(args) and args[i + 1] in ("min", "max"):
            out += ["--decision", "--sense", args[i + 1]]
            i += 1
        else:
            out.append(a)
        i += 1
    return out


_COMMAND: list = []


def _click_command():
    """The click command of :data:`app`, built once per process (typer builds it on every call of
    ``app()``: 0.04 s, which a forked child of ``hybridq serve`` would pay on each command)."""
    if not _COMMAND:
        _COMMAND.append(typer.main.get_command(app))
    return _COMMAND[0]


def invoke(argv: list[str], start: float | None = None) -> int:
    """Run ``hybridq ARGV`` and return its exit code (every error mapped to one line on stderr and
    code 3); :func:`main` and the children of ``hybridq serve`` (:mod:`hybridq.server`) call it.

    Parameters
    ----------
    argv : list of str
        The command line after ``hybridq``.
    start : float, optional
        ``time.monotonic()`` when the command started (``--timeout`` counts from it); default now.
    """
    global T_START
    T_START = time.monotonic() if start is None else start
    args = _decision_sense_args(list(argv))
    # SIGTERM (what batch harnesses send) behaves like Ctrl-C: the search stops, the workers end,
    # the partial result is printed and written, exit code 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code = _click_command().main(args=args, prog_name="hybridq", standalone_mode=False)
        if code == 130:  # typer's answer to a Ctrl-C / SIGTERM outside the search (start-up, compile, writing)
            raise KeyboardInterrupt
    except typer.Exit as e:  # pragma: no cover - typer returns the code itself
        code = e.exit_code
    except _cx.NoArgsIsHelpError as e:  # plain (non-rich) help: typer leaves printing it to the caller
        typer.echo(e.ctx.get_help())
        code = 0
    except _cx.ClickException as e:
        typer.echo(f"hybridq: error: {e.format_message()}", err=True)
        code = EXIT_USAGE
    except typer.Abort:
        typer.echo("hybridq: interrupted", err=True)
        code = 2
    except (HybridqError, ValueError, OSError, TypeError, ArithmeticError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        typer.echo(f"hybridq: error: {msg}", err=True)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        typer.echo("hybridq: interrupted", err=True)
        code = 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(code or 0)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (in-process; :func:`hybridq.client.main` forwards to a server first):
    runs the app and maps every error to one line on stderr and exit 3."""
    if argv is None:
        from hybridq.client import discard_closed_output

        discard_closed_output()
        code = invoke(sys.argv[1:], _process_start())
        # the console command: every output is written and closed, so skip the interpreter's
        # teardown of numba, llvmlite and the solver modules (over a second on a busy machine,
        # counted against --timeout by whoever waits for the process)
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        cluster = sys.modules.get("hybridq.bab.cluster")
        if cluster is None or not cluster.start_interrupted():
            os._exit(code)
        # a local Dask cluster's start was interrupted: the interpreter's own exit releases its
        # semaphores (os._exit would leave them to multiprocessing's resource tracker, which warns
        # about them on stderr); every other run skips that teardown
        sys.exit(code)
    sys.exit(invoke(argv))


if __name__ == "__main__":  # pragma: no cover
    main()
