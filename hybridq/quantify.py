"""Quantities: the maximum deviation as ``[witnessed, proved]``, the largest epsilon for which a
property holds, the fewest bits of a format family for which it holds (DESIGN.md §1).

* ``deviation``: branch and bound *maximizing* the deviation (:func:`hybridq.bab.run_bab` in
  ``maximize`` mode): the attacks raise the witnessed value (each witness evaluated exactly), the
  best-first queue's largest certified bound is the proved value; it stops when they are within
  ``tol`` (``proved <= witnessed * (1 + tol)``) or the budget is spent.
* ``epsilon``: bisection (geometric) on ``EPS`` of ``abs:EPS`` / ``rel:EPS``; every step is a
  :func:`hybridq.verify` run, so the reported largest epsilon is certified.
* ``bits``: bisection over a format family (:func:`hybridq.perturbation.format_family`); assumes
  that more bits never hurt (monotone radii) and certifies each step with :func:`hybridq.verify`.
"""

from __future__ import annotations

import logging
import math
import time

from hybridq.bab import check_problem, run_bab, verify
from hybridq.config import RunConfig, make_config
from hybridq.errors import ConfigError
from hybridq.properties import Deviation
from hybridq.result import Quantity, Stats

__all__ = ["quantify"]

logger = logging.getLogger(__name__)

#: Default per-step budget of a bisection: the overall budget divided by this.
STEP_SHARE = 8


def quantify(network, perturbation, inputs, property=None, what: str = "deviation", *,
             space: str = "logit", outputs=None, tol: float = 0.1, family: str = "abs",
             eps_range: tuple[float, float] = (1e-8, 1.0), max_steps: int = 30,
             backend: str = "auto", jobs: int | None = None, timeout: float | None = None, seed: int = 0,
             config: RunConfig | None = None, progress=None, executor=None, step_timeout: float | None = None,
             **options) -> Quantity:
    """Compute a certified quantity.

    Parameters
    ----------
    network : Network
    perturbation : Perturbation or str
        The parameter box (``what="deviation"``); ignored for ``epsilon`` and ``bits`` (the family
        gives the boxes), where ``None`` is allowed.
    inputs : InputBox, (n_in,) point or (lower, upper)
    property : Deviation | Decision | OutputConstraint | SameDecision, optional
        Required for ``epsilon`` and ``bits``.  For ``deviation`` a :class:`Deviation` only
        contributes its ``space`` and ``outputs``.
    what : {"deviation", "epsilon", "bits"}
    space, outputs
        Deviation space and outputs for ``what="deviation"`` without a property.
    tol : float
        Relative tolerance: ``proved <= witnessed * (1 + tol)`` (deviation); ``upper / lower <=
        1 + tol`` (epsilon bisection).
    family : str
        ``epsilon``: ``"abs"`` or ``"rel"``.  ``bits``: ``"float"``, ``"fixed"`` or ``"int"``, with
        int options after a colon (``"int:per_channel"``).
    eps_range : (float, float)
        Bracket of the epsilon bisection (``0 < lo < hi``).
    max_steps : int
        Most verify runs of a bisection.
    backend, jobs, timeout, seed, config, **options
        As for :func:`hybridq.verify`; ``timeout`` is the budget of the whole quantification.
    executor : distributed.Client or None
        Run every branch and bound on this Dask cluster (as for :func:`hybridq.verify`).
    step_timeout : float or None
        ``epsilon`` / ``bits``: seconds per bisection step (one verify run), so one hard step
        cannot use up the whole budget; a step that runs out of it counts as not proved.
        Default: ``timeout / STEP_SHARE`` (unlimited without a timeout).

    Returns
    -------
    Quantity
        ``lower``/``upper`` as documented in :class:`hybridq.result.Quantity`.

    Raises
    ------
    ConfigError
        Unknown ``what`` or ``family``, a missing property, a bad tolerance or bracket.
    PerturbationError, ValueError
        As for :func:`hybridq.verify`.
    """
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ConfigError(f"tol must be a positive number, got {tol!r}")
    given = {"backend": backend, "jobs": jobs, "timeout": timeout, "seed": seed}
    if config is not None:
        given = {k: v for k, v in given.items() if v != {"backend": "auto", "seed": 0}.get(k)}
    cfg = make_config(config, **given, **options)
    from hybridq.bab.cluster import as_client

    client = as_client(executor)
    q = _quantify(network, perturbation, inputs, property, what, space, outputs, tol, family, eps_range, max_steps,
                  cfg, progress, step_timeout, client)
    from hybridq.report import describe_problem, settings_dict
    from hybridq.inputs import as_input_box

    prop = property if what != "deviation" else Deviation(0.0, *((property.space, property.outputs)
                                                                  if property is not None else (space, outputs)))
    q.problem = describe_problem(network, perturbation if what == "deviation" else f"family:{family}",
                                 [as_input_box(inputs, network.n_in)], prop)
    if q.witness is not None and not q.witness.kind:
        from hybridq.bab.api import describe

        describe(q.witness, network, perturbation, prop)
    q.settings = settings_dict(cfg)
    return q


