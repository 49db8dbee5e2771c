"""No silent non-convergence: every unconverged result warns, with or without
tol, and a converged one never does."""

from __future__ import annotations

import warnings

import pytest
import torch

import sinsim_ext
from sinsim_ext import CONVERGENCE_TOL, SinkhornConvergenceWarning, reference

from helpers import points, unit_points

SOLVERS = {
    "kernel": sinsim_ext.sinkhorn_cost,
    "reference": reference.sinkhorn_cost,
    "kernel-sinkhorn": sinsim_ext.sinkhorn,
    "reference-sinkhorn": reference.sinkhorn,
}


UNCONVERGED = r"did not converge: marginal error .* max_iter=100"
UNRESOLVED = r"float32 cannot resolve this plan: max cost / eps is up to"


def _unconverged_cases(gen):
    """Unconverged cases (small eps, norm-100 points, 2-d data) at sizes a unit test can afford.
    In float32, norm-100 points at eps <= 1e-3 are beyond what float32
    resolves (max C / eps ~ 4e7; at eps = 1e-4 the marginal error can even
    read 0 on a wrong plan): that is what the warning says there."""
    for dtype, message in ((torch.float64, UNCONVERGED), (torch.float32, UNRESOLVED)):
        for eps in (1e-3, 1e-4):
            x, y = 100 * unit_points(gen, 64, 128, dtype=dtype), 100 * unit_points(gen, 64, 128, dtype=dtype)
            yield f"norm-100 points, eps {eps:g}, {dtype}", (x, y), eps, message
    yield "2-d Gaussian data, eps 0.01", (points(gen, 256, 2), points(gen, 256, 2)), 0.01, UNCONVERGED


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("tol", [None, 1e-6])
def test_every_unconverged_case_warns(gen, solver, tol):
    for name, (x, y), eps, pattern in _unconverged_cases(gen):
        with pytest.warns(SinkhornConvergenceWarning, match=pattern) as rec:
            SOLVERS[solver](x, y, eps=eps, tol=tol)
        message = str(rec[0].message)
        if pattern == UNCONVERGED:
            assert "scaling" in message and "raise max_iter" in message, name
            goal = f"tol={tol:g}" if tol is not None else f"threshold {CONVERGENCE_TOL:g}"
            assert goal in message, name
        else:
            assert "float64" in message, name


def test_the_warning_is_a_user_warning_and_counts_the_debiased_problems(gen):
    assert issubclass(SinkhornConvergenceWarning, UserWarning)
    assert issubclass(SinkhornConvergenceWarning, RuntimeWarning)  # code written for the old warning
    x, y = points(gen, 256, 2), points(gen, 256, 2)
    with pytest.warns(SinkhornConvergenceWarning):
        sinsim_ext.sinkhorn_cost(x, y, eps=0.01, debias=True)


