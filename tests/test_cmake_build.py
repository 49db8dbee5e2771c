"""The C++ core builds with CMake against libtorch and runs without Python,
giving the same value as the Python API (the demo program prints it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import sinsim_ext

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


@pytest.mark.slow  # compiles the library a second time (about a minute)
def test_cmake_build_and_cpp_demo(tmp_path):
    build = tmp_path / "build"
    env = dict(os.environ)
    subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
        check=True, capture_output=True, env=env,
    )
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True, env=env)
    out = subprocess.run([str(build / "sinkhorn_demo"), "20", "30", "4"], check=True, capture_output=True, text=True)
    fields = dict(line.split() for line in out.stdout.splitlines())

    torch.manual_seed(0)  # the demo draws x then y from libtorch's generator seeded with 0
    x = torch.randn(1, 20, 4, dtype=torch.float64)
    y = torch.randn(1, 30, 4, dtype=torch.float64)
    want = float(sinsim_ext.sinkhorn_cost(x, y, eps=0.5, tol=1e-12, max_iter=10000))
    assert abs(float(fields["value"]) - want) < 1e-12
    assert float(fields["dispatched"]) == float(fields["value"])
    assert float(fields["error"]) < 1e-12
