"""The command line end to end on digits (tiny budgets), its errors, and the
NaN guard."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

from train import protocol
from train.config import parse_config
from train.methods import METHODS
from train.predictions import correct, read_predictions
from train.run import main
from train.stopping import RunStopped

TINY = ["--dataset", "digits", "--train-subset", "256", "--batch-size", "64", "--image-size", "8", "--probe-epochs", "10"]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "train" / "run.py"), *args],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def test_digits_single_method_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = run_cli(*TINY, "--method", "sinsim", "--epochs", "2", "--sinkhorn-weight", "0.5", "--knn-every", "1",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    result = json.loads((out / "results.json").read_text())
    for probe in ("linear", "mlp", "knn"):
        assert 60 < result[probe] <= 100, result  # chance is 10%
    assert result["epochs"] == 2 and result["budget"]["pretrain_images"] == 256 and result["budget"]["steps"] == 8
    # every probed image's prediction is kept, and gives back the recorded accuracies
    arrays = read_predictions(out)
    for split, scores in (("test", result), ("val", result["val"])):
        assert len(arrays[f"{split}_labels"]) == len(arrays[f"{split}_indices"]) > 0
        for probe in ("linear", "mlp", "knn"):
            assert 100 * correct(arrays, split, probe).mean() == pytest.approx(scores[probe], abs=1e-3)
    assert result["budget"]["probe_test_images"] == len(arrays["test_labels"])
    assert result["images_per_second"] > 0 and result["seed"] == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and {"ntxent", "sinkhorn", "lr", "knn"} <= set(rows[0])
    assert float(rows[-1]["knn"]) == pytest.approx(result["val"]["knn"])  # the monitor reads validation, not test
    config = json.loads((out / "config.json").read_text())
    assert config["sinkhorn_weight"] == 0.5 and config["sinkhorn_on"] == "features" and config["temperature"] == 0.2
    assert "| sinsim |" in (out / "results.md").read_text()
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 2


def test_method_all_runs_each_method_and_writes_one_table(tmp_path):
    out = tmp_path / "all"
    proc = run_cli(*TINY, "--method", "all", "--epochs", "1", "--train-subset", "128", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    combined = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in combined] == list(METHODS) + ["random init"]
    assert 60 < combined[-1]["linear"] <= 100 and combined[-1]["epochs"] == 0
    table = (out / "results.md").read_text()
    for name in METHODS:
        assert (out / name / "results.json").is_file() and f"| {name} |" in table
        assert json.loads((out / name / "config.json").read_text())["method"] == name
    assert "| method | linear % | MLP % | kNN % |" in proc.stdout  # the table is printed too
    assert "a pipeline check, not a comparison of the methods" in table and "pipeline check" in proc.stdout
    floor = combined[-1]
    for r in combined[:-1]:  # a test accuracy below the untrained encoder's is flagged, and only those
        row = next(line for line in table.splitlines() if line.startswith(f"| {r['method']} |")).split(" | ")
        for column, probe in ((1, "linear"), (2, "mlp"), (3, "knn")):
            assert ("(below untrained)" in row[column]) == (r[probe] < floor[probe]), (r["method"], probe, row)


def test_bad_flag_is_an_argparse_error_not_a_traceback():
    proc = run_cli("--epochs", "0")
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "positive integer" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--method", "moco"], "invalid choice"),
        (["--dataset", "imagenet"], "invalid choice"),
        (["--sinkhorn-eps", "-1"], "positive number"),
        (["--sinkhorn-weight", "nan"], "non-negative number"),
        (["--lr", "abc"], "positive number"),
        (["--batch-size", "2.5"], "integer >= 2"),
        (["--batch-size", "1"], "integer >= 2"),  # NT-Xent of one pair is exactly 0
        (["--train-subset", "1"], "integer >= 2"),
        (["--ema-tau", "1.0"], "[0, 1)"),
        (["--resume", "--overwrite"], "contradict"),
        (["--sinkhorn-tol", "0"], "positive number"),
        (["--sinkhorn-tol", "1e-4", "--sinkhorn-shard", "always"], "row-sharded solve runs exactly"),
    ],
)
def test_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        parse_config(["--device", "cuda"])
    assert "no CUDA device" in capsys.readouterr().err


def test_mnist_without_data_or_network_names_the_path_and_flag(tmp_path, capsys, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: <urlopen error Name or service not known>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    code = main(["--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in err and "--data-dir" in err and "download failed" in err
    code = main(["--dataset", "mnist", "--no-download", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert code == 1 and "--no-download" in capsys.readouterr().err


def test_an_existing_run_is_neither_overwritten_nor_mixed(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = TINY + ["--method", "simclr", "--epochs", "1", "--train-subset", "128", "--probe-epochs", "2", "--out", out]
    assert main(args) == 0
    first = json.loads((Path(out) / "results.json").read_text())
    assert main(args) == 1
    assert "already holds a run" in capsys.readouterr().err
    # --resume keeps the finished result; other training flags are refused
    assert main(args + ["--resume"]) == 0
    assert json.loads((Path(out) / "results.json").read_text()) == first
    assert main(args + ["--resume", "--temperature", "0.9"]) == 1
    assert "different training settings" in capsys.readouterr().err
    # an explicit --lr may change on resume, but a finished run has nothing left to train
    assert main(args + ["--resume", "--lr", "0.9"]) == 0
    assert "does not change a finished run" in capsys.readouterr().out
    assert json.loads((Path(out) / "results.json").read_text()) == first


def test_resume_without_a_checkpoint_says_it_starts_from_scratch(tmp_path, capsys):
    out = str(tmp_path / "empty")
    args = TINY + ["--method", "simclr", "--epochs", "1", "--train-subset", "128", "--probe-epochs", "2", "--out", out]
    assert main(args + ["--resume"]) == 0
    assert "found no checkpoint" in capsys.readouterr().out
    assert (Path(out) / "results.json").is_file()


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    calls = {"n": 0}
    real = METHODS["simclr"].loss_terms

    def poisoned(self, x1, x2):
        calls["n"] += 1
        loss, terms = real(self, x1, x2)
        if calls["n"] > 3:  # epoch 1 has 2 steps, so epoch 2 goes bad
            loss = loss * float("nan")
        return loss, terms

    monkeypatch.setattr(METHODS["simclr"], "loss_terms", poisoned)
    out = tmp_path / "run"
    args = TINY + ["--method", "simclr", "--epochs", "3", "--train-subset", "128", "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "NaN/inf at step 4 (epoch 2)" in err and "last good checkpoint (epoch 1)" in err
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["method"].values() if t.is_floating_point())
    assert not (out / "results.json").exists()
    assert protocol.CHECKPOINT == "checkpoint.pt"


def test_sinkhorn_tol_reaches_the_loss_and_the_training_signature():
    from train.config import for_method
    from train.methods.sinsim import AUTO_SHARD_BYTES, gathered_sinkhorn_bytes, shards_sinkhorn
    from train.models import resnet18_encoder

    cfg = for_method(parse_config(["--sinkhorn-tol", "1e-4", "--image-size", "8"]), "sinsim")
    assert cfg.params["sinkhorn_tol"] == 1e-4 and cfg.training_signature()["sinkhorn_tol"] == 1e-4
    backbone, dim = resnet18_encoder(1, 8)
    assert METHODS["sinsim"](backbone, dim, cfg).loss.sinkhorn.tol == 1e-4
    huge = next(b for b in (2 ** k for k in range(8, 20)) if gathered_sinkhorn_bytes(b, False) > AUTO_SHARD_BYTES)
    assert shards_sinkhorn("auto", huge, False) and not shards_sinkhorn("auto", huge, False, tol=1e-4)


# ------------------------------------------------- nothing of an old run is lost to a run that cannot start

OLD_RUN = ("checkpoint.pt", "results.json", "results.md", "metrics.csv")
NO_EVAL = TINY + ["--method", "simclr", "--epochs", "1", "--train-subset", "128", "--no-eval"]


def _an_old_run(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in OLD_RUN:
        (folder / name).write_text(f"old {name}")


@pytest.mark.parametrize("bad,message", [
    (["--dataset", "folder", "--data-dir", "MISSING"], "image folder not found"),
    (["--train-subset", "5000"], "--train-subset 5000 is larger than the 1347 pretraining images"),
    (["--val-fraction", "0.999", "--eval"], "cannot carve the probes' splits"),
])
def test_overwrite_keeps_the_old_run_when_the_new_one_cannot_start(tmp_path, capsys, bad, message):
    """--overwrite discards the old run only once the new one has loaded its
    data and passed its checks: a bad --data-dir leaves the old run, not
    nothing."""
    out = tmp_path / "run"
    _an_old_run(out)
    argv = [a.replace("MISSING", str(tmp_path / "missing")) for a in NO_EVAL + bad + ["--overwrite", "--out", str(out)]]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err, err
    for name in OLD_RUN:
        assert (out / name).read_text() == f"old {name}", name


def test_an_interrupted_method_all_overwrite_leaves_no_stale_combined_table(tmp_path, capsys, monkeypatch):
    """--method all --overwrite discards the old combined results.json and
    results.md with the method folders' runs, so a run interrupted before
    its new table is written leaves no table contradicting the folders."""
    out = tmp_path / "all"
    for name in METHODS:
        _an_old_run(out / name)
    (out / "results.json").write_text("[old combined]")
    (out / "results.md").write_text("| old combined table |")

    def interrupted(*args, **kwargs):
        raise RunStopped(signal.SIGINT)  # what Ctrl-C raises while train/run.py handles the stop signals

    monkeypatch.setattr(protocol, "run_method", interrupted)
    argv = [a if a != "simclr" else "all" for a in NO_EVAL] + ["--eval", "--overwrite", "--out", str(out)]
    assert main(argv) == 130
    assert not (out / "results.json").exists() and not (out / "results.md").exists()
    for name in METHODS:
        assert not any((out / name / f).exists() for f in OLD_RUN), name


# ------------------------------------------------- probes and geometry that cannot be measured are refused up front


@pytest.mark.parametrize("flag", ["--probe-train-subset", "--geometry-points"])
def test_probe_and_geometry_counts_of_one_are_refused_by_the_parser(flag, capsys):
    """One image trains no MLP probe (BatchNorm) and one point has no
    uniformity: refused before anything runs, not by a traceback after
    pretraining."""
    with pytest.raises(SystemExit) as exit_info:
        parse_config([flag, "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: '1' is not an integer >= 2" in err and "Traceback" not in err


def test_a_probe_train_split_of_one_image_is_refused_before_pretraining(tmp_path, capsys):
    """Two labelled train images and a validation fraction leave one image
    to train the probes on: the run says so before it pretrains."""
    from runs import folder_args, write_image_folder

    source = write_image_folder(tmp_path / "two", train_per_class=1)
    out = tmp_path / "run"
    assert main(folder_args(source, out, "--eval", "--val-fraction", "0.1", "--probe-epochs", "1")) == 1
    captured = capsys.readouterr()
    assert "the probes' train split holds 1 labelled image" in captured.err and "--no-eval" in captured.err
    assert "pretraining epochs" not in captured.out and not (out / "checkpoint.pt").exists()


def test_a_single_class_dataset_is_not_probed(tmp_path, capsys):
    """With one class every probe scores 100 % whatever the features: the run
    refuses to probe it (before pretraining), and pretrains it with --no-eval."""
    from runs import folder_args, write_image_folder

    source = write_image_folder(tmp_path / "ants", classes=("ant",))
    out = tmp_path / "run"
    assert main(folder_args(source, out, "--eval", "--probe-epochs", "1")) == 1
    captured = capsys.readouterr()
    line = [x for x in captured.err.splitlines() if x.startswith("error: ")]
    assert len(line) == 1 and "1 class (ant)" in line[0] and "100 %" in line[0] and "--no-eval" in line[0]
    assert not (out / "checkpoint.pt").exists()
    assert main(folder_args(source, out, "--no-eval")) == 0


@pytest.mark.parametrize("split,flags", [("validation", ["--val-fraction", "0.01"]),
                                         ("test", ["--val-fraction", "0"])])
def test_a_geometry_split_of_one_image_is_refused_before_pretraining(tmp_path, capsys, split, flags):
    """The geometry is measured on the validation split (the test split without one): one image has no
    uniformity, so a run that would end there is refused before it starts."""
    import shutil

    from runs import folder_args, write_image_folder

    source = write_image_folder(tmp_path / "one-test", test_per_class=1)
    shutil.rmtree(source / "test" / "bee")  # bee: no test images (a note), ant: one
    out = tmp_path / "run"
    assert main(folder_args(source, out, "--eval", "--probe-epochs", "1", *flags)) == 1
    captured = capsys.readouterr()
    assert f"--geometry-points: the {split} split of folder holds 1 image" in captured.err
    assert "pretraining epochs" not in captured.out


def test_resuming_a_finished_run_names_the_evaluation_flags_it_does_not_apply(tmp_path, capsys):
    """A finished run is kept on --resume; evaluation flags that differ from
    the ones it was evaluated with do not change it, and the run says so
    instead of presenting the old numbers as evaluated with the new flags."""
    out = str(tmp_path / "run")
    args = TINY + ["--method", "simclr", "--epochs", "1", "--train-subset", "128", "--probe-epochs", "2", "--out", out]
    assert main(args) == 0
    first = json.loads((Path(out) / "results.json").read_text())
    capsys.readouterr()
    assert main(args + ["--resume", "--probe-epochs", "3", "--knn-k", "5"]) == 0
    said = capsys.readouterr().out
    assert "finished earlier" in said and "--probe-epochs 3 (it was evaluated with 2)" in said
    assert "--knn-k 5 (it was evaluated with 20)" in said
    assert json.loads((Path(out) / "results.json").read_text()) == first
