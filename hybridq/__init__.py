"""hybridq: prove (or refute with an exactly re-checked counterexample) that a feed-forward
network stays reliable when its parameters are quantized.

Public API (see README.md): the network model and loaders, perturbation models, properties and
input sets, the bound pass, the SMT backends, the verifier and quantification.
"""

import sys
import types

from hybridq.errors import (
    BackendUnavailableError,
    ConfigError,
    HybridqError,
    ModelFormatError,
    PerturbationError,
    UnsupportedLayerError,
)

__version__ = "0.1.0"

# The rest of the public API is imported on first use (PEP 562): ``import hybridq`` and
# ``hybridq --version`` / ``--help`` / input errors do not pay for numba, scipy, matplotlib or
# onnx.  ``from hybridq import verify`` works as before.
_LAZY = {
    "InputBox": "hybridq.inputs",
    "Layer": "hybridq.network",
    "Network": "hybridq.network",
    "Perturbation": "hybridq.perturbation",
    "Decision": "hybridq.properties",
    "Deviation": "hybridq.properties",
    "OutputConstraint": "hybridq.properties",
    "SameDecision": "hybridq.equivalence",
    "verify_same_decision": "hybridq.equivalence",
    "load_network": "hybridq.io",
    "load_vnnlib": "hybridq.io",
    "perturbation": "hybridq.perturbation",
    "quantize": "hybridq.perturbation",
    "format_family": "hybridq.perturbation",
    "verify": "hybridq.bab",
    "quantify": "hybridq.quantify",
    "Result": "hybridq.result",
    "Sat": "hybridq.smt",
    "Unknown": "hybridq.smt",
    "Unsat": "hybridq.smt",
    "backends_table": "hybridq.smt",
    "get_backend": "hybridq.smt",
    "pure_smt": "hybridq.smt",
    "bounds": "hybridq.bounds",
    "OutputBounds": "hybridq.bounds",
    "plot_cells": "hybridq.plot",
    "plot_study": "hybridq.plot",
}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'hybridq' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """Keeps the functions ``perturbation``, ``quantify`` and ``bounds`` as the package's
    attributes of those names: importing the submodules of the same names would otherwise replace
    them with the modules (the import system sets ``hybridq.<submodule>`` once it is loaded)."""

    def __setattr__(self, name, value):
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


_SHADOWED = ("perturbation", "quantify", "bounds")
sys.modules[__name__].__class__ = _Package


__all__ = [
    "BackendUnavailableError",
    "ConfigError",
    "Decision",
    "Deviation",
    "HybridqError",
    "InputBox",
    "Layer",
    "ModelFormatError",
    "Network",
    "OutputConstraint",
    "Perturbation",
    "SameDecision",
    "PerturbationError",
    "UnsupportedLayerError",
    "load_network",
    "load_vnnlib",
    "perturbation",
    "quantize",
    "format_family",
    "verify",
    "verify_same_decision",
    "quantify",
    "Result",
    "Sat",
    "Unknown",
    "Unsat",
    "backends_table",
    "get_backend",
    "pure_smt",
    "bounds",
    "OutputBounds",
    "plot_cells",
    "plot_study",
]
