"""One-off: rewrite the committed paper-protocol folders in results/ to results schema 1.

    python -m experiments.paper.migrate_results_schema_1 results/h100-2026-11-23-short \
        results/h200-2026-11-30-variants results/cpu-2026-11-30-variants

Schema 1 (docs/trainer/index.md, "results.json") is what the trainer and the paper protocol
write today; the folders committed before it carry three older layouts, which
this script rewrites once, so that the code reads one format only:

* every ``results.json`` gets ``"schema": 1``; a run without a validation
  split gets ``"val": null`` and ``budget.val_images = 0``, one without a
  recorded commit ``"code": null``;
* ``geometry``: the split it was measured on is ``split`` / ``split_images``
  (older records say ``test_images``, always the test split); the measures a
  run did not record (the effective rank, the centred ones) are ``null``;
  where the geometry lived in a separate ``embedding.json`` it moves into
  ``results.json["geometry"]`` and the file goes;
* SinSim cells named before the term was (``sinsim-lam0.1-eps0.05-features``)
  held the entropic term: their folders become
  ``sinsim-entropic-lam0.1-eps0.05-features`` and ``sinkhorn_debias: false``
  becomes ``sinkhorn_term: "entropic"`` (``embedding_points`` becomes
  ``geometry_points``) in every record;
* ``signature``, ``cell.json`` and ``config.json`` keep the method's own
  hyper-parameters only (each method owns its hyper-parameters): the other
  methods' entries, all unset or at defaults the run never used, go;
* ``paper.json`` gets ``"schema": 1``, the renames above, ``val_fraction: 0.0``
  where it had none (those runs had no validation split), ``sweep_terms``
  where it had none, and loses the settings that no longer belong there (the
  other methods' unset hyper-parameters, run-only settings).

``report.md``, the figures, ``metrics.csv``, ``results.md``, ``run.log`` and
``sessions.jsonl`` are kept as written. Run once; a folder already at schema 1
is left alone.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from train import METHOD_RECIPES, setting_kind, setting_names

SCHEMA = 1
OLD_SINSIM = re.compile(r"^sinsim-lam(?P<rest>.+)$")
PARAMS = {name for recipe in METHOD_RECIPES.values() for name in recipe.param_names}
# What a reader of each folder's report must know about its runs (paper.json's notes).
NOTES = {
    "h100-2026-11-23-short": [
        "These runs predate the validation split (their probes trained on 10,000 labelled images and no choice "
        "could be checked on validation), the named Sinkhorn term (they ran the entropic one), the effective "
        "rank and the centred geometry, the recorded commit per run and the declared primary comparison: those "
        "entries read *not measured* or *not recorded*. Their BYOL, VICReg and Barlow Twins cells used the "
        "recipes of the time (Barlow Twins without its loss scale and with a 0.024 bias learning rate, VICReg "
        "with BYOL's augmentations). The folder's own report.md, written by the code of the time, is kept as "
        "written.",
    ],
}
GEOMETRY_KEYS = ("alignment", "uniformity", "effective_rank", "silhouette", "uniformity_centred",
                 "effective_rank_centred", "mean_offset_ratio")


def read(path: Path):
    return json.loads(path.read_text())


def write(path: Path, record) -> None:
    path.write_text(json.dumps(record, indent=2) + "\n")


def renamed(record: dict) -> dict:
    out = {}
    for k, v in record.items():
        if k == "sinkhorn_debias":
            out["sinkhorn_term"] = "divergence" if v else "entropic"
        elif k == "embedding_points":
            out["geometry_points"] = v
        else:
            out[k] = v
    return out


def own(record: dict, method: str) -> dict:
    """``record`` without the hyper-parameters of other methods."""
    mine = set(METHOD_RECIPES[method].param_names) if method in METHOD_RECIPES else set()
    return {k: v for k, v in record.items() if k not in PARAMS or k in mine}


def geometry(old: dict) -> dict:
    g = {k: old.get(k) for k in GEOMETRY_KEYS}
    features = old.get("features", "")
    dim = old.get("feature_dim") or (int(m.group(1)) if (m := re.search(r"\((\d+)-d\)", features)) else None)
    g.update(feature_dim=dim, points=old["points"], split=old.get("split", "test"),
             split_images=old.get("split_images", old.get("test_images")), subsample_seed=old["subsample_seed"],
             features=features, alignment_views=old["alignment_views"])
    return g


def migrate_cell(folder: Path, method: str, cell_name: str) -> None:
    """One seed folder of a cell."""
    results_path = folder / "results.json"
    if results_path.is_file():
        r = read(results_path)
        if r.get("schema") == SCHEMA:
            return
        embedding = folder / "embedding.json"
        old_geometry = r.get("geometry") or (read(embedding) if embedding.is_file() else None)
        out = {"schema": SCHEMA}
        for k, v in r.items():
            if k == "signature":
                v = own(renamed(v), method)
            elif k == "geometry":
                v = None if old_geometry is None else geometry(old_geometry)
            out[k] = v
        if "geometry" not in out:
            out["geometry"] = None if old_geometry is None else geometry(old_geometry)
        out.setdefault("val", None)
        out["budget"] = {**out["budget"], "val_images": out["budget"].get("val_images", 0)}
        out.setdefault("code", None)
        write(results_path, out)
        embedding.unlink(missing_ok=True)
    for name in ("cell.json", "config.json"):
        path = folder / name
        if path.is_file():
            record = own(renamed(read(path)), method)
            if name == "cell.json":
                record["cell"] = cell_name
            write(path, record)


def migrate_paper_json(path: Path) -> None:
    saved = read(path)
    if saved.get("schema") == SCHEMA:
        return
    settings = renamed(saved["settings"])
    settings.setdefault("val_fraction", 0.0)
    known = set(setting_names())
    settings = {k: v for k, v in settings.items()
                if k == "primary_dataset" or (k in known and setting_kind(k) != "run" and
                                              not (k in PARAMS and v is None))}
    selection = dict(saved["selection"])
    selection.setdefault("sweep_terms", [settings.get("sinkhorn_term", "entropic")])
    record = {"schema": SCHEMA, "settings": settings, "selection": selection,
              "primary_declared_before_runs": "primary_dataset" in saved["settings"],
              "notes": NOTES.get(path.parent.name, [])}
    write(path, record)


def migrate(out: Path) -> None:
    for dataset in sorted((out / "cells").iterdir()):
        for cell in sorted(p for p in dataset.iterdir() if p.is_dir()):
            match = OLD_SINSIM.match(cell.name)
            if match:
                cell = cell.rename(cell.with_name(f"sinsim-entropic-lam{match['rest']}"))
            method = cell.name.split("-")[0] if not cell.name.startswith("random-init") else "random-init"
            for seed in sorted(cell.glob("seed*")):
                migrate_cell(seed, method, cell.name)
    migrate_paper_json(out / "paper.json")


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        migrate(Path(folder))
        print(f"{folder}: results schema {SCHEMA}")
