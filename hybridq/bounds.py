"""Certified output and deviation bounds over an input box times a parameter box (DESIGN.md §3).

:func:`bounds` validates its arguments, packs the network once per ``(network, perturbation)``
pair (:class:`PackedNetwork`, cached) and runs one of three numba passes from
:mod:`hybridq.kernels`, batched over cells:

``interval``
    interval propagation of the nominal and the perturbed network (midpoint-radius form,
    ``W in [c - r, c + r]``); deviation = perturbed box minus nominal box.
``diff``
    the same plus difference bounds ``dz_k = z'_k - z_k = W0 dh + (Wc - W0) h' + (bc - b0) + e``,
    ``|e| <= R|h'| + rb`` propagated layer by layer (ReluDiff, Paulsen et al., ICSE 2020; for
    every activation ``dh in dz * [min f', max f']`` on the hull of both pre-activation boxes).
``linear``
    ``diff`` with CROWN back-substitution (Zhang et al., NeurIPS 2018) for the nominal
    intermediate bounds, then a *joint* back-substitution of the outputs in which each layer's
    weight perturbation is a per-neuron noise ``|e_k| <= R_k |h'_{k-1}| + rb_k`` (the exact
    reformulation of DESIGN.md §2) substituted linearly through ``h'_{k-1}`` (§3 refinement),
    and the deviation ``y'(x) - y(x)`` is bounded as one linear function of the shared ``x``
    (an unstable neuron may be collapsed onto one network plus its difference ``dh = h' - h``,
    bounded by its interval or, as in NeuroDiff (Paulsen, Wang et al., ASE 2020), by a line in
    ``dz = z' - z`` that stays symbolic down to ``x``; per neuron, whichever is estimated
    tighter).  Intersected with the ``diff`` bounds, so it is never wider.

Every returned bound encloses the exact real value (see :mod:`hybridq.kernels`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hybridq import kernels as K
from hybridq.cell import Cell
from hybridq.inputs import InputBox, as_input_box
from hybridq.network import Network
from hybridq.perturbation import Perturbation

__all__ = ["bounds", "OutputBounds", "PackedNetwork", "METHODS", "pack", "load_kernels"]

log = logging.getLogger(__name__)

#: Bound methods, loosest first.
METHODS = ("interval", "diff", "linear")
_U = 2.0 ** -53
#: Batches of at least this many cells run the parallel linear kernel (smaller ones serially:
#: waking numba's threads costs more than a few cells on a loaded machine).
_PARALLEL_MIN = 4


def load_kernels(network: Network, method: str = "linear") -> None:
    """Load (or, on the first run after install, compile) the entry points a small run of
    ``method`` on ``network`` calls: the serial pass and the score kernel of its output.  The
    kernels load on first use anyway (:class:`hybridq.kernels.common._Entry`); calling this first
    keeps that start-up cost out of a run's own timings.  The parallel passes load when a batch
    first needs them."""
    (K.linear_pass_serial if method == "linear" else K.interval_pass_serial).load()
    if network.output == "sigmoid":
        K.score_sigmoid.load()
    elif network.output == "softmax":
        K.score_softmax.load()


def _up(a):
    return np.nextafter(a, np.inf)


def _dn(a):
    return np.nextafter(a, -np.inf)


@dataclass(frozen=True)
class OutputBounds:
    """Certified bounds for a batch of ``n`` cells (all float64, outward rounded).

    Attributes
    ----------
    logit_lo, logit_hi : (n, n_out)
        Perturbed logits ``y(x; theta)`` over the cell and the parameter box.
    score_lo, score_hi : (n, n_out)
        Perturbed scores ``out(y)``.
    dev_logit_lo, dev_logit_hi : (n, n_out)
        Deviation ``y(x; theta) - y(x; theta0)``.
    dev_score_lo, dev_score_hi : (n, n_out)
        Score deviation ``s(x; theta) - s(x; theta0)``.
    spec_lo, spec_hi : (n, m) or None
        ``C @ y(x; theta)`` for the requested ``spec`` matrix ``C``.
    pre_lo, pre_hi : list of (n, n_k)
        Perturbed pre-activations ``z'_k`` per layer (phase clips applied).
    nom_pre_lo, nom_pre_hi : list of (n, n_k)
        Nominal pre-activations ``z_k``.
    infeasible : (n,) bool
        The cell's phase clips are empty; the other rows of such a cell carry no meaning.
    method : str
    """

    logit_lo: np.ndarray
    logit_hi: np.ndarray
    score_lo: np.ndarray
    score_hi: np.ndarray
    dev_logit_lo: np.ndarray
    dev_logit_hi: np.ndarray
    dev_score_lo: np.ndarray
    dev_score_hi: np.ndarray
    spec_lo: np.ndarray | None
    spec_hi: np.ndarray | None
    pre_lo: list
    pre_hi: list
    nom_pre_lo: list
    nom_pre_hi: list
    infeasible: np.ndarray
    method: str = "linear"

    @property
    def n_cells(self) -> int:
        return int(self.logit_lo.shape[0])

    def row(self, i: int) -> "OutputBounds":
        """The bounds of cell ``i`` as a one-row :class:`OutputBounds`."""
        s = slice(i, i + 1)
        pick = lambda a: None if a is None else a[s]  # noqa: E731
        return OutputBounds(
            *(pick(getattr(self, f)) for f in ("logit_lo", "logit_hi", "score_lo", "score_hi", "dev_logit_lo",
                                               "dev_logit_hi", "dev_score_lo", "dev_score_hi", "spec_lo", "spec_hi")),
            [a[s] for a in self.pre_lo], [a[s] for a in self.pre_hi],
            [a[s] for a in self.nom_pre_lo], [a[s] for a in self.nom_pre_hi], self.infeasible[s], self.method)


@dataclass(frozen=True)
class PackedNetwork:
    """Flat contiguous arrays of a network and a perturbation, in the layout the kernels take
    (see :mod:`hybridq.kernels`, ``_NET_NAMES``).  Build with :func:`pack` (cached)."""

    net: tuple
    widths: tuple
    n_neurons: int
    in_lower: np.ndarray | None
    in_upper: np.ndarray | None
    in_mean: np.ndarray
    in_std: np.ndarray
    out_mean: np.ndarray
    out_std: np.ndarray
    output: str


_CACHE: dict = {}
_CACHE_SIZE = 16


def pack(network: Network, perturbation: Perturbation) -> PackedNetwork:
    """The :class:`PackedNetwork` of a ``(network, perturbation)`` pair (cached by identity).

    ``D = fl(Wc - W0)`` is stored with its rounding error (at most ``u |D|``) added to the
    difference-form radius ``Rd``, so ``W' in W0 + D + [-Rd, Rd]`` holds exactly.
    """
    key = (id(network), id(perturbation))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is network and hit[1] is perturbation:
        return hit[2]
    perturbation.check_network(network)
    L = len(network.layers)
    widths = np.array(network.widths, dtype=np.int64)
    wsz = widths[:-1] * widths[1:]
    woff = np.concatenate([[0], np.cumsum(wsz)]).astype(np.int64)
    noff = np.concatenate([[0], np.cumsum(widths[1:])]).astype(np.int64)
    acts = np.array([K.ACT_CODES[l.activation] for l in network.layers], dtype=np.int64)
    alphas = np.array([l.alpha for l in network.layers], dtype=np.float64)
    cat = lambda arrs: np.ascontiguousarray(np.concatenate([np.ravel(a) for a in arrs]), dtype=np.float64)  # noqa: E731
    W0s = [l.W for l in network.layers]
    b0s = [l.b for l in network.layers]
    Wcs = [W for W, _ in perturbation.center]
    bcs = [b for _, b in perturbation.center]
    Rs = [R for R, _ in perturbation.radius]
    rbs = [r for _, r in perturbation.radius]
    Ds = [Wc - W0 for Wc, W0 in zip(Wcs, W0s)]
    dbs = [bc - b0 for bc, b0 in zip(bcs, b0s)]
    Rds = [_up(R + _up(2 * _U * np.abs(D))) if np.any(D) else R for R, D in zip(Rs, Ds)]
    rbds = [_up(r + _up(2 * _U * np.abs(d))) if np.any(d) else r for r, d in zip(rbs, dbs)]
    hasD = np.array([1 if np.any(D) else 0 for D in Ds], dtype=np.int64)
    T = lambda arrs: cat([a.T for a in arrs])  # noqa: E731
    net = dict(
        widths=widths, woff=woff, noff=noff, acts=acts, hasD=hasD, alphas=alphas,
        W0=cat(W0s), W0T=T(W0s), aW0T=T([np.abs(a) for a in W0s]),
        Wc=cat(Wcs), WcT=T(Wcs), aWcT=T([np.abs(a) for a in Wcs]),
        R=cat(Rs), RT=T(Rs), DT=T(Ds), aDT=T([np.abs(a) for a in Ds]), RdT=T(Rds),
        b0=cat(b0s), bc=cat(bcs), rb=cat(rbs), db=cat(dbs), rbd=cat(rbds),
    )
    packed = PackedNetwork(
        net=tuple(net[name] for name in K._NET_NAMES), widths=tuple(int(w) for w in widths),
        n_neurons=int(noff[-1]), in_lower=network.input_lower, in_upper=network.input_upper,
        in_mean=np.asarray(network.input_mean, dtype=np.float64),
        in_std=np.asarray(network.input_std, dtype=np.float64),
        out_mean=np.asarray(network.output_mean, dtype=np.float64),
        out_std=np.asarray(network.output_std, dtype=np.float64),
        output=network.output,
    )
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (network, perturbation, packed)
    return packed


# ----------------------------------------------------------------------------- validation
def _as_batch(inputs, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    pair = isinstance(inputs, (tuple, list)) and len(inputs) == 2
    if not (np.ndim(inputs[0]) == 2 if pair else np.ndim(inputs) == 2):  # one box: shared conversion
        box = as_input_box(inputs, n_in)
        return box.lower[None, :].copy(), box.upper[None, :].copy()
    if isinstance(inputs, (tuple, list)) and len(inputs) == 2:
        lo = np.array(inputs[0], dtype=np.float64)
        hi = np.array(inputs[1], dtype=np.float64)
    else:
        lo = np.array(inputs, dtype=np.float64)
        hi = lo.copy()
    if lo.shape != hi.shape:
        raise ValueError(f"input lower and upper bounds have different shapes {lo.shape} and {hi.shape}")
    if lo.ndim == 1:
        lo, hi = lo[None, :], hi[None, :]
    if lo.ndim != 2 or lo.shape[1] != n_in:
        raise ValueError(f"inputs must have shape (n_in,) or (n_cells, n_in) with n_in = {n_in}, got {lo.shape}")
    if lo.shape[0] == 0:
        raise ValueError("inputs: empty batch (0 cells)")
    return lo, hi


def _check_box(lo: np.ndarray, hi: np.ndarray) -> None:
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        bad = np.argwhere(~(np.isfinite(lo) & np.isfinite(hi)))[0]
        raise ValueError(f"inputs: NaN or inf at cell {bad[0]}, input {bad[1]}")
    inv = np.argwhere(lo > hi)
    if inv.size:
        c, i = inv[0]
        raise ValueError(f"inputs: inverted box at cell {c}, input {i}: lower {lo[c, i]} > upper {hi[c, i]}")


def _normalize(p: PackedNetwork, lo: np.ndarray, hi: np.ndarray):
    """Clamp + normalize (monotone per coordinate), rounded outward."""
    if p.in_lower is not None:
        lo = np.clip(lo, p.in_lower, p.in_upper)
        hi = np.clip(hi, p.in_lower, p.in_upper)
    nl = _dn(_dn(lo - p.in_mean) / p.in_std)
    nh = _up(_up(hi - p.in_mean) / p.in_std)
    same = (lo == hi) & (p.in_mean == 0.0) & (p.in_std == 1.0)
    nl = np.where(same, lo, nl)
    nh = np.where(same, hi, nh)
    return np.ascontiguousarray(nl), np.ascontiguousarray(nh)


def _affine_iv(C: np.ndarray, lo: np.ndarray, hi: np.ndarray, shift: np.ndarray):
    """Rigorous ``C @ y + shift`` for ``y`` in ``[lo, hi]`` (rows: cells), Higham §3.1 error term.

    Infinite or overflowing ends give infinite (never NaN) results: a NaN is mapped to the
    trivially sound ``-inf`` / ``+inf``.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        m = _dn(0.5 * lo + 0.5 * hi)
        m = np.where(np.isfinite(m), m, 0.0)
        r = np.maximum(_up(hi - m), _up(m - lo))
        n = C.shape[1]
        g = _up((n + 3) * _U / (1 - (n + 3) * _U))
        cen = m @ C.T + shift
        rad = _up((np.abs(m) * g + r) @ np.abs(C).T * (1 + 2 * g) + 4 * _U * np.abs(cen) + 1e-320)
        slo = _dn(cen - rad)
        shi = _up(cen + rad)
    return np.where(np.isnan(slo), -np.inf, slo), np.where(np.isnan(shi), np.inf, shi)


