"""hybridq: prove (or refute with an exactly re-checked counterexample) that a feed-forward
network stays reliable when its parameters are quantized.

Public API (see README.md): the network model and loaders, perturbation models, properties and
input sets, the bound pass, the SMT backends, the verifier and quantification.
"""

from hybridq.errors import (
    BackendUnavailableError,
    ConfigError,
    HybridqError,
    ModelFormatError,
    PerturbationError,
    UnsupportedLayerError,
)
from hybridq.inputs import InputBox
from hybridq.network import Layer, Network
from hybridq.perturbation import Perturbation
from hybridq.properties import Decision, Deviation, OutputConstraint
from hybridq.io import load_network, load_vnnlib
from hybridq.perturbation import format_family, perturbation, quantize
from hybridq.bab import verify
from hybridq.quantify import quantify
from hybridq.result import Result
from hybridq.smt import Sat, Unknown, Unsat, backends_table, get_backend, pure_smt
from hybridq.bounds import OutputBounds, bounds
from hybridq.plot import plot_cells, plot_study

__version__ = "0.1.0"

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
    "PerturbationError",
    "UnsupportedLayerError",
    "load_network",
    "load_vnnlib",
    "perturbation",
    "quantize",
    "format_family",
    "verify",
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
