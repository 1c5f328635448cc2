"""SMT backends behind one small interface, and the backend table.

``get_backend(name)`` returns a backend object with
``check(network, perturbation, cell, prop, timeout, neuron_bounds=None) -> Unsat | Sat | Unknown``
(see :mod:`hybridq.smt.base`).  Backends are imported lazily; a missing one raises
:class:`hybridq.errors.BackendUnavailableError` whose message says what to install.
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
}

#: Preference order for ``auto``.
PREFERENCE = ("dreal", "z3")


def get_backend(name: str = "auto", **options) -> Backend:
    """Instantiate a backend by name.

    Parameters
    ----------
    name : {"auto", "z3", "dreal"}
        ``auto`` picks the first importable backend in :data:`PREFERENCE`.
    **options
        Passed to the backend's constructor (z3: ``seed``, ``logic``, ``rlimit``; dreal: ``delta``).

    Raises
    ------
    BackendUnavailableError
        The backend cannot be imported (the message says what to install).
    ValueError
        An unknown backend name.
    """
    if name == "auto":
        errors = []
        for n in PREFERENCE:
            try:
                return get_backend(n, **{k: v for k, v in options.items() if _accepts(n, k)})
            except BackendUnavailableError as err:
                errors.append(str(err))
        raise BackendUnavailableError("no SMT backend available: " + " | ".join(errors))
    if name not in BACKENDS:
        raise ValueError(f"unknown SMT backend {name!r}; available names: auto, {', '.join(BACKENDS)}")
    spec = BACKENDS[name]
    mod = importlib.import_module(spec.module)
    return getattr(mod, spec.cls)(**options)


def _accepts(name: str, option: str) -> bool:
    return {"z3": {"seed", "logic", "rlimit"}, "dreal": {"delta"}}.get(name, set()).__contains__(option)


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
    return b.check(network, perturbation, cell, prop, timeout, encoding="pure", ibp=ibp)
