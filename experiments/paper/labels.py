"""How datasets, methods and budgets are named in the report."""

from __future__ import annotations

from typing import Optional

from train import DATASETS, METHOD_RECIPES

DATASET_NAMES = {name: spec.title for name, spec in DATASETS.items()}  # from the datasets' recipes
METHOD_NAMES = {**{name: recipe.title for name, recipe in METHOD_RECIPES.items()},
                "random-init": "random init (no pretraining)"}


def dataset_title(dataset: str, result: Optional[dict] = None) -> str:
    """``CIFAR-10 (JPEG copy)`` when the run read the lossy JPEG copy."""
    name = DATASET_NAMES.get(dataset, dataset)
    if result is not None and "JPEG copy" in result.get("dataset_label", ""):
        name += " (JPEG copy)"
    return name


def budget_text(result: dict) -> str:
    """``50 ep, batch 512, 50,000 img, 32 px; probes 45,000 / 5,000 val / 10,000``."""
    b = result["budget"]
    probes = ""
    if b.get("probe_train_images") is not None:
        val = f"{b['val_images']:,} val / " if b.get("val_images") else ""
        probes = f"; probes {b['probe_train_images']:,} / {val}{b['probe_test_images']:,}"
    if not b.get("epochs"):
        return f"untrained, {b['image_size']} px{probes}"
    return f"{b['epochs']} ep, batch {b['batch_size']}, {b['pretrain_images']:,} img, {b['image_size']} px{probes}"


TERM_NAMES = {
    "entropic": "entropic OT_ε",  # the paper's equation (3), literally
    "divergence": "divergence S_ε",  # debiased: OT(x,y) - OT(x,x)/2 - OT(y,y)/2
}


def sinsim_text(weight: float, eps: float, on: str, term: Optional[str] = None) -> str:
    """``divergence S_ε, λ = 0.1, ε = 0.05, on features``."""
    head = f"{TERM_NAMES.get(term, term)}, " if term else ""
    return f"{head}λ = {weight:g}, ε = {eps:g}, on {on}"


def cell_text(cell) -> str:
    """What a cell trained, in words: ``SimCLR``, ``SinSim (divergence S_ε, λ = 0.1, ε = 0.05, on features)``."""
    if cell.method != "sinsim":
        return METHOD_NAMES.get(cell.method, cell.method)
    s = cell.settings
    return (f"SinSim ({sinsim_text(s['sinkhorn_weight'], s['sinkhorn_eps'], s['sinkhorn_on'], s.get('sinkhorn_term'))})")
