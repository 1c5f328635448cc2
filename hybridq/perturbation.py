"""Perturbation models: a radius for every parameter, i.e. the box ``Theta`` of DESIGN.md §1.

A :class:`Perturbation` is the box ``prod [c_i - r_i, c_i + r_i]`` around a centre ``c`` (the
nominal parameters ``theta0`` or, for ``point:FORMAT``, a concrete quantized copy ``theta_q``) with
radii ``r`` of the same structure as :data:`hybridq.network.Params`.  Deviation properties always
compare against the network's nominal ``theta0``, whatever the centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridq.errors import PerturbationError

__all__ = ["Perturbation"]


def _frozen(a) -> np.ndarray:
    arr = np.array(a, dtype=np.float64, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Perturbation:
    """A parameter box.

    Parameters
    ----------
    center : Params
        ``((W_1, b_1), ..., (W_L, b_L))``, the box centre (float64, same shapes as the network).
    radius : Params
        Radii of the same shapes, ``>= 0`` and finite.
    spec : str
        The spec string it came from (for reports).

    Raises
    ------
    PerturbationError
        Shapes that do not match, negative, NaN or inf radii.
    """

    center: tuple
    radius: tuple
    spec: str = "custom"

    def __post_init__(self) -> None:
        if len(self.center) != len(self.radius):
            raise PerturbationError("centre and radius have different numbers of layers")
        center, radius = [], []
        for k, ((W, b), (RW, rb)) in enumerate(zip(self.center, self.radius)):
            W, b, RW, rb = _frozen(W), _frozen(b), _frozen(RW), _frozen(rb)
            if W.shape != RW.shape or b.shape != rb.shape:
                raise PerturbationError(f"layer {k}: radius shapes {RW.shape}, {rb.shape} do not match {W.shape}, {b.shape}")
            for name, arr in (("W", W), ("b", b), ("weight radius", RW), ("bias radius", rb)):
                if not np.all(np.isfinite(arr)):
                    raise PerturbationError(f"layer {k}: {name} contains NaN or inf")
            if np.any(RW < 0) or np.any(rb < 0):
                raise PerturbationError(f"layer {k}: negative radius")
            center.append((W, b))
            radius.append((RW, rb))
        object.__setattr__(self, "center", tuple(center))
        object.__setattr__(self, "radius", tuple(radius))

    @property
    def n_layers(self) -> int:
        return len(self.center)

    def check_network(self, network) -> None:
        """Raise ``PerturbationError`` unless the shapes match ``network``."""
        if len(network.layers) != self.n_layers:
            raise PerturbationError(f"perturbation has {self.n_layers} layers, the network {len(network.layers)}")
        for k, (l, (W, b)) in enumerate(zip(network.layers, self.center)):
            if l.W.shape != W.shape or l.b.shape != b.shape:
                raise PerturbationError(f"layer {k}: perturbation shapes {W.shape} do not match the network's {l.W.shape}")

    def lower(self) -> tuple:
        """The corner ``c - r`` (exact in float64 only up to rounding; use for sampling, not proofs)."""
        return tuple((W - RW, b - rb) for (W, b), (RW, rb) in zip(self.center, self.radius))

    def upper(self) -> tuple:
        """The corner ``c + r`` (float64; see :meth:`lower`)."""
        return tuple((W + RW, b + rb) for (W, b), (RW, rb) in zip(self.center, self.radius))

    def sample(self, rng: np.random.Generator) -> tuple:
        """One parameter set drawn uniformly from the box, clipped into it."""
        out = []
        for (W, b), (RW, rb) in zip(self.center, self.radius):
            out.append((W + RW * rng.uniform(-1, 1, W.shape), b + rb * rng.uniform(-1, 1, b.shape)))
        return tuple(out)

    def max_radius(self) -> float:
        return max(max(float(np.max(RW, initial=0.0)), float(np.max(rb, initial=0.0))) for RW, rb in self.radius)

    def contains(self, params) -> bool:
        """Exactly decide ``|t - c| <= r`` for every parameter (Fraction check where float is borderline)."""
        return all(not _outside(t, c, r).any() for t, c, r in self._triples(params))

    def snap_inside(self, params) -> tuple:
        """Move parameters that lie (exactly) outside the box onto its boundary, one ulp at a time
        towards the centre; returns new arrays, the input is not modified."""
        out = []
        for (W, b), (cW, cb), (rW, rb) in zip(params, self.center, self.radius):
            pair = []
            for t, c, r in ((W, cW, rW), (b, cb, rb)):
                t = np.clip(np.array(t, dtype=np.float64, copy=True), c - r, c + r)
                for _ in range(8):
                    bad = _outside(t, c, r)
                    if not bad.any():
                        break
                    t[bad] = np.nextafter(t[bad], c[bad])
                pair.append(t)
            out.append(tuple(pair))
        return tuple(out)

    def _triples(self, params):
        for (W, b), (cW, cb), (rW, rb) in zip(params, self.center, self.radius):
            yield np.asarray(W, dtype=np.float64), cW, rW
            yield np.asarray(b, dtype=np.float64), cb, rb


def _outside(t: np.ndarray, c: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Boolean mask of entries with ``|t - c| > r`` in exact arithmetic."""
    from fractions import Fraction

    d = np.abs(t - c)
    # float subtraction errs by at most half an ulp of d: only near-ties need exact arithmetic
    maybe = d >= r * (1.0 - 4e-16) - 1e-300
    mask = np.zeros(t.shape, dtype=bool)
    for idx in zip(*np.nonzero(maybe)):
        mask[idx] = abs(Fraction(float(t[idx])) - Fraction(float(c[idx]))) > Fraction(float(r[idx]))
    return mask
