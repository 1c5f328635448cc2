"""Public entry points of the branch and bound: problem validation and :func:`verify`."""

from __future__ import annotations

import numpy as np

from hybridq.bab.scheduler import run_bab
from hybridq.config import RunConfig, make_config
from hybridq.inputs import as_input_box
from hybridq.properties import Decision, Deviation, OutputConstraint
from hybridq.result import Result

__all__ = ["check_problem", "verify", "describe"]

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
           workers=None, executor=None, **options) -> Result:
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
    workers : hybridq.bab.executors.WorkerPool or None
        Worker processes shared by many runs (:func:`hybridq.batch.run_batch` keeps one per
        batch); ``None``: the run starts its own when it lasts long enough.
    executor : distributed.Client or None
        Run the branch and bound's chunks on this Dask cluster (``jobs`` and ``workers`` are then
        unused); the result is the same as with ``jobs=1``.  A cluster lost mid-run gives an
        ``unknown`` (interrupted) result with what was decided until then.

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
        ``perturbation`` or ``property`` of the wrong type, or ``executor`` not a Dask client.
    ClusterError
        ``executor`` given but ``distributed`` missing or the client not connected.
    """
    from hybridq.bab.cluster import as_client

    client = as_client(executor)
    if isinstance(perturbation, str):
        from hybridq.perturbation import perturbation as make_perturbation

        perturbation = make_perturbation(perturbation, network)
    if isinstance(property, Decision):  # sense None: the network's (ACAS Xu: argmin)
        property = property.resolve(network)
    box = check_problem(network, perturbation, inputs, property)
    given = {"backend": backend, "jobs": jobs, "timeout": timeout, "seed": seed}
    if config is not None:  # explicit arguments override the config only where they differ from the defaults
        given = {k: v for k, v in given.items() if v != {"backend": "auto", "seed": 0}.get(k)}
    cfg = make_config(config, **given, **options)
    check_backend(cfg.backend)
    out = run_bab(network, perturbation, box, property, cfg, "verify", progress=progress, workers=workers,
                  executor=client)
    from hybridq.report import describe_problem, settings_dict

    describe(out.counterexample, network, perturbation, property)
    return Result(out.verdict, property, out.counterexample, out.bound, out.stats, out.leaves, out.message,
                  deviation_bound=out.deviation_bound, problem=describe_problem(network, perturbation, [box], property),
                  settings=settings_dict(cfg))


def check_backend(name: str) -> None:
    """Fail early, with the install message, when backend ``name`` is missing.  ``auto`` is only
    looked up (``importlib.util.find_spec``), not imported: a run that the bound pass decides never
    pays for importing the exact stages (scipy, highspy, z3: over half a second); the engine builds
    the backend when a cell first needs it."""
    if name == "none":
        return
    from hybridq.smt import get_backend

    if name == "auto":
        import importlib.util

        if importlib.util.find_spec("z3") is not None or importlib.util.find_spec("highspy") is not None:
            return
    get_backend(name)


def describe(cex, network, perturbation, prop) -> None:
    """Fill a counterexample's float outputs, violated constraint, property and spec (for the
    JSON result and the ``.npz`` file); nothing for ``None``."""
    if cex is None:
        return
    from hybridq.report import explain_counterexample, property_dict

    info = explain_counterexample(network, prop, cex.x, cex.params)
    cex.outputs_nominal = np.asarray(info["outputs_nominal"])
    cex.outputs_perturbed = np.asarray(info["outputs_perturbed"])
    cex.violated = info["violated"]
    cex.property = property_dict(prop)
    cex.spec = perturbation if isinstance(perturbation, str) else getattr(perturbation, "spec", None)
