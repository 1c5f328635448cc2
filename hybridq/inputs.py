"""Input sets: a point (local robustness), an L-inf ball, or a box (global robustness).

All boxes live in the network's *raw* input space (the space of the file's input, before the
network's own clamp and normalization).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["InputBox", "as_input_box"]


def _vec(a, name: str) -> np.ndarray:
    arr = np.array(a, dtype=np.float64, copy=True).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf: {arr}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class InputBox:
    """An axis-aligned input box ``[lower, upper]``.

    Parameters
    ----------
    lower, upper : (n_in,) float64
        Bounds; ``lower <= upper`` elementwise (equal for a point).

    Raises
    ------
    ValueError
        Empty, NaN/inf, shape-mismatched or inverted bounds.
    """

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        lo, hi = _vec(self.lower, "input lower bound"), _vec(self.upper, "input upper bound")
        if lo.shape != hi.shape:
            raise ValueError(f"input bounds have different lengths: {lo.size} and {hi.size}")
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"inverted box: input lower[{i}] = {lo[i]} > upper[{i}] = {hi[i]}")
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)

    @classmethod
    def point(cls, x) -> "InputBox":
        """The degenerate box ``{x}``."""
        return cls(x, x)

    @classmethod
    def ball(cls, x, eps: float) -> "InputBox":
        """The L-inf ball ``{x' : |x' - x|_inf <= eps}`` (``eps >= 0``)."""
        if not np.isfinite(eps) or eps < 0:
            raise ValueError(f"ball radius must be finite and >= 0, got {eps}")
        x = _vec(x, "ball centre")
        return cls(x - eps, x + eps)

    @property
    def n_in(self) -> int:
        return int(self.lower.size)

    @property
    def center(self) -> np.ndarray:
        return 0.5 * (self.lower + self.upper)

    @property
    def is_point(self) -> bool:
        return bool(np.all(self.lower == self.upper))

    @property
    def volume(self) -> float:
        """Product of the positive widths (a point has volume 0)."""
        w = self.upper - self.lower
        return float(np.prod(w[w > 0])) if np.any(w > 0) else 0.0

    def check_dim(self, n_in: int) -> None:
        """Raise ``ValueError`` unless the box has ``n_in`` dimensions."""
        if self.n_in != n_in:
            raise ValueError(f"input box has {self.n_in} dimensions, the network has {n_in} inputs")

    def contains(self, x) -> bool:
        x = np.asarray(x, dtype=np.float64)
        return bool(np.all(x >= self.lower) and np.all(x <= self.upper))


def as_input_box(inputs, n_in: int | None = None) -> InputBox:
    """The one conversion of user inputs to an :class:`InputBox` (``verify``, ``quantify``,
    ``bounds``).

    Parameters
    ----------
    inputs : InputBox, (n_in,) array-like, or (lower, upper) pair
        A point, or a box given as a tuple *or list* of two array-likes ``(lower, upper)`` of
        shape ``(n_in,)`` each.  A pair of two plain numbers is a 1-input box when ``n_in == 1``
        (or, without ``n_in``, when it is a tuple), else a 2-input point.
    n_in : int, optional
        The network's number of inputs; when given, the dimension is checked.

    Returns
    -------
    InputBox

    Raises
    ------
    ValueError
        Not a point or a box (e.g. a 2-D array), NaN/inf, inverted bounds, or (with ``n_in``)
        a dimension other than the network's.
    """
    if isinstance(inputs, InputBox):
        box = inputs
    elif isinstance(inputs, (tuple, list)) and len(inputs) == 2 and (
            all(np.ndim(v) >= 1 for v in inputs) or n_in == 1 or (n_in is None and isinstance(inputs, tuple))):
        box = InputBox(inputs[0], inputs[1])
    else:
        arr = np.asarray(inputs, dtype=np.float64)
        if arr.ndim > 1:
            raise ValueError(f"inputs must be an InputBox, a point of shape (n_in,) or a (lower, upper) pair; "
                             f"got an array of shape {arr.shape}")
        box = InputBox.point(arr)
    if n_in is not None and box.n_in != n_in:
        raise ValueError(f"input box has {box.n_in} dimensions (bounds of shape ({box.n_in},)), "
                         f"the network has {n_in} inputs")
    return box
