"""A branch-and-bound cell: an input box times the parameter box, optionally with ReLU-phase
(pre-activation sign) splits of the *perturbed* network.

A cell is plain data (NumPy arrays and ints) so it pickles for worker processes and could be
handed to a distributed engine.  Phase splits are expressed as clips on the perturbed network's
pre-activations ``z'_k``: a neuron split into its active phase has ``pre_lo = 0``, its inactive
phase ``pre_hi = 0``.  Every bound method and SMT encoding intersects its own pre-activation
bounds with these clips, which is sound because the two phases of a split together cover the
parent cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Cell"]


@dataclass
class Cell:
    """One cell of the branch-and-bound queue.

    Parameters
    ----------
    lower, upper : (n_in,) float64
        The input box (raw input space).
    pre_lo, pre_hi : (n_neurons,) float64
        Clips on the perturbed pre-activations of all layers concatenated (``-inf`` / ``+inf``
        where unsplit); ``n_neurons = sum of the layer widths``.
    depth : int
        Number of splits from the root.
    priority : float
        Certified bound of the parent's violation margin (queue order).
    split_dim : int
        The input dimension whose split made this cell (``-1``: the root or a phase split).
    """

    lower: np.ndarray
    upper: np.ndarray
    pre_lo: np.ndarray
    pre_hi: np.ndarray
    depth: int = 0
    priority: float = field(default=0.0, compare=False)
    split_dim: int = field(default=-1, compare=False)

    @classmethod
    def root(cls, lower, upper, n_neurons: int) -> "Cell":
        return cls(
            np.array(lower, dtype=np.float64),
            np.array(upper, dtype=np.float64),
            np.full(n_neurons, -np.inf),
            np.full(n_neurons, np.inf),
            0,
        )

    @property
    def volume(self) -> float:
        w = self.upper - self.lower
        return float(np.prod(w[w > 0])) if np.any(w > 0) else 0.0
