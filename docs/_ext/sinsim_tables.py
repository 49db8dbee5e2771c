"""Sphinx directives that build the documentation's tables from the files that hold the numbers.

No measured figure is typed into a page: each table is read, at build time,
from the file its measurement was recorded in, and printed with the machine,
date, load and source that the file gives.

``measurements`` (a JSON file of ``bench/measurements/``)::

    ```{measurements} bench/measurements/cpu-kernel-paths-2026-11-30.json
    :tables: one-thread, two-threads
    ```

    The file: ``{"tables": [TABLE, ...], "defaults": {...}}``; each TABLE has
    ``id``, ``title``, ``machine``, ``date``, ``load``, ``source`` (where the
    numbers come from: a command, or the document they were transcribed
    from), optionally ``note`` and ``command``, ``columns`` (each
    ``{"label": ..., "key": ...}``, ``{"label": ..., "time_ms": ..., "ratio": ...}``
    or ``{"label": ..., "format": "{a} ms ({b}x)"}``)
    and ``rows`` (objects). A cell whose fields are missing or null is left
    empty. ``**bold**`` and ```code``` in text cells are rendered.
    ``defaults`` fill the fields a table leaves out.

``peers-table`` (the JSON lines of ``bench/test_peers.py``, rendered by
``bench/peers_table.py``, with the file's ``.meta.json`` sidecar giving
machine, date, load and source)::

    ```{peers-table} bench/measurements/peers-h200-2026-11-30.jsonl
    ```

``results-table`` (a run folder of ``results/``: mean +- sample std over the
seeds of each cell's ``results.json``)::

    ```{results-table} results/h200-2026-11-30-variants
    :dataset: cifar10
    random-init: untrained encoder
    simclr: SimCLR
    ```

``scaling-estimate`` (the table of ``bench/scaling_estimate.py``).
"""

from __future__ import annotations

import json
import re
import statistics
import string
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("title", "machine", "date", "load", "source")

# --------------------------------------------------------------------------- building blocks


def _inline(text: str) -> List[nodes.Node]:
    """``text`` with ``**strong**`` and ```literal``` spans as docutils nodes."""
    out: List[nodes.Node] = []
    for part in re.split(r"(\*\*[^*]+\*\*|`[^`]+`)", text):
        if not part:
            continue
        if part.startswith("**") and part.endswith("**"):
            out.append(nodes.strong(text=part[2:-2]))
        elif part.startswith("`") and part.endswith("`"):
            out.append(nodes.literal(text=part[1:-1]))
        else:
            out.append(nodes.Text(part))
    return out


def _paragraph(text: str, classes: Sequence[str] = ()) -> nodes.paragraph:
    para = nodes.paragraph(classes=list(classes))
    para.extend(_inline(text))
    return para


def table_node(title: str, header: Sequence[str], body: Iterable[Sequence[str]]) -> nodes.table:
    """A docutils table with a title row, a header row and text cells."""
    body = [list(row) for row in body]
    table = nodes.table(classes=["sinsim-table"])
    table += nodes.title(text=title)
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)

    def row_node(cells: Sequence[str]) -> nodes.row:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            para = nodes.paragraph()
            para.extend(_inline(str(cell)))
            entry += para
            row += entry
        return row

    thead = nodes.thead()
    thead += row_node(header)
    group += thead
    tbody = nodes.tbody()
    for cells in body:
        if len(cells) != len(header):
            raise ValueError(f"table {title!r}: a row has {len(cells)} cells for {len(header)} columns: {cells}")
        tbody += row_node(cells)
    group += tbody
    return table


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:g}"


def _time(ms: float) -> str:
    return f"{ms:.3g} ms" if ms < 1000 else f"{ms / 1000:.3g} s"


def format_cell(column: Dict[str, Any], row: Dict[str, Any]) -> str:
    """The text of one cell: ``column["key"]``; ``column["time_ms"]`` (a time
    in ms, printed in ms or s) with ``column["ratio"]`` after it as ``(Nx)``;
    or ``column["format"]`` filled from the row. Empty when a field it needs
    is missing or null."""
    if "time_ms" in column:
        value = row.get(column["time_ms"])
        if value is None:
            return column.get("missing", "")
        ratio = row.get(column.get("ratio", ""))
        return _time(value) + ("" if ratio is None else f" ({ratio}x)")
    if "key" in column:
        value = row.get(column["key"])
        return "" if value is None else _number(value)
    fmt = column["format"]
    fields = [name for _, name, _, _ in string.Formatter().parse(fmt) if name]
    if any(row.get(name) is None for name in fields):
        return column.get("missing", "")
    return fmt.format(**row)


