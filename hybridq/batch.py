"""Batch runs over instance lists (``hybridq run INSTANCES``): one process for the whole list.

An *instance* is one verification query: a network file, an input set (a VNNLIB file, a box or a
point), a perturbation spec and a property, with a per-instance timeout.  Instance lists come as

* VNN-COMP's ``instances.csv``: rows ``onnx,vnnlib,timeout`` without a header, optionally followed
  by the columns ``perturb,property,delta,outputs`` (:data:`POSITIONAL`); or a CSV whose first row is
  a header naming any of the :data:`KEYS` (``network`` and ``onnx`` are synonyms);
* a JSON file: a list of objects with those keys, or ``{"defaults": {...}, "instances": [...]}``;
* a TOML file: top-level keys are defaults, each ``[[instance]]`` table one instance.

Relative paths are taken from the instance file's folder (as VNN-COMP's benchmark folders do).
``property`` is ``vnnlib`` (the VNNLIB file's output constraints), ``deviation`` (``|y_j(x;theta) -
y_j(x;theta0)| <= delta``, with ``outputs`` and ``space``), ``decision`` (the class is kept, with
``label`` / ``kappa``) or ``same_decision`` (decision equivalence: at every input the perturbed
network picks the nominal network's class there, with ``kappa`` / ``sense``;
:func:`hybridq.equivalence.verify_same_decision`); when empty: ``deviation`` if a ``delta`` is
given, else ``vnnlib``.

Results go to a CSV file, one row per instance, written as soon as the instance is done, so an
interrupted batch resumes where it stopped (instances whose ``id`` is already in the file are
skipped).  The ``result`` column uses VNN-COMP's words -- the VNNLIB file describes the *unsafe*
set, so a violation found is ``sat``: :data:`VNNCOMP_WORDS` maps ``robust`` to ``unsat``,
``not_robust`` to ``sat``, an ``unknown`` that ran out of time to ``timeout``, any other
``unknown`` to ``unknown``; a query that could not be run (bad file, bad option) is ``error``
with its one-line message.  Every ``sat`` instance gets a counterexample file in VNN-COMP's format
(:func:`write_vnncomp_counterexample`: the line ``sat`` then ``((X_0 v) ... (Y_0 v))``, the ``Y``
the perturbed network's logits at the counterexample's parameters) beside hybridq's ``.npz`` with
the input and every parameter (:meth:`hybridq.result.Counterexample.save`).

Networks and perturbations are loaded once per (file, spec) and shared by the instances that use
them; the kernels are compiled or loaded once per process; with ``jobs > 1`` one set of worker
processes (:class:`hybridq.bab.executors.WorkerPool`) serves every instance, started in the
background by the first run that lasts long enough (short instances never wait for it).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from hybridq.errors import ConfigError, HybridqError
from hybridq.exact import split_numbers

__all__ = ["Instance", "InstanceResult", "load_instances", "run_batch", "read_results", "vnncomp_word",
           "write_vnncomp_counterexample", "read_vnncomp_counterexample", "KEYS", "POSITIONAL", "RESULT_COLUMNS",
           "VNNCOMP_WORDS"]

#: Keys of an instance (CSV header names, JSON / TOML keys).
KEYS = ("id", "network", "vnnlib", "timeout", "perturb", "property", "delta", "outputs", "space", "box", "point",
        "ball", "center", "decision", "label", "kappa", "sense")
#: Columns of a header-less CSV row, in order (VNN-COMP's three, then hybridq's optional ones).
POSITIONAL = ("network", "vnnlib", "timeout", "perturb", "property", "delta", "outputs")
#: Columns of the results CSV.
RESULT_COLUMNS = ("id", "result", "verdict", "time_s", "cells", "network", "vnnlib", "counterexample", "message")
#: hybridq verdict -> VNN-COMP result word (``unknown`` splits into ``timeout`` / ``unknown``).
VNNCOMP_WORDS = {"robust": "unsat", "not_robust": "sat", "unknown": "unknown"}
_PROPERTIES = ("vnnlib", "deviation", "decision", "same_decision")
_ALIASES = {"onnx": "network", "net": "network", "timeout_s": "timeout"}


# =========================================================================== instances
@dataclass(frozen=True)
class Instance:
    """One query of a batch.

    Attributes
    ----------
    id : str
        Unique within the list; the key that resuming matches against the results file.
    network : Path
        ``.onnx`` / ``.nnet`` / ``.npz`` file (``.gz`` compressed files are read too).
    vnnlib : Path or None
        VNNLIB file (input box and, for ``property = "vnnlib"``, the unsafe output set).
    timeout : float or None
        Seconds for the instance, loading included (``None``: unlimited).
    options : dict
        The remaining keys of :data:`KEYS` that were given (strings from a CSV, typed values
        from JSON / TOML; checked when the instance runs, a bad one makes it an ``error`` row).
    """

    id: str
    network: Path
    vnnlib: Path | None
    timeout: float | None
    options: dict = field(default_factory=dict)


def _canon(key: str) -> str:
    k = str(key).strip().lower().replace("-", "_")
    return _ALIASES.get(k, k)


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _rows_csv(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark is not part of the first name
    rows = [r for r in csv.reader(text.splitlines()) if r and not (len(r) == 1 and not r[0].strip())
            and not r[0].lstrip().startswith("#")]
    if not rows:
        return []
    head = [_canon(c) for c in rows[0]]
    if "network" in head or "id" in head:
        unknown = [c for c in head if c not in KEYS and c]
        if unknown:
            raise ConfigError(f"{path}: unknown column {unknown[0]!r}; known: {', '.join(KEYS)} (and onnx)")
        out = []
        for n, r in enumerate(rows[1:], start=2):
            if len(r) > len(head):
                raise ConfigError(f"{path}: row {n} has {len(r)} cells, the header {len(head)}")
            out.append({k: v.strip() for k, v in zip(head, r) if k and not _blank(v)})
        return out
    out = []
    for n, r in enumerate(rows, start=1):
        if len(r) > len(POSITIONAL):
            raise ConfigError(f"{path}: row {n} has {len(r)} cells; a row without a header has at most "
                              f"{len(POSITIONAL)}: {','.join(POSITIONAL)}")
        out.append({k: v.strip() for k, v in zip(POSITIONAL, r) if not _blank(v)})
    return out


def _rows_mapping(path: Path, data, list_key: str) -> list[dict]:
    defaults = {}
    if isinstance(data, dict):
        items = data.get(list_key, data.get("instances"))
        defaults = {k: v for k, v in data.items() if k not in (list_key, "instances")}
        if isinstance(defaults.get("defaults"), dict):
            defaults = {**{k: v for k, v in defaults.items() if k != "defaults"}, **defaults["defaults"]}
    else:
        items = data
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"{path}: expected a list of instances (objects / [[{list_key}]] tables)")
    out = []
    for item in items:
        row = {_canon(k): v for k, v in defaults.items()}
        row.update({_canon(k): v for k, v in item.items()})
        out.append(row)
    return out


def load_instances(path: str | Path) -> list[Instance]:
    """Read an instance list (CSV, JSON or TOML; see the module docstring).

    Parameters
    ----------
    path : str or Path
        ``.csv`` (VNN-COMP ``instances.csv`` or with a header), ``.json`` or ``.toml``.

    Returns
    -------
    list of Instance
        In file order; paths resolved against the file's folder; ids made unique (a repeated id
        gets ``#2``, ``#3``, ...).

    Raises
    ------
    ConfigError
        Missing or unreadable file (or a folder), unknown suffix, syntax error, unknown key, a row
        without a network, a timeout that is not a positive number, a list without instances.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p} is a folder; give the instance list file (.csv, .json or .toml)")
    if not p.is_file():
        raise ConfigError(f"instance list not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            rows = _rows_csv(p)
        elif suffix == ".json":
            rows = _rows_mapping(p, json.loads(p.read_text(encoding="utf-8-sig")), "instances")
        elif suffix == ".toml":
            rows = _rows_mapping(p, tomllib.loads(p.read_text(encoding="utf-8-sig")), "instance")
        else:
            raise ConfigError(f"{p}: instance lists are .csv, .json or .toml files, got {p.suffix!r}")
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError, csv.Error) as e:
        raise ConfigError(f"{p}: cannot parse the instance list: {e}") from None
    base = p.resolve().parent
    out, seen = [], {}
    for n, row in enumerate(rows, start=1):
        unknown = [k for k in row if k not in KEYS]
        if unknown:
            raise ConfigError(f"{p}: instance {n}: unknown key {unknown[0]!r}; known: {', '.join(KEYS)}")
        if _blank(row.get("network")):
            raise ConfigError(f"{p}: instance {n} has no network")
        net = base / str(row["network"]).strip()
        vnn = None if _blank(row.get("vnnlib")) else base / str(row["vnnlib"]).strip()
        timeout = None
        if not _blank(row.get("timeout")):
            try:
                timeout = float(row["timeout"])
            except (TypeError, ValueError):
                timeout = float("nan")
            if isinstance(row["timeout"], bool) or not (timeout > 0 and math.isfinite(timeout)):
                raise ConfigError(f"{p}: instance {n}: timeout must be a positive number of seconds, "
                                  f"got {row['timeout']!r}")
        iid = str(row["id"]).strip() if not _blank(row.get("id")) else \
            _stem(net) + ("" if vnn is None else ":" + _stem(vnn))
        if iid in seen:  # a repeated id gets #2, #3, ... (one that no other instance has: ids are the resume keys)
            base_id = iid
            while iid in seen:
                seen[base_id] += 1
                iid = f"{base_id}#{seen[base_id]}"
        seen[iid] = 1
        opts = {k: v for k, v in row.items() if k not in ("id", "network", "vnnlib", "timeout") and not _blank(v)}
        out.append(Instance(iid, net, vnn, timeout, opts))
    if not out:  # an empty file, a header alone, [] or no [[instance]] table: nothing a batch could run
        raise ConfigError(f"{p}: the instance list has no instances")
    return out


