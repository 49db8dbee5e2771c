"""Shared fixtures: every test draws its own random inputs.

Each test gets a generator seeded from its own node id, so inputs differ from
test to test (and between parametrisations) yet a failure reproduces exactly.
Set SINSIM_TEST_SEED to shift all seeds and try fresh inputs.
"""

from __future__ import annotations

import os
import zlib

import pytest
import torch


@pytest.fixture
def gen(request) -> torch.Generator:
    shift = int(os.environ.get("SINSIM_TEST_SEED", "0"))
    seed = (zlib.crc32(request.node.nodeid.encode()) + shift) % (2**31)
    return torch.Generator().manual_seed(seed)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")
