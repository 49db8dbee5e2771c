r"""The stages' decision rules: what a finished stage decides, in the plan's own terms.

Every rule reads only the cells' files and returns an :class:`Outcome`: the
stage's status, its decision (the values later stages take by reference,
``"@a.sinkhorn_term"``), a one-line verdict and the markdown that shows the
evidence. A rule decides only once every planned cell run of its stage has
finished; before that it shows what is there and says how far the stage is.
The plan names a rule per stage and says it in words (``rule_text``); the
code here is that text, and :mod:`tests.test_campaign` checks each against
hand-computed cases.

* ``choose_term``: the Sinkhorn term whose validation linear accuracy is
  higher, paired by seed (the mean of the per-seed differences, entropic −
  divergence; entropic, the paper's own term, on a tie). A choice, so no
  test; the paired interval is shown.
* ``baselines_learn``: each pretrained method rises above the untrained
  encoder when its validation kNN and validation linear accuracy exceed the
  untrained encoder's on every seed; the kNN monitor's curve is shown.
* ``primary``: SinSim − SimCLR, linear probe, test top-1. "SinSim beats
  SimCLR" needs all of: the paired t-test over seeds two-sided at 0.05 with
  a positive mean, the exact sign-flip test one-sided (SinSim above) at
  0.05, the paired bootstrap interval over seeds and test images above 0,
  and a positive paired mean on validation; "SinSim is below SimCLR" the
  mirror image; otherwise "not resolved", with the bootstrap interval as the
  bound on the difference.
* ``tables``: no decision: the probes' tables over the blocks' datasets,
  every baseline row flagged (suspect: kNN below the untrained encoder on
  some seed; did not rise in a ``baselines_learn`` stage), and SinSim −
  SimCLR on the linear and MLP probes per dataset as one Holm family (the
  primary stage's own comparison left out).
* ``sweeps``: lambda (at the settings' epsilon, SimCLR as lambda = 0) and
  epsilon (at the settings' lambda) chosen on validation linear accuracy;
  every SinSim point − SimCLR on test linear as one Holm family; figures 2
  and 3.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..aggregate import ALPHA, Comparison, format_summary, holm, paired_comparison
from ..cells import RANDOM_INIT, Cell
from ..collect import CellRecords, dataset_error
from ..comparisons import image_bootstrap
from ..figures import SWEEP_PANELS, sweep_figure
from ..judgements import collapse_reasons, offset_note, suspect_seeds
from ..labels import DATASET_NAMES, cell_text, dataset_title
from ..paired_tests import sign_flip_floor, sign_flip_test
from ..sections import md_table

DECIDED, IN_PROGRESS, WAITING, NOT_RUN = "decided", "in progress", "waiting", "not run"


@dataclass
class Outcome:
    status: str  # DECIDED (or complete, for rules without a decision), IN_PROGRESS, WAITING, NOT_RUN
    verdict: str
    decision: Dict[str, Any] = field(default_factory=dict)
    lines: List[str] = field(default_factory=list)


class StageView:
    """What a rule sees: its stage's blocks, their cells' records, earlier decisions."""

    def __init__(self, out: Path, plan, stage, decisions, defaults: Dict[str, Any], draw: bool = False):
        from .cells import block_records, planned_cells

        self.out, self.plan, self.stage, self.decisions, self.defaults = Path(out), plan, stage, decisions, defaults
        self.draw = draw  # rules draw their figures only when the report asks
        self._cells = {id(b): planned_cells(plan, b, decisions) for b in stage.blocks}
        self._records = block_records

    def cells(self, block):
        return self._cells[id(block)]

    def records(self, block, cell: Cell) -> CellRecords:
        return self._records(self.out, block, cell)

    def title(self, block) -> str:
        for pc in self.cells(block):
            if pc.cell is not None:
                rec = self.records(block, pc.cell)
                if rec.any_result is not None:
                    return dataset_title(block.dataset, rec.any_result)
        return DATASET_NAMES.get(block.dataset, block.dataset)

    def floor(self, block) -> Optional[CellRecords]:
        for pc in self.cells(block):
            if pc.cell is not None and pc.cell.method == RANDOM_INIT:
                return self.records(block, pc.cell)
        return None

    def progress(self) -> Tuple[int, int]:
        """(finished cell runs, planned cell runs) over the stage's blocks."""
        done = planned = 0
        for block in self.stage.blocks:
            for pc in self.cells(block):
                planned += len(block.seeds)
                if pc.cell is not None:
                    done += len(self.records(block, pc.cell).results)
        return done, planned

    def failed(self) -> List[str]:
        out = []
        for block in self.stage.blocks:
            for pc in self.cells(block):
                if pc.cell is not None:
                    out += [f"{block.dataset} {pc.cell.name} seed {s}" for s in self.records(block, pc.cell).failed]
        return out

    def unavailable(self, block) -> Optional[str]:
        rec_any = any(self.records(block, pc.cell).results for pc in self.cells(block) if pc.cell is not None)
        return None if rec_any else dataset_error(self.out, block.dataset)

    def waiting_for(self) -> List[str]:
        """The undecided stages some of this stage's cells wait for."""
        return sorted({s for b in self.stage.blocks for pc in self.cells(b) if pc.cell is None
                       for s in pc.waiting_for})


