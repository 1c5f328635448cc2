"""Reading input files that may be gzip-compressed (``NAME.onnx.gz``, ``NAME.vnnlib.gz``, ...).

VNN-COMP benchmark folders ship some networks and most VNNLIB files gzip-compressed.  Every reader
of :mod:`hybridq.io` takes its bytes from :func:`read_bytes` and chooses its format by
:func:`format_suffix`, so ``hybridq verify``, ``bounds``, ``quantify``, ``run`` and the library read
the same files: a name ending in ``.gz`` is decompressed in memory (stdlib :mod:`gzip`, RFC 1952),
nothing is written next to it.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from hybridq.errors import ModelFormatError

__all__ = ["GZ_SUFFIX", "format_suffix", "read_bytes"]

#: The suffix of a gzip-compressed file (case ignored).
GZ_SUFFIX = ".gz"


def format_suffix(path: str | Path) -> str:
    """The lower-case suffix that names the file's format, ``.gz`` left out.

    ``net.onnx`` and ``net.ONNX.gz`` both give ``".onnx"``; ``prop.gz`` gives ``""``.
    """
    path = Path(path)
    if path.suffix.lower() == GZ_SUFFIX:
        path = Path(path.name[: -len(GZ_SUFFIX)])
    return path.suffix.lower()


def read_bytes(path: str | Path) -> bytes:
    """The file's content, decompressed when its name ends in ``.gz``.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    bytes
        The decompressed content of a ``.gz`` file (every gzip member, as ``gzip.decompress``), else
        the file's bytes.

    Raises
    ------
    OSError
        The file cannot be read (missing, a folder, no permission): the caller words the message.
    ModelFormatError
        A ``.gz`` file that is not gzip data, is truncated or corrupt:
        ``"PATH: not a readable .gz file: REASON"``.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix.lower() != GZ_SUFFIX:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile, truncated stream, corrupt data
        raise ModelFormatError(f"{path}: not a readable .gz file: {e}") from None
