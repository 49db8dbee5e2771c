"""The pre-registered campaign (experiments/paper/campaign/): the plan's checks, registration, the decision rules on
hand-made results, and the command end to end on digits with two worker processes (deadline, resume, no rerun,
results identical to a sequential run)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

from experiments.paper.campaign import registry
from experiments.paper.campaign.cells import all_jobs
from experiments.paper.campaign.plan import PlanError, read_plan
from experiments.paper.campaign.registry import RegistrationError, register, require_registered
from experiments.paper.campaign.rules import DECIDED, IN_PROGRESS, WAITING, evaluate
from experiments.paper.campaign.store import ForeignCell, complete_cut_record, state, write_campaign_record
from experiments.paper.cells import RANDOM_INIT
from train import RESULTS_SCHEMA

TINY = """
[settings]
train_subset = 64
batch_size = 32
image_size = 8
probe_epochs = 5
probe_train_subset = 200
geometry_points = 100
knn_k = 20
"""

PLAN = TINY + """
[[stages]]
id = "a"
title = "the term"
rule = "choose_term"
rule_text = "the higher paired validation linear accuracy"
  [[stages.blocks]]
  dataset = "digits"
  epochs = 1
  seeds = [0, 1]
  cells = [ { method = "simclr" }, { method = "sinsim", sinkhorn_term = "entropic", sinkhorn_weight = 1.0 },
            { method = "sinsim", sinkhorn_term = "divergence", sinkhorn_weight = 1.0 } ]
[[stages]]
id = "c"
title = "the primary"
rule = "primary"
rule_text = "four criteria"
  [[stages.blocks]]
  dataset = "digits"
  epochs = 1
  seeds = [0, 1, 2]
  cells = [ { method = "simclr" }, { method = "sinsim", sinkhorn_term = "@a.sinkhorn_term" } ]
