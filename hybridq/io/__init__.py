"""Network file formats: ``.nnet``, ONNX, ``.npz``; VNNLIB properties."""

from __future__ import annotations

from pathlib import Path

from hybridq.errors import ModelFormatError
from hybridq.io.vnnlib import decision_label, load_vnnlib
from hybridq.network import Network

__all__ = ["load_network", "load_vnnlib", "decision_label", "LOADERS"]

#: File suffix -> loader module and function name (imported lazily).
LOADERS = {
    ".nnet": ("hybridq.io.nnet", "load_nnet"),
    ".onnx": ("hybridq.io.onnx", "load_onnx"),
    ".npz": ("hybridq.io.npz", "load_npz"),
}


def load_network(path: str | Path) -> Network:
    """Load a network, choosing the reader by the file suffix (the file is only read).

    Parameters
    ----------
    path : str or Path
        A ``.nnet`` (ACAS Xu text format), ``.onnx`` or ``.npz`` (:meth:`Network.save`) file.

    Returns
    -------
    Network

    Raises
    ------
    ModelFormatError
        Unknown suffix, missing file, or a malformed file (see :func:`hybridq.io.nnet.load_nnet`,
        :func:`hybridq.io.onnx.load_onnx`, :func:`hybridq.io.npz.load_npz`).
    UnsupportedLayerError
        An op or activation hybridq does not support.
    """
    import importlib

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LOADERS:
        raise ModelFormatError(
            f"{path}: unknown network file suffix {path.suffix!r}; supported: {', '.join(LOADERS)}"
        )
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    module, func = LOADERS[suffix]
    return getattr(importlib.import_module(module), func)(path)
