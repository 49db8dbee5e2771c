"""The markdown of ``report.md``, section by section, from a :class:`~.report.ReportData`.

Rules every section keeps: a number is printed only from a finished cell's
file; an unfinished cell reads "not run" (or "failed"); every accuracy
carries the budget it was measured at (in its column header, or next to it
when a column mixes budgets) and its seed count ``n``; comparisons say what
the seeds can and cannot tell apart (:mod:`.aggregate`).
"""

from __future__ import annotations

from collections import Counter
from typing import List, Optional, Sequence, Tuple

from ..datasets import DATASETS
from .aggregate import MIN_SEEDS, Comparison, paired_comparison
from .cells import RANDOM_INIT, method_cell, plan, sinsim_cell
from .collect import CellRecords
from .figures import UMAP_MISSING
from .labels import METHOD_NAMES, budget_text, sinsim_text

PRIOR = ("An earlier single run, quoted in issue 5 and DESIGN.md (not one of the runs of this report): CIFAR-10 "
         "JPEG copy, 50 epochs, batch 512, one seed, the term on the normalised projections, ε = 0.05, kNN with "
         "k = 200: λ = 0 → 72.8 %, λ = 0.1 → 72.75 %, λ = 1.0 → 71.5 %.")


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _seeds(c: Comparison) -> str:
    return ", ".join(map(str, c.seeds))


def _method_label(data, method: str) -> str:
    if method == "sinsim":
        b = data.pcfg.base
        return f"{METHOD_NAMES['sinsim']}<br><sub>{sinsim_text(b.sinkhorn_weight, b.sinkhorn_eps, b.sinkhorn_on)}</sub>"
    return METHOD_NAMES.get(method, method)


def _entry(data, dataset: str, rec: CellRecords, key: str, source: str = "results", digits: int = 2) -> str:
    if not rec.results and not rec.failed and data.dataset_error(dataset):
        return "not run (dataset not found)"
    return rec.text(key, source, digits)


def header(data, written: str) -> str:
    p = data.pcfg
    return (
        "# SinSim: the paper's experiments\n\n"
        f"Written {written} by `train/paper/report.py` from the files in this folder alone (rerun with "
        f"`python train/run.py --protocol paper --report-only --out {data.out}`). Every number comes from the "
        "`results.json` or `embedding.json` of a run that finished; a cell that did not is shown as *not run* "
        "(or *failed*). Entries are mean ± sample standard deviation (ddof = 1) over the seeds that finished, "
        f"with n = that number of seeds (seeds asked for: {', '.join(map(str, p.seeds))}). Accuracies are "
        "top-1 % on the test split, from probes on the frozen encoder.\n"
    )


def verdict(data) -> str:
    comparisons: List[Tuple[str, str, Comparison]] = []
    details = []
    for d in data.table_datasets:
        a, b = data.grid(d, "sinsim"), data.grid(d, "simclr")
        for key, probe in (("linear", "linear probe"), ("mlp", "MLP probe")):
            c = paired_comparison(a.scores(key), b.scores(key))
            if c is None:
                continue
            comparisons.append((d, probe, c))
            details.append(f"- {data.title(d)}, {probe}: SinSim − SimCLR = {c.text()} (points; 95% interval, "
                           f"paired over seeds {_seeds(c)}): **{c.verdict}**.")
    lines = ["## Verdict", ""]
    if not comparisons:
        lines.append("No dataset has finished SinSim and SimCLR cells with a common seed yet: nothing to compare.")
    else:
        higher = [f"{data.title(d)}, {probe}" for d, probe, c in comparisons if c.verdict == "higher"]
        lower = [f"{data.title(d)}, {probe}" for d, probe, c in comparisons if c.verdict == "lower"]
        if higher:
            lines.append(f"SinSim scores higher than SimCLR, by more than the seeds' spread, on: {'; '.join(higher)}.")
        else:
            lines.append("**In these runs SinSim does not beat SimCLR**: on no dataset and probe is its accuracy "
                         "higher by more than the seeds can resolve (a verdict needs 3 or more paired seeds and a "
                         "95% interval of the paired difference that excludes 0).")
        if lower:
            lines.append(f"SinSim scores lower than SimCLR, by more than the seeds' spread, on: {'; '.join(lower)}.")
        lines += [""] + details
    lines += _floors(data) + _budget_caveats(data)
    return "\n".join(lines) + "\n"


