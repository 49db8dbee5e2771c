"""The tiled CUDA kernels' per-thread steps (csrc/cuda/tiles.h), run on the CPU.

tests/cuda_tiles_emulation.cpp runs the steps of the fused backward and of the
online pass thread by thread, in the kernels' order (staging, cost, plan,
product, running log-sum-exp, merges over a row of the thread grid), on odd
sizes and both costs, and compares with direct double loops; it also checks
that the 1-d grid visits every (batch, task, row block) once and prints the
eps-scaling stage counts, compared here with a plain search. In its "solve"
mode it runs the whole pass solver (csrc/cuda/pass_solver.cu) on one problem
with those steps, the stored or the recomputed cost, eps-scaling and tol, and
its f, g, iteration count and error are compared here with the CPU kernel's.
What it cannot check (warp shuffles, barriers, the device's exp2, the launch
sequence on a stream) waits for a GPU (tests/test_sinkhorn_cuda_v2.py).
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import sinsim_ext

from helpers import points, simplex

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    exe = tmp_path_factory.mktemp("tiles") / "emulation"
    subprocess.run(
        ["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas",
         "-I", str(ROOT / "csrc"), str(ROOT / "tests" / "cuda_tiles_emulation.cpp"), "-o", str(exe)],
        check=True, capture_output=True, text=True,
    )
    return exe


@pytest.fixture(scope="module")
def emulation_output(emulator):
    return subprocess.run([str(emulator)], check=True, capture_output=True, text=True).stdout.splitlines()


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


def emulated_solve(emulator, x, y, a, b, *, eps, scaling, tol, max_iter, symmetric, online, cost):
    n, d = x.shape
    header = f"{n} {y.shape[0]} {d} {eps!r} {scaling or 0.0!r} {tol or 0.0!r} {max_iter} {int(symmetric)} {int(online)}\n"
    body = " ".join(repr(float(v)) for t in (x.flatten(), y.flatten(), a, b) for v in t)
    mode = "solve-cosine" if cost == "cosine" else "solve"
    lines = subprocess.run([str(emulator), mode], input=header + body, check=True, capture_output=True, text=True).stdout
    head, f_line, g_line = lines.splitlines()
    n_iter, error = head.split()
    as_tensor = lambda line: torch.tensor([float(v) for v in line.split()], dtype=torch.float64)
    return int(n_iter), float(error), as_tensor(f_line), as_tensor(g_line)


@pytest.mark.parametrize("online", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("cost", ["sqeuclidean", "cosine"])
@pytest.mark.parametrize("schedule", ["plain", "tol", "scaling+tol", "scaling, unconverged"])
def test_emulated_pass_solver_matches_the_cpu_kernel(gen, emulator, online, symmetric, cost, schedule):
    """The pass solver's iterations (stages, stop rule, symmetric averaging, the
    error) give the CPU kernel's potentials, iteration count and error."""
    n, m, d = 45, 70, 5
    x = points(gen, n, d, scale=1.5)
    y = x if symmetric else points(gen, m, d)
    a = simplex(gen, n)
    a[7] = 0
    a = a / a.sum()
    b = a if symmetric else simplex(gen, m)
    kw = {
        "plain": dict(eps=0.3, max_iter=25),
        "tol": dict(eps=0.3, tol=1e-10, max_iter=3000),
        "scaling+tol": dict(eps=0.05, scaling=0.8, tol=1e-9, max_iter=3000),
        "scaling, unconverged": dict(eps=1e-3, scaling=0.7, max_iter=9),
    }[schedule]
    n_iter, error, f, g = emulated_solve(emulator, x, y, a, b, symmetric=symmetric, online=online, cost=cost,
                                         scaling=kw.get("scaling"), tol=kw.get("tol"), eps=kw["eps"],
                                         max_iter=kw["max_iter"])
    out = torch.ops.sinsim_ext.sinkhorn_value(
        x[None], (x if symmetric else y)[None], a[None], b[None], kw["eps"], cost, kw["max_iter"],
        kw.get("tol") or 0.0, symmetric, kw.get("scaling") or 0.0, False,
    )
    # the symmetric problem is the debiased call's OT(x, x): potentials f_xx, g_xx, row 1 of n_iter / error
    want_f, want_g = (out[3][0], out[4][0]) if symmetric else (out[1][0], out[2][0])
    row = 1 if symmetric else 0
    assert n_iter == int(out[7][row, 0])
    assert abs(error - float(out[8][row, 0])) <= 1e-12 + 1e-8 * abs(float(out[8][row, 0]))
    scale = 1 + float(want_f.abs().max())
    assert float((f - want_f).abs().max()) <= 1e-11 * scale
    assert float((g - want_g).abs().max()) <= 1e-11 * scale