def _pending(view: StageView) -> Optional[Outcome]:
    """The outcome of a stage that cannot decide yet, or None when every cell run finished."""
    done, planned = view.progress()
    waiting = view.waiting_for()
    missing = [b for b in view.stage.blocks if view.unavailable(b)]
    if missing and done == 0:
        reasons = "; ".join(f"{DATASET_NAMES.get(b.dataset, b.dataset)}: {view.unavailable(b)}" for b in missing)
        return Outcome(NOT_RUN, f"not run: the data could not be loaded ({reasons})")
    if waiting:
        return Outcome(WAITING, f"waits for the decision of stage {', '.join(waiting)}; {done} of {planned} cell "
                       "runs finished")
    failed = view.failed()
    if done < planned:
        note = f"; failed: {', '.join(failed)} (the rule cannot apply as written: see the plan's history)" \
            if failed else ""
        return Outcome(IN_PROGRESS, f"{done} of {planned} cell runs finished{note}")
    return None


# --- shared tables ------------------------------------------------------------------------------

def _text(rec: CellRecords, key: str, source: str = "results", digits: int = 2) -> str:
    if rec.results and not rec.scores(key, source):
        return "not measured"
    return rec.text(key, source, digits)


def _features_note(rec: CellRecords, floor: Optional[CellRecords]) -> str:
    if rec.cell.method == RANDOM_INIT:
        return "the floor"
    if floor is None or not floor.results:
        return "-"
    notes = collapse_reasons(rec, floor)
    text = "collapsed: " + "; ".join(notes) if notes else (offset_note(rec, floor) or "")
    seeds = suspect_seeds(rec, floor)
    if seeds:
        text = (text + "; " if text else "") + \
            f"suspect: kNN below the untrained encoder on seed {', '.join(map(str, seeds))}"
    return text or "-"



def cells_table(view: StageView, block) -> str:
    """Every cell of ``block``: validation and test accuracies, centred geometry, and what they say."""
    floor = view.floor(block)
    rows = []
    for pc in view.cells(block):
        if pc.cell is None:
            rows.append([f"{pc.written.method} (waits for stage {', '.join(pc.waiting_for)})"] + ["-"] * 8)
            continue
        rec = view.records(block, pc.cell)
        rows.append([cell_text(pc.cell), _text(rec, "linear", "val"), _text(rec, "linear"), _text(rec, "mlp"),
                     _text(rec, "knn"), _text(rec, "uniformity_centred", "geometry", 3),
                     _text(rec, "effective_rank_centred", "geometry", 1),
                     _text(rec, "mean_offset_ratio", "geometry", 2), _features_note(rec, floor)])
    head = ["cell", "validation linear %", "test linear %", "test MLP %", "test kNN %", "centred uniformity ↓",
            "centred effective rank ↑", "mean offset / spread", "features"]
    return md_table(head, rows)


def _block_heading(view: StageView, block) -> str:
    epochs = f"{block.epochs} epoch{'s' if block.epochs != 1 else ''}"
    return (f"{view.title(block)}, {epochs}, seeds {', '.join(map(str, block.seeds))}"
            + (f" ({', '.join(f'{k} {v}' for k, v in block.settings)})" if block.settings else ""))


def _evidence(view: StageView) -> List[str]:
    lines = []
    for block in view.stage.blocks:
        lines += ["", f"**{_block_heading(view, block)}**", "", cells_table(view, block)]
    return lines