def _floors(data) -> List[str]:
    notes = []
    for d in data.table_datasets:
        floor = data.grid(d, RANDOM_INIT).summary("linear")
        means = [data.grid(d, m).summary("linear") for m in data.table_methods]
        means = [s.mean for s in means if s is not None]
        if floor is not None and means and floor.mean >= max(means):
            notes.append(f"- {data.title(d)}: no pretrained method beats the untrained encoder's linear probe "
                         f"({floor.mean:.2f} %): at this budget the pretraining taught the probe nothing.")
    return (["", "Floors:", ""] + notes) if notes else []


def _budget_caveats(data) -> List[str]:
    b = data.pcfg.base
    specs = {d: DATASETS[d] for d in data.pcfg.all_datasets}
    reduced = []
    if b.epochs is not None and any(b.epochs < s.epochs for s in specs.values()):
        reduced.append(f"{b.epochs} epoch(s) (dataset defaults: {', '.join(f'{d} {s.epochs}' for d, s in specs.items())})")
    if b.train_subset:
        reduced.append(f"pretraining on {b.train_subset:,} images")
    if b.batch_size is not None and any(b.batch_size != s.batch_size for s in specs.values()):
        reduced.append(f"batch {b.batch_size}")
    if b.image_size is not None and any(b.image_size < s.image_size for s in specs.values()):
        reduced.append(f"images resized to {b.image_size} px")
    if b.probe_train_subset or b.probe_test_subset:
        reduced.append("probes on a fixed subset of the labelled images")
    lines = ["", "Budget: every number carries its budget (epochs, batch, pretraining images, image side; probe "
             "images). The protocol's default is 50 epochs per dataset, far below the 800-1000 epochs of the "
             "published baselines: absolute accuracies are not comparable with those papers' tables."]
    if reduced:
        lines.append(f"**These runs use a reduced budget** ({'; '.join(reduced)}): they show that the pipeline "
                     "works end to end, not what a full-budget run would give.")
    return lines


def _column_budgets(data, dataset: str) -> set:
    return {budget_text(r) for m in data.table_methods for r in data.grid(dataset, m).results.values()}


def probe_table(data, key: str, title: str) -> str:
    datasets = data.table_datasets
    budgets = {d: _column_budgets(data, d) for d in datasets}
    head = ["method"] + [data.title(d) + (f"<br><sub>{next(iter(budgets[d]))}</sub>" if len(budgets[d]) == 1 else "")
                         for d in datasets]
    rows = []
    for m in data.table_methods + [RANDOM_INIT]:
        row = [_method_label(data, m)]
        for d in datasets:
            rec = data.grid(d, m)
            text = _entry(data, d, rec, key)
            if len(budgets[d]) > 1 and rec.results and m != RANDOM_INIT:
                text += f"<br><sub>{budget_text(rec.any_result)}</sub>"
            row.append(text)
        rows.append(row)
    return f"## {title}\n\n" + md_table(head, rows)


def tables(data) -> str:
    k = data.pcfg.base
    return (
        probe_table(data, "linear", "Table I: linear probe (frozen encoder)") + "\n"
        + probe_table(data, "mlp", "Table II: 2-layer MLP probe (frozen encoder)") + "\n"
        + probe_table(data, "knn", f"kNN on the frozen features (k = {k.knn_k}, cosine; not in the paper)") + "\n"
        "Column headers: budget = pretraining epochs, batch, pretraining images, image side; probes = labelled "
        "train / test images the probes used. The last row probes an untrained ResNet-18 (same seeds): the "
        "floor pretraining has to beat.\n"
    )


