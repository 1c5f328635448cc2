"""Pictures of a run on a 2-input network: the cell map and the certified-deviation heatmap.

:func:`plot_cells` draws, for a :class:`hybridq.result.Result` of a 2-input network, two panels
side by side over the input box:

* left, every leaf cell of the branch and bound coloured by how it was decided
  (``bounds``: proved by the bound pass, ``smt``: proved by the SMT backend,
  ``counterexample``: refuted, ``open``: left undecided);
* right, a heatmap of the certified bound each leaf cell carries (for a deviation property, the
  certified upper bound of ``|s(x; theta) - s(x; theta0)|`` over the cell).

Counterexample inputs are marked with a cross on both panels, and the title names the verdict and
the cell counts.  Cells that share an input box (phase splits of the perturbed ReLUs) are drawn on
top of each other, the most severe status last; every leaf is one drawn patch, so the counts that
:func:`plot_cells` returns are counted from the figure itself.

:func:`plot_study` draws the seed-paper figure: maximum confidence deviation against the size of
the parameter perturbation, ReLU vs linear, local and global.

matplotlib runs headless (the ``Agg`` canvas; ``pyplot`` is never imported).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from hybridq.errors import ConfigError

__all__ = ["STATUSES", "STATUS_COLORS", "CellMapSummary", "plot_cells", "plot_study"]

log = logging.getLogger(__name__)

#: Leaf-cell statuses, in drawing order (the most severe last, so it ends up on top).
STATUSES = ("bounds", "smt", "open", "counterexample")
#: Colour per status (colour-blind-safe Okabe-Ito palette).
STATUS_COLORS = {
    "bounds": "#009E73",
    "smt": "#0072B2",
    "open": "#BBBBBB",
    "counterexample": "#D55E00",
}
_LABELS = {"bounds": "bounds", "smt": "SMT", "open": "open", "counterexample": "counterexample"}


@dataclass(frozen=True)
class CellMapSummary:
    """What :func:`plot_cells` drew.

    Attributes
    ----------
    path : Path or None
        The PNG written (None when no path was given).
    counts : dict str -> int
        Number of drawn leaf-cell patches per status (keys :data:`STATUSES`), counted from the
        figure's patch collections.
    n_cells : int
        Total number of drawn leaf cells.
    n_counterexamples : int
        Number of counterexample markers drawn.
    figure : matplotlib.figure.Figure
        The figure (Agg canvas), for further drawing or saving.
    """

    path: Path | None
    counts: dict
    n_cells: int
    n_counterexamples: int
    figure: object


def _leaf_attr(cell, *names, default=None):
    for n in names:
        if isinstance(cell, Mapping) and n in cell:
            return cell[n]
        if hasattr(cell, n):
            return getattr(cell, n)
    return default


def _leaves(result) -> list:
    for name in ("cells", "leaves", "leaf_cells"):
        cells = getattr(result, name, None)
        if cells is not None:
            return list(cells)
    raise ConfigError("the result carries no leaf cells to plot: cell plots need a run on a network with at most "
                      "two inputs (hybridq.verify, or hybridq.quantify with what='deviation')")


def _counterexample_points(result) -> np.ndarray:
    """Inputs of the counterexample (a :class:`Result`) or of the witness (a :class:`Quantity`)."""
    pts = []
    cexs = getattr(result, "counterexamples", None)
    if cexs is None:
        one = getattr(result, "counterexample", None)
        if one is None:
            one = getattr(result, "witness", None)
        cexs = [] if one is None else [one]
    for c in cexs:
        x = _leaf_attr(c, "x", "input")
        if x is not None:
            pts.append(np.asarray(x, dtype=np.float64).reshape(-1))
    return np.array(pts).reshape(-1, pts[0].size if pts else 2)


def _norm_status(s) -> str:
    s = str(getattr(s, "value", s)).lower()
    aliases = {"bound": "bounds", "proved": "bounds", "refuted": "counterexample", "cex": "counterexample",
               "sat": "counterexample", "unknown": "open", "undecided": "open", "timeout": "open"}
    s = aliases.get(s, s)
    if s not in STATUSES:
        raise ConfigError(f"unknown leaf-cell status {s!r}; expected one of {', '.join(STATUSES)}")
    return s


def _rect_paths(lo: np.ndarray, hi: np.ndarray, min_w: np.ndarray):
    """Closed rectangle vertices ``(n, 5, 2)``, degenerate widths widened to ``min_w`` for display."""
    lo = lo.copy()
    hi = hi.copy()
    for d in range(2):
        thin = (hi[:, d] - lo[:, d]) < min_w[d]
        mid = 0.5 * (lo[thin, d] + hi[thin, d])
        lo[thin, d], hi[thin, d] = mid - 0.5 * min_w[d], mid + 0.5 * min_w[d]
    x0, y0, x1, y1 = lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1]
    return np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x1, y1], 1),
                     np.stack([x0, y1], 1), np.stack([x0, y0], 1)], axis=1)


def plot_cells(result, path: str | Path | None = None, *, dims: Sequence[int] = (0, 1),
               box=None, title: str | None = None, dpi: int = 120) -> CellMapSummary:
    """Draw the leaf cells of a 2-input run: status map and certified-bound heatmap.

    Parameters
    ----------
    result : hybridq.result.Result or hybridq.result.Quantity
        A run whose leaf cells (``result.leaves``, :class:`hybridq.result.LeafCell`) each have
        ``lower``, ``upper`` (``(n_in,)`` raw input space), ``status`` (one of :data:`STATUSES`)
        and a certified ``bound`` (float; ``inf`` or NaN where none was proved): for a deviation
        property the bound of the deviation on the cell, else of the violation margin.  A
        ``Result``'s counterexample or a ``Quantity``'s witness is marked.
    path : str or Path, optional
        Where to write the PNG; nothing is written when None.
    dims : (int, int)
        The two input coordinates drawn (the network must have exactly two inputs unless the
        other coordinates are degenerate in every cell).
    box : InputBox or (lower, upper), optional
        The whole input set, drawn as a hatched background: a ``not_robust`` run stops at its
        first counterexample, so its leaves need not cover the box (default: the leaves' hull).
    title : str, optional
        Overrides the default title (verdict and counts).
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    CellMapSummary
        Counts per status counted from the drawn patches.

    Raises
    ------
    ConfigError
        The result has no leaf cells, a cell has an unknown status, or the input has more than
        two non-degenerate dimensions.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    cells = _leaves(result)
    if not cells:
        raise ConfigError("the result has no leaf cells to plot")
    lo = np.array([np.asarray(_leaf_attr(c, "lower"), dtype=np.float64).reshape(-1) for c in cells])
    hi = np.array([np.asarray(_leaf_attr(c, "upper"), dtype=np.float64).reshape(-1) for c in cells])
    dims = tuple(int(d) for d in dims)
    n_in = lo.shape[1]
    if len(dims) != 2 or not all(0 <= d < n_in for d in dims) or dims[0] == dims[1]:
        raise ConfigError(f"plot dims {dims} are not two distinct coordinates of a {n_in}-input network")
    others = [d for d in range(n_in) if d not in dims]
    if others and np.any(hi[:, others] > lo[:, others]):
        raise ConfigError(f"cell plots need a 2-input network (or fixed other inputs); this one has {n_in} inputs")
    lo, hi = lo[:, dims], hi[:, dims]
    status = np.array([_norm_status(_leaf_attr(c, "status")) for c in cells])
    bound = np.array([float(_leaf_attr(c, "bound", "dev_hi", "upper_bound", default=np.nan)) for c in cells])

    if box is not None:
        from hybridq.inputs import as_input_box

        ib = as_input_box(box)
        blo, bhi = ib.lower[list(dims)], ib.upper[list(dims)]
    else:
        blo, bhi = np.min(lo, axis=0), np.max(hi, axis=0)
    span = bhi - blo
    span = np.where(span > 0, span, 1.0)
    min_w = 0.006 * span
    verts = _rect_paths(lo, hi, min_w)
    lw = 0.25 if len(cells) < 500 else 0.1 if len(cells) < 5000 else 0.04  # dense maps: thick edges would hide colours

    fig = Figure(figsize=(11.5, 5.0), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax_s, ax_h = fig.subplots(1, 2)
    for ax in (ax_s, ax_h):  # background: parts of the box no leaf covers (not examined)
        ax.add_collection(PolyCollection(list(_rect_paths(blo[None, :], bhi[None, :], min_w)), closed=True,
                                         facecolors="white", edgecolors="0.6", hatch="..", linewidths=0.5,
                                         gid="background", zorder=1))

    # ---- status map: one collection per status, most severe drawn last
    for s in STATUSES:
        m = status == s
        coll = PolyCollection(list(verts[m]), closed=True, facecolors=STATUS_COLORS[s],
                              edgecolors="k", linewidths=lw, gid=f"status:{s}", zorder=2)
        ax_s.add_collection(coll)
    handles = [Patch(facecolor=STATUS_COLORS[s], edgecolor="k", label=f"{_LABELS[s]} ({int(np.sum(status == s))})")
               for s in STATUSES]
    handles.append(Patch(facecolor="white", edgecolor="0.6", hatch="..", label="not examined"))
    ax_s.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8,
                frameon=False)
    ax_s.set_title("leaf cells by how they were decided", fontsize=10)

    # ---- heatmap of the certified bound, largest on top
    prop = getattr(result, "property", None)
    is_dev = prop is None or type(prop).__name__ == "Deviation"
    what = "certified deviation bound" if is_dev else "certified violation-margin bound (>= 0: may violate)"
    finite = np.isfinite(bound)
    order = np.argsort(np.where(finite, bound, -np.inf), kind="stable")
    fin_o = [i for i in order if finite[i]]
    if np.any(~finite):
        ax_h.add_collection(PolyCollection(list(verts[~finite]), closed=True, facecolors="white",
                                           edgecolors="0.5", hatch="///", linewidths=0.25,
                                           gid="bound:none", zorder=2))
    if fin_o:
        vals = bound[fin_o]
        pos = vals[vals > 0]
        if pos.size and pos.size == vals.size and pos.max() / pos.min() > 100:
            norm = LogNorm(vmin=pos.min(), vmax=pos.max())
        else:
            vmax = float(vals.max())
            norm = Normalize(vmin=min(0.0, float(vals.min())), vmax=vmax if vmax > 0 else 1.0)
        hc = PolyCollection(list(verts[fin_o]), closed=True, cmap="viridis", norm=norm,
                            edgecolors="k", linewidths=0.6 * lw, gid="bound:value", zorder=2)
        hc.set_array(vals)
        ax_h.add_collection(hc)
        cb = fig.colorbar(hc, ax=ax_h, shrink=0.9)
        cb.set_label(what)
    ax_h.set_title(f"{what} per cell", fontsize=10)

    # ---- counterexamples
    pts = _counterexample_points(result)
    n_cex = 0
    mark = "counterexample" if hasattr(result, "verdict") else "witness of the max deviation"
    if pts.size:
        pts = pts[:, dims] if pts.shape[1] > 2 or dims != (0, 1) else pts
        for ax in (ax_s, ax_h):
            ax.scatter(pts[:, 0], pts[:, 1], marker="X", s=90, c="#CC0000", edgecolors="w",
                       linewidths=0.8, zorder=5, label=mark, gid="counterexample")
        ax_h.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=8, frameon=False)
        n_cex = int(pts.shape[0])

    x0, x1 = float(min(blo[0], np.min(lo[:, 0]))), float(max(bhi[0], np.max(hi[:, 0])))
    y0, y1 = float(min(blo[1], np.min(lo[:, 1]))), float(max(bhi[1], np.max(hi[:, 1])))
    padx = 0.02 * (x1 - x0 if x1 > x0 else 1.0)
    pady = 0.02 * (y1 - y0 if y1 > y0 else 1.0)
    for ax in (ax_s, ax_h):
        ax.set_xlim(x0 - padx, x1 + padx)
        ax.set_ylim(y0 - pady, y1 + pady)
        ax.set_xlabel(f"x[{dims[0]}]")
        ax.set_ylabel(f"x[{dims[1]}]")
        ax.set_aspect("auto")

    counts = {s: 0 for s in STATUSES}
    for coll in ax_s.collections:
        gid = coll.get_gid() or ""
        if gid.startswith("status:"):
            counts[gid.split(":", 1)[1]] += len(coll.get_paths())
    if title is None:
        if hasattr(result, "verdict"):
            head = f"verdict: {result.verdict}"
        else:  # a Quantity (max deviation)
            head = f"max deviation in [{result.lower:.4g}, {result.upper:.4g}] (witnessed, proved)"
        title = (f"{head} | {len(cells)} leaf cells: {counts['bounds']} bounds, {counts['smt']} SMT, "
                 f"{counts['counterexample']} counterexample, {counts['open']} open")
    fig.suptitle(title, fontsize=11)
    out = None
    if path is not None:
        out = Path(path)
        fig.savefig(out, format=out.suffix.lower().lstrip(".") if out.suffix.lower() in (".pdf", ".svg") else "png")
        log.info("wrote %s (%d cells)", out, len(cells))
    return CellMapSummary(out, counts, int(sum(counts.values())), n_cex, fig)


