"""The tiled CUDA kernels' per-thread steps (csrc/cuda_tiles.h), run on the CPU.

tests/cuda_tiles_emulation.cpp runs the steps of the fused backward and of the
online pass thread by thread, in the kernels' order (staging, cost, plan,
product, running log-sum-exp, merges over a row of the thread grid), on odd
sizes and both costs, and compares with direct double loops; it also checks
that the 1-d grid visits every (batch, task, row block) once and prints the
eps-scaling stage counts, compared here with a plain search. What it cannot
check (warp shuffles, barriers, the device's exp2) waits for a GPU
(tests/test_sinkhorn_cuda_v2.py).
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")


@pytest.fixture(scope="module")
def emulation_output(tmp_path_factory):
    exe = tmp_path_factory.mktemp("tiles") / "emulation"
    subprocess.run(
        ["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas",
         "-I", str(ROOT / "csrc"), str(ROOT / "tests" / "cuda_tiles_emulation.cpp"), "-o", str(exe)],
        check=True, capture_output=True, text=True,
    )
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()


def test_emulated_kernel_steps_match_direct_loops(emulation_output):
    checks = {line.split()[0]: float(line.split()[1]) for line in emulation_output if not line.startswith("stages")}
    assert not any(line.startswith("error") for line in emulation_output), emulation_output
    backward = [k for k in checks if k.startswith("backward_")]
    passes = [k for k in checks if k.startswith("lse_pass_")]
    assert len(backward) == 5 and len(passes) == 3
    for name in backward + passes:
        assert checks[name] < 1e-13, (name, checks[name])  # NaN (a row never written) fails too
    assert checks["block_locations"] == 0


def stages_by_search(cost_max, eps, scaling, max_iter):
    """The smallest S >= 0 with eps / scaling^S >= cost_max, capped at max_iter - 1."""
    if not math.isfinite(cost_max) or cost_max <= eps:
        return 0
    s = 0
    while eps / scaling**s < cost_max * (1 - 1e-12):
        s += 1
    return min(s, max_iter - 1)


def test_stage_counts_match_a_plain_search(emulation_output):
    lines = [line.split() for line in emulation_output if line.startswith("stages")]
    assert len(lines) == 6
    for _, cost_max, eps, scaling, max_iter, got in lines:
        want = stages_by_search(float(cost_max), float(eps), float(scaling), int(max_iter))
        assert int(got) == want, (cost_max, eps, scaling, max_iter)
