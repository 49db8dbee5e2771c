"""The markdown of ``report.md``, section by section, from a :class:`~.report.ReportData`.

Rules every section keeps: the report opens with its budget and what it can
and cannot show; a number is printed only from a finished cell's file; an
unfinished cell reads "not run" (or "failed"), and an experiment that did
not run says so in its own heading; every accuracy carries the budget it was
measured at and its seed count ``n``; choices are read on the validation
split, final numbers on the test split; every verdict sentence says what it
tested, and all but the one primary comparison are Holm-corrected
(:mod:`.comparisons`). The sweeps, the variants and the embeddings are in
:mod:`.sweep_sections`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Dict, List, Optional, Sequence

from train import DATASETS, code_label

from .cells import RANDOM_INIT, plan
from .collect import CellRecords
from .aggregate import ALPHA, paired_comparison
from .comparisons import chosen_on_validation, image_bootstrap
from .judgements import LOW_RANK_FRACTION, UNIFORMITY_MARGIN, collapse_reasons, offset_note, suspect_seeds
from .labels import METHOD_NAMES, TERM_NAMES, budget_text, cell_text, sinsim_text

PUBLISHED_EPOCHS = "800-1000"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def method_label(data, method: str) -> str:
    if method == "sinsim":
        s = data.pcfg.sinsim
        return (f"{METHOD_NAMES['sinsim']}<br><sub>"
                f"{sinsim_text(s.sinkhorn_weight, s.sinkhorn_eps, s.sinkhorn_on, s.sinkhorn_term)}</sub>")
    return METHOD_NAMES.get(method, method)


def entry(data, dataset: str, rec: CellRecords, key: str, source: str = "results", digits: int = 2) -> str:
    if not rec.results and not rec.failed and data.dataset_error(dataset):
        return "not run (dataset not found)"
    if rec.results and not rec.scores(key, source):
        return "not measured" if source in ("val", "geometry") else "-"
    return rec.text(key, source, digits)


def ran_datasets(data) -> List[str]:
    return [d for d in data.table_datasets + [s for s in data.pcfg.sweep_datasets if s not in data.table_datasets]
            if any(data.records(c).results for c in plan(data.pcfg, d))]


def first_result(data, dataset: str) -> Optional[dict]:
    for cell in plan(data.pcfg, dataset):
        rec = data.records(cell)
        if cell.method != RANDOM_INIT and rec.results:
            return rec.any_result
    return None


# --- the opening: budget and limits -------------------------------------------------------------

def _budget_line(data, d: str) -> str:
    r = first_result(data, d)
    if r is None:
        return f"- {data.title(d)}: no pretrained cell finished."
    b = r["budget"]
    recs = [data.records(c) for c in plan(data.pcfg, d)]
    done, asked = sum(len(x.results) for x in recs), len(recs) * len(data.pcfg.seeds)
    val = f"{b['val_images']:,} validation / " if b.get("val_images") else "no validation split / "
    probes = (f"probes on {b['probe_train_images']:,} train / {val}{b['probe_test_images']:,} test images"
              if b.get("probe_train_images") is not None else "probe images not recorded")
    return (f"- {data.title(d)}: {b['epochs']} epoch{'s' if b['epochs'] != 1 else ''}, batch {b['batch_size']}, {b['pretrain_images']:,} "
            f"pretraining images of {b['image_size']} px; {probes}; seeds {', '.join(map(str, data.pcfg.seeds))} "
            f"asked, {done} of {asked} cell runs finished.")


def limits(data, family) -> str:
    p = data.pcfg
    ran = ran_datasets(data)
    lines = ["**Budget and limits (read first).**", ""]
    lines += [_budget_line(data, d) for d in ran] or ["- No cell has finished: this report has no numbers yet."]
    missing = [data.title(d) for d in data.table_datasets if d not in ran]
    epochs = sorted({first_result(data, d)["budget"]["epochs"] for d in ran if first_result(data, d)})
    halves = [(t.comparison.high - t.comparison.low) / 2 for t in ([family.primary] if family.primary else [])
              + list(family) if t.testable]
    lines += ["", "What these runs can show: whether a SinSim variant differs from SimCLR at this budget by more "
              "than the seeds resolve" + (f" (here about {min(halves):.2f}-{max(halves):.2f} points: the half-widths "
                                           "of the paired 95% intervals)" if halves else "")
              + ", and whether a run's features collapsed (their geometry, measured on every run)."]
    cannot = [f"what the methods reach at the published budgets ({PUBLISHED_EPOCHS} epochs; here "
              f"{', '.join(map(str, epochs)) or '-'})", "differences smaller than the seeds resolve"]
    if missing:
        cannot.append(f"anything about {', '.join(missing)} (not run)")
    if len(p.seeds) < 3:
        cannot.append("any verdict at all: fewer than 3 seeds")
    lines.append("What they cannot show: " + "; ".join(cannot) + ".")
    lines += _test_sampling(data, ran)
    lines += [line for note in p.notes for line in ("", f"**Note.** {note}")]
    mixed = code_states(data)
    if len(mixed) > 1:
        lines += ["", f"**Runs of {len(mixed)} different code states are mixed** in this report: see *Code that "
                  "made the runs*."]
    return "\n".join(lines) + "\n"


def title() -> str:
    return "# SinSim: the paper's experiments\n"


def _test_sampling(data, ran: List[str]) -> List[str]:
    """The error the seed-paired intervals leave out: the test images are one fixed sample."""
    notes = []
    for d in ran:
        r = first_result(data, d)
        n = (r or {}).get("budget", {}).get("probe_test_images")
        simclr = data.grid(d, "simclr").summary("linear")
        if not n:
            continue
        acc = simclr.mean / 100 if simclr is not None else 0.5
        se = 100 * math.sqrt(acc * (1 - acc) / n)
        notes.append(f"{data.title(d)}: {n:,} test images, an accuracy near {100 * acc:.0f} % has a binomial "
                     f"standard error of {se:.2f} points")
    if not notes:
        return []
    return ["", "The intervals count the seeds' spread only. Every run is scored on the same test images, a "
            "sample of the test distribution whose error does not average out over seeds and is in no interval "
            "here (" + "; ".join(notes) + "): a difference the seeds resolve on test that the validation split does "
            "not repeat may be this sample's rather than the methods'."]


def header(data, written: str) -> str:
    p = data.pcfg
    return (
        f"Written {written} by `experiments/paper/report.py` from the files in this folder alone (rerun with "
        f"`python train/run.py --protocol paper --report-only --out {data.out}`). Every number comes from the "
        "`results.json` of a run that finished; a cell that did not is shown as *not run* (or *failed*). Entries "
        "are mean ± sample standard deviation (ddof = 1) over the seeds that finished, with n = that number of "
        f"seeds (seeds asked for: {', '.join(map(str, p.seeds))}). Accuracies are top-1 % from probes on the "
        "frozen encoder: on the **test** split unless a column says **validation**. Choices (SinSim's variant, "
        "λ, ε) are made on the validation split only; the test split gives the final numbers.\n"
    )


# --- the verdict ------------------------------------------------------------------------------

def verdict(data, family) -> str:
    p = data.pcfg
    lines = ["## Verdict", ""]
    primary = family.primary
    if primary is None:
        lines.append(f"**The primary comparison has not run**: it is {METHOD_NAMES['sinsim']} (the grid's variant) − "
                     f"SimCLR, linear probe, test top-1, on {data.title(p.primary_dataset) if p.primary_dataset else '-'}"
                     ", and no seed has finished both cells there.")
    else:
        when = ("declared by the protocol before the runs" if p.declared_before_runs else
                "declared by the protocol after these runs were made: see the notes above")
        lines += [primary_headline(data, primary), "", f"Primary comparison ({when}): {primary.sentence()}"]
    decided = family.decided()
    lines += ["", f"Every other comparison in this report (m = {family.size} with 3 or more paired seeds) is one "
              "family, Holm-corrected (Holm 1979): a verdict needs a Holm-adjusted p ≤ 0.05. "
              + (f"{len(decided)} of them are resolved (every member is listed in *The comparisons*):" if decided
                 else "None of them is resolved after the correction (every member is listed in *The "
                 "comparisons*).")]
    lines += [f"- {t.sentence()}" for t in decided]
    lines += _chosen(data) + _collapsed(data) + _suspects(data) + _floors(data)
    return "\n".join(lines) + "\n"


def primary_headline(data, primary) -> str:
    """The verdict's first line. A claim that SinSim is above (or below)
    SimCLR needs all of: the paired t-test over seeds at level 0.05, the same
    sign on the validation split (paired over the same seeds), and an
    interval that also counts the test images' own sampling error (the paired
    bootstrap over seeds and images) excluding 0. A p-value alone makes no
    headline; the line says which condition failed."""
    if primary.verdict not in ("higher", "lower"):
        return "**The primary comparison does not show SinSim differing from SimCLR.**"
    a, b = data.records(primary.a), data.records(primary.b)
    direction = "above" if primary.comparison.mean > 0 else "below"
    val = paired_comparison(a.scores("linear", "val"), b.scores("linear", "val"))
    boot = image_bootstrap(a, b, "test", "linear")
    failed = []
    if val is None:
        failed.append("no validation accuracy to check its sign on")
    elif val.mean * primary.comparison.mean <= 0:
        failed.append(f"the validation split points the other way ({val.described()} points, validation linear)")
    if boot is None:
        failed.append("no per-image predictions, so the test images' own sampling error is in no interval")
    elif not boot.excludes_zero:
        failed.append(f"counting the test images' sampling error, the interval includes 0 ({boot.text()})")
    if failed:
        return (f"**No claim**: the paired t-test over seeds puts SinSim {direction} SimCLR "
                f"({primary.comparison.text()}), but " + "; and ".join(failed) + ".")
    word = "beats" if direction == "above" else "is below"
    return (f"**SinSim {word} SimCLR in the primary comparison**: the paired t-test over seeds, the validation "
            f"split ({val.described()}) and the interval over seeds and test images ({boot.text()}) agree.")


def comparisons_table(family) -> str:
    """Every member of the Holm family, resolved or not, and the primary."""
    rows = []
    if family.primary is not None:
        t = family.primary
        rows.append(["primary", t.what(), t.numbers(), t.verdict])
    for t in family:
        rows.append(["family" if t.testable else "not testable", t.what(), t.numbers(), t.verdict])
    if not rows:
        return "## The comparisons — none\n\nNo two cells share a finished seed yet.\n"
    return ("## The comparisons\n\nEvery comparison this report makes on the test split: the primary one, tested "
            f"alone at level {ALPHA:g}, then each member of the Holm family (m = {family.size} testable), resolved "
            "or not, with its unadjusted 95% interval, raw and Holm-adjusted p, and seed count. Members with fewer "
            "than 3 paired seeds or no spread are listed as *not testable* and are not in m.\n\n"
            + md_table(["role", "comparison (a − b)", "a − b, points", "verdict"], rows))


def _chosen(data) -> List[str]:
    notes = []
    for d in ran_datasets(data):
        chosen = chosen_on_validation(data, d)
        if chosen is None:
            continue
        cell, rec = chosen
        s = rec.summary("linear", "val")
        notes.append(f"- {data.title(d)}: {cell_text(cell)} has the highest mean validation linear accuracy "
                     f"({s.mean:.2f}, n={s.n}) of the configurations run; on test it scores {rec.text('linear')}.")
    if not notes:
        return []
    return ["", "Chosen on the validation split (the highest mean validation linear accuracy among SimCLR and every "
            "SinSim configuration run; a choice, not a test):", ""] + notes


def collapsed_cells(data, d: str):
    floor = data.grid(d, RANDOM_INIT)
    cells = list(dict.fromkeys(plan(data.pcfg, d)))
    out = []
    for cell in cells:
        if cell.method == RANDOM_INIT:
            continue
        reasons = collapse_reasons(data.records(cell), floor if floor.results else None)
        if reasons:
            out.append((cell, reasons))
    return out


def _collapsed(data) -> List[str]:
    notes = []
    for d in ran_datasets(data):
        for cell, reasons in collapsed_cells(data, d):
            notes.append(f"- {data.title(d)}, {cell_text(cell)}: its features are collapsed, "
                         f"{' and '.join(reasons)}.")
    if not notes:
        return []
    return ["", "Collapsed features (rules: *How the numbers are made*):", ""] + notes


def _suspects(data) -> List[str]:
    notes = []
    for d in ran_datasets(data):
        floor = data.grid(d, RANDOM_INIT)
        for cell in dict.fromkeys(plan(data.pcfg, d)):
            seeds = suspect_seeds(data.records(cell), floor) if cell.method != RANDOM_INIT else []
            if seeds:
                notes.append(f"- {data.title(d)}, {cell_text(cell)}: kNN below the untrained encoder's on seed(s) "
                             f"{', '.join(map(str, seeds))}: **suspect** (a slow start or a wrong recipe; not ranked).")
    if not notes:
        return []
    return ["", "Suspect runs (pretrained, yet below the untrained encoder on kNN):", ""] + notes


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


# --- tables -----------------------------------------------------------------------------------

def _column_budgets(data, dataset: str) -> set:
    return {budget_text(r) for m in data.table_methods for r in data.grid(dataset, m).results.values()}


def probe_table(data, key: str, title: str, source: str = "results") -> str:
    datasets = data.table_datasets
    budgets = {d: _column_budgets(data, d) for d in datasets}
    head = ["method"] + [data.title(d) + (f"<br><sub>{next(iter(budgets[d]))}</sub>" if len(budgets[d]) == 1 else "")
                         for d in datasets]
    rows, any_number, any_run = [], False, False
    for m in data.table_methods + [RANDOM_INIT]:
        row = [method_label(data, m)]
        for d in datasets:
            rec = data.grid(d, m)
            any_number |= bool(rec.scores(key, source))
            any_run |= bool(rec.results)
            text = entry(data, d, rec, key, source)
            if len(budgets[d]) > 1 and rec.results and m != RANDOM_INIT:
                text += f"<br><sub>{budget_text(rec.any_result)}</sub>"
            if m != RANDOM_INIT and suspect_seeds(rec, data.grid(d, RANDOM_INIT)):
                text += " (suspect: kNN below the untrained encoder)"
            row.append(text)
        rows.append(row)
    missing = "" if any_number else (" — not measured" if any_run else " — not run")
    return f"## {title}{missing}\n\n" + md_table(head, rows)


def tables(data) -> str:
    k = data.pcfg.base
    return (
        probe_table(data, "linear", "Table I: linear probe (frozen encoder), test") + "\n"
        + probe_table(data, "mlp", "Table II: 2-layer MLP probe (frozen encoder), test") + "\n"
        + probe_table(data, "knn", f"kNN on the frozen features (k = {k.knn_k}, cosine; not in the paper), test")
        + "\n"
        + probe_table(data, "linear", "Validation: linear probe (what every choice is made on)", "val") + "\n"
        "Column headers: budget = pretraining epochs, batch, pretraining images, image side; probes = labelled "
        "train / validation / test images the probes used. The last row probes an untrained ResNet-18 (same "
        "seeds): the floor pretraining has to beat.\n"
    )


def geometry_table(data, d: str) -> str:
    floor = data.grid(d, RANDOM_INIT)
    rows = []
    for m in data.table_methods + [RANDOM_INIT]:
        rec = data.grid(d, m)
        reasons = collapse_reasons(rec, floor if floor.results and m != RANDOM_INIT else None)
        note = "collapsed: " + "; ".join(reasons) if reasons else ("the floor" if m == RANDOM_INIT else "")
        offset = offset_note(rec, floor if floor.results and m != RANDOM_INIT else None)
        if offset:
            note = f"{note}; {offset}" if note else offset
        rows.append([method_label(data, m)]
                    + [entry(data, d, rec, k, "geometry", 3) for k in ("alignment", "uniformity_centred")]
                    + [entry(data, d, rec, "effective_rank_centred", "geometry", 1),
                       entry(data, d, rec, "mean_offset_ratio", "geometry", 2),
                       entry(data, d, rec, "uniformity", "geometry", 3),
                       entry(data, d, rec, "silhouette", "geometry", 3)]
                    + [entry(data, d, rec, "linear"), note or "-"])
    return md_table(["method", "alignment ↓", "centred uniformity ↓", "centred effective rank ↑",
                     "mean offset / spread", "uncentred uniformity", "silhouette ↑", "linear probe %", "features"],
                    rows)


# --- cost -------------------------------------------------------------------------------------

def cost(data) -> str:
    datasets = [d for d in data.table_datasets if any(data.grid(d, m).results for m in data.table_methods)]
    if not datasets:
        return "## Cost: throughput and wall time — not run\n\nNo pretrained cell finished.\n"
    head = ["method"] + [data.title(d) for d in datasets]
    rows = []
    for m in data.table_methods:
        row = [method_label(data, m)]
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
                 "(pretraining, probes and geometry).")
    return "\n".join(lines) + "\n"


# --- provenance -------------------------------------------------------------------------------

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


def code_states(data) -> Dict[str, List[str]]:
    """Code label -> the cell runs made with it."""
    states: Dict[str, List[str]] = defaultdict(list)
    for (cell, rec) in data.loaded():
        for seed, r in sorted(rec.results.items()):
            states[code_label(r.get("code"))].append(f"{cell.dataset}/{cell.name}/seed{seed}")
    return dict(states)


def code(data) -> str:
    states = code_states(data)
    lines = ["## Code that made the runs", "",
             "Each run records the git commit of the code that made it and whether its tracked files differed "
             "from that commit (`results.json`, `code`; a dirty tree is told apart by the hash of its diff).", ""]
    if not states:
        return "\n".join(lines + ["No cell has finished."]) + "\n"
    lines.append(md_table(["code", "cell runs"], [[k, str(len(v))] for k, v in states.items()]))
    if len(states) > 1:
        lines.append("**Runs of different code are mixed.** Cell runs per code state:\n")
        for k, runs in states.items():
            shown = ", ".join(runs[:12]) + (f", and {len(runs) - 12} more" if len(runs) > 12 else "")
            lines.append(f"- {k}: {shown}")
    return "\n".join(lines) + "\n"


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
    counts = ", ".join(f"{n} {k}" for k, n in sorted(end.get("counts", {}).items())) or "-"
    return [start["time"], end.get("event", "?"),
            f"{m.get('gpu') or 'no GPU'}; {m.get('cpu')} ({m.get('cpu_count')} cores); torch {m.get('torch')}",
            code_label(m.get("git")), counts, "`python train/run.py " + " ".join(start.get("argv", [])) + "`"]


def methods(data) -> str:
    b, s = data.pcfg.base, data.pcfg.sinsim
    primary = data.title(data.pcfg.primary_dataset) if data.pcfg.primary_dataset else "-"
    return f"""## How the numbers are made