def cost(data) -> str:
    datasets = [d for d in data.table_datasets if any(data.grid(d, m).results for m in data.table_methods)]
    if not datasets:
        return "## Cost: throughput and wall time\n\nnot run\n"
    head = ["method"] + [data.title(d) for d in datasets]
    rows = []
    for m in data.table_methods:
        row = [_method_label(data, m)]
        for d in datasets:
            rec = data.grid(d, m)
            ips, secs = rec.summary("images_per_second"), rec.summary("pretrain_seconds")
            spread = f" ± {ips.std:,.0f}" if ips is not None and ips.std is not None else ""
            row.append("not run" if ips is None else
                       f"{ips.mean:,.0f}{spread} img/s, pretraining {secs.mean / 60:.1f} min (n={ips.n})")
        rows.append(row)
    lines = ["## Cost: throughput and wall time", "",
             "Pretraining images per second (each image gives two augmented views; median over a run's epochs, "
             "then mean ± std over seeds) and pretraining wall time per run (mean over seeds). The runs are "
             "timed one after another, so a machine shared with other work, or a GPU of another kind, shows up "
             "here: compare methods only on the same idle device, and mind the spread.", "", md_table(head, rows)]
    for d in datasets:
        a, b = data.grid(d, "sinsim"), data.grid(d, "simclr")
        sa, sb = a.summary("images_per_second"), b.summary("images_per_second")
        devices = sorted({r.get("device", "?") for m in data.table_methods for r in data.grid(d, m).results.values()})
        if sa is not None and sb is not None:
            noisy = (sa.std or 0.0) + (sb.std or 0.0) > abs(sa.mean - sb.mean)
            lines.append(f"- {data.title(d)}: a SinSim step takes {sb.mean / sa.mean:.2f}x the time of a SimCLR step "
                         f"({sa.mean:,.0f} vs {sb.mean:,.0f} img/s) on {', '.join(devices)}"
                         + (": the seed-to-seed spread is larger than the difference, so this does not measure the "
                            "Sinkhorn term's cost." if noisy else "."))
        else:
            lines.append(f"- {data.title(d)}: ran on {', '.join(devices)}.")
    total = sum(r.get("wall_seconds", r.get("eval_seconds", 0.0)) for r in data.all_results())
    lines.append(f"\nCompute in all the finished cells of this report: {total / 3600:.2f} h of wall time "
                 "(pretraining, probes; the embedding measurements are not counted).")
    return "\n".join(lines) + "\n"


def embeddings(data, figures) -> str:
    lines = ["## Figure 1: the test-set embeddings", "",
             "t-SNE (and UMAP) maps of the frozen encoder features of SimCLR, SinSim and VICReg, coloured by class, "
             "and numbers that back the pictures for every method: **alignment** = E ||f(x) − f(x+)||² over two "
             "augmentations of a test image (lower: the two views land closer), **uniformity** = log E "
             "exp(−2 ||f(x) − f(y)||²) over pairs of test images (lower: spread more evenly over the sphere); "
             "Wang & Isola, ICML 2020; both on L2-normalised features. **Silhouette** (Rousseeuw 1987) of the "
             "classes on the same normalised features (higher: classes form tighter, better separated groups). "
             "The pictures themselves are not evidence: the silhouette is."]
    if figures.umap_missing:
        lines += ["", f"*{UMAP_MISSING}; the t-SNE maps are drawn.*"]
    for d in data.pcfg.datasets:
        lines += ["", f"### {data.title(d)}", ""]
        if d in figures.embeddings:
            lines.append(f"![Figure 1: {data.title(d)}]({figures.embeddings[d]})")
        else:
            lines.append(f"Figure 1: {figures.embedding_notes.get(d, 'not drawn')}.")
        points = [e for m in data.table_methods + [RANDOM_INIT] for e in data.grid(d, m).embeddings.values()]
        if points:
            e = points[0]
            lines += ["", f"Measured on {e['points']:,} of {e['test_images']:,} test images (random subsample, "
                      f"seed {e['subsample_seed']}); alignment views: {e['alignment_views']}."]
        rows = []
        for m in data.table_methods + [RANDOM_INIT]:
            rec = data.grid(d, m)
            rows.append([_method_label(data, m)] + [_entry(data, d, rec, k, "embeddings", 3)
                                                   for k in ("alignment", "uniformity", "silhouette")]
                        + [_entry(data, d, rec, "linear")])
        lines += ["", md_table(["method", "alignment ↓", "uniformity ↓", "silhouette ↑", "linear probe %"], rows)]
    return "\n".join(lines) + "\n"


