"""The report's figures, drawn with matplotlib from the cells' files only.

* Figure 1, one PNG per dataset: the test features of SimCLR, SinSim and
  VICReg (columns) mapped to 2-D by t-SNE (scikit-learn; PCA initialisation,
  perplexity min(30, (n - 1) / 3), random_state 0) and, in a second row, by
  UMAP (umap-learn, random_state 0) when it is installed; points coloured by
  class. A method without a finished cell gets a "not run" panel.
* Figures 2 and 3, one PNG per sweep dataset: against lambda or epsilon, the
  validation and test linear accuracy and the test kNN accuracy (top row),
  and the geometry of the features, alignment, centred uniformity and
  centred effective rank (bottom row, so collapse shows next to the accuracy); one line per
  Sinkhorn term and place it acts on; markers are the means over seeds,
  error bars +- one sample standard deviation (ddof = 1), small dots the
  individual seeds. The x axis is categorical (the swept values, evenly
  spaced), so lambda = 0 sits on it.

Figures use matplotlib's object API (``Figure``, no pyplot state) with a fixed
size and no tight bounding box, so a PNG is exactly ``figsize * DPI`` pixels:
figure 1 is ``(4 * columns) x (4 * rows + 1)`` inches, figures 2 and 3 are
13.5 x 8 inches, at 100 dpi.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from train import atomic_write_bytes

from .aggregate import Summary

DPI = 100
PANEL_INCHES = 4.0
HEADER_INCHES = 1.0
SWEEP_SIZE = (13.5, 8.0)
UMAP_MISSING = ("UMAP not drawn: umap-learn is not installed (pip install umap-learn, or this project's "
                "extra: pip install -e '.[umap]' --no-build-isolation)")
# (key, source in CellRecords.scores, panel title, y label): figures 2 and 3, two rows of three
SWEEP_PANELS = (
    ("linear", "val", "linear probe, validation (choices)", "accuracy (%)"),
    ("linear", "results", "linear probe, test", "accuracy (%)"),
    ("knn", "results", "kNN, test", "accuracy (%)"),
    ("alignment", "geometry", "alignment ↓ (views of one image)", "E ||f(x) - f(x+)||²"),
    ("uniformity_centred", "geometry", "centred uniformity ↓ (0: collapsed)", "log E exp(-2 ||f(x) - f(y)||²)"),
    ("effective_rank_centred", "geometry", "centred effective rank ↑ (RankMe)", "exp(entropy of singular values)"),
)


def umap_module():
    """umap-learn's module, or None when it is not installed (an optional dependency)."""
    try:
        import umap
    except ImportError:
        return None
    return umap


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def tsne_layout(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE on half the cores' OpenMP threads: scikit-learn's OpenMP workers
    busy-wait, and when another process holds a core they slow down a
    hundredfold (measured on 2 cores: 150 points in 44 s with 2 threads,
    0.4 s with 1)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = min(30.0, (len(x) - 1) / 3)
    with threadpool_limits(limits=max(1, (os.cpu_count() or 2) // 2), user_api="openmp"):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                    random_state=seed).fit_transform(_unit(x))


def umap_layout(x: np.ndarray, seed: int = 0) -> np.ndarray:
    umap = umap_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden to 1 by setting random_state": wanted
        return umap.UMAP(n_components=2, n_neighbors=min(15, len(x) - 1), random_state=seed).fit_transform(_unit(x))


def save_png(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


@dataclass
class EmbeddingPanel:
    title: str
    features: Optional[np.ndarray] = None  # None: the cell did not run
    labels: Optional[np.ndarray] = None
    note: str = ""


def class_colours(k: int) -> np.ndarray:
    """``k`` RGBA colours: matplotlib's tab10 / tab20 up to 20 classes, turbo beyond."""
    if k <= 20:
        return matplotlib.colormaps["tab10" if k <= 10 else "tab20"](np.arange(k))
    return matplotlib.colormaps["turbo"](np.linspace(0, 1, k))


def embedding_figure(path: Path, title: str, panels: Sequence[EmbeddingPanel], class_names: Sequence[str],
                     with_umap: bool = True) -> List[str]:
    """Draw figure 1 for one dataset; returns the rows drawn (["t-SNE"] or ["t-SNE", "UMAP"])."""
    rows = [("t-SNE", tsne_layout)]
    if with_umap and umap_module() is not None:
        rows.append(("UMAP", umap_layout))
    k = len(class_names)
    fig = Figure(figsize=(PANEL_INCHES * len(panels), PANEL_INCHES * len(rows) + HEADER_INCHES), dpi=DPI,
                 layout="constrained")
    axes = fig.subplots(len(rows), len(panels), squeeze=False)
    colours = class_colours(k)
    for c, panel in enumerate(panels):
        for r, (name, layout) in enumerate(rows):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{panel.title}, {name}" + (f"\n{panel.note}" if panel.note else ""), fontsize=10)
            if panel.features is None:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, fontsize=14)
                continue
            xy = layout(panel.features)
            size = min(20.0, max(2.0, 6000.0 / len(xy)))
            ax.scatter(xy[:, 0], xy[:, 1], c=colours[np.asarray(panel.labels)], s=size, linewidths=0)
    if k <= 20:  # a legend of 100 CIFAR-100 classes would be unreadable: colours only
        handles = [Line2D([], [], marker="o", linestyle="", color=colours[i], label=str(name))
                   for i, name in enumerate(class_names)]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(k, 10), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    save_png(fig, path)
    return [name for name, _ in rows]


def sweep_figure(path: Path, title: str, xlabel: str, xs: Sequence[float],
                 series: Dict[str, Dict[tuple, Dict[float, Optional[Summary]]]],
                 reference: Optional[Dict[tuple, Optional[Summary]]] = None, reference_label: str = "") -> Path:
    """Figures 2 / 3: ``series[line][(key, source)][x]`` summaries over
    seeds, one panel per :data:`SWEEP_PANELS` entry; ``reference[(key,
    source)]`` a horizontal line with a +-1 std band (SimCLR)."""
    fig = Figure(figsize=SWEEP_SIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(2, 3, squeeze=False).flatten()
    positions = np.arange(len(xs))
    for ax, (key, source, panel_title, ylabel) in zip(axes, SWEEP_PANELS):
        metric = (key, source)
        drawn = False
        for j, (label, per_metric) in enumerate(series.items()):
            offset = (j - (len(series) - 1) / 2) * 0.08  # side by side, not on top of each other
            points = [(i, per_metric.get(metric, {}).get(x)) for i, x in enumerate(xs)]
            points = [(i, s) for i, s in points if s is not None]
            if not points:
                continue
            drawn = True
            px = np.array([i for i, _ in points]) + offset
            line = ax.errorbar(px, [s.mean for _, s in points], yerr=[s.std or 0.0 for _, s in points],
                               marker="o", capsize=4, label=label)
            colour = line[0].get_color()
            for x, (_, s) in zip(px, points):
                ax.scatter([x] * s.n, s.values, s=16, color=colour, alpha=0.5, linewidths=0)
        ref = (reference or {}).get(metric)
        if ref is not None:
            ax.axhline(ref.mean, linestyle="--", color="grey", label=reference_label)
            if ref.std:
                ax.axhspan(ref.mean - ref.std, ref.mean + ref.std, color="grey", alpha=0.15, linewidth=0)
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, fontsize=14)
        ax.set_xticks(positions, [f"{x:g}" for x in xs])
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(panel_title, fontsize=10)
        if drawn and ax is axes[0]:  # one legend: every panel has the same lines
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_png(fig, path)
