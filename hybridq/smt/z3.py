"""The z3 backend: exact rational arithmetic (LRA for the reduced encoding of piecewise-linear
networks, NRA for the pure encoding).  Sigmoid / tanh hidden layers cannot be expressed: the
query returns ``Unknown(kind="unsupported")`` with the reason."""

from __future__ import annotations

import logging
import time
from fractions import Fraction

from hybridq import interrupt
from hybridq.errors import BackendUnavailableError
from hybridq.smt.base import Backend, SolverAnswer
from hybridq.smt.encode import EncodingUnsupported

__all__ = ["Z3Backend", "Z3Arith"]

logger = logging.getLogger(__name__)


def _import_z3():
    try:
        import z3  # noqa: PLC0415 - lazy: only when the backend is used
    except ImportError as err:  # pragma: no cover - z3-solver is a hard dependency
        raise BackendUnavailableError(
            f"z3 backend unavailable: `import z3` failed ({err}); install it with `pip install z3-solver`"
        ) from None
    return z3


class Z3Arith:
    """Term builder on a private ``z3.Context`` (so queries may run in threads)."""

    def __init__(self) -> None:
        self.z3 = _import_z3()
        self.ctx = self.z3.Context()

    def real(self, name: str):
        return self.z3.Real(name, self.ctx)

    def const(self, q: Fraction):
        q = Fraction(q)
        return self.z3.RealVal(f"{q.numerator}/{q.denominator}", self.ctx)

    def sum(self, terms: list):
        return terms[0] if len(terms) == 1 else self.z3.Sum(terms)

    def scale(self, q: Fraction, t):
        if q == 1:
            return t
        if q == -1:
            return -t
        return self.const(q) * t

    def mul(self, a, b):
        return a * b

    def ite(self, c, a, b):
        return self.z3.If(c, a, b)

    def and_(self, fs: list):
        return self.z3.And(fs) if fs else self.z3.BoolVal(True, self.ctx)

    def or_(self, fs: list):
        return self.z3.Or(fs) if fs else self.z3.BoolVal(False, self.ctx)

    def abs(self, t):
        return self.z3.If(t >= 0, t, -t)

    def boolval(self, b: bool):
        return self.z3.BoolVal(bool(b), self.ctx)

    def sigmoid(self, t):
        raise EncodingUnsupported("z3 cannot express sigmoid (transcendental); use the dreal backend "
                                  "or let the bound pass refine the cell")

    def tanh(self, t):
        raise EncodingUnsupported("z3 cannot express tanh (transcendental); use the dreal backend "
                                  "or let the bound pass refine the cell")

    def exp(self, t):
        raise EncodingUnsupported("z3 cannot express exp (transcendental); use the dreal backend")


