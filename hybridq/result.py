"""Outcomes of a verification or quantification run: plain values, never exceptions.

A :class:`Result` carries the verdict (``robust`` / ``not_robust`` / ``unknown``), the exactly
re-checked :class:`Counterexample` when there is one, the certified bound on the violation
margin, the :class:`Stats` of the branch and bound and, for two-input problems, the list of leaf
cells (:class:`LeafCell`) with how each was decided (for :mod:`hybridq.plot`).
"""

from __future__ import annotations

import decimal
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
    """

    x: np.ndarray
    params: tuple
    margin: float
    value: float | None = None
    kind: str = ""
    note: str = ""
    x_exact: tuple | None = None

    def save(self, path: str | Path) -> None:
        """Write ``x``, ``W0, b0, W1, b1, ...`` (and ``margin``) to an ``.npz`` file."""
        arrays = {"x": np.asarray(self.x), "margin": np.float64(self.margin)}
        for k, (W, b) in enumerate(self.params):
            arrays[f"W{k}"] = np.asarray(W)
            arrays[f"b{k}"] = np.asarray(b)
        if self.value is not None:
            arrays["value"] = np.float64(self.value)
        if self.x_exact is not None:  # exact rationals as 'p/q' strings
            arrays["x_exact"] = np.array([str(q) for q in self.x_exact])
        np.savez(path, **arrays)

    def to_dict(self) -> dict:
        d = {"x": np.asarray(self.x).tolist(), "margin": float(self.margin), "value": self.value}
        if self.kind or self.note:
            d.update(kind=self.kind, note=self.note)
        if self.x_exact is not None:
            d["x_exact"] = [str(q) for q in self.x_exact]
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


@dataclass
class Stats:
    """Counters and timings of one branch-and-bound run (times in seconds).

    ``decided_fraction`` is the share of the search space closed so far (the root counts 1, each
    split gives its children half of the parent's share each); ``undecided_volume`` is the input
    volume of the distinct input boxes left open at the end.
    """

    cells: int = 0
    proved_bounds: int = 0
    proved_smt: int = 0
    refuted: int = 0
    open: int = 0
    smt_calls: int = 0
    smt_unknown: int = 0
    splits_input: int = 0
    splits_phase: int = 0
    max_depth: int = 0
    rounds: int = 0
    undecided_volume: float = 0.0
    total_volume: float = 0.0
    decided_fraction: float = 0.0
    jobs: int = 1
    interrupted: bool = False
    timed_out: bool = False
    time: dict = field(default_factory=lambda: {"bounds": 0.0, "attack": 0.0, "smt": 0.0, "split": 0.0, "total": 0.0})

    def add(self, other: "Stats") -> None:
        """Accumulate another run's counters into this one."""
        for name in ("cells", "proved_bounds", "proved_smt", "refuted", "open", "smt_calls", "smt_unknown",
                     "splits_input", "splits_phase", "rounds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_depth = max(self.max_depth, other.max_depth)
        self.undecided_volume += other.undecided_volume
        self.total_volume += other.total_volume
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
    """

    verdict: str
    property: object
    counterexample: Counterexample | None = None
    bound: float = float("nan")
    stats: Stats = field(default_factory=Stats)
    leaves: list | None = None
    message: str = ""
    deviation_bound: float = float("nan")

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

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
            parts.append(f"{what} re-checked exactly (margin {cx.margin:.3g}{val}{note});")
        parts.append(
            f"{s.cells} cells examined ({s.proved_bounds} proved by bounds, {s.proved_smt} by SMT, {s.refuted} refuted, "
            f"{s.open} open), {s.time.get('total', 0.0):.2f} s"
        )
        if type(self.property).__name__ == "Deviation" and np.isfinite(self.deviation_bound) and self.verdict == "robust":
            parts[-1] += f"; certified max deviation <= {fmt_bound(self.deviation_bound, 'up')}"
        if self.message:
            parts.append(f"[{self.message}]")
        return " ".join(parts)

    def to_dict(self) -> dict:
        """JSON-serialisable dictionary."""
        d = {
            "verdict": self.verdict,
            "property": _prop_dict(self.property),
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
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))


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
        The individual verify runs (value tried, verdict, seconds) of a bisection.
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

    @property
    def ratio(self) -> float:
        return float(self.upper / self.lower) if self.lower > 0 else float("inf")

    def summary(self) -> str:
        t = self.stats.time.get("total", 0.0)
        if self.what == "deviation":
            return (f"max deviation in [{fmt_bound(self.lower, 'down')}, {fmt_bound(self.upper, 'up')}] "
                    f"(witnessed, proved; ratio "
                    f"{self.ratio:.3g}), {self.stats.cells} cells examined, {t:.2f} s" + (f" [{self.message}]" if self.message else ""))
        if self.what == "epsilon":
            return (f"largest epsilon proved robust {fmt_bound(self.lower, 'down')}; not proved at "
                    f"{fmt_bound(self.upper, 'up')}, "
                    f"{len(self.steps)} steps, {t:.2f} s" + (f" [{self.message}]" if self.message else ""))
        return (f"fewest bits proved robust {_fmt_bits(self.upper)}; not proved at {_fmt_bits(self.lower)}, "
                f"{len(self.steps)} steps, {t:.2f} s" + (f" [{self.message}]" if self.message else ""))

    def to_dict(self) -> dict:
        return {"what": self.what, "lower": self.lower, "upper": self.upper, "steps": self.steps,
                "stats": asdict(self.stats), "message": self.message,
                "witness": None if self.witness is None else self.witness.to_dict()}

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))


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
    return Result(verdict, results[0].property, cex, bound, stats, leaves, "; ".join(msgs), dev_bound)


def _prop_dict(prop) -> dict:
    name = type(prop).__name__
    if name == "Deviation":
        return {"type": "deviation", "delta": prop.delta, "space": prop.space,
                "outputs": None if prop.outputs is None else list(prop.outputs)}
    if name == "Decision":
        return {"type": "decision", "label": prop.label, "kappa": prop.kappa, "sense": prop.sense}
    if name == "OutputConstraint":
        return {"type": "output_constraint", "disjuncts": len(prop.disjuncts)}
    return {"type": name}


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)