"""

HEAD = 'schema = 1\ntitle = "test campaign"\nwritten = "2026-12-03"\nprimary_hypothesis = "a test"\n'


def write_plan(folder: Path, body: str = PLAN, history: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plan.toml"
    path.write_text(HEAD + textwrap.dedent(body) + history)
    return path


def campaign(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "train" / "run.py"), "--protocol", "campaign", *args],
                          capture_output=True, text=True, timeout=900, cwd=cwd)


# --- the plan -----------------------------------------------------------------------------------

def test_the_committed_plan_reads_and_asks_for_the_issues_stages():
    plan = read_plan(ROOT / "results" / "campaign" / "plan.toml")
    assert [s.id for s in plan.stages] == ["a", "b", "c", "d", "e", "f"]
    c = plan.stage("c").blocks[0]
    assert (c.dataset, c.epochs, c.seeds) == ("cifar10", 100, (0, 1, 2, 3, 4))
    jobs, waiting = all_jobs(plan, {"a": {"sinkhorn_term": "entropic"}})
    assert not waiting
    d = [j for j in jobs if j.stage.id in ("c", "d") and j.cell.method != RANDOM_INIT]
    # Tables I and II: 5 methods x 3 seeds x 3 datasets = 45 cell runs, 6 of them trained by stage c
    assert len({(j.cell.dataset, j.cell.name, j.seed) for j in d if j.seed < 3}) == 45
    _, waiting = all_jobs(plan, {})
    assert {stage.id for stage, _ in waiting} == {"c", "d", "e", "f"}


@pytest.mark.parametrize("body,message", [
    (PLAN.replace('method = "simclr" }, { method = "sinsim", sinkhorn_term = "entropic"',
                  'method = "moco" }, { method = "sinsim", sinkhorn_term = "entropic"'), "method 'moco'"),
    (PLAN.replace('"@a.sinkhorn_term"', '"@z.sinkhorn_term"'), "names no earlier stage"),
    (PLAN.replace('rule = "primary"', 'rule = "vibes"'), "rule 'vibes'"),
    (PLAN.replace("train_subset = 64", "device = 'cuda'"), "command line"),
    (PLAN.replace("train_subset = 64", "colour = 1"), "not a trainer setting"),
    (PLAN.replace('{ method = "simclr" }, { method = "sinsim", sinkhorn_term = "@a',
                  '{ method = "simclr", sinkhorn_eps = 0.1 }, { method = "sinsim", sinkhorn_term = "@a'),
     "only sinsim cells"),
    (PLAN.replace("seeds = [0, 1, 2]", "seeds = [0, 0]"), "distinct"),
    (PLAN.replace('  epochs = 1\n  seeds = [0, 1, 2]', '  epochs = 1\n  seeds = [0, 1, 2]\n  settings = { lr = 0.1 }'),
     "different block settings"),
])
def test_a_malformed_plan_is_refused_with_its_reason(tmp_path, body, message):
    with pytest.raises(PlanError, match=message):
        read_plan(write_plan(tmp_path, body))


def test_a_missing_or_broken_plan_file_says_so(tmp_path):
    with pytest.raises(PlanError, match="cannot read"):
        read_plan(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("schema = [")
    with pytest.raises(PlanError, match="not valid TOML"):
        read_plan(tmp_path / "bad.toml")


# --- registration ---------------------------------------------------------------------------------

def test_registration_ties_the_plan_and_the_code(tmp_path, monkeypatch):
    path = write_plan(tmp_path)
    plan = read_plan(path)
    with pytest.raises(RegistrationError, match="holds no registration"):
        require_registered(plan, tmp_path)
    with pytest.raises(RegistrationError, match="git checkout|uncommitted"):  # a plan outside the repository
        register(plan, tmp_path, "first")
    register(plan, tmp_path, "first", check_git=False)
    fingerprint = require_registered(plan, tmp_path)
    # a changed plan: refused until it says why in its history, then registered again
    changed = read_plan(write_plan(tmp_path, PLAN.replace("probe_epochs = 5", "probe_epochs = 6")))
    with pytest.raises(RegistrationError, match="not the plan registered last"):
        require_registered(changed, tmp_path)
    with pytest.raises(RegistrationError, match="without a new \\[\\[history\\]\\] entry"):
        register(changed, tmp_path, "second", check_git=False)
    history = '\n[[history]]\ndate = "2026-12-04"\nchange = "probe epochs 6"\nreason = "a test"\n'
    changed = read_plan(write_plan(tmp_path, PLAN.replace("probe_epochs = 5", "probe_epochs = 6"), history))
    register(changed, tmp_path, "second", check_git=False)
    assert require_registered(changed, tmp_path) == fingerprint
    # changed code: refused, naming the file that changed
    files = dict(registry.read_registry(tmp_path)[-1]["code_files"])
    files["train/engine.py"] = "0" * 64
    monkeypatch.setattr(registry, "code_fingerprint", lambda: ("f" * 16, files))
    with pytest.raises(RegistrationError, match=r"train/engine.py \(changed\)"):
        require_registered(changed, tmp_path)


def test_results_the_campaign_did_not_make_are_refused(tmp_path):
    folder = tmp_path / "cells" / "digits" / "simclr-e1" / "seed0"
    assert state(folder) == "empty"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text("{}")
    with pytest.raises(ForeignCell, match="never merged by hand"):
        state(folder)
    write_campaign_record(folder, {"stage": "a"})  # started, never finished by the campaign
    with pytest.raises(ForeignCell):
        state(folder)
    write_campaign_record(folder, {"stage": "a", "finished": "now"})
    assert state(folder) == "finished"


def test_results_a_stop_cut_before_their_record_are_recorded_only_when_their_code_is_the_records(tmp_path):
    folder = tmp_path / "cells" / "digits" / "simclr-e1" / "seed0"
    write_campaign_record(folder, {"stage": "a", "code_fingerprint": "c0de", "started": "then"})
    (folder / "results.json").write_text(json.dumps({"code": {"fingerprint": "other"}}))
    assert not complete_cut_record(folder)
    with pytest.raises(ForeignCell):
        state(folder)
    (folder / "results.json").write_text(json.dumps({"code": {"fingerprint": "c0de"}}))
    assert state(folder) == "finished"
    assert "finished" not in json.loads((folder / "campaign.json").read_text())  # state() only reads
    assert complete_cut_record(folder)
    record = json.loads((folder / "campaign.json").read_text())
    assert record["recorded_after_a_stop"] and record["finished"] and record["started"] == "then"
    assert not complete_cut_record(folder)  # already finished


# --- the rules on hand-made results ---------------------------------------------------------------

def _fake(out: Path, job, linear: float, val: float, images: int = 0, right=None):
    folder = job.folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    result = {"schema": RESULTS_SCHEMA, "method": job.cell.method, "seed": job.seed, "dataset": job.cell.dataset,
              "linear": linear,
              "mlp": linear, "knn": linear, "val": {"linear": val, "mlp": val, "knn": val}, "epochs": 1,
              "budget": {"epochs": 1}}
    (folder / "results.json").write_text(json.dumps(result))
    write_campaign_record(folder, {"stage": job.stage.id, "finished": "now", "code_fingerprint": "c0de"})
    if images:
        labels = np.zeros(images, dtype=np.int32)
        np.savez(folder / "predictions.npz", test_indices=np.arange(images, dtype=np.int32), test_labels=labels,
                 test_linear=np.where(right, 0, 1).astype(np.int32), test_mlp=labels, test_knn=labels)


def _job(plan, decisions, stage, name_part, seed):
    jobs, _ = all_jobs(plan, decisions)
    return next(j for j in jobs if j.stage.id == stage and name_part in j.cell.name and j.seed == seed)


def test_choose_term_takes_the_higher_paired_validation_and_unlocks_the_next_stage(tmp_path):
    plan = read_plan(write_plan(tmp_path))
    (stage_a, a), (stage_c, c) = evaluate(tmp_path, plan)
    assert a.status == IN_PROGRESS and "0 of 6" in a.verdict and c.status == WAITING
    # divergence above entropic on validation on seed 0 by 3, below on seed 1 by 1: mean +1 for divergence
    for seed, (e, d) in enumerate([(80.0, 83.0), (81.0, 80.0)]):
        _fake(tmp_path, _job(plan, {}, "a", "entropic", seed), 70.0, e)
        _fake(tmp_path, _job(plan, {}, "a", "divergence", seed), 70.0, d)
        _fake(tmp_path, _job(plan, {}, "a", "simclr", seed), 70.0, 79.0)
    (_, a), (_, c) = evaluate(tmp_path, plan)
    assert a.status == DECIDED and a.decision["sinkhorn_term"] == "divergence"
    assert "entropic − divergence = -1.00 [" in a.verdict and "higher on 1 of 2 seeds" in a.verdict
    assert c.status == IN_PROGRESS  # its cells are known now: 2 of 6 (SimCLR seeds 0, 1 shared with stage a)
    assert "2 of 6" in c.verdict
    jobs, waiting = all_jobs(plan, a.decision and {"a": a.decision})
    assert not waiting and any("divergence-lam0.1" in j.cell.name for j in jobs if j.stage.id == "c")


def _primary_plan(tmp_path, seeds=5):
    body = TINY + f"""
