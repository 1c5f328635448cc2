"""Run configuration: one frozen, typed dataclass passed explicitly into every worker, and TOML
files whose keys are the CLI options.

Unknown keys and values of the wrong type raise :class:`hybridq.ConfigError` naming the key
(a misspelled option must not be silently ignored).
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from dataclasses import dataclass, fields, replace
from pathlib import Path

from hybridq.errors import ConfigError

__all__ = ["RunConfig", "make_config", "load_toml", "JOB_KEYS"]

BACKENDS = ("auto", "milp", "z3", "dreal", "none")


@dataclass(frozen=True)
class RunConfig:
    """Settings of one branch-and-bound run (all plain, picklable values).

    Parameters
    ----------
    backend : {"auto", "milp", "z3", "dreal", "none"}
        Exact backend for the cells the bound pass leaves open (``auto``: chosen per cell, see
        :class:`hybridq.smt.AutoBackend`; ``none``: bounds and attacks only).
    jobs : int
        Worker processes (``>= 1``; ``1`` runs the same loop in-process).
    timeout : float or None
        Wall-clock budget of the run in seconds (``None``: unlimited).
    seed : int
        Seed of the attacks; results are identical for a fixed seed whatever ``jobs`` is.
    bound_method : {"interval", "diff", "linear"}
        Bound pass method (see :func:`hybridq.bounds`).
    bound_inter : {0, 1, 2, 3} or None
        ``linear`` only: which intermediate bounds CROWN refines (``inter`` of
        :func:`hybridq.bounds`).  ``None``: 3 (the difference ``dz`` too, the perturbed network
        only where ``dz`` is wide; 2 took about 1.5x the time per cell of 1 and gave about 10x
        narrower deviation bounds on ACAS Xu cells under ``point:fp16``) for deviation
        properties and ``quantify``, 1 otherwise.
    batch_size : int
        Cells taken from the queue per round (a round's cells are processed independently, so the
        result does not depend on how a round is shared among workers).
    chunk_size : int
        Cells per worker task (0: automatic, ``batch_size / 8``: the same chunks whatever
        ``jobs`` is, so per-chunk budgets such as the SMT one keep results independent of it).
    max_depth : int
        Cells deeper than this are not split further (they stay open if nothing decides them).
    smt_max_unstable : int
        A cell goes to the SMT backend when at most this many perturbed neurons are unstable.
    smt_min_depth : int
        ... or when it is at least this deep (0: never by depth alone).
    smt_max_unknown : int
        After this many SMT calls without an answer the run stops calling SMT and only splits
        (a deterministic count, so results stay independent of ``jobs``; a round's chunks share
        what is left of it).
    smt_budget : float
        Seconds of SMT time limits that calls ending without an answer may use up in a run (each
        such call is charged its limit, so the count is deterministic); past it no SMT is called.
    smt_timeout : float
        Most seconds per SMT call.
    smt_first_timeout : float
        Seconds for an SMT call on the root cell; a cell at depth ``d`` gets
        ``min(smt_timeout, smt_first_timeout * 2**d)`` (a split is often cheaper than a long call).
    milp_max_unstable, milp_max_unknown, milp_budget, milp_timeout, milp_first_timeout
        The same for cells decided by the certified MILP stage (``backend`` ``milp``, or ``auto``
        on relu / identity networks), whose calls pay at many more unstable neurons and repay
        longer limits.  Cells with an input box (not a point) use ``milp_box_max_unstable`` and
        ``milp_box_first_timeout`` instead: there the LP relaxation of the two networks is weak and
        splitting the input is often cheaper (on random 2-input networks 64 / 8 s made runs slower
        than z3), and in ``verify`` mode only when the cell's attack came close to the threshold
        (:data:`hybridq.bab.exact.BOX_EXACT_GAP`).  A cell that cannot be split further (its phases all fixed, or the depth
        limit) goes to the exact stage with the rest of the run's time (at most four times
        ``milp_timeout`` / ``smt_timeout``) instead of being left open.
    milp_root_max_unstable : int
        A ``verify`` run's root cell at a point input with more unstable neurons than
        ``milp_max_unstable`` but at most this many gets one milp proof call with the run's time
        left (at most four times ``milp_timeout``; most of it for the certified branch and bound,
        whose root probing closes such cells where splitting phases does not), after its attack
        and before it is split (one call per run, not charged to ``milp_budget``); 0 turns it off.
    dreal_precision : float
        dReal's ``delta`` (its answers are unsat or delta-sat; delta-sat models are re-checked
        exactly).  1e-6: at 1e-3 delta-sat boxes near a threshold did not re-check (2 of 40
        sigmoid / tanh queries unconfirmed that 1e-6 refuted), and no query was slower at 1e-6
        (bench/results/dreal.md, suite ``precision``).
    attack_samples, attack_steps, attack_restarts : int
        Random (x, theta) samples, projected-gradient steps and starts of the attack on each cell
        (the root cell gets ``4 x`` the samples and restarts and ``2 x`` the steps).
    attack_screen : int
        Inputs ranked by the first-order model of the violation at the root cell (the best become
        the attack's starts; :func:`hybridq.attack.attack`'s ``screen``); 0: none.
    attack_every : int
        Attack only the root and the cells whose depth is a multiple of this (attacks on children
        of an attacked cell rarely find what the parent's attack missed); 3x this in
        ``quantify``'s maximization, where attacks only raise the witnessed deviation.
    attack_share : float
        ``verify``: after the first 64 attacks (``hybridq.bab.scheduler.ATTACK_FREE``), at most this
        many attacks per cell examined (the cells due by ``attack_every`` with the largest bounds
        first); ``>= 1``: every cell due.  An attack costs about 2.5 bound passes on ACAS Xu, and
        deep cells rarely hold a counterexample that the attacks of their ancestors missed.
    input_split : {"smear", "widest"}
        Input dimension choice: largest smear, or largest width relative to the root box.
    split_lookahead : int
        Input splits: bound the children of the ``k`` dimensions with the largest smear and keep
        the split whose worse child bound is smallest (``0`` or ``1``: the largest smear alone).
    max_queue : int
        Queue length above which cells are taken depth-first (bounds memory).
    input_split_max_dim : int
        Boxes with at most this many inputs are split along input dimensions, larger ones by
        ReLU phase.
    record_leaves : bool or None
        Keep the leaf cells in the result (default: when the input has at most 2 dimensions).
    """

    backend: str = "auto"
    jobs: int = 1
    timeout: float | None = None
    seed: int = 0
    bound_method: str = "linear"
    bound_inter: int | None = None
    batch_size: int = 64
    chunk_size: int = 0
    max_depth: int = 60
    smt_max_unstable: int = 6
    smt_min_depth: int = 0
    smt_max_unknown: int = 8
    smt_budget: float = 30.0
    smt_timeout: float = 10.0
    smt_first_timeout: float = 0.5
    milp_max_unstable: int = 64
    milp_max_unknown: int = 16
    milp_budget: float = 120.0
    milp_timeout: float = 30.0
    milp_first_timeout: float = 8.0
    milp_box_max_unstable: int = 12
    milp_root_max_unstable: int = 192
    milp_box_first_timeout: float = 1.0
    dreal_precision: float = 1e-6
    attack_samples: int = 8
    attack_steps: int = 6
    attack_restarts: int = 1
    attack_screen: int = 2048
    attack_every: int = 3
    attack_share: float = 0.03125
    input_split: str = "smear"
    split_lookahead: int = 0
    max_queue: int = 100_000
    input_split_max_dim: int = 32
    record_leaves: bool | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {self.backend!r}")
        if self.bound_method not in ("interval", "diff", "linear"):
            raise ConfigError(f"bound_method must be interval, diff or linear; got {self.bound_method!r}")
        if self.bound_inter is not None and (isinstance(self.bound_inter, bool) or not isinstance(self.bound_inter, int)
                                             or self.bound_inter not in (0, 1, 2, 3)):
            raise ConfigError(f"bound_inter must be 0, 1, 2, 3 or unset; got {self.bound_inter!r}")
        if self.input_split not in ("smear", "widest"):
            raise ConfigError(f"input_split must be smear or widest; got {self.input_split!r}")
        for name in ("jobs", "batch_size", "max_depth", "attack_every", "attack_samples", "attack_restarts",
                     "max_queue", "input_split_max_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("smt_max_unstable", "smt_min_depth", "smt_max_unknown", "milp_max_unstable", "milp_max_unknown", "milp_box_max_unstable",
                     "milp_root_max_unstable",
                     "attack_steps", "attack_screen", "seed", "chunk_size", "split_lookahead"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {v!r}")
        if self.attack_screen > 1_000_000:
            raise ConfigError(f"attack_screen must be at most 1000000 (inputs ranked at the root), got {self.attack_screen!r}")
        if isinstance(self.attack_share, bool) or not isinstance(self.attack_share, (int, float)) \
                or not self.attack_share >= 0:
            raise ConfigError(f"attack_share must be a number >= 0, got {self.attack_share!r}")
        if self.timeout is not None and (not isinstance(self.timeout, (int, float)) or not self.timeout > 0):
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        for name in ("smt_timeout", "smt_first_timeout", "smt_budget", "milp_timeout", "milp_first_timeout",
                     "milp_box_first_timeout",
                     "milp_budget", "dreal_precision"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {v!r}")


_RUN_KEYS = {f.name for f in fields(RunConfig)}

#: Keys of a TOML job file besides the :class:`RunConfig` fields: the CLI options (the network
#: file is the command's argument, not a key).
JOB_KEYS = {
    "perturb": str, "point": (str, list), "box": (str, list), "ball": (Decimal, int),
    "center": bool, "vnnlib": str, "delta": (Decimal, int), "decision": (bool, str), "kappa": (Decimal, int),
    "sense": str, "label": int, "space": str, "outputs": (str, list), "json": str, "counterexample": str,
    "what": str, "family": str, "tol": (Decimal, int), "plot": str, "same_decision": bool,
}
# TOML floats are read as Decimal (the digits as written: a delta, a ball radius or a point
# coordinate stays the exact decimal the user wrote; see hybridq.exact); run options become floats.


def make_config(config: RunConfig | None = None, **overrides) -> RunConfig:
    """A :class:`RunConfig` from an optional base and keyword overrides (``None`` values are
    ignored; ``jobs=None`` means all cores).

    Raises
    ------
    ConfigError
        An unknown key or an invalid value.
    """
    base = config if config is not None else RunConfig()
    unknown = sorted(set(overrides) - _RUN_KEYS)
    if unknown:
        raise ConfigError(f"unknown configuration key {unknown[0]!r}; known: {', '.join(sorted(_RUN_KEYS))}")
    kw = {k: v for k, v in overrides.items() if v is not None}
    if "jobs" in overrides and overrides["jobs"] is None and config is None:
        kw["jobs"] = os.cpu_count() or 1
    if "timeout" in kw:
        t = kw["timeout"]
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise ConfigError(f"timeout must be a positive number of seconds, got {t!r}")
        kw["timeout"] = float(t)
    return replace(base, **kw)


def load_toml(path: str | Path) -> tuple[dict, dict]:
    """Read a TOML job file: returns ``(run_options, job_options)``.

    Keys are the CLI options (``perturb``, ``delta``, ``backend``, ``jobs``, ...) and the
    :class:`RunConfig` fields; an optional ``[run]`` table may hold the latter.  Relative file
    names (``vnnlib``, ``json``, ``counterexample``, ``plot``, and ``point`` / ``box`` files) are
    taken relative to the TOML file's folder.

    Raises
    ------
    ConfigError
        Missing or unreadable file, TOML syntax error, unknown key, wrong value type.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {p} is a folder; give the TOML file")
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8-sig"), parse_float=Decimal)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    run, job = {}, {}
    items = list(data.items())
    if isinstance(data.get("run"), dict):
        items = [(k, v) for k, v in items if k != "run"] + list(data["run"].items())
    for k, v in items:
        key = k.replace("-", "_")
        if key in _RUN_KEYS:
            run[key] = float(v) if isinstance(v, Decimal) else v
        elif key in JOB_KEYS:
            types = JOB_KEYS[key] if isinstance(JOB_KEYS[key], tuple) else (JOB_KEYS[key],)
            if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
                raise ConfigError(f"{p}: key {k!r} has the wrong type ({type(v).__name__})")
            job[key] = v
        else:
            raise ConfigError(
                f"{p}: unknown key {k!r}; known: {', '.join(sorted(_RUN_KEYS | set(JOB_KEYS)))}"
            )
    # file names in the TOML file are relative to the TOML file's folder (not the current directory)
    for key in ("vnnlib", "json", "counterexample", "plot", "point", "box"):
        v = job.get(key)
        if isinstance(v, str) and (key not in ("point", "box") or Path(v).suffix.lower() in (".npy", ".txt", ".csv")):
            job[key] = str((p.parent / Path(v).expanduser()).resolve()) if not Path(v).expanduser().is_absolute() \
                else str(Path(v).expanduser())
    try:
        make_config(**run)  # validate now, with the file named in the error
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{p}: {e}") from None
    return run, job