def plot_study(rows: Iterable[Mapping], path: str | Path | None = None, *,
               title: str = "Confidence deviation under parameter perturbation", dpi: int = 120):
    """The seed-paper figure: maximum confidence deviation against perturbation size.

    Parameters
    ----------
    rows : iterable of mappings
        One per measurement, with keys ``network`` (e.g. ``"relu"``, ``"linear"``), ``scope``
        (``"local"`` or ``"global"``), ``family`` (``"abs"``, ``"rel"``, ``"fixed"`` or
        ``"point"``: the concrete rounded copy), ``radius`` (the perturbation size, float > 0:
        ``EPS`` for ``abs:EPS`` and ``rel:EPS``, ``2^-(N+1)`` for ``qM.N`` and ``point:qM.N``),
        ``proved`` (certified upper bound of the max deviation) and ``witnessed`` (a deviation
        reached by an exactly re-checked pair); optional ``label`` (e.g. ``"q2.8"``).
    path : str or Path, optional
        Where to write the PNG.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ConfigError
        No rows, or a row missing a key.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(rows)
    if not rows:
        raise ConfigError("plot_study needs at least one row")
    need = ("network", "scope", "family", "radius", "proved", "witnessed")
    for i, r in enumerate(rows):
        miss = [k for k in need if k not in r]
        if miss:
            raise ConfigError(f"plot_study row {i} lacks {', '.join(miss)}")
    scopes = [s for s in ("local", "global") if any(r["scope"] == s for r in rows)]
    nets = sorted({r["network"] for r in rows}, key=lambda n: (n != "relu", n))
    colors = {n: c for n, c in zip(nets, ("#0072B2", "#D55E00", "#009E73", "#CC79A7"))}
    markers = {"abs": "o", "rel": "D", "fixed": "s", "point": "^"}
    fam_label = {"abs": "abs:EPS box", "rel": "rel:EPS box", "fixed": "qM.N box", "point": "point:qM.N (rounded copy)"}
    ls_of = {"abs": "-", "rel": "-.", "fixed": ":", "point": "--"}

    fig = Figure(figsize=(5.2 * len(scopes), 4.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(scopes), sharey=True))
    for ax, scope in zip(axes, scopes):
        for net in nets:
            for fam in markers:
                sel = sorted((r for r in rows if r["scope"] == scope and r["network"] == net and r["family"] == fam),
                             key=lambda r: r["radius"])
                if not sel:
                    continue
                rad = np.array([r["radius"] for r in sel], dtype=float)
                pr = np.array([r["proved"] for r in sel], dtype=float)
                wi = np.array([r["witnessed"] for r in sel], dtype=float)
                ax.plot(rad, pr, ls_of[fam], marker=markers[fam], color=colors[net], ms=5,
                        label=f"{net}, {fam_label[fam]}")
                ax.plot(rad, wi, ls="none", marker=markers[fam], mfc="none", color=colors[net], ms=8,
                        alpha=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("perturbation size (EPS of abs/rel, 2^-(N+1) for qM.N)")
        ax.set_title(f"{scope} robustness", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("max |confidence deviation|  (filled: proved, hollow: witnessed)")
    axes[-1].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=11)
    if path is not None:
        fig.savefig(Path(path), format="png")
    return fig
