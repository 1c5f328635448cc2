"""The exact numbers a user wrote, and their float64 images rounded in a chosen direction.

A decimal such as ``0.1`` or ``0.49999999999999999999`` has no float64 equal.  hybridq keeps two
versions of every number of a problem: the *exact* one (a :class:`fractions.Fraction` parsed from
the decimal text, or the exact binary value of a float given as a float) and its float64 image,
rounded *outward*, i.e. in the direction that enlarges the problem (input boxes grow, the unsafe
set grows, ``delta`` shrinks, ``kappa`` grows).  The bound pass and the solvers work on the float
problem, so ``robust`` proved there holds for the exact one; a counterexample is re-checked
against the exact numbers, so it violates what the user wrote, not only its float image.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

import numpy as np

__all__ = ["TooManyDigits", "parse_exact", "split_numbers", "to_fraction", "float_down", "float_up", "float_nearest",
           "as_float_if_exact", "gamma"]


#: The most decimal digits (significant digits plus the exponent's size) an exact number may need:
#: beyond it a Fraction's text would pass Python's int-to-str limit (4300 digits) and its arithmetic
#: slows down; float64 values need far fewer (a subnormal's exact decimal has about 1100).
MAX_DIGITS = 4000


class TooManyDigits(ValueError):
    """A decimal that needs more than :data:`MAX_DIGITS` digits as an exact number (its message is
    the whole explanation; callers pass it on rather than replace it with a generic one)."""


def parse_exact(text: str, name: str = "value") -> Fraction:
    """A number written as text (``"0.1"``, ``"-1e-3"``, ``"3/4"``), exactly.

    Raises
    ------
    ValueError
        Not a finite number (``"1_0"`` included: Python's digit grouping is refused, not read as 10),
        or a decimal that needs more than :data:`MAX_DIGITS` digits as an exact fraction
        (``1e-5000``: one clear line instead of an integer-conversion error after the run).
    """
    text = text.strip()
    if "_" in text:  # Python's digit grouping ("1_0" is 10): not how anyone writes a coordinate
        raise ValueError(f"{name} must be a finite real number, got {text!r}")
    try:
        d = Decimal(text)
    except (InvalidOperation, ValueError):
        d = None
    if d is not None:
        _check_size(d, name, text)
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError, OverflowError, ArithmeticError):
        raise ValueError(f"{name} must be a finite real number, got {text!r}") from None


def split_numbers(text: str, name: str = "value", seps: str = ",;") -> list[str]:
    """The entries of a list of numbers written as text (``"0.1,-2;3"``), still as text.

    Space around an entry and a trailing separator are ignored; an empty entry between two
    separators is an error (``"0,,1"`` is two or three numbers: rather than guess, refuse it).

    Raises
    ------
    ValueError
        An empty entry between separators (the message names ``name`` and its position).
    """
    parts = re.split("[" + re.escape(seps) + "]", str(text))
    if parts and not parts[-1].strip():
        parts = parts[:-1]
    for i, part in enumerate(parts):
        if not part.strip():
            raise ValueError(f"{name} has an empty entry (number {i + 1}) in {str(text)!r}")
    return [part.strip() for part in parts]


def _check_size(d: Decimal, name: str, text) -> None:
    if d.is_finite():
        _, digits, exp = d.as_tuple()
        if len(digits) + abs(exp) > MAX_DIGITS:
            t = str(text)
            shown = repr(t) if len(t) <= 60 else f"'{t[:24]}...{t[-12:]}' ({len(t)} characters)"
            raise TooManyDigits(f"{name} {shown} needs more than {MAX_DIGITS} digits as an exact number "
                             f"(exponent {d.adjusted():+d}); give it with fewer digits or a smaller exponent")


def to_fraction(v, name: str = "value") -> Fraction:
    """The exact value of a number a user gave.

    Parameters
    ----------
    v : Fraction, Decimal, int, float, numpy scalar or str
        A string is parsed as a decimal (``"0.1"``, ``"-1e-3"``, ``"3/4"``) without rounding; a
        float stands for its exact binary value.
    name : str
        What the number is, for the error message.

    Returns
    -------
    Fraction

    Raises
    ------
    ValueError
        Not a finite real number (NaN, inf, bool, text that is not a number), or a decimal that
        needs more than :data:`MAX_DIGITS` digits (:func:`parse_exact`).
    """
    if isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name} must be a real number, got {v!r}")
    if isinstance(v, (str, bytes)):
        return parse_exact(v.decode() if isinstance(v, bytes) else v, name)
    if isinstance(v, Decimal):
        _check_size(v, name, str(v))
    try:
        if isinstance(v, Fraction):
            return v
        if isinstance(v, (int, np.integer, Decimal)):
            return Fraction(v)
        if isinstance(v, (float, np.floating)):
            return Fraction(float(v))
    except (ValueError, ZeroDivisionError, OverflowError, ArithmeticError):
        raise ValueError(f"{name} must be a finite real number, got {v!r}") from None
    raise ValueError(f"{name} must be a real number, got {v!r}")


def float_nearest(q: Fraction, name: str = "value") -> float:
    """``q`` rounded to the nearest float64; ``ValueError`` beyond the float64 range."""
    try:
        f = float(q)
    except OverflowError:
        f = float("inf")
    if not np.isfinite(f):
        raise ValueError(f"{name} {_short(q)} is beyond the float64 range")
    return f


def float_down(q: Fraction, name: str = "value") -> float:
    """The largest float64 ``<= q`` (exactly); ``ValueError`` beyond the float64 range."""
    f = float_nearest(q, name)
    if Fraction(f) > q:
        f = float(np.nextafter(f, -np.inf))
        if not np.isfinite(f):
            raise ValueError(f"{name} {_short(q)} is beyond the float64 range")
    return f


def float_up(q: Fraction, name: str = "value") -> float:
    """The smallest float64 ``>= q`` (exactly); ``ValueError`` beyond the float64 range."""
    f = float_nearest(q, name)
    if Fraction(f) < q:
        f = float(np.nextafter(f, np.inf))
        if not np.isfinite(f):
            raise ValueError(f"{name} {_short(q)} is beyond the float64 range")
    return f


def as_float_if_exact(q: Fraction) -> float | Fraction:
    """``float(q)`` when that float equals ``q`` exactly, else ``q`` itself (exact either way)."""
    try:
        f = float(q)
    except OverflowError:
        return q
    return f if np.isfinite(f) and Fraction(f) == q else q


def gamma(n: int) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``, ``u = 2^-53``: a sum of ``n`` float64 terms (or a
    product chain of ``n`` roundings), computed in any order, errs by at most ``gamma_n`` times
    the sum of the magnitudes (N. J. Higham, *Accuracy and Stability of Numerical Algorithms*,
    2nd ed., §3.1, (3.4)-(3.5)).  The value itself is a float; callers double it (or round it up)
    to cover its own rounding.

    Raises
    ------
    ValueError
        ``n u >= 0.01`` (``n`` beyond about 10^13), where the bound is not meant to be used.
    """
    nu = n * 2.0 ** -53
    if nu >= 0.01:  # pragma: no cover - n beyond 10^13
        raise ValueError("sum too long for the a-priori error bound")
    return nu / (1.0 - nu)


def _short(q: Fraction) -> str:
    """A short text for a (possibly huge) exact number in an error message."""
    if q.denominator == 1 and abs(q.numerator) > 10 ** 20:
        return f"of about 10^{len(str(abs(q.numerator))) - 1}"
    return f"{float(Decimal(q.numerator) / Decimal(q.denominator)):.6g}"
