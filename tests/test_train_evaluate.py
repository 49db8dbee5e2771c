"""The linear probe's solver against scikit-learn's LogisticRegression, the
independent answer it replaces (same objective, another implementation)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from train.evaluate import fit_logistic_regression, linear_probe_accuracy


def overlapping_classes(gen, n=600, d=20, classes=4):
    centres = torch.randn(classes, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=gen)
    x = centres[y] + 1.5 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x, y


def objective(x, y, weight, bias, C):
    return (F.cross_entropy(x @ weight.T + bias, y) + weight.square().sum() / (2 * C * len(x))).item()


@pytest.mark.parametrize("C", [0.05, 1.0])
def test_logistic_regression_matches_scikit_learn(gen, C):
    x, y = overlapping_classes(gen)
    weight, bias = fit_logistic_regression(x, y, classes=4, C=C)
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(x.numpy(), y.numpy())
    ref_w, ref_b = torch.from_numpy(ref.coef_), torch.from_numpy(ref.intercept_)
    # The softmax is invariant to adding a constant to every class's bias.
    shift = (bias - ref_b).mean()
    # Weights agree to the solvers' tolerances (the optimum is flat in some
    # directions when C is large); the objective must be as low as scikit-learn's.
    assert torch.allclose(weight, ref_w, atol=1e-3)
    assert torch.allclose(bias - shift, ref_b, atol=1e-3)
    assert objective(x, y, weight, bias, C) <= objective(x, y, ref_w, ref_b, C) + 1e-8


def test_linear_probe_accuracy_matches_scikit_learn(gen):
    x, y = overlapping_classes(gen, n=1000)
    train_x, train_y, test_x, test_y = x[:700], y[:700], x[700:], y[700:]
    ours = linear_probe_accuracy(train_x.float(), train_y, test_x.float(), test_y)
    mean, std = train_x.mean(0), train_x.std(0)
    ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(((train_x - mean) / std).numpy(), train_y.numpy())
    ref_acc = 100.0 * np.mean(ref.predict(((test_x - mean) / std).numpy()) == test_y.numpy())
    assert ours == pytest.approx(ref_acc, abs=100.0 / 300)  # at most one test point differs
    assert ours > 100.0 / 4 + 20  # and the problem is learnable, so agreement is not by chance