def _delta(rec: CellRecords, ref: CellRecords, key: str) -> Tuple[str, Optional[Comparison]]:
    if rec is ref:
        return "reference", None
    c = paired_comparison(rec.scores(key), ref.scores(key))
    return ("not run" if c is None else f"{c.text()}: {c.verdict}"), c


def _sweep_table(points_by_on, simclr: CellRecords, x_name: str) -> Tuple[str, List[Comparison]]:
    rows, comps = [], []
    for on, points in points_by_on:
        for x, rec in points:
            dl, cl = _delta(rec, simclr, "linear")
            dk, ck = _delta(rec, simclr, "knn")
            comps += [c for c in (cl, ck) if c is not None]
            ips = rec.summary("images_per_second")
            rows.append([on, f"{x:g}", rec.text("linear"), rec.text("mlp"), rec.text("knn"),
                         "not run" if ips is None else f"{ips.mean:,.0f}", dl, dk])
    head = ["term on", x_name, "linear %", "MLP %", "kNN %", "img/s", "Δ linear vs SimCLR", "Δ kNN vs SimCLR"]
    return md_table(head, rows), comps


def _resolution(comps: List[Comparison], what: str) -> str:
    """What the seeds can and cannot tell apart among these comparisons."""
    if not comps:
        return "Nothing to compare yet."
    decided = [c for c in comps if c.decided]
    few = [c for c in comps if c.n < MIN_SEEDS]
    halves = [(c.high - c.low) / 2 for c in comps if c.low is not None]
    if decided:
        text = f"{len(decided)} of {len(comps)} comparisons with SimCLR are resolved by the seeds (interval excludes 0). "
    elif len(few) == len(comps):
        largest = max(comps, key=lambda c: abs(c.mean))
        text = (f"With fewer than {MIN_SEEDS} paired seeds no comparison gets a verdict, in either direction; the "
                f"largest difference seen is {largest.mean:+.2f} points. More seeds (--seeds 0 1 2 ...) would "
                "resolve it or not. ")
    else:
        text = f"No {what} differs from SimCLR by more than the seeds resolve. "
    if halves:
        text += (f"With these seeds, differences smaller than about {min(halves):.2f}-{max(halves):.2f} points "
                 "(half-widths of the 95% intervals) cannot be told apart.")
    else:
        text += "One seed per cell: no spread, so no difference can be told apart from seed noise."
    return text


