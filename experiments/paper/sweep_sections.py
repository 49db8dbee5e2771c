"""The report's sections on SinSim's own choices: the Sinkhorn term and its
placement, the embeddings (figure 1 and every run's geometry), and the lambda
and epsilon sweeps (figures 2 and 3). Shared rules: :mod:`.sections`."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import List, Optional, Tuple

from .cells import RANDOM_INIT, method_cell, sinsim_cell, variants as variant_lines
from .aggregate import paired_comparison
from .collect import CellRecords
from .comparisons import chosen_on_validation
from .figures import UMAP_MISSING
from .judgements import collapse_reasons, offset_note
from .labels import DATASET_NAMES, TERM_NAMES, cell_text
from .sections import entry, geometry_table, md_table

PRIOR = Path(__file__).with_name("prior.toml")  # the earlier measurement the lambda sweep is set beside
LITERAL = ("entropic", "features")  # the paper's equation (3) on the encoder features h it names


def _mean(rec: CellRecords, key: str, source: str) -> Optional[float]:
    s = rec.summary(key, source)
    return None if s is None else s.mean


def _collapse_text(data, d: str, rec: CellRecords) -> str:
    floor = data.grid(d, RANDOM_INIT)
    floor = floor if floor.results else None
    reasons = collapse_reasons(rec, floor)
    if reasons:
        return "collapsed: " + "; ".join(reasons)
    return offset_note(rec, floor) or "-"


def _comparison_text(family, d: str, a, b, metric: str) -> str:
    t = family.get(d, a, b, metric)
    return "not run" if t is None else f"{t.numbers()}: {t.verdict}"


# --- the term and its placement ---------------------------------------------------------------

def variants(data, family) -> str:
    p, s = data.pcfg, data.pcfg.sinsim
    datasets = [d for d in p.sweep_datasets or p.datasets]
    lines = ["## The Sinkhorn term and where it acts", "",
             f"The paper's literal variant is the **{TERM_NAMES['entropic']}** of its equation (3) on the encoder "
             "features h it names (*entropic on features*). Its entropic bias rewards a batch that crowds into one "
             "spot (OT_ε(X, X) ≈ ε log n for spread points, → 0 when they coincide), so the debiased "
             f"**{TERM_NAMES['divergence']}** = OT(x,y) − OT(x,x)/2 − OT(y,y)/2 (Feydy et al. 2019), which is 0 "
             "for identical batches whatever their spread, is run beside it (neither is immune: on L2-normalised "
             "features a large common offset crowds two different views together and lowers both, which the "
             "centred geometry tells apart from collapse); and since the paper's text leaves "
             "the place open (it names h, then speaks of distributions of embeddings), both the features h and "
             f"the projections z. The grid's SinSim (tables) is *{s.sinkhorn_term} on {s.sinkhorn_on}*."]
    lines += ["", f"Below, every (term, place) at the grid's λ = {s.sinkhorn_weight:g}, ε = {s.sinkhorn_eps:g}: "
              "validation accuracy (what the choice reads), test accuracy, geometry, and the test-split comparisons "
              "(Holm-corrected, see *Verdict*)."]
    shown = False
    for d in datasets:
        cells = [(term, on, sinsim_cell(d, s.sinkhorn_weight, s.sinkhorn_eps, on, term))
                 for term in dict.fromkeys(p.sweep_terms + [s.sinkhorn_term])
                 for on in dict.fromkeys(p.sweep_on + [s.sinkhorn_on])]
        cells = [(t, o, c) for t, o, c in cells if (t, o) in variant_lines(p) or
                 (t, o) == (s.sinkhorn_term, s.sinkhorn_on)]
        recs = [(t, o, c, data.records(c)) for t, o, c in cells]
        if not any(r.results for *_, r in recs):
            lines += ["", f"### {data.title(d)} — not run", "",
                      "No SinSim cell at the grid's (λ, ε) finished on this dataset."]
            continue
        shown = True
        simclr = data.records(method_cell(d, "simclr"))
        rows = [["SimCLR (λ = 0)", "-", entry(data, d, simclr, "linear", "val"), entry(data, d, simclr, "linear"),
                 entry(data, d, simclr, "knn"), entry(data, d, simclr, "uniformity_centred", "geometry", 3),
                 entry(data, d, simclr, "effective_rank_centred", "geometry", 1), _collapse_text(data, d, simclr)]]
        for term, on, cell, rec in recs:
            tag = " (the paper's literal)" if (term, on) == LITERAL else ""
            rows.append([f"{term}{tag}", on, entry(data, d, rec, "linear", "val"), entry(data, d, rec, "linear"),
                         entry(data, d, rec, "knn"), entry(data, d, rec, "uniformity_centred", "geometry", 3),
                         entry(data, d, rec, "effective_rank_centred", "geometry", 1), _collapse_text(data, d, rec)])
        lines += ["", f"### {data.title(d)}", "",
                  md_table(["term", "on", "validation linear %", "test linear %", "test kNN %", "centred uniformity ↓",
                            "centred effective rank ↑", "features"], rows)]
        lines += _favoured(data, d, recs)
        for on in p.sweep_on:
            a = sinsim_cell(d, s.sinkhorn_weight, s.sinkhorn_eps, on, "divergence")
            e = sinsim_cell(d, s.sinkhorn_weight, s.sinkhorn_eps, on, "entropic")
            for metric in ("linear", "knn"):
                t = family.get(d, a, e, metric)
                if t is not None:
                    lines.append(f"- {t.sentence()}")
        for term in dict.fromkeys(p.sweep_terms + [s.sinkhorn_term]):
            a = sinsim_cell(d, s.sinkhorn_weight, s.sinkhorn_eps, "projection", term)
            f = sinsim_cell(d, s.sinkhorn_weight, s.sinkhorn_eps, "features", term)
            for metric in ("linear", "knn"):
                t = family.get(d, a, f, metric)
                if t is not None:
                    lines.append(f"- {t.sentence()}")
    if not shown and not datasets:
        lines += ["", "Not run: no dataset was asked for."]
    return "\n".join(lines) + "\n"


def _favoured(data, d: str, recs) -> List[str]:
    """Which (term, place) the validation split favours, and by how much,
    paired by seed (the same seed gives both cells the same initial weights,
    data order and augmentations: their difference is what the seeds tell)."""
    scored = [(s.mean, s.n, term, on, rec) for term, on, _, rec in recs
              for s in [rec.summary("linear", "val")] if s is not None]
    if not scored:
        return ["", "No validation accuracy recorded: the evidence cannot favour a variant here."]
    scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
    best_mean, best_n, term, on, best = scored[0]
    text = (f"On validation, **{term} on {on}** has the highest mean linear accuracy at this (λ, ε) "
            f"({best_mean:.2f}, n={best_n}), so it is the one chosen")
    if len(scored) > 1:
        _, _, term2, on2, second = scored[1]
        c = paired_comparison(best.scores("linear", "val"), second.scores("linear", "val"))
        if c is not None:
            wins = sum(best.scores("linear", "val")[s] > second.scores("linear", "val")[s] for s in c.seeds)
            text += (f"; paired by seed it is {c.text()} points above {term2} on {on2} (validation linear; "
                     f"higher on {wins} of {c.n} seeds). The interval describes the choice; it is not a test, "
                     "since the numbers that chose it cannot also confirm it")
    chosen = chosen_on_validation(data, d)
    if chosen is not None:
        text += f". Over every configuration run (any λ, ε), validation favours {cell_text(chosen[0])}"
    return ["", text + "."]


# --- the embeddings ---------------------------------------------------------------------------

def embeddings(data, figures) -> str:
    lines = ["## Figure 1 and the geometry of every run", "",
             "t-SNE (and UMAP) maps of the frozen encoder features of SimCLR, SinSim and VICReg on test images, "
             "coloured by class; the pictures are not evidence, the numbers are. Every run measures, on the same "
             "fixed subsample of validation images: **alignment** = E ||f(x) − f(x+)||² over two augmentations of "
             "an image (lower: the views land closer), **uniformity** = log E exp(−2 ||f(x) − f(y)||²) over pairs "
             "of images (lower: spread more evenly; 0: all features equal), both on L2-normalised features (Wang & "
             "Isola, ICML 2020); the **effective rank** (RankMe, Garrido et al., ICML 2023: exp of the entropy of "
             "the normalised singular values; 1: one direction) and the **silhouette** of the classes (Rousseeuw "
             "1987; higher: tighter, better separated classes). Uniformity and rank are shown on the **centred** "
             "features h − mean h, beside the **mean offset** ||mean h|| / RMS(h − mean h) and the uncentred "
             "uniformity: nothing in the training loss or the probes pins the mean of h, so a common offset alone "
             "would read as collapse on uncentred features. *features* says when they are collapsed."]
    if figures.umap_missing:
        lines += ["", f"*{UMAP_MISSING}; the t-SNE maps are drawn.*"]
    for d in data.pcfg.datasets:
        recs = [data.grid(d, m) for m in data.table_methods + [RANDOM_INIT]]
        ran = any(r.results for r in recs)
        lines += ["", f"### {data.title(d)}" + ("" if ran else " — not run"), ""]
        if d in figures.embeddings:
            lines.append(f"![Figure 1: {data.title(d)}]({figures.embeddings[d]})")
        else:
            lines.append(f"Figure 1: {figures.embedding_notes.get(d, 'not drawn')}.")
        points = [r["geometry"] for rec in recs for r in rec.results.values() if r.get("geometry")]
        if points:
            e = points[0]
            split = e.get("split", "test")
            total = e["split_images"]
            lines += ["", f"Measured on {e['points']:,} of {total:,} {split} images (random subsample, "
                      f"seed {e['subsample_seed']}); alignment views: {e['alignment_views']}."]
        if ran:
            lines += ["", geometry_table(data, d)]
    return "\n".join(lines) + "\n"


# --- the sweeps -------------------------------------------------------------------------------

def _row(data, d: str, label: List[str], rec: CellRecords) -> List[str]:
    return label + [entry(data, d, rec, "linear", "val"), entry(data, d, rec, "linear"), entry(data, d, rec, "knn"),
                    entry(data, d, rec, "uniformity_centred", "geometry", 3),
                    entry(data, d, rec, "effective_rank_centred", "geometry", 1),
                    _collapse_text(data, d, rec)]


def _sweep_table(data, d: str, points_by_line, simclr: CellRecords, x_name: str, family) -> str:
    rows = [_row(data, d, ["SimCLR", "-", "λ = 0"], simclr) + ["reference", "reference"]]
    for (term, on), points in points_by_line:
        for x, rec in points:
            if rec is simclr:
                continue  # lambda = 0: the reference row above
            dl = _comparison_text(family, d, rec.cell, simclr.cell, "linear")
            dk = _comparison_text(family, d, rec.cell, simclr.cell, "knn")
            rows.append(_row(data, d, [term, on, f"{x:g}"], rec) + [dl, dk])
    head = ["term", "on", x_name, "validation linear %", "test linear %", "test kNN %", "centred uniformity ↓",
            "centred effective rank ↑", "features", "Δ test linear vs SimCLR", "Δ test kNN vs SimCLR"]
    return md_table(head, rows)


def _sweep_block(data, d: str, kind: str, figures, family) -> List[str]:
    p = data.pcfg
    simclr = data.records(method_cell(d, "simclr"))
    if kind == "lambda":
        name, fig, xname = (f"Figure 2: accuracy and geometry vs λ (ε = {p.sinsim.sinkhorn_eps:g})",
                            figures.lambdas.get(d), "λ")
        points = [((t, o), data.lambda_sweep(d, o, t)) for t, o in variant_lines(p)]
    else:
        name, fig, xname = (f"Figure 3: accuracy and geometry vs ε (λ = {p.sinsim.sinkhorn_weight:g})",
                            figures.epsilons.get(d), "ε")
        points = [((t, o), data.eps_sweep(d, o, t)) for t, o in variant_lines(p)]
    if kind not in p.sweeps:
        return ["", f"### {name} — not run", "", f"Not asked for (--sweeps {' '.join(p.sweeps) or '(none)'})."]
    if fig is None:
        return ["", f"### {name} — not run", "", "No cell of this sweep has finished."]
    idle = [f"{t} on {o}" for (t, o), pts in points if not any(rec.results for _, rec in pts if rec is not simclr)]
    missing = ([f"Not run in this sweep: {', '.join(idle)} (no finished cell; their rows read *not run*).", ""]
               if idle else [])
    return ["", f"### {name}", "", f"![{name.split(':')[0]}: {data.title(d)}]({fig})", ""] + missing + [
            _sweep_table(data, d, points, simclr, xname, family),
            "Δ: the cell's test accuracy minus SimCLR's, paired by seed: mean [95% interval, unadjusted], p, the "
            "Holm-adjusted p within the report's family of m comparisons, n; then the verdict (a Holm p ≤ 0.05 "
            "with 3 or more paired seeds). Choosing λ or ε reads the validation column only."]


def sweeps(data, figures, family) -> str:
    p = data.pcfg
    if not p.sweep_datasets:
        return ("## Figures 2 and 3: the Sinkhorn weight and epsilon — not run\n\nNo sweep dataset was asked for "
                "(--sweep-datasets).\n")
    out = []
    for d in p.sweep_datasets:
        lines = [f"## Figures 2 and 3: the Sinkhorn weight and epsilon, {data.title(d)}", "",
                 "One line per Sinkhorn term and place it acts on (*term*, *on*): "
                 + ", ".join(f"{t} on {o}" for t, o in variant_lines(p)) + "."]
        lines += _sweep_block(data, d, "lambda", figures, family)
        lines += _sweep_block(data, d, "eps", figures, family)
        if d == read_prior()["dataset"]:
            lines += ["", _prior(data, d)]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def read_prior(path: Path = PRIOR) -> dict:
    with open(path, "rb") as f:
        prior = tomllib.load(f)
    prior["knn"] = {float(lam): acc for lam, acc in prior["knn"].items()}
    return prior


def _prior_text(prior: dict) -> str:
    points = ", ".join(f"λ = {lam:g} → {acc:g} %" for lam, acc in sorted(prior["knn"].items()))
    return (f"An earlier measurement ({prior['source']}; not one of the runs of this report): "
            f"{DATASET_NAMES.get(prior['dataset'], prior['dataset'])} JPEG copy, {prior['epochs']} epochs, batch "
            f"{prior['batch_size']}, {len(prior['seeds'])} seed, the {prior['term']} term on the normalised "
            f"{'projections' if prior['on'] == 'projection' else 'features'}, ε = {prior['eps']:g}, kNN with "
            f"k = {prior['knn_k']}: {points}.")


def _prior(data, d: str) -> str:
    prior = read_prior()
    b, s = data.pcfg.base, data.pcfg.sinsim
    lines = ["### The earlier measurement", "", _prior_text(prior), ""]
    ok = prior["on"] in data.pcfg.sweep_on and prior["term"] in data.pcfg.sweep_terms
    points = dict(data.lambda_sweep(d, prior["on"], prior["term"])) if ok else {}
    ours: List[Tuple[float, CellRecords]] = [(lam, points[lam]) for lam in sorted(prior["knn"])
                                             if lam in points and points[lam].results]
    if not any(lam > 0 for lam, _ in ours) or s.sinkhorn_eps != prior["eps"]:
        place = "projections" if prior["on"] == "projection" else prior["on"]
        lines.append(f"This report has no matching runs (λ sweep of the {prior['term']} term on {place} at "
                     f"ε = {prior['eps']:g}) to set beside it.")
        return "\n".join(lines)
    lines.append(f"The same points here (kNN, k = {b.knn_k}): "
                 + "; ".join(f"λ = {lam:g} → {rec.text('knn')}" for lam, rec in ours)
                 + ". Their differences to λ = 0 are in the table above (Holm-corrected). These runs differ from "
                 "the earlier one in budget or kNN k, so only differences between λ values compare with it; "
                 f"the earlier run had {len(prior['seeds'])} seed per λ, too few to separate its points.")
    return "\n".join(lines)