def _stem(path: Path) -> str:
    name = path.name
    for suf in (".gz", ".onnx", ".nnet", ".npz", ".vnnlib"):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
    return name


# =========================================================================== results
@dataclass
class InstanceResult:
    """One row of the results file (see :data:`RESULT_COLUMNS`).

    ``result`` is the VNN-COMP word, ``verdict`` hybridq's (empty for ``error``), ``time_s`` the
    wall time of the instance including loading, ``cells`` the branch-and-bound cells examined,
    ``counterexample`` the VNN-COMP counterexample file of a ``sat`` instance (else empty).  The
    batch loads the kernels before the first instance's clock starts (process start-up is not an
    instance's time)."""

    id: str
    result: str
    verdict: str
    time_s: float
    cells: int
    network: str
    vnnlib: str
    counterexample: str = ""
    message: str = ""

    def row(self) -> dict:
        return {"id": self.id, "result": self.result, "verdict": self.verdict, "time_s": f"{self.time_s:.4f}",
                "cells": str(self.cells), "network": self.network, "vnnlib": self.vnnlib,
                "counterexample": self.counterexample, "message": self.message}


def vnncomp_word(result, timeout: float | None = None, elapsed: float | None = None) -> str:
    """VNN-COMP's result word for a :class:`hybridq.Result`.

    ``robust`` -> ``unsat`` (no input reaches the unsafe set), ``not_robust`` -> ``sat``, an
    ``unknown`` whose run ran out of time (``stats.timed_out``, or ``elapsed >= timeout``) ->
    ``timeout``, any other ``unknown`` -> ``unknown``."""
    if result.verdict != "unknown":
        return VNNCOMP_WORDS[result.verdict]
    if result.stats.timed_out or (timeout is not None and elapsed is not None and elapsed >= timeout):
        return "timeout"
    return "unknown"


