"""No silent non-convergence: every unconverged result warns, with or without
tol, and a converged one never does (issue 11's cases)."""

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


def _issue_cases(gen):
    """The unconverged cases of issue 11, at sizes a unit test can afford.
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
def test_every_unconverged_issue_case_warns(gen, solver, tol):
    for name, (x, y), eps, pattern in _issue_cases(gen):
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
