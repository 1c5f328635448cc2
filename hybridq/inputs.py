"""Input sets: a point (local robustness), an L-inf ball, or a box (global robustness).

All boxes live in the network's *raw* input space (the space of the file's input, before the
network's own clamp and normalization).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from hybridq.exact import as_float_if_exact, float_down, float_up, to_fraction

__all__ = ["InputBox", "as_input_box"]


def _float_array(a) -> np.ndarray | None:
    """``a`` as a float64 array when it holds only floats (a float64 array, or a list of Python /
    NumPy floats and ints that are floats exactly), else None (exact numbers: Fraction, Decimal,
    strings, ints beyond 2^53)."""
    if isinstance(a, np.ndarray) and a.dtype.kind == "f":
        return np.asarray(a, dtype=np.float64).reshape(-1)
    if isinstance(a, np.ndarray) and a.dtype.kind in "iu" and (a.size == 0 or int(np.max(np.abs(a))) <= 2 ** 53):
        return np.asarray(a, dtype=np.float64).reshape(-1)
    items = np.asarray(a, dtype=object).reshape(-1)
    if all(isinstance(v, (float, np.floating)) or (isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                     and abs(int(v)) <= 2 ** 53) for v in items):
        return np.array([float(v) for v in items], dtype=np.float64)
    return None


def _ends(a, name: str) -> tuple[Fraction, ...]:
    """The exact values of box ends given as floats (their binary values) or as exact numbers
    (Fraction, Decimal, int, decimal strings)."""
    vals = []
    for v in np.asarray(a, dtype=object).reshape(-1):
        if isinstance(v, (float, np.floating)) and not np.isfinite(v):
            raise ValueError(f"{name} contains NaN or inf: {v}")
        vals.append(to_fraction(v, name))
    if not vals:
        raise ValueError(f"{name} is empty")
    return tuple(vals)


def _floats(vals, direction: str, name: str) -> np.ndarray:
    rnd = float_down if direction == "down" else float_up
    arr = np.array([rnd(v, name) for v in vals], dtype=np.float64)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class InputBox:
    """An axis-aligned input box ``[lower, upper]``, kept exactly and as float64.

    The ends may be given as float64 values or as exact numbers (``Fraction``, ``Decimal``, ``int``
    or decimal strings such as ``"0.1"``).  ``exact_lower`` / ``exact_upper`` keep them exactly;
    ``lower`` / ``upper`` are their float64 images rounded outward (down / up), so the float box
    contains the exact one: bounds over the float box hold for the exact box, and a counterexample
    is re-checked only after :meth:`snap` has moved its input into the exact box.  (A box given in
    floats is its own exact box; no Fraction is formed for it unless asked for.)

    Parameters
    ----------
    lower, upper : (n_in,) float64 or exact numbers
        Bounds; ``lower <= upper`` elementwise (equal for a point).

    Attributes
    ----------
    exact_lower, exact_upper : tuple of Fraction, length n_in
        The ends as given (a float given as a float stands for its exact binary value).

    Raises
    ------
    ValueError
        Empty, NaN/inf, shape-mismatched or inverted bounds; an end beyond the float64 range.
    """

    lower: np.ndarray
    upper: np.ndarray
    _exact: tuple | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        flo, fhi = _float_array(self.lower), _float_array(self.upper)
        if flo is not None and fhi is not None:  # floats: the float box is the exact box
            for f, name in ((flo, "input lower bound"), (fhi, "input upper bound")):
                if f.size == 0:
                    raise ValueError(f"{name} is empty")
                if not np.all(np.isfinite(f)):
                    raise ValueError(f"{name} contains NaN or inf: {f}")
            if flo.shape != fhi.shape:
                raise ValueError(f"input bounds have different lengths: {flo.size} and {fhi.size}")
            bad = np.flatnonzero(flo > fhi)
            if bad.size:
                i = int(bad[0])
                raise ValueError(f"inverted box: input lower[{i}] = {flo[i]} > upper[{i}] = {fhi[i]}")
            flo, fhi = flo.copy(), fhi.copy()
            flo.setflags(write=False)
            fhi.setflags(write=False)
            object.__setattr__(self, "lower", flo)
            object.__setattr__(self, "upper", fhi)
            object.__setattr__(self, "_exact", None)
            return
        elo, ehi = _ends(self.lower, "input lower bound"), _ends(self.upper, "input upper bound")
        if len(elo) != len(ehi):
            raise ValueError(f"input bounds have different lengths: {len(elo)} and {len(ehi)}")
        for i, (a, b) in enumerate(zip(elo, ehi)):
            if a > b:
                raise ValueError(f"inverted box: input lower[{i}] = {float(a)} > upper[{i}] = {float(b)}")
        lo, hi = _floats(elo, "down", "input lower bound"), _floats(ehi, "up", "input upper bound")
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)
        exact = all(Fraction(float(f)) == q for f, q in zip(lo, elo)) and \
            all(Fraction(float(f)) == q for f, q in zip(hi, ehi))
        object.__setattr__(self, "_exact", None if exact else (elo, ehi))

    @property
    def exact_lower(self) -> tuple:
        """The lower ends as given, exactly (tuple of Fraction)."""
        return self._exact[0] if self._exact is not None else tuple(Fraction(float(v)) for v in self.lower)

    @property
    def exact_upper(self) -> tuple:
        """The upper ends as given, exactly (tuple of Fraction)."""
        return self._exact[1] if self._exact is not None else tuple(Fraction(float(v)) for v in self.upper)

    @classmethod
    def point(cls, x) -> "InputBox":
        """The degenerate box ``{x}`` (``x`` may hold exact numbers: its float box is then the
        two floats around each non-float coordinate, its exact box the point itself)."""
        return cls(x, x)

    @classmethod
    def ball(cls, x, eps) -> "InputBox":
        """The L-inf ball ``{x' : |x' - x|_inf <= eps}`` (``eps >= 0``), formed exactly (``x`` and
        ``eps`` may be exact numbers) and then rounded outward."""
        if isinstance(eps, (float, np.floating)) and not np.isfinite(eps):
            raise ValueError(f"ball radius must be finite and >= 0, got {eps}")
        e = to_fraction(eps, "ball radius")
        if e < 0:
            raise ValueError(f"ball radius must be finite and >= 0, got {float(e)}")
        xs = _ends(x if not isinstance(x, (list, tuple)) else np.asarray(x, dtype=object), "ball centre")
        return cls(np.array([v - e for v in xs], dtype=object), np.array([v + e for v in xs], dtype=object))

    @property
    def n_in(self) -> int:
        return int(self.lower.size)

    @property
    def center(self) -> np.ndarray:
        """The float64 centre of the float box (a search start, not an exact value)."""
        return 0.5 * (self.lower + self.upper)

    @property
    def exact_center(self) -> np.ndarray:
        """The exact centre of the exact box, ``(n_in,)`` object array of floats (where a float
        equals it) and Fractions."""
        return np.array([as_float_if_exact((a + b) / 2) for a, b in zip(self.exact_lower, self.exact_upper)],
                        dtype=object)

    @property
    def is_exact_float(self) -> bool:
        """True when every exact end is a float64 (the float box is the exact box)."""
        return self._exact is None

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
        """``x`` (float64) lies in the float box."""
        x = np.asarray(x, dtype=np.float64)
        return bool(np.all(x >= self.lower) and np.all(x <= self.upper))

    def contains_exact(self, x) -> bool:
        """``x`` (floats and/or Fractions, compared exactly) lies in the exact box."""
        if self._exact is None and isinstance(x, np.ndarray) and x.dtype.kind == "f":
            return x.shape == self.lower.shape and self.contains(x)  # float comparisons are exact
        vals = list(np.asarray(x, dtype=object).reshape(-1))
        if len(vals) != self.n_in:
            return False
        return all(a <= v <= b for v, a, b in zip(vals, self.exact_lower, self.exact_upper))

    def snap(self, x) -> np.ndarray:
        """``x`` moved into the exact box, coordinate by coordinate (a coordinate outside is
        replaced by the nearest exact end, as a float where that end is one, else a Fraction).
        For ``x`` in the float box each coordinate moves by less than one float64 spacing.

        Returns
        -------
        (n_in,) float64 when the result is all floats (always for a box given in floats and a
        float ``x``), else an object array of floats and Fractions
        """
        if self._exact is None and isinstance(x, np.ndarray) and x.dtype.kind == "f":
            if x.size != self.n_in:
                raise ValueError(f"x has {x.size} coordinates, the box {self.n_in}")
            return np.clip(x.reshape(-1), self.lower, self.upper)
        vals = list(np.asarray(x, dtype=object).reshape(-1))
        if len(vals) != self.n_in:
            raise ValueError(f"x has {len(vals)} coordinates, the box {self.n_in}")
        out = []
        for v, a, b in zip(vals, self.exact_lower, self.exact_upper):
            v = v if isinstance(v, Fraction) else float(v)
            if v < a:
                v = as_float_if_exact(a)
            elif v > b:
                v = as_float_if_exact(b)
            out.append(v)
        return np.array(out, dtype=np.float64 if all(isinstance(v, float) for v in out) else object)


def as_input_box(inputs, n_in: int | None = None) -> InputBox:
    """The one conversion of user inputs to an :class:`InputBox` (``verify``, ``quantify``,
    ``bounds``).

    Parameters
    ----------
    inputs : InputBox, (n_in,) array-like, or (lower, upper) pair
        A point, or a box given as a tuple *or list* of two array-likes ``(lower, upper)`` of
        shape ``(n_in,)`` each.  A pair of two plain numbers is a 1-input box when ``n_in == 1``
        (or, without ``n_in``, when it is a tuple), else a 2-input point.  Entries may be exact
        numbers (``Fraction``, ``Decimal``, decimal strings): see :class:`InputBox`.
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
        arr = np.asarray(inputs)
        if arr.dtype != object and arr.dtype.kind not in "US":
            arr = arr.astype(np.float64)
        if arr.ndim > 1:
            raise ValueError(f"inputs must be an InputBox, a point of shape (n_in,) or a (lower, upper) pair; "
                             f"got an array of shape {arr.shape}")
        box = InputBox.point(arr)
    if n_in is not None and box.n_in != n_in:
        raise ValueError(f"input box has {box.n_in} dimensions (bounds of shape ({box.n_in},)), "
                         f"the network has {n_in} inputs")
    return box