@pytest.mark.parametrize("d", [128, 512])
@pytest.mark.parametrize("solver", ["kernel", "reference"])
def test_converged_sinsim_workload_is_silent(gen, d, solver):
    """Unit vectors, eps = 0.05, the default 100 iterations, float32."""
    x = unit_points(gen, 256, d, dtype=torch.float32)
    y = unit_points(gen, 256, d, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        SOLVERS[solver](x, y, eps=0.05)
        SOLVERS[solver](x, y, eps=0.05, debias=True)
        SOLVERS[solver](x, y, eps=0.05, tol=1e-5, max_iter=1000)
    err = sinsim_ext.sinkhorn(x, y, eps=0.05).error
    assert float(err) < CONVERGENCE_TOL


def test_return_error_reports_on_the_device_without_warning(gen):
    x, y = points(gen, 256, 2), points(gen, 256, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        value, error = sinsim_ext.sinkhorn_cost(x, y, eps=0.01, return_error=True)
        ref_value, ref_error = reference.sinkhorn_cost(x, y, eps=0.01, return_error=True)
    with pytest.warns(SinkhornConvergenceWarning):
        res = sinsim_ext.sinkhorn(x, y, eps=0.01)
    assert error.shape == () and not error.requires_grad
    assert float(error) == pytest.approx(float(res.error), rel=1e-12) and float(error) > CONVERGENCE_TOL
    assert float(ref_error) == pytest.approx(float(error), rel=1e-9)
    assert float(value) == pytest.approx(float(ref_value), rel=1e-10)
    batch_value, batch_error = sinsim_ext.sinkhorn_cost(x[None].expand(3, -1, -1), y[None].expand(3, -1, -1),
                                                        eps=0.01, return_error=True, debias=True)
    assert batch_value.shape == batch_error.shape == (3,)


def test_sinkhorn_loss_reports_its_error(gen):
    x, y = points(gen, 64, 2, dtype=torch.float32), points(gen, 64, 2, dtype=torch.float32)
    loss = sinsim_ext.SinkhornLoss(eps=1e-3, normalize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        value, error = loss.value_and_error(x, y)
    assert loss.tolerance == CONVERGENCE_TOL and float(error) > loss.tolerance
    with pytest.warns(SinkhornConvergenceWarning):
        loss(x, y)
    terms = sinsim_ext.SinSimLoss(eps=1e-3, normalize=False).terms(x, y)
    assert float(terms["sinkhorn_error"]) == pytest.approx(float(error))


def test_no_warning_and_no_graph_break_under_compile(gen):
    """The check needs a host value: skipped inside compiled code, where the
    error comes back as a tensor instead."""
    x, y = points(gen, 64, 2, dtype=torch.float32), points(gen, 64, 2, dtype=torch.float32)
    fn = torch.compile(lambda x, y: sinsim_ext.sinkhorn_cost(x, y, eps=1e-3, check_finite=False, return_error=True),
                       fullgraph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        value, error = fn(x, y)
    assert torch.isfinite(value) and float(error) > CONVERGENCE_TOL


def _gaussian_clouds(gen, dtype, n=64, d=8):
    return points(gen, n, d, dtype=dtype), points(gen, n, d, dtype=dtype) + 0.3


def _max_cost(x, y):
    return float(((x.double()[:, None] - y.double()[None]) ** 2).sum(-1).max())


def _mean_cost(x, y):
    return float(((x.double()[:, None] - y.double()[None]) ** 2).sum(-1).mean())


COST_SOLVERS = {"kernel": sinsim_ext.sinkhorn_cost, "reference": reference.sinkhorn_cost}


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_float64_far_below_the_cost_scale_warns_unresolved(gen, solver):
    """At eps = 1e-19 max C, float64 rounds every -C/eps by more than the
    plan can bear: the marginal error reads 0 on a plan whose value is 10 %
    low. It warns as float32 does past its own limit, instead of reporting
    convergence."""
    x, y = _gaussian_clouds(gen, torch.float64)
    eps = 1e-19 * _max_cost(x, y)
    with pytest.warns(SinkhornConvergenceWarning, match=r"float64 cannot resolve this plan: max cost / eps"):
        SOLVERS[solver](x, y, eps=eps, tol=1e-9, max_iter=500)


@pytest.mark.parametrize("solver", list(COST_SOLVERS))
def test_a_resolved_float64_small_eps_is_not_called_unresolved(gen, solver):
    """At eps = 1e-3 max C float64 resolves the plan: whatever the iterations
    reach is reported as (non-)convergence, not as a precision limit."""
    x, y = _gaussian_clouds(gen, torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        COST_SOLVERS[solver](x, y, eps=1e-3 * _max_cost(x, y), max_iter=100)
    assert not any("cannot resolve" in str(w.message) for w in caught)


@pytest.mark.parametrize("debias", [False, True])
@pytest.mark.parametrize("solver", list(COST_SOLVERS))
def test_eps_far_above_the_costs_warns_that_the_value_is_unresolved(gen, solver, debias):
    """At eps = 1e8 the float32 potentials are eps-sized and rounded by about
    eps * 2^-23: the value comes out as -11.9 where it is about the mean cost
    (1.9 here, the limit of OT_eps as eps grows), and the marginal error is 0.
    It warns, and a returned error is NaN (unknown), not 0."""
    x, y = _gaussian_clouds(gen, torch.float32, d=2)
    mean_cost = _mean_cost(x, y)
    with pytest.warns(SinkhornConvergenceWarning, match=r"float32 cannot resolve this value: eps is .* times the "
                                                        r"mean cost.*lower eps.*float64"):
        COST_SOLVERS[solver](x, y, eps=1e8, debias=debias)
    value, error = COST_SOLVERS[solver](x, y, eps=1e8, debias=debias, return_error=True)
    assert torch.isnan(error)
    # float64 resolves the same problem: silent, and the value is the mean cost
    # (the divergence: its large-eps limit, the squared distance of the means)
    x64, y64 = x.double(), y.double()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        value64 = COST_SOLVERS[solver](x64, y64, eps=1e8, debias=debias)
    limit = float((x64.mean(0) - y64.mean(0)).square().sum()) if debias else mean_cost
    assert float(value64) == pytest.approx(limit, rel=1e-3)


@pytest.mark.parametrize("solver", list(COST_SOLVERS))
def test_eps_well_above_the_costs_within_float32_is_silent_and_right(gen, solver):
    """eps = 100 x the mean cost is large but resolved: no warning, and the
    float32 value matches float64 to 1e-4 of the mean cost."""
    x, y = _gaussian_clouds(gen, torch.float32)
    eps = 100 * _mean_cost(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        value, error = COST_SOLVERS[solver](x, y, eps=eps, return_error=True)
        value64 = COST_SOLVERS[solver](x.double(), y.double(), eps=eps)
    assert torch.isfinite(error) and float(error) < CONVERGENCE_TOL
    assert abs(float(value) - float(value64)) < 1e-4 * _mean_cost(x, y)


@pytest.mark.parametrize("solver", list(COST_SOLVERS))
def test_return_error_is_nan_where_float32_cannot_resolve_the_plan(gen, solver):
    """A training step reads the error instead of a warning: at eps = 1e-9 on
    unit vectors (max C / eps up to 4e9) the marginal error reads 0 on a wrong
    plan, so the returned error is NaN (unknown), per problem of a batch."""
    x = unit_points(gen, 2, 64, 16, dtype=torch.float32)
    y = unit_points(gen, 2, 64, 16, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        _, error = COST_SOLVERS[solver](x, y, eps=1e-9, return_error=True)
        _, resolved = COST_SOLVERS[solver](x, y, eps=0.5, return_error=True)
        _, mixed = COST_SOLVERS[solver](torch.stack([x[0], 1e-4 * x[1]]), torch.stack([y[0], 1e-4 * y[1]]),
                                        eps=1e-6, return_error=True)
    assert torch.isnan(error).all() and torch.isfinite(resolved).all()
    assert torch.isnan(mixed[0]) and torch.isfinite(mixed[1])  # the second problem's costs are 1e8 times smaller
