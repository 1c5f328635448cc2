"""Outcomes of a verification or quantification run: plain values, never exceptions.

A :class:`Result` carries the verdict (``robust`` / ``not_robust`` / ``unknown``), the exactly
re-checked :class:`Counterexample` when there is one, the certified bound on the violation
margin, the :class:`Stats` of the branch and bound and, for two-input problems, the list of leaf
cells (:class:`LeafCell`) with how each was decided (for :mod:`hybridq.plot`).
"""

from __future__ import annotations

import decimal
from fractions import Fraction
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Counterexample", "LeafCell", "Stats", "Result", "Quantity", "combine", "fmt_bound", "VERDICTS",
           "EXIT_CODES"]

#: The three verdicts (DESIGN.md §1).
VERDICTS = ("robust", "not_robust", "unknown")
#: CLI exit code per verdict (3 is a usage or input error).
EXIT_CODES = {"robust": 0, "not_robust": 1, "unknown": 2}


def fmt_bound(value: float, direction: str, digits: int = 6) -> str:
    """Print a certified number with ``digits`` significant digits, rounded *outward*.

    Parameters
    ----------
    value : float
        The (float64) bound.
    direction : {"up", "down"}
        ``"up"`` for upper bounds (the printed decimal is ``>= value`` exactly), ``"down"`` for
        lower bounds and witnessed values (printed ``<= value``).
    digits : int
        Significant decimal digits (as ``'{:.6g}'``).

    Returns
    -------
    str
        ``'{:.<digits>g}'``-style text; ``inf``, ``-inf`` and ``nan`` as such.  The decimal is
        obtained from the exact binary value of ``value`` by directed rounding (``decimal``
        with ``ROUND_CEILING`` / ``ROUND_FLOOR``), so it is never on the wrong side.

    Raises
    ------
    ValueError
        ``direction`` is not ``"up"`` or ``"down"``.
    """
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    ctx = decimal.Context(prec=digits, rounding=decimal.ROUND_CEILING if direction == "up" else decimal.ROUND_FLOOR)
    d = ctx.create_decimal(v)  # exact binary value, rounded once in the chosen direction
    if d.is_zero():
        return "-0" if d.is_signed() else "0"
    d = d.normalize(ctx)  # strip trailing zeros (exact: the value has at most ``digits`` digits)
    e = d.adjusted()
    if -4 <= e < digits:  # the layout of '{:.6g}'
        return format(d, "f")
    sign, ds, _ = d.as_tuple()
    ds = "".join(map(str, ds))
    return ("-" if sign else "") + ds[0] + ("." + ds[1:] if len(ds) > 1 else "") + f"e{e:+03d}"


