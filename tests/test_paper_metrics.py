"""The paper protocol's numbers against hand computations: the embedding
geometry (alignment, uniformity, silhouette), the mean and spread over seeds,
the paired comparison, Holm's correction, and reports written from small
synthetic result files (schema 1), including a folder whose runs lack what
later runs measure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from train import RESULTS_SCHEMA, Config, UnreadableResults
from train import geometry
from experiments.paper.aggregate import format_summary, holm, paired_comparison, summarize
from experiments.paper.cells import RANDOM_INIT, Cell, grid_sinsim_cell, method_cell, sinsim_cell
from experiments.paper.comparisons import build_family
from experiments.paper.report import ReportData
from experiments.paper.report import write_report
from experiments.paper.spec import PaperConfig, ProtocolMismatch, record_protocol

T_975_DF2 = 4.302652729749464  # Student t quantile, 0.975, 2 degrees of freedom (tables)


# --- geometry ---------------------------------------------------------------------------------

def test_alignment_by_hand():
    x = torch.tensor([[3.0, 0.0], [0.0, 2.0]])  # normalised: (1, 0), (0, 1)
    y = torch.tensor([[5.0, 0.0], [1.0, 0.0]])  # normalised: (1, 0), (1, 0)
    # squared distances 0 and |(0,1) - (1,0)|^2 = 2
    assert geometry.alignment(x, y) == pytest.approx((0 + 2) / 2)
    assert geometry.alignment(x, y, alpha=1) == pytest.approx((0 + math.sqrt(2)) / 2)
    assert geometry.alignment(x, x) == 0


def test_uniformity_by_hand():
    x = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # pairs: |(1,0)-(0,1)|^2 = 2, |(1,0)-(-1,0)|^2 = 4, |(0,1)-(-1,0)|^2 = 2
    expected = math.log((math.exp(-2 * 2) + math.exp(-2 * 4) + math.exp(-2 * 2)) / 3)
    assert geometry.uniformity(x) == pytest.approx(expected)
    # two antipodal points: the lowest possible value, -t * 4 = -8; one point repeated: collapse, 0
    assert geometry.uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-8.0)
    assert geometry.uniformity(torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        geometry.uniformity(torch.ones(1, 3))


def test_silhouette_by_hand():
    a1, a2, b1, b2 = (1.0, 0.0), (0.6, 0.8), (-1.0, 0.0), (-0.6, 0.8)  # already unit vectors
    labels = [0, 0, 1, 1]
    d = math.dist

    def s(own, other_class):
        a = d(*own)
        b = sum(d(own[0], o) for o in other_class) / len(other_class)
        return (b - a) / max(a, b)

    expected = (s((a1, a2), (b1, b2)) + s((a2, a1), (b1, b2)) + s((b1, b2), (a1, a2)) + s((b2, b1), (a1, a2))) / 4
    x = torch.tensor([a1, a2, b1, b2]) * torch.tensor([[2.0], [1.0], [3.0], [0.5]])  # scale must not matter
    assert geometry.silhouette(x, labels) == pytest.approx(expected)
    with pytest.raises(ValueError):
        geometry.silhouette(x, [0, 0, 0, 0])


# --- mean, spread and paired comparison -------------------------------------------------------

def test_mean_and_sample_std_over_seeds_by_hand():
    s = summarize({0: 90.0, 1: 92.0, 2: 97.0, 3: None})
    assert s.n == 3 and s.seeds == (0, 1, 2)
    assert s.mean == pytest.approx(93.0)
    # ddof = 1: sqrt(((90-93)^2 + (92-93)^2 + (97-93)^2) / (3 - 1)) = sqrt(13)
    assert s.std == pytest.approx(math.sqrt(13))
    assert format_summary(s) == "93.00 ± 3.61 (n=3)"
    assert format_summary(s, of=5) == "93.00 ± 3.61 (n=3 of 5)"
    one = summarize({4: 88.5})
    assert one.std is None and format_summary(one) == "88.50 (n=1)"
    assert summarize({}) is None and format_summary(None) == "not run"


def test_paired_comparison_by_hand():
    a = {0: 90.0, 1: 92.0, 2: 97.0, 7: 50.0}  # seed 7 has no partner: left out
    b = {0: 89.0, 1: 92.0, 2: 95.0}
    c = paired_comparison(a, b)
    # differences 1, 0, 2: mean 1, sd 1, standard error 1/sqrt(3)
    assert c.seeds == (0, 1, 2) and c.mean == pytest.approx(1.0) and c.sd == pytest.approx(1.0)
    half = T_975_DF2 / math.sqrt(3)
    assert (c.low, c.high) == (pytest.approx(1 - half), pytest.approx(1 + half))
    t = math.sqrt(3)  # t statistic; for 2 degrees of freedom P(|T| > t) = 1 - t / sqrt(2 + t^2)
    assert c.p == pytest.approx(1 - t / math.sqrt(2 + t * t))
    assert c.verdict == "cannot tell apart"

    clear = paired_comparison({0: 95.0, 1: 96.0, 2: 97.0}, {0: 90.0, 1: 90.5, 2: 91.0})
    assert clear.verdict == "higher" and clear.low > 0
    assert paired_comparison({0: 1.0, 1: 2.0, 2: 3.0}, {0: 5.0, 1: 5.5, 2: 7.5}).verdict == "lower"


def test_paired_comparison_does_not_overclaim():
    # two seeds that differ by the same test image: zero spread is not a win
    same = paired_comparison({0: 83.2222, 1: 83.3333}, {0: 83.0, 1: 83.1111})
    assert same.sd == 0 and not same.decided and "no spread" in same.verdict
    # two seeds with a clear-looking gap still get no verdict (one degree of freedom)
    two = paired_comparison({0: 95.0, 1: 96.0}, {0: 90.0, 1: 90.5})
    assert not two.decided and "3" in two.verdict
    one = paired_comparison({0: 95.0}, {0: 90.0})
    assert one.n == 1 and not one.decided
    assert paired_comparison({0: 1.0}, {1: 1.0}) is None
    assert paired_comparison({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}).verdict == "identical on every seed"


# --- a report from fake result files ------------------------------------------------------------

def fake_result(method, seed, linear, mlp=50.0, knn=40.0, dataset="cifar10", ips=1000.0):
    return {
        "schema": RESULTS_SCHEMA, "method": method, "dataset": dataset, "dataset_label": f"{dataset} (JPEG copy)",
        "linear": linear, "mlp": mlp, "knn": knn, "knn_k": 200, "epochs": 50, "seed": seed,
        "pretrain_seconds": 120.0, "wall_seconds": 150.0, "epoch_seconds_median": 2.4, "images_per_second": ips,
        "device": "NVIDIA H100 80GB HBM3", "data_source": "/data/cifar10-jpeg.tar.gz",
        "notes": ["cifar10 read from the lossy JPEG copy: report as 'cifar10 (JPEG copy)'"],
        "budget": {"epochs": 50, "batch_size": 512, "image_size": 32, "train_subset": None,
                   "pretrain_images": 50000, "steps": 4850, "probe_train_images": 50000, "probe_test_images": 10000},
    }


def write_fake(out: Path, cell: Cell, seed: int, result: dict) -> None:
    folder = cell.path(out, seed)
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(result))


def test_report_from_fake_results_aggregates_by_hand_and_shows_unrun_cells(tmp_path):
    pcfg = PaperConfig(base=Config(), out=str(tmp_path), datasets=["mnist", "cifar10"], seeds=[0, 1, 2],
                       sweep_datasets=[])
    record_protocol(pcfg)
    for seed, (linear, sin_linear) in enumerate([(90.0, 89.0), (92.0, 92.0), (97.0, 95.0)]):
        write_fake(tmp_path, method_cell("cifar10", "simclr"), seed, fake_result("simclr", seed, linear))
        write_fake(tmp_path, grid_sinsim_cell(pcfg, "cifar10"), seed,
                   fake_result("sinsim", seed, sin_linear, ips=500.0))
    write_fake(tmp_path, method_cell("cifar10", "byol"), 0, fake_result("byol", 0, 80.0))
    (method_cell("cifar10", "vicreg").path(tmp_path, 1)).mkdir(parents=True)
    (method_cell("cifar10", "vicreg").path(tmp_path, 1) / "failed.json").write_text(json.dumps({"error": "NaN"}))

    report = write_report(tmp_path, log=lambda m: None).read_text()
    table1 = report.split("## Table I")[1].split("## Table II")[0]
    rows = {line.split(" | ")[0].strip("| ").split("<br>")[0]: line for line in table1.splitlines() if line.startswith("| ")}
    # CIFAR-10 column: the hand-computed mean and sample std of 90, 92, 97
    assert "93.00 ± 3.61 (n=3)" in rows["SimCLR"]
    # SinSim: 89, 92, 95 -> mean 92, std 3
    assert "92.00 ± 3.00 (n=3)" in rows["SinSim"]
    assert "80.00 (n=1 of 3)" in rows["BYOL"]
    assert "failed (seed 1)" in rows["VICReg"]
    # MNIST (asked for, nothing ran), CIFAR-100 and STL-10 (not asked for): "not run", never a number
    for name in ("SimCLR", "BYOL", "Barlow Twins", "SinSim"):
        cells = rows[name].strip("|").split(" | ")
        assert cells[1].strip() == "not run" and cells[3].strip() == "not run" and cells[4].strip() == "not run"
    assert "CIFAR-10 (JPEG copy)<br><sub>50 ep, batch 512, 50,000 img, 32 px; probes 50,000 / 10,000</sub>" in table1
    assert report.index("**Budget and limits (read first).**") < report.index("## Verdict")
    assert "XX.X" not in report
    # the verdict: the paired difference of 89/92/95 vs 90/92/97 is -1 +- ...: not a win
    assert "**The primary comparison does not show SinSim differing from SimCLR.**" in report
    assert ("− SimCLR, linear probe top-1 on the test split of CIFAR-10 (JPEG copy), paired over seeds 0, 1, 2 "
            "(two-sided paired t-test at level 0.05, not corrected: the one primary comparison): -1.00 points") in report
    assert "not measured" in report  # these fake records carry no validation scores
    # the cost of the Sinkhorn term: 500 vs 1000 img/s
    assert "a SinSim step takes 2.00x the time of a SimCLR step (500 vs 1,000 img/s)" in report
    assert "NVIDIA H100 80GB HBM3: 7 cell runs" in report


# --- Holm's correction, the family, and the words for collapsed and suspect runs -----------------

def test_holm_by_hand():
    # Holm (1979): sorted p = 0.005, 0.01, 0.03, 0.04 against 0.05/4, 0.05/3, 0.05/2, 0.05/1:
    # 0.005 <= 0.0125 reject, 0.01 <= 0.0167 reject, 0.03 > 0.025 stop: two rejections.
    # Adjusted: 4 * 0.005 = 0.02; max(0.02, 3 * 0.01) = 0.03; max(0.03, 2 * 0.03) = 0.06; max(0.06, 1 * 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [q <= 0.05 for q in holm([0.01, 0.04, 0.03, 0.005])] == [True, False, False, True]
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == [0.02] and holm([]) == []
    with pytest.raises(ValueError):
        holm([1.5])


def rich_result(method, seed, linear, val, knn, uniformity, rank, commit="b" * 40, offset=None):
    """``uniformity`` and ``rank`` are the centred measures; with ``offset`` (the mean offset ratio) the
    uncentred uniformity reads -0.01 (a common offset crowds the normalised features), else the centred value."""
    r = fake_result(method, seed, linear, mlp=linear + 2, knn=knn)
    r["val"] = {"linear": val, "mlp": val, "knn": val}
    r["geometry"] = {"alignment": 0.1, "uniformity": uniformity if offset is None else -0.01, "effective_rank": rank,
                     "silhouette": 0.0, "uniformity_centred": uniformity, "effective_rank_centred": rank,
                     "mean_offset_ratio": 0.3 if offset is None else offset, "feature_dim": 512, "points": 2000,
                     "split": "validation", "split_images": 5000, "subsample_seed": 0,
                     "alignment_views": "SimCLR augmentation recipe, generator seed 0"}
    r["code"] = {"commit": commit, "short": commit[:7], "dirty": False, "diff_sha256": None}
    return r


def test_report_family_collapse_suspects_and_mixed_code(tmp_path):
    base = Config(params=dict(sinkhorn_term="entropic", sinkhorn_weight=0.1, sinkhorn_eps=0.05, sinkhorn_on="features"))
    pcfg = PaperConfig(base=base, out=str(tmp_path), datasets=["cifar10"], methods=["simclr", "byol", "sinsim"],
                       seeds=[0, 1, 2], sweep_datasets=["cifar10"], sweeps=["lambda"], lambdas=[0.0, 0.1],
                       sweep_on=["features"], sweep_terms=["entropic", "divergence"])
    record_protocol(pcfg)
    simclr, byol, floor = method_cell("cifar10", "simclr"), method_cell("cifar10", "byol"), Cell("cifar10", RANDOM_INIT,
                                                                                                   RANDOM_INIT)
    entropic, divergence = grid_sinsim_cell(pcfg, "cifar10"), sinsim_cell("cifar10", 0.1, 0.05, "features", "divergence")
    table = {  # cell: per seed (test linear, validation linear, kNN, uniformity, effective rank)
        simclr: [(60.0, 61.0, 50.0, -1.10, 120.0), (61.0, 62.0, 51.0, -1.05, 118.0), (62.5, 62.5, 50.5, -1.12, 121.0)],
        entropic: [(59.0, 60.0, 50.5, -0.02, 40.0), (60.5, 60.5, 51.7, -0.03, 41.0), (61.0, 61.5, 51.3, -0.01, 39.0)],
        divergence: [(61.0, 64.0, 52.0, -1.30, 130.0), (62.5, 65.5, 53.5, -1.28, 131.0), (63.4, 66.0, 52.2, -1.31, 129.0)],
        byol: [(40.0, 40.0, 29.0, -0.90, 60.0), (41.0, 41.0, 33.0, -0.90, 60.0), (42.0, 42.0, 33.5, -0.90, 60.0)],
        floor: [(37.0, 37.0, 32.0, -0.05, 10.0), (38.0, 38.0, 32.5, -0.05, 10.0), (37.5, 37.5, 33.0, -0.05, 10.0)],
    }
    for cell, rows in table.items():
        for seed, (linear, val, knn, u, rank) in enumerate(rows):
            commit = "a" * 40 if cell == byol else "b" * 40
            offset = 25.0 if cell == divergence else None  # spread once centred, but far off the origin
            write_fake(tmp_path, cell, seed, rich_result(cell.method, seed, linear, val, knn, u, rank, commit, offset))

    data = ReportData(tmp_path, PaperConfig.from_saved(json.loads((tmp_path / "paper.json").read_text()),
                                                       str(tmp_path)))
    family = build_family(data)
    # primary: the grid's SinSim (entropic on features) - SimCLR, linear, test, alone
    assert family.primary.a == entropic and family.primary.metric == "linear" and family.primary.primary
    # the family by hand: grid SinSim - SimCLR on MLP and kNN; divergence - SimCLR on linear and kNN;
    # divergence - entropic on linear and kNN (the chosen-on-validation cell, divergence, is already in)
    keys = sorted((t.a.name, t.b.name, t.metric) for t in family)
    assert keys == sorted([(entropic.name, "simclr", "mlp"), (entropic.name, "simclr", "knn"),
                           (divergence.name, "simclr", "linear"), (divergence.name, "simclr", "knn"),
                           (divergence.name, entropic.name, "linear"), (divergence.name, entropic.name, "knn")])
    raw = [paired_comparison(data.records(t.a).scores(t.metric), data.records(t.b).scores(t.metric)).p for t in family]
    m = len(raw)
    order = sorted(range(m), key=lambda i: raw[i])
    expected, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):  # Holm's adjusted p written out again
        running = max(running, min(1.0, (m - rank) * raw[i]))
        expected[i] = running
    assert [t.adjusted for t in family] == pytest.approx(expected) and {t.family_size for t in family} == {6}

    report = write_report(tmp_path, log=lambda m: None).read_text()
    assert "(m = 6 with 3 or more paired seeds)" in report
    assert "Holm-adjusted p = " in report or "None of them is resolved" in report
    # the entropic cell's features sit at the untrained floor (uniformity within 0.1 of -0.05): said in words
    assert ("SinSim (entropic OT_ε, λ = 0.1, ε = 0.05, on features): its features are collapsed, near the untrained "
            "floor (centred uniformity -0.020 vs the untrained encoder's -0.050)") in report
    assert "divergence S_ε, λ = 0.1, ε = 0.05, on features): its features are collapsed" not in report
    # the divergence's uncentred uniformity (-0.01) sits at the floor, its centred one does not: an offset
    assert "a common offset, not collapse: uncentred uniformity -0.010 is near the untrained floor, the centred " \
           "one is -1.297, and the mean feature is 25.0x the features' RMS spread around it" in report
    # BYOL's kNN is below the untrained encoder's on seed 0 (29.0 < 32.0) only: suspect
    assert "BYOL: kNN below the untrained encoder's on seed(s) 0: **suspect**" in report
    for table in ("## Table I", "## Table II", "## kNN", "## Validation"):  # flagged in every table
        assert "(suspect: kNN below the untrained encoder)" in report.split(table)[1].split("\n## ")[0]
    # validation favours the divergence (65.17 vs 60.67 and SimCLR's 61.83), and says it chose on validation only
    assert "On validation, **divergence on features** has the highest mean linear accuracy" in report
    # ... and by how much, paired by seed: 64 - 60, 65.5 - 60.5, 66 - 61.5 -> +4.50 on every seed
    assert "paired by seed it is +4.50 [" in report and "(validation linear; higher on 3 of 3 seeds)" in report
    # every member of the Holm family is printed, resolved or not (the MLP one included)
    listing = report.split("## The comparisons")[1].split("\n## ")[0]
    for t in family:
        assert t.what() in listing
    assert listing.count("| family |") + listing.count("| not testable |") == 6 and "| primary |" in listing
    assert "SinSim (divergence S_ε, λ = 0.1, ε = 0.05, on features) has the highest mean validation linear" in report
    # two code states: said up front and listed
    assert "**Runs of 2 different code states are mixed**" in report and "**Runs of different code are mixed.**" in report
    assert "aaaaaaa: cifar10/byol/seed0" in report


def test_a_folder_whose_runs_lack_later_measures_reports_what_it_has(tmp_path):
    """A folder of runs without a validation split, the centred geometry or a recorded commit, whose primary
    comparison was declared after them (paper.json says so, with notes): the report prints its numbers,
    "not measured" where a measure is null, the notes up front, and when the comparison was declared."""
    pcfg = PaperConfig(base=Config(val_fraction=0.0), out=str(tmp_path), datasets=["cifar10"],
                       methods=["simclr", "sinsim"], seeds=[0, 1, 2], sweep_datasets=[])
    record_protocol(pcfg)
    saved = json.loads((tmp_path / "paper.json").read_text())
    note = "These runs predate the validation split."
    saved.update(primary_declared_before_runs=False, notes=[note])
    (tmp_path / "paper.json").write_text(json.dumps(saved))
    linear = {"simclr": (60.7, 61.0, 60.85), "sinsim": (60.1, 60.4, 60.37)}
    for cell in (method_cell("cifar10", "simclr"), grid_sinsim_cell(pcfg, "cifar10")):
        for seed, value in enumerate(linear[cell.method]):
            r = fake_result(cell.method, seed, value)
            r.update(val=None, code=None, geometry={
                "alignment": 0.2, "uniformity": -1.0 - seed / 10, "effective_rank": None, "silhouette": 0.01,
                "uniformity_centred": None, "effective_rank_centred": None, "mean_offset_ratio": None,
                "feature_dim": 512, "points": 2000, "split": "test", "split_images": 10000, "subsample_seed": 0,
                "features": "frozen encoder features h (512-d)", "alignment_views": "SimCLR, seed 0"})
            r["budget"]["val_images"] = 0
            write_fake(tmp_path, cell, seed, r)
    report = write_report(tmp_path, log=lambda m: None).read_text()
    assert f"**Note.** {note}" in report.split("## Verdict")[0]
    table1 = report.split("## Table I")[1].split("## Table II")[0]
    # 60.7, 61.0, 60.85: mean 60.85, sample std 0.15; 60.1, 60.4, 60.37: mean 60.29, std 0.1652
    assert "60.85 ± 0.15 (n=3)" in table1 and "60.29 ± 0.17 (n=3)" in table1
    assert report.split("## Validation")[1].split("\n## ")[0].count("not measured") >= 2
    differences = [a - b for a, b in zip(linear["sinsim"], linear["simclr"])]  # -0.6, -0.6, -0.48
    mean = sum(differences) / 3
    assert "Primary comparison (declared by the protocol after these runs were made: see the notes above)" in report
    assert f"{mean:+.2f} points" in report
    geometry_table = report.split("## Figure 1")[1]
    assert "-1.100 ± 0.100 (n=3)" in geometry_table  # uncentred uniformity: -1.0, -1.1, -1.2
    assert "not measured" in geometry_table  # the centred measures are null
    # the t-test puts SinSim below; with no validation split there is nothing to confirm its sign: no claim
    assert "**No claim**" in report and "no validation accuracy to check its sign on" in report


def test_results_and_paper_json_of_another_schema_are_refused(tmp_path):
    pcfg = PaperConfig(base=Config(), out=str(tmp_path), datasets=["cifar10"], seeds=[0], sweep_datasets=[])
    record_protocol(pcfg)
    r = fake_result("simclr", 0, 60.0)
    del r["schema"]
    write_fake(tmp_path, method_cell("cifar10", "simclr"), 0, r)
    with pytest.raises(UnreadableResults, match="results schema None; this code reads schema 1 only"):
        write_report(tmp_path, log=lambda m: None)
    saved = json.loads((tmp_path / "paper.json").read_text())
    (tmp_path / "paper.json").write_text(json.dumps({**saved, "schema": 0}))
    with pytest.raises(ProtocolMismatch, match="has schema 0; this code reads paper.json schema 1 only"):
        write_report(tmp_path, log=lambda m: None)


# --- the probes' fixed labelled subset (--probe-train-subset / --probe-test-subset) ------------

def test_labelled_subset_is_fixed_and_leaves_pretraining_alone():
    from train.datasets import load_dataset

    data = load_dataset("digits", None, "/tmp", 8)
    a = data.with_labelled_subset(100, 50)
    b = data.with_pretrain_subset(64, seed=5).with_labelled_subset(100, 50)  # another run seed: same probe images
    assert len(a.train_images) == 100 and len(a.test_images) == 50 and len(a.pretrain) == len(data.pretrain)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert len(b.pretrain) == 64
    assert data.with_labelled_subset(None, 10_000) is not data and len(data.with_labelled_subset(None, None).test_images) == 450


# --- the primary comparison's headline needs more than a p-value ---------------------------------

def _primary_fixture(tmp_path, val_sign: float, images: int = 0, swapped: int = 0):
    """SimCLR and the grid's SinSim over seeds 0-2, SinSim ahead on test by 2.0, 2.5 and 3.0 points (a paired
    t-test at 0.05 passes: [+1.26, +3.74]); validation differences of sign ``val_sign``. With ``images``:
    per-image predictions giving those accuracies (SimCLR right on the first 60 %, SinSim on a block shifted
    by ``swapped`` images, so the two disagree on 2 * ``swapped`` images plus the lift)."""
    pcfg = PaperConfig(base=Config(), out=str(tmp_path), datasets=["cifar10"], methods=["simclr", "sinsim"],
                       seeds=[0, 1, 2], sweep_datasets=[])
    record_protocol(pcfg)
    for cell in (method_cell("cifar10", "simclr"), grid_sinsim_cell(pcfg, "cifar10")):
        for seed in range(3):
            lift = (2.0 + 0.5 * seed) if cell.method == "sinsim" else 0.0
            linear = 60.0 + lift
            folder = cell.path(tmp_path, seed)
            folder.mkdir(parents=True)
            if images:
                right = np.zeros(images, dtype=bool)
                first = swapped if cell.method == "sinsim" else 0
                right[first:first + round(images * linear / 100)] = True
                labels = np.zeros(images, dtype=np.int32)
                np.savez(folder / "predictions.npz", test_indices=np.arange(images, dtype=np.int32),
                         test_labels=labels, test_linear=np.where(right, 0, 1).astype(np.int32), test_mlp=labels,
                         test_knn=labels)
                assert 100 * right.mean() == pytest.approx(linear)
            r = fake_result(cell.method, seed, linear)
            r["val"] = {"linear": 60.0 + (val_sign * (1 + seed) if cell.method == "sinsim" else 0.0),
                        "mlp": 50.0, "knn": 40.0}
            (folder / "results.json").write_text(json.dumps(r))
    report = write_report(tmp_path, log=lambda m: None).read_text()
    return report.split("## Verdict")[1].split("\n\n")[1]


def test_a_significant_test_difference_with_validation_the_other_way_makes_no_claim(tmp_path):
    head = _primary_fixture(tmp_path, val_sign=-1.0)
    assert head.startswith("**No claim**: the paired t-test over seeds puts SinSim above SimCLR (+2.50 [+1.26, +3.74]")
    assert "the validation split points the other way (-2.00 [" in head
    assert "no per-image predictions" in head and "beats" not in head


def test_without_per_image_predictions_there_is_no_claim(tmp_path):
    head = _primary_fixture(tmp_path, val_sign=1.0)
    assert head.startswith("**No claim**") and "validation" not in head
    assert "no per-image predictions, so the test images' own sampling error is in no interval" in head


def test_a_claim_needs_the_interval_over_seeds_and_images_to_exclude_zero(tmp_path):
    # 2,000 images, SinSim right on a superset of SimCLR's: every image that differs favours it
    head = _primary_fixture(tmp_path / "clear", val_sign=1.0, images=2000)
    assert head.startswith("**SinSim beats SimCLR in the primary comparison**")
    assert "bootstrap over 3 seeds and 2,000 images" in head
    # 200 images, the two disagree on 20 more images each way: the seeds agree, the images do not settle it
    head = _primary_fixture(tmp_path / "noisy", val_sign=1.0, images=200, swapped=20)
    assert head.startswith("**No claim**: the paired t-test over seeds puts SinSim above SimCLR")
    assert "counting the test images' sampling error, the interval includes 0 (+2.50 [" in head