[[stages]]
id = "c"
title = "the primary"
rule = "primary"
rule_text = "four criteria"
  [[stages.blocks]]
  dataset = "digits"
  epochs = 1
  seeds = {list(range(seeds))}
  cells = [ {{ method = "simclr" }}, {{ method = "sinsim", sinkhorn_term = "entropic" }} ]
"""
    return read_plan(write_plan(tmp_path, body))


@pytest.mark.parametrize("lifts,val_sign,expected", [
    ([2.0, 2.5, 3.0, 2.0, 2.5], 1.0, "**SinSim beats SimCLR**"),  # every criterion holds
    ([2.0, 2.5, 3.0, 2.0, 2.5], -1.0, "1 of the 4 criteria for 'above' fail (the validation sign)"),
    # one seed against: the t-test still passes, the one-sided sign-flip (2/32 = 0.0625) does not
    ([2.0, 2.5, 3.0, 2.5, -0.5], 1.0, "(the sign-flip test)"),
    ([-2.0, -2.5, -3.0, -2.0, -2.5], -1.0, "**SinSim is below SimCLR**"),
])
def test_the_primary_rule_needs_all_four_criteria(tmp_path, lifts, val_sign, expected):
    plan = _primary_plan(tmp_path)
    images = 4000
    for seed, lift in enumerate(lifts):
        base = np.zeros(images, dtype=bool)
        base[:2400] = True  # SimCLR: 60 %
        mine = np.zeros(images, dtype=bool)
        mine[:2400 + round(images * lift / 100)] = True  # a superset (or subset): every differing image agrees
        _fake(tmp_path, _job(plan, {}, "c", "simclr", seed), 60.0, 70.0, images, base)
        _fake(tmp_path, _job(plan, {}, "c", "sinsim", seed), 100 * mine.mean(), 70.0 + val_sign, images, mine)
    (_, outcome), = evaluate(tmp_path, plan)
    assert outcome.status == DECIDED and expected in outcome.verdict, outcome.verdict
    text = "\n".join(outcome.lines)
    assert "Exact sign-flip test over the 5 seeds" in text and "bootstrap over 5 seeds and 4,000 images" in text


def test_baselines_learn_flags_a_method_below_the_untrained_encoder(tmp_path):
    body = TINY + """
