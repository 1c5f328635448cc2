"""The certified MILP/LP stage for piecewise-linear cells (DESIGN.md §3).

* :mod:`hybridq.milp.model` -- the exact MILP of a cell query (per-neuron noise, big-M ReLUs);
* :mod:`hybridq.milp.certify` -- rigorous LP bounds from any dual vector (Neumaier-Shcherbina);
* :mod:`hybridq.milp.search` -- HiGHS: a float search for violations, and a certified branch and
  bound over ReLU phases whose "proved" is a proof.

The backend that puts them behind the ``check`` interface is :mod:`hybridq.smt.milp`.
"""

from hybridq.milp.certify import LpData, safe_infeasible, safe_lower_bound
from hybridq.milp.model import MILP_ACTIVATIONS, MilpModel, ModelUnsupported, Objective, build_model
from hybridq.milp.search import ProofResult, find, prove

__all__ = ["LpData", "safe_lower_bound", "safe_infeasible", "MILP_ACTIVATIONS", "MilpModel", "ModelUnsupported",
           "Objective", "build_model", "ProofResult", "find", "prove"]
