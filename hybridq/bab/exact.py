"""The exact stage of the per-cell engine (DESIGN.md §3): which engine a run's cells go to, with
which limits, and one call on a cell.

A run's exact stage is either the certified MILP stage (:mod:`hybridq.milp`, for relu / identity
networks under ``backend = milp``, or ``auto`` where the property is piecewise linear) with its own
``milp_*`` limits, or an SMT backend (:mod:`hybridq.smt`) with the ``smt_*`` limits.  Calls that
end without an answer are charged their time limit (deterministic, not the time they took) against
the run's budget (:func:`exact_budget`), which the scheduler shares among a round's chunks.

A milp run's cells too large for a proof still get a search-only call when the attack came close
to the threshold (:meth:`ExactStage.worth_polish`): HiGHS maximises over the ReLU phases near the
attack's best point (:func:`hybridq.milp.search.neighbourhood`); a violation is re-checked
exactly, and the best point, violating or not, goes back to the scheduler as a seed for later
attacks (``Outcome.seed``).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from hybridq import interrupt
from hybridq.attack import confirm
from hybridq.cell import Cell
from hybridq.config import RunConfig
from hybridq.properties import Deviation

__all__ = ["ExactStage", "uses_milp", "exact_budget", "ob_row", "float_margin", "POLISH_GAP", "ROOT_FIND_SHARE",
           "BOX_EXACT_GAP"]

#: A cell too large for the exact call still gets the milp stage's neighbourhood search around
#: the attack's best point when the attack came this close to the threshold: its margin's
#: shortfall is at most this share of the gap between the attack's margin and the cell's certified
#: margin bound.
POLISH_GAP = 0.1
#: In ``verify`` mode a box cell (not a point) with few unstable neurons gets the milp call only
#: when its attack came this close to the threshold: a deviation property's attack within this
#: share of ``delta``, another property's margin shortfall within this share of the gap to the
#: cell's certified margin bound.  Elsewhere the true maximum is far below the threshold and two
#: halves of bound passes (milliseconds) beat a milp call (0.3-0.7 s on ACAS Xu): NeuroDiff's
#: 5_5:1 took 59.5 s with 142 such calls, 15.6 s with none; 4_5:1 open at 120 s, 36.6 s.  Near the
#: threshold (bench/tight.py's boxes at 1.02x) splitting does not close the gap and the call pays.
BOX_EXACT_GAP = 0.5

#: Share of a root proof call (``RunConfig.milp_root_max_unstable``) that HiGHS's search for a
#: violation may take before the certified branch and bound (the milp stage's default is 0.4;
#: the attack has searched the root already).
ROOT_FIND_SHARE = 0.05


def uses_milp(config: RunConfig, network, prop) -> bool:
    """Whether the run's exact stage is the certified MILP stage (its own ``milp_*`` limits)."""
    if config.backend == "milp":
        return True
    if config.backend != "auto":
        return False
    from hybridq.milp.model import MILP_ACTIVATIONS

    score = isinstance(prop, Deviation) and prop.space == "score" and network.output != "identity"
    return all(l.activation in MILP_ACTIVATIONS for l in network.layers) and not (
        score and network.output == "softmax")


def exact_budget(config: RunConfig, network, prop) -> tuple[int, float]:
    """``(calls, seconds)`` that exact calls ending without an answer may use in a run."""
    if uses_milp(config, network, prop):
        return config.milp_max_unknown, config.milp_budget
    return config.smt_max_unknown, config.smt_budget


def ob_row(ob, i: int):
    """One cell's row of an ``OutputBounds`` (same type, first dimension 1)."""
    kw = {}
    for f in dataclasses.fields(ob):
        v = getattr(ob, f.name)
        if isinstance(v, np.ndarray) and v.ndim >= 1:
            kw[f.name] = v[i:i + 1]
        elif isinstance(v, list) and v and isinstance(v[0], np.ndarray):
            kw[f.name] = [a[i:i + 1] for a in v]
        else:
            kw[f.name] = v
    return dataclasses.replace(ob, **kw)


def float_margin(network, prop, x, params) -> float:
    """The property's float64 violation margin at ``(x, params)`` (>= 0 violates)."""
    x = np.asarray(x, dtype=np.float64)[None, :]
    return float(prop.margin(network, network.forward(x, params), network.forward(x))[0])