def _wins(a: Dict[int, float], b: Dict[int, float], seeds) -> int:
    return sum(a[s] > b[s] for s in seeds)


# --- the rules ----------------------------------------------------------------------------------

def _by_term(view: StageView, block) -> Dict[str, CellRecords]:
    out = {}
    for pc in view.cells(block):
        if pc.cell is not None and pc.cell.method == "sinsim":
            out[pc.cell.settings["sinkhorn_term"]] = view.records(block, pc.cell)
    return out


def choose_term(view: StageView) -> Outcome:
    block = view.stage.blocks[0]
    terms = _by_term(view, block)
    if set(terms) != {"entropic", "divergence"}:
        return Outcome(NOT_RUN, "the rule needs one entropic and one divergence SinSim cell in its first block",
                       lines=_evidence(view))
    pending = _pending(view)
    if pending is not None:
        pending.lines = _evidence(view)
        return pending
    e, d = terms["entropic"].scores("linear", "val"), terms["divergence"].scores("linear", "val")
    c = paired_comparison(e, d)
    term = "entropic" if c.mean >= 0 else "divergence"
    other = "divergence" if term == "entropic" else "entropic"
    wins = _wins(e, d, c.seeds) if term == "entropic" else _wins(d, e, c.seeds)
    margin = (f"the {term} term is higher on {wins} of {c.n} seeds" if c.mean != 0 else
              "a tie, which the rule gives to the entropic term")
    verdict = (f"chose the **{term}** term: validation linear accuracy, entropic − divergence = {c.described()} "
               f"points over seeds {', '.join(map(str, c.seeds))}; {margin} (a choice, not a test)")
    lines = _evidence(view)
    simclr = next((view.records(block, pc.cell) for pc in view.cells(block)
                   if pc.cell is not None and pc.cell.method == "simclr"), None)
    if simclr is not None:
        for name, rec in terms.items():
            vs = paired_comparison(rec.scores("linear", "val"), simclr.scores("linear", "val"))
            if vs is not None:
                lines.append(f"- {name} − SimCLR, validation linear: {vs.described()} points (described, not "
                             "tested).")
    return Outcome(DECIDED, verdict, {"sinkhorn_term": term, "not_chosen": other}, lines)


def _knn_curve(rec: CellRecords) -> str:
    parts = []
    for seed, folder in sorted(rec.folders.items()):
        path = folder / "metrics.csv"
        if not path.is_file():
            continue
        with path.open() as f:
            points = [(row["epoch"], row.get("knn")) for row in csv.DictReader(f) if row.get("knn")]
        if points:
            parts.append(f"seed {seed}: " + ", ".join(f"{e}: {float(k):.1f}" for e, k in points))
    return "; ".join(parts) or "not monitored"


def baselines_learn(view: StageView) -> Outcome:
    pending = _pending(view)
    if pending is not None:
        pending.lines = _evidence(view)
        return pending
    lines = _evidence(view)
    learning, not_learning = [], []
    for block in view.stage.blocks:
        floor = view.floor(block)
        if floor is None or not floor.results:
            return Outcome(NOT_RUN, "the rule needs the untrained encoder (random-init) in every block", lines=lines)
        lines += ["", "Validation kNN accuracy during pretraining (epoch: %), the untrained encoder's "
                  f"{format_summary(floor.summary('knn', 'val'))}:", ""]
        for pc in view.cells(block):
            if pc.cell is None or pc.cell.method == RANDOM_INIT:
                continue
            rec = view.records(block, pc.cell)
            ok = all(rec.scores(k, "val").get(s, -math.inf) > floor.scores(k, "val").get(s, math.inf)
                     for k in ("knn", "linear") for s in block.seeds)
            (learning if ok else not_learning).append(pc.cell.method)
            lines.append(f"- {cell_text(pc.cell)}: {_knn_curve(rec)}; "
                         + ("rises above the untrained encoder" if ok else
                            "**does not rise above the untrained encoder** (validation kNN or linear)"))
    if not_learning:
        verdict = (f"{', '.join(cell_text(Cell('', m, m)) for m in not_learning)} did not rise above the untrained "
                   "encoder on validation: their rows in later tables are flagged")
    else:
        verdict = "every baseline rose above the untrained encoder on validation kNN and linear accuracy"
    return Outcome(DECIDED, verdict, {"not_learning": not_learning, "learning": learning}, lines)