def sweeps(data, figures) -> str:
    p = data.pcfg
    if not p.sweep_datasets:
        return ""
    out = []
    for d in p.sweep_datasets:
        simclr = data.records(method_cell(d, "simclr"))
        lines = [f"## Figures 2 and 3: the Sinkhorn weight and epsilon, {data.title(d)}", "",
                 "Δ = the cell's accuracy minus SimCLR's, paired by seed: mean [95% interval], p (paired t-test), "
                 "n; then what it means. Both sweeps put the term on the encoder features h (the paper) and on the "
                 "projections z (the earlier measurement), as listed under *term on*."]
        if d in figures.lambdas:
            table, comps = _sweep_table([(on, data.lambda_sweep(d, on)) for on in p.sweep_on], simclr, "λ")
            lines += ["", f"### Figure 2: accuracy vs λ (ε = {p.base.sinkhorn_eps:g})", "",
                      f"![Figure 2: {data.title(d)}]({figures.lambdas[d]})", "", table, _resolution(comps, "λ > 0")]
        if d in figures.epsilons:
            table, comps = _sweep_table([(on, data.eps_sweep(d, on)) for on in p.sweep_on], simclr, "ε")
            lines += ["", f"### Figure 3: accuracy vs ε (λ = {p.base.sinkhorn_weight:g})", "",
                      f"![Figure 3: {data.title(d)}]({figures.epsilons[d]})", "", table, _resolution(comps, "ε")]
        lines += ["", _placement(data, d)]
        if d == "cifar10":
            lines += ["", _prior(data, d)]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def _placement(data, d: str) -> str:
    b = data.pcfg.base
    places = list(dict.fromkeys(data.pcfg.sweep_on + [b.sinkhorn_on]))
    recs = {on: data.records(sinsim_cell(d, b.sinkhorn_weight, b.sinkhorn_eps, on)) for on in places}
    rows = []
    for on, rec in recs.items():
        ips = rec.summary("images_per_second")
        rows.append([on, rec.text("linear"), rec.text("mlp"), rec.text("knn"),
                     "not run" if ips is None else f"{ips.mean:,.0f}"])
    text = (f"### Where the term acts (λ = {b.sinkhorn_weight:g}, ε = {b.sinkhorn_eps:g})\n\n"
            + md_table(["term on", "linear %", "MLP %", "kNN %", "img/s"], rows))
    if "features" in recs and "projection" in recs:
        for key, name in (("linear", "linear probe"), ("knn", "kNN")):
            c = paired_comparison(recs["projection"].scores(key), recs["features"].scores(key))
            if c is not None:
                text += f"\n- {name}: projection − features = {c.text()}: {c.verdict}."
    return text


def _prior(data, d: str) -> str:
    b = data.pcfg.base
    lines = ["### The earlier measurement", "", PRIOR, ""]
    points = dict(data.lambda_sweep(d, "projection")) if "projection" in data.pcfg.sweep_on else {}
    ours = [(lam, points[lam]) for lam in (0.0, 0.1, 1.0) if lam in points and points[lam].results]
    if not ours or b.sinkhorn_eps != 0.05:
        lines.append("This report has no matching runs (λ sweep on projections at ε = 0.05) to set beside it.")
        return "\n".join(lines)
    budget = budget_text(ours[0][1].any_result)
    lines.append(f"The same points here (kNN, k = {b.knn_k}; {budget}): "
                 + "; ".join(f"λ = {lam:g} → {rec.text('knn')}" for lam, rec in ours) + ".")
    base = points.get(0.0)
    if base is not None:
        for lam, rec in ours:
            if lam > 0:
                c = paired_comparison(rec.scores("knn"), base.scores("knn"))
                if c is not None:
                    lines.append(f"- λ = {lam:g} − λ = 0: {c.text()}: {c.verdict}.")
    comparable = b.knn_k == 200 and "50 ep, batch 512, 50,000 img" in budget
    lines.append("" if comparable else "\nThese runs differ from the earlier one in budget or kNN k, so their "
                 "levels are not comparable with it; only the differences between λ values are.")
    lines.append("\nOne seed cannot separate 72.8 % from 72.75 %, nor, without a seed spread, 72.8 % from "
                 "71.5 %: the seed spread of λ = 0 above is the yardstick.")
    return "\n".join(lines)


def data_and_seeds(data) -> str:
    rows = []
    for d in data.pcfg.all_datasets:
        cells = plan(data.pcfg, d)
        recs = [data.records(c) for c in cells]
        done = sum(len(r.results) for r in recs)
        asked = len(cells) * len(data.pcfg.seeds)
        pretrained = [r.results[s] for r in recs for s in r.results if r.cell.method != RANDOM_INIT]
        source = pretrained[0].get("data_source", "?") if pretrained else "-"
        notes = "; ".join(pretrained[0].get("notes", [])) if pretrained else ""
        error = data.dataset_error(d)
        if error and not done:
            source = f"not found: {error[:300]}"
        budget = budget_text(pretrained[0]) if pretrained else "-"
        rows.append([data.title(d), f"`{source}`" if pretrained else source, notes or "-", budget,
                     ", ".join(map(str, data.pcfg.seeds)), f"{done} of {asked}"])
    return ("## Budgets, data copies and seeds\n\n"
            + md_table(["dataset", "read from", "notes", "budget", "seeds asked", "cell runs finished"], rows)
            + "\nA cell run = one configuration with one seed (grid, sweeps and the untrained floor). Default "
            "epochs per dataset: " + ", ".join(f"{k} {DATASETS[k].epochs}" for k in data.pcfg.all_datasets) + ".\n")