[[stages]]
id = "b"
title = "baselines"
rule = "baselines_learn"
rule_text = "above the untrained encoder"
  [[stages.blocks]]
  dataset = "digits"
  epochs = 1
  seeds = [0]
  cells = [ { method = "byol" }, { method = "vicreg" }, { method = "random-init" } ]
[[stages]]
id = "d"
title = "tables"
rule = "tables"
rule_text = "tables"
  [[stages.blocks]]
  dataset = "digits"
  epochs = 2
  seeds = [0]
  cells = [ { method = "byol" }, { method = "vicreg" }, { method = "random-init" } ]
"""
    plan = read_plan(write_plan(tmp_path, body))
    _fake(tmp_path, _job(plan, {}, "b", "byol", 0), 70.0, 72.0)
    _fake(tmp_path, _job(plan, {}, "b", "vicreg", 0), 70.0, 60.0)
    _fake(tmp_path, _job(plan, {}, "b", "random-init", 0), 65.0, 65.0)
    (_, b), (_, d) = evaluate(tmp_path, plan)
    assert b.status == DECIDED and b.decision == {"not_learning": ["vicreg"], "learning": ["byol"]}
    assert "VICReg did not rise above the untrained encoder" in b.verdict
    text = "\n".join(d.lines)
    vicreg_row = next(line for line in text.splitlines() if line.startswith("| VICReg"))
    assert "did not rise above the untrained encoder in the baselines' stage" in vicreg_row
    assert "did not rise" not in next(line for line in text.splitlines() if line.startswith("| BYOL"))


# --- the command end to end on digits ------------------------------------------------------------

@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Register, run with a budget too short for any cell, then with enough: every cell at once on 2 workers."""
    out = tmp_path_factory.mktemp("campaign")
    plan = read_plan(write_plan(out))
    unregistered = campaign("--plan", str(out / "plan.toml"), "--device", "cpu", "--dry-run")
    register(plan, out, "the test plan", check_git=False)
    cut = campaign("--plan", str(out / "plan.toml"), "--device", "cpu", "--jobs", "2", "--minutes", "0.02")
    full = campaign("--plan", str(out / "plan.toml"), "--device", "cpu", "--jobs", "2", "--minutes", "10")
    again = campaign("--plan", str(out / "plan.toml"), "--device", "cpu", "--jobs", "2", "--minutes", "10")
    return out, plan, unregistered, cut, full, again


def test_an_unregistered_plan_does_not_run(ran):
    _, _, unregistered, *_ = ran
    assert unregistered.returncode == 1 and unregistered.stderr.startswith("error: ")
    assert "holds no registration" in unregistered.stderr and "Traceback" not in unregistered.stderr