class Z3Backend(Backend):
    """z3 (``pip install z3-solver``): exact rationals; sound Unsat, models re-checked exactly.

    Parameters
    ----------
    seed : int
        z3's random seed (``random_seed``), for reproducible runs.
    logic : str or None
        Which z3 engine decides a query.  ``"portfolio"`` (default): z3's nlsat/MCSat engine
        (``SolverFor("QF_NRA")``) for the first tenth of the time (and resource limit), then
        z3's default solver (simplex-based LRA / its NRA tactics) for the rest; the first is fast on
        satisfiable and easy queries (about 2x faster, 3x fewer timeouts than the default solver
        on the random networks of ``tests/test_smt_crosscheck.py``), the second proves tight unsat
        queries the first times out on (2-16-16-1 at a point near the maximum deviation: 15 s vs
        > 60 s; 2-8-8-1 on a box: 20 s vs > 60 s), the common case for cells the attack could not
        refute.  A logic name (``"QF_NRA"``, ``"QF_LRA"``): ``z3.SolverFor(logic)`` alone;
        ``None``: ``z3.Solver()`` alone.
    rlimit : int, optional
        z3's deterministic resource limit per solver call (on top of the wall-clock timeout);
        exhausting it is reported like a timeout.  Makes runs reproducible across machine loads.
    confirm : bool
        Give every ``Unsat`` a second, independent confirmation within the call's remaining time
        (:meth:`check`); its result is ``stats["confirmed"]`` (``"milp"``, ``"z3-lra"`` or None).
    """

    name = "z3"
    capabilities = frozenset({"LRA", "NRA"})

    def __init__(self, seed: int = 0, logic: str | None = "portfolio", rlimit: int | None = None,
                 confirm: bool = True) -> None:
        self.seed = int(seed)
        self.logic = logic
        self.rlimit = None if rlimit is None else int(rlimit)
        self.confirm = bool(confirm)
        _import_z3()

    def check(self, network, perturbation, cell, prop, timeout, neuron_bounds=None, encoding="reduced", ibp=None,
              box=None):
        """See :meth:`hybridq.smt.base.Backend.check`.

        An ``Unsat`` is confirmed by an independent engine where one is cheap: the certified MILP
        stage (:mod:`hybridq.smt.milp`; a different solver, encoding and arithmetic) for relu /
        identity networks -- for the pure encoding too, which asks the same question -- else, for
        other piecewise-linear networks in the reduced (linear) encoding, z3's simplex-based
        ``QF_LRA`` solver instead of the nlsat engine.  A confirmation that finds an exactly
        re-checked counterexample overrules z3 (logged as an error: a z3 bug); one that does not
        finish in the remaining time leaves ``stats["confirmed"] = None``.
        """
        t0 = time.perf_counter()
        out = super().check(network, perturbation, cell, prop, timeout, neuron_bounds, encoding, ibp, box)
        if not (self.confirm and type(out).__name__ == "Unsat"):
            return out
        left = float(timeout) - (time.perf_counter() - t0)
        out.stats["confirmed"] = None
        if left <= 0:
            return out
        from hybridq.milp.model import MILP_ACTIVATIONS
        from hybridq.properties import Deviation

        score = isinstance(prop, Deviation) and prop.space == "score" and network.output != "identity"
        if all(l.activation in MILP_ACTIVATIONS for l in network.layers) and not score:
            from hybridq.smt.milp import MilpBackend

            second, tag = MilpBackend(), "milp"
            kw = {"neuron_bounds": neuron_bounds}
        elif network.is_piecewise_linear and encoding == "reduced" and not score:
            second, tag = Z3Backend(self.seed, logic="QF_LRA", rlimit=self.rlimit, confirm=False), "z3-lra"
            kw = {"neuron_bounds": neuron_bounds, "encoding": encoding, "ibp": ibp}
        else:
            return out
        conf = second.check(network, perturbation, cell, prop, left, box=box, **kw)
        kind = type(conf).__name__
        if kind == "Sat":
            logger.error("z3 answered unsat but %s found an exactly re-checked violation; reporting the violation",
                         tag)
            conf.stats["overruled"] = "z3 unsat"
            return conf
        if kind == "Unsat":
            out.stats["confirmed"] = tag
        return out

    def arith(self) -> Z3Arith:
        return Z3Arith()

    def solve(self, ar: Z3Arith, formula, timeout: float) -> SolverAnswer:
        z3 = ar.z3
        if self.logic == "portfolio":
            phases = [("QF_NRA", 0.1), (None, 1.0)]
        else:
            phases = [(self.logic, 1.0)]
        t_end = time.perf_counter() + timeout
        stopped = SolverAnswer("unknown", reason="z3: interrupted (stop requested)")
        for i, (logic, share) in enumerate(phases):
            last = i == len(phases) - 1
            left = t_end - time.perf_counter()
            budget = left if last else timeout * share
            if budget <= 0:
                break
            if interrupt.requested():
                return stopped
            s = z3.Solver(ctx=ar.ctx) if logic is None else z3.SolverFor(logic, ctx=ar.ctx)
            s.set("timeout", max(1, int(budget * 1000)))
            s.set("random_seed", self.seed)
            # z3's own SIGINT handler (installed during check) would take a Ctrl-C for itself: the
            # check would end as unknown and the run go on as if nothing had been asked
            s.set("ctrl_c", False)
            if self.rlimit is not None:
                rl_share = (1.0 - sum(p[1] for p in phases[:i])) if last else share
                s.set("rlimit", max(1, int(self.rlimit * rl_share)))
            s.add(formula)
            # in a helper thread, so that a Ctrl-C / SIGTERM (the run's stop request) interrupts the
            # check at once (hybridq.interrupt), and so does the end of its budget (z3's own timeout
            # alone: a 0.2 s nlsat phase ran 1.3 s at load ~8); an interrupted check is unknown
            r = interrupt.call(s.check, ar.ctx.interrupt, time.perf_counter() + budget)
            if r == z3.unknown and interrupt.requested():
                return stopped
            if r != z3.unknown:
                break
        if r == z3.unsat:
            return SolverAnswer("unsat")
        if r == z3.unknown:
            why = s.reason_unknown()
            if why == "interrupted":  # Context.interrupt at the end of the budget (a stop request returned above)
                why = "timeout"
            to = why in ("timeout", "canceled") or "timeout" in why or "resource limit" in why
            return SolverAnswer("unknown", reason=f"z3: {why}", timeout=to)
        model = s.model()

        def value(term):
            v = model.eval(term, model_completion=True)
            if z3.is_rational_value(v):
                return Fraction(v.numerator_as_long(), v.denominator_as_long())
            if z3.is_algebraic_value(v):
                a = v.approx(40)
                return Fraction(a.numerator_as_long(), a.denominator_as_long())
            return None

        return SolverAnswer("sat", value=value)
