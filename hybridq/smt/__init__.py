"""Exact backends behind one small interface, and the backend table.

``get_backend(name)`` returns a backend object with
``check(network, perturbation, cell, prop, timeout, neuron_bounds=None) -> Unsat | Sat | Unknown``
(see :mod:`hybridq.smt.base`).  Backends are imported lazily; a missing one raises
:class:`hybridq.errors.BackendUnavailableError` whose message says what to install.

``auto`` chooses per cell by what the query is, never by what happens to be installed
(:class:`AutoBackend`): the certified MILP stage (:mod:`hybridq.smt.milp`) for relu / identity
networks, z3 for the other piecewise-linear ones, dReal only for sigmoid / tanh / softmax scores
where it is importable (z3 otherwise).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from hybridq.errors import BackendUnavailableError
from hybridq.smt.base import Backend, Outcome, Sat, Unknown, Unsat

__all__ = [
    "BACKENDS",
    "PREFERENCE",
    "BackendSpec",
    "AutoBackend",
    "Backend",
    "Outcome",
    "Sat",
    "Unknown",
    "Unsat",
    "backends_table",
    "get_backend",
    "pure_smt",
]


@dataclass(frozen=True)
class BackendSpec:
    """One row of the backend table."""

    name: str
    module: str
    cls: str
    package: str
    capabilities: frozenset
    install: str


#: name -> spec; the capabilities follow pysmt's logic names plus "delta" (delta-complete) and
#: "transcendental" (sigmoid/tanh/exp).
BACKENDS: dict[str, BackendSpec] = {
    "dreal": BackendSpec(
        "dreal", "hybridq.smt.dreal", "DrealBackend", "dreal",
        frozenset({"LRA", "NRA", "delta", "transcendental"}),
        "pip install 'hybridq[dreal]' (PyPI package dreal) plus dReal's IBEX 2.7.4 build providing libibex.so "
        "(Ubuntu: dReal's setup/ubuntu/<version>/install.sh from github.com/dreal/dreal4; macOS: its "
        "setup/mac/install.sh / Homebrew tap dreal/dreal)",
    ),
    "z3": BackendSpec(
        "z3", "hybridq.smt.z3", "Z3Backend", "z3-solver",
        frozenset({"LRA", "NRA"}),
        "pip install z3-solver",
    ),
    "milp": BackendSpec(
        "milp", "hybridq.smt.milp", "MilpBackend", "highspy",
        frozenset({"LRA", "MILP"}),
        "pip install highspy",
    ),
}

#: Order of the table (``hybridq backends``); ``auto`` chooses per cell (:class:`AutoBackend`).
PREFERENCE = ("milp", "z3", "dreal")

#: Options each backend's constructor accepts (``auto`` passes each backend its own).
_OPTIONS = {"z3": {"seed", "logic", "rlimit", "confirm"}, "dreal": {"delta", "restart"}, "milp": {"find_share"}}


def get_backend(name: str = "auto", **options) -> Backend:
    """Instantiate a backend by name.

    Parameters
    ----------
    name : {"auto", "milp", "z3", "dreal"}
        ``auto``: an :class:`AutoBackend` choosing per cell.
    **options
        Passed to the backend's constructor (z3: ``seed``, ``logic``, ``rlimit``, ``confirm``;
        dreal: ``delta``; milp: ``find_share``); ``auto`` passes each backend the ones it accepts.

    Raises
    ------
    BackendUnavailableError
        The backend cannot be imported (the message says what to install).
    ValueError
        An unknown backend name.
    """
    if name == "auto":
        return AutoBackend(**options)
    if name not in BACKENDS:
        raise ValueError(f"unknown SMT backend {name!r}; available names: auto, {', '.join(BACKENDS)}")
    spec = BACKENDS[name]
    mod = importlib.import_module(spec.module)
    return getattr(mod, spec.cls)(**options)


def _accepts(name: str, option: str) -> bool:
    return option in _OPTIONS.get(name, set())


class AutoBackend:
    """Chooses the backend per cell by what the query is (DESIGN.md §3), not by what is installed.

    * relu / identity hidden layers (a MILP, :data:`hybridq.milp.model.MILP_ACTIVATIONS`): ``milp``,
      then ``z3`` if the MILP stage cannot express the query (a score-space deviation on a box);
    * other piecewise-linear networks (leaky relu, hardtanh): ``z3``;
    * sigmoid / tanh hidden layers or softmax / sigmoid scores: ``dreal`` where it imports (the
      reference for transcendental functions), else ``z3`` (which answers ``unsupported`` when the
      query needs them).

    So installing dReal never changes how a piecewise-linear cell is decided.  On the other cells
    dReal is the only engine that can decide them exactly, but measured on random sigmoid / tanh
    networks its calls on wide cells mostly ran into their limits (bench/results/dreal.md), time
    that the bound pass and splitting would have used to decide the run without dReal.  So calls
    that end without an answer may use at most ``dreal_share`` of the wall time since this
    object's first dReal call, plus ``dreal_first`` seconds: each call's limit is cut to what is
    left of that allowance, and no call is made while less than ``DREAL_MIN_CALL`` is left, or
    less than ``DREAL_START`` when the dReal worker process is not running (the answer is then
    ``Unknown``, charged by the scheduler like any call without an answer).  After a call past
    its limit the worker is not restarted until the next call that is made (``restart=False``).
    Answered calls (unsat, or a re-checked counterexample) cost nothing against the allowance.

    Parameters
    ----------
    dreal_share : float
        Share of the wall time that dReal calls without an answer may use (default 0.1).
    dreal_first : float
        Seconds of such calls allowed from the start (default 0.2: at 0.5 a random tanh 2-4-1 box
        query took 1.6 s instead of 0.65 s, with no cell decided by dReal).
    **options
        Each backend gets the options it accepts (see :func:`get_backend`).

    Raises
    ------
    BackendUnavailableError
        Neither z3 nor the MILP stage imports.
    """

    name = "auto"
    capabilities = frozenset({"LRA", "NRA", "MILP"})
    #: dReal calls shorter than this are not made (seconds; below it even an easy cell is not decided).
    DREAL_MIN_CALL = 0.05
    #: ... and shorter than this when the dReal worker is not running (its start takes about 0.6 s
    #: on an idle machine, seconds under load; a shorter call would spend its limit on the start).
    DREAL_START = 1.0

    def __init__(self, dreal_share: float = 0.1, dreal_first: float = 0.2, **options) -> None:
        if not (0.0 <= dreal_share <= 1.0) or not (dreal_first >= 0.0):
            raise ValueError(f"dreal_share must be in [0, 1] and dreal_first >= 0, got {dreal_share}, {dreal_first}")
        self.dreal_share, self.dreal_first = float(dreal_share), float(dreal_first)
        self._dreal_t0: float | None = None  # first dReal call (perf_counter)
        self._dreal_spent = 0.0  # seconds of dReal calls that ended without an answer
        self.options = options
        self._made: dict = {}
        errors = []
        for n in ("milp", "z3"):
            try:
                self._get(n)
            except BackendUnavailableError as err:
                errors.append(str(err))
        if len(errors) == 2:
            raise BackendUnavailableError("no exact backend available: " + " | ".join(errors))

    def _get(self, name: str):
        if name not in self._made:
            opts = {k: v for k, v in self.options.items() if _accepts(name, k)}
            if name == "dreal":
                opts["restart"] = False
            try:
                self._made[name] = get_backend(name, **opts)
            except BackendUnavailableError as err:
                self._made[name] = err
        b = self._made[name]
        if isinstance(b, BackendUnavailableError):
            raise b
        return b

    def choose(self, network, prop) -> tuple[str, ...]:
        """Backend names to try for a query, in order (the first that imports and can express it)."""
        from hybridq.milp.model import MILP_ACTIVATIONS
        from hybridq.properties import Deviation

        acts = {l.activation for l in network.layers}
        score = isinstance(prop, Deviation) and prop.space == "score" and network.output != "identity"
        if acts <= set(MILP_ACTIVATIONS):
            return ("milp", "z3") if not (score and network.output == "softmax") else ("dreal", "z3")
        if network.is_piecewise_linear and not (score and network.output == "softmax"):
            return ("z3",)
        return ("dreal", "z3")

    def check(self, network, perturbation, cell, prop, timeout, neuron_bounds=None, encoding="reduced", ibp=None,
              box=None, start=None, prove_it=True, best=False, find_share=None):
        """See :meth:`hybridq.smt.base.Backend.check`; the answer's ``stats["backend"]`` names the
        backend that gave it; ``start``, ``prove_it``, ``best`` and ``find_share`` go to the milp stage (see
        :meth:`hybridq.smt.milp.MilpBackend.check`; without ``prove_it`` no other backend runs).
        A backend that ends without an answer before the time is up (not a timeout: e.g. the MILP
        stage's float bound cannot beat a threshold that only exact arithmetic separates, a decimal constant of the spec) hands the rest of the time to the next."""
        import time

        t_end = time.perf_counter() + max(float(timeout), 0.0)
        out = None
        for n in self.choose(network, prop):
            try:
                b = self._get(n)
            except BackendUnavailableError:
                continue
            left = max(0.0, t_end - time.perf_counter())
            if not prove_it and n != "milp":  # a search-only call is the milp stage's alone
                continue
            if n == "dreal":
                t = time.perf_counter()
                if self._dreal_t0 is None:
                    self._dreal_t0 = t
                allow = self.dreal_first + self.dreal_share * (t - self._dreal_t0) - self._dreal_spent
                if allow < (self.DREAL_MIN_CALL if b.worker_ready() else self.DREAL_START):
                    out = Unknown(f"dReal's share of the run ({self.dreal_share:g} of the wall time) is spent",
                                  "unknown", stats={"backend": "dreal"})
                    continue
                out = b.check(network, perturbation, cell, prop, min(left, allow),
                              neuron_bounds=neuron_bounds, encoding=encoding, ibp=ibp, box=box)
                if isinstance(out, Unknown):
                    self._dreal_spent += time.perf_counter() - t
            else:
                kw = {"start": start, "prove_it": prove_it, "best": best, "find_share": find_share} if n == "milp" else {}
                out = b.check(network, perturbation, cell, prop, left,
                              neuron_bounds=neuron_bounds, encoding=encoding, ibp=ibp, box=box, **kw)
                if not prove_it:
                    return out
            if not (isinstance(out, Unknown) and out.kind != "timeout" and time.perf_counter() < t_end):
                return out
        if out is None:
            return Unknown("no backend available for this query", "unsupported")
        return out


def backends_table() -> list[tuple[str, bool, tuple[str, ...], str]]:
    """Rows ``(name, available, capabilities, install hint or the unavailability message)`` in
    preference order (for ``hybridq backends``)."""
    rows = []
    for n in PREFERENCE:
        spec = BACKENDS[n]
        try:
            get_backend(n)
            ok, hint = True, spec.install
        except BackendUnavailableError as err:
            ok, hint = False, str(err)
        rows.append((n, ok, tuple(sorted(spec.capabilities)), hint))
    return rows


def pure_smt(network, perturbation, inputs, prop, backend: "str | Backend" = "z3", timeout: float = 60.0,
             ibp: bool = False) -> Outcome:
    """The seed paper's pure-SMT check (every weight and bias a real variable; Murthy, Das, Islam,
    arXiv:1903.10672): the benchmark baseline and an independent cross-check.

    Parameters
    ----------
    network : Network
    perturbation : Perturbation
    inputs : InputBox, (n_in,) point or (lower, upper) pair
    prop : Deviation | Decision | OutputConstraint
    backend : str or Backend
        Backend name (``z3``, ``dreal``, ``auto``) or a backend object.
    timeout : float
        Seconds.
    ibp : bool
        Add exact interval bounds of every neuron (off: the paper's plain encoding).

    Returns
    -------
    Unsat | Sat | Unknown
    """
    from hybridq.cell import Cell
    from hybridq.inputs import as_input_box

    box = as_input_box(inputs)
    box.check_dim(network.n_in)
    cell = Cell.root(box.lower, box.upper, sum(l.n_out for l in network.layers))
    b = get_backend(backend) if isinstance(backend, str) else backend
    return b.check(network, perturbation, cell, prop, timeout, encoding="pure", ibp=ibp, box=box)
