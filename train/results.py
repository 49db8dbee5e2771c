"""Result records (``results.json``), their markdown tables and the per-epoch CSV.

A run's ``results.json`` carries ``"schema": RESULTS_SCHEMA``, the version of
its layout (the fields are listed in docs/trainer/index.md, "results.json");
:func:`read_results` reads that version only. A change to the layout bumps
the version, and folders written before it are migrated once by a script,
so that no reader keeps code for old layouts.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .catalog import DATASETS
from .errors import RunError
from .storage import atomic_write_json, atomic_write_text

#: The version of the layout of ``results.json`` that this code writes and reads.
RESULTS_SCHEMA = 1

COLUMNS = (  # (key path in results.json, header, format)
    ("method", "method", "{}"),
    ("linear", "linear %", "{:.2f}"),
    ("mlp", "MLP %", "{:.2f}"),
    ("knn", "kNN %", "{:.2f}"),
    ("val.linear", "val linear %", "{:.2f}"),
    ("geometry.uniformity", "uniformity", "{:.3f}"),
    ("geometry.effective_rank", "eff. rank", "{:.1f}"),
    ("epochs", "epochs", "{}"),
    ("pretrain_seconds", "pretrain s", "{:.1f}"),
    ("images_per_second", "img/s", "{:.0f}"),
    ("seed", "seed", "{}"),
)


def lookup(record: Dict, path: str):
    """``record["a"]["b"]`` for ``path = "a.b"``; None where any level is missing."""
    value = record
    for key in path.split("."):
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value


FLOOR = "random init"  # the untrained encoder's row of a --method all table
PROBES = ("linear", "mlp", "knn")
PROBE_NAMES = {"linear": "linear", "mlp": "MLP", "knn": "kNN"}
BELOW = "(below untrained)"


def below_floor(results: Sequence[Dict]) -> Dict[str, List[str]]:
    """The probes (``linear``, ``mlp``, ``knn``, test) on which each
    pretrained method scores less than the untrained encoder's row."""
    floor = next((r for r in results if r.get("method") == FLOOR), None)
    if floor is None:
        return {}
    below = {}
    for r in results:
        probes = [k for k in PROBES if r is not floor and r.get(k) is not None and floor.get(k) is not None
                  and r[k] < floor[k]]
        if probes:
            below[r["method"]] = probes
    return below


def table_notes(results: Sequence[Dict]) -> List[str]:
    """What a table with the untrained encoder's row shows: the dataset's own
    note (the digits demo is a pipeline check), what that row is and what the
    flags mean. None for a table without it."""
    if not any(r.get("method") == FLOOR for r in results):
        return []
    notes = []
    first = results[0]
    spec = DATASETS.get(first.get("dataset", ""))
    if spec is not None and spec.table_note:
        notes.append(spec.table_note.format(epochs=lookup(first, "budget.epochs"),
                                            images=f"{lookup(first, 'budget.pretrain_images') or 0:,}"))
    flagged = below_floor(results)
    text = ("The last row probes the untrained encoder (random weights, no pretraining): the floor pretraining has "
            f"to beat. {BELOW} marks a test accuracy below it")
    if flagged:
        which = "; ".join(f"{method}: {', '.join(PROBE_NAMES[p] for p in probes)}" for method, probes in flagged.items())
        text += f": at this budget, pretraining gave that probe worse features than random weights ({which})"
    return notes + [text + "."]


def markdown_table(results: Sequence[Dict], title: Optional[str] = None) -> str:
    """Test accuracies (linear, MLP, kNN), the validation linear probe, and the
    geometry of the features (uniformity, effective rank: train/geometry.py),
    then :func:`table_notes`; accuracies below the untrained encoder's are
    flagged."""
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(h for _, h, _ in COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    flagged = below_floor(results)
    for r in results:
        cells = []
        for key, _, fmt in COLUMNS:
            value = lookup(r, key)
            cell = fmt.format(value) if value is not None else "-"
            if key in flagged.get(r.get("method"), ()):
                cell += f" {BELOW}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    notes = table_notes(results)
    if notes:
        lines += [""] + [f"{n}\n" for n in notes]
    return "\n".join(lines).rstrip("\n") + "\n"


def table_title(result: Dict) -> str:
    budget = result["budget"]  # of the first (a pretrained) method
    subset = f", pretrained on {budget['train_subset']} images" if budget.get("train_subset") else ""
    probes = (f", probes on {budget['probe_train_images']} train / {budget.get('val_images', 0)} validation / "
              f"{budget['probe_test_images']} test images" if "probe_train_images" in budget else "")
    return (f"{result['dataset_label']}: ResNet-18, {budget['epochs']} epochs, batch {budget['batch_size']}, "
            f"{budget['image_size']} px{subset}{probes}, kNN k={result.get('knn_k')}, {result['device']}")


def write_method_results(out: Path, result: Dict) -> None:
    atomic_write_json(Path(out) / "results.json", result)
    atomic_write_text(Path(out) / "results.md", markdown_table([result], table_title(result)))


class UnreadableResults(RunError):
    """``results.json`` is there but cannot be read (damaged, truncated, not a run's record, another schema)."""


def read_results(out: Path) -> Optional[Dict]:
    """A method run's ``results.json`` (None when there is none); raises
    :class:`UnreadableResults` when it cannot be read. It is derived from
    the final checkpoint, so a resumed run rebuilds it from there."""
    path = Path(out) / "results.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UnreadableResults(f"{path} cannot be read ({exc})") from exc
    if not isinstance(record, dict):
        raise UnreadableResults(f"{path} cannot be read (it holds a {type(record).__name__}, not a run's record)")
    if record.get("schema") != RESULTS_SCHEMA:
        raise UnreadableResults(f"{path} has results schema {record.get('schema')!r}; this code reads schema "
                                f"{RESULTS_SCHEMA} only (docs/trainer/index.md, \"results.json\")")
    return record


def write_combined(out: Path, results: List[Dict]) -> str:
    """``results.json`` (a list) and ``results.md`` for a ``--method all`` run."""
    table = markdown_table(results, table_title(results[0]) if results else None)
    atomic_write_json(Path(out) / "results.json", results)
    atomic_write_text(Path(out) / "results.md", table)
    return table


def write_metrics_csv(path: Path, rows: List[Dict]) -> None:
    fields: List[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