def _pair(view: StageView, block) -> Tuple[Optional[CellRecords], Optional[CellRecords]]:
    sinsim = simclr = None
    for pc in view.cells(block):
        if pc.cell is not None and pc.cell.method == "sinsim":
            sinsim = view.records(block, pc.cell)
        elif pc.cell is not None and pc.cell.method == "simclr":
            simclr = view.records(block, pc.cell)
    return sinsim, simclr


def primary(view: StageView) -> Outcome:
    block = view.stage.blocks[0]
    pending = _pending(view)
    if pending is not None:
        pending.lines = _evidence(view)
        return pending
    a, b = _pair(view, block)
    if a is None or b is None:
        return Outcome(NOT_RUN, "the rule needs one SinSim and one SimCLR cell", lines=_evidence(view))
    ta, tb = a.scores("linear"), b.scores("linear")
    t = paired_comparison(ta, tb)
    diffs = [ta[s] - tb[s] for s in t.seeds]
    up, down = sign_flip_test(diffs, "greater"), sign_flip_test(diffs, "less")
    boot = image_bootstrap(a, b, "test", "linear")
    val = paired_comparison(a.scores("linear", "val"), b.scores("linear", "val"))
    checks = {
        "above": [t.p is not None and t.p < ALPHA and t.mean > 0, up < ALPHA,
                  boot is not None and boot.low > 0, val is not None and val.mean > 0],
        "below": [t.p is not None and t.p < ALPHA and t.mean < 0, down < ALPHA,
                  boot is not None and boot.high < 0, val is not None and val.mean < 0],
    }
    rows = [[str(s), f"{tb[s]:.2f}", f"{ta[s]:.2f}", f"{ta[s] - tb[s]:+.2f}",
             f"{a.scores('linear', 'val')[s] - b.scores('linear', 'val')[s]:+.2f}"
             if s in a.scores("linear", "val") and s in b.scores("linear", "val") else "-"] for s in t.seeds]
    lines = _evidence(view) + ["", "Per seed (linear probe, top-1 %):", "",
                               md_table(["seed", "SimCLR test", "SinSim test", "SinSim − SimCLR, test",
                                         "SinSim − SimCLR, validation"], rows)]
    floor = sign_flip_floor(len(diffs), "greater")
    lines += [
        f"- Paired t-test over seeds, two-sided: {t.text()}" + (" (no spread: not testable)." if t.p is None else "."),
        f"- Exact sign-flip test over the {len(diffs)} seeds: one-sided p = {up:.3g} (SinSim above), "
        f"{down:.3g} (SinSim below); the smallest possible is {floor:.3g}.",
        f"- Paired bootstrap over seeds and test images: {boot.text()}." if boot is not None else
        "- Paired bootstrap over seeds and test images: not possible (a seed kept no per-image predictions).",
        f"- Validation linear, paired: {val.described() if val is not None else 'not measured'}.",
    ]
    names = ["the t-test", "the sign-flip test", "the bootstrap interval", "the validation sign"]
    if all(checks["above"]):
        verdict, decision = "**SinSim beats SimCLR**: all four criteria of the rule hold", "above"
    elif all(checks["below"]):
        verdict, decision = "**SinSim is below SimCLR**: all four criteria of the rule hold", "below"
    else:
        side = "above" if t.mean > 0 else "below"
        failed = [n for n, ok in zip(names, checks[side]) if not ok]
        bound = (f"; counting seeds and test images, the difference lies in [{boot.low:+.2f}, {boot.high:+.2f}] "
                 "points" if boot is not None else "")
        verdict, decision = (f"**not resolved**: SinSim − SimCLR = {t.mean:+.2f} points; {len(failed)} of the 4 "
                             f"criteria for '{side}' fail ({', '.join(failed)}){bound}"), "not resolved"
    return Outcome(DECIDED, verdict, {"verdict": decision}, lines)


def _flag_text(view: StageView, block, cell: Cell, rec: CellRecords) -> str:
    floor = view.floor(block)
    flags = []
    if floor is not None and cell.method != RANDOM_INIT and suspect_seeds(rec, floor):
        flags.append("suspect: kNN below the untrained encoder")
    for decided in view.decisions.values():
        if cell.method in decided.get("not_learning", []):
            flags.append("did not rise above the untrained encoder in the baselines' stage")
    return f" ({'; '.join(flags)})" if flags else ""