- Encoder: ResNet-18 (CIFAR stem for images of 32 px or less), each method with its published recipe, every
  hyper-parameter cited in `train/methods/`; SinSim = SimCLR + λ · T_ε, here
  {sinsim_text(s.sinkhorn_weight, s.sinkhorn_eps, s.sinkhorn_on, s.sinkhorn_term)} in the tables,
  {s.sinkhorn_iters} Sinkhorn iterations, cost {s.sinkhorn_cost}. T_ε is the {TERM_NAMES['entropic']} of the
  paper's equation (3) (*entropic*) or the debiased {TERM_NAMES['divergence']} = OT(x,y) − OT(x,x)/2 − OT(y,y)/2
  (*divergence*; Feydy et al. 2019).
- Splits (`train/splits.py`): a stratified {b.val_fraction:g} of the labelled train split (seed 0) is the
  validation split; the probes train on the rest and never on it; the test split gives the final numbers only.
  Pretraining sees the train images without labels (validation ones included), never a test image.
- Linear probe: multinomial logistic regression (scikit-learn's objective with C = 1, solved by L-BFGS in
  float64 on the run's device) on standardised frozen features of the un-augmented images. MLP probe:
  Linear-BatchNorm-ReLU-Linear (512 hidden), AdamW, {b.probe_epochs} epochs. kNN: cosine similarity,
  k = {b.knn_k}, votes weighted by exp(sim / {b.knn_temperature:g}), the probe-train images as memory bank. The
  probe settings are fixed beforehand, not tuned. See `train/evaluate.py`.
- Seeds: a seed fixes the initial weights, the data order and the augmentations, so cells pair up by seed.
  Spread: sample standard deviation (ddof = 1). Comparisons: paired t-test over the common seeds
  (`scipy.stats.ttest_rel`), 95% interval of the mean difference (unadjusted); a verdict needs 3 or more paired
  seeds. One primary comparison (SinSim − SimCLR, linear probe, test, on {primary}) is tested alone at
  level 0.05; every other comparison is one family with Holm's step-down correction
  (`experiments/paper/comparisons.py`).
- Geometry (`train/geometry.py`, `train/embedding.py`), measured once by every run on a fixed subsample of
  {b.geometry_points:,} validation images (seed 0; test images when a run has no validation split; no label
  used except by the silhouette): alignment E ||f(x) − f(x+)||² over two SimCLR augmentations, uniformity
  log E exp(−2 ||f(x) − f(y)||²) (Wang & Isola 2020; both on L2-normalised h), effective rank exp(entropy of
  the normalised singular values) (RankMe, Garrido et al. 2023), silhouette of the classes (Rousseeuw 1987).
  Uniformity and effective rank are given on the centred features h − mean h, with the mean offset ratio
  ||mean h|| / RMS(h − mean h): the projector's Linear + BatchNorm makes NT-Xent blind to a common offset of h
  and the probes standardise the features, so an offset alone must not read as collapse.
- Collapsed features: mean centred uniformity within {UNIFORMITY_MARGIN:g} of the untrained encoder's or above
  it, or a mean centred effective rank below {LOW_RANK_FRACTION:.0%} of the feature dimension. Suspect run: kNN
  below the untrained encoder's on some seed, flagged in every table (`experiments/paper/judgements.py`).
- SinSim with λ = 0 is SimCLR exactly (same initial weights, views and updates), so the sweeps' λ = 0 point is
  the SimCLR cell.
"""