@dataclass
class Counterexample:
    """A violating pair ``(x, theta)``, re-checked in exact arithmetic before it is reported.

    Parameters
    ----------
    x : (n_in,) float64
        The input (raw input space).
    params : Params
        Concrete parameters ``((W_1, b_1), ...)`` inside the perturbation box (checked exactly
        with :meth:`hybridq.Perturbation.contains`).
    margin : float
        Float64 violation margin at the witness (``>= 0``; see :mod:`hybridq.properties`).
    value : float or None
        For deviation properties the deviation reached, rounded toward zero from the exact value.
    kind : str
        What was re-checked when it is not the plain network with ``params`` (``""``): e.g.
        ``"rounded network"``, the deployed network with every activation quantizer applied
        exactly (:mod:`hybridq.deployed`).
    note : str
        E.g. whether onnxruntime reproduces the violation.
    x_exact : tuple of Fraction or None
        The exact input when some coordinate is not a float64 (e.g. the decimal end ``0.1`` of
        the input box the user wrote); ``x`` is then its nearest float64.  None when ``x`` is exact.
    outputs_nominal, outputs_perturbed : (n_out,) float64 or None
        Float64 logits ``y(x; theta0)`` and ``y(x; theta)`` (for reading; the verdict rests on
        the exact re-check).
    violated : str
        The constraint the counterexample violates, e.g. ``|y_2(x; theta) - y_2(x; theta0)| <= 0.01``.
    property : dict or None
        The property (:func:`hybridq.report.property_dict`); ``spec`` the perturbation spec.
    params_file : str or None
        Where :meth:`save` wrote the parameters (the JSON result points to it).
    """

    x: np.ndarray
    params: tuple
    margin: float
    value: float | None = None
    kind: str = ""
    note: str = ""
    x_exact: tuple | None = None
    outputs_nominal: np.ndarray | None = None
    outputs_perturbed: np.ndarray | None = None
    violated: str = ""
    property: dict | None = None
    spec: str | None = None
    params_file: str | None = None

    #: The layout of the ``.npz`` file written by :meth:`save` (stored in it as ``layout``).
    NPZ_LAYOUT = ("hybridq counterexample v1: x (n_in,) float64 input, raw input space; "
                  "W0, b0, W1, b1, ...: the perturbed parameters, W{k} (out, in) float64 weight matrix of "
                  "layer k (0-based), b{k} (out,) float64 bias; margin () float64 violation margin (>= 0); "
                  "value () float64 deviation reached (deviation properties); outputs_nominal, "
                  "outputs_perturbed (n_out,) float64 logits y(x; theta0), y(x; theta); violated: text; "
                  "property: JSON text of the property; spec: perturbation spec; kind, note: text; "
                  "x_exact: the exact input as 'p/q' strings when some coordinate is not a float64")

    def __repr__(self) -> str:
        shapes = ", ".join(f"{np.shape(W)[0]}x{np.shape(W)[1]}" for W, _ in self.params)
        return (f"Counterexample(x={np.array2string(np.asarray(self.x), threshold=8, precision=6)}, "
                f"margin>={fmt_bound(self.margin, 'down')}, layers [{shapes}]"
                + (f", {self.violated}" if self.violated else "") + ")")

    def save(self, path: str | Path) -> None:
        """Write the counterexample to an ``.npz`` file (layout in :data:`NPZ_LAYOUT`, also stored in
        the file as ``layout``); :meth:`load` reads it back bit-exactly."""
        arrays = {"layout": np.array(self.NPZ_LAYOUT), "x": np.asarray(self.x, dtype=np.float64),
                  "margin": np.float64(self.margin)}
        for k, (W, b) in enumerate(self.params):
            arrays[f"W{k}"] = np.asarray(W, dtype=np.float64)
            arrays[f"b{k}"] = np.asarray(b, dtype=np.float64)
        if self.value is not None:
            arrays["value"] = np.float64(self.value)
        if self.x_exact is not None:  # exact rationals as 'p/q' strings
            arrays["x_exact"] = np.array([str(q) for q in self.x_exact])
        for name in ("outputs_nominal", "outputs_perturbed"):
            if getattr(self, name) is not None:
                arrays[name] = np.asarray(getattr(self, name), dtype=np.float64)
        for name in ("violated", "spec", "kind", "note"):
            if getattr(self, name):
                arrays[name] = np.array(getattr(self, name))
        if self.property is not None:
            arrays["property"] = np.array(json.dumps(self.property))
        with open(path, "wb") as f:  # exactly the path given (np.savez would append .npz)
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "Counterexample":
        """Read a file written by :meth:`save` (every array bit-identical to the saved one).

        Raises
        ------
        ValueError
            The file is not a hybridq counterexample (no ``x`` or no ``W0``).
        """
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files or "W0" not in z.files:
                raise ValueError(f"{path}: not a hybridq counterexample file (needs x, W0, b0, ...)")
            n = sum(1 for k in z.files if k.startswith("W") and k[1:].isdigit())
            params = tuple((z[f"W{k}"].copy(), z[f"b{k}"].copy()) for k in range(n))
            text = {k: str(z[k]) if k in z.files else "" for k in ("violated", "spec", "kind", "note")}
            return cls(z["x"].copy(), params, float(z["margin"]),
                       float(z["value"]) if "value" in z.files else None, text["kind"], text["note"],
                       x_exact=tuple(Fraction(str(q)) for q in z["x_exact"]) if "x_exact" in z.files else None,
                       outputs_nominal=z["outputs_nominal"].copy() if "outputs_nominal" in z.files else None,
                       outputs_perturbed=z["outputs_perturbed"].copy() if "outputs_perturbed" in z.files else None,
                       violated=text["violated"],
                       property=json.loads(str(z["property"])) if "property" in z.files else None,
                       spec=text["spec"] or None, params_file=str(Path(path)))

    def to_dict(self) -> dict:
        """JSON form: ``x``, ``margin`` (float64 witness margin, ``>= 0``), ``value``, the float
        outputs, the violated constraint and ``params_file`` (the ``.npz`` with the parameters)."""
        d = {"x": np.asarray(self.x).tolist(), "margin": float(self.margin), "value": self.value,
             "outputs_nominal": None if self.outputs_nominal is None else np.asarray(self.outputs_nominal).tolist(),
             "outputs_perturbed": None if self.outputs_perturbed is None else np.asarray(self.outputs_perturbed).tolist(),
             "violated": self.violated, "params_file": self.params_file, "kind": self.kind, "note": self.note,
             "x_exact": None if self.x_exact is None else [str(q) for q in self.x_exact]}
        return d


