"""SMT outcomes (plain values) and the backend interface shared by z3 and dReal.

A backend decides one cell (an input box, the parameter box and optional phase clips and neuron
bounds) for one property and answers with a value, never an exception:

* :class:`Unsat` -- no ``(x, theta)`` in the cell violates the property (a proof);
* :class:`Sat` -- a violation ``(x, params)`` with ``params`` inside the box, *re-checked exactly*
  with ``prop.check_exact`` and ``perturbation.contains``;
* :class:`Unknown` -- timeout, an encoding the backend cannot express, or a solver model
  (including a dReal delta-sat box) that did not re-check exactly (``kind="unconfirmed"``).

The common driver :meth:`Backend.check` encodes (:mod:`hybridq.smt.encode`), solves, maps a model
back to concrete float64 weights and re-checks it; when the rounded model fails the re-check it
retries with the input fixed at the rounded point and with a small violation margin before giving
up with ``Unknown(kind="unconfirmed")``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from hybridq.cell import Cell
from hybridq.smt import encode as enc

__all__ = ["Unsat", "Sat", "Unknown", "Outcome", "Backend", "SolverAnswer"]

logger = logging.getLogger(__name__)

#: Unknown kinds.
UNKNOWN_KINDS = ("timeout", "unsupported", "unconfirmed", "unknown")


@dataclass(frozen=True)
class Unsat:
    """The cell holds no violation (proved)."""

    time_s: float = 0.0
    stats: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Sat:
    """A violation re-checked exactly.

    Parameters
    ----------
    x : (n_in,) float64, or object array of floats and Fractions
        Raw input inside the cell's input box (and inside the exact input box when one was given:
        a coordinate at a decimal end that is not a float64 is that exact Fraction).
    params : Params
        Concrete float64 parameters inside the perturbation box.
    time_s : float
        Wall time of the query (s).
    """

    x: np.ndarray
    params: tuple
    time_s: float = 0.0
    stats: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Unknown:
    """No verdict.

    Parameters
    ----------
    reason : str
        Human-readable reason.
    kind : str
        ``"timeout"``, ``"unsupported"`` (the backend cannot express the query),
        ``"unconfirmed"`` (a (delta-)sat model that did not re-check exactly) or ``"unknown"``.
    """

    reason: str
    kind: str = "unknown"
    time_s: float = 0.0
    stats: dict = field(default_factory=dict, compare=False)


Outcome = Unsat | Sat | Unknown


@dataclass
class SolverAnswer:
    """What a backend's raw solve returns: ``status`` in sat/unsat/unknown, a value getter for
    sat (term -> Fraction or None), a reason for unknown."""

    status: str
    value: Any = None
    reason: str = ""
    timeout: bool = False


class Backend:
    """Base class of the SMT backends.

    Subclasses set :attr:`name`, :attr:`capabilities` and implement :meth:`arith` (a fresh
    term builder, see :class:`hybridq.smt.encode.Arith`) and :meth:`solve`.
    """

    name = "base"
    capabilities: frozenset = frozenset()

    def arith(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def solve(self, ar, formula, timeout: float) -> SolverAnswer:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ driver
    def check(self, network, perturbation, cell: Cell, prop, timeout: float, neuron_bounds=None,
              encoding: str = "reduced", ibp: bool | None = None, box=None) -> Outcome:
        """Decide one cell.

        Parameters
        ----------
        network : Network
        perturbation : Perturbation
            Parameter box (centre may differ from ``network.params``; deviation compares
            against ``network.params``).
        cell : Cell
            Input box (raw space) and phase clips on the perturbed pre-activations.
        prop : Deviation | Decision | OutputConstraint
        timeout : float
            Seconds for the whole call (all retries together).
        neuron_bounds : object, optional
            With ``pre_lo/pre_hi`` and ``nom_pre_lo/nom_pre_hi`` (lists per layer of ``(n_k,)``
            or ``(1, n_k)`` arrays): sound bounds of the perturbed / nominal pre-activations on
            this cell; added as constraints and used to fix stable neurons.
        encoding : {"reduced", "pure"}
            The per-neuron-noise encoding (DESIGN.md §2) or the seed paper's every-weight-a-variable
            encoding (Murthy, Das, Islam, arXiv:1903.10672).
        ibp : bool, optional
            Add exact interval bounds of every neuron (default: on for ``reduced``, off for ``pure``).
        box : InputBox, optional
            The problem's exact input box (decimal ends as the user wrote them); the query ranges
            over the cell intersected with it, so a model is a point of the user's box.

        Returns
        -------
        Unsat | Sat | Unknown

        Raises
        ------
        ValueError
            Shapes of the cell, bounds or property that do not match the network.
        PerturbationError
            A perturbation whose shapes do not match the network.
        """
        t0 = time.perf_counter()
        deadline = t0 + max(float(timeout), 0.0)
        q = enc.Query.build(network, perturbation, cell, prop, neuron_bounds, encoding,
                            (encoding == "reduced") if ibp is None else bool(ibp), box)
        out = self._decide(q, deadline)
        object.__setattr__(out, "time_s", time.perf_counter() - t0)
        out.stats.setdefault("encoding", encoding)
        out.stats.setdefault("backend", self.name)
        return out

    def _solve_query(self, q: "enc.Query", deadline: float, margin: Fraction = Fraction(0),
                     x_fixed: np.ndarray | None = None):
        ar = self.arith()
        try:
            e = enc.encode(ar, q, margin=margin, x_fixed=x_fixed)
        except enc.EncodingUnsupported as err:
            return None, SolverAnswer("unknown", reason=str(err)), "unsupported"
        if e.trivially_false:
            return e, SolverAnswer("unsat"), ""
        formula = e.formula(ar)  # (seconds on a large query: counted before the solver's limit is set)
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return e, SolverAnswer("unknown", reason="timeout before solving", timeout=True), "timeout"
        ans = self.solve(ar, formula, remaining)
        return e, ans, ("timeout" if ans.timeout else "unknown")

    def _decide(self, q: "enc.Query", deadline: float) -> Outcome:
        e, ans, kind = self._solve_query(q, deadline)
        if ans.status == "unsat":
            return Unsat()
        if ans.status != "sat":
            return Unknown(ans.reason or "solver returned unknown", kind)
        x0, hit = self._confirm(q, e, ans)
        if hit is not None:
            return Sat(hit[0], hit[1], stats={"retries": 0})
        # the rounded model missed; retry with x fixed at the rounded point and small margins
        scale = q.violation_scale()
        tries = [(Fraction(0), x0), (scale * Fraction(1, 2**40), x0), (scale * Fraction(1, 2**24), x0),
                 (scale * Fraction(1, 2**20), None)]
        for i, (m, xf) in enumerate(tries, start=1):
            if time.perf_counter() >= deadline:
                break
            e2, ans2, _ = self._solve_query(q, deadline, margin=m, x_fixed=xf)
            if ans2.status != "sat":
                continue
            _, hit = self._confirm(q, e2, ans2)
            if hit is not None:
                return Sat(hit[0], hit[1], stats={"retries": i})
        return Unknown("solver model did not re-check exactly after rounding to float64", "unconfirmed")

    def _confirm(self, q: "enc.Query", e: "enc.Encoding", ans: SolverAnswer):
        """Map a model to float64 ``(x, params)`` and re-check it exactly.

        Returns ``(x, hit)``: the rounded input, and ``(x, params)`` or None when the re-check fails.
        """
        x_model = [v if isinstance(v, Fraction) else ans.value(v) for v in e.x_terms]
        z_model = [[v if isinstance(v, Fraction) else ans.value(v) for v in layer] for layer in e.z_terms]
        x, params = enc.pullback(q, x_model, z_model)
        if q.confirm(x, params):
            return x, (x, params)
        if any(isinstance(v, Fraction) and Fraction(float(v)) != v for v in x_model):
            xe, pe = enc.pullback(q, x_model, z_model, exact_x=True)  # the model's exact point
            if q.confirm(xe, pe):
                return xe, (xe, pe)
        return x, None
