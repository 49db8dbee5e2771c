"""--tensorboard: the event files hold what metrics.csv and results.json hold
(read back with TensorBoard's own reader), a resumed run's curves do not
double back, and without the tensorboard package the trainer runs as ever
and refuses --tensorboard in one line."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys

import pytest
from processes import signalled
from runs import RUN, TINY, run_cli

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="the tensorboard package (pip install tensorboard; CI installs it with the test extra)")

EVAL = ["--eval", "--probe-epochs", "2", "--probe-train-subset", "100", "--probe-test-subset", "50",
        "--geometry-points", "50"]


def scalars(out):
    events = event_accumulator.EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_the_event_file_holds_the_runs_metrics_and_results(tmp_path):
    out = tmp_path / "run"
    done = run_cli(out, "--epochs", "2", "--check-every", "2", "--tensorboard", *EVAL)
    assert done.returncode == 0, done.stderr
    got = scalars(out)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    result = json.loads((out / "results.json").read_text())
    steps = 4  # 128 images in batches of 32
    for column in ("loss", "lr", "images_per_second"):
        assert got[f"epoch/{column}"] == [(steps * (i + 1), pytest.approx(float(r[column]), rel=1e-6))
                                          for i, r in enumerate(rows)]
    # the check windows (2 steps each): two per epoch, whose mean is the epoch's mean loss
    assert [s for s, _ in got["train/loss"]] == [2, 4, 6, 8] and [s for s, _ in got["train/lr"]] == [2, 4, 6, 8]
    for i, r in enumerate(rows):
        windows = [v for _, v in got["train/loss"][2 * i : 2 * i + 2]]
        assert sum(windows) / 2 == pytest.approx(float(r["loss"]), rel=1e-6)
    last = 2 * steps
    for probe in ("linear", "mlp", "knn"):
        assert got[f"eval/test/{probe}"] == [(last, pytest.approx(result[probe], abs=1e-3))]
        assert got[f"eval/val/{probe}"] == [(last, pytest.approx(result["val"][probe], abs=1e-3))]
    for measure in ("alignment", "uniformity", "effective_rank", "silhouette"):
        assert got[f"geometry/{measure}"] == [(last, pytest.approx(result["geometry"][measure], rel=1e-5))]


@pytest.mark.slow
def test_a_resumed_run_writes_each_step_once(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "2", "--check-every", "1", "--tensorboard", "--out", str(out)]
    stopped = subprocess.run(signalled(tmp_path, signal.SIGTERM, RUN, after_calls=6) + args,
                             capture_output=True, text=True, timeout=600)
    assert stopped.returncode == 143, stopped.stderr
    assert [s for s, _ in scalars(out)["train/loss"]] == [1, 2, 3, 4, 5, 6]
    resumed = subprocess.run([sys.executable, str(RUN), *args, "--resume"], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    got = scalars(out)
    assert [s for s, _ in got["train/loss"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [s for s, _ in got["epoch/loss"]] == [4, 8]


BLOCKED = (  # train/run.py in a Python where the tensorboard package cannot be imported
    "import runpy, sys\n"
    "sys.modules['tensorboard'] = None\n"
    "sys.argv = [sys.argv[1]] + sys.argv[2:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def test_without_the_package_the_trainer_runs_and_refuses_tensorboard_in_one_line(tmp_path):
    refused = subprocess.run([sys.executable, "-c", BLOCKED, str(RUN), *TINY, "--epochs", "1", "--tensorboard",
                              "--out", str(tmp_path / "refused")], capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        "python train/run.py: error: --tensorboard needs the tensorboard package, which is not installed: pip install "
        "tensorboard (or pip install -e '.[tensorboard]'), or leave --tensorboard out (metrics.csv has the same "
        "numbers)")
    assert not (tmp_path / "refused").exists()
    ran = subprocess.run([sys.executable, "-c", BLOCKED, str(RUN), *TINY, "--epochs", "1", "--out",
                          str(tmp_path / "ran")], capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "ran" / "results.json").is_file() and not (tmp_path / "ran" / "tensorboard").exists()
