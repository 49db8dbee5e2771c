"""The trainer surfaces the Sinkhorn term's convergence: the worst marginal
error of the steps is read with the loss (no extra device sync), warned
about when above the limit, and written to metrics.csv."""

from __future__ import annotations

import csv
import math
import warnings

import pytest
from runs import TINY


from sinsim_ext import CONVERGENCE_TOL, SinkhornConvergenceWarning
from train.run import main

SINSIM = [a if a != "simclr" else "sinsim" for a in TINY]


def _errors(out):
    return [float(r["sinkhorn_error"]) for r in csv.DictReader((out / "metrics.csv").open())]


def test_unconverged_sinkhorn_term_warns_and_is_logged(tmp_path):
    out = tmp_path / "run"
    args = [*SINSIM, "--epochs", "2", "--check-every", "2", "--sinkhorn-eps", "1e-4", "--sinkhorn-iters", "2",
            "--out", str(out)]
    with pytest.warns(SinkhornConvergenceWarning, match=r"sinkhorn_error reached .* in the 2 steps up to step 2 "
                                                        r"\(epoch 1\).*--sinkhorn-iters"):
        assert main(args) == 0
    errors = _errors(out)
    assert len(errors) == 2 and all(e > CONVERGENCE_TOL for e in errors)


def test_converged_sinkhorn_term_is_silent(tmp_path):
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        assert main([*SINSIM, "--epochs", "1", "--check-every", "2", "--out", str(out)]) == 0
    errors = _errors(out)
    assert len(errors) == 1 and 0 <= errors[0] < CONVERGENCE_TOL


def test_sinkhorn_eps_beyond_float32_warns_and_logs_an_unknown_error(tmp_path):
    """At --sinkhorn-eps 1e-9 (normalised embeddings: max C / eps up to 4e9)
    float32 cannot resolve the plan and its marginal error reads 0 on a wrong
    plan. The run says so and metrics.csv logs the error as unknown (NaN),
    not as a perfect 0.0."""
    out = tmp_path / "run"
    args = [*SINSIM, "--epochs", "1", "--check-every", "2", "--sinkhorn-eps", "1e-9", "--out", str(out)]
    with pytest.warns(SinkhornConvergenceWarning, match=r"sinkhorn_error could not be measured .* up to step [24] "
                                                        r"\(epoch 1\).*cannot resolve.*--sinkhorn-eps"):
        assert main(args) == 0
    errors = _errors(out)
    assert len(errors) == 1 and math.isnan(errors[0])