def _quantify(network, perturbation, inputs, property, what, space, outputs, tol, family, eps_range, max_steps,
              cfg, progress, step_timeout, client=None) -> Quantity:
    if step_timeout is not None and not (isinstance(step_timeout, (int, float)) and step_timeout > 0):
        raise ConfigError(f"step_timeout must be a positive number of seconds, got {step_timeout!r}")
    if step_timeout is None and cfg.timeout is not None:
        step_timeout = cfg.timeout / STEP_SHARE
    if what == "deviation":
        return _max_deviation(network, perturbation, inputs, property, space, outputs, tol, cfg, progress, client)
    if property is None:
        raise ConfigError(f"quantify(what={what!r}) needs a property (a Deviation, Decision or OutputConstraint)")
    if what == "epsilon":
        return _largest_epsilon(network, inputs, property, family, eps_range, tol, max_steps, cfg, progress,
                                step_timeout, client)
    if what == "bits":
        return _fewest_bits(network, inputs, property, family, cfg, progress, step_timeout, client)
    raise ConfigError(f"what must be 'deviation', 'epsilon' or 'bits', got {what!r}")


_FLOAT_MAX = 1.7976931348623157e308


def _max_deviation(network, perturbation, inputs, prop, space, outputs, tol, cfg, progress, client=None) -> Quantity:
    from hybridq.perturbation import perturbation as make_perturbation

    pert = make_perturbation(perturbation, network)
    if prop is not None and not isinstance(prop, Deviation):
        raise ConfigError("quantify(what='deviation') takes a Deviation property (or none)")
    dev = Deviation(0.0, prop.space, prop.outputs) if prop is not None else Deviation(0.0, space, outputs)
    box = check_problem(network, pert, inputs, dev)
    out = run_bab(network, pert, box, dev, cfg, mode="maximize", rtol=tol, progress=progress, executor=client)
    if not float(out.witnessed) < _FLOAT_MAX:  # the exact witnessed value, rounded toward zero, is past float64
        raise ValueError(
            f"the deviation overflows float64: an exactly evaluated pair deviates by more than {_FLOAT_MAX:.6g} "
            f"under perturbation {pert.spec!r}; scale the network, the inputs or the perturbation down")
    msg = out.message
    if not msg and not out.proved <= out.witnessed * (1 + tol) + 1e-12:  # an infinite proved bound too
        msg = "tolerance not reached"
    return Quantity("deviation", float(out.witnessed), float(out.proved), [], out.witness, out.stats, msg,
                    leaves=out.leaves)


def _run_step(network, spec, inputs, prop, cfg, t_end, progress, step_timeout=None, client=None):
    from hybridq.perturbation import perturbation as make_perturbation

    remaining = None if t_end is None else max(0.01, t_end - time.perf_counter())
    if step_timeout is not None:
        remaining = step_timeout if remaining is None else min(remaining, step_timeout)
    step_cfg = make_config(cfg, timeout=remaining) if remaining is not None else cfg
    t0 = time.perf_counter()
    if type(prop).__name__ == "SameDecision":  # relational: hybridq.equivalence decides it
        from hybridq.equivalence import verify_same_decision

        res = verify_same_decision(network, make_perturbation(spec, network), inputs, prop, config=step_cfg,
                                   progress=progress, executor=client)
    else:
        res = verify(network, make_perturbation(spec, network), inputs, prop, config=step_cfg, progress=progress,
                     executor=client)
    return res, time.perf_counter() - t0