# ------------------------------------------------------------------------------- public
def bounds(network: Network, perturbation: Perturbation, inputs=None, method: str = "linear",
           spec=None, cells: Sequence[Cell] | None = None, *, noise: str = "substitute", mix: bool = True,
           inter: int = 1, refine: str = "all", block: int = 128, dz_ratio: float = 0.1) -> OutputBounds:
    """Certified bounds of the perturbed logits, scores and deviations over cells.

    Parameters
    ----------
    network : Network
    perturbation : Perturbation
        Parameter box (``center`` +- ``radius``); deviations are against ``network.params``.  Its
        ``pre_clip`` (if any) clips the perturbed pre-activations of every cell.
    inputs : InputBox, (n_in,) array, or (lower, upper) arrays of shape (n_cells, n_in) or (n_in,)
        Raw-space input set(s).  Ignored when ``cells`` is given.
    method : {"interval", "diff", "linear"}
        See the module docstring; ``linear`` is the tightest and the default.
    spec : (m, n_out) array, optional
        Also bound ``C @ y(x; theta)``.
    cells : sequence of Cell, optional
        Input boxes plus phase clips on the perturbed pre-activations (all layers concatenated).
    noise : {"substitute", "concretize"}
        ``linear`` only: substitute the noise bound ``|lam| R |h'|`` linearly through ``h'``
        (DESIGN §3) or concretize it with ``|h'|max``.
    mix : bool
        ``linear`` only: allow collapsing unstable neurons of the deviation onto one network.
    inter : {0, 1, 2, 3}
        ``linear`` only: intermediate layers by CROWN for the nominal network (0), also the
        perturbed one (1), also the difference ``dz`` (2: of the neurons where the two networks
        are not in the same linear piece; elsewhere ``dz`` is never used); the rest from ``diff``.
        3: as 2, but the perturbed network's CROWN rows only where the ``dz`` interval is wider
        than ``dz_ratio`` times the nominal one (elsewhere ``z' in z + dz`` after the ``dz`` rows
        is about as tight).  ACAS Xu, ``point:fp16``, 447 cells of a run: 24 % less CPU time than
        2 per cell, deviation bounds the same in the median (90th percentile 1.08x wider);
        ``point:int8`` and the ``fp16`` box: as tight as 2 (the ``dz`` intervals are wide).
    refine : {"all", "unstable"}
        ``linear`` only: refine every neuron's intermediate bounds by CROWN, or only those whose
        relaxation is not exact (faster; looser difference intervals).
    block : int
        Cells per BLAS block (``interval`` / ``diff``).
    dz_ratio : float
        ``inter`` 3 only (see there).

    Returns
    -------
    OutputBounds

    Raises
    ------
    ValueError
        Unknown method, inverted / empty / NaN boxes, wrong shapes of inputs, spec or cells.
    PerturbationError
        The perturbation does not match the network.
    """
    if method not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
    if noise not in ("substitute", "concretize"):
        raise ValueError(f"noise must be 'substitute' or 'concretize', got {noise!r}")
    p = pack(network, perturbation)
    N = p.n_neurons
    if cells is not None:
        cells = list(cells)
        if not cells:
            raise ValueError("cells: empty list")
        lo = np.array([c.lower for c in cells], dtype=np.float64)
        hi = np.array([c.upper for c in cells], dtype=np.float64)
        if lo.ndim != 2 or lo.shape[1] != network.n_in or hi.shape != lo.shape:
            raise ValueError(f"cells: input boxes must all have {network.n_in} entries")
        clo = np.array([c.pre_lo for c in cells], dtype=np.float64)
        chi = np.array([c.pre_hi for c in cells], dtype=np.float64)
        if clo.shape != (len(cells), N) or chi.shape != clo.shape:
            raise ValueError(f"cells: pre_lo / pre_hi must have {N} entries (all layers' neurons)")
        if np.isnan(clo).any() or np.isnan(chi).any():
            raise ValueError("cells: NaN in a phase clip")
    else:
        if inputs is None:
            raise ValueError("bounds needs inputs or cells")
        lo, hi = _as_batch(inputs, network.n_in)
        clo = np.full((lo.shape[0], N), -np.inf)
        chi = np.full((lo.shape[0], N), np.inf)
    _check_box(lo, hi)
    if perturbation.pre_clip is not None:  # known bounds of z' (a saturating quantizer's range): as clips
        clo = np.maximum(clo, perturbation.pre_clip[0][None, :])
        chi = np.minimum(chi, perturbation.pre_clip[1][None, :])
    C = None
    if spec is not None:
        C = np.array(spec, dtype=np.float64)
        if C.ndim == 1:
            C = C[None, :]
        if C.ndim != 2 or C.shape[1] != network.n_out or C.shape[0] == 0:
            raise ValueError(f"spec must have shape (m, {network.n_out}), got {np.shape(spec)}")
        if not np.all(np.isfinite(C)):
            raise ValueError("spec contains NaN or inf")
    if inter not in (0, 1, 2, 3):
        raise ValueError(f"inter must be 0, 1, 2 or 3, got {inter!r}")
    if refine not in ("all", "unstable"):
        raise ValueError(f"refine must be 'all' or 'unstable', got {refine!r}")
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive int, got {block!r}")
    xl, xh = _normalize(p, lo, hi)
    clo = np.ascontiguousarray(clo)
    chi = np.ascontiguousarray(chi)
    if method == "linear":
        A = np.ascontiguousarray(np.eye(network.n_out) if C is None else
                                 np.vstack([np.eye(network.n_out), C * p.out_std[None, :]]))
        kern = K.linear_pass if lo.shape[0] >= _PARALLEL_MIN else K.linear_pass_serial
        (NL, NH, PL, PH, hNl, hNh, hPl, hPh, dHl, dHh, inf, aL, aH) = kern(
            xl, xh, clo, chi, A, 1 if noise == "substitute" else 0, bool(mix), int(inter), refine == "all",
            float(dz_ratio), *p.net)
    else:
        kern = K.interval_pass if lo.shape[0] > block else K.interval_pass_serial
        (NL, NH, PL, PH, hNl, hNh, hPl, hPh, dHl, dHh, inf) = kern(
            xl, xh, clo, chi, method == "diff", int(block), *p.net)
        aL = aH = None
    if aL is not None:
        # rows 0..n_out-1 of A are the identity: the joint pass bounds h'_L directly
        n_out = network.n_out
        hPl = np.maximum(hPl, aL[:, :n_out])
        hPh = np.minimum(hPh, aH[:, :n_out])
        with np.errstate(invalid="ignore"):
            dHl = np.maximum(dHl, np.nan_to_num(_dn(hPl - hNh), nan=-np.inf))
            dHh = np.minimum(dHh, np.nan_to_num(_up(hPh - hNl), nan=np.inf))
    return _finish(p, method, C, NL, NH, PL, PH, hNl, hNh, hPl, hPh, dHl, dHh, inf, aL, aH)


