"""SINSIM_CUDA_KERNEL: the opt-in that selects the CUDA back end's newer paths.

The C++ back end and the Python side parse the variable separately
(csrc/cuda/kernel_choice.cpp, sinsim_ext/_cuda_kernel.py); both must accept
and refuse the same values. Bad values fail every call, on any device; a
selection in a build without CUDA says once that it has no effect; CPU calls
give the same results whatever is selected. The memory rule of
cost_mode="auto" on CUDA is a pure function, checked here without a GPU.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import sinsim_ext
from sinsim_ext import _cuda_kernel, ops

from helpers import points

VALUES = [
    "", "v1", "v2", " v2 ", "backward", "online", "scaling", "backward,online", "online, backward",
    "scaling,backward,online", "backward,backward", "\tonline\t", "graph", "graph,backward", "online,graph,scaling,backward", "passes,backward",
    # refused
    "v3", "V2", "v2,backward", "v1,online", "fused", "backward,", ",online", "backward,,online", "on line", "all",
]


@pytest.mark.parametrize("value", VALUES)
def test_python_and_cpp_parse_alike(value):
    try:
        want = sorted(torch.ops.sinsim_ext.cuda_kernel_parts(value))
    except (ValueError, RuntimeError) as exc:
        want = exc
    if isinstance(want, Exception):
        with pytest.raises(ValueError, match="SINSIM_CUDA_KERNEL must be"):
            _cuda_kernel.parse(value)
        assert "SINSIM_CUDA_KERNEL must be" in str(want)
    else:
        assert sorted(_cuda_kernel.parse(value)) == want


def test_v2_selects_every_part_but_the_forward_comparison_and_v1_none():
    assert _cuda_kernel.parse("v2") == frozenset(_cuda_kernel.PARTS) - {"passes"}
    assert _cuda_kernel.parse("v1") == _cuda_kernel.parse("") == frozenset()


def test_a_bad_value_fails_every_call_with_a_clear_message(gen, monkeypatch):
    x, y = points(gen, 5, 3), points(gen, 4, 3)
    monkeypatch.setenv("SINSIM_CUDA_KERNEL", "bakward")
    with pytest.raises(ValueError, match=r"SINSIM_CUDA_KERNEL must be .*'v2'.*got 'bakward'"):
        sinsim_ext.sinkhorn_cost(x, y)
    with pytest.raises(ValueError, match="SINSIM_CUDA_KERNEL must be"):
        sinsim_ext.sinkhorn(x, y)


def test_cpu_calls_are_unchanged_by_the_selection(gen, monkeypatch):
    x, y = points(gen, 17, 4), points(gen, 13, 4)
    kw = dict(eps=0.1, max_iter=40, debias=True)

    def value_and_grad():
        xg = x.clone().requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = sinsim_ext.sinkhorn_cost(xg, y, **kw)
            v2 = sinsim_ext.sinkhorn_cost(x, y, scaling=0.8, cost_mode="online", **kw)
        return v, torch.autograd.grad(v, xg)[0], v2

    monkeypatch.delenv("SINSIM_CUDA_KERNEL", raising=False)
    want = value_and_grad()
    monkeypatch.setenv("SINSIM_CUDA_KERNEL", "v2")
    got = value_and_grad()
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_a_selection_without_the_cuda_back_end_says_once_that_it_has_no_effect(monkeypatch):
    monkeypatch.setattr(_cuda_kernel, "_warned_without_cuda", False)
    monkeypatch.setenv("SINSIM_CUDA_KERNEL", "online")
    with pytest.warns(UserWarning, match="SINSIM_CUDA_KERNEL=online selects CUDA kernels, but this build"):
        assert _cuda_kernel.selected_for("cpu", ("cpu",)) == frozenset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _cuda_kernel.selected_for("cpu", ("cpu",))  # once only
        assert _cuda_kernel.selected_for("cpu", ("cpu", "cuda")) == frozenset()  # CPU calls: no part applies
    assert _cuda_kernel.selected_for("cuda", ("cpu", "cuda")) == frozenset({"online"})


def test_auto_on_cuda_goes_online_by_memory_only():
    """The stored costs (three problems with debias) against a quarter of the device memory."""
    gib = 1 << 30
    assert ops.stored_cost_bytes(1, 1000, 500, 4, False) == 2_000_000
    assert ops.stored_cost_bytes(2, 1000, 500, 4, True) == 2 * (500_000 + 1_000_000 + 250_000) * 4
    # n = m = 65,536 in float32: 16 GiB stored; online on a 40 GiB device, stored on an 80 GiB one
    assert ops.online_by_memory_cuda(1, 65536, 65536, 4, False, 40 * gib)
    assert not ops.online_by_memory_cuda(1, 65536, 65536, 4, False, 80 * gib)
    # debias triples it
    assert ops.online_by_memory_cuda(1, 65536, 65536, 4, True, 80 * gib)
    # float64 doubles it; the batch multiplies it
    assert ops.online_by_memory_cuda(1, 65536, 65536, 8, False, 80 * gib)
    assert not ops.online_by_memory_cuda(8, 16384, 16384, 4, False, 80 * gib)  # 8 GiB
    assert ops.online_by_memory_cuda(32, 16384, 16384, 4, False, 80 * gib)  # 32 GiB
    assert not ops.online_by_memory_cuda(64, 256, 256, 4, True, 80 * gib)
    # the boundary: exactly the fraction stays stored
    total = 4 * ops.stored_cost_bytes(1, 4096, 4096, 4, False)
    assert not ops.online_by_memory_cuda(1, 4096, 4096, 4, False, total)
    assert ops.online_by_memory_cuda(1, 4096, 4097, 4, False, total)
