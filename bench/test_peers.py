r"""Time to equal accuracy: this operator against GeomLoss, POT and OTT-JAX.

For each problem (n points in d = 128, float32, eps, ``unit`` or ``normal``
points; ``bench/equal_accuracy.py``) and each solver (``bench/peer_solvers.py``):

1. outside the timed region, find the smallest iteration budget (GeomLoss:
   check its ``scaling``) whose value and gradient in ``x`` are within 1e-4
   and 1e-3 (relative) of the converged float64 answer; a solver that does
   not get there within the cap is reported "not reached" and skipped;
2. time that setting, value and gradient from scratch, with pytest-benchmark.

The default run is a smoke pass (n = 256, two problems, GeomLoss's 0.999
row left out: thousands of stages); the whole grid
(n in {256, 1024, 4096}, eps in {0.05, 0.01, 0.001}, both point sets) runs
with ``--peers-full`` (or ``SINSIM_PEERS_FULL=1``); ``SINSIM_PEERS_N=256,1024``
restricts its sizes. Everything runs on one thread (torch, and XLA's CPU
client), the only setting that gives stable times on shared cores.
``SINSIM_PEERS_DEVICE=cuda`` puts the points, every solver (OTT-JAX: on JAX's
default device, its GPU when jax has CUDA) and the float64 reference on the GPU;
times then include the device synchronisation that reading the value makes.
The table is printed at the end of the run; ``SINSIM_PEERS_JSON=path``
appends each outcome to ``path`` (JSON lines) for ``bench/peers_table.py``.

    pip install -e ".[peers]" --no-build-isolation     # GeomLoss, POT, OTT-JAX
    pytest bench/test_peers.py --benchmark-only -s              # smoke
    pytest bench/test_peers.py --benchmark-only --peers-full    # the grid (hours on 2 cores)

Rows whose peer is not installed are skipped with the reason.
"""

from __future__ import annotations

import functools
import json
import math
import os

# one thread everywhere: XLA reads this when jax is first imported
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import pytest  # noqa: E402
import torch  # noqa: E402

import equal_accuracy as ea  # noqa: E402
import peer_solvers  # noqa: E402
from peers_table import RESULTS  # noqa: E402

EPSILONS = (0.05, 0.01, 0.001)
SIZES = (256, 1024, 4096)
SMOKE = ((256, "unit", 0.05), (256, "normal", 0.01))
SMOKE_SKIPS = ("scaling 0.999",)  # rows too slow for the smoke pass (GeomLoss: thousands of stages)
ITER_CAP = 4096  # "not reached" past this many iterations ...
TIME_CAP_S = 30.0  # ... or when one solve takes longer than this (seconds)
DEVICE = torch.device(os.environ.get("SINSIM_PEERS_DEVICE", "cpu"))  # "cuda": every solver on the GPU


def _full() -> bool:
    return os.environ.get("SINSIM_PEERS_FULL", "") not in ("", "0")


def _cells():
    sizes = SIZES
    if os.environ.get("SINSIM_PEERS_N"):
        sizes = tuple(int(s) for s in os.environ["SINSIM_PEERS_N"].split(","))
    return [(n, ds, eps) for n in sizes for ds in ea.DATASETS for eps in EPSILONS]


def _short(name: str) -> str:
    return name.split(" (")[0].replace(", ", "-").replace(" ", "-")


def pytest_generate_tests(metafunc):
    if "cell" in metafunc.fixturenames:
        full = _full() or metafunc.config.getoption("--peers-full", default=False)
        cells = _cells() if full else SMOKE
        rows = [s for s in peer_solvers.solvers() if full or not s.name.endswith(SMOKE_SKIPS)]
        params = [(c, s) for c in cells for s in rows]
        ids = [f"n{c[0]}-{c[1]}-eps{c[2]:g}-{_short(s.name)}" for c, s in params]
        metafunc.parametrize("cell,solver", params, ids=ids)


@functools.lru_cache(maxsize=4)
def _problem(cell):
    n, dataset, eps = cell
    x, y = (t.to(DEVICE) for t in ea.problem(n, dataset))
    try:
        ref = ea.converged_reference(x, y, eps, max_iter=150000 if n <= 256 else 20000)
    except RuntimeError as exc:  # no converged answer to measure against
        ref = str(exc)
    return x.float(), y.float(), ref


def _device_name() -> str:
    return torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu"


def _record(cell, solver, **outcome):
    n, dataset, eps = cell
    row = dict(n=n, dataset=dataset, eps=eps, solver=solver.name, device=_device_name(), threads=torch.get_num_threads(),
               load=os.getloadavg()[0], **outcome)
    RESULTS.append(row)
    path = os.environ.get("SINSIM_PEERS_JSON")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(row) + "\n")


def test_time_to_accuracy(benchmark, cell, solver):
    if solver.unavailable:
        pytest.skip(solver.unavailable)
    if solver.module:
        pytest.importorskip(solver.module, reason=f"{solver.module} not installed (the optional extra: pip install '.[peers]')")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y, ref = _problem(cell)
        if isinstance(ref, str):
            _record(cell, solver, reached=False, reason=f"no reference: {ref}", value_error=math.nan, grad_error=math.nan)
            pytest.skip(ref)
        eps = cell[2]

        def measure(k):
            return ea.errors(*solver.make(x, y, eps, k)(), ref)

        if solver.budgeted:
            search = ea.smallest_budget(measure, start=8, cap=ITER_CAP, step=solver.step, time_cap_s=TIME_CAP_S)
        else:
            ve, ge = measure(0)
            search = ea.Search(0 if ea.meets_targets(ve, ge) else None, ve, ge, [], "" if ea.meets_targets(ve, ge) else "not reached at this scaling")
        if search.budget is None:
            _record(cell, solver, reached=False, reason=search.reason, value_error=search.value_error, grad_error=search.grad_error)
            pytest.skip(f"{search.reason} (value error {search.value_error:.2g}, gradient error {search.grad_error:.2g})")

        run = solver.make(x, y, eps, search.budget)
        last = search.tried[-1][3] if search.tried else 1.0
        rounds = int(min(20, max(3, 3.0 / max(last, 1e-4)))) if last < 10 else 1
        value, grad = benchmark.pedantic(run, rounds=rounds, warmup_rounds=1 if last < 10 else 0)
        ve, ge = ea.errors(value, grad, ref)
        benchmark.extra_info.update(budget=search.budget, value_error=ve, grad_error=ge, reference_marginal_error=ref.marginal_error)
        median = benchmark.stats.stats.median if benchmark.stats is not None else math.nan
        _record(cell, solver, reached=True, budget=search.budget if solver.budgeted else None,
                median_s=median, value_error=ve, grad_error=ge)
        # the timed run is the searched setting: it still meets the targets
        assert ea.meets_targets(ve, ge), (ve, ge)
    finally:
        torch.set_num_threads(threads)
