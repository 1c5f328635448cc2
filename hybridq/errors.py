"""The one exception tree of hybridq.

Every error a user can cause derives from :class:`HybridqError`; messages name the
file, layer, op or value at fault and what is supported.  ``ValueError`` is kept for
plain argument errors of library calls (empty or inverted boxes, shape mismatches).
"""

from __future__ import annotations

__all__ = [
    "HybridqError",
    "ModelFormatError",
    "UnsupportedLayerError",
    "PerturbationError",
    "ConfigError",
    "BackendUnavailableError",
    "ClusterError",
]


class HybridqError(Exception):
    """Base class of every hybridq error."""


class ModelFormatError(HybridqError, ValueError):
    """A network file or array set is malformed, truncated, inconsistent or non-finite."""


class UnsupportedLayerError(ModelFormatError):
    """A network uses an operator or activation hybridq does not support."""


class PerturbationError(HybridqError, ValueError):
    """A perturbation spec is invalid, or a parameter overflows / saturates a number format."""


class ConfigError(HybridqError, ValueError):
    """A run configuration (TOML or keyword) has an unknown key or an invalid value."""


class BackendUnavailableError(HybridqError, RuntimeError):
    """A requested SMT backend cannot be imported; the message says what to install."""


class ClusterError(HybridqError, OSError):
    """A Dask cluster cannot be used: ``distributed`` is not installed, the scheduler address is
    unreachable or malformed, or a local cluster cannot be started."""
