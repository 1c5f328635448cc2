"""The MILP backend: certified mixed-integer linear programming for piecewise-linear cells.

Behind the backends' ``check(...) -> Unsat | Sat | Unknown`` interface:

1. the cell query becomes the exact MILP of :mod:`hybridq.milp.model` (relu / identity hidden
   layers; the bound pass's neuron bounds give the big-M constants and fix stable neurons; bounds
   missing from ``neuron_bounds`` are computed by :func:`hybridq.bounds.bounds` on the cell);
2. per way of violating the property, HiGHS's MILP solver looks for a violation
   (:func:`hybridq.milp.search.find`); its solution is mapped back to concrete weights
   (:func:`hybridq.smt.encode.pullback`, DESIGN.md §2) and re-checked exactly -- only then it is a
   :class:`Sat`;
3. otherwise the certified branch and bound (:class:`hybridq.milp.search.Proof`) proves that no
   point violates, node by node with Neumaier-Shcherbina bounds from HiGHS's duals.

``Unsat`` therefore never rests on a float solver's "infeasible" or "optimum below delta": it
rests on dual vectors whose bound is evaluated with a rigorous error term over a program whose
feasible set contains the exact one (exact or outward-rounded data, rounded coefficient sums with
their error in the right-hand side).
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction

import numpy as np

from hybridq.smt import encode as enc
from hybridq.smt.base import Backend, Sat, Unknown, Unsat

__all__ = ["MilpBackend", "NEAR"]

#: A search-only call (``prove_it=False``) searches around its start for the objectives the start
#: comes within this share of the gap between its value and the objective's root bound (at least
#: for the closest one).
NEAR = 0.1

#: Rounds of ReLU cut separation (:mod:`hybridq.milp.cuts`) on the root LP of the certified
#: branch and bound (before each probing sweep); 0 turns the cuts off.
CUT_ROUNDS = 20

#: Whether the certified branch and bound probes the root first (:func:`hybridq.milp.search.prove`).
PROBE = True

logger = logging.getLogger(__name__)


def _float_margin(network, prop, x, params) -> float:
    """The property's float64 violation margin at ``(x, params)`` (``>= 0`` violates; NaN-safe)."""
    try:
        xx = np.asarray(x, dtype=np.float64)[None, :]
        with np.errstate(all="ignore"):
            return float(prop.margin(network, network.forward(xx, params), network.forward(xx))[0])
    except (ValueError, OverflowError):  # pragma: no cover - let the exact check decide
        return 0.0


def _pullback_float(q, x_model, z_model):
    """:func:`hybridq.smt.encode.pullback` in float64 (vectorized): the same weights
    ``t = c + r sign(h') lam`` per neuron, computed from float activations, snapped into the
    parameter box.  Much faster on large networks; the caller re-checks the result exactly (and
    falls back to the exact pullback when this one misses by rounding)."""
    net, pert = q.network, q.perturbation
    xs = []
    for v, lo, hi in zip(x_model, q.xlo, q.xhi):
        v = (lo + hi) / 2 if v is None else min(max(Fraction(v), lo), hi)
        f = float(v)
        xs.append(f if lo <= Fraction(f) <= hi else v)
    x = np.array(xs, dtype=np.float64 if all(isinstance(v, float) for v in xs) else object)
    xf = np.array([float(v) for v in xs])
    if net.input_lower is not None:
        xf = np.clip(xf, net.input_lower, net.input_upper)
    h = (xf - net.input_mean) / net.input_std
    params = []
    for k, layer in enumerate(net.layers):
        (C, c), (R, rb) = pert.center[k], pert.radius[k]
        C, c, R, rb = (np.asarray(a, dtype=np.float64) for a in (C, c, R, rb))
        cen = C @ h + c
        bnd = R @ np.abs(h) + rb
        tgt = np.array([float(v) for v in z_model[k]])
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = np.where(bnd > 0, np.clip((tgt - cen) / bnd, -1.0, 1.0), 0.0)
        W = C + R * np.sign(h)[None, :] * lam[:, None]
        b = c + rb * lam
        params.append((W, b))
        z = W @ h + b
        h = np.maximum(z, 0.0) if layer.activation == "relu" else z
    return x, pert.snap_inside(tuple(params))