def _finish(p, method, C, NL, NH, PL, PH, hNl, hNh, hPl, hPh, dHl, dHh, inf, aL, aH) -> OutputBounds:
    n_out = p.widths[-1]
    std, mean = p.out_std, p.out_mean
    with np.errstate(invalid="ignore", over="ignore"):
        yPl = _dn(_dn(hPl * std) + mean)
        yPh = _up(_up(hPh * std) + mean)
        yNl = _dn(_dn(hNl * std) + mean)
        yNh = _up(_up(hNh * std) + mean)
        dyl = _dn(dHl * std)
        dyh = _up(dHh * std)
    spec_lo = spec_hi = None
    if C is not None:
        spec_lo, spec_hi = _affine_iv(C, yPl, yPh, np.zeros(C.shape[0]))
    if aL is not None and C is not None:
        # rows n_out.. of the kernel: bounds of (C diag(std)) h'_L; the product C*std is off by at
        # most u|C std| per entry, times |h'|max; then add C @ mean rigorously.
        Cs = C * std[None, :]
        hmax = np.maximum(np.abs(hPl), np.abs(hPh))
        err = _up(_up(2 * _U * (hmax @ np.abs(Cs).T)) * (1 + 1e-10))
        ml, mh = _affine_iv(C, mean[None, :], mean[None, :], np.zeros(C.shape[0]))
        sl = _dn(_dn(aL[:, n_out:] - err) + ml)
        sh = _up(_up(aH[:, n_out:] + err) + mh)
        spec_lo = np.maximum(spec_lo, np.where(np.isnan(sl), -np.inf, sl))
        spec_hi = np.minimum(spec_hi, np.where(np.isnan(sh), np.inf, sh))
    for a, fill in ((yPl, -np.inf), (yPh, np.inf), (yNl, -np.inf), (yNh, np.inf), (dyl, -np.inf), (dyh, np.inf)):
        a[np.isnan(a)] = fill
    if p.output == "identity":
        sl, sh, dsl, dsh = yPl, yPh, dyl, dyh
    elif p.output == "sigmoid":
        sl, sh, dsl, dsh = K.score_sigmoid(yNl, yNh, yPl, yPh, dyl, dyh)
    else:
        sl, sh, dsl, dsh = K.score_softmax(yNl, yNh, yPl, yPh, dyl, dyh)
    offs = np.concatenate([[0], np.cumsum(p.widths[1:])])
    split = lambda a: [a[:, offs[k]:offs[k + 1]] for k in range(len(offs) - 1)]  # noqa: E731
    return OutputBounds(yPl, yPh, sl, sh, dyl, dyh, dsl, dsh, spec_lo, spec_hi, split(PL), split(PH), split(NL),
                        split(NH), inf.astype(bool), method)