def hardware(data) -> str:
    devices = Counter(r.get("device", "?") for r in data.all_results())
    lines = ["## Hardware and sessions", "", "Devices the finished cells ran on (from their results.json):", ""]
    lines += [f"- {dev}: {n} cell runs" for dev, n in devices.most_common()] or ["- none"]
    rows = []
    pending = None
    for s in data.sessions + [{"event": "start"}]:  # a start without an end: killed, or still running
        if s.get("event") == "start":
            if pending is not None:
                rows.append(_session_row(pending, {"event": "killed or still running"}))
            pending = s if "time" in s else None
        elif pending is not None:
            rows.append(_session_row(pending, s))
            pending = None
    lines += ["", "Invocations (sessions.jsonl):", "",
              md_table(["started (UTC)", "outcome", "machine", "git commit", "cells", "command"], rows) if rows
              else "none recorded"]
    return "\n".join(lines) + "\n"


def _session_row(start: dict, end: dict) -> List[str]:
    m = start.get("machine", {})
    git = m.get("git") or {}
    counts = ", ".join(f"{n} {k}" for k, n in sorted(end.get("counts", {}).items())) or "-"
    return [start["time"], end.get("event", "?"),
            f"{m.get('gpu') or 'no GPU'}; {m.get('cpu')} ({m.get('cpu_count')} cores); torch {m.get('torch')}",
            f"{git.get('commit', '?')}{' + uncommitted changes' if git.get('uncommitted_changes') else ''}",
            counts, "`python train/run.py " + " ".join(start.get("argv", [])) + "`"]


def methods(data) -> str:
    b = data.pcfg.base
    return f"""## How the numbers are made

- Encoder: ResNet-18 (CIFAR stem for images of 32 px or less), each method with its published recipe
  (`train/methods/`); SinSim = SimCLR + λ · W_ε, here {sinsim_text(b.sinkhorn_weight, b.sinkhorn_eps, b.sinkhorn_on)}
  in the tables, {b.sinkhorn_iters} Sinkhorn iterations, cost {b.sinkhorn_cost}.
- Linear probe: multinomial logistic regression (scikit-learn's objective with C = 1, solved by L-BFGS in
  float64 on the run's device) on standardised frozen features of the un-augmented images. MLP probe: Linear-BatchNorm-ReLU-Linear (512 hidden), AdamW, {b.probe_epochs} epochs.
  kNN: cosine similarity, k = {b.knn_k}, votes weighted by exp(sim / {b.knn_temperature:g}). See `train/evaluate.py`.
- Seeds: a seed fixes the initial weights, the data order and the augmentations, so cells pair up by seed.
  Spread: sample standard deviation (ddof = 1). Comparisons: paired t-test over the common seeds
  (`scipy.stats.ttest_rel`), 95% interval of the mean difference; "cannot tell apart" when it contains 0.
- SinSim with λ = 0 is SimCLR exactly (same initial weights, views and updates), so the sweeps' λ = 0 point is
  the SimCLR cell.
- Embeddings: `train/paper/geometry.py` (formulas and papers in its docstring), `train/paper/analysis.py`.
"""


def render(data, figures, written: str) -> str:
    parts = [header(data, written), verdict(data), tables(data), cost(data), embeddings(data, figures),
             sweeps(data, figures), data_and_seeds(data), hardware(data), methods(data)]
    return "\n".join(p for p in parts if p)
