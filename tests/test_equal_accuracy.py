"""The measurements behind bench/test_peers.py: errors, budget search, the float64
reference, and each peer's translation to this operator's convention.

The peer checks need the optional extra (``pip install '.[peers]'``) and are
skipped without it.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import sinsim_ext
from bench import equal_accuracy as ea
from bench import peer_solvers


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on shared cores two spinning threads make POT's many
    small operations 20-300x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_errors_by_hand():
    ref = ea.Reference(value=2.0, grad=torch.tensor([[3.0, 4.0]], dtype=torch.float64), marginal_error=0.0, iterations=0)
    # |2.0002 - 2| / 2 = 1e-4;  ||(0, 0.05)|| / ||(3, 4)|| = 0.05 / 5 = 1e-2
    ve, ge = ea.errors(torch.tensor(2.0002, dtype=torch.float64), torch.tensor([[3.0, 4.05]], dtype=torch.float64), ref)
    assert ve == pytest.approx(1e-4, rel=1e-6)
    assert ge == pytest.approx(1e-2, rel=1e-4)
    assert not ea.meets_targets(ve, ge)
    assert ea.meets_targets(1e-4, 1e-3)
    assert not ea.meets_targets(math.nan, 0.0)


def test_budget_search_finds_the_threshold():
    # errors fall as 37e-4 / k: the targets are met from k = 37 on
    def measure(k):
        return 37e-4 / k, 0.0

    s = ea.smallest_budget(measure, start=8, cap=4096)
    assert 37 <= s.budget <= math.ceil(37 * 1.15) + 1
    assert s.value_error <= ea.VALUE_TARGET
    s10 = ea.smallest_budget(measure, start=8, cap=4096, step=10)
    assert s10.budget in (40, 50)
    # never met below the cap: "not reached", no budget
    miss = ea.smallest_budget(measure, start=8, cap=20)
    assert miss.budget is None and "not reached" in miss.reason
    assert max(t[0] for t in miss.tried) == 20


def test_reference_matches_the_operator_in_float64(gen):
    x = torch.nn.functional.normalize(torch.randn(48, 16, generator=gen, dtype=torch.float64), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(40, 16, generator=gen, dtype=torch.float64), dim=-1)
    ref = ea.converged_reference(x, y, 0.05, tol=1e-12)
    assert ref.marginal_error < 1e-12
    xg = x.clone().requires_grad_()
    value = sinsim_ext.sinkhorn_cost(xg, y, eps=0.05, max_iter=5000, tol=1e-13)
    (grad,) = torch.autograd.grad(value, xg)
    ve, ge = ea.errors(value, grad, ref)
    assert ve < 1e-10 and ge < 1e-8


def test_reference_raises_when_not_converged(gen):
    x, y = torch.randn(32, 8, generator=gen, dtype=torch.float64), torch.randn(32, 8, generator=gen, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="marginal error"):
        ea.converged_reference(x, y, 1e-3, tol=1e-14, max_iter=3)


# eps = 0.5 on unit vectors in d = 32 (costs 2 +- 0.5): every peer converges
# there, and a factor 2 in eps or in the cost would move the value by ~10 %.
EPS = 0.5


def _small_problem():
    x, y = ea.problem(64, "unit", d=32, seed=3)
    return x, y, ea.converged_reference(x, y, EPS, tol=1e-12)


def _row(prefix):
    return next(s for s in peer_solvers.solvers() if s.name.startswith(prefix))


def test_pot_convention_float64():
    """POT (ot.dist = |x-y|^2, ot.solve with the KL term) in float64 gives this
    operator's value and gradient."""
    pytest.importorskip("ot", reason="POT not installed (pip install '.[peers]')")
    x, y, ref = _small_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value, grad = _row("POT").make(x, y, EPS, 100)()
    ve, ge = ea.errors(value, grad, ref)
    assert ve < 1e-10 and ge < 1e-8, (ve, ge)


def test_geomloss_convention_float64():
    """GeomLoss (cost |x-y|^2/2, blur = sqrt(eps/2), value doubled) in float64
    gives this operator's value, and its gradient to the accuracy its schedule
    (one update per eps stage) reaches at scaling 0.99."""
    pytest.importorskip("geomloss", reason="geomloss not installed (pip install '.[peers]')")
    x, y, ref = _small_problem()
    value, grad = peer_solvers._geomloss(0.99)(x, y, EPS, 0)()
    ve, ge = ea.errors(value, grad, ref)
    assert ve < 1e-6 and ge < 1e-3, (ve, ge)


def test_ott_convention_float32():
    """OTT-JAX (float32 on CPU): the same value and gradient to float32 accuracy."""
    pytest.importorskip("ott", reason="ott-jax not installed (pip install '.[peers]')")
    x, y, ref = _small_problem()
    value, grad = _row("OTT").make(x.float(), y.float(), EPS, 100)()
    ve, ge = ea.errors(value, grad, ref)
    assert ve < 1e-5 and ge < 1e-4, (ve, ge)


def test_table_from_outcomes():
    from bench import peers_table

    base = dict(n=256, dataset="unit", eps=0.01, threads=1, load=5.0)
    rows = [
        dict(base, solver="POT sinkhorn_log (torch)", reached=True, budget=200, median_s=0.004),
        dict(base, solver="sinsim, plain iterations", reached=True, budget=220, median_s=0.002),
        dict(base, solver="GeomLoss tensorized, scaling 0.9", reached=False, reason="not reached at this scaling",
             value_error=7.7e-4, grad_error=0.21),
        dict(base, solver="OTT-JAX Sinkhorn (jit)", reached=False, reason="not reached in 4100 iterations",
             value_error=1.5e-7, grad_error=1.1e-3),
    ]
    lines = peers_table.markdown(rows).splitlines()
    body = [line for line in lines if line.startswith("| ") and not line.startswith("| solver")]
    assert [line.split(" | ")[0] for line in body] == [
        "| sinsim, plain iterations", "| GeomLoss tensorized, scaling 0.9", "| POT sinkhorn_log (torch)", "| OTT-JAX Sinkhorn (jit)"]
    assert body[0].endswith("| 2 ms, 220 it, 1.0x |")
    assert body[2].endswith("| 4 ms, 200 it, 2.0x |")  # twice the fastest of its column
    assert body[1].endswith("| not reached (errors 0.00077 / 0.21) |")
    assert body[3].endswith("| not reached (4100 iterations; errors 1.5e-07 / 0.0011) |")