@dataclass
class LeafCell:
    """A terminal cell of the branch and bound (plain record for plots).

    ``status`` is one of ``"bounds"`` (proved by the bound pass), ``"smt"`` (proved by the SMT
    backend), ``"counterexample"`` (refuted), ``"open"`` (undecided); ``bound`` is the certified
    upper bound of the violation margin on the cell (for deviation properties: of the deviation).
    """

    lower: np.ndarray
    upper: np.ndarray
    status: str
    bound: float


def seconds_text(time: dict) -> str:
    """The seconds of a summary line: ``"1.52 s (search 0.03 s)"`` when ``time`` has the CLI's
    ``command`` (seconds since the command started) besides ``total`` (the search), else the
    library call's ``"0.03 s"``."""
    total = f"{time.get('total', 0.0):.2f} s"
    return total if "command" not in time else f"{time['command']:.2f} s (search {total})"


@dataclass
class Stats:
    """Counters and timings of one branch-and-bound run (times in seconds).

    The counts add up: every examined cell was proved (``proved_bounds``, ``proved_smt``),
    refuted, split (``splits_input + splits_phase``) or left ``open``, so
    ``cells == proved_bounds + proved_smt + refuted + splits_input + splits_phase + open``
    (:meth:`split`); ``pending`` cells were created by splits but never examined (the run stopped
    first).  The leaf cells (recorded for plots) are the examined cells that were not split plus
    the pending ones.

    ``decided_fraction`` is the share of the search space closed so far (the root counts 1, each
    split gives each of its ``k`` children ``1/k`` of the parent's share; no underflow: shares
    halve per split, depth is capped).  ``undecided_volume`` is the input volume of the distinct
    input boxes left open at the end (it underflows to 0 for boxes of many dimensions: use
    ``undecided_fraction``, their share of the input box computed from per-dimension width
    ratios in log space, and ``log10_total_volume``).

    ``time`` holds seconds per stage (``bounds``, ``attack``, ``smt``, ``split``) and ``total``, the
    wall time of the library call (the search: after the process start-up, the network loading
    and the kernel loading).  The CLI adds ``command``: from the command's start (the process
    start, or the client's start under ``hybridq serve``) to the summary line, which then prints
    it first, as the time the user waited, and ``total`` as ``search`` (:func:`seconds_text`).
    """

    cells: int = 0
    proved_bounds: int = 0
    proved_smt: int = 0
    refuted: int = 0
    open: int = 0
    pending: int = 0
    smt_calls: int = 0
    smt_unknown: int = 0
    splits_input: int = 0
    splits_phase: int = 0
    max_depth: int = 0
    rounds: int = 0
    undecided_volume: float = 0.0
    total_volume: float = 0.0
    log10_total_volume: float = float("-inf")
    undecided_fraction: float = 0.0
    decided_fraction: float = 0.0
    jobs: int = 1
    interrupted: bool = False
    timed_out: bool = False
    time: dict = field(default_factory=lambda: {"bounds": 0.0, "attack": 0.0, "smt": 0.0, "split": 0.0, "total": 0.0})

    @property
    def split(self) -> int:
        """Examined cells that were split (input or phase split)."""
        return self.splits_input + self.splits_phase

    @property
    def leaves(self) -> int:
        """Leaf cells: examined and not split, plus the pending ones."""
        return self.cells - self.split + self.pending

    def add(self, other: "Stats") -> None:
        """Accumulate another run's counters into this one (``undecided_fraction`` becomes the
        share of the union of both input boxes, weighted by volume in log space)."""
        for name in ("cells", "proved_bounds", "proved_smt", "refuted", "open", "pending", "smt_calls", "smt_unknown",
                     "splits_input", "splits_phase", "rounds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_depth = max(self.max_depth, other.max_depth)
        self.undecided_volume += other.undecided_volume
        self.total_volume += other.total_volume
        a, b = self.log10_total_volume, other.log10_total_volume
        if a == -math.inf and self.undecided_fraction == 0.0:  # nothing added yet
            self.undecided_fraction, self.log10_total_volume = other.undecided_fraction, b
        elif not (math.isfinite(a) and math.isfinite(b)):
            self.undecided_fraction = max(self.undecided_fraction, other.undecided_fraction)
            self.log10_total_volume = max(a, b)
        else:
            m = max(a, b)
            wa, wb = 10.0 ** (a - m), 10.0 ** (b - m)
            self.undecided_fraction = (wa * self.undecided_fraction + wb * other.undecided_fraction) / (wa + wb)
            self.log10_total_volume = m + math.log10(wa + wb)
        self.decided_fraction = min(self.decided_fraction, other.decided_fraction) if self.cells else other.decided_fraction
        self.jobs = max(self.jobs, other.jobs)
        self.interrupted |= other.interrupted
        self.timed_out |= other.timed_out
        for k, v in other.time.items():
            self.time[k] = self.time.get(k, 0.0) + v


@dataclass
class Result:
    """The outcome of :func:`hybridq.verify`.

    Attributes
    ----------
    verdict : {"robust", "not_robust", "unknown"}
    property : Deviation | Decision | OutputConstraint
    counterexample : Counterexample or None
        Present exactly when ``verdict == "not_robust"``.
    bound : float
        Certified upper bound of the violation margin over the whole input set, taken from the
        bound pass on the leaves (``< 0`` everywhere it was proved by bounds alone; ``nan`` when
        the run stopped before any bound pass).  For a deviation property it is
        ``deviation_bound - delta`` rounded up.
    stats : Stats
    leaves : list of LeafCell or None
        Recorded for inputs with at most two dimensions (for :mod:`hybridq.plot`).
    message : str
        Why the verdict is unknown (timeout, interrupt, open cells), else empty.
    deviation_bound : float
        Deviation properties: certified upper bound of the maximum deviation itself (the largest
        leaf bound, kept apart from ``delta`` so a huge ``delta`` cannot absorb it); ``nan``
        otherwise or before any bound pass.
    problem : dict or None
        What was asked (:func:`hybridq.report.describe_problem`), for the JSON document.
    settings : dict or None
        Backend, seed, timeout, jobs (:func:`hybridq.report.settings_dict`).
    """

    verdict: str
    property: object
    counterexample: Counterexample | None = None
    bound: float = float("nan")
    stats: Stats = field(default_factory=Stats)
    leaves: list | None = None
    message: str = ""
    deviation_bound: float = float("nan")
    problem: dict | None = None
    settings: dict | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def __repr__(self) -> str:
        return f"<Result {self.summary()}>"

    def __str__(self) -> str:
        return self.summary()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def summary(self) -> str:
        """A one-line human summary (the CLI's stdout line)."""
        s = self.stats
        parts = [f"{self.verdict}:"]
        if self.counterexample is not None:
            cx = self.counterexample
            val = f", deviation {fmt_bound(cx.value, 'down')}" if cx.value is not None else ""
            what = f"counterexample ({cx.kind})" if cx.kind else "counterexample"
            note = f"; {cx.note}" if cx.note else ""
            parts.append(f"{what} re-checked exactly (margin {fmt_bound(cx.margin, 'down', 3)}{val}{note});")
        pend = f", {s.pending} pending" if s.pending else ""
        parts.append(
            f"{s.cells} cells examined ({s.proved_bounds} proved by bounds, {s.proved_smt} by SMT, {s.refuted} refuted, "
            f"{s.split} split, {s.open} open){pend}, {seconds_text(s.time)}"
        )
        if type(self.property).__name__ == "Deviation" and np.isfinite(self.deviation_bound) and self.verdict == "robust":
            parts[-1] += f"; certified max deviation <= {fmt_bound(self.deviation_bound, 'up')}"
        if self.message:
            parts.append(f"[{self.message}]")
        return " ".join(parts)

    def to_dict(self) -> dict:
        """The ``result`` section of the JSON document (see :mod:`hybridq.report`)."""
        from hybridq.report import property_dict

        d = {
            "verdict": self.verdict,
            "summary": self.summary(),
            "property": property_dict(self.property),
            "bound": None if not np.isfinite(self.bound) else float(self.bound),
            "deviation_bound": None if not np.isfinite(self.deviation_bound) else float(self.deviation_bound),
            "stats": asdict(self.stats),
            "message": self.message,
            "counterexample": None if self.counterexample is None else self.counterexample.to_dict(),
        }
        if self.leaves is not None:
            d["leaves"] = [
                {"lower": np.asarray(c.lower).tolist(), "upper": np.asarray(c.upper).tolist(),
                 "status": c.status, "bound": float(c.bound)}
                for c in self.leaves
            ]
        return d

    def to_json(self, path: str | Path) -> None:
        """Write the JSON document (:mod:`hybridq.report`; schema ``hybridq/schema/result.schema.json``)."""
        from hybridq.report import document, write_json

        write_json(path, document("verify", self.to_dict(), self.problem, self.settings))


@dataclass
class Quantity:
    """The outcome of :func:`hybridq.quantify`.

    Attributes
    ----------
    what : {"deviation", "epsilon", "bits"}
    lower, upper : float
        ``deviation``: ``[witnessed, proved]`` bounds of the maximum deviation ``D*`` (witnessed is
        attained by an exactly evaluated pair, proved is certified).  ``epsilon``: the largest
        epsilon proved robust and the smallest one not proved.  ``bits``: the fewest bits proved
        robust (``upper``) and the most bits not proved (``lower``).
    steps : list of dict
        The individual verify runs of a bisection: the value tried (``epsilon`` or ``bits`` and
        ``spec``), ``verdict`` (``not_robust``: refuted by an exactly re-checked counterexample;
        ``unknown``: not decided within the step's budget), ``message``, ``seconds``.
    not_proved_verdict : str
        The verdict of the step at the not-proved end (``upper`` for epsilon, ``lower`` for bits):
        ``"not_robust"`` (refuted there), ``"unknown"`` or ``""`` (no step tried it).
    witness : Counterexample or None
        For ``deviation``: the pair attaining ``lower``.
    leaves : list of LeafCell or None
        For ``deviation`` on inputs with at most two dimensions: the leaf cells with their
        certified deviation bounds (for :mod:`hybridq.plot`).
    """

    what: str
    lower: float
    upper: float
    steps: list = field(default_factory=list)
    witness: Counterexample | None = None
    stats: Stats = field(default_factory=Stats)
    message: str = ""
    leaves: list | None = None
    not_proved_verdict: str = ""
    problem: dict | None = None
    settings: dict | None = None

    def __repr__(self) -> str:
        return f"<Quantity {self.summary()}>"

    def __str__(self) -> str:
        return self.summary()

    @property
    def ratio(self) -> float:
        return float(self.upper / self.lower) if self.lower > 0 else float("inf")

    def summary(self) -> str:
        t = seconds_text(self.stats.time)
        if self.what == "deviation":
            return (f"max deviation in [{fmt_bound(self.lower, 'down')}, {fmt_bound(self.upper, 'up')}] "
                    f"(witnessed, proved; ratio "
                    f"{self.ratio:.3g}), {self.stats.cells} cells examined, {t}" + (f" [{self.message}]" if self.message else ""))
        at = "refuted (counterexample) at" if self.not_proved_verdict == "not_robust" else "not proved at"
        if self.what == "epsilon":
            return (f"largest epsilon proved robust {fmt_bound(self.lower, 'down')}; {at} "
                    f"{fmt_bound(self.upper, 'up')}, "
                    f"{len(self.steps)} steps, {t}" + (f" [{self.message}]" if self.message else ""))
        return (f"fewest bits proved robust {_fmt_bits(self.upper)}; {at} {_fmt_bits(self.lower)}, "
                f"{len(self.steps)} steps, {t}" + (f" [{self.message}]" if self.message else ""))

    def to_dict(self) -> dict:
        """The ``result`` section of the JSON document (see :mod:`hybridq.report`)."""
        return {"what": self.what, "summary": self.summary(), "lower": self.lower, "upper": self.upper,
                "steps": self.steps, "not_proved_verdict": self.not_proved_verdict,
                "stats": asdict(self.stats), "message": self.message,
                "witness": None if self.witness is None else self.witness.to_dict()}

    def to_json(self, path: str | Path) -> None:
        """Write the JSON document (:mod:`hybridq.report`; schema ``hybridq/schema/result.schema.json``)."""
        from hybridq.report import document, write_json

        write_json(path, document("quantify", self.to_dict(), self.problem, self.settings))


def _fmt_bits(b: float) -> str:
    return "none" if not np.isfinite(b) else str(int(b))


def combine(results: list[Result]) -> Result:
    """Merge the results of several input boxes of one property set (a VNNLIB disjunction):
    ``not_robust`` if any is, ``robust`` if all are, else ``unknown``."""
    if not results:
        raise ValueError("no results to combine")
    stats = Stats()
    for r in results:
        stats.add(r.stats)
    bad = [r for r in results if r.verdict == "not_robust"]
    if bad:
        verdict, cex = "not_robust", bad[0].counterexample
    elif all(r.verdict == "robust" for r in results):
        verdict, cex = "robust", None
    else:
        verdict, cex = "unknown", None
    bound = max((r.bound for r in results if np.isfinite(r.bound)), default=float("nan"))
    dev_bound = max((r.deviation_bound for r in results if np.isfinite(r.deviation_bound)), default=float("nan"))
    msgs = sorted({r.message for r in results if r.message})
    leaves = None
    if all(r.leaves is not None for r in results):
        leaves = [c for r in results for c in r.leaves]
    return Result(verdict, results[0].property, cex, bound, stats, leaves, "; ".join(msgs), dev_bound,
                  results[0].problem, results[0].settings)