def provenance(meta: Dict[str, Any], data_path: str) -> str:
    parts = [f"Machine: {meta['machine']}.", f"Date: {meta['date']}.", f"Load average: {meta['load']}."]
    parts.append(f"Source: {meta['source']}.")
    if meta.get("command"):
        parts.append(f"Command: `{meta['command']}`.")
    parts.append(f"Data: `{data_path}`.")
    return " ".join(parts)


class _TableDirective(SphinxDirective):
    """Common plumbing: paths relative to the repository root, rebuild on change."""

    def path(self, relative: str) -> Path:
        path = (ROOT / relative).resolve()
        if not path.is_file() and not path.is_dir():
            raise self.error(f"{self.name}: {relative} does not exist (paths are relative to the repository root)")
        self.env.note_dependency(str(path))
        return path

    def wrap(self, *children: nodes.Node) -> nodes.container:
        box = nodes.container(classes=["sinsim-measurement"])
        box.extend(children)
        return box


# --------------------------------------------------------------------------- measurements


class MeasurementsDirective(_TableDirective):
    required_arguments = 1
    option_spec = {"tables": directives.unchanged}

    def run(self) -> List[nodes.Node]:
        relative = self.arguments[0]
        data = json.loads(self.path(relative).read_text())
        tables = data.get("tables")
        if not isinstance(tables, list) or not tables:
            raise self.error(f"{relative}: expected a non-empty list 'tables'")
        wanted = [t.strip() for t in self.options.get("tables", "").split(",") if t.strip()]
        known = [t.get("id") for t in tables]
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise self.error(f"{relative}: no table with id {', '.join(unknown)} (has: {', '.join(map(str, known))})")
        out: List[nodes.Node] = []
        for spec in tables:
            if wanted and spec.get("id") not in wanted:
                continue
            meta = {**data.get("defaults", {}), **spec}
            missing = [k for k in REQUIRED if not meta.get(k)]
            if missing:
                raise self.error(f"{relative}, table {spec.get('id')!r}: missing {', '.join(missing)}")
            columns = meta["columns"]
            header = [c["label"] for c in columns]
            try:
                body = [[format_cell(c, row) for c in columns] for row in meta["rows"]]
                table = table_node(meta["title"], header, body)
            except (KeyError, ValueError) as exc:
                raise self.error(f"{relative}, table {spec.get('id')!r}: {exc}")
            children: List[nodes.Node] = [table, _paragraph(provenance(meta, relative), ["sinsim-provenance"])]
            if meta.get("note"):
                children.append(_paragraph(meta["note"], ["sinsim-provenance"]))
            out.append(self.wrap(*children))
        return out


# --------------------------------------------------------------------------- equal-accuracy benchmark


class PeersDirective(_TableDirective):
    required_arguments = 1
    option_spec = {"n": directives.positive_int}

    def run(self) -> List[nodes.Node]:
        relative = self.arguments[0]
        path = self.path(relative)
        sidecar = path.with_name(path.name.removesuffix(".jsonl") + ".meta.json")
        if not sidecar.is_file():
            raise self.error(f"{relative}: its machine, date, load and source belong in {sidecar.name}")
        self.env.note_dependency(str(sidecar))
        meta = json.loads(sidecar.read_text())
        missing = [k for k in REQUIRED if k != "title" and not meta.get(k)]
        if missing:
            raise self.error(f"{sidecar.name}: missing {', '.join(missing)}")
        from bench import peers_table  # docs/conf.py puts the repository root on the path
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out: List[nodes.Node] = []
        for caption, header, body in peers_table.tables(rows):
            n = int(caption.split()[2])
            if "n" in self.options and n != self.options["n"]:
                continue
            out.append(self.wrap(table_node(caption, header, body),
                                 _paragraph(provenance(meta, relative), ["sinsim-provenance"])))
        if not out:
            raise self.error(f"{relative}: no table for n = {self.options.get('n')}")
        return out


# --------------------------------------------------------------------------- results of the paper protocol


def _mean_std(values: Sequence[float], digits: int) -> str:
    if not values:
        return "not run"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _run_date(folder: Path) -> str:
    sessions = folder / "sessions.jsonl"
    if sessions.is_file():
        for line in sessions.read_text().splitlines():
            if line.strip():
                return json.loads(line)["time"][:10]
    return "not recorded"


