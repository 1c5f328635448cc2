"""The certified MILP/LP stage for piecewise-linear cells (DESIGN.md §3).

* :mod:`hybridq.milp.model` -- the exact MILP of a cell query (per-neuron noise, big-M ReLUs);
* :mod:`hybridq.milp.certify` -- rigorous LP bounds from any dual vector (Neumaier-Shcherbina);
* :mod:`hybridq.milp.search` -- HiGHS: a float search for violations, and a certified branch and
  bound over ReLU phases whose "proved" is a proof.

The backend that puts them behind the ``check`` interface is :mod:`hybridq.smt.milp`.  The names
below are imported on first use (PEP 562): a run that only asks whether its cells are MILP cells
(``MILP_ACTIVATIONS``) does not pay for scipy.sparse and HiGHS at start-up.
"""

__all__ = ["LpData", "safe_lower_bound", "safe_infeasible", "MILP_ACTIVATIONS", "MilpModel", "ModelUnsupported",
           "Objective", "build_model", "ProofResult", "find", "prove"]

_LAZY = {"LpData": "certify", "safe_infeasible": "certify", "safe_lower_bound": "certify",
         "MILP_ACTIVATIONS": "model", "MilpModel": "model", "ModelUnsupported": "model", "Objective": "model",
         "build_model": "model", "ProofResult": "search", "find": "search", "prove": "search"}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'hybridq.milp' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"hybridq.milp.{mod}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
