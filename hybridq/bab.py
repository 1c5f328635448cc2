"""Best-first branch and bound over cells, in rounds, optionally on worker processes.

The scheduler (DESIGN.md §3) keeps a queue of :class:`hybridq.cell.Cell` records ordered by the
certified bound on the violation margin of their parent (largest first).  Each round takes up to
``batch_size`` cells, cuts them into 8 chunks (whatever ``jobs`` is) and hands the chunks to
:meth:`_Engine.process` (in-process for ``jobs = 1``, else on a ``spawn`` process pool); the
outcomes are merged in queue order, so a run gives the same result whatever ``jobs`` is.  Per cell:

1. the bound pass (:func:`hybridq.bounds.bounds`, batched over the chunk) proves it, or gives its
   margin bound and the perturbed pre-activation bounds;
2. an attack (:func:`hybridq.attack.attack`, seeded by ``(seed, cell id)``) looks for a violation,
   re-checked exactly;
3. a cell with few unstable neurons goes to the SMT backend with the bound pass's neuron bounds,
   within a budget for calls that end without an answer (``smt_max_unknown`` calls and
   ``smt_budget`` seconds, each such call charged its time limit; a round's chunks share what is
   left, so the budget is spent the same way whatever ``jobs`` is);
4. otherwise it is split: along the input dimension with the largest smear
   (``|d objective / d x_i| x width_i``, the gradient bounded by interval back-propagation through
   the derivative ranges of the activations, as in ReluVal) times that dimension's weight
   (:func:`_dim_weight`: the mean relative drop of the bound its earlier splits gave in this run),
   or -- for point inputs and inputs of many dimensions -- on the phase of the unstable perturbed
   neuron with the largest ``|d objective / d h| x (-lo hi / (hi - lo))`` (the BaBSR-style score).

In ``maximize`` mode (used by :func:`hybridq.quantify`) the property is a deviation whose
threshold rises with the deviation witnessed so far; cells whose certified deviation bound is below
the threshold are pruned and the maximum of their bounds is the proved value.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from hybridq.attack import attack, confirm
from hybridq.cell import Cell
from hybridq.config import RunConfig, make_config
from hybridq.inputs import as_input_box
from hybridq.properties import Decision, Deviation, OutputConstraint
from hybridq.result import Counterexample, LeafCell, Result, Stats

__all__ = ["verify", "run_bab", "BabOutcome"]

logger = logging.getLogger(__name__)

_SPLITTABLE = ("relu", "leaky_relu", "hardtanh", "sigmoid", "tanh")
#: Chunks per round (the unit of work of a worker process).
_CHUNKS = 8


# =========================================================================== problem + engine
@dataclass(frozen=True)
class _Problem:
    """Everything a worker needs (pickled once per worker)."""

    network: object
    perturbation: object
    prop: object
    config: RunConfig
    mode: str  # "verify" or "maximize"
    root_lower: np.ndarray = None
    root_upper: np.ndarray = None


@dataclass
class _Outcome:
    cell_id: int
    status: str  # bounds | smt | counterexample | split | open
    ub: float
    children: list = field(default_factory=list)
    counterexample: Counterexample | None = None
    candidate: tuple | None = None  # maximize: (value, x, params) in float64, confirmed by the scheduler
    times: dict = field(default_factory=dict)
    smt_called: bool = False
    smt_unknown: bool = False
    smt_charge: float = 0.0  # time limit of an SMT call that ended without an answer
    split: str = ""
    gain: float = float("nan")  # relative drop of the bound from the parent's (input-split children)


def _spec_matrix(network, prop) -> tuple[np.ndarray | None, list]:
    """Rows ``C`` whose bounds decide the property, and the row slices of each disjunct."""
    if isinstance(prop, Decision):
        return prop.spec_matrix(network.n_out), []
    if isinstance(prop, OutputConstraint):
        rows, slices, start = [], [], 0
        for A, _ in prop.disjuncts:
            rows.append(A)
            slices.append(slice(start, start + A.shape[0]))
            start += A.shape[0]
        return np.vstack(rows), slices
    return None, []


def _ob_row(ob, i: int):
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


class _Engine:
    """Processes chunks of cells for one problem (lives in each worker, or in-process)."""

    def __init__(self, problem: _Problem):
        self.p = problem
        net = problem.network
        self.C, self.slices = _spec_matrix(net, problem.prop)
        self.widths = [l.n_out for l in net.layers]
        self.offsets = np.concatenate([[0], np.cumsum(self.widths)]).astype(int)
        self._backend = None
        self.root_width = None
        self.max_prop = None
        if problem.mode == "maximize":
            self.max_prop = Deviation(0.0, problem.prop.space, problem.prop.outputs)
        inter = problem.config.bound_inter
        if inter is None:  # deviation bounds gain most from CROWN on the differences dz
            inter = 2 if isinstance(problem.prop, Deviation) else 1
        self.inter = inter
        self.dim_weight = None  # per input dimension: how much its splits have tightened bounds so far

    # ---------------------------------------------------------------- margin bounds
    def _margin_ub(self, ob) -> np.ndarray:
        """Certified upper bound per cell of the violation margin; for deviation properties of the
        deviation itself (never ``deviation - delta`` in float: a huge ``delta`` would absorb it)."""
        prop = self.p.prop
        if isinstance(prop, Deviation):
            lo, hi = (ob.dev_logit_lo, ob.dev_logit_hi) if prop.space == "logit" else (ob.dev_score_lo, ob.dev_score_hi)
            sel = list(prop.selected(self.p.network.n_out))
            return np.maximum(hi[:, sel], -lo[:, sel]).max(axis=1)
        if isinstance(prop, Decision):
            if self.C.shape[0] == 0:
                return np.full(ob.infeasible.shape[0], -np.inf)
            return prop.kappa - ob.spec_lo.min(axis=1)
        out = np.full(ob.spec_lo.shape[0], -np.inf)
        for (A, c), sl in zip(prop.disjuncts, self.slices):
            out = np.maximum(out, (c[None, :] - ob.spec_lo[:, sl]).min(axis=1))
        return out

    def _proved(self, ub: float) -> bool:
        if isinstance(self.p.prop, Deviation):  # ``ub`` bounds the deviation
            return ub <= self.p.prop.delta
        return ub < 0.0

    def _objective(self, ob, i: int) -> np.ndarray:
        """Direction ``c`` on the logits whose gradient drives the smear scores."""
        net, prop = self.p.network, self.p.prop
        c = np.zeros(net.n_out)
        if isinstance(prop, Deviation):
            lo, hi = (ob.dev_logit_lo, ob.dev_logit_hi) if prop.space == "logit" else (ob.dev_score_lo, ob.dev_score_hi)
            sel = np.array(prop.selected(net.n_out))
            j = sel[int(np.argmax(np.maximum(hi[i, sel], -lo[i, sel])))]
            c[j] = 1.0
            return c
        if isinstance(prop, Decision):
            return self.C[int(np.argmin(ob.spec_lo[i]))] if self.C.shape[0] else c
        best, row = -np.inf, 0
        for (A, rhs), sl in zip(prop.disjuncts, self.slices):
            v = rhs - ob.spec_lo[i, sl]
            k = int(np.argmin(v))
            if v[k] > best:
                best, row = v[k], sl.start + k
        return self.C[row]

    # ---------------------------------------------------------------- smear
    def _grad_bounds(self, plo, phi, c):
        """Interval back-propagation of ``d (c . y) / d h_k`` through the activation derivative
        ranges on the cell.  Returns ``(|g_x| (n_in,), [|g_h_k| (n_k,)])``."""
        net = self.p.network
        glo = ghi = c * net.output_std
        gh = [None] * len(net.layers)
        for k in range(len(net.layers) - 1, -1, -1):
            l = net.layers[k]
            gh[k] = np.maximum(np.abs(glo), np.abs(ghi))
            dlo, dhi = _dact_range(plo[k], phi[k], l.activation, l.alpha)
            a, b = glo * dlo, glo * dhi
            cc, d = ghi * dlo, ghi * dhi
            zlo, zhi = np.minimum(a, b), np.maximum(cc, d)
            mid, rad = 0.5 * (zlo + zhi), 0.5 * (zhi - zlo)
            gm, gr = l.W.T @ mid, np.abs(l.W.T) @ rad
            glo, ghi = gm - gr, gm + gr
        gx = np.maximum(np.abs(glo), np.abs(ghi)) / net.input_std
        return gx, gh

    def _split(self, cell: Cell, plo, phi, c) -> tuple[list[Cell], str]:
        cfg, net = self.p.config, self.p.network
        width = cell.upper - cell.lower
        gx, gh = self._grad_bounds(plo, phi, c)
        if np.any(width > 0) and net.n_in <= cfg.input_split_max_dim:
            smear = gx * width if cfg.input_split == "smear" else width / self.root_width
            if not np.any(smear > 0):
                smear = width.copy()
            if self.dim_weight is not None:
                smear = smear * self.dim_weight
            order = [int(d) for d in np.argsort(-smear, kind="stable") if width[d] > 0]
            if cfg.split_lookahead > 1 and len(order) > 1:
                # bound the children of the best few dimensions and keep the split whose worse child is best
                cand = order[:cfg.split_lookahead]
                kids = [c for d in cand for c in self._halves(cell, d)]
                from hybridq.bounds import bounds

                spec = self.C if self.C is not None and self.C.shape[0] else None
                ob = bounds(net, self.p.perturbation, None, method=cfg.bound_method, spec=spec, cells=kids,
                            inter=self.inter)
                ub = self._margin_ub(ob).reshape(len(cand), 2)
                k = int(np.argmin(ub.max(axis=1) + 1e-3 * ub.min(axis=1)))
                for c, u in zip(kids[2 * k:2 * k + 2], ub[k]):
                    c.priority = float(u)
                return kids[2 * k:2 * k + 2], "input"
            mid = 0.5 * (cell.lower[order[0]] + cell.upper[order[0]])
            if cell.lower[order[0]] < mid < cell.upper[order[0]]:
                return self._halves(cell, order[0]), "input"
        best, choice = 0.0, None
        for k, l in enumerate(net.layers):
            if l.activation not in _SPLITTABLE:
                continue
            lo, hi = plo[k], phi[k]
            t = _split_points(lo, hi, l.activation)
            ok = np.isfinite(t) & (lo < t) & (t < hi)
            if not ok.any():
                continue
            if l.activation in ("relu", "leaky_relu", "hardtanh"):
                a, b = t - lo, hi - t
                area = a * b / np.maximum(a + b, 1e-300)
            else:
                with np.errstate(over="ignore"):  # huge radii: an infinite area still ranks first
                    area = (hi - lo) ** 2
            score = np.where(ok, gh[k] * area + 1e-300 * ok, 0.0)
            j = int(np.argmax(score))
            if score[j] > best:
                best, choice = float(score[j]), (k, j, float(t[j]))
        if choice is None:
            return [], ""
        k, j, t = choice
        idx = self.offsets[k] + j
        a = Cell(cell.lower.copy(), cell.upper.copy(), cell.pre_lo.copy(), cell.pre_hi.copy(), cell.depth + 1)
        b = Cell(cell.lower.copy(), cell.upper.copy(), cell.pre_lo.copy(), cell.pre_hi.copy(), cell.depth + 1)
        a.pre_hi[idx] = min(a.pre_hi[idx], t)
        b.pre_lo[idx] = max(b.pre_lo[idx], t)
        return [a, b], "phase"

    @staticmethod
    def _halves(cell: Cell, d: int) -> list[Cell]:
        mid = 0.5 * (cell.lower[d] + cell.upper[d])
        up1, lo2 = cell.upper.copy(), cell.lower.copy()
        up1[d] = mid
        lo2[d] = mid
        return [Cell(cell.lower.copy(), up1, cell.pre_lo.copy(), cell.pre_hi.copy(), cell.depth + 1, split_dim=d),
                Cell(lo2, cell.upper.copy(), cell.pre_lo.copy(), cell.pre_hi.copy(), cell.depth + 1, split_dim=d)]

    def _n_unstable(self, plo, phi) -> int:
        n = 0
        for k, l in enumerate(self.p.network.layers):
            if l.activation in _SPLITTABLE:
                t = _split_points(plo[k], phi[k], l.activation)
                n += int(np.sum(np.isfinite(t) & (plo[k] < t) & (t < phi[k])))
        return n

    @property
    def backend(self):
        if self._backend is None:
            from hybridq.smt import get_backend

            self._backend = get_backend(self.p.config.backend)
        return self._backend

    # ---------------------------------------------------------------- one chunk
    def process(self, items, threshold: float, witnessed: float, deadline: float | None,
                smt_allow: tuple = (1 << 30, float("inf")), dim_weight: np.ndarray | None = None) -> list[_Outcome]:
        """Decide or split each ``(cell_id, Cell)`` of a chunk (independently of the others).

        ``smt_allow = (calls, seconds)``: the chunk's share of the run's budget for SMT calls that
        end without an answer (counted, and charged their time limit, which is deterministic,
        not the time they took); ``dim_weight`` scales the smear of each input dimension (see
        :func:`_dim_weight`)."""
        from hybridq.bounds import bounds

        self.dim_weight = dim_weight
        p, cfg = self.p, self.p.config
        net, pert = p.network, p.perturbation
        t0 = time.perf_counter()
        cells = [c for _, c in items]
        if self.root_width is None:
            self.root_width = np.maximum(problem_width(self.p), 1e-300)
        spec = self.C if self.C is not None and self.C.shape[0] else None
        ob = bounds(net, pert, None, method=cfg.bound_method, spec=spec, cells=cells, inter=self.inter)
        # a cell's region lies inside its parent's: the parent's bound (kept in ``priority``) holds too
        own = self._margin_ub(ob)
        parent = np.array([c.priority for c in cells], dtype=np.float64)
        ub = np.minimum(own, parent)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            gain = np.clip((parent - own) / (np.abs(parent) + np.abs(own)), 0.0, 1.0)
        t_bounds = (time.perf_counter() - t0) / len(items)
        outs = []
        smt_unknown, smt_charged = 0, 0.0
        for i, (cid, cell) in enumerate(items):
            times = {"bounds": t_bounds, "attack": 0.0, "smt": 0.0, "split": 0.0}
            u = float(ub[i])
            if bool(ob.infeasible[i]):
                outs.append(_Outcome(cid, "bounds", -np.inf, times=times))
                continue
            if p.mode == "maximize":
                if u <= threshold:
                    outs.append(_Outcome(cid, "bounds", u, times=times))
                    continue
            elif self._proved(u):
                outs.append(_Outcome(cid, "bounds", u, times=times))
                continue
            out = _Outcome(cid, "open", u, times=times)
            rng = np.random.default_rng([cfg.seed, cid])
            root = cell.depth == 0
            # maximize: attacks only raise the witness, which is found early; attack 3x less often
            every = cfg.attack_every * (3 if p.mode == "maximize" else 1)
            if root or cell.depth % every == 0:
                ta = time.perf_counter()
                aprop = self.max_prop if p.mode == "maximize" else p.prop
                if root:
                    samples, steps, restarts = 4 * cfg.attack_samples, 2 * cfg.attack_steps, 4 * cfg.attack_restarts
                    screen = cfg.attack_screen
                else:
                    samples, steps, restarts = cfg.attack_samples, cfg.attack_steps, cfg.attack_restarts
                    screen = 0
                res = attack(net, pert, aprop, cell.lower, cell.upper, rng, samples=samples, steps=steps,
                             restarts=restarts, confirm_exact=p.mode == "verify", screen=screen)
                if p.mode == "maximize" and res.value > witnessed:
                    out.candidate = (res.value, res.x, res.params)
                times["attack"] = time.perf_counter() - ta
                if res.counterexample is not None:
                    out.status, out.counterexample = "counterexample", res.counterexample
                    outs.append(out)
                    continue
            plo = [np.maximum(a[i], cell.pre_lo[o:o + w]) for a, o, w in zip(ob.pre_lo, self.offsets, self.widths)]
            phi = [np.minimum(a[i], cell.pre_hi[o:o + w]) for a, o, w in zip(ob.pre_hi, self.offsets, self.widths)]
            if smt_unknown < smt_allow[0] and smt_allow[1] - smt_charged >= cfg.smt_first_timeout \
                    and p.mode == "verify" and cfg.backend != "none" and (
                self._n_unstable(plo, phi) <= cfg.smt_max_unstable
                or (cfg.smt_min_depth > 0 and cell.depth >= cfg.smt_min_depth)
            ):
                ts = time.perf_counter()
                # shallow cells get short SMT budgets (a split is often cheaper); deeper ones more
                tlim = min(cfg.smt_timeout, cfg.smt_first_timeout * 2.0 ** cell.depth, smt_allow[1] - smt_charged)
                charge = tlim
                if deadline is not None:
                    tlim = max(0.1, min(tlim, deadline - time.time()))
                ans = self.backend.check(net, pert, cell, p.prop, tlim, neuron_bounds=_ob_row(ob, i))
                times["smt"] = time.perf_counter() - ts
                out.smt_called = True
                kind = type(ans).__name__
                if kind == "Unsat":
                    out.status = "smt"
                    outs.append(out)
                    continue
                if kind == "Sat":
                    mg = _float_margin(net, p.prop, ans.x, ans.params)
                    cx = confirm(net, pert, p.prop, ans.x, ans.params, mg)
                    if cx is not None:
                        out.status, out.counterexample = "counterexample", cx
                        outs.append(out)
                        continue
                out.smt_unknown = True
                out.smt_charge = charge
                smt_unknown += 1
                smt_charged += charge
            outs.append(self._split_or_open(out, cell, ob, i, times, plo, phi))
        for o, (_, cell), g in zip(outs, items, gain):  # one outcome per cell, in order
            if cell.split_dim >= 0 and np.isfinite(g):
                o.gain = float(g)
        return outs

    def _split_or_open(self, out, cell, ob, i, times, plo=None, phi=None):
        if cell.depth >= self.p.config.max_depth:
            return out
        if plo is None:
            plo = [np.maximum(a[i], cell.pre_lo[o:o + w]) for a, o, w in zip(ob.pre_lo, self.offsets, self.widths)]
            phi = [np.minimum(a[i], cell.pre_hi[o:o + w]) for a, o, w in zip(ob.pre_hi, self.offsets, self.widths)]
        tsp = time.perf_counter()
        children, kind = self._split(cell, plo, phi, self._objective(ob, i))
        times["split"] = time.perf_counter() - tsp
        if children:
            out.status, out.children, out.split = "split", children, kind
        return out


def _exact_witness(network, perturbation, prop, cand) -> Counterexample | None:
    """Snap a float candidate into the box and evaluate its deviation exactly (rounded down)."""
    from hybridq.attack import exact_deviation

    value, x, params = cand
    params = perturbation.snap_inside(params)
    if not perturbation.contains(params):
        return None
    exact = exact_deviation(network, prop, x, params)
    return Counterexample(np.asarray(x, dtype=np.float64).copy(), params, float(value), exact)


def _dim_weight(gain_sum: np.ndarray, gain_n: np.ndarray, prior: float = 0.1) -> np.ndarray:
    """Smear multiplier per input dimension: the mean relative bound drop that splitting along it
    gave so far, shrunk toward ``prior`` (one pseudo-observation), so a dimension never tried is
    neither favoured nor excluded.  Bounds of ReLU networks tighten unevenly: one input often
    governs the unstable neurons of a region far more than the gradient-based smear shows."""
    return (prior + gain_sum) / (1.0 + gain_n)


def problem_width(problem) -> np.ndarray:
    return np.asarray(problem.root_upper) - np.asarray(problem.root_lower)


def _float_margin(network, prop, x, params) -> float:
    x = np.asarray(x, dtype=np.float64)[None, :]
    return float(prop.margin(network, network.forward(x, params), network.forward(x))[0])


def _split_points(lo, hi, activation):
    if activation in ("relu", "leaky_relu"):
        return np.zeros_like(lo)
    if activation == "hardtanh":
        return np.where((lo < -1.0) & (-1.0 < hi), -1.0, 1.0)
    mid = 0.5 * (lo + hi)
    return np.where((lo < 0.0) & (0.0 < hi), 0.0, np.where(np.isfinite(mid), mid, np.nan))


def _dact_range(lo, hi, a, alpha):
    """Range ``[dlo, dhi]`` of the activation derivative over ``[lo, hi]`` (elementwise)."""
    one, zero = np.ones_like(lo), np.zeros_like(lo)
    if a == "identity":
        return one, one
    if a in ("relu", "leaky_relu"):
        low = zero if a == "relu" else np.full_like(lo, alpha)
        return np.where(lo > 0, one, low), np.where(hi <= 0, low, one)
    if a == "hardtanh":
        inside = (lo > -1) & (hi < 1)
        outside = (hi <= -1) | (lo >= 1)
        return np.where(inside, one, zero), np.where(outside, zero, one)

    def d(z):
        if a == "sigmoid":
            s = 0.5 * (1.0 + np.tanh(0.5 * z))
            return s * (1.0 - s)
        return 1.0 - np.tanh(z) ** 2

    zc = np.clip(0.0, lo, hi)
    return np.minimum(d(lo), d(hi)), d(zc)


# =========================================================================== workers
_WORKER: _Engine | None = None


def _init_worker(problem: _Problem) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # share the cores among the workers instead of oversubscribing numba's thread pool
        import numba

        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // problem.config.jobs)))
    except (ImportError, ValueError):  # pragma: no cover
        pass
    _WORKER = _Engine(problem)


_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _ping(_):
    return os.getpid()


def _make_pool(problem: _Problem, jobs: int) -> ProcessPoolExecutor:
    """A spawn pool whose workers run single-threaded BLAS (tiny matrices; several BLAS threads per
    worker process only fight over the cores)."""
    saved = {k: os.environ.get(k) for k in _BLAS_VARS}
    os.environ.update({k: "1" for k in _BLAS_VARS})
    try:
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(problem,))
        list(pool.map(_ping, range(jobs)))  # start the workers now, with the environment above
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return pool


def _work(args):
    return _WORKER.process(*args)


# =========================================================================== scheduler
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


def run_bab(network, perturbation, box, prop, config: RunConfig, mode: str = "verify",
            rtol: float = 0.05, atol: float = 1e-9, progress=None) -> BabOutcome:
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

    Returns
    -------
    BabOutcome
    """
    cfg = config
    t_start = time.perf_counter()
    deadline = None if cfg.timeout is None else time.time() + cfg.timeout
    n_neurons = sum(l.n_out for l in network.layers)
    problem = _Problem(network, perturbation, prop, cfg, mode, box.lower, box.upper)
    engine = _Engine(problem)
    record = cfg.record_leaves if cfg.record_leaves is not None else network.n_in <= 2
    stats = Stats(jobs=cfg.jobs, total_volume=box.volume)
    leaves: list | None = [] if record else None
    # leaf bounds (``o.ub``): the deviation itself for deviation properties, else the violation margin
    queue: list = []  # (-priority, id, cell)
    deep: list = []  # (-depth, -priority, id) for depth-first when the queue is large
    live: dict = {}
    next_id = 0

    weight: dict = {}  # cell id -> share of the root's search space (halved at every split)

    def push(cell, prio, w):
        nonlocal next_id
        cell.priority = prio
        weight[next_id] = w
        live[next_id] = (cell, prio)
        heapq.heappush(queue, (-prio, next_id))
        if len(live) > cfg.max_queue // 2:
            heapq.heappush(deep, (-cell.depth, -prio, next_id))
        next_id += 1

    def pop():
        h = deep if len(live) > cfg.max_queue and deep else queue
        while h:
            cid = heapq.heappop(h)[-1]
            if cid in live:
                cell, _ = live.pop(cid)
                return cid, cell
        return None

    push(Cell.root(box.lower, box.upper, n_neurons), np.inf, 1.0)
    # per input dimension: sum and count of the relative bound drops its splits gave (split choice)
    gain_sum = np.zeros(network.n_in) if cfg.input_split == "smear" else None
    gain_n = np.zeros(network.n_in) if cfg.input_split == "smear" else None
    cex, witness, witnessed = None, None, 0.0
    smt_charged = 0.0
    max_closed = -np.inf  # largest bound of a closed (proved / pruned) cell
    pool = None
    message = ""
    open_cells: list = []
    # Ctrl-C: the first one asks the run to stop after the chunk in flight (a compiled kernel is
    # never cut short); a second one interrupts at once
    stop: list = []
    previous = None
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        def on_sigint(signum, frame):
            stop.append(True)
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        while live:
            if stop:
                raise KeyboardInterrupt
            if deadline is not None and time.time() > deadline:
                stats.timed_out = True
                message = f"timeout after {cfg.timeout:g} s"
                break
            batch = []
            while live and len(batch) < cfg.batch_size:
                batch.append(pop())
            threshold = max(witnessed * (1.0 + rtol), atol)
            # the same chunks whatever ``jobs`` is, so per-chunk budgets keep results independent of it
            size = cfg.chunk_size or -(-len(batch) // _CHUNKS)
            chunks = [batch[i:i + size] for i in range(0, len(batch), size)]
            # the SMT budget left (calls without an answer, their seconds) is shared among the chunks
            smt_allow = (-(-max(0, cfg.smt_max_unknown - stats.smt_unknown) // len(chunks)),
                         max(0.0, cfg.smt_budget - smt_charged) / len(chunks))
            dim_weight = _dim_weight(gain_sum, gain_n) if gain_n is not None else None
            args = [(c, threshold, witnessed, deadline, smt_allow, dim_weight) for c in chunks]
            # small rounds stay in-process (starting workers costs seconds); the result is the same
            if cfg.jobs > 1 and len(chunks) > 1 and pool is None and (
                    len(batch) >= 4 * cfg.jobs or time.perf_counter() - t_start > 2.0):
                pool = _make_pool(problem, cfg.jobs)
            if pool is not None and len(chunks) > 1:
                results = list(pool.map(_work, args))
            else:
                results = []
                for k, a in enumerate(args):
                    if k and (stop or (deadline is not None and time.time() > deadline)):
                        # out of time mid-round: the unprocessed chunks go back to the queue as they were
                        for cid, cell in (item for ch in chunks[k:] for item in ch):
                            live[cid] = (cell, cell.priority)
                            heapq.heappush(queue, (-cell.priority, cid))
                        break
                    results.append(engine.process(*a))
            stats.rounds += 1
            by_id = {cid: cell for cid, cell in batch}
            best_cand = None
            for outs in results:
                for o in outs:
                    cell = by_id[o.cell_id]
                    if o.status in ("bounds", "smt", "counterexample"):
                        stats.decided_fraction += weight[o.cell_id]
                    stats.cells += 1
                    stats.max_depth = max(stats.max_depth, cell.depth)
                    for k, v in o.times.items():
                        stats.time[k] = stats.time.get(k, 0.0) + v
                    stats.smt_calls += o.smt_called
                    stats.smt_unknown += o.smt_unknown
                    smt_charged += o.smt_charge
                    if gain_n is not None and cell.split_dim >= 0 and o.gain == o.gain:
                        gain_sum[cell.split_dim] += o.gain
                        gain_n[cell.split_dim] += 1
                    if o.candidate is not None and (best_cand is None or o.candidate[0] > best_cand[0]):
                        best_cand = o.candidate
                    if o.status in ("bounds", "smt"):
                        stats.proved_bounds += o.status == "bounds"
                        stats.proved_smt += o.status == "smt"
                        max_closed = max(max_closed, o.ub)
                        if record:
                            leaves.append(LeafCell(cell.lower, cell.upper, o.status, o.ub))
                    elif o.status == "counterexample":
                        stats.refuted += 1
                        max_closed = max(max_closed, o.ub)
                        if cex is None:
                            cex = o.counterexample
                        if record:
                            leaves.append(LeafCell(cell.lower, cell.upper, "counterexample", o.ub))
                    elif o.status == "split":
                        stats.splits_input += o.split == "input"
                        stats.splits_phase += o.split == "phase"
                        for ch in o.children:
                            push(ch, min(o.ub, ch.priority) if ch.priority else o.ub, weight[o.cell_id] / len(o.children))
                    else:
                        open_cells.append((cell, o.ub))
            if best_cand is not None and best_cand[0] > witnessed:
                cx = _exact_witness(network, perturbation, engine.max_prop, best_cand)
                if cx is not None and cx.value > witnessed:
                    witnessed, witness = cx.value, cx
            if progress is not None:
                progress(stats, len(live))
            if cex is not None and mode == "verify":
                break
    except KeyboardInterrupt:
        stats.interrupted = True
        message = "interrupted"
    except SystemError as e:  # a second Ctrl-C landing while a compiled kernel returns
        if not (stop or isinstance(e.__cause__ or e.__context__, KeyboardInterrupt)):
            raise
        stats.interrupted = True
        message = "interrupted"
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if pool is not None:
            procs = list((getattr(pool, "_processes", None) or {}).values())  # None after shutdown
            pool.shutdown(wait=not stats.interrupted, cancel_futures=True)
            if stats.interrupted:
                for proc in procs:
                    proc.terminate()

    remaining = [(cell, prio) for cell, prio in live.values()]
    undecided = open_cells + (remaining if cex is None or mode == "maximize" else [])
    stats.open = len(undecided)
    seen, vol = set(), 0.0
    for cell, _ in undecided:
        key = cell.lower.tobytes() + cell.upper.tobytes()
        if key not in seen:
            seen.add(key)
            vol += cell.volume
    stats.undecided_volume = vol
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
        dev_bound, bound = bound, _sub_up(bound, prop.delta)
    if cex is not None:
        verdict = "not_robust"
    elif not undecided and not stats.interrupted and not stats.timed_out:
        verdict = "robust"
    else:
        verdict = "unknown"
        if not message:
            message = f"{len(undecided)} cells left open"
    return BabOutcome(verdict, cex, bound, stats, leaves, message, deviation_bound=dev_bound)


def _sub_up(a: float, b: float) -> float:
    """``a - b`` rounded up (an upper bound of the exact difference of two floats)."""
    if not (np.isfinite(a) and np.isfinite(b)):
        return float(a - b) if not (np.isinf(a) and np.isinf(b)) else float("nan")
    d = a - b
    if np.isfinite(d) and Fraction(d) >= Fraction(a) - Fraction(b):
        return float(d)
    return float(np.nextafter(d, np.inf))


# =========================================================================== public entry
def check_problem(network, perturbation, inputs, prop):
    """Validate a problem; returns the :class:`InputBox` (via :func:`hybridq.inputs.as_input_box`,
    the conversion ``bounds`` uses too).  Raises ``ValueError`` / ``TypeError`` /
    :class:`hybridq.PerturbationError` with a clear message."""
    if not hasattr(perturbation, "check_network"):
        raise TypeError(f"perturbation must be a Perturbation or a spec string, got {type(perturbation).__name__}")
    perturbation.check_network(network)
    box = as_input_box(inputs, network.n_in)
    if prop is None:
        raise ValueError("a property is required: a Deviation, Decision or OutputConstraint")
    if isinstance(prop, Deviation):
        prop.selected(network.n_out)
    elif isinstance(prop, Decision):
        prop.spec_matrix(network.n_out)
    elif isinstance(prop, OutputConstraint):
        for A, _ in prop.disjuncts:
            if A.shape[1] != network.n_out:
                raise ValueError(f"output constraint has {A.shape[1]} columns, the network {network.n_out} outputs")
    else:
        raise TypeError(f"property must be a Deviation, Decision or OutputConstraint, got {type(prop).__name__}")
    return box


def verify(network, perturbation, inputs, property, backend: str = "auto", jobs: int | None = None,
           timeout: float | None = None, seed: int = 0, config: RunConfig | None = None, progress=None,
           **options) -> Result:
    """Prove or refute that ``property`` holds for every input in ``inputs`` and every parameter
    set in the ``perturbation`` box.

    Parameters
    ----------
    network : Network
    perturbation : Perturbation or str
        The parameter box, or a spec string for :func:`hybridq.perturbation` (as in ``quantify``).
    inputs : InputBox, (n_in,) array or (lower, upper) tuple or list
        The input set in the network's raw input space (a point: local robustness); converted by
        :func:`hybridq.inputs.as_input_box`.
    property : Deviation | Decision | OutputConstraint
    backend : {"auto", "z3", "dreal", "none"}
        SMT backend for the cells the bound pass leaves open.
    jobs : int or None
        Worker processes (default: all cores); the result does not depend on it.
    timeout : float or None
        Wall-clock budget in seconds; past it the verdict is ``unknown``.
    seed : int
        Attack seed (results are deterministic for a fixed seed).
    config : RunConfig, optional
        Further settings; keyword ``options`` override single :class:`RunConfig` fields.
    progress : callable(Stats, pending) or None
        Called after every round of the branch and bound.

    Returns
    -------
    Result
        ``robust`` (proved), ``not_robust`` (with an exactly re-checked counterexample) or
        ``unknown`` (budget spent or interrupted; with the undecided volume in ``stats``).

    Raises
    ------
    ValueError, PerturbationError, ConfigError, BackendUnavailableError
        Mismatched shapes, an output index or label out of range, ``property=None``, a bad spec
        string, invalid options, a missing backend.
    TypeError
        ``perturbation`` or ``property`` of the wrong type.
    """
    if isinstance(perturbation, str):
        from hybridq.perturbation import perturbation as make_perturbation

        perturbation = make_perturbation(perturbation, network)
    box = check_problem(network, perturbation, inputs, property)
    given = {"backend": backend, "jobs": jobs, "timeout": timeout, "seed": seed}
    if config is not None:  # explicit arguments override the config only where they differ from the defaults
        given = {k: v for k, v in given.items() if v != {"backend": "auto", "seed": 0}.get(k)}
    cfg = make_config(config, **given, **options)
    if cfg.backend != "none":
        from hybridq.smt import get_backend

        get_backend(cfg.backend)  # fail early with the install message
    out = run_bab(network, perturbation, box, property, cfg, "verify", progress=progress)
    return Result(out.verdict, property, out.counterexample, out.bound, out.stats, out.leaves, out.message,
                  deviation_bound=out.deviation_bound)