class ExactStage:
    """The exact stage of one problem (lives in the :class:`~hybridq.bab.engine.CellEngine`).

    Parameters
    ----------
    problem : hybridq.bab.engine.Problem
    max_prop : Deviation or None
        ``maximize`` mode: the deviation whose threshold the calls ask about.
    """

    def __init__(self, problem, max_prop=None):
        self.p = problem
        self.max_prop = max_prop
        self.milp = uses_milp(problem.config, problem.network, problem.prop)
        self._backend = None

    @property
    def backend(self):
        """The SMT backend of the run's configuration (created on first use)."""
        if self._backend is None:
            from hybridq.smt import get_backend

            cfg = self.p.config
            opts = {"delta": cfg.dreal_precision} if cfg.backend in ("dreal", "auto") else {}
            self._backend = get_backend(cfg.backend, **opts)
        return self._backend

    @property
    def enabled(self) -> bool:
        """Whether the run has an exact stage: any backend in ``verify`` mode; in ``maximize`` mode
        (quantify) the milp stage, which proves a cell's deviation below the threshold or returns a
        point above it."""
        return self.p.config.backend != "none" and (self.p.mode == "verify" or self.milp)

    def worth_polish(self, attack_margin: float, margin_ub: float, scale: float = float("inf")) -> bool:
        """Whether a cell too large for the exact call gets the neighbourhood search
        (:meth:`call` with ``prove_it=False``): a milp run whose attack came within
        :data:`POLISH_GAP` of the threshold (margins as :func:`hybridq.attack.attack`'s, ``>= 0``
        violates; ``margin_ub`` the cell's certified bound of it), measured against the gap to
        the bound and against ``scale`` (a deviation property's ``delta``: on a loose cell the
        gap to the bound is huge, and an attack at 0.1 % of ``delta`` is not close)."""
        if not (self.enabled and self.milp) or not np.isfinite(attack_margin) or not np.isfinite(margin_ub):
            return False
        return -attack_margin <= POLISH_GAP * min(margin_ub - attack_margin, scale)

    def root_proof_due(self, cell: Cell, unstable: int) -> bool:
        """Whether the cell gets the root proof call (``RunConfig.milp_root_max_unstable``): a
        ``verify`` run's milp stage, the root cell, a point input, more unstable neurons than the
        ordinary calls take but at most ``milp_root_max_unstable``."""
        cfg = self.p.config
        return (self.enabled and self.milp and self.p.mode == "verify" and cell.depth == 0
                and not np.any(np.asarray(cell.upper) > np.asarray(cell.lower))
                and cfg.milp_max_unstable < unstable <= cfg.milp_root_max_unstable)

    def box_call_due(self, cell: Cell, attack_margin: float | None, margin_ub: float, scale: float) -> bool:
        """Whether a cell within the unstable-neuron limit gets the exact call: always on a point
        cell, in ``maximize`` mode and for the SMT backends; a box cell of a milp run in ``verify``
        mode only when its attack came within :data:`BOX_EXACT_GAP` of the threshold (margins as
        in :meth:`worth_polish`; ``scale`` a deviation property's ``delta``, else infinite; no
        attack on the cell: not due, it is split)."""
        if not self.milp or self.p.mode != "verify" or not np.any(np.asarray(cell.upper) > np.asarray(cell.lower)):
            return True
        if attack_margin is None or not np.isfinite(attack_margin) or not np.isfinite(margin_ub):
            return False
        ref = scale if np.isfinite(scale) else margin_ub - attack_margin
        return -attack_margin <= BOX_EXACT_GAP * ref

    def limits(self, cell: Cell) -> tuple[float, int]:
        """``(first call's seconds, most unstable neurons)`` of the exact stage for this cell."""
        cfg = self.p.config
        if not self.milp:
            return cfg.smt_first_timeout, cfg.smt_max_unstable
        if np.any(np.asarray(cell.upper) > np.asarray(cell.lower)):
            return cfg.milp_box_first_timeout, cfg.milp_box_max_unstable
        return cfg.milp_first_timeout, cfg.milp_max_unstable

    def call(self, out, cell: Cell, row, deadline, seconds_left: float, last: bool = False,
             threshold: float = 0.0, start=None, prove_it: bool = True, find_share: float | None = None) -> bool:
        """One exact call on the cell; True when it decided it (unsat, or a re-checked
        counterexample), else the call is marked unknown and charged its time limit.

        Parameters
        ----------
        out : hybridq.bab.engine.Outcome
            The cell's outcome, updated in place (status, bound, candidate, times, charges).
        cell : Cell
        row : OutputBounds
            The bound pass's result for this cell alone (:func:`ob_row`).
        deadline : float or None
            The run's deadline (``time.time()`` scale).
        seconds_left : float
            What is left of the chunk's budget for calls without an answer.
        last : bool
            The cell cannot be split, so the call gets the run's remaining time (at most four
            times the per-call limit).
        threshold : float
            ``maximize`` mode: the query is "deviation above ``threshold``"; unsat closes the cell
            with the stage's certified bound, a violation becomes a candidate witness (the cell is
            still split).
        start : (x, params) or None
            The attack's best point of the cell: the milp stage searches around it first.
        prove_it : bool
            False: the milp stage's search only (root bounds and the neighbourhood of ``start``),
            for cells too large for a proof.  Its best point becomes ``out.seed``.
        find_share : float or None
            The milp stage: share of the call for HiGHS's search for a violation (None: the
            backend's own).
        """
        p, cfg = self.p, self.p.config
        net, pert = p.network, p.perturbation
        ts = time.perf_counter()
        top = cfg.milp_timeout if self.milp else cfg.smt_timeout
        first, _ = self.limits(cell)
        if last:
            tlim = 4.0 * top
        else:  # shallow cells get short budgets (a split is often cheaper); deeper ones more
            tlim = min(top, first * 2.0 ** cell.depth, seconds_left)
        charge = tlim
        if interrupt.requested():  # the run is stopping: no call (it would end at once, unanswered)
            return False
        if deadline is not None:
            left = deadline - time.time()
            if left <= 0.05:  # out of time: no call (building a large query alone can take seconds)
                return False
            tlim = min(tlim, left)
        prop = p.prop
        if p.mode == "maximize":
            prop = Deviation(max(float(threshold), 0.0), self.max_prop.space, self.max_prop.outputs)
        kw = {"start": start, "prove_it": prove_it} if self.milp else {}
        if self.milp and find_share is not None:
            kw["find_share"] = find_share
        if self.milp and not prove_it and p.mode == "maximize":
            kw["best"] = True  # the highest point of the neighbourhood: the witness
        ans = self.backend.check(net, pert, cell, prop, tlim, neuron_bounds=row, box=p.box, **kw)
        out.times["smt"] = out.times.get("smt", 0.0) + time.perf_counter() - ts  # a cell may get two calls
        out.smt_called = True
        kind = type(ans).__name__
        if kind == "Unknown" and "seed" in ans.stats:
            out.seed = ans.stats["seed"]
        if p.mode == "maximize":
            if kind == "Unsat":
                b = [v for v in ans.stats.get("bounds", []) if v == v]
                out.status, out.ub = "smt", min(out.ub, max(b) if b else prop.delta)
                return True
            if kind == "Sat":  # a point above the threshold: a candidate (re-evaluated exactly by the scheduler)
                value = float_margin(net, self.max_prop, ans.x, ans.params)
                if out.candidate is None or value > out.candidate[0]:
                    out.candidate = (value, ans.x, ans.params)
                return False
            out.smt_unknown = True
            out.smt_charge = charge
            return False
        if kind == "Unsat":
            out.status = "smt"
            if isinstance(p.prop, Deviation):  # proved: the cell's deviation is at most delta
                out.ub = min(out.ub, float(p.prop.delta))
            return True
        if kind == "Sat":
            mg = float_margin(net, p.prop, ans.x, ans.params)
            cx = confirm(net, pert, p.prop, ans.x, ans.params, mg, box=p.box)
            if cx is not None:
                out.status, out.counterexample = "counterexample", cx
                return True
        out.smt_unknown = True
        out.smt_charge = charge
        return False
