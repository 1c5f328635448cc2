"""The per-cell engine: bound pass, attack, SMT call and split decision for a chunk of cells.

One :class:`CellEngine` lives in each worker (or in-process) for one :class:`Problem`.  Per cell
(DESIGN.md §3):

1. the bound pass (:func:`hybridq.bounds.bounds`, batched over the chunk) proves it, or gives its
   margin bound and the perturbed pre-activation bounds;
2. an attack (:func:`hybridq.attack.attack`, seeded by ``(seed, cell id)``) looks for a violation,
   re-checked exactly;
3. a cell with few unstable neurons goes to the exact stage (:mod:`hybridq.bab.exact`) with the
   bound pass's neuron bounds, within the chunk's share of the budget for calls that end without
   an answer;
4. otherwise it is split (:mod:`hybridq.bab.splitting`); a cell that cannot be split goes to the
   exact backend with the rest of the run's time instead of staying open.

A chunk's outcomes depend only on the chunk and the arguments of :meth:`CellEngine.process`, so
the scheduler gets the same result whatever executor runs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from hybridq.attack import attack, confirm
from hybridq.bab.exact import ROOT_FIND_SHARE, ExactStage, ob_row
from hybridq.bab.splitting import grad_bounds, halves, n_unstable, phase_split
from hybridq.cell import Cell
from hybridq.config import RunConfig
from hybridq.properties import Decision, Deviation, OutputConstraint
from hybridq.result import Counterexample

__all__ = ["Problem", "Outcome", "CellEngine", "problem_width", "CONFIRM_SECONDS_PER_WEIGHT", "STRONG_ATTACK_FACTOR"]

#: Seconds per network weight assumed for the exact re-check of an attack's candidate
#: (:func:`hybridq.attack.confirm`) before one has been timed: it evaluates the network twice (nominal
#: and perturbed) in exact arithmetic (mpmath intervals for sigmoid/tanh), 25.4 s for the 358,800 weights of the
#: MNIST sigmoid 6x200 net at load 4 on 2 cores (71 us per weight), with some margin.
CONFIRM_SECONDS_PER_WEIGHT = 8e-5
#: The strong attack of the whole box (:meth:`CellEngine.root_attack`: 4x the samples and
#: restarts, 2x the steps) is assumed to cost at most this many per-cell attacks.
STRONG_ATTACK_FACTOR = 8.0
#: Children carry their parent's certified bounds of the perturbed pre-activations ``z'`` as clips
#: (``Cell.pre_lo/pre_hi``): the bound pass intersects its own with them, and through
#: ``z = z' - dz`` the nominal ones too, so fewer neurons look unstable and fewer CROWN rows are
#: computed (ACAS Xu, ``point:fp16``: the nominal rows left after the parent's bounds are within
#: 3 % of the rows the child's refined bounds show unstable; the child's interval bounds showed
#: 1.2-2.7x as many in layers 1-5).
INHERIT_BOUNDS = True
#: ``inter`` 3 on a point perturbation: nominal CROWN rows only for unstable neurons (see ``refine``).
REFINE_UNSTABLE = True


@dataclass(frozen=True)
class Problem:
    """Everything a worker needs (sent once per worker): the validated problem, the run's
    configuration, the mode (``"verify"`` or ``"maximize"``) and the root input box ``(n_in,)``."""

    network: object
    perturbation: object
    prop: object
    config: RunConfig
    mode: str  # "verify" or "maximize"
    root_lower: np.ndarray = None
    root_upper: np.ndarray = None
    box: object = None  # the exact InputBox: counterexamples are re-checked in it (hybridq.exact)


@dataclass
class Outcome:
    """What the engine decided for one cell (plain picklable data)."""

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
    seed: tuple | None = None  # the milp stage's best point (value, x, params): a start for later attacks
    attacked: bool = False  # the cell was attacked (counts against the run's attack allowance)


def problem_width(problem: Problem) -> np.ndarray:
    """Width ``(n_in,)`` of the root input box."""
    return np.asarray(problem.root_upper) - np.asarray(problem.root_lower)


def spec_matrix(network, prop) -> tuple[np.ndarray | None, list]:
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


class CellEngine:
    """Processes chunks of cells for one problem (lives in each worker, or in-process)."""

    def __init__(self, problem: Problem):
        self.p = problem
        net = problem.network
        self.C, self.slices = spec_matrix(net, problem.prop)
        self.widths = [l.n_out for l in net.layers]
        self.offsets = np.concatenate([[0], np.cumsum(self.widths)]).astype(int)
        self.root_width = None
        self.max_prop = None
        if problem.mode == "maximize":
            self.max_prop = Deviation(0.0, problem.prop.space, problem.prop.outputs)
        inter = problem.config.bound_inter
        if inter is None:  # deviation bounds gain most from CROWN on the differences dz
            inter = 3 if isinstance(problem.prop, Deviation) else 1
        self.inter = inter
        # inter 3 on a point perturbation (a quantized copy): only the neurons unstable in the
        # parent-clipped bounds get nominal CROWN rows (ACAS Xu 2_7:1 point:fp16: 3 % more cells,
        # 28 % less CPU time; under the fp16 box, 1_6:1: 50 % more cells, 8 % more time)
        point = all(not np.any(R) and not np.any(r) for R, r in problem.perturbation.radius)
        self.refine = "unstable" if inter == 3 and point and REFINE_UNSTABLE else "all"
        self.dim_weight = None  # per input dimension: how much its splits have tightened bounds so far
        self.exact = ExactStage(problem, self.max_prop)
        # timings that keep a deadline (wall-clock dependent only close to it): the longest exact
        # re-check and the longest float attack of a cell so far, seconds (None: none yet)
        self.confirm_cost: float | None = None
        self.confirm_total = 0.0  # seconds of all exact re-checks so far (each guarded on its own)
        # seconds of the parts of chunks that keep the deadline on their own (attacks with their exact
        # re-checks, exact-stage calls): the in-process executor's chunk estimate leaves them out
        self.guarded_total = 0.0
        self.attack_cost: float | None = None
        self.n_weights = sum(int(np.size(l.W)) + int(np.size(l.b)) for l in net.layers)

    # ---------------------------------------------------------------- margin bounds
    def margin_ub(self, ob) -> np.ndarray:
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
        ymax = None
        for (A, c), sl, err in zip(prop.disjuncts, self.slices, prop.coef_err):
            v = c[None, :] - ob.spec_lo[:, sl]
            if np.any(err > 0):  # rows whose decimal coefficients are no doubles: A_exact y >= A y - err max|y|
                if ymax is None:
                    ymax = np.maximum(np.abs(ob.logit_lo), np.abs(ob.logit_hi)).max(axis=1)
                with np.errstate(over="ignore", invalid="ignore", under="ignore"):
                    # every operation rounded up by one spacing: c - spec_lo, err * ymax, and their sum
                    extra = np.nextafter(err[None, :] * ymax[:, None], np.inf)
                    up = np.nextafter(np.nextafter(v, np.inf) + extra, np.inf)
                    v = np.where(err[None, :] > 0, up, v)
            out = np.maximum(out, v.min(axis=1))
        return out

    def proved(self, ub: float) -> bool:
        """Whether a cell with margin bound ``ub`` is proved."""
        if isinstance(self.p.prop, Deviation):  # ``ub`` bounds the deviation
            return ub <= self.p.prop.delta
        return ub < 0.0

    def objective(self, ob, i: int) -> np.ndarray:
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

    # ---------------------------------------------------------------- split decision
    def split(self, cell: Cell, plo, phi, c) -> tuple[list[Cell], str]:
        """Children of ``cell`` and the split kind (``"input"``, ``"phase"``, or ``""``: none)."""
        cfg, net = self.p.config, self.p.network
        width = cell.upper - cell.lower
        gx, gh = grad_bounds(net, plo, phi, c)
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
                kids = [c for d in cand for c in halves(cell, d)]
                from hybridq.bounds import bounds

                spec = self.C if self.C is not None and self.C.shape[0] else None
                ob = bounds(net, self.p.perturbation, None, method=cfg.bound_method, spec=spec, cells=kids,
                            inter=self.inter, refine=self.refine)
                ub = self.margin_ub(ob).reshape(len(cand), 2)
                k = int(np.argmin(ub.max(axis=1) + 1e-3 * ub.min(axis=1)))
                for c, u in zip(kids[2 * k:2 * k + 2], ub[k]):
                    c.priority = float(u)
                return kids[2 * k:2 * k + 2], "input"
            mid = 0.5 * cell.lower[order[0]] + 0.5 * cell.upper[order[0]]  # no overflow near float64's max
            if cell.lower[order[0]] < mid < cell.upper[order[0]]:
                return halves(cell, order[0]), "input"
        children = phase_split(net, self.offsets, cell, plo, phi, gh)
        return children, ("phase" if children else "")

    def _clipped(self, ob, i, cell):
        """Pre-activation bounds of cell ``i`` per layer, intersected with its phase clips."""
        plo = [np.maximum(a[i], cell.pre_lo[o:o + w]) for a, o, w in zip(ob.pre_lo, self.offsets, self.widths)]
        phi = [np.minimum(a[i], cell.pre_hi[o:o + w]) for a, o, w in zip(ob.pre_hi, self.offsets, self.widths)]
        return plo, phi

    # ---------------------------------------------------------------- one chunk
    def process(self, items, threshold: float, witnessed: float, deadline: float | None,
                smt_allow: tuple = (1 << 30, float("inf")), dim_weight: np.ndarray | None = None,
                seeds: tuple = (), attack_allow: int = 1 << 30) -> list[Outcome]:
        """Decide or split each ``(cell_id, Cell)`` of a chunk (independently of the others).

        ``smt_allow = (calls, seconds)``: the chunk's share of the run's budget for SMT calls that
        end without an answer (counted, and charged their time limit, which is deterministic,
        not the time they took); ``dim_weight`` scales the smear of each input dimension (see
        :func:`hybridq.bab.splitting.dim_weight`); ``seeds``: the milp stage's best points so far
        ``(value, x, params)``, extra starts for the attacks of the cells that contain them;
        ``attack_allow``: the most cells of the chunk that are attacked (the chunk's share of the
        run's attack allowance, see :func:`hybridq.bab.scheduler.attack_allowance`), the first
        ones due in chunk order (the queue's best-first order)."""
        from hybridq.bounds import bounds

        self.dim_weight = dim_weight
        p, cfg = self.p, self.p.config
        net, pert = p.network, p.perturbation
        t0 = time.perf_counter()
        cells = [c for _, c in items]
        if self.root_width is None:
            self.root_width = np.maximum(problem_width(self.p), 1e-300)
        spec = self.C if self.C is not None and self.C.shape[0] else None
        ob = bounds(net, pert, None, method=cfg.bound_method, spec=spec, cells=cells, inter=self.inter,
                    refine=self.refine)
        # a cell's region lies inside its parent's: the parent's bound (kept in ``priority``) holds too
        own = self.margin_ub(ob)
        parent = np.array([c.priority for c in cells], dtype=np.float64)
        ub = np.minimum(own, parent)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            gain = np.clip((parent - own) / (np.abs(parent) + np.abs(own)), 0.0, 1.0)
        t_bounds = (time.perf_counter() - t0) / len(items)
        outs = []
        smt_unknown, smt_charged = 0, 0.0
        attacks = 0
        for i, (cid, cell) in enumerate(items):
            refuted = p.mode == "verify" and any(o.status == "counterexample" for o in outs)
            times = {"bounds": t_bounds, "attack": 0.0, "smt": 0.0, "split": 0.0}
            u = float(ub[i])
            if bool(ob.infeasible[i]):
                outs.append(Outcome(cid, "bounds", -np.inf, times=times))
                continue
            if p.mode == "maximize":
                if u <= threshold:
                    outs.append(Outcome(cid, "bounds", u, times=times))
                    continue
            elif self.proved(u):
                outs.append(Outcome(cid, "bounds", u, times=times))
                continue
            out = Outcome(cid, "open", u, times=times)
            if refuted:  # verify: the chunk already holds a counterexample, which ends the run
                outs.append(self._split_or_open(out, cell, ob, i, times))
                continue
            res = None
            if attacks < attack_allow:
                res = self._attack(out, cell, cid, witnessed, seeds, deadline)
                attacks += out.attacked
            if out.status == "counterexample":
                outs.append(out)
                continue
            start = None if res is None else (res.x, res.params)
            plo, phi = self._clipped(ob, i, cell)
            exact = self.exact.enabled
            first, max_unstable = self.exact.limits(cell)
            budget = exact and smt_unknown < smt_allow[0] and smt_allow[1] - smt_charged >= first
            unstable = n_unstable(net, plo, phi) if budget else 0  # read only where there is budget
            scale = p.prop.delta if p.mode == "verify" and isinstance(p.prop, Deviation) else float("inf")
            if budget and (
                (unstable <= max_unstable
                 and self.exact.box_call_due(cell, None if res is None else self._margin(res, threshold),
                                             self._margin_ub(u, threshold), scale))
                or (cfg.smt_min_depth > 0 and cell.depth >= cfg.smt_min_depth)
            ):
                if self.exact.call(out, cell, ob_row(ob, i), deadline, smt_allow[1] - smt_charged,
                                   threshold=threshold, start=start):
                    outs.append(out)
                    continue
                smt_unknown += out.smt_unknown
                smt_charged += out.smt_charge
            elif budget and res is not None and self._polish_due(cell) and self.exact.worth_polish(
                    self._margin(res, threshold), self._margin_ub(u, threshold), scale):
                # too large for a proof, but the attack came close: the milp stage's search around its
                # point (maximize: for a point above the attack's, which raises the witness)
                thr = max(threshold, res.value) if p.mode == "maximize" else threshold
                if self.exact.call(out, cell, ob_row(ob, i), deadline, smt_allow[1] - smt_charged,
                                   threshold=thr, start=start, prove_it=False):
                    outs.append(out)
                    continue
                smt_unknown += out.smt_unknown
                smt_charged += out.smt_charge
            if budget and unstable > max_unstable and self.exact.root_proof_due(cell, unstable):
                # a point root too large for the ordinary calls: one proof call with the run's time
                # left, at most four times milp_timeout (splitting phases of such a cell rarely
                # closes it in time); one per run, so it is not charged to the milp budget
                out.smt_unknown = False
                if self.exact.call(out, cell, ob_row(ob, i), deadline, np.inf, last=True, threshold=threshold,
                                   start=start, find_share=ROOT_FIND_SHARE):
                    outs.append(out)
                    continue
                smt_unknown += out.smt_unknown
            out = self._split_or_open(out, cell, ob, i, times, plo, phi)
            if out.status == "open" and exact and smt_allow[1] - smt_charged >= first:
                # cannot be split: the exact stage with the run's time left (while budget is left)
                out.smt_unknown = False
                if self.exact.call(out, cell, ob_row(ob, i), deadline, np.inf, last=True, threshold=threshold):
                    outs.append(out)
                    continue
            outs.append(out)
        for o, (_, cell), g in zip(outs, items, gain):  # one outcome per cell, in order
            if cell.split_dim >= 0 and np.isfinite(g):
                o.gain = float(g)
            self.guarded_total += o.times.get("attack", 0.0) + o.times.get("smt", 0.0)
        return outs

    def _polish_due(self, cell: Cell) -> bool:
        """Whether a cell may get the search-only milp call: the root, and in ``verify`` mode the
        children of input splits (phase-split children hold the same attack point and mostly
        the same neighbourhood; in ``maximize`` mode the witness needs it only once)."""
        return cell.depth == 0 or (self.p.mode == "verify" and cell.split_dim >= 0)

    def _margin(self, res, threshold: float) -> float:
        """The attack's violation margin (``maximize``: its deviation minus the threshold)."""
        return res.value - threshold if self.p.mode == "maximize" else res.margin

    def _margin_ub(self, u: float, threshold: float) -> float:
        """The cell's certified bound of the same margin."""
        if self.p.mode == "maximize":
            return u - threshold
        return u - self.p.prop.delta if isinstance(self.p.prop, Deviation) else u

    def _attack(self, out: Outcome, cell: Cell, cid: int, witnessed: float, seeds=(), deadline: float | None = None):
        """Attack the cell where due (``seeds``: extra ``(value, x, params)`` starts whose input
        lies in the cell); its :class:`~hybridq.attack.AttackResult`, or None when not due.  An
        exactly re-checked counterexample sets ``out.status`` (the re-check runs only when it is
        expected to end before ``deadline``, see :meth:`confirm`).  No attack is started that the
        longest one so far says ends past ``deadline`` (the run's timeout holds; the cell is still
        split, so nothing is lost but the attack)."""
        p, cfg = self.p, self.p.config
        root = cell.depth == 0
        # maximize: attacks only raise the witness, which is found early; attack 3x less often
        every = cfg.attack_every * (3 if p.mode == "maximize" else 1)
        if not (root or cell.depth % every == 0):
            return None
        if deadline is not None and time.time() + (self.attack_cost or 0.0) > deadline:
            return None  # the longest attack so far would end past the deadline: the cell is only split
        rng = np.random.default_rng([cfg.seed, cid])
        out.attacked = True
        ta = time.perf_counter()
        aprop = self.max_prop if p.mode == "maximize" else p.prop
        if root and p.mode == "maximize":  # verify: the strong attack of the root box waits (root_attack)
            samples, steps, restarts = 4 * cfg.attack_samples, 2 * cfg.attack_steps, 4 * cfg.attack_restarts
            screen = cfg.attack_screen
        else:
            samples, steps, restarts = cfg.attack_samples, cfg.attack_steps, cfg.attack_restarts
            screen = 0
        starts = [(x, params) for _, x, params in seeds or ()
                  if np.all(np.asarray(x) >= cell.lower) and np.all(np.asarray(x) <= cell.upper)]
        res = attack(p.network, p.perturbation, aprop, cell.lower, cell.upper, rng, samples=samples, steps=steps,
                     restarts=restarts, confirm_exact=False, screen=screen, box=p.box, starts=starts)
        self.attack_cost = max(self.attack_cost or 0.0, time.perf_counter() - ta)
        if p.mode == "verify":
            self.confirm(res, deadline)
        if p.mode == "maximize" and res.value > witnessed:
            out.candidate = (res.value, res.x, res.params)
        out.times["attack"] = time.perf_counter() - ta
        if res.counterexample is not None:
            out.status, out.counterexample = "counterexample", res.counterexample
        return res

    def root_attack(self, seeds=(), deadline: float | None = None):
        """The strong attack of the whole input box (4x the samples and restarts, 2x the steps,
        ``attack_screen`` inputs screened); :func:`hybridq.attack.attack`'s result.

        In ``verify`` mode the scheduler calls it once the run has examined ``STRONG_ATTACK_CELLS``
        cells, instead of on the root cell: most runs that hold are proved in a handful of cells,
        for which this attack (about 0.5 s on ACAS Xu) would be most of the time.  ``seeds``: the
        milp stage's best points ``(value, x, params)`` so far, extra starts.  The candidate is
        re-checked exactly only when that is expected to end before ``deadline`` (:meth:`confirm`)."""
        p, cfg = self.p, self.p.config
        rng = np.random.default_rng([cfg.seed, 1 << 40])
        res = attack(p.network, p.perturbation, p.prop, p.root_lower, p.root_upper, rng,
                     samples=4 * cfg.attack_samples, steps=2 * cfg.attack_steps, restarts=4 * cfg.attack_restarts,
                     confirm_exact=False, screen=cfg.attack_screen, box=p.box,
                     starts=[(x, params) for _, x, params in seeds])
        self.confirm(res, deadline)
        return res

    def confirm_estimate(self) -> float:
        """Seconds one exact re-check of a candidate is expected to take: the longest one so far,
        else ``CONFIRM_SECONDS_PER_WEIGHT`` per weight and bias of the network."""
        if self.confirm_cost is not None:
            return self.confirm_cost
        return CONFIRM_SECONDS_PER_WEIGHT * self.n_weights

    def confirm(self, res, deadline: float | None) -> None:
        """Set ``res.counterexample`` to the exact re-check of an attack result whose float margin
        is ``>= 0`` (:func:`hybridq.attack.confirm`, exactly what ``attack(confirm_exact=True)``
        does), unless a ``deadline`` (``time.time()`` seconds) is set and the re-check is not
        expected to end before it (:meth:`confirm_estimate`): a compiled or exact evaluation is
        never cut short, and the run's timeout must hold.  The candidate then stays unconfirmed
        (the cell goes on as if the attack had found nothing)."""
        if res.margin < 0.0:
            return
        if deadline is not None and time.time() + self.confirm_estimate() > deadline:
            return
        p = self.p
        prop = p.prop.resolve(p.network) if isinstance(p.prop, Decision) else p.prop
        t = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            res.counterexample = confirm(p.network, p.perturbation, prop, res.x, res.params, res.margin, box=p.box)
        dt = time.perf_counter() - t
        self.confirm_cost = max(self.confirm_cost or 0.0, dt)
        self.confirm_total += dt

    def strong_attack_estimate(self) -> float | None:
        """Seconds the float part of :meth:`root_attack` is expected to take at most
        (``STRONG_ATTACK_FACTOR`` times the longest per-cell attack so far), None before any."""
        return None if self.attack_cost is None else STRONG_ATTACK_FACTOR * self.attack_cost

    def _split_or_open(self, out, cell, ob, i, times, plo=None, phi=None):
        if cell.depth >= self.p.config.max_depth:
            return out
        if plo is None:
            plo, phi = self._clipped(ob, i, cell)
        tsp = time.perf_counter()
        children, kind = self.split(cell, plo, phi, self.objective(ob, i))
        if children and INHERIT_BOUNDS:
            # a child's region lies inside its parent's: the parent's bounds of z' hold in it too
            # (its clips, which the bound pass intersects with its own, also for z = z' - dz)
            lo, hi = np.concatenate(plo), np.concatenate(phi)
            for ch in children:
                np.maximum(ch.pre_lo, lo, out=ch.pre_lo)
                np.minimum(ch.pre_hi, hi, out=ch.pre_hi)
        times["split"] = time.perf_counter() - tsp
        if children:
            out.status, out.children, out.split = "split", children, kind
        return out