class ResultsDirective(_TableDirective):
    """Mean ± sample std over seeds of a results folder's cells; content lines ``cell: label``."""

    required_arguments = 1
    has_content = True
    option_spec = {"dataset": directives.unchanged_required, "title": directives.unchanged}

    COLUMNS = (
        ("validation linear %", lambda r: r["val"]["linear"], 2),
        ("test linear %", lambda r: r["linear"], 2),
        ("uniformity", lambda r: r["geometry"]["uniformity"], 3),
        ("effective rank", lambda r: r["geometry"]["effective_rank"], 1),
    )

    def run(self) -> List[nodes.Node]:
        relative = self.arguments[0]
        folder = self.path(relative)
        dataset = self.options["dataset"]
        body, budget, device, seeds = [], None, None, set()
        for line in self.content:
            if not line.strip():
                continue
            cell, _, label = line.partition(":")
            files = sorted((folder / "cells" / dataset / cell.strip()).glob("seed*/results.json"))
            if not files:
                raise self.error(f"{relative}: no results.json for cell {cell.strip()!r} of {dataset}")
            for f in files:
                self.env.note_dependency(str(f))
            runs = [json.loads(f.read_text()) for f in files]
            from train import RESULTS_SCHEMA  # docs/conf.py puts the repository root on the path

            other = [str(f) for f, r in zip(files, runs) if r.get("schema") != RESULTS_SCHEMA]
            if other:
                raise self.error(f"{other[0]}: not results schema {RESULTS_SCHEMA} (docs/trainer/index.md)")
            seeds.update(r["seed"] for r in runs)
            device = device or runs[0].get("device")
            if runs[0]["budget"].get("epochs"):
                budget = budget or runs[0]["budget"]
            row = [label.strip() or cell.strip()]
            row += [_mean_std([get(r) for r in runs], digits) for _, get, digits in self.COLUMNS]
            body.append(row)
        if budget is None:
            raise self.error(f"{relative}: no pretrained cell among those listed, so no budget to print")
        header = ["cell"] + [c[0] for c in self.COLUMNS]
        data_label = runs[0].get("dataset_label", dataset)
        title = self.options.get("title") or f"{data_label}: mean ± sample std over seeds"
        text = (
            f"Budget: {budget['epochs']} epochs of batch {budget['batch_size']}, {budget.get('pretrain_images')} "
            f"pretraining images at {budget['image_size']} px ({budget.get('steps')} steps); probes on "
            f"{budget['probe_train_images']} train, {budget['val_images']} validation and "
            f"{budget['probe_test_images']} test images; seeds {' '.join(map(str, sorted(seeds)))}. "
            f"Machine: {device}. Date: {_run_date(folder)}. Source: each cell's `results.json` in `{relative}`; "
            f"the folder's `report.md` has every number and test."
        )
        return [self.wrap(table_node(title, header, body), _paragraph(text, ["sinsim-provenance"]))]


# --------------------------------------------------------------------------- scaling estimate


class ScalingEstimateDirective(_TableDirective):
    def run(self) -> List[nodes.Node]:
        from bench import scaling_estimate
        self.env.note_dependency(str(ROOT / "bench" / "scaling_estimate.py"))
        self.env.note_dependency(str(scaling_estimate.STEP_TIMES))
        params, bn_layers, rows = scaling_estimate.rows()
        links = list(scaling_estimate.LINKS)
        header = ["global batch", "per GPU", "compute / step (measured, 1 GPU)", "gradient all-reduce",
                  "projections gather (+ SinSim features)", "--sync-bn"] + [f"comm. {k}" for k in links]
        body = []
        for r in rows:
            comm = [f"{r['times'][k] * 1e3:.1f} ms ({r['times'][k] * 1e3 / r['compute_ms']:.2f}x)" for k in links]
            body.append([str(r["B"]), str(r["B"] // scaling_estimate.N), f"{r['compute_ms']:.1f} ms",
                         f"{r['grad_mb']:.0f} MB", f"{r['gather_mb']:.1f} MB (+ {r['features_mb']:.1f})",
                         f"{r['bn_mb']:.1f} MB"] + comm)
        meta = json.loads(Path(scaling_estimate.STEP_TIMES).read_text())["tables"][0]
        text = (
            f"Estimated, not measured on {scaling_estimate.N} GPUs: SimCLR, ResNet-18 + projector, "
            f"{params / 1e6:.2f} M trainable parameters, {bn_layers} BatchNorm layers. The compute column is "
            f"measured on one GPU ({meta['machine']}, {meta['date']}; {meta['source']}); the rest is arithmetic "
            f"from the bandwidths and the {scaling_estimate.LATENCY_S * 1e6:.0f} us latency per small collective "
            f"stated in `bench/scaling_estimate.py`, which prints this table."
        )
        title = f"Communication against compute per step, {scaling_estimate.N} GPUs (ratio: communication / compute)"
        return [self.wrap(table_node(title, header, body), _paragraph(text, ["sinsim-provenance"]))]


def setup(app):
    app.add_directive("measurements", MeasurementsDirective)
    app.add_directive("peers-table", PeersDirective)
    app.add_directive("results-table", ResultsDirective)
    app.add_directive("scaling-estimate", ScalingEstimateDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
