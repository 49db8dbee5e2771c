"""One rank of the row-sharded Sinkhorn check (tests/test_sharded_sinkhorn.py).

Started by ``torch.multiprocessing.spawn`` with 2 ranks on gloo. Every rank
draws the same float64 clouds, keeps its rows, runs
:func:`sinsim_ext.distributed.sharded_sinkhorn_cost` and back-propagates
``value / W`` (the plain derivative with respect to its own rows, see the
module's gradient convention); the gradients of all ranks are gathered and
rank 0 saves them with the value of every case to ``out``.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def clouds(n: int, m: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(m, d, generator=g, dtype=torch.float64) + 0.3
    return torch.nn.functional.normalize(x, dim=1), torch.nn.functional.normalize(y, dim=1)


def run(rank: int, world: int, port: int, cases, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from sinsim_ext.distributed import sharded_sinkhorn_cost

    results = []
    for case in cases:
        x, y = clouds(case["n"], case["m"], case["d"], case["seed"])
        nr, mr = case["n"] // world, case["m"] // world
        x_r = x[rank * nr : (rank + 1) * nr].clone().requires_grad_()
        y_r = y[rank * mr : (rank + 1) * mr].clone().requires_grad_()
        value, error = sharded_sinkhorn_cost(x_r, y_r, eps=case["eps"], cost=case["cost"], max_iter=case["iters"],
                                             debias=case["debias"], return_error=True)
        (value / world).backward()
        gx = [torch.empty_like(x_r) for _ in range(world)]
        gy = [torch.empty_like(y_r) for _ in range(world)]
        dist.all_gather(gx, x_r.grad)
        dist.all_gather(gy, y_r.grad)
        values = [torch.empty((), dtype=torch.float64) for _ in range(world)]
        dist.all_gather(values, value.detach().reshape(()))
        results.append({"values": torch.stack(values), "grad_x": torch.cat(gx), "grad_y": torch.cat(gy),
                        "error": error})
    # shards of different sizes: every rank raises the same clear error, none is left waiting
    try:
        sharded_sinkhorn_cost(torch.randn(3 + rank, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64))
        errors = [None]
    except ValueError as exc:
        errors = [str(exc)]
    every = [None] * world
    dist.all_gather_object(every, errors[0])
    if rank == 0:
        torch.save({"cases": results, "uneven_shards": every}, out)
    dist.destroy_process_group()