def _count(stdout: str, status: str) -> int:
    line = next(line for line in stdout.splitlines() if "cells this session:" in line)
    found = re.search(rf"(\d+) {status}\b", line)
    return int(found.group(1)) if found else 0


def test_the_deadline_stops_the_workers_and_the_next_run_finishes(ran):
    out, plan, _, cut, full, _ = ran
    assert cut.returncode == 0, cut.stderr
    assert "time is up: stopping" in cut.stdout and "report:" in cut.stdout
    assert full.returncode == 0, full.stderr
    # 6 of stage a, then stage c's 4 (2 shared with a); a cell the cut session finished, or cut between its
    # results and its record (then recorded as finished, not trained again), is not run again
    ran_before = _count(cut.stdout, "ran") + (cut.stdout + full.stdout).count("recorded as finished")
    assert _count(full.stdout, "ran") == 10 - ran_before
    assert full.stdout.index("ran stage a") < full.stdout.index("started stage c")


def test_every_cell_is_recorded_and_a_finished_one_never_reruns(ran):
    out, plan, _, _, full, again = ran
    (_, a), (_, c) = evaluate(out, plan)
    assert a.status == DECIDED and c.status == DECIDED and a.decision["sinkhorn_term"] in ("entropic", "divergence")
    jobs, _ = all_jobs(plan, {"a": a.decision})
    assert len(jobs) == 10
    fingerprint = require_registered(plan, out)
    for job in jobs:
        folder = job.folder(out)
        record = json.loads((folder / "campaign.json").read_text())
        assert record["code_fingerprint"] == fingerprint and record["stage"] == job.stage.id and "finished" in record
        assert (folder / "predictions.npz").is_file()
    assert again.returncode == 0 and "cells this session: none" in again.stdout and "started" not in again.stdout
    report = (out / "report.md").read_text()
    assert "**Progress: 12 of 12 planned cell runs finished**" in report  # SimCLR seeds 0, 1 count in both stages
    assert "## Stage c: the primary" in report and "Exact sign-flip test over the 3 seeds" in report
    sessions = [json.loads(line) for line in (out / "sessions.jsonl").read_text().splitlines()]
    assert [s["event"] for s in sessions] == ["start", "end"] * 3 and sessions[1]["deadline_hit"]


def test_a_cell_run_by_the_workers_equals_a_sequential_run(ran, tmp_path):
    """Two worker processes with one thread each give the numbers of the same cell run alone in this process
    with one thread: a cell depends on its config and seed only."""
    from argparse import Namespace

    from train.datasets import load_dataset
    from experiments.paper.campaign.runner import CampaignRunner
    from experiments.paper.runner import run_cell

    out, plan, *_ = ran
    (_, a), _ = evaluate(out, plan)
    job = next(j for j in all_jobs(plan, {"a": a.decision})[0] if j.stage.id == "c" and j.cell.method == "sinsim")
    runner = CampaignRunner(plan, tmp_path, Namespace(device="cpu", compile=False, progress_every=0.0,
                                                       download=False, data_dir=None, cache_dir=None,
                                                       num_workers=None, jobs=1))
    cfg = runner.config(job)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_dataset(job.cell.dataset, cfg.data_dir, cfg.cache_dir, cfg.image_size, download=False)
        assert run_cell(job.cell, job.seed, cfg, data, lambda m: None) == "ran"
    finally:
        torch.set_num_threads(threads)
    alone = json.loads((job.folder(tmp_path) / "results.json").read_text())
    pooled = json.loads((job.folder(out) / "results.json").read_text())
    for key in ("linear", "mlp", "knn", "final_loss", "val", "geometry"):
        assert alone[key] == pooled[key], key
    with np.load(job.folder(tmp_path) / "predictions.npz") as x, np.load(job.folder(out) / "predictions.npz") as y:
        assert all(np.array_equal(x[k], y[k]) for k in x.files)
