"""Single-thread cost of the CPU loops per code path and per pass over K.

    python bench/cpu_loop_passes.py [n]

Compiles bench/cpu_loop_passes.cpp against the csrc/cpu/loops_*.o objects
of the last in-place build (python setup.py build_ext --inplace) and runs it:
ns per entry of K for the row and column log-sum-exp in one shifted pass
and in the exact two-pass form, and the time of an n x n cost matrix
(d = 128). Thread CPU time, best of the repeats, so other jobs on the
machine disturb it less than wall time. x86-64 Linux with g++.
"""

from __future__ import annotations

import glob
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(n: str = "1024") -> None:
    objects = sorted(glob.glob(str(ROOT / "build" / "temp.*" / "csrc" / "cpu" / "loops_*.o")))
    objects = [o for o in objects if "dispatch" not in o]
    if not objects:
        sys.exit("no csrc/cpu/loops_*.o found: build in place first (python setup.py build_ext --inplace)")
    lib = Path(torch.__file__).parent / "lib"
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "cpu_loop_passes"
        subprocess.run(
            ["g++", "-O2", "-std=c++17", f"-I{ROOT / 'csrc'}", str(Path(__file__).with_suffix(".cpp")), *objects,
             f"-L{lib}", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{lib}", "-o", str(exe)],
            check=True,
        )
        subprocess.run([str(exe), n], check=True)


if __name__ == "__main__":
    main(*sys.argv[1:2])
