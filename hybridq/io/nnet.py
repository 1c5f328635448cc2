"""Reader for the ``.nnet`` text format (Kyle Julian, Stanford 2016; the ACAS Xu networks).

Layout (after any ``//`` comment lines; every line is comma separated, usually comma terminated)::

    numLayers, inputSize, outputSize, maxLayerSize
    layerSize_0 (= inputSize), layerSize_1, ..., layerSize_L (= outputSize)
    symmetric flag (unused)
    input minimums      (inputSize values)
    input maximums      (inputSize values)
    means               (inputSize values, then one shared output mean)
    ranges              (inputSize values, then one shared output range)
    for each layer k = 1..L: layerSize_k lines of W_k (one output neuron per line, layerSize_{k-1}
    values), then layerSize_k lines holding one bias each

Semantics: clamp ``x`` to ``[min, max]``, ``x_n = (x - mean) / range``, ReLU on the hidden layers,
a linear last layer, ``y = h_L * range_out + mean_out``.  Source: the format description in
``sisl/NNet`` (``README.md``) and the ACAS Xu files of ``guykatzz/ReluplexCav2017``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from hybridq.errors import ModelFormatError
from hybridq.io.compressed import read_bytes
from hybridq.network import Layer, Network

__all__ = ["load_nnet"]

log = logging.getLogger(__name__)

_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity)"
_LINE = re.compile(rf"^\s*(?:(?:{_NUM})\s*,\s*)*(?:{_NUM})\s*,?\s*$", re.IGNORECASE)


def _numbers(path: Path, lineno: int, text: str) -> np.ndarray:
    if not _LINE.match(text):
        raise ModelFormatError(f"{path}: line {lineno}: not a comma-separated list of numbers: {text.strip()[:80]!r}")
    return np.array([float(t) for t in text.split(",") if t.strip()], dtype=np.float64)


def _finite(path: Path, arr: np.ndarray, what: str, lineno: int) -> None:
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)][0]
        raise ModelFormatError(f"{path}: line {lineno}: {what} contains the non-finite value {float(bad)!r}")


def load_nnet(path: str | Path) -> Network:
    """Load a ``.nnet`` file (read only; the file is never modified).

    Parameters
    ----------
    path : str or Path
        The ``.nnet`` file (``.nnet.gz``: gzip-compressed, :mod:`hybridq.io.compressed`).

    Returns
    -------
    Network
        ReLU hidden layers, identity last layer, identity output transform; input clamp
        ``[min, max]``, input normalization ``(mean, range)`` and output de-normalization
        ``(mean_out, range_out)`` from the header.

    Raises
    ------
    ModelFormatError
        Missing or unreadable file, a malformed line (the message names its line number), a header
        whose counts disagree, a truncated file, trailing data, NaN/inf values (naming the layer),
        a non-positive range or ``min > max``.
    """
    path = Path(path)
    try:
        raw = read_bytes(path)
    except OSError as e:
        raise ModelFormatError(f"{path}: cannot read the file: {e.strerror or e}") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise ModelFormatError(f"{path}: not an ASCII text .nnet file (byte {e.start} is {raw[e.start]:#04x})") from None
    lines = text.splitlines()
    # Data lines: (line number, text), skipping comments and blank lines.
    data = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("//")]
    if not data:
        raise ModelFormatError(f"{path}: empty .nnet file (no data lines)")
    # trailing commas and a final newline are optional (many writers omit them); but a file whose
    # other lines end in a comma, with a last line that does not and no final newline, was cut
    # short (possibly inside the last number); other truncations break the value counts
    last_no, last = data[-1]
    commas = len(data) > 1 and all(ln.rstrip().endswith(",") for _, ln in data[:-1])
    if commas and not text.endswith(("\n", "\r")) and not last.rstrip().endswith(","):
        raise ModelFormatError(
            f"{path}: line {last_no}: the file ends in the middle of a line (truncated?): {last.strip()[:40]!r}"
        )
    pos = 0

    def take(what: str) -> tuple[int, np.ndarray]:
        nonlocal pos
        if pos >= len(data):
            prev = data[-1][0]
            raise ModelFormatError(f"{path}: the file ends after line {prev}; expected {what} (truncated?)")
        no, ln = data[pos]
        pos += 1
        return no, _numbers(path, no, ln)

    no, head = take("the header line numLayers,inputSize,outputSize,maxLayerSize")
    if head.size != 4 or np.any(head != np.round(head)) or np.any(head < 1):
        raise ModelFormatError(f"{path}: line {no}: header must be 4 positive integers, got {head.tolist()}")
    n_layers, n_in, n_out, max_size = (int(v) for v in head)
    no, sizes_f = take("the layer sizes line")
    if sizes_f.size != n_layers + 1 or np.any(sizes_f != np.round(sizes_f)) or np.any(sizes_f < 1):
        raise ModelFormatError(
            f"{path}: line {no}: expected {n_layers + 1} positive integer layer sizes (numLayers = {n_layers}), "
            f"got {sizes_f.tolist()}"
        )
    sizes = [int(v) for v in sizes_f]
    if sizes[0] != n_in or sizes[-1] != n_out:
        raise ModelFormatError(
            f"{path}: line {no}: layer sizes {sizes} disagree with inputSize {n_in} / outputSize {n_out} of the header"
        )
    if max_size != max(sizes):
        log.debug("%s: maxLayerSize %d differs from the largest layer %d (field unused)", path, max_size, max(sizes))
    take("the symmetric flag line")
    blocks = {}
    for what, n in (("input minimums", n_in), ("input maximums", n_in), ("means", n_in + 1), ("ranges", n_in + 1)):
        no, v = take(what)
        if v.size != n:
            raise ModelFormatError(f"{path}: line {no}: expected {n} {what}, got {v.size}")
        _finite(path, v, what, no)
        blocks[what] = (no, v)
    lo, hi = blocks["input minimums"][1], blocks["input maximums"][1]
    if np.any(lo > hi):
        i = int(np.flatnonzero(lo > hi)[0])
        raise ModelFormatError(f"{path}: line {blocks['input maximums'][0]}: input {i} has minimum {lo[i]} > maximum {hi[i]}")
    mean, rng = blocks["means"][1], blocks["ranges"][1]
    if np.any(rng <= 0):
        raise ModelFormatError(f"{path}: line {blocks['ranges'][0]}: ranges must be positive, got {rng.tolist()}")

    layers = []
    for k in range(1, n_layers + 1):
        n_o, n_i = sizes[k], sizes[k - 1]
        rows, bias = [], []  # grown from the file's lines: a bogus header cannot allocate much
        for r in range(n_o):
            no, row = take(f"row {r} of the weights of layer {k}")
            if row.size != n_i:
                raise ModelFormatError(f"{path}: line {no}: layer {k} weight row {r} has {row.size} values, expected {n_i}")
            _finite(path, row, f"layer {k} weights", no)
            rows.append(row)
        for r in range(n_o):
            no, v = take(f"bias {r} of layer {k}")
            if v.size != 1:
                raise ModelFormatError(f"{path}: line {no}: layer {k} bias {r}: expected one value, got {v.size}")
            _finite(path, v, f"layer {k} biases", no)
            bias.append(v[0])
        layers.append(Layer(np.array(rows), np.array(bias), "relu" if k < n_layers else "identity"))
    if pos < len(data):
        raise ModelFormatError(f"{path}: line {data[pos][0]}: unexpected data after the last layer")
    try:
        return Network(
            tuple(layers),
            output="identity",
            input_mean=mean[:n_in],
            input_std=rng[:n_in],
            input_lower=lo,
            input_upper=hi,
            output_mean=np.full(n_out, mean[n_in]),
            output_std=np.full(n_out, rng[n_in]),
            name=path.stem,
        )
    except ModelFormatError as e:
        raise ModelFormatError(f"{path}: {e}") from None
