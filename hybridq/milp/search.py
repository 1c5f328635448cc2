"""HiGHS on the MILP of a cell: a float search for violations and a certified branch and bound.

Two uses of the float solver HiGHS (``highspy``), kept apart because only one of them may
prove anything:

:func:`find`
    HiGHS's MILP solver looks for a point whose objective beats the threshold (``objective_bound``
    prunes everything else; it stops at the first such point).  Its answer is a *candidate*: the
    caller maps it back to concrete weights and re-checks it exactly.  Its "infeasible" is only a
    hint that a proof may be cheap.
:func:`neighbourhood`
    A local search around a good point (the attack's best, mapped to the columns by
    :func:`hybridq.milp.model.assignment`): every ReLU phase is fixed to the point's except the
    ``k`` whose pre-activations are closest to zero, and HiGHS maximises over that small MILP;
    ``k`` grows and the search recentres on each better point (the "local branching" /
    RINS idea of Fischetti and Lodi, Math. Programming 98 (2003), and Danna, Rothberg and Le Pape,
    Math. Programming 102 (2005)).  Its points are candidates too, and its best point, violating
    or not, is what the caller hands back to the attacks as a seed.
:func:`prove`
    Our own best-first branch and bound over the binaries (ReLU phases).  At each node HiGHS
    solves the LP relaxation (warm-started dual simplex) and its duals are turned into a rigorous
    bound by :class:`hybridq.milp.certify.LpData` (Neumaier-Shcherbina); an infeasible node is
    pruned only by a Farkas ray that checks rigorously.  A node is pruned only when that certified
    bound shows it holds no violation, so ``"proved"`` is a proof.  Branching: the fractional
    binary whose ReLU relaxation is loosest at the LP solution (``r - max(v, 0)``).  Optionally
    (the milp stage turns both on) the LP carries valid ReLU cuts (:mod:`hybridq.milp.cuts`,
    Anderson et al. 2020) and, when a short plain search does not finish, the root is probed:
    a binary one of whose halves is pruned by a certified bound is fixed to the other for the
    rest of the search (LP probing, the "strong branching fixings" of MILP solvers; Achterberg,
    "Constraint Integer Programming", PhD thesis, TU Berlin 2007, ch. 10).  Both only shrink the
    region left to search by certified arguments, so a proof stays a proof.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from hybridq import interrupt
from hybridq.errors import BackendUnavailableError
from hybridq.milp.certify import LpData
from hybridq.milp.model import MilpModel, ModelUnsupported, Objective

__all__ = ["find", "neighbourhood", "prove", "Proof", "root_bound", "RootBounds", "ProofResult", "highs_available", "warm_start"]

logger = logging.getLogger(__name__)

_banner_done = False


def _highspy():
    try:
        import highspy  # noqa: PLC0415 - lazy: numba-free start-up
    except ImportError as err:  # pragma: no cover - a hard dependency
        raise BackendUnavailableError(f"MILP backend unavailable: `import highspy` failed ({err}); "
                                      "install it with `pip install highspy`") from None
    return highspy


def highs_available() -> bool:
    try:
        _highspy()
        return True
    except BackendUnavailableError:
        return False


def _on_interrupt_check(event) -> None:
    """HiGHS's interrupt callback (MIP, simplex and IPM loops): stop the run when a stop was
    requested (:mod:`hybridq.interrupt`).  HiGHS calls it in the thread of ``run()``, so a signal
    that arrived during the run has its Python handler run when this is entered.  The flag is
    written either way: HiGHS keeps it from one ``run()`` to the next."""
    event.interrupt(interrupt.requested())


def _new_highs():
    """A silent ``highspy.Highs``; made while the signal handlers request a stop
    (:func:`hybridq.interrupt.handled`), its runs stop at a stop request
    (:func:`_on_interrupt_check`; the run's status is then ``kInterrupt``, which no caller takes
    for an answer).  HiGHS prints a banner on stdout when the first instance of a process is made;
    it would corrupt ``--json`` output, so that one construction runs with file descriptor 1
    pointed at ``/dev/null``."""
    global _banner_done
    hs = _highspy()
    if _banner_done:
        h = hs.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 1)
            h = hs.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(null)
        _banner_done = True
    h.setOptionValue("output_flag", False)
    h.setOptionValue("random_seed", 0)
    if interrupt.handled():
        for hook in (h.cbMipInterrupt, h.cbSimplexInterrupt, h.cbIpmInterrupt):
            hook.subscribe(_on_interrupt_check)
    return h


def _time_limit(h, seconds: float) -> None:
    """Let the next ``h.run()`` take at most ``seconds`` (at least 1 ms).

    HiGHS compares its ``time_limit`` option with the *total* run time of the ``Highs`` object,
    summed over all its ``run()`` calls (``getRunTime()``), not with the time of the current call:
    an object that solves one LP after another (:func:`prove`'s nodes) must move the limit on
    with its clock, or every LP solved after the object's run time has passed the time left stops
    at once with "Time limit reached" (highspy 1.16: about the second half of a proof's window,
    whose nodes were then split without a bound).

    Raises
    ------
    hybridq.interrupt.Interrupted
        A stop was requested: the run is not started (every ``run()`` here is preceded by this
        call, so a search or proof ends at its next ``run()``; the callers turn it into ``Unknown``).
    """
    if interrupt.requested():
        raise interrupt.Interrupted("HiGHS: stop requested")
    h.setOptionValue("time_limit", float(h.getRunTime()) + max(1e-3, float(seconds)))


def warm_start(h, values) -> None:
    """Hand HiGHS a starting point for the next ``h.run()``: ``values`` (one per column, float64)
    are tried as an incumbent (HiGHS checks and repairs it; an infeasible one is dropped)."""
    sol = _highspy().HighsSolution()
    sol.col_value = np.asarray(values, dtype=np.float64)
    sol.value_valid = True
    h.setSolution(sol)


def _pass(h, model: MilpModel, cost: np.ndarray, integer: bool) -> None:
    """Load the program into ``h`` with objective ``cost`` (binaries integral when ``integer``).

    Raises
    ------
    ModelUnsupported
        HiGHS refuses the program: a coefficient beyond its ``large_matrix_value`` (1e15), e.g.
        the big-M of a neuron whose bounds exceed it (inputs of magnitude 1e11 with weights of
        100).  Loaded anyway, the empty program's solution has no values.
    """
    hs = _highspy()
    lp = hs.HighsLp()
    lp.num_col_ = model.n
    lp.num_row_ = model.m
    inf = hs.kHighsInf
    lp.col_cost_ = np.asarray(cost, dtype=np.float64)
    lp.col_lower_ = model.lb.copy()
    lp.col_upper_ = model.ub.copy()
    lp.row_lower_ = np.where(np.isfinite(model.row_lo), model.row_lo, -inf)
    lp.row_upper_ = np.where(np.isfinite(model.row_hi), model.row_hi, inf)
    A = model.A
    lp.a_matrix_.format_ = hs.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = model.n
    lp.a_matrix_.num_row_ = model.m
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data.astype(np.float64)
    if integer and model.binaries.size:
        integ = [hs.HighsVarType.kContinuous] * model.n
        for j in model.binaries:
            integ[int(j)] = hs.HighsVarType.kInteger
        lp.integrality_ = integ
    if h.passModel(lp) == hs.HighsStatus.kError:
        big = float(np.max(np.abs(model.A.data))) if model.A.nnz else 0.0
        raise ModelUnsupported(f"HiGHS refused the program (largest coefficient {big:.3g}; its limit is "
                               f"{h.getOptionValue('large_matrix_value')[-1]:.3g})")


def find(model: MilpModel, obj: Objective, timeout: float, margin: float = 0.0,
         start: np.ndarray | None = None) -> np.ndarray | None:
    """A solution of the MILP whose objective beats ``obj.threshold + margin`` in float arithmetic,
    or None (none found within ``timeout`` seconds, or HiGHS reports none exists -- a hint only).

    Parameters
    ----------
    model : MilpModel
    obj : Objective
    timeout : float
        Seconds.
    margin : float
        Extra violation asked for (retries when the exact re-check of a first candidate failed).
    start : (n,) float64, optional
        A feasible assignment (e.g. from the attack's best point) to start HiGHS's search from.

    Returns
    -------
    (n,) float64 or None
        HiGHS's solution (a candidate, to be re-checked exactly by the caller).
    """
    if timeout <= 0:
        return None
    hs = _highspy()
    h = _new_highs()
    c = obj.vector(model.n)
    _pass(h, model, -c, integer=True)
    # minimize -c.v; only solutions with -c.v < -(threshold - const + margin) violate
    target = float(obj.threshold - obj.const) + margin
    h.setOptionValue("objective_bound", -target)
    h.setOptionValue("mip_max_improving_sols", 1)
    _time_limit(h, timeout)
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    if start is not None:
        warm_start(h, start)
    h.run()
    st = h.getModelStatus()
    info = h.getInfo()
    if info.primal_solution_status < 1 and st != hs.HighsModelStatus.kOptimal:
        return None
    v = np.array(h.getSolution().col_value, dtype=np.float64)
    if v.shape != (model.n,) or not np.all(np.isfinite(v)):
        return None
    if float(c @ v) + float(obj.const) < float(obj.threshold) - 1e-9 * (1 + abs(float(obj.threshold))):
        return None
    return v


#: Phases left free by the successive rounds of :func:`neighbourhood`.
NEIGHBOURHOODS = (10, 20, 40)


def neighbourhood(model: MilpModel, obj: Objective, start: np.ndarray, deadline: float, on_candidate=None,
                  sizes: tuple = NEIGHBOURHOODS) -> tuple[float, np.ndarray]:
    """Maximise ``obj`` over neighbourhoods of ``start`` in phase space (see the module docstring).

    Parameters
    ----------
    model : MilpModel
    obj : Objective
    start : (n,) float64
        A feasible assignment (:func:`hybridq.milp.model.assignment` of a point of the cell).
    deadline : float
        ``time.perf_counter()`` value to stop at; the rounds share the time left equally.
    on_candidate : callable, optional
        ``on_candidate(v) -> bool``, called with each solution whose float objective beats the
        threshold; True (the caller confirmed it exactly) ends the search.
    sizes : tuple of int
        Phases left free per round.

    Returns
    -------
    (value, v) : (float, (n,) float64)
        The best float objective (with ``obj.const``) and its solution; ``value`` is ``inf``
        when ``on_candidate`` accepted ``v``.  Nothing here is a proof.
    """
    c = obj.vector(model.n)
    const = float(obj.const)
    thr = float(obj.threshold)
    best = np.clip(np.asarray(start, dtype=np.float64), model.lb, model.ub)
    best_val = float(c @ best) + const
    relus = model.relus
    if not relus:
        return best_val, best
    sizes = sorted({min(int(k), len(relus)) for k in sizes})
    for i, k in enumerate(sizes):
        left = deadline - time.perf_counter()
        if left <= 0.05:
            break
        # free the k phases whose pre-activations lie closest to the kink (relative to their range)
        scale = np.array([max(model.ub[v] - model.lb[v], 1e-300) for v, _, _ in relus])
        near = np.array([abs(best[v]) for v, _, _ in relus]) / scale
        free = set(np.argsort(near, kind="stable")[:k].tolist())
        lb, ub = model.lb.copy(), model.ub.copy()
        for t, (_, _, d) in enumerate(relus):
            if t not in free:
                lb[d] = ub[d] = 1.0 if best[d] > 0.5 else 0.0
        h = _new_highs()
        _pass(h, model, -c, integer=True)
        h.changeColsBounds(model.n, np.arange(model.n, dtype=np.int32), lb, ub)
        _time_limit(h, left / (len(sizes) - i))
        h.setOptionValue("mip_feasibility_tolerance", 1e-9)
        h.setOptionValue("primal_feasibility_tolerance", 1e-9)
        warm_start(h, best)
        h.run()
        if h.getInfo().primal_solution_status < 1:
            continue
        v = np.array(h.getSolution().col_value, dtype=np.float64)
        if v.shape != (model.n,) or not np.all(np.isfinite(v)):
            continue
        val = float(c @ v) + const
        if on_candidate is not None and (val > thr or (val >= thr and not obj.strict)) and on_candidate(v):
            return math.inf, v
        if val > best_val:
            best, best_val = v, val
    return best_val, best


def _certified_bound(h, data: LpData, cost: np.ndarray, lb: np.ndarray, ub: np.ndarray, st) -> float | None:
    """The certified upper bound of ``-cost . v`` over the points of the LP that ``h`` just solved
    (``minimize cost . v`` over ``data``'s rows and the column box ``[lb, ub]``, each ``(n,)``
    float64), from HiGHS's answer ``st`` (a ``HighsModelStatus``): ``-inf`` where a Farkas ray
    proves the LP empty, ``-lower`` with ``lower`` the Neumaier-Shcherbina bound of any dual
    vector (:meth:`hybridq.milp.certify.LpData.lower_bound`) where HiGHS stopped optimal or at the
    objective bound, None where the answer certifies nothing (an infeasible LP without a ray that
    checks, any other status).  The one reading of HiGHS's answers for :class:`RootBounds` and
    :class:`Proof`."""
    hs = _highspy()
    if st == hs.HighsModelStatus.kInfeasible:
        got = h.getDualRay()  # (status, has_ray, ray) in highspy 1.16; (has_ray, ray) before
        if got[-2] and data.infeasible(lb, ub, np.asarray(got[-1], dtype=np.float64)):
            return -math.inf
        return None
    if st not in (hs.HighsModelStatus.kOptimal, hs.HighsModelStatus.kObjectiveBound):
        return None
    y = np.asarray(h.getSolution().row_dual, dtype=np.float64)
    lower = data.lower_bound(cost, lb, ub, y)
    if not math.isfinite(lower):  # the duals' sign convention: try the other one
        lower = max(data.lower_bound(cost, lb, ub, -y), lower)
    return -lower


class RootBounds:
    """Certified upper bounds of objectives (without ``obj.const``) from the LP relaxation at the
    root, one HiGHS instance for all of them (the program is loaded once; each objective only
    changes the costs and starts from the last basis): cheap, used to order and drop objectives.

    Parameters
    ----------
    model : MilpModel
    data : LpData, optional
        The prepared rows.

    Raises
    ------
    ModelUnsupported
        HiGHS refuses the program (see :func:`_pass`), at the first :meth:`bound`.
    """

    def __init__(self, model: MilpModel, data: LpData | None = None) -> None:
        self.model = model
        self.data = data or LpData(model.A, model.row_lo, model.row_hi)
        self._h = None

    def bound(self, obj: Objective, timeout: float = math.inf) -> float:
        """The certified bound of ``obj`` (``inf`` when HiGHS gives no usable duals within
        ``timeout`` seconds, ``-inf`` when a Farkas ray proves the program empty).

        Raises
        ------
        hybridq.interrupt.Interrupted
            A stop was requested (the LP is not started; :func:`_time_limit`).
        ModelUnsupported
            HiGHS refuses the program (first call).
        """
        model = self.model
        c = -obj.vector(model.n)
        if self._h is None:
            self._h = _new_highs()
            _pass(self._h, model, c, integer=False)
        else:
            self._h.changeColsCost(model.n, np.arange(model.n, dtype=np.int32), c)
        h = self._h
        _time_limit(h, timeout)  # (also with no timeout: the stop request, and the last call's limit lifted)
        h.run()
        b = _certified_bound(h, self.data, c, model.lb, model.ub, h.getModelStatus())
        return math.inf if b is None else b


def root_bound(model: MilpModel, obj: Objective, data: LpData | None = None, timeout: float = math.inf) -> float:
    """:meth:`RootBounds.bound` of one objective."""
    return RootBounds(model, data).bound(obj, timeout)


@dataclass
class ProofResult:
    """What :func:`prove` found.

    Attributes
    ----------
    status : {"proved", "candidate", "open"}
        ``proved``: no point of the program violates (rigorous); ``candidate``: the callback
        accepted a violation (the caller re-checked it exactly); ``open``: time ran out or a node
        could not be certified.
    nodes : int
        LP relaxations solved.
    bound : float
        For ``proved``: the largest certified upper bound of the objective over the pruned nodes
        (without ``obj.const``).
    reason : str
    frontier : float
        For ``open`` after the time or node limit: the largest float LP bound of the nodes left
        (a measurement of how far the search got; not certified).
    """

    status: str
    nodes: int = 0
    bound: float = -math.inf
    reason: str = ""
    frontier: float = math.inf


#: With probing, the short plain search before it runs only where the program has at most this
#: many binaries (above, only the root node and its cut rounds).
PLAIN_SEARCH_MAX_BINARIES = 64


def prove(model: MilpModel, obj: Objective, deadline: float, on_candidate=None,
          data: LpData | None = None, max_nodes: int = 1_000_000, cuts=None, cut_rounds: int = 0,
          cut_depth: int = 0, probe: bool = False, probe_sweeps: int = 8,
          probe_share: float = 0.75) -> ProofResult:
    """Certified best-first branch and bound over the binaries (see the module docstring).

    Parameters
    ----------
    model : MilpModel
    obj : Objective
    deadline : float
        ``time.perf_counter()`` value to stop at.
    on_candidate : callable, optional
        ``on_candidate(v) -> bool``: called with an LP solution whose binaries are integral and
        whose float objective violates; True (the caller confirmed it exactly) ends the search.
    data : LpData, optional
        The prepared rows (shared between objectives).
    max_nodes : int
    cuts : hybridq.milp.cuts.ReluCuts, optional
        Separates valid ReLU cuts (valid for the whole program): at nodes of depth at most
        ``cut_depth``, up to ``cut_rounds`` rounds of separation and re-solving; the cut rows stay
        for the rest of the search and enter every certified bound.
    cut_rounds, cut_depth : int
    probe : bool
        Probe the root first: each free binary's two children are solved; one whose certified
        bound shows no violation fixes the binary to the other value for the rest of the search
        (LP-based probing, the "strong branching fixings" of MILP solvers); sweeps repeat, with
        ``cut_rounds`` cut rounds on the restricted root before each, while they fix binaries.
    probe_sweeps : int
    probe_share : float
        Most share of the time left that the probing may take.

    Returns
    -------
    ProofResult

    See :class:`Proof` for a search that can be paused and resumed.
    """
    return Proof(model, obj, deadline, on_candidate, data, max_nodes, cuts, cut_rounds, cut_depth, probe,
                 probe_sweeps, probe_share).run(deadline)


class Proof:
    """:func:`prove` as a search that pauses at the end of a time slice and resumes where it
    stopped (its nodes, cuts, probing fixings and LP basis kept), so several objectives of one
    query can share a time budget by what each turns out to need (:mod:`hybridq.smt.milp`).

    Parameters
    ----------
    Those of :func:`prove`; ``deadline`` (``time.perf_counter()`` seconds) is the hard end: no
    slice goes past it, and no LP is given time beyond it.

    Attributes
    ----------
    result : ProofResult or None
        The final result once the search has ended (proved, a candidate, or open for good:
        a node that could not be certified, the node limit, or the deadline).
    """

    def __init__(self, model: MilpModel, obj: Objective, deadline: float, on_candidate=None,
                 data: LpData | None = None, max_nodes: int = 1_000_000, cuts=None, cut_rounds: int = 0,
                 cut_depth: int = 0, probe: bool = False, probe_sweeps: int = 8,
                 probe_share: float = 0.75) -> None:
        self.deadline = float(deadline)
        self.slice_end = float(deadline)
        self.result: ProofResult | None = None
        self.last: ProofResult = ProofResult("open", 0, -math.inf, "not started")
        self._steps = _proof_steps(model, obj, self, on_candidate, data, max_nodes, cuts, cut_rounds,
                                   cut_depth, probe, probe_sweeps, probe_share)

    def run(self, until: float) -> ProofResult:
        """Search until ``time.perf_counter()`` reaches ``min(until, deadline)`` (checked between
        LPs) or the search ends.

        Returns
        -------
        ProofResult
            The final result (also in :attr:`result`), or, when paused, an ``open`` result with
            reason ``"time limit"`` (:attr:`result` stays None: ``run`` may be called again).
        """
        if self.result is not None:
            return self.result
        self.slice_end = min(float(until), self.deadline)
        try:
            self.last = next(self._steps)
        except StopIteration as stop:  # value None: an exception ended the search earlier
            self.result = self.last = stop.value or ProofResult("open", self.last.nodes, -math.inf,
                                                                "ended by an error")
        return self.last


def _proof_steps(model: MilpModel, obj: Objective, clock: Proof, on_candidate, data, max_nodes, cuts,
                 cut_rounds, cut_depth, probe, probe_sweeps, probe_share):
    """The generator behind :class:`Proof`: yields an ``open`` snapshot whenever the time reaches
    ``clock.slice_end`` before ``clock.deadline``; returns the final :class:`ProofResult`."""
    deadline = clock.deadline
    hs = _highspy()
    data = base_data = data or LpData(model.A, model.row_lo, model.row_hi)
    c = -obj.vector(model.n)  # minimize -objective
    h = _new_highs()
    _pass(h, model, c, integer=False)
    h.setOptionValue("presolve", "off")  # keep the basis between nodes (warm start)
    thr = obj.threshold - obj.const
    relus = model.relus
    d_of = {d: (v, r) for v, r, d in relus}
    touched = np.array(sorted({j for t in relus for j in t}), dtype=np.int32)
    count, nodes, worst, lost = 1, 0, -math.inf, ""
    cut_rows: list = []  # the Cut rows added to the LP, in order (LP rows model.m, model.m + 1, ...)

    def set_data() -> None:
        nonlocal data
        import scipy.sparse as sp

        if not cut_rows:
            data = base_data
            return
        rows = sp.csr_matrix((np.concatenate([ct.vals for ct in cut_rows]),
                              (np.repeat(np.arange(len(cut_rows)), [ct.cols.size for ct in cut_rows]),
                               np.concatenate([ct.cols for ct in cut_rows]))), shape=(len(cut_rows), model.n))
        data = LpData(sp.vstack([model.A, rows]).tocsr(),
                      np.concatenate([model.row_lo, np.full(len(cut_rows), -np.inf)]),
                      np.concatenate([model.row_hi, np.array([ct.rhs for ct in cut_rows])]))

    def add_cuts(new) -> None:
        # a cut HiGHS refuses (a coefficient beyond its limit) is left out of the certificate's
        # rows too: the duals must match the rows one for one
        new = [cut for cut in new
               if h.addRow(-hs.kHighsInf, cut.rhs, cut.cols.size, cut.cols.astype(np.int32), cut.vals)
               != hs.HighsStatus.kError]
        cut_rows.extend(new)
        set_data()

    # minimising -objective: beyond -thr (with a margin for the certificate) nothing violates
    cut_at = -float(thr) + 1e-7 * (1.0 + abs(float(thr)))

    def solve(lb, ub, cutoff=False):
        """Solve the LP with these column bounds; ``cutoff``: the dual simplex may stop as soon as
        its objective shows no violation (status ``kObjectiveBound``, duals still usable)."""
        h.setOptionValue("objective_bound", cut_at if cutoff else math.inf)
        if touched.size:
            h.changeColsBounds(touched.size, touched, lb[touched], ub[touched])
        _time_limit(h, deadline - time.perf_counter())
        h.run()
        return h.getModelStatus()

    def node_bound(lb, ub, st) -> float | None:
        """The certified upper bound of the objective (without ``obj.const``) over the points of
        the LP just solved with column bounds ``[lb, ub]``: ``-inf`` where a Farkas ray proves it
        empty; None where HiGHS's answer certifies nothing (an infeasible LP without a ray that
        checks, another status)."""
        return _certified_bound(h, data, c, lb, ub, st)

    def holds(bound: float | None) -> bool:
        """Whether a certified bound shows that no point violates."""
        return bound is not None and obj.held_below(bound)

    def pruned(lb, ub, st) -> float | None:
        """The certified bound of the LP just solved if it shows no violation, else None."""
        if st == hs.HighsModelStatus.kOptimal and \
                -h.getInfo().objective_function_value > float(thr) + 1e-9 * (1.0 + abs(float(thr))):
            return None  # the float bound violates: no certificate can prune
        b = node_bound(lb, ub, st)
        return b if holds(b) else None

    def fix_phase(lb, ub, d, val):
        # binary d := val in the column bounds, in place: 0 makes the relu's output 0 and its
        # pre-activation <= 0, 1 its pre-activation >= 0
        v, r = d_of[d]
        lb[d] = ub[d] = float(val)
        if val == 0:
            ub[r] = 0.0
            ub[v] = min(ub[v], 0.0)
        else:
            lb[v] = max(lb[v], 0.0)

    def child(lb, ub, d, val):
        lb, ub = lb.copy(), ub.copy()
        fix_phase(lb, ub, d, val)
        return lb, ub

    def separate_rounds(lb, ub, rounds, within=None, cutoff=False):
        """Solve the LP at ``[lb, ub]`` with up to ``rounds`` rounds of cut separation, the cuts
        valid in the box ``within`` (default ``[lb, ub]``; cuts stay for the rest of the search,
        so below the root they are separated against the restricted root's box); ``cutoff``: the
        solve after the last round may stop at the threshold.  Returns (status, LPs solved)."""
        within = (lb, ub) if within is None else within
        lps = 0
        while True:
            st = solve(lb, ub, cutoff=cutoff and rounds <= 0)
            lps += 1
            if rounds <= 0 or st != hs.HighsModelStatus.kOptimal or time.perf_counter() >= clock.slice_end:
                return st, lps
            rounds -= 1
            new = cuts.separate(np.asarray(h.getSolution().col_value, dtype=np.float64), lb=within[0], ub=within[1])
            if not new:
                return st, lps
            add_cuts(new)

    def probe_root() -> ProofResult | None:
        """Cut rounds, then probing (each binary's two children; a child whose certified bound
        shows no violation fixes the binary to the other value for the rest of the search).  A
        generator like ``bab``: returns ``proved`` or None (the search goes on below the restricted
        root)."""
        nonlocal base_lb, base_ub, nodes, worst
        probe_end = time.perf_counter() + probe_share * max(0.0, clock.slice_end - time.perf_counter())
        for _sweep in range(probe_sweeps):
            st, lps = separate_rounds(base_lb, base_ub, cut_rounds if cuts is not None else 0)
            nodes += lps
            b = pruned(base_lb, base_ub, st)
            if b is not None:
                return ProofResult("proved", nodes, max(worst, b))
            if st not in (hs.HighsModelStatus.kOptimal, hs.HighsModelStatus.kObjectiveBound):
                return None  # no LP point to probe around (time limit, an uncertified infeasible root, ...)
            # in the order of the units (earlier layers first), the half away from the sweep's root
            # LP point first; a half that holds that point is not tried (it held when the root
            # was not pruned; later fixings may have moved the root, so this only skips work)
            vals = np.asarray(h.getSolution().col_value, dtype=np.float64)
            fixed = 0
            for _, _, d in relus:
                if time.perf_counter() >= clock.slice_end and clock.slice_end < deadline:
                    yield ProofResult("open", nodes, worst, "time limit")
                    # resumed: the probing's share of the new slice
                    probe_end = time.perf_counter() + probe_share * max(0.0, clock.slice_end - time.perf_counter())
                if time.perf_counter() >= probe_end or nodes >= max_nodes:
                    break
                if base_lb[d] == base_ub[d]:
                    continue
                away = 1 if vals[d] < 0.5 else 0
                halves = [away] if min(vals[d], 1.0 - vals[d]) <= 1e-9 else [away, 1 - away]
                got = []
                for val in halves:
                    lb2, ub2 = child(base_lb, base_ub, d, val)
                    if np.any(lb2 > ub2):  # an empty half
                        b = -math.inf
                    else:
                        st = solve(lb2, ub2, cutoff=True)
                        nodes += 1
                        b = pruned(lb2, ub2, st)
                    got.append((b, val))
                    if b is not None:
                        break
                if got[-1][0] is not None:  # that half holds no violation: the other one is left
                    worst = max(worst, got[-1][0])
                    base_lb, base_ub = child(base_lb, base_ub, d, 1 - got[-1][1])
                    fixed += 1
                if np.any(base_lb > base_ub):  # the half left is empty: neither holds a violation
                    return ProofResult("proved", nodes, worst)
            if not fixed or time.perf_counter() >= probe_end:
                break
        return None

    def bab(stop: float, until: float = math.inf) -> ProofResult | None:
        """Best-first branch and bound below the (restricted) root (a generator: yields an
        ``open`` snapshot at the end of each time slice, see :class:`Proof`); returns the final
        result, or None after ``stop`` LPs or at time ``until``."""
        nonlocal nodes, worst, lost, count
        heap: list = [(-math.inf, 0, ())]
        while heap:
            if time.perf_counter() >= clock.slice_end:
                if clock.slice_end >= deadline:
                    return ProofResult("open", nodes, worst, "time limit", -heap[0][0])
                yield ProofResult("open", nodes, worst, "time limit", -heap[0][0])
                continue
            if nodes >= max_nodes:
                return ProofResult("open", nodes, worst, "node limit", -heap[0][0])
            if nodes >= stop or time.perf_counter() >= until:
                return None
            _, _, fix = heapq.heappop(heap)
            lb, ub = base_lb.copy(), base_ub.copy()
            for d, val in fix:
                if base_lb[d] == base_ub[d] and base_lb[d] != val:  # pragma: no cover - not branched on
                    lb[d], ub[d] = 1.0, 0.0
                    continue
                fix_phase(lb, ub, d, val)
            if np.any(lb > ub):  # fixings contradict the bounds: the node is empty
                continue
            rounds = cut_rounds if cuts is not None and len(fix) <= cut_depth else 0
            st, lps = separate_rounds(lb, ub, rounds, within=(base_lb, base_ub), cutoff=True)
            nodes += lps
            bound = node_bound(lb, ub, st)  # certified: objective - const <= bound on this node
            if holds(bound):
                worst = max(worst, bound)
                continue
            if bound is not None:
                vals = np.asarray(h.getSolution().col_value, dtype=np.float64)
                fixed = {d for d, _ in fix}
                free = [(v, r, d) for v, r, d in relus if d not in fixed and base_lb[d] < base_ub[d]]
                frac = [(vals[r] - max(vals[v], 0.0), d) for v, r, d in free
                        if min(vals[d], 1.0 - vals[d]) > 1e-7]
                if not frac and float(-c @ vals) > float(thr) and on_candidate is not None and on_candidate(vals):
                    return ProofResult("candidate", nodes, worst)
                fr = max(frac)[1] if frac else None
                if fr is None and free:  # integral LP point that did not confirm: branch anyway
                    fr = max((vals[r] - max(vals[v], 0.0), d) for v, r, d in free)[1]
                if fr is None:  # every binary fixed and the bound still violates: cannot be decided here
                    lost = f"a leaf whose certified bound {bound:.6g} does not beat the threshold {float(thr):.6g}"
                    continue
                prio = bound if math.isfinite(bound) else math.inf
                for val in (0, 1):
                    heapq.heappush(heap, (-prio, count, fix + ((fr, val),)))
                    count += 1
                continue
            why = ("an infeasible node without a certifying Farkas ray" if st == hs.HighsModelStatus.kInfeasible
                   else f"HiGHS status {h.modelStatusToString(st)}")
            # an uncertified node: split it further if possible
            fixed = {d for d, _ in fix}
            free = [d for _, _, d in relus if d not in fixed and base_lb[d] < base_ub[d]]
            if not free:
                lost = why
                continue
            for val in (0, 1):
                heapq.heappush(heap, (math.inf, count, fix + ((free[0], val),)))
                count += 1
        if lost:
            return ProofResult("open", nodes, worst, lost)
        return ProofResult("proved", nodes, worst)

    base_lb, base_ub = model.lb.copy(), model.ub.copy()
    if probe and relus:
        # a short plain search first (most cells need no more; at most binaries + 16 LPs and a
        # tenth of the time; only the root's cut rounds where there are more than
        # PLAIN_SEARCH_MAX_BINARIES binaries: there it closed nothing and cost 3 s of 15 on
        # MNIST 256x4), then the probing, then the search again below the restricted root
        bab_end = time.perf_counter() + 0.1 * max(0.0, clock.slice_end - time.perf_counter())
        res = yield from bab(nodes + (len(relus) + 16 if len(relus) <= PLAIN_SEARCH_MAX_BINARIES else 1), bab_end)
        if res is not None:
            return res
        lost = ""
        res = yield from probe_root()
        if res is not None:
            return res
    return (yield from bab(math.inf))