def _primary_keys(view: StageView) -> List[Tuple[str, str, str]]:
    """(dataset, sinsim cell name, metric) of the plan's primary stages: left out of a Holm family."""
    keys = []
    for stage in view.plan.stages:
        if stage.rule == "primary":
            for block in stage.blocks:
                sub = StageView(view.out, view.plan, stage, view.decisions, view.defaults)
                a, _ = _pair(sub, block)
                if a is not None:
                    keys.append((block.dataset, a.cell.name, "linear"))
    return keys


def _family(view: StageView, members: List[Tuple[str, CellRecords, CellRecords, str]]) -> List[str]:
    """``members``: (what, a, b, metric). One Holm family over the testable ones, as a table."""
    tested: List[Tuple[str, Comparison]] = []
    rows = []
    for what, a, b, metric in members:
        c = paired_comparison(a.scores(metric), b.scores(metric))
        if c is None:
            rows.append([what, "not run", "-"])
        elif c.p is None or c.n < 3:
            rows.append([what, c.text(), f"not testable ({c.verdict})"])
        else:
            tested.append((what, c))
    adjusted = holm([c.p for _, c in tested])
    for (what, c), q in zip(tested, adjusted):
        verdict = ("higher" if c.mean > 0 else "lower") if q <= ALPHA else "not resolved"
        rows.append([what, f"{c.text()}, Holm p = {q:.2g} (m = {len(tested)})", verdict])
    if not rows:
        return []
    return ["", f"Comparisons on the test split, one Holm family (m = {len(tested)} testable; paired t-tests over "
            "seeds, unadjusted 95% intervals):", "", md_table(["a − b", "points", "verdict"], rows)]


def tables(view: StageView) -> Outcome:
    pending = _pending(view)
    blocks = view.stage.blocks
    methods: List[Tuple[str, str]] = []  # (method, row label), in the plan's order, untrained last
    for block in blocks:
        for pc in view.cells(block):
            label = pc.cell.method if pc.cell is not None else pc.written.method
            if label not in [m for m, _ in methods]:
                methods.append((label, cell_text(pc.cell) if pc.cell is not None else label))
    methods.sort(key=lambda m: m[0] == RANDOM_INIT)
    lines = []
    for key, source, title in (("linear", "results", "Table I: linear probe, test"),
                               ("mlp", "results", "Table II: 2-layer MLP probe, test"),
                               ("knn", "results", "kNN, test"),
                               ("linear", "val", "Linear probe, validation")):
        rows = []
        for method, label in methods:
            row = [label]
            for block in blocks:
                pc = next((p for p in view.cells(block) if p.cell is not None and p.cell.method == method), None)
                missing = view.unavailable(block)
                if pc is None:
                    row.append("waits for a decision" if any(p.written.method == method for p in view.cells(block))
                               else "-")
                    continue
                rec = view.records(block, pc.cell)
                if missing and not rec.results:
                    row.append(f"not run: {missing.split(';')[0][:120]}")
                    continue
                row.append(_text(rec, key, source) + _flag_text(view, block, pc.cell, rec))
            rows.append(row)
        head = ["method"] + [f"{view.title(b)}<br><sub>{b.epochs} epochs, seeds "
                             f"{', '.join(map(str, b.seeds))}</sub>" for b in blocks]
        lines += ["", f"**{title}**", "", md_table(head, rows)]
    members = []
    skip = _primary_keys(view)
    for block in blocks:
        a, b = _pair(view, block)
        if a is None or b is None:
            continue
        for metric in ("linear", "mlp"):
            if (block.dataset, a.cell.name, metric) in skip:
                continue
            members.append((f"SinSim − SimCLR, {metric}, {view.title(block)}", a, b, metric))
    lines += _family(view, members)
    if pending is not None:
        pending.lines = lines
        return pending
    return Outcome(DECIDED, "all cells finished: the tables are complete", {}, lines)


def _sweep_points(view: StageView, block, simclr: CellRecords):
    eps0, lam0 = view.defaults["sinkhorn_eps"], view.defaults["sinkhorn_weight"]
    lam, eps = [(0.0, simclr)], []
    for pc in view.cells(block):
        if pc.cell is None or pc.cell.method != "sinsim":
            continue
        s = pc.cell.settings
        rec = view.records(block, pc.cell)
        if s["sinkhorn_eps"] == eps0:
            lam.append((s["sinkhorn_weight"], rec))
        if s["sinkhorn_weight"] == lam0:
            eps.append((s["sinkhorn_eps"], rec))
    return sorted(lam, key=lambda t: t[0]), sorted(eps, key=lambda t: t[0])


