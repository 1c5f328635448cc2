"""Network file formats: ``.nnet``, ONNX, ``.npz``; VNNLIB properties."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from hybridq.errors import ModelFormatError
from hybridq.io.compressed import format_suffix
from hybridq.io.vnnlib import decision_label, load_vnnlib
from hybridq.network import Network

__all__ = ["load_network", "load_vnnlib", "decision_label", "is_acasxu", "LOADERS"]

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
        A ``.nnet`` (ACAS Xu text format), ``.onnx`` or ``.npz`` (:meth:`Network.save`) file, or one
        of them gzip-compressed (``NAME.onnx.gz``, ...; :mod:`hybridq.io.compressed`).

    Returns
    -------
    Network
        Its ``decision_sense`` is ``"min"`` for the ACAS Xu networks (see :func:`is_acasxu`: the
        Reluplex ``.nnet`` files by their input clamp, the VNN-COMP ONNX files by name; the
        advisory is the output with the lowest score), as stored for ``.npz``, else ``"max"``.

    Raises
    ------
    ModelFormatError
        Unknown suffix, missing file, a ``.gz`` file that is not gzip data, or a malformed file
        (see :func:`hybridq.io.nnet.load_nnet`, :func:`hybridq.io.onnx.load_onnx`,
        :func:`hybridq.io.npz.load_npz`).
    UnsupportedLayerError
        An op or activation hybridq does not support.
    """
    import importlib

    path = Path(path)
    suffix = format_suffix(path)
    if suffix not in LOADERS:
        raise ModelFormatError(
            f"{path}: unknown network file suffix {suffix or path.suffix!r}; supported: {', '.join(LOADERS)}"
            " (each also gzip-compressed, e.g. .onnx.gz)"
        )
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    module, func = LOADERS[suffix]
    net = getattr(importlib.import_module(module), func)(path)
    if suffix != ".npz" and is_acasxu(path, net):
        net = dataclasses.replace(net, decision_sense="min")
    return net


# The input clamp of every ACAS Xu .nnet file (Julian et al. 2016; the Reluplex distribution):
# range to intruder (ft), two angles (rad), own and intruder speed (ft/s).
_ACASXU_INPUT_LOWER = (0.0, -3.141593, -3.141593, 100.0, 0.0)
_ACASXU_INPUT_UPPER = (60760.0, 3.141593, 3.141593, 1200.0, 1200.0)


def is_acasxu(path: str | Path, network: Network) -> bool:
    """True for an ACAS Xu network (Julian et al. 2016; the advisory is the argmin): 5 inputs and
    5 outputs, and either a file name containing ``acasxu`` (case, ``_`` and ``-`` ignored: the
    VNN-COMP ONNX files) or the ACAS Xu input clamp in the file (the ``.nnet`` files, however
    renamed)."""
    if network.n_in != 5 or network.n_out != 5:
        return False
    stem = re.sub(r"[_\-\s]", "", Path(path).name.lower())
    if "acasxu" in stem:
        return True
    lo, hi = network.input_lower, network.input_upper
    return (lo is not None and hi is not None
            and np.allclose(lo, _ACASXU_INPUT_LOWER, rtol=0, atol=1e-9)
            and np.allclose(hi, _ACASXU_INPUT_UPPER, rtol=0, atol=1e-9))