def _needs_bounds(q) -> bool:
    from hybridq.properties import Deviation

    def bad(rows):
        return any(not np.all(np.isfinite(r)) for r in rows)

    if bad(q.pre_lo) or bad(q.pre_hi):
        return True
    point = bool(np.all(q.lower == q.upper))
    return isinstance(q.prop, Deviation) and not point and (bad(q.nom_lo) or bad(q.nom_hi))


def _fill_bounds(q, cell) -> None:
    """Intersect the query's neuron bounds with the certified bounds of the cell."""
    from hybridq.bounds import bounds

    ob = bounds(q.network, q.perturbation, None, method="linear", cells=[cell])
    for k in range(len(q.pre_lo)):
        q.pre_lo[k] = np.maximum(q.pre_lo[k], ob.pre_lo[k][0])
        q.pre_hi[k] = np.minimum(q.pre_hi[k], ob.pre_hi[k][0])
        q.nom_lo[k] = np.maximum(q.nom_lo[k], ob.nom_pre_lo[k][0])
        q.nom_hi[k] = np.minimum(q.nom_hi[k], ob.nom_pre_hi[k][0])


class MilpBackend(Backend):
    """Certified MILP/LP stage for piecewise-linear (relu / identity) cells, on HiGHS (``highspy``).

    Parameters
    ----------
    find_share : float
        Share of each objective's time for HiGHS's MILP search before the certified branch and
        bound (which also finds violations at integral nodes).

    Raises
    ------
    BackendUnavailableError
        ``highspy`` cannot be imported (the message says what to install).
    """

    name = "milp"
    capabilities = frozenset({"LRA", "MILP"})

    def __init__(self, find_share: float = 0.4) -> None:
        from hybridq.milp.search import _highspy

        _highspy()
        if not 0.0 <= float(find_share) <= 1.0:
            raise ValueError(f"find_share must be in [0, 1], got {find_share}")
        self.find_share = float(find_share)

    def check(self, network, perturbation, cell, prop, timeout, neuron_bounds=None, encoding="reduced", ibp=None,
              box=None, start=None, prove_it: bool = True, best: bool = False, find_share: float | None = None):
        """See :meth:`hybridq.smt.base.Backend.check` and :meth:`_check` (the extra parameters);
        a call that a stop request (:mod:`hybridq.interrupt`) ends is ``Unknown``."""
        from hybridq.interrupt import Interrupted

        t0 = time.perf_counter()
        try:
            return self._check(network, perturbation, cell, prop, timeout, neuron_bounds, encoding, ibp, box, start,
                               prove_it, best, find_share)
        except Interrupted:
            return Unknown("MILP stage interrupted (stop requested)", "unknown", time.perf_counter() - t0,
                           {"backend": self.name, "encoding": "milp", "interrupted": True})

    def _check(self, network, perturbation, cell, prop, timeout, neuron_bounds=None, encoding="reduced", ibp=None,
               box=None, start=None, prove_it: bool = True, best: bool = False, find_share: float | None = None):
        """See :meth:`hybridq.smt.base.Backend.check`; ``encoding`` must be ``reduced`` (the pure
        encoding is bilinear, not a MILP).  Raises :class:`hybridq.interrupt.Interrupted` at a
        stop request.

        Extra parameters
        ----------------
        start : (x, params) or None
            A good point of the cell (the attack's best): HiGHS's global search starts from it.
        prove_it : bool
            False: search only, for cells too large for a proof: the certified root bounds, then
            the neighbourhood of ``start`` (:func:`hybridq.milp.search.neighbourhood`) for the
            objectives it comes within :data:`NEAR` of; no global search, no branch and bound.
            (In full calls the neighbourhood search doubled the time of ACAS Xu fp16 point
            queries, 1.6 -> 3.2 s and 2.4 -> 5.0 s, and found nothing HiGHS's search did not.)
        best : bool
            Search-only calls: run every round of the neighbourhood search and re-check its best
            point, instead of stopping at the first violation (``quantify``: the highest witness).
        find_share : float or None
            This call's share for HiGHS's search for a violation (None: the backend's).

        An answer without a verdict carries the best point the searches saw in
        ``stats["seed"] = (float value, x, params)`` (weights inside the box, not re-checked):
        a start for later attacks, not a witness.
        """
        from hybridq.milp.certify import LpData
        from hybridq.milp.model import ModelUnsupported, assignment, build_model
        from hybridq.milp.search import Proof, RootBounds, find, neighbourhood

        t0 = time.perf_counter()
        deadline = t0 + max(float(timeout), 0.0)
        if encoding != "reduced":
            return Unknown(f"the MILP backend encodes the reduced (per-neuron noise) query only, not {encoding!r}",
                           "unsupported", 0.0, {"backend": self.name})
        q = enc.Query.build(network, perturbation, cell, prop, neuron_bounds, "reduced", True, box)
        stats = {"backend": self.name, "encoding": "milp", "nodes": 0}
        seed = None  # (value, v) of the best float point seen by the searches

        def done(out):
            object.__setattr__(out, "time_s", time.perf_counter() - t0)
            out.stats.update(stats)
            if isinstance(out, Unknown) and seed is not None and np.isfinite(seed[0]):
                try:
                    x, params = _pullback_float(q, *model.point_model(seed[1]))
                    stats["seed"] = (seed[0], np.array([float(v) for v in x]), params)
                    out.stats["seed"] = stats["seed"]
                except (ValueError, OverflowError, ZeroDivisionError):  # pragma: no cover - no seed then
                    pass
            return out

        try:
            if _needs_bounds(q):
                _fill_bounds(q, cell)
            model = build_model(q)
        except ModelUnsupported as err:
            return done(Unknown(str(err), "unsupported"))
        stats["binaries"] = int(model.binaries.size)
        if time.perf_counter() >= deadline:  # building a large model can take the whole limit
            return done(Unknown("MILP stage timed out (while building the model)", "timeout"))
        data = LpData(model.A, model.row_lo, model.row_hi)

        def confirm(v):
            xm, zm = model.point_model(v)
            # float pullback and a float screen first: the exact arithmetic of a large network
            # costs seconds; then one exact re-check, and the exact pullback only if that missed
            for pull in (_pullback_float, enc.pullback):
                if time.perf_counter() >= deadline:
                    return None
                x, params = pull(q, xm, zm)
                fm = _float_margin(network, prop, x, params)
                if fm < -1e-3 * float(q.violation_scale()):  # misses by far more than float error
                    continue
                if q.confirm(x, params):
                    return x, params
            return None

        hit = None

        def on_candidate(v):
            nonlocal hit
            if time.perf_counter() >= deadline:
                return False
            hit = confirm(v)
            return hit is not None

        # 0. the certified root LP bound drops the objectives it already proves; the rest are taken
        #    most-violated first
        objs, proved_bounds = [], []
        roots = RootBounds(model, data)
        for obj in model.objectives:
            if time.perf_counter() >= deadline:
                return done(Unknown("MILP stage timed out (root bounds)", "timeout"))
            try:  # the first time HiGHS sees the program
                ub = roots.bound(obj, deadline - time.perf_counter())
            except ModelUnsupported as err:
                return done(Unknown(str(err), "unsupported"))
            if obj.held_below(ub):
                proved_bounds.append(obj.bound_value(ub))
            else:
                objs.append((ub - float(obj.threshold - obj.const), obj, ub + float(obj.const)))
        objs.sort(key=lambda t: -t[0])
        stats["bounds"] = proved_bounds
        if not objs:
            return done(Unsat())
        v0 = None
        if start is not None:
            try:
                v0 = assignment(model, q, np.asarray(start[0], dtype=np.float64), start[1])
            except (ValueError, IndexError):  # pragma: no cover - a start that does not fit: none
                v0 = None
        if v0 is not None and not prove_it:
            # 1a. (search-only calls) the neighbourhood of the start, the objectives it comes closest to violating
            #     (relative to the gap up to their root bound) first; search-only calls take those
            #     within NEAR of it (at least the closest)
            near = []
            for _, obj, ub in objs:
                val = float(obj.vector(model.n) @ v0) + float(obj.const)
                near.append((float(obj.threshold) - val) / max(ub - val, 1e-300))
            order = [int(i) for i in np.argsort(near, kind="stable")]
            order = [i for i in order if near[i] <= NEAR] or order[:1]
            # ``best``: a fifth of the time is kept for the exact re-check of the best point
            search_end = time.perf_counter() + (0.8 if best else 1.0) * (deadline - time.perf_counter())
            for i, oi in enumerate(order):
                obj = objs[oi][1]
                end = time.perf_counter() + (search_end - time.perf_counter()) / (len(order) - i)
                val, v = neighbourhood(model, obj, v0, end, None if best else on_candidate)
                if best and (val > float(obj.threshold) or (val >= float(obj.threshold) and not obj.strict)) \
                        and on_candidate(v):
                    val = np.inf
                if val == np.inf:
                    stats["found_by"] = "neighbourhood"
                    return done(Sat(hit[0], hit[1]))
                if seed is None or val > seed[0]:
                    seed = (val, v)
        objs = [o for _, o, _ in objs]
        if not prove_it:
            return done(Unknown("MILP search: no violation found near the start", "unknown"))
        # 1b. HiGHS's MILP search for a violation of each objective (a share of the time each)
        share = self.find_share if find_share is None else float(find_share)
        search_end = time.perf_counter() + share * (deadline - time.perf_counter())
        for i, obj in enumerate(objs):
            scale = 1.0 + abs(float(obj.threshold))
            for margin in (0.0, 1e-9 * scale, 1e-6 * scale):
                left = (search_end - time.perf_counter()) / (len(objs) - i)
                v = find(model, obj, left, margin, start=v0) if left > 0 else None
                if v is None:
                    break
                if on_candidate(v):
                    stats["found_by"] = "milp"
                    return done(Sat(hit[0], hit[1]))
        # 2. certified branch and bound: every objective proved, or a violation at an integral node.
        #    All must be proved, so the objectives share the time by what they turn out to need: in
        #    turn, each gets an equal share of the time left (the last one all of it); one that is
        #    still open at the end of its share is paused (hybridq.milp.search.Proof) and resumed
        #    with the time the others left.
        from hybridq.milp.cuts import ReluCuts

        cuts = ReluCuts(model) if CUT_ROUNDS else None
        pending = [(obj, Proof(model, obj, deadline, on_candidate, data, cuts=cuts, cut_rounds=CUT_ROUNDS,
                               probe=PROBE)) for obj in objs]
        proofs = [p for _, p in pending]

        def finish(out):
            stats["nodes"] += sum(p.last.nodes for p in proofs)
            return done(out)

        while pending:
            paused = []
            for i, (obj, proof) in enumerate(pending):
                now = time.perf_counter()
                if now >= deadline:
                    return finish(Unknown("MILP stage timed out", "timeout"))
                res = proof.run(now + (deadline - now) / (len(pending) - i))
                if res.status == "candidate":
                    stats["found_by"] = "branch and bound"
                    return finish(Sat(hit[0], hit[1]))
                if res.status == "proved":
                    stats["bounds"].append(obj.bound_value(res.bound))
                elif proof.result is None:
                    paused.append((obj, proof))
                else:
                    kind = "timeout" if res.reason == "time limit" else "unknown"
                    return finish(Unknown(f"MILP stage: {obj.label}: {res.reason}", kind))
            pending = paused
        return finish(Unsat())