def _chosen(points: List[Tuple[float, CellRecords]]) -> Optional[Tuple[float, float, int]]:
    scored = [(s.mean, s.n, x) for x, rec in points for s in [rec.summary("linear", "val")] if s is not None]
    if not scored:
        return None
    mean, n, x = max(scored, key=lambda t: (t[0], t[1]))
    return x, mean, n


def sweeps(view: StageView) -> Outcome:
    block = view.stage.blocks[0]
    pending = _pending(view)
    _, simclr = _pair(view, block)
    if simclr is None:
        return Outcome(NOT_RUN, "the rule needs the SimCLR cell (lambda = 0)", lines=_evidence(view))
    lam, eps = _sweep_points(view, block, simclr)
    lines = _evidence(view)
    stage_id = view.stage.id
    for name, points, xlabel, fixed in (("lambda", lam, "λ (Sinkhorn weight)",
                                         f"ε = {view.defaults['sinkhorn_eps']:g}; λ = 0 is SimCLR"),
                                        ("eps", eps, "ε (entropic regularisation)",
                                         f"λ = {view.defaults['sinkhorn_weight']:g}")):
        if not view.draw or len(points) < 2 or not any(rec.results for _, rec in points):
            continue
        series = {"SinSim": {(m, s): {x: rec.summary(m, s) for x, rec in points} for m, s, _, _ in SWEEP_PANELS}}
        reference = {(m, s): simclr.summary(m, s) for m, s, _, _ in SWEEP_PANELS}
        rel = f"figures/fig-{name}-stage-{stage_id}.png"
        sweep_figure(view.out / rel, f"{view.title(block)}, {block.epochs} epochs: accuracy and geometry vs "
                     f"{xlabel} ({fixed}); mean ± 1 std over seeds, dots: single seeds", xlabel,
                     [x for x, _ in points], series, reference, "SimCLR, ± 1 std")
        lines += ["", f"![{name} sweep]({rel})"]
    distinct = {rec.cell.name: rec for _, rec in lam + eps if rec is not simclr}
    lines += _family(view, [(f"{cell_text(rec.cell)} − SimCLR, linear", rec, simclr, "linear")
                            for rec in distinct.values()])
    if pending is not None:
        pending.lines = lines
        return pending
    chosen_lam, chosen_eps = _chosen(lam), _chosen(eps)
    decision = {}
    parts = []
    if chosen_lam is not None:
        decision["sinkhorn_weight"] = chosen_lam[0]
        parts.append(f"λ = {chosen_lam[0]:g} (validation linear {chosen_lam[1]:.2f}, n={chosen_lam[2]})")
    if chosen_eps is not None:
        decision["sinkhorn_eps"] = chosen_eps[0]
        parts.append(f"ε = {chosen_eps[0]:g} (validation linear {chosen_eps[1]:.2f}, n={chosen_eps[2]})")
    verdict = "chose on validation " + " and ".join(parts) + " (choices, not tests)"
    return Outcome(DECIDED, verdict, decision, lines)


RULES: Dict[str, Callable[[StageView], Outcome]] = {
    "choose_term": choose_term,
    "baselines_learn": baselines_learn,
    "primary": primary,
    "tables": tables,
    "sweeps": sweeps,
}


def evaluate(out, plan, draw: bool = False) -> List[Tuple[Any, Outcome]]:
    """Every stage's outcome in the plan's order; a stage sees the decisions
    of the stages before it. ``draw``: also draw the stages' figures."""
    from .cells import sinkhorn_defaults

    decisions: Dict[str, Dict[str, Any]] = {}
    outcomes = []
    for stage in plan.stages:
        view = StageView(out, plan, stage, dict(decisions), sinkhorn_defaults(plan), draw)
        outcome = RULES[stage.rule](view)
        if outcome.status == DECIDED:
            decisions[stage.id] = outcome.decision
        outcomes.append((stage, outcome))
    return outcomes


def decisions_of(out, plan) -> Dict[str, Dict[str, Any]]:
    return {stage.id: o.decision for stage, o in evaluate(out, plan) if o.status == DECIDED}
