"""A user can see the run is alive: the command line answers ``--help`` and
argument errors without importing torch, and a run whose output is a pipe or
a file prints progress lines within an epoch, as they happen."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from runs import RUN, command

PROBE = (
    "import runpy, sys\n"
    "sys.argv = [sys.argv[1]] + sys.argv[2:]\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit as exc:\n"
    "    print('exit', exc.code, file=sys.stderr)\n"
    "print('heavy:', sorted(m for m in ('torch', 'torchvision', 'numpy', 'sklearn', 'PIL') if m in sys.modules))\n"
)


@pytest.mark.parametrize("argv,code", [
    (["--help"], 0),
    (["--protocol", "paper", "--help"], 0),
    (["--dataset", "imagenet"], 2),
    (["--batch-size", "1"], 2),
    (["--protocol", "paper", "--methods", "moco"], 2),
])
def test_help_and_argument_errors_do_not_import_torch(argv, code):
    proc = subprocess.run([sys.executable, "-c", PROBE, str(RUN), *argv], capture_output=True, text=True, timeout=120)
    assert f"exit {code}" in proc.stderr, proc.stderr
    assert "heavy: []" in proc.stdout, proc.stdout[-500:]
    if code == 0:
        assert "--dataset" in proc.stdout or "--datasets" in proc.stdout  # the help itself, with the choice lists
        assert "digits" in proc.stdout and "sinsim" in proc.stdout


def test_progress_lines_appear_within_an_epoch_while_the_run_goes_on(tmp_path):
    proc = subprocess.Popen(command(tmp_path / "run", "--epochs", "1", "--progress-every", "0.01"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, alive_at_first_progress = [], None
    for line in proc.stdout:  # read as the child writes: a pipe, not a terminal
        lines.append(line.rstrip("\n"))
        if alive_at_first_progress is None and " step " in line:
            alive_at_first_progress = proc.poll() is None
    proc.wait(timeout=600)
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.returncode == 0, err
    progress = [i for i, line in enumerate(lines) if re.fullmatch(
        r"simclr epoch 1/1: step [123]/4 \(\d+%\), \d+ img/s, .+ left in this epoch, .+ left of pretraining"
        r"(, loss .*)?", line)]
    epoch_end = [i for i, line in enumerate(lines) if line.startswith("simclr epoch 1/1: loss")]
    assert progress and epoch_end and progress[0] < epoch_end[0], lines
    assert alive_at_first_progress, "the first progress line arrived only after the run had ended"
    assert any(line.startswith("simclr: pretraining epochs 1-1, 4 steps of 32 images") for line in lines)


def test_the_evaluation_shows_each_stage_while_it_runs(tmp_path):
    """Features, linear probe, MLP probe: each stage prints progress lines
    (here after every unit but its last) between the evaluation's first and
    last lines."""
    proc = subprocess.run(command(tmp_path / "run", "--epochs", "1", "--eval", "--probe-epochs", "3",
                                  "--progress-every", "0.000001"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("simclr: evaluating the frozen encoder"))
    end = next(i for i, line in enumerate(lines) if line.startswith("simclr: linear "))
    stages = [re.fullmatch(r"simclr evaluation: (.+): (\d+)/(\d+) (\w+) \(\d+%\), .+ so far, (at most )?.+ left",
                           line) for line in lines[start + 1 : end]]
    assert all(stages), lines[start + 1 : end]
    seen = [(m[1], int(m[2]), int(m[3]), m[4]) for m in stages]
    assert ("features of the probe-train images", 1, 2, "batches") in seen  # 1212 images, batches of 1024
    assert ("MLP probe", 1, 3, "epochs") in seen and ("MLP probe", 2, 3, "epochs") in seen
    linear = [m for m in stages if m[1] == "linear probe (L-BFGS)"]
    assert linear and all(m[3] == "1250" and m[4] == "evaluations" and m[5] for m in linear)
    order = [s for s, *_ in seen]
    assert order.index("features of the probe-train images") < order.index("linear probe (L-BFGS)") \
        < order.index("MLP probe")
