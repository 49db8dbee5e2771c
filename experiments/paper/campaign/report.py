"""``OUT/report.md`` of the campaign: how far each stage is, what the finished ones decided, the evidence.

Written from the plan, the registry and the cells' files alone (rerun with
``--report-only``). Order: what the campaign is and its budget; progress per
stage (cell runs finished / planned); each stage's decision by the plan's
rule, with its evidence; the plan's hypothesis, rules and history as
registered; the code each cell ran with; the sessions that ran them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List

from train import atomic_write_text

from ..sections import md_table
from .cells import all_jobs
from .plan import Plan
from .registry import read_registry
from .rules import DECIDED, evaluate
from .store import read_campaign_record

REPORT = "report.md"


def _progress_rows(outcomes, view_counts) -> List[List[str]]:
    rows = []
    for stage, outcome in outcomes:
        done, planned = view_counts[stage.id]
        budget = "; ".join(f"{b.dataset} {b.epochs} ep x {len(b.seeds)} seeds" for b in stage.blocks) or "-"
        rows.append([stage.id, stage.title, budget, f"{done} / {planned}", outcome.status, outcome.verdict])
    return rows


def _code_section(out: Path, plan: Plan) -> List[str]:
    registry = read_registry(out)
    lines = ["## Registrations and code", "",
             "Each registration (`registry.jsonl`) fixes the plan (its sha256) and the code (the fingerprint of the "
             "files that compute a run's numbers) that cells may run with; a cell records the one it ran under "
             "(`campaign.json`).", ""]
    rows = [[r["time"], r["plan_sha256"][:12], r["code_fingerprint"], (r.get("git") or {}).get("short", "-"),
             r["reason"]] for r in registry]
    lines.append(md_table(["registered (UTC)", "plan", "code", "git", "reason"], rows) if rows
                 else "No registration yet: no cell can run.\n")
    by_code: Dict[str, List[str]] = defaultdict(list)
    for job in _decided_jobs(out, plan):
        record = read_campaign_record(job.folder(out))
        if record is not None and "finished" in record:
            by_code[record["code_fingerprint"]].append(f"{job.cell.dataset}/{job.cell.name}/seed{job.seed}")
    if by_code:
        lines += ["", "Finished cell runs by code fingerprint:", ""]
        lines += [f"- {code}: {len(set(runs))} cell runs" for code, runs in by_code.items()]
        if len(by_code) > 1:
            lines.append("\n**Cells of more than one code fingerprint are mixed**; each registration's reason says "
                         "why the numbers stay comparable.")
    return lines


def _decided_jobs(out: Path, plan: Plan):
    from .rules import decisions_of

    return all_jobs(plan, decisions_of(out, plan))[0]


def _sessions(out: Path) -> List[str]:
    path = out / "sessions.jsonl"
    if not path.is_file():
        return ["## Sessions", "", "None yet."]
    rows, start = [], None
    for line in path.read_text().splitlines():
        s = json.loads(line)
        if s.get("event") == "start":
            start = s
        elif s.get("event") == "end" and start is not None:
            m = start.get("machine", {})
            counts = ", ".join(f"{n} {k}" for k, n in sorted(s.get("counts", {}).items())) or "-"
            rows.append([start["time"], f"{m.get('gpu') or m.get('cpu')} (torch {m.get('torch')})",
                         f"{start['jobs']} x {start['threads']} threads", f"{start['minutes']:g}",
                         start["code_fingerprint"], counts + ("; stopped at the deadline" if s.get("deadline_hit")
                                                              else "")])
            start = None
    return ["## Sessions", "", md_table(["started (UTC)", "machine", "workers", "minutes", "code", "cell runs"], rows)
            if rows else "None finished yet."]


def render(out: Path, plan: Plan) -> str:
    from .cells import sinkhorn_defaults
    from .rules import StageView

    outcomes = evaluate(out, plan, draw=True)
    decisions = {s.id: o.decision for s, o in outcomes if o.status == DECIDED}
    counts = {s.id: StageView(out, plan, s, decisions, sinkhorn_defaults(plan)).progress() for s, _ in outcomes}
    done = sum(d for d, _ in counts.values())
    planned = sum(p for _, p in counts.values())
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {plan.title}", "",
             f"Written {written} by `experiments/paper/campaign/report.py` from this folder's files alone (`python "
             f"train/run.py --protocol campaign --plan {plan.path} --report-only`). The plan "
             f"(`{plan.path.name}`, written {plan.written}) fixed every stage's cells, seeds, budgets and decision "
             "rule before its runs; a stage decides only when all its cell runs have finished, and only by its "
             "rule. Accuracies are top-1 % of probes on the frozen ResNet-18 encoder, mean ± sample std (ddof = 1) "
             "over the seeds finished (n), on the test split unless marked validation; every choice reads the "
             "validation split.", "",
             f"**Progress: {done} of {planned} planned cell runs finished** (a cell run is one configuration at one "
             "seed; a cell shared by two stages counts in both; the untrained encoder's cells are probes only).", "",
             md_table(["stage", "what", "budget", "cell runs", "status", "outcome"],
                      _progress_rows(outcomes, counts))]
    for stage, outcome in outcomes:
        lines += ["", f"## Stage {stage.id}: {stage.title}", "", f"*Rule (as registered):* {stage.rule_text}", "",
                  f"**Outcome:** {outcome.verdict}."]
        if stage.note:
            lines += ["", stage.note]
        lines += outcome.lines
    lines += ["", "## The plan", "", f"**Primary hypothesis.** {plan.primary_hypothesis}", ""]
    if plan.history:
        lines += ["**History** (every change after the plan was first registered):", ""]
        lines += [f"- {h['date']}: {h['change']} Reason: {h['reason']}" for h in plan.history]
    else:
        lines.append("**History:** no change since the plan was first written.")
    lines += [""] + _code_section(out, plan) + [""] + _sessions(out)
    return "\n".join(lines) + "\n"


def write_report(out, plan: Plan) -> Path:
    out = Path(out)
    path = out / REPORT
    atomic_write_text(path, render(out, plan))
    return path
