"""hybridq's own ``.npz`` network format (written by :meth:`hybridq.Network.save`).

Arrays (all plain, no pickled objects)::

    W0, b0, W1, b1, ...          float64 weights (out, in) and biases (out,), one pair per layer
    activations                  (L,) str, one of hybridq.network.ACTIVATIONS per layer
    alphas                       (L,) float64, leaky_relu slopes (optional, default 0.01)
    output                       () str, one of hybridq.network.OUTPUTS (optional, default identity)
    input_mean, input_std        (n_in,) float64 (optional)
    input_lower, input_upper     (n_in,) float64 (optional, both or neither)
    output_mean, output_std      (n_out,) float64 (optional)
    name                         () str (optional)
    decision_sense               () str, "max" or "min" (optional, default max)

Saving and loading round-trips every value exactly (float64 is stored bit for bit).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from hybridq.errors import ModelFormatError
from hybridq.io.compressed import read_bytes
from hybridq.network import Network

__all__ = ["save_npz", "load_npz"]

_OPTIONAL_VECTORS = ("input_mean", "input_std", "input_lower", "input_upper", "output_mean", "output_std")


def save_npz(network: Network, path: str | Path) -> None:
    """Write ``network`` to ``path`` in the ``.npz`` format above.

    Parameters
    ----------
    network : Network
        The network to save.
    path : str or Path
        Target file; ``numpy`` appends ``.npz`` when the name lacks it.
    """
    arrays: dict[str, np.ndarray] = {}
    for k, layer in enumerate(network.layers):
        arrays[f"W{k}"] = np.asarray(layer.W, dtype=np.float64)
        arrays[f"b{k}"] = np.asarray(layer.b, dtype=np.float64)
    arrays["activations"] = np.array([l.activation for l in network.layers], dtype=str)
    arrays["alphas"] = np.array([l.alpha for l in network.layers], dtype=np.float64)
    arrays["output"] = np.array(network.output, dtype=str)
    arrays["name"] = np.array(network.name, dtype=str)
    arrays["decision_sense"] = np.array(network.decision_sense, dtype=str)
    for key in _OPTIONAL_VECTORS:
        v = getattr(network, key)
        if v is not None:
            arrays[key] = np.asarray(v, dtype=np.float64)
    np.savez(Path(path), **arrays)


def _str(a: np.ndarray, path: Path, key: str) -> str:
    if a.dtype.kind != "U" or a.ndim != 0:
        raise ModelFormatError(f"{path}: array {key!r} must be a string scalar, got dtype {a.dtype} shape {a.shape}")
    return str(a)


def load_npz(path: str | Path) -> Network:
    """Load a network written by :func:`save_npz` (read only, never unpickles).

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file (``.npz.gz``: gzip-compressed, :mod:`hybridq.io.compressed`).

    Returns
    -------
    Network

    Raises
    ------
    ModelFormatError
        Missing or unreadable file, not a zip of ``.npy`` arrays, pickled arrays, missing ``W``/``b``/
        ``activations`` arrays, wrong dtypes or shapes, NaN/inf values (naming the array), layers whose
        shapes do not chain.
    UnsupportedLayerError
        An unknown activation or output transform name.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    arrays: dict[str, np.ndarray] = {}
    try:
        with io.BytesIO(read_bytes(path)) as fh:
            z = np.load(fh, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ModelFormatError(f"{path}: a single .npy array, not an .npz archive of network arrays")
            with z:
                for key in z.files:
                    arrays[key] = np.asarray(z[key])
    except ModelFormatError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            raise ModelFormatError(f"{path}: not an .npz archive of plain arrays (pickled data; hybridq never unpickles)") from None
        raise ModelFormatError(f"{path}: not a readable .npz network file: ValueError: {e}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, MemoryError, TypeError) as e:
        raise ModelFormatError(f"{path}: not a readable .npz network file: {type(e).__name__}: {e}") from None
    except Exception as e:  # zlib.error, struct.error, ... from a corrupt archive
        raise ModelFormatError(f"{path}: corrupt .npz archive: {type(e).__name__}: {e}") from None

    if "activations" not in arrays:
        raise ModelFormatError(f"{path}: missing the array 'activations' (one activation name per layer)")
    acts = arrays["activations"]
    if acts.dtype.kind != "U" or acts.ndim != 1 or acts.size == 0:
        raise ModelFormatError(f"{path}: 'activations' must be a non-empty 1-D string array, got {acts.dtype} {acts.shape}")
    n_layers = acts.size
    for key in arrays:
        if key[:1] in ("W", "b") and key[1:].isdigit() and int(key[1:]) >= n_layers:
            raise ModelFormatError(f"{path}: array {key!r} but 'activations' names only {n_layers} layers")
    alphas = arrays.get("alphas", np.full(n_layers, 0.01))
    if alphas.shape != (n_layers,) or alphas.dtype.kind not in "fi":
        raise ModelFormatError(f"{path}: 'alphas' must be {n_layers} numbers, got {alphas.dtype} {alphas.shape}")

    from hybridq.network import Layer

    layers = []
    for k in range(n_layers):
        for key in (f"W{k}", f"b{k}"):
            if key not in arrays:
                raise ModelFormatError(f"{path}: missing the array {key!r} of layer {k}")
            if arrays[key].dtype.kind not in "fi":
                raise ModelFormatError(f"{path}: array {key!r} has non-numeric dtype {arrays[key].dtype}")
        try:
            layers.append(Layer(arrays[f"W{k}"], arrays[f"b{k}"], str(acts[k]), float(alphas[k])))
        except ModelFormatError as e:
            raise type(e)(f"{path}: layer {k}: {e}") from None
    kw = {}
    for key in _OPTIONAL_VECTORS:
        if key in arrays:
            v = arrays[key]
            n = layers[0].n_in if key.startswith("input") else layers[-1].n_out
            if v.dtype.kind not in "fi" or v.shape != (n,):
                raise ModelFormatError(f"{path}: array {key!r} must be {n} numbers, got {v.dtype} {v.shape}")
            if not np.all(np.isfinite(v)):
                raise ModelFormatError(f"{path}: array {key!r} contains NaN or inf")
            kw[key] = v
    output = _str(arrays["output"], path, "output") if "output" in arrays else "identity"
    name = _str(arrays["name"], path, "name") if "name" in arrays else path.stem
    sense = _str(arrays["decision_sense"], path, "decision_sense") if "decision_sense" in arrays else "max"
    if sense not in ("max", "min"):
        raise ModelFormatError(f"{path}: array 'decision_sense' must be 'max' or 'min', got {sense!r}")
    try:
        return Network(tuple(layers), output=output, name=name, decision_sense=sense, **kw)
    except ModelFormatError as e:
        raise type(e)(f"{path}: {e}") from None
