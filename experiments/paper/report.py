"""``OUT/report.md`` and its figures, from the files in ``OUT`` alone.

Reading: ``paper.json`` (what was asked for), ``sessions.jsonl`` (machines,
commands), and per cell and seed ``results.json`` (accuracies on test and
validation, geometry, code), ``embedding.npz`` (figure 1's features) and
``failed.json``. Nothing is trained or evaluated here;
running it again redraws the figures (t-SNE / UMAP of the saved features) and
rewrites the markdown. ``python train/run.py --protocol paper --report-only
--out OUT`` is the command.

The markdown's sections live in :mod:`.sections` and :mod:`.sweep_sections`;
the comparisons and their correction in :mod:`.comparisons`; this module
gathers the records (:class:`ReportData`), draws the figures and puts the
sections together (:func:`render`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from train import atomic_write_text

from .cells import (RANDOM_INIT, Cell, eps_points, figure_cell_names, grid_sinsim_cell, lambda_points, method_cell,
                    plan, variants)
from .collect import CellRecords, dataset_error, load_cell
from .figures import SWEEP_PANELS, UMAP_MISSING, EmbeddingPanel, embedding_figure, sweep_figure
from .labels import METHOD_NAMES, budget_text, dataset_title
from .spec import FIGURE_METHODS, PAPER_DATASETS, PAPER_METHODS, PaperConfig, read_protocol

REPORT = "report.md"
FIGURES = "figures"


class ReportError(RuntimeError):
    """There is nothing to report on."""


@dataclass
class Figures:
    """What was drawn: paths relative to OUT, and notes for the text."""

    embeddings: Dict[str, str] = field(default_factory=dict)
    embedding_notes: Dict[str, str] = field(default_factory=dict)
    lambdas: Dict[str, str] = field(default_factory=dict)
    epsilons: Dict[str, str] = field(default_factory=dict)
    umap_missing: bool = False


class ReportData:
    """Every cell record the report needs, loaded once."""

    def __init__(self, out: Path, pcfg: PaperConfig):
        self.out, self.pcfg = Path(out), pcfg
        self._cells: Dict[Cell, CellRecords] = {}
        self.sessions = self._sessions()

    def records(self, cell: Cell) -> CellRecords:
        if cell not in self._cells:
            self._cells[cell] = load_cell(self.out, cell, self.pcfg.seeds)
        return self._cells[cell]

    @property
    def table_datasets(self) -> List[str]:
        """The paper's four, always (unrun ones say so), then any other asked for."""
        return list(PAPER_DATASETS) + [d for d in self.pcfg.datasets if d not in PAPER_DATASETS]

    @property
    def table_methods(self) -> List[str]:
        return list(PAPER_METHODS) + [m for m in self.pcfg.methods if m not in PAPER_METHODS]

    def grid(self, dataset: str, method: str) -> CellRecords:
        if method == "sinsim":
            return self.records(grid_sinsim_cell(self.pcfg, dataset))
        if method == RANDOM_INIT:
            return self.records(Cell(dataset, RANDOM_INIT, RANDOM_INIT))
        return self.records(method_cell(dataset, method))

    def lambda_points(self, dataset: str, on: str, term: str) -> List[Tuple[float, Cell]]:
        return lambda_points(self.pcfg, dataset, on, term)

    def eps_points(self, dataset: str, on: str, term: str) -> List[Tuple[float, Cell]]:
        return eps_points(self.pcfg, dataset, on, term)

    def lambda_sweep(self, dataset: str, on: str, term: str) -> List[Tuple[float, CellRecords]]:
        return sorted(((x, self.records(c)) for x, c in self.lambda_points(dataset, on, term)), key=lambda t: t[0])

    def eps_sweep(self, dataset: str, on: str, term: str) -> List[Tuple[float, CellRecords]]:
        return sorted(((x, self.records(c)) for x, c in self.eps_points(dataset, on, term)), key=lambda t: t[0])

    def loaded(self) -> List[Tuple[Cell, CellRecords]]:
        """Every cell the protocol asked for (loaded now if not yet), then any other loaded."""
        for d in self.pcfg.all_datasets:
            for cell in plan(self.pcfg, d):
                self.records(cell)
        return list(self._cells.items())

    def title(self, dataset: str) -> str:
        """Dataset name with its data copy, from any finished cell of it."""
        for method in self.table_methods:
            self.grid(dataset, method)
        for cell, rec in list(self._cells.items()):
            if cell.dataset == dataset and rec.any_result is not None:
                return dataset_title(dataset, rec.any_result)
        return dataset_title(dataset)

    def all_results(self) -> List[dict]:
        return [r for _, rec in self.loaded() for r in rec.results.values()]

    def dataset_error(self, dataset: str) -> Optional[str]:
        return dataset_error(self.out, dataset)

    def _sessions(self) -> List[dict]:
        path = self.out / "sessions.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _load_npz(folder: Path) -> Optional[dict]:
    path = folder / "embedding.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def draw_embedding_figure(data: ReportData, dataset: str, figures: Figures, log: Callable[[str], None]) -> None:
    """Figure 1 for ``dataset`` at the lowest seed with saved features."""
    names = figure_cell_names(data.pcfg, dataset)
    cells = [data.records(grid_sinsim_cell(data.pcfg, dataset) if m == "sinsim" else method_cell(dataset, m))
             for m in FIGURE_METHODS]
    seeds = [s for s in data.pcfg.seeds if any((c.folders.get(s) and (c.folders[s] / "embedding.npz").is_file())
                                               for c in cells)]
    if not seeds:
        figures.embedding_notes[dataset] = f"not drawn: no finished cell of {', '.join(names)} with saved features"
        return
    seed = min(seeds)
    panels, classes, points, total, budget = [], None, None, None, None
    for method, rec in zip(FIGURE_METHODS, cells):
        z = _load_npz(rec.folders[seed]) if seed in rec.folders else None
        title = METHOD_NAMES[method]
        if z is None:
            panels.append(EmbeddingPanel(title))
            continue
        emb = rec.results[seed].get("geometry") or {}
        note = ", ".join(f"{name} {emb[k]:{fmt}}" for k, name, fmt in (("silhouette", "silhouette", ".3f"),
                                                                       ("uniformity", "uniformity", ".2f"),
                                                                       ("effective_rank", "rank", ".0f"))
                         if emb.get(k) is not None)
        panels.append(EmbeddingPanel(title, z["features"], z["labels"], note))
        classes, points = [str(c) for c in z["classes"]], len(z["labels"])
        total = emb.get("split_images") if emb.get("split") == "test" else None  # the figure's split
        budget = budget_text(rec.results[seed])
    rel = f"{FIGURES}/fig1-embeddings-{dataset}.png"
    sub = f"{points:,} of {total:,} test images (random subsample, seed 0)" if total else f"{points:,} test images"
    title = (f"{data.title(dataset)}: frozen ResNet-18 features of {sub}, coloured by class\n"
             f"training seed {seed}; {budget}")
    rows = embedding_figure(data.out / rel, title, panels, classes)
    figures.embeddings[dataset] = rel
    if "UMAP" not in rows:
        figures.umap_missing = True
    log(f"figure 1 ({dataset}): {data.out / rel} ({' and '.join(rows)})")


