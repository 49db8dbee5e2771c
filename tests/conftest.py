"""Shared fixtures: every test draws its own random inputs.

Each test gets a generator seeded from its own node id, so inputs differ from
test to test (and between parametrisations) yet a failure reproduces exactly.
Set SINSIM_TEST_SEED to shift all seeds and try fresh inputs.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
import torch

# The processes the tests start (train/run.py, torchrun's workers, helper
# scripts) import this checkout's packages, as the tests themselves do
# (pytest's pythonpath setting).
ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)


@pytest.fixture
def gen(request) -> torch.Generator:
    shift = int(os.environ.get("SINSIM_TEST_SEED", "0"))
    seed = (zlib.crc32(request.node.nodeid.encode()) + shift) % (2**31)
    return torch.Generator().manual_seed(seed)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")
