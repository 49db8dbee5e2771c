"""The row-sharded Sinkhorn solve (sinsim_ext.distributed) on 2 gloo ranks
equals the single-process kernel (sinsim_ext.sinkhorn_cost, its implicit
backward) in value and gradient, float64, for both costs, with and without
debiasing, after a few iterations (the same iterates, not only the same
limit) and run to convergence."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

import sharded_sinkhorn_worker as worker
import sinsim_ext

CASES = [
    dict(n=12, m=10, d=5, eps=0.1, cost="sqeuclidean", iters=3, debias=False, seed=0),
    dict(n=12, m=10, d=5, eps=0.1, cost="sqeuclidean", iters=3, debias=True, seed=1),
    dict(n=16, m=16, d=4, eps=0.05, cost="cosine", iters=200, debias=False, seed=2),
    dict(n=16, m=16, d=4, eps=0.05, cost="cosine", iters=200, debias=True, seed=3),
    dict(n=8, m=12, d=3, eps=0.2, cost="sqeuclidean", iters=100, debias=True, seed=4),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded") / "results.pt"
    mp.spawn(worker.run, args=(2, free_port(), CASES, str(out)), nprocs=2, join=True)
    return torch.load(out)


@pytest.mark.parametrize("k", range(len(CASES)), ids=lambda k: "{cost}-debias{debias}-{iters}it".format(**CASES[k]))
def test_value_and_gradient_equal_the_single_process_kernel(sharded, k):
    case = CASES[k]
    x, y = worker.clouds(case["n"], case["m"], case["d"], case["seed"])
    x.requires_grad_()
    y.requires_grad_()
    value, error = sinsim_ext.sinkhorn_cost(x, y, eps=case["eps"], cost=case["cost"], max_iter=case["iters"],
                                            debias=case["debias"], return_error=True)
    gx, gy = torch.autograd.grad(value, (x, y))
    got = sharded["cases"][k]
    assert torch.equal(got["values"][0], got["values"][1])  # every rank holds the same value
    torch.testing.assert_close(got["values"][0], value.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got["grad_x"], gx, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(got["grad_y"], gy, rtol=1e-8, atol=1e-10)
    # the convergence report: the same final marginal error as the kernel's (the worst problem with debias)
    torch.testing.assert_close(got["error"], error, rtol=1e-6, atol=1e-14)


def test_uneven_shards_raise_the_same_clear_error_on_every_rank(sharded):
    first, second = sharded["uneven_shards"]
    assert first == second and first is not None
    assert "same shard shape on every process" in first and "rank 0: (3, 3, 4)" in first and "rank 1: (4, 3, 4)" in first


def test_tol_is_refused_before_any_collective():
    from sinsim_ext.distributed import sharded_sinkhorn_cost

    with pytest.raises(ValueError, match="tol"):
        sharded_sinkhorn_cost(torch.randn(3, 2), torch.randn(3, 2), tol=1e-6)