def read_results(path: str | Path) -> list[dict]:
    """The rows of a results CSV written by :func:`run_batch` (an absent file: no rows).

    Raises
    ------
    ConfigError
        The file exists but is not a results file of this format (missing columns)."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return []
    with p.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("id", "result") if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{p}: not a hybridq results file (no {missing[0]!r} column)")
        return [dict(r) for r in reader]


def write_vnncomp_counterexample(path: str | Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write a counterexample as VNN-COMP's result file: ``sat`` then ``((X_0 v) ... (Y_0 v))``.

    Values are written with Python's shortest round-trip ``repr``, so reading them back gives the
    identical float64 input that hybridq re-checked exactly.

    Parameters
    ----------
    path : str or Path
    x : (n_in,) float64
        The input (the network's raw input space, as in the VNNLIB file).
    y : (n_out,) float64
        The outputs (logits) of the network at ``x`` with the counterexample's parameters.
    """
    xs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.asarray(x, dtype=np.float64).ravel())]
    ys = [f"(Y_{i} {float(v)!r})" for i, v in enumerate(np.asarray(y, dtype=np.float64).ravel())]
    Path(path).write_text("sat\n(" + "\n ".join(xs + ys) + ")\n", encoding="ascii")


_ASSIGN = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


def read_vnncomp_counterexample(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse a VNN-COMP counterexample (with or without the leading ``sat`` line).

    Returns
    -------
    x : (n_in,) float64
    y : (n_out,) float64

    Raises
    ------
    ConfigError
        No assignments, a missing or repeated index, a value that is not a number.
    """
    text = Path(path).read_text(encoding="utf-8")
    vals: dict = {"X": {}, "Y": {}}
    for var, idx, val in _ASSIGN.findall(text):
        try:
            v = float(val)
        except ValueError:
            raise ConfigError(f"{path}: {var}_{idx} has the value {val!r}, not a number") from None
        if int(idx) in vals[var]:
            raise ConfigError(f"{path}: {var}_{idx} is assigned twice")
        vals[var][int(idx)] = v
    out = []
    for var in ("X", "Y"):
        d = vals[var]
        if not d or sorted(d) != list(range(len(d))):
            raise ConfigError(f"{path}: the {var}_i assignments are missing or not numbered 0..n-1")
        out.append(np.array([d[i] for i in range(len(d))], dtype=np.float64))
    return out[0], out[1]


# =========================================================================== running
class _Loader:
    """Networks and perturbations loaded once per (file, spec) for the whole batch (``.gz`` files are
    read by :mod:`hybridq.io`, as ``hybridq verify`` reads them)."""

    def __init__(self):
        self.nets: dict = {}
        self.perts: dict = {}

    def network(self, path: Path):
        from hybridq.io import load_network

        key = str(path)
        if key not in self.nets:
            self.nets[key] = load_network(path)
        return self.nets[key]

    def perturbation(self, path: Path, spec: str):
        from hybridq.perturbation import perturbation

        key = (str(path), spec)
        if key not in self.perts:
            self.perts[key] = perturbation(spec, self.network(path))
        return self.perts[key]

    def vnnlib(self, path: Path, n_in: int, n_out: int):
        from hybridq.io import load_vnnlib

        return load_vnnlib(path, n_in, n_out)


def _exact(v, what: str):
    """One number as written (decimal text exactly; a JSON/TOML float by its shortest decimal)."""
    from hybridq.exact import to_fraction

    try:
        return to_fraction(repr(float(v)) if isinstance(v, float) else v, what)
    except ValueError:
        raise ConfigError(f"{what} must be a finite number, got {v!r}") from None


def _label(v):
    """A ``label`` cell: CSV text as an ``int``; other values (JSON/TOML numbers) unchanged, so that
    :class:`hybridq.properties.Decision` refuses 1.5 rather than ``int()`` truncating it to 1.
    ``ConfigError`` for text that is not an integer ('max', '1.5')."""
    if isinstance(v, str):
        if _blank(v):
            return None
        try:
            return int(v.strip())
        except ValueError:
            raise ConfigError(f"label must be a non-negative integer, got {v!r}") from None
    return v


def _exacts(v, what: str) -> np.ndarray:
    """Numbers as written (see :func:`_exact`), as an object array of Fractions."""
    _floats(v, what)  # the same checks and messages
    vals = list(v) if isinstance(v, (list, tuple)) else split_numbers(v, what)
    return np.array([_exact(s, what) for s in vals], dtype=object)


def _floats(v, what: str) -> np.ndarray:
    if isinstance(v, (list, tuple)):
        vals = list(v)
    else:
        try:
            vals = split_numbers(v, what)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    try:
        out = np.array([float(s) for s in vals], dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be numbers, got {v!r}") from None
    if out.size == 0 or not np.all(np.isfinite(out)):
        raise ConfigError(f"{what} must be finite numbers, got {v!r}")
    return out


def _input_box(v):
    """``'lo:hi,lo:hi,...'``, a list of such strings or of ``[lo, hi]`` pairs, or ``{lo: [...], hi: [...]}``."""
    from hybridq.inputs import InputBox

    if isinstance(v, dict) and "lo" in v and "hi" in v:
        return InputBox(_exacts(v["lo"], "box lo"), _exacts(v["hi"], "box hi"))
    try:
        parts = v if isinstance(v, (list, tuple)) else split_numbers(v, "box")  # ";" too: a CSV cell needs no quotes
    except ValueError as e:
        raise ConfigError(str(e)) from None
    lo, hi = [], []
    for part in parts:
        if isinstance(part, (list, tuple)) and len(part) == 2:
            a, b = part
        else:
            a, sep, b = str(part).partition(":")
            if not sep:
                raise ConfigError(f"bad box entry {part!r}: expected LO:HI pairs, e.g. '0:1,-1:1'")
        lo.append(a)
        hi.append(b)
    return InputBox(_exacts(lo, "box lower ends"), _exacts(hi, "box upper ends"))


def _flag(v, what: str) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "y"):
        return True
    if s in ("0", "false", "no", "n"):
        return False
    raise ConfigError(f"{what} must be true or false, got {v!r}")


def _problems(inst: Instance, opts: dict, loader: _Loader):
    """``(network, perturbation, [(InputBox, property), ...])`` of an instance."""
    from hybridq.inputs import InputBox
    from hybridq.io import decision_label
    from hybridq.properties import Decision, Deviation

    net = loader.network(inst.network)
    spec = opts.get("perturb")
    if _blank(spec):
        raise ConfigError("no perturbation: give a perturb column or --perturb SPEC")
    pert = loader.perturbation(inst.network, str(spec).strip())
    dec = opts.get("decision")
    if isinstance(dec, str) and dec.strip().lower() in ("min", "max"):  # decision = min|max sets the sense
        opts = {**opts, "decision": True, "sense": opts.get("sense") or dec.strip().lower()}
    prop_kind = str(opts.get("property", "")).strip().lower() or ("deviation" if "delta" in opts else
                                                                   "decision" if _flag(opts.get("decision", False), "decision") else "vnnlib")
    if prop_kind not in _PROPERTIES:
        raise ConfigError(f"property must be one of {', '.join(_PROPERTIES)}, got {prop_kind!r}")
    if prop_kind == "deviation" and "delta" not in opts:
        raise ConfigError("property deviation needs a delta")
    pairs = loader.vnnlib(inst.vnnlib, net.n_in, net.n_out) if inst.vnnlib is not None else []
    if pairs:
        from hybridq.io.vnnlib import clamp_mismatch

        why = clamp_mismatch(net, [bx for bx, _ in pairs])
        if why:  # the units probably differ (normalized VNNLIB on a raw-unit .nnet): say so, run anyway
            logging.getLogger(__name__).warning("%s: %s: %s", inst.id, inst.vnnlib, why)
    if "box" in opts and "point" in opts:
        raise ConfigError("give either box or point, not both")
    if pairs and ("box" in opts or "point" in opts):
        raise ConfigError("the VNNLIB file gives the input box: drop box/point (use center or ball)")
    if "box" in opts:
        boxes = [_input_box(opts["box"])]
    elif "point" in opts:
        x = _exacts(opts["point"], "point")
        boxes = [InputBox.ball(x, _exact(opts["ball"], "ball")) if "ball" in opts else InputBox.point(x)]
    elif pairs:
        boxes = [b for b, _ in pairs]
        if "center" in opts and _flag(opts["center"], "center"):
            boxes = [InputBox.point(b.exact_center) for b in boxes]
        if "ball" in opts:
            boxes = [InputBox.ball(b.exact_center, _exact(opts["ball"], "ball")) for b in boxes]
    else:
        raise ConfigError("no input set: give a vnnlib file, a box or a point")
    for b in boxes:
        b.check_dim(net.n_in)
    cons = [c for _, c in pairs] if pairs else [None] * len(boxes)
    problems = []
    for b, con in zip(boxes, cons):
        if prop_kind == "deviation":
            outs = opts.get("outputs")
            outs = None if outs is None else tuple(_floats(outs, "outputs").tolist())  # Deviation refuses 0.5
            prop = Deviation(_exact(opts["delta"], "delta"), str(opts.get("space", "logit")), outs)
        elif prop_kind == "same_decision":  # decision equivalence (hybridq.equivalence)
            from hybridq.equivalence import SameDecision

            sense = str(opts.get("sense") or net.decision_sense).strip().lower()
            prop = SameDecision(_exact(opts.get("kappa", 0), "kappa"), sense)
        elif prop_kind == "decision":
            sense = str(opts.get("sense") or net.decision_sense).strip().lower()
            c = _label(opts.get("label"))
            if c is None and con is not None:
                c = decision_label(con, sense)
            if c is None:
                c = int(net.predict(b.center, sense=sense))
            prop = Decision(c, _exact(opts.get("kappa", 0), "kappa"), sense)
        else:
            if con is None:
                raise ConfigError("property vnnlib needs a VNNLIB file")
            prop = con
        problems.append((b, prop))
    return net, pert, problems


def _safe_name(iid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", iid).strip("._") or "instance"


def _outputs_at(net, cex) -> np.ndarray:
    """The logits at the counterexample (exact values rounded to nearest where exact)."""
    try:
        ys = net.exact_logits(cex.x, cex.params)
        return np.array([float(v) if not hasattr(v, "mid") else float(v.mid) for v in ys], dtype=np.float64)
    except (TypeError, ValueError, AttributeError):  # pragma: no cover - exact path unavailable
        return np.asarray(net.forward(cex.x, cex.params), dtype=np.float64)


def run_instance(inst: Instance, defaults: dict, config, loader: _Loader | None = None,
                 cex_dir: Path | None = None, workers=None, executor=None):
    """Run one instance; returns ``(InstanceResult, Result or None)``.

    Errors of the instance (bad files, bad options) become an ``error`` row, never an exception;
    ``KeyboardInterrupt`` propagates (and the run's ``stats.interrupted`` is re-raised as one), so an
    interrupted instance is not recorded and a resumed batch runs it again."""
    from dataclasses import replace

    from hybridq.bab import verify
    from hybridq.result import combine

    loader = loader or _Loader()
    t0 = time.perf_counter()
    timeout = inst.timeout if inst.timeout is not None else defaults.get("timeout")
    opts = {**{k: v for k, v in defaults.items() if k != "timeout" and not _blank(v)}, **inst.options}
    net_s, vnn_s = str(inst.network), "" if inst.vnnlib is None else str(inst.vnnlib)
    res = None
    try:
        net, pert, problems = _problems(inst, opts, loader)
        results = []
        for b, prop in problems:
            left = None if timeout is None else timeout - (time.perf_counter() - t0)
            if left is not None and left <= 0:
                break
            cfg = replace(config, timeout=left)
            if type(prop).__name__ == "SameDecision":
                from hybridq.equivalence import verify_same_decision

                r = verify_same_decision(net, pert, b, prop, config=cfg, workers=workers, executor=executor)
            else:
                r = verify(net, pert, b, prop, config=cfg, workers=workers, executor=executor)
            if r.stats.interrupted:
                raise KeyboardInterrupt(r.message)  # e.g. "interrupted: cluster lost (...)"
            results.append(r)
            if r.verdict == "not_robust":
                break
        elapsed = time.perf_counter() - t0
        if not results:  # the timeout was spent loading
            from hybridq.result import Result, Stats

            res = Result("unknown", problems[0][1], stats=Stats(timed_out=True), message="timeout while loading")
        else:
            res = combine(results)
            if len(results) < len(problems) and res.verdict == "robust":
                from dataclasses import replace as dreplace

                res = dreplace(res, verdict="unknown", message="timeout")
                res.stats.timed_out = True
        word = vnncomp_word(res, timeout, elapsed)
        row = InstanceResult(inst.id, word, res.verdict, elapsed, res.stats.cells, net_s, vnn_s, "", res.message)
        if res.counterexample is not None and cex_dir is not None:
            stem = cex_dir / _safe_name(inst.id)
            cpath = stem.with_name(stem.name + ".counterexample")
            try:  # the verdict stands when the files cannot be written
                cex_dir.mkdir(parents=True, exist_ok=True)
                write_vnncomp_counterexample(cpath, res.counterexample.x, _outputs_at(net, res.counterexample))
                res.counterexample.save(stem.with_name(stem.name + ".npz"))
                row.counterexample = str(cpath)
            except OSError as e:
                row.message = f"could not write the counterexample files: {e}"
        return row, res
    except KeyboardInterrupt:
        raise
    except (HybridqError, ValueError, OSError, TypeError, ArithmeticError, MemoryError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return InstanceResult(inst.id, "error", "", time.perf_counter() - t0, 0, net_s, vnn_s, "", msg), None
    except Exception as e:  # noqa: BLE001 - one bad instance must not end the batch; recorded with its type
        msg = f"internal error {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        return InstanceResult(inst.id, "error", "", time.perf_counter() - t0, 0, net_s, vnn_s, "", msg), None


def run_batch(instances: Iterable[Instance], results: str | Path, config=None, defaults: dict | None = None,
              cex_dir: str | Path | None = None, on_result: Callable | None = None,
              executor=None) -> list[InstanceResult]:
    """Run every instance not yet in ``results``, appending one row per instance as it finishes.

    Parameters
    ----------
    instances : iterable of Instance
    results : str or Path
        The results CSV (:data:`RESULT_COLUMNS`); created with a header when absent.  Instances
        whose id is already in it are skipped (resume).
    config : RunConfig, optional
        Settings of every run (``timeout`` is replaced by each instance's own).
    defaults : dict, optional
        Values for keys an instance leaves empty (``perturb``, ``delta``, ``timeout``, ...: the
        CLI options of ``hybridq run``).
    cex_dir : str or Path, optional
        Folder of the counterexample files (default: ``<results stem>_counterexamples`` beside
        the results file).
    on_result : callable(InstanceResult) or None
        Called after each instance (progress output).
    executor : distributed.Client or None
        Run every instance's branch and bound on this Dask cluster (``--cluster``; no worker
        processes of this machine are started then).

    Returns
    -------
    list of InstanceResult
        The rows written by this call (skipped instances are not repeated).

    Raises
    ------
    ConfigError
        ``results`` exists but is not a results file; another batch is writing it; an invalid default.
    KeyboardInterrupt
        Ctrl-C (or a lost cluster, its message as the argument): the rows written so far stay;
        the interrupted instance is not recorded.
    """
    from hybridq.config import make_config

    config = config if config is not None else make_config()
    defaults = dict(defaults or {})
    results = Path(results)
    cex_dir = Path(cex_dir) if cex_dir is not None else results.with_name(results.stem + "_counterexamples")
    loader = _Loader()
    instances = list(instances)
    _check_cex_targets(instances, cex_dir, results)
    f, writer, done = _open_results(results)  # locked until closed
    rows = []
    # one set of worker processes for the whole batch, started by the first run that lasts long enough
    workers = None
    interrupted = False
    try:
        if config.jobs > 1 and executor is None:
            from hybridq.bab.executors import WorkerPool

            workers = WorkerPool(config.jobs)
        instances = [i for i in instances if i.id not in done]
        if instances:  # start-up (kernels from numba's cache, or compiled) before the first instance's clock
            try:
                from hybridq.bounds import load_kernels

                load_kernels(loader.network(instances[0].network), config.bound_method)
            except Exception:  # noqa: BLE001 - the instance itself reports a bad network
                pass
        for inst in instances:
            if inst.id in done:
                continue
            row, _ = run_instance(inst, defaults, config, loader, cex_dir, workers, executor)
            try:
                writer.writerow(row.row())
                f.flush()
            except OSError as e:  # disk full mid-batch: the rows before stay; a rerun resumes here
                raise ConfigError(f"{results}: cannot write the results file ({e.strerror or e}); the instances "
                                  "before this one are recorded: rerun the same command to resume") from None
            done.add(inst.id)
            rows.append(row)
            if on_result is not None:
                on_result(row)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        _close_quietly(f)
        if workers is not None:
            workers.close(interrupted)
    return rows


def _check_cex_targets(instances: list, cex_dir: Path, results: Path) -> None:
    """Refuse a counterexample folder where an instance's counterexample files (``ID.npz``,
    ``ID.counterexample``) would replace one of the batch's inputs (a network or VNNLIB file of the
    list, e.g. ``--counterexamples .`` in the networks' folder) or the results file.

    Also refuse a folder that cannot be made: a file at its path, or at the path of a folder above
    it (every ``sat`` instance would lose its files, noted only in its row).

    Raises
    ------
    ConfigError
        Naming the instance, the file and the input it would overwrite, or the file in the way."""
    up = Path(cex_dir)
    while not up.exists() and up.parent != up:  # the nearest part of the path that exists
        up = up.parent
    if up.exists() and not up.is_dir():
        raise ConfigError(f"the counterexample folder {cex_dir}: {up} is a file, not a folder; give another "
                          "--counterexamples folder")

    def key(p):
        try:
            st = Path(p).stat()
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    inputs = {}
    for p in [results] + [q for i in instances for q in (i.network, i.vnnlib) if q is not None]:
        k = key(p)
        if k is not None:
            inputs.setdefault(k, p)
    for inst in instances:
        for suffix in (".npz", ".counterexample"):
            target = cex_dir / (_safe_name(inst.id) + suffix)
            k = key(target)
            if k is not None and k in inputs:
                raise ConfigError(f"the counterexample file {target} of instance {inst.id!r} would overwrite the "
                                  f"input {inputs[k]}; give another --counterexamples folder")


def _open_results(path: Path):
    """Open the results CSV ``path`` for appending: ``(file, csv.DictWriter, ids already done)``.

    The file stays locked (``flock``) while it is open, so a second batch on the same results file
    is refused instead of running every instance a second time.  Rows are appended in the file's
    own column order (a file whose columns were reordered or pruned by hand keeps its layout, so
    resuming still finds its ids); a last line without its line end (an editor that drops it, a
    killed write) gets one first, so the next row is not glued to it, and a last row that a kill
    cut short is not counted as done.

    Raises
    ------
    ConfigError
        Another process holds the file, it is not a results file (no ``id`` / ``result`` column),
        or it cannot be written (a full disk: the message names the file).
    """
    try:
        return _open_results_file(path)
    except OSError as e:  # a full disk or device (-o /dev/full): say which file
        raise ConfigError(f"{path}: cannot write the results file: {e.strerror or e}") from None


def _open_results_file(path: Path):
    import fcntl
    import io

    if path.exists() and not path.is_file():  # a pipe or terminal (-o /dev/stdout): nothing to resume or lock
        f = path.open("a", newline="", encoding="utf-8")
        try:
            writer = csv.DictWriter(f, fieldnames=list(RESULT_COLUMNS))
            writer.writeheader()
            f.flush()
        except BaseException:
            _close_quietly(f)
            raise
        return f, writer, set()
    f = path.open("a+", newline="", encoding="utf-8")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"{path}: another 'hybridq run' is writing this results file (it resumes "
                              "where that one stops: run it again afterwards, or give another --results)") from None
        f.seek(0)
        text = f.read().removeprefix("\ufeff")  # saved by a spreadsheet: the mark is not part of 'id'
        fields, done = list(RESULT_COLUMNS), set()
        if text.strip():
            reader = csv.DictReader(io.StringIO(text, newline=""))
            missing = [c for c in ("id", "result") if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{path}: not a hybridq results file (no {missing[0]!r} column)")
            fields = list(reader.fieldnames)
            rows = list(reader)
            if rows and not text.endswith(("\n", "\r")) and None in rows[-1].values():
                rows.pop()  # cut short (fewer cells than the header): not done
            done = {r["id"] for r in rows}
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if not text.strip():
            writer.writeheader()
        elif not text.endswith(("\n", "\r")):
            f.write("\r\n")
        f.flush()
        return f, writer, done
    except BaseException:
        _close_quietly(f)
        raise


def _close_quietly(f) -> None:
    """Close ``f``; a flush of buffered text that fails again (the disk is still full) is dropped:
    the error that made us close it is the one to report."""
    try:
        f.close()
    except OSError:
        try:
            f.buffer.raw.close()
        except (OSError, AttributeError):
            pass