def _stop_reason(stats, t_end) -> str:
    """Why a bisection stops before its next step: ``"interrupted"`` (Ctrl-C stopped the last
    verify run), ``"timeout"``, or ``""`` to go on."""
    if stats.interrupted:
        return "interrupted"
    if t_end is not None and time.perf_counter() > t_end:
        return "timeout"
    return ""


def _largest_epsilon(network, inputs, prop, family, eps_range, tol, max_steps, cfg, progress,
                     step_timeout=None, client=None) -> Quantity:
    if family not in ("abs", "rel"):
        raise ConfigError(f"epsilon family must be 'abs' or 'rel', got {family!r}")
    lo, hi = (float(v) for v in eps_range)
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ConfigError(f"eps_range must satisfy 0 < lo < hi, got {eps_range!r}")
    t_start = time.perf_counter()
    t_end = None if cfg.timeout is None else t_start + cfg.timeout
    stats, steps = Stats(), []

    def test(eps):
        res, dt = _run_step(network, f"{family}:{eps!r}", inputs, prop, cfg, t_end, progress, step_timeout, client)
        stats.add(res.stats)
        steps.append(_step_record("epsilon", eps, None, res, dt))
        return res.verdict == "robust"

    proved, refuted, msg = 0.0, math.inf, ""
    if test(hi):
        proved = hi
    elif stats.interrupted:  # the step at hi ran, and was not proved (stopped, or refuted first)
        refuted, msg = hi, "interrupted"
    elif not test(lo):
        refuted = lo
        msg = "interrupted" if stats.interrupted else ""
    else:
        proved, refuted = lo, hi
        while refuted / proved > 1 + tol and len(steps) < max_steps:
            msg = _stop_reason(stats, t_end)
            if msg:
                break
            mid = math.sqrt(proved * refuted)
            if test(mid):
                proved = mid
            else:
                refuted = mid
    stats.time["total"] = time.perf_counter() - t_start
    stats.timed_out = msg == "timeout"
    return Quantity("epsilon", proved, refuted, steps, None, stats, msg,
                    not_proved_verdict=_verdict_at(steps, "epsilon", refuted))


def _fewest_bits(network, inputs, prop, family, cfg, progress, step_timeout=None, client=None) -> Quantity:
    from hybridq.perturbation import format_family

    name, _, opts = family.partition(":")
    members = format_family(name, network, options=opts)
    t_start = time.perf_counter()
    t_end = None if cfg.timeout is None else t_start + cfg.timeout
    stats, steps = Stats(), []

    def test(i):
        bits, spec = members[i]
        res, dt = _run_step(network, spec, inputs, prop, cfg, t_end, progress, step_timeout, client)
        stats.add(res.stats)
        steps.append(_step_record("bits", bits, spec, res, dt))
        return res.verdict == "robust"

    # invariant: members[good] proved robust, members[bad] not proved (bad < good)
    good, bad, msg = None, -1, ""
    if test(len(members) - 1):
        good = len(members) - 1
        while good - bad > 1:
            msg = _stop_reason(stats, t_end)
            if msg:
                break
            mid = (good + bad) // 2
            if test(mid):
                good = mid
            else:
                bad = mid
    else:
        bad = len(members) - 1
        msg = "interrupted" if stats.interrupted else msg
    stats.time["total"] = time.perf_counter() - t_start
    upper = float(members[good][0]) if good is not None else math.inf
    lower = float(members[bad][0]) if bad >= 0 else 0.0
    stats.timed_out = msg == "timeout"
    return Quantity("bits", lower, upper, steps, None, stats, msg,
                    not_proved_verdict=_verdict_at(steps, "bits", lower))


def _step_record(key: str, value, spec, res, seconds: float) -> dict:
    """One bisection step as reported: the value tried, its verdict (``robust``, ``not_robust``:
    refuted by an exactly re-checked counterexample, ``unknown``: not decided in its budget), why
    it is unknown, and its time."""
    d = {key: value}
    if spec is not None:
        d["spec"] = spec
    d.update(verdict=res.verdict, message=res.message, seconds=seconds)
    return d


def _verdict_at(steps: list, key: str, value) -> str:
    """The verdict of the step that tried ``value`` (``""`` when none did)."""
    for st in reversed(steps):
        if st[key] == value:
            return st["verdict"]
    return ""
