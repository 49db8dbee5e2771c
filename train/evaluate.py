r"""Frozen-encoder evaluation: features without augmentation, then three scores.

* **linear probe**: multinomial logistic regression on standardised features,
  trained on the train split, accuracy on the test split. It minimises
  scikit-learn's ``LogisticRegression(C=1)`` objective (unpenalised bias)::

      (1/n) sum_i CE(W x_i + b, y_i) + ||W||^2 / (2 C n)

  by full-batch L-BFGS (``torch.optim.LBFGS``, strong-Wolfe line search) in
  float64 on the features' device: on a GPU a few hundred milliseconds where
  scikit-learn's CPU solver took up to a minute per run. Convex, so the score
  depends on the features only; tests check it against scikit-learn.
* **MLP probe**: ``Linear(512, 512) - BatchNorm - ReLU - Linear(512, classes)``
  on the same standardised features, AdamW (lr 1e-3, weight decay 1e-4) with
  a cosine schedule for ``probe_epochs`` epochs, in torch on the device.
* **kNN**: cosine similarity, ``k = 20`` neighbours weighted by
  ``exp(sim / 0.07)`` (Wu et al., "Unsupervised Feature Learning via
  Non-Parametric Instance Discrimination", CVPR 2018; the usual SSL monitor).

Accuracies are percentages.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, to_input, *, batch_size: int = 1024,
                     precision: str = "fp32") -> torch.Tensor:
    """float32 features of uint8 ``images`` (on the encoder's device), in eval mode."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)
    feats = []
    for part in images.split(batch_size):
        x = to_input(part.to(device, non_blocking=True))
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            feats.append(encoder(x).float())
    encoder.train(was_training)
    return torch.cat(feats)


@torch.no_grad()
def knn_accuracy(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> float:
    """Weighted kNN accuracy (%) with cosine similarity."""
    train_f, test_f = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    train_y, test_y = train_y.to(train_f.device), test_y.to(train_f.device)
    classes = int(max(train_y.max(), test_y.max())) + 1
    k = min(k, len(train_f))
    correct = 0
    for start in range(0, len(test_f), chunk):
        sim = test_f[start : start + chunk] @ train_f.T
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(sim), classes, device=sim.device)
        votes.scatter_add_(1, train_y[top_idx], (top_sim / temperature).exp())
        correct += (votes.argmax(dim=1) == test_y[start : start + chunk]).sum().item()
    return 100.0 * correct / len(test_f)


def _standardize(train_f: torch.Tensor, test_f: torch.Tensor):
    mean, std = train_f.mean(dim=0), train_f.std(dim=0).clamp_min(1e-6)
    return (train_f - mean) / std, (test_f - mean) / std


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, classes: int, C: float = 1.0,
                            max_iter: int = 1000, tol: float = 1e-6):
    """Weights ``(W, b)`` minimising the objective in the module docstring on
    features ``x`` (n, d) and labels ``y``; float64, on ``x``'s device.
    Stops when the largest gradient entry is below ``tol`` or after
    ``max_iter`` iterations (the budget; the fit is still used then)."""
    x = x.double()
    n, d = x.shape
    weight = torch.zeros(classes, d, dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(classes, dtype=x.dtype, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def objective():
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + weight.square().sum() / (2 * C * n)
        loss.backward()
        return loss

    opt.step(objective)
    return weight.detach(), bias.detach()


def linear_probe_accuracy(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
                          C: float = 1.0, max_iter: int = 1000) -> float:
    """Logistic-regression accuracy (%) on standardised features."""
    train_f, test_f = _standardize(train_f.double(), test_f.double())
    train_y, test_y = train_y.to(train_f.device), test_y.to(train_f.device)
    classes = int(max(train_y.max(), test_y.max())) + 1
    weight, bias = fit_logistic_regression(train_f, train_y, classes, C=C, max_iter=max_iter)
    pred = (test_f @ weight.T + bias).argmax(dim=1)
    return 100.0 * (pred == test_y).double().mean().item()


def mlp_probe_accuracy(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
                       *, epochs: int = 100, batch_size: int = 256, hidden: int = 512, seed: int = 0) -> float:
    """2-layer MLP probe accuracy (%), trained with its own seeded generator."""
    device = train_f.device
    train_f, test_f = _standardize(train_f, test_f)
    train_y, test_y = train_y.to(device), test_y.to(device)
    classes = int(max(train_y.max(), test_y.max())) + 1
    gen = torch.Generator(device="cpu").manual_seed(seed)
    head = nn.Sequential(nn.Linear(train_f.shape[1], hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, classes))
    with torch.no_grad():
        for m in head:
            if isinstance(m, nn.Linear):
                bound = 1 / m.in_features ** 0.5
                m.weight.copy_(torch.empty_like(m.weight).uniform_(-bound, bound, generator=gen))
                m.bias.zero_()
    head.to(device)
    batch_size = min(batch_size, len(train_f))
    steps = epochs * (len(train_f) // batch_size)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(train_f), generator=gen).to(device)
        for i in range(len(train_f) // batch_size):
            idx = order[i * batch_size : (i + 1) * batch_size]
            loss = F.cross_entropy(head(train_f[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    head.eval()
    with torch.no_grad():
        pred = torch.cat([head(part).argmax(dim=1) for part in test_f.split(4096)])
    return 100.0 * (pred == test_y).float().mean().item()


def evaluate_encoder(encoder: nn.Module, data, to_input, *, knn_k: int = 20, knn_temperature: float = 0.07,
                     probe_epochs: int = 100, seed: int = 0, precision: str = "fp32") -> Dict[str, float]:
    """``{"linear", "mlp", "knn"}`` accuracies (%) of the frozen ``encoder`` on ``data``."""
    device = next(encoder.parameters()).device
    train_f = extract_features(encoder, data.train_images, to_input, precision=precision)
    test_f = extract_features(encoder, data.test_images, to_input, precision=precision)
    train_y, test_y = data.train_labels.to(device), data.test_labels.to(device)
    return {
        "linear": linear_probe_accuracy(train_f, train_y, test_f, test_y),
        "mlp": mlp_probe_accuracy(train_f, train_y, test_f, test_y, epochs=probe_epochs, seed=seed),
        "knn": knn_accuracy(train_f, train_y, test_f, test_y, k=knn_k, temperature=knn_temperature),
    }


def knn_monitor(encoder: nn.Module, data, to_input, *, k: int = 20, temperature: float = 0.07,
                precision: str = "fp32") -> float:
    """kNN accuracy (%) only, for the per-epoch monitor."""
    train_f = extract_features(encoder, data.train_images, to_input, precision=precision)
    test_f = extract_features(encoder, data.test_images, to_input, precision=precision)
    return knn_accuracy(train_f, data.train_labels, test_f, data.test_labels, k=k, temperature=temperature)
