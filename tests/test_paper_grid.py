"""``--protocol paper`` end to end on digits with a tiny budget: every cell,
the report, the figures, a rerun that recomputes nothing, ``--report-only``,
growing the selection, refusing other settings, and lambda = 0 being SimCLR."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import matplotlib.image
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

from train import build_trainer, load_dataset, run, run_config
from train.augment import view_specs
from experiments.paper import figures
from experiments.paper.report import write_report

# 8 cells per seed: 5 methods + the untrained floor (the grid's SinSim: the
# entropic term on features), and the sweeps' lambda 0.5 and eps 0.5 with the
# divergence on the projections (lambda 0 is the SimCLR cell).
ARGS = ["--protocol", "paper", "--datasets", "digits", "--seeds", "0", "1", "--epochs", "1", "--train-subset", "32",
        "--batch-size", "32", "--image-size", "8", "--probe-epochs", "2", "--probe-train-subset", "200",
        "--probe-test-subset", "100", "--geometry-points", "100", "--sinkhorn-weight", "0.5",
        "--sinkhorn-term", "entropic", "--sweep-datasets", "digits", "--lambdas", "0", "0.5", "--epsilons", "0.5",
        "--sweep-on", "projection", "--sweep-terms", "divergence", "--num-workers", "1"]
SINSIM = "sinsim-entropic-lam0.5-eps0.05-features"
CELLS = ["simclr", "byol", "vicreg", "barlow", SINSIM, "random-init", "sinsim-divergence-lam0.5-eps0.05-projection",
         "sinsim-divergence-lam0.5-eps0.5-projection"]
FIGURE_CELLS = ("simclr", SINSIM, "vicreg")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster, and far faster when another process
    holds a core (OpenMP workers busy-wait: 3x on the 2-core test machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("paper") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "umap_module", lambda: None)  # as without umap-learn (and no numba compile here)
        code = run.main(ARGS + ["--out", str(out)])
    assert code == 0
    return out


def results_files(out: Path):
    return sorted(out.glob("cells/**/results.json")) + sorted(out.glob("cells/**/embedding.npz"))


def test_every_cell_ran_once_and_the_report_has_the_tables(paper_run):
    out = paper_run
    for cell in CELLS:
        for seed in (0, 1):
            folder = out / "cells" / "digits" / cell / f"seed{seed}"
            result = json.loads((folder / "results.json").read_text())
            assert 30 < result["linear"] <= 100 and result["seed"] == seed
            assert result["budget"]["probe_train_images"] == 200 and result["budget"]["probe_test_images"] == 100
            assert result["budget"]["val_images"] == 135 and 0 <= result["val"]["linear"] <= 100
            g = result["geometry"]  # every run, every variant: its geometry, measured once
            assert g["points"] == 100 and -8 <= g["uniformity"] <= 0 <= g["alignment"] <= 4
            assert 1 <= g["effective_rank"] <= 100 and g["feature_dim"] == 512
            # measured on validation images (135 here), centred too: a common offset is not collapse
            assert g["split"] == "validation" and g["split_images"] == 135
            assert -8 <= g["uniformity_centred"] <= 0 and 1 <= g["effective_rank_centred"] <= 100
            assert g["mean_offset_ratio"] >= 0
            assert (folder / "predictions.npz").is_file()
            assert (folder / "embedding.npz").is_file() == (cell in FIGURE_CELLS)
            assert not (folder / "embedding.json").exists()
    assert "sinkhorn_weight" not in json.loads((out / "cells/digits/byol/seed0/config.json").read_text())
    for cell, term, on in ((SINSIM, "entropic", "features"), (CELLS[-1], "divergence", "projection")):
        config = json.loads((out / f"cells/digits/{cell}/seed0/config.json").read_text())
        assert (config["sinkhorn_term"], config["sinkhorn_on"]) == (term, on)
    log = (out / "run.log").read_text()
    assert len(re.findall(r" ran digits \S+ seed \d", log)) == 2 * len(CELLS) and "skipped" not in log

    report = (out / "report.md").read_text()
    table1 = report.split("## Table I")[1].split("## Table II")[0]
    head = "digits (scikit-learn 8x8)<br><sub>1 ep, batch 32, 32 img, 8 px; probes 200 / 135 val / 100</sub>"
    assert head in table1 and "## Table II: 2-layer MLP probe" in report
    simclr = next(line for line in table1.splitlines() if line.startswith("| SimCLR |"))
    cells = [c.strip() for c in simclr.strip("|").split("|")]
    assert cells[1:5] == ["not run"] * 4  # MNIST, CIFAR-10, CIFAR-100, STL-10
    linear = [json.loads((out / f"cells/digits/simclr/seed{s}/results.json").read_text())["linear"] for s in (0, 1)]
    assert cells[5].startswith(f"{sum(linear) / 2:.2f} ± ") and cells[5].endswith("(n=2)")
    assert report.split("\n")[2].startswith("**Budget and limits (read first).**")  # the limits come first
    assert "- digits (scikit-learn 8x8): 1 epoch, batch 32, 32 pretraining images of 8 px; probes on 200 train / " \
           "135 validation / 100 test images; seeds 0, 1 asked, 16 of 16 cell runs finished." in report
    assert "any verdict at all: fewer than 3 seeds" in report
    for needle in ("## Verdict", "Primary comparison (declared by the protocol before the runs): SinSim (entropic OT_ε, λ = 0.5, "
                   "ε = 0.05, on features) − SimCLR, linear probe top-1 on the test split of digits",
                   "Holm-corrected", "## The Sinkhorn term and where it acts", "the paper's literal",
                   "## Cost: throughput and wall time", "img/s", "## Figure 1 and the geometry of every run",
                   "effective rank ↑", "figures/fig1-embeddings-digits.png", "figures/fig2-lambda-digits.png",
                   "figures/fig3-eps-digits.png", "UMAP not drawn: umap-learn is not installed",
                   "## Validation: linear probe", "Chosen on the validation split", "sklearn.datasets.load_digits",
                   "seeds asked", "16 of 16", "## Code that made the runs", "## Hardware and sessions", "cpu (",
                   "random init (no pretraining)", "divergence S_ε"):
        assert needle in report, needle
    assert "XX.X" not in report and "— not run" not in report.split("## Table I")[1].split("## Table II")[0]


def test_figures_are_pngs_of_the_documented_size(paper_run):
    fig1 = matplotlib.image.imread(paper_run / "figures" / "fig1-embeddings-digits.png")
    assert fig1.shape == (500, 1200, 4)  # 3 panels of 4 in + a 1 in header, one row (no UMAP), 100 dpi
    for name in ("fig2-lambda-digits.png", "fig3-eps-digits.png"):
        img = matplotlib.image.imread(paper_run / "figures" / name)
        assert img.shape == (800, 1350, 4)  # 13.5 x 8 in at 100 dpi: accuracy and geometry rows
        assert img[..., :3].std() > 0.05  # something is drawn


def test_rerun_recomputes_nothing(paper_run, capsys):
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in results_files(paper_run)}
    log_before = (paper_run / "run.log").read_text()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "umap_module", lambda: None)
        assert run.main(ARGS + ["--out", str(paper_run)]) == 0
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in results_files(paper_run)}
    assert after == before and len(before) == 2 * len(CELLS) + 2 * len(FIGURE_CELLS)
    new = (paper_run / "run.log").read_text()[len(log_before):]
    assert len(re.findall(r"skipped digits \S+ seed \d: finished earlier", new)) == 2 * len(CELLS)
    assert " ran " not in new and "resumed" not in new and "epoch 1/1" not in capsys.readouterr().out


def test_report_only_trains_nothing_and_rewrites_the_report(paper_run, capsys):
    report = paper_run / "report.md"
    old = report.read_text()
    report.unlink()
    shutil.rmtree(paper_run / "figures")
    before = {p: p.stat().st_mtime_ns for p in results_files(paper_run)}
    log = (paper_run / "run.log").read_text()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "umap_module", lambda: None)
        assert run.main(["--protocol", "paper", "--report-only", "--out", str(paper_run)]) == 0
    assert {p: p.stat().st_mtime_ns for p in results_files(paper_run)} == before
    assert (paper_run / "run.log").read_text() == log
    assert "epoch" not in capsys.readouterr().out
    drop_date = lambda text: re.sub(r"Written .*? UTC", "", text)  # noqa: E731
    assert drop_date(report.read_text()) == drop_date(old)
    assert (paper_run / "figures" / "fig1-embeddings-digits.png").is_file()


def test_other_settings_in_the_same_folder_are_refused(paper_run, capsys):
    args = list(ARGS)
    args[args.index("--epochs") + 1] = "2"
    assert run.main(args + ["--out", str(paper_run)]) == 1
    assert "--epochs: 1 there, 2 now" in capsys.readouterr().err


def test_a_new_seed_grows_the_tables(paper_run):
    args = ARGS[:ARGS.index("--seeds")] + ["--seeds", "2", "--methods", "simclr", "--sweep-datasets"] + \
        ARGS[ARGS.index("--epochs"):ARGS.index("--sweep-datasets")] + ["--num-workers", "1"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "umap_module", lambda: None)
        assert run.main(args + ["--out", str(paper_run)]) == 0
    saved = json.loads((paper_run / "paper.json").read_text())["selection"]
    assert saved["seeds"] == [0, 1, 2] and saved["sweep_datasets"] == ["digits"]  # the union of what was asked
    table1 = (paper_run / "report.md").read_text().split("## Table I")[1].split("## Table II")[0]
    assert re.search(r"\| SimCLR \|.*\(n=3\) \|", table1)
    assert re.search(r"\| BYOL \|.*\(n=2 of 3\) \|", table1)


def test_umap_row_when_umap_learn_is_installed(paper_run, tmp_path):
    if figures.umap_module() is None:
        pytest.skip("umap-learn is not installed (optional: pip install umap-learn); the t-SNE-only path is "
                    "tested above")
    out = tmp_path / "copy"
    shutil.copytree(paper_run, out, ignore=shutil.ignore_patterns("checkpoint.pt", "*.png"))
    report = write_report(out, log=lambda m: None).read_text()
    assert matplotlib.image.imread(out / "figures" / "fig1-embeddings-digits.png").shape == (900, 1200, 4)
    assert "UMAP not drawn" not in report


def test_lambda_zero_trains_exactly_simclr():
    """Why the sweeps reuse the SimCLR cell for lambda = 0."""
    settings = dict(image_size=8, batch_size=8, epochs=1, seed=3, device="cpu")
    data = load_dataset("digits", None, "/tmp", 8)
    images = data.pretrain[:16]  # two steps
    mean, std = data.channel_stats()
    states = []
    for cfg in (run_config("simclr", **settings), run_config("sinsim", sinkhorn_weight=0.0, **settings)):
        torch.manual_seed(cfg.seed)
        trainer = build_trainer(cfg, images, data.channels, mean, std)
        trainer.fit(0, lambda stats: None)
        states.append({k: v for k, v in trainer.method.state_dict().items()})
    assert states[0].keys() == states[1].keys()
    for name, tensor in states[0].items():
        assert torch.equal(tensor, states[1][name]), name
    assert all(view_specs("sinsim", size) == view_specs("simclr", size) for size in (8, 96))


def test_a_dataset_that_cannot_be_loaded_is_reported_not_run(tmp_path, capsys):
    out = tmp_path / "out"
    code = run.main(["--protocol", "paper", "--datasets", "stl10", "--seeds", "0", "--no-download",
                     "--data-dir", str(tmp_path / "nowhere"), "--out", str(out)])
    assert code == 1
    assert "not run: stl10: STL-10 not found" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    table1 = report.split("## Table I")[1].split("## Table II")[0]
    assert table1.count("not run (dataset not found)") == 6  # 5 methods and the floor, STL-10 column
    assert "**The primary comparison has not run**" in report and "### STL-10 — not run" in report
    assert not list(out.glob("cells/**/results.json"))