def _series(points: List[Tuple[float, CellRecords]]) -> Dict[str, Dict[float, object]]:
    return {(metric, source): {x: rec.summary(metric, source) for x, rec in points}
            for metric, source, _, _ in SWEEP_PANELS}


def _reference(simclr: CellRecords) -> Dict[Tuple[str, str], object]:
    """SimCLR's summary on every panel: the horizontal reference band of figures 2 and 3."""
    return {(m, s): simclr.summary(m, s) for m, s, _, _ in SWEEP_PANELS}


def draw_sweep_figures(data: ReportData, dataset: str, figures: Figures, log: Callable[[str], None]) -> None:
    p = data.pcfg
    title = data.title(dataset)
    simclr = data.records(method_cell(dataset, "simclr"))
    if "lambda" in p.sweeps and any(rec.results for term, on in variants(p)
                                    for _, rec in data.lambda_sweep(dataset, on, term)):
        series = {f"{term} on {on}": _series(data.lambda_sweep(dataset, on, term)) for term, on in variants(p)}
        rel = f"{FIGURES}/fig2-lambda-{dataset}.png"
        sweep_figure(data.out / rel, f"{title}: accuracy and geometry vs the Sinkhorn weight λ (ε = "
                     f"{p.sinsim.sinkhorn_eps:g}; λ = 0 is SimCLR); mean ± 1 std over seeds, dots: single seeds",
                     "λ (Sinkhorn weight)", sorted(p.lambdas), series, _reference(simclr), "SimCLR (λ = 0), ± 1 std")
        figures.lambdas[dataset] = rel
        log(f"figure 2 ({dataset}): {data.out / rel}")
    if "eps" in p.sweeps and any(rec.results for term, on in variants(p)
                                 for _, rec in data.eps_sweep(dataset, on, term)):
        series = {f"{term} on {on}": _series(data.eps_sweep(dataset, on, term)) for term, on in variants(p)}
        rel = f"{FIGURES}/fig3-eps-{dataset}.png"
        sweep_figure(data.out / rel, f"{title}: accuracy and geometry vs the entropic regularisation ε (λ = "
                     f"{p.sinsim.sinkhorn_weight:g}); mean ± 1 std over seeds, dots: single seeds",
                     "ε (Sinkhorn epsilon)", sorted(p.epsilons), series, _reference(simclr), "SimCLR (λ = 0), ± 1 std")
        figures.epsilons[dataset] = rel
        log(f"figure 3 ({dataset}): {data.out / rel}")


def render(data: ReportData, figures: Figures, written: str) -> str:
    """The whole markdown: limits first, then the verdict, then the evidence."""
    from . import sections, sweep_sections
    from .comparisons import build_family

    family = build_family(data)
    parts = [sections.title(), sections.limits(data, family), sections.header(data, written),
             sections.verdict(data, family),
             sections.comparisons_table(family),
             sweep_sections.variants(data, family), sections.tables(data), sweep_sections.embeddings(data, figures),
             sweep_sections.sweeps(data, figures, family), sections.cost(data), sections.data_and_seeds(data),
             sections.code(data), sections.hardware(data), sections.methods(data)]
    return "\n".join(p for p in parts if p)


def write_report(out, log: Callable[[str], None] = print) -> Path:
    """Draw the figures and write ``OUT/report.md``; returns its path."""
    out = Path(out)
    saved = read_protocol(out)
    if saved is None:
        raise ReportError(f"{out / 'paper.json'} not found: {out} holds no paper protocol run "
                          "(run python train/run.py --protocol paper ... --out OUT first)")
    data = ReportData(out, PaperConfig.from_saved(saved, str(out)))
    figures = Figures()
    for dataset in data.pcfg.datasets:
        draw_embedding_figure(data, dataset, figures, log)
    for dataset in data.pcfg.sweep_datasets:
        draw_sweep_figures(data, dataset, figures, log)
    if figures.umap_missing:
        log(UMAP_MISSING)
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = render(data, figures, written)
    path = out / REPORT
    atomic_write_text(path, text)
    return path
