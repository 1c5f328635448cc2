"""The best-first branch-and-bound scheduler (DESIGN.md §3).

The scheduler keeps a :class:`CellQueue` of :class:`hybridq.cell.Cell` records ordered by the
certified bound on the violation margin of their parent (largest first).  Each round takes up to
``batch_size`` cells, cuts them into 8 chunks (whatever ``jobs`` is) and hands the chunks to an
executor (:mod:`hybridq.bab.executors`: in-process for ``jobs = 1``, small rounds and the first
``POOL_AFTER`` seconds, else ``spawn`` worker processes started in the background) which runs :meth:`CellEngine.process` on each; the outcomes are merged in
chunk order, so a run gives the same result whatever ``jobs`` is.  The budget for SMT calls that
end without an answer (``smt_max_unknown`` calls, ``smt_budget`` seconds, each such call charged
its time limit) is shared among a round's chunks, so it is spent the same way whatever ``jobs`` is.

In ``maximize`` mode (used by :func:`hybridq.quantify`) the property is a deviation whose
threshold rises with the deviation witnessed so far; cells whose certified deviation bound is below
the threshold are pruned and the maximum of their bounds is the proved value.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hybridq import interrupt
from hybridq.bab.engine import CellEngine, Problem
from hybridq.bab.exact import exact_budget
from hybridq.bab.executors import DaskExecutor, ExecutorLost, InProcessExecutor, WorkerPool, cluster_threads
from hybridq.bab.queue import CellQueue
from hybridq.bab.splitting import dim_weight
from hybridq.cell import Cell
from hybridq.config import RunConfig
from hybridq.properties import Deviation
from hybridq.result import Counterexample, LeafCell, Stats

__all__ = ["BabOutcome", "RoundMerger", "run_bab", "attack_allowance"]

logger = logging.getLogger(__name__)

#: Chunks per round (the unit of work of a worker process).
CHUNKS = 8
#: Seconds of in-process work after which a run with ``jobs > 1`` starts its worker processes (in the
#: background; starting them costs 2-9 s on a loaded 2-core machine, more than most runs take).
POOL_AFTER = 3.0
#: ``verify``: cells examined before the strong attack of the whole box (:meth:`CellEngine.root_attack`).
STRONG_ATTACK_CELLS = 32
#: The milp stage's best points kept as extra attack starts (:meth:`CellEngine.process`'s ``seeds``).
SEEDS = 4
#: No worker pool is started when less than this many seconds are left before the deadline.
POOL_MIN_SECONDS = 10.0
#: ``verify``: attacks allowed before the ``attack_share`` limit applies (:func:`attack_allowance`).
ATTACK_FREE = 64


@dataclass
class BabOutcome:
    """Raw outcome of :func:`run_bab` (``verify`` and ``quantify`` build their results on it)."""

    verdict: str
    counterexample: Counterexample | None
    bound: float
    stats: Stats
    leaves: list | None
    message: str
    witnessed: float = 0.0
    witness: Counterexample | None = None
    proved: float = float("inf")
    deviation_bound: float = float("nan")


class RoundMerger:
    """What a run accumulates from its rounds' outcomes (merged in chunk order, so the same
    whatever the executor).

    Parameters
    ----------
    stats : Stats
        The run's counters, updated in place.
    queue : CellQueue
        Children of split cells are pushed here; the weights of processed cells are released.
    n_in : int
        Input dimensions whose split gains are summed (``input_split = "smear"``), 0 for none.
    record : bool
        Keep a :class:`LeafCell` for every closed cell (``leaves``).
    """

    def __init__(self, stats: Stats, queue: CellQueue, n_in: int, record: bool):
        self.stats, self.queue = stats, queue
        # per input dimension: sum and count of the relative bound drops its splits gave (split choice)
        self.gain_sum = np.zeros(n_in) if n_in else None
        self.gain_n = np.zeros(n_in) if n_in else None
        # leaf bounds (``o.ub``): the deviation itself for deviation properties, else the violation margin
        self.leaves: list | None = [] if record else None
        self.open_cells: list = []  # (cell, bound) of cells left open
        self.max_closed = -np.inf  # largest bound of a closed (proved / pruned / refuted) cell
        self.smt_charged = 0.0  # seconds charged to the SMT budget by calls without an answer
        self.cex: Counterexample | None = None  # the first counterexample, in merge order
        self.seeds: tuple = ()  # the milp stage's best points (value, x, params), best first: attack starts
        self.attacks = 0  # cells attacked so far

    def merge(self, results: list, batch: list):
        """Merge the outcome lists ``results`` (a prefix of the round's chunks, in order) of the
        round's ``batch`` of ``(id, cell)``; returns the best float candidate ``(value, x,
        params)`` of the round, or None."""
        stats, queue, leaves = self.stats, self.queue, self.leaves
        by_id = {cid: cell for cid, cell in batch}
        best_cand = None
        for outs in results:
            for o in outs:
                cell = by_id[o.cell_id]
                if o.status in ("bounds", "smt", "counterexample"):
                    stats.decided_fraction += queue.weight[o.cell_id]
                stats.cells += 1
                self.attacks += o.attacked
                stats.max_depth = max(stats.max_depth, cell.depth)
                for k, v in o.times.items():
                    stats.time[k] = stats.time.get(k, 0.0) + v
                stats.smt_calls += o.smt_called
                stats.smt_unknown += o.smt_unknown
                self.smt_charged += o.smt_charge
                if self.gain_n is not None and cell.split_dim >= 0 and o.gain == o.gain:
                    self.gain_sum[cell.split_dim] += o.gain
                    self.gain_n[cell.split_dim] += 1
                if o.candidate is not None and (best_cand is None or o.candidate[0] > best_cand[0]):
                    best_cand = o.candidate
                if o.seed is not None:
                    self.seeds = tuple(sorted(self.seeds + (o.seed,), key=lambda t: -t[0])[:SEEDS])
                if o.status in ("bounds", "smt"):
                    stats.proved_bounds += o.status == "bounds"
                    stats.proved_smt += o.status == "smt"
                    self.max_closed = max(self.max_closed, o.ub)
                    if leaves is not None:
                        leaves.append(LeafCell(cell.lower, cell.upper, o.status, o.ub))
                elif o.status == "counterexample":
                    stats.refuted += 1
                    self.max_closed = max(self.max_closed, o.ub)
                    if self.cex is None:
                        self.cex = o.counterexample
                    if leaves is not None:
                        leaves.append(LeafCell(cell.lower, cell.upper, "counterexample", o.ub))
                elif o.status == "split":
                    stats.splits_input += o.split == "input"
                    stats.splits_phase += o.split == "phase"
                    for ch in o.children:
                        queue.push(ch, min(o.ub, ch.priority) if ch.priority else o.ub,
                                   queue.weight[o.cell_id] / len(o.children))
                else:
                    self.open_cells.append((cell, o.ub))
        queue.release(by_id)
        return best_cand


def run_bab(network, perturbation, box, prop, config: RunConfig, mode: str = "verify",
            rtol: float = 0.05, atol: float = 1e-9, progress=None, workers: WorkerPool | None = None,
            executor=None) -> BabOutcome:
    """Run the branch and bound (see the module docstring).

    Parameters
    ----------
    network, perturbation, box, prop
        Validated problem (``box`` an :class:`InputBox`).
    config : RunConfig
    mode : {"verify", "maximize"}
    rtol, atol : float
        ``maximize``: stop when every open cell's deviation bound is at most
        ``max(witnessed * (1 + rtol), atol)``.
    progress : callable(Stats, int pending) or None
        Called after every round.
    workers : WorkerPool or None
        Worker processes kept by the caller for many runs (a batch); started here when needed and
        left running.  ``None``: the run starts its own (after ``POOL_AFTER`` seconds) and stops them.
    executor : distributed.Client or None
        Run the rounds' chunks on this Dask cluster (:class:`DaskExecutor`; ``workers`` unused);
        a cluster lost mid-run ends the run as interrupted, with the partial result.

    Returns
    -------
    BabOutcome
    """
    cfg = config
    # (before the first import of the bound pass: 0.85 s in a process given a quarter of a core, left
    # out of the deadline, so calls ran that long past it)
    deadline = None if cfg.timeout is None else time.time() + cfg.timeout
    from hybridq.bounds import load_kernels

    # start-up (kernels from numba's cache): counted against the timeout, not in the run's timings
    load_kernels(network, cfg.bound_method)
    t_start = time.perf_counter()
    n_neurons = sum(l.n_out for l in network.layers)
    problem = Problem(network, perturbation, prop, cfg, mode, box.lower, box.upper, box)
    engine = CellEngine(problem)
    inproc = InProcessExecutor(engine)
    record = cfg.record_leaves if cfg.record_leaves is not None else network.n_in <= 2
    with np.errstate(over="ignore"):  # a huge box's volume is inf: no warning (see log10_total_volume)
        # jobs: the chunks that run at once (a cluster's worker threads)
        stats = Stats(jobs=cfg.jobs if executor is None else max(1, cluster_threads(executor)), total_volume=box.volume)
    queue = CellQueue(cfg.max_queue)
    queue.push(Cell.root(box.lower, box.upper, n_neurons), np.inf, 1.0)
    tally = RoundMerger(stats, queue, network.n_in if cfg.input_split == "smear" else 0, record)
    cex, witness, witnessed = None, None, 0.0
    strong_done = False  # verify: the strong attack of the whole box ran
    max_unknown, budget_s = exact_budget(cfg, network, prop)
    pool = None
    own_workers = None  # workers started by this run (stopped at its end)
    lost = ""  # why the executor's workers were lost
    message = ""
    # Ctrl-C: the first one asks the run to stop after the chunk in flight (a compiled kernel is
    # never cut short); a second one interrupts at once.  SIGTERM (what batch harnesses send) is
    # handled the same way where its handler raises KeyboardInterrupt too (the CLI installs
    # ``signal.default_int_handler`` for it; see :func:`hybridq.cli.main`).  An exact-stage call in
    # flight (HiGHS, z3, dReal) is cut short at once (:mod:`hybridq.interrupt`), without an answer
    stop: list = []
    previous: dict = {}
    in_main = threading.current_thread() is threading.main_thread()  # (the stop request is the main thread's)
    if in_main:
        interrupt.clear()

        def on_stop(signum, frame):
            stop.append(signum)
            interrupt.request()
            for s in previous:
                signal.signal(s, signal.default_int_handler)

        for s in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(s) is signal.default_int_handler:
                previous[s] = signal.signal(s, on_stop)
        # (HiGHS's interrupt callbacks only where no handler of these signals raises)
        interrupt.set_handled(bool(previous) and all(
            signal.getsignal(s) in (on_stop, signal.SIG_IGN, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)))

    def should_stop() -> bool:
        return bool(stop) or (deadline is not None and time.time() > deadline)

    try:
        while queue:
            if stop:
                raise KeyboardInterrupt
            if deadline is not None and time.time() > deadline:
                stats.timed_out = True
                message = f"timeout after {cfg.timeout:g} s"
                break
            batch = []
            while queue and len(batch) < cfg.batch_size:
                batch.append(queue.pop())
            threshold = max(witnessed * (1.0 + rtol), atol)
            # the same chunks whatever ``jobs`` is, so per-chunk budgets keep results independent of it
            size = cfg.chunk_size or -(-len(batch) // CHUNKS)
            chunks = [batch[i:i + size] for i in range(0, len(batch), size)]
            # the SMT budget left (calls without an answer, their seconds) is shared among the chunks
            smt_allow = (-(-max(0, max_unknown - stats.smt_unknown) // len(chunks)),
                         max(0.0, budget_s - tally.smt_charged) / len(chunks))
            dw = dim_weight(tally.gain_sum, tally.gain_n) if tally.gain_n is not None else None
            allow = attack_allowance(stats.cells, tally.attacks, cfg.attack_share if mode == "verify" else 1.0,
                                     len(chunks))
            args = [(c, threshold, witnessed, deadline, smt_allow, dw, tally.seeds, a) for c, a in zip(chunks, allow)]
            runner = inproc
            # small rounds stay in-process; workers start in the background once the run has lasted
            # POOL_AFTER s (or at once when a batch's workers are already up) and take the big rounds
            # when they are ready; the result is the same either way
            try:
                if executor is not None and len(chunks) > 1 and pool is None:
                    pool = DaskExecutor(problem, executor)  # a cluster's workers are up already
                    stats.jobs = max(1, pool.workers)
                # (own workers only when the deadline is far enough to repay starting them)
                elif cfg.jobs > 1 and len(chunks) > 1 and pool is None and (
                        (workers is not None and workers.started and len(batch) >= 4 * cfg.jobs)
                        or (time.perf_counter() - t_start > POOL_AFTER
                            and (deadline is None or deadline - time.time() > POOL_MIN_SECONDS))):
                    if workers is None:
                        workers = own_workers = WorkerPool(cfg.jobs)
                    workers.start()
                    pool = workers.bind(problem)
                runner = pool if pool is not None and len(chunks) > 1 and pool.ready() else inproc
                results = runner.run(args, should_stop)
            except ExecutorLost as e:  # the finished chunks are merged, the rest go back to the queue
                results, lost = e.results, str(e)
            # out of time mid-round: the unprocessed chunks go back to the queue as they were
            for cid, cell in (item for ch in chunks[len(results):] for item in ch):
                queue.requeue(cid, cell)
            stats.rounds += 1
            best_cand = tally.merge(results, batch)
            cex = tally.cex
            # (an exact evaluation is not cut short: none is started that cannot end before the deadline)
            if best_cand is not None and best_cand[0] > witnessed and (
                    deadline is None or time.time() + engine.confirm_estimate() <= deadline):
                cx = exact_witness(network, perturbation, engine.max_prop, best_cand, box)
                if cx is not None and cx.value > witnessed:
                    witnessed, witness = cx.value, cx
            late = runner is inproc and inproc.out_of_time  # a chunk would have ended past the deadline
            strong_est = engine.strong_attack_estimate() or 0.0
            if mode == "verify" and cex is None and queue and not strong_done and stats.cells >= STRONG_ATTACK_CELLS \
                    and not should_stop() and not late and (deadline is None or time.time() + strong_est <= deadline):
                strong_done = True
                ta = time.perf_counter()
                res = engine.root_attack(tally.seeds, deadline)
                stats.time["attack"] = stats.time.get("attack", 0.0) + time.perf_counter() - ta
                if res.counterexample is not None:
                    cex = tally.cex = res.counterexample
                    stats.refuted += 1
            if progress is not None:
                progress(stats, len(queue))
            if cex is not None and mode == "verify":
                break
            if lost:
                stats.interrupted = True
                message = f"interrupted: {lost}"
                break
            if late:  # the next chunk cannot end before the deadline: stop now rather than overrun it
                stats.timed_out = True
                message = f"timeout after {cfg.timeout:g} s"
                break
    except KeyboardInterrupt:
        stats.interrupted = True
        message = "interrupted (SIGTERM)" if signal.SIGTERM in stop else "interrupted"
    except SystemError as e:  # a second Ctrl-C landing while a compiled kernel returns
        if not (stop or isinstance(e.__cause__ or e.__context__, KeyboardInterrupt)):
            raise
        stats.interrupted = True
        message = "interrupted"
    finally:
        if in_main:
            interrupt.clear()
            interrupt.set_handled(False)
        for s, handler in previous.items():
            signal.signal(s, handler)
        if pool is not None:
            pool.close(stats.interrupted)
        if own_workers is not None:  # no waiting for chunks in flight past the deadline
            own_workers.close(stats.interrupted or stats.timed_out)

    remaining = queue.cells()
    cex, open_cells, max_closed, leaves = tally.cex, tally.open_cells, tally.max_closed, tally.leaves
    undecided = open_cells + (remaining if cex is None or mode == "maximize" else [])
    # every examined cell is proved, refuted, split or open; the queue's cells were never examined
    stats.open = len(open_cells)
    stats.pending = len(remaining)
    seen, vol, logs = set(), 0.0, []
    root_w = box.upper - box.lower
    for cell, _ in undecided:
        key = cell.lower.tobytes() + cell.upper.tobytes()
        if key not in seen:
            seen.add(key)
            with np.errstate(over="ignore"):
                vol += cell.volume
            logs.append(log_fraction(cell.lower, cell.upper, root_w))
    stats.undecided_volume = vol
    stats.log10_total_volume = log10_volume(box.lower, box.upper)
    stats.undecided_fraction = float(np.exp(np.logaddexp.reduce(logs))) if logs else 0.0
    if record:
        for cell, u in undecided:
            leaves.append(LeafCell(cell.lower, cell.upper, "open", u))
    bound = max([max_closed] + [u for _, u in undecided]) if (undecided or np.isfinite(max_closed)) else float("nan")
    stats.time["total"] = time.perf_counter() - t_start
    if mode == "maximize":
        proved = max([witnessed, max_closed] + [u for _, u in undecided])
        return BabOutcome("unknown", None, bound, stats, leaves, message, witnessed, witness, proved)
    dev_bound = float("nan")
    if isinstance(prop, Deviation):  # the leaf bounds are deviations: report the margin as well
        dev_bound, bound = bound, sub_up(bound, prop.delta)
    if cex is not None:
        verdict = "not_robust"
    elif not undecided and not stats.interrupted and not stats.timed_out:
        verdict = "robust"
    else:
        verdict = "unknown"
        if not message:
            message = f"{len(undecided)} cells left open"
    return BabOutcome(verdict, cex, bound, stats, leaves, message, deviation_bound=dev_bound)


def attack_allowance(cells: int, attacks: int, share: float, n_chunks: int, free: int = ATTACK_FREE) -> list[int]:
    """Cells each of a round's ``n_chunks`` chunks may attack: ``free + share * cells - attacks``
    (``cells`` examined and ``attacks`` made so far in the run), shared out in chunk order (the
    first chunks hold the cells with the largest bounds); ``share >= 1``: no limit.

    On the ACAS Xu property-1 pairs an attack cost about 2.5 bound passes and every third cell
    was attacked (``attack_every``), a quarter of a run's time, while every counterexample of
    the NeuroDiff benchmark (143 pairs, point and box) was found within the first 503 cells.
    The counts are the merged ones, so the allowance does not depend on the executor."""
    if share >= 1.0:
        return [1 << 30] * n_chunks
    total = max(0, int(free + share * cells) - attacks)
    return [total // n_chunks + (1 if i < total % n_chunks else 0) for i in range(n_chunks)]


def log_fraction(lower: np.ndarray, upper: np.ndarray, root_width: np.ndarray) -> float:
    """Natural log of the share of the root box's volume a sub-box takes: the sum of the
    per-dimension log width ratios over the dimensions of positive root width (no underflow for
    784-input boxes, whose volume is below the smallest float)."""
    pos = root_width > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(np.log((upper[pos] - lower[pos]) / root_width[pos])))


def log10_volume(lower: np.ndarray, upper: np.ndarray) -> float:
    """``log10`` of the product of the positive widths of a box (``-inf`` for a point)."""
    w = upper - lower
    return float(np.sum(np.log10(w[w > 0]))) if np.any(w > 0) else float("-inf")


def exact_witness(network, perturbation, prop, cand, box=None) -> Counterexample | None:
    """Snap a float candidate ``(value, x, params)`` into the parameter box and (given the exact
    :class:`InputBox`) its input into the decimal input box, and evaluate its deviation exactly
    (rounded down); None when it cannot be placed inside the box."""
    from hybridq.attack import _exact_or_none, _nearest, exact_deviation

    value, x, params = cand
    params = perturbation.snap_inside(params)
    if not perturbation.contains(params):
        return None
    xe = np.asarray(x, dtype=np.float64) if box is None else box.snap(x)
    if box is not None and not box.contains_exact(xe):
        return None
    exact = exact_deviation(network, prop, xe, params)
    return Counterexample(_nearest(xe), params, float(value), exact, x_exact=_exact_or_none(xe))


def sub_up(a: float, b: float) -> float:
    """``a - b`` rounded up (an upper bound of the exact difference of two floats)."""
    if not (np.isfinite(a) and np.isfinite(b)):
        return float(a - b) if not (np.isinf(a) and np.isinf(b)) else float("nan")
    d = a - b
    if np.isfinite(d) and Fraction(d) >= Fraction(a) - Fraction(b):
        return float(d)
    return float(np.nextafter(d, np.inf))
