r"""Frozen-encoder evaluation: features without augmentation, then three scores.

The probes train on the probe-train images and are scored, with the same
fitted weights, on the validation images (for every choice) and on the test
images (the final numbers); see :mod:`train.splits`.

* **linear probe**: multinomial logistic regression on standardised features,
  trained on the probe-train images. It minimises
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

Accuracies are percentages. Each stage (features, probes, kNN) reports its
progress through an optional :class:`train.progress.EvalProgress`.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .progress import NO_PROGRESS, EvalProgress


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, to_input, *, batch_size: int = 1024,
                     precision: str = "fp32", progress: EvalProgress = NO_PROGRESS,
                     what: str = "images") -> torch.Tensor:
    """float32 features of uint8 ``images`` (on the encoder's device), in eval
    mode; ``progress`` shows the batches as "features of the ``what``"."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)
    feats = []
    parts = images.split(batch_size)
    with progress.stage(f"features of the {what}", len(parts), "batches") as shown:
        for part in parts:
            x = to_input(part.to(device, non_blocking=True))
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                feats.append(encoder(x).float())
            shown.update()
    encoder.train(was_training)
    return torch.cat(feats)


@torch.no_grad()
def knn_predictions(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, k: int = 20,
                    temperature: float = 0.07, chunk: int = 1024, classes: int = 0,
                    progress: EvalProgress = NO_PROGRESS, what: str = "test") -> torch.Tensor:
    """The weighted kNN vote (cosine similarity) for each row of ``test_f``."""
    train_f, test_f = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    train_y = train_y.to(train_f.device)
    classes = max(classes, int(train_y.max()) + 1)
    k = min(k, len(train_f))
    preds = []
    starts = range(0, len(test_f), chunk)
    with progress.stage(f"kNN on the {what} images", len(starts), "chunks") as shown:
        for start in starts:
            sim = test_f[start : start + chunk] @ train_f.T
            top_sim, top_idx = sim.topk(k, dim=1)
            votes = torch.zeros(len(sim), classes, device=sim.device)
            votes.scatter_add_(1, train_y[top_idx], (top_sim / temperature).exp())
            preds.append(votes.argmax(dim=1))
            shown.update()
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=train_f.device)


def knn_accuracy(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20, temperature: float = 0.07, chunk: int = 1024, progress: EvalProgress = NO_PROGRESS,
                 what: str = "test") -> float:
    """Weighted kNN accuracy (%) with cosine similarity (:func:`knn_predictions`)."""
    classes = int(max(train_y.max(), test_y.max())) + 1
    return _accuracy(knn_predictions(train_f, train_y, test_f, k, temperature, chunk, classes, progress, what),
                     test_y)


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, classes: int, C: float = 1.0,
                            max_iter: int = 1000, tol: float = 1e-6, progress: EvalProgress = NO_PROGRESS):
    """Weights ``(W, b)`` minimising the objective in the module docstring on
    features ``x`` (n, d) and labels ``y``; float64, on ``x``'s device.
    Stops when the largest gradient entry is below ``tol`` or after
    ``max_iter`` iterations (the budget; the fit is still used then).
    ``progress`` counts the objective's evaluations (L-BFGS makes at most
    ``max_iter * 5 / 4``, its default ``max_eval``)."""
    x = x.double()
    n, d = x.shape
    weight = torch.zeros(classes, d, dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(classes, dtype=x.dtype, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")
    max_eval = opt.defaults["max_eval"]

    with progress.stage("linear probe (L-BFGS)", max_eval, "evaluations", at_most=True) as shown:
        def objective():
            opt.zero_grad()
            loss = F.cross_entropy(x @ weight.T + bias, y) + weight.square().sum() / (2 * C * n)
            loss.backward()
            shown.update()
            return loss

        opt.step(objective)
    return weight.detach(), bias.detach()


EvalSets = Dict[str, Tuple[torch.Tensor, torch.Tensor]]  # name -> (features, labels)


def _classes(train_y: torch.Tensor, sets: EvalSets) -> int:
    return int(max([train_y.max()] + [y.max() for _, y in sets.values() if len(y)])) + 1


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * (pred == y.to(pred.device)).double().mean().item()


def linear_probe_predictions(train_f: torch.Tensor, train_y: torch.Tensor, sets: EvalSets, C: float = 1.0,
                             max_iter: int = 1000, progress: EvalProgress = NO_PROGRESS) -> Dict[str, torch.Tensor]:
    """The logistic-regression class of every image of each of ``sets``, one
    fit on the standardised ``train_f`` (the standardisation uses its
    statistics only)."""
    train_f = train_f.double()
    mean, std = train_f.mean(dim=0), train_f.std(dim=0).clamp_min(1e-6)
    train_y = train_y.to(train_f.device)
    weight, bias = fit_logistic_regression((train_f - mean) / std, train_y, _classes(train_y, sets), C=C,
                                           max_iter=max_iter, progress=progress)
    return {name: (((f.double().to(train_f.device) - mean) / std) @ weight.T + bias).argmax(dim=1)
            for name, (f, _) in sets.items()}


def linear_probe_scores(train_f: torch.Tensor, train_y: torch.Tensor, sets: EvalSets,
                        C: float = 1.0, max_iter: int = 1000, progress: EvalProgress = NO_PROGRESS) -> Dict[str, float]:
    """Logistic-regression accuracy (%) on each of ``sets`` (:func:`linear_probe_predictions`)."""
    preds = linear_probe_predictions(train_f, train_y, sets, C=C, max_iter=max_iter, progress=progress)
    return {name: _accuracy(preds[name], y) for name, (_, y) in sets.items()}


def linear_probe_accuracy(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
                          C: float = 1.0, max_iter: int = 1000) -> float:
    """Logistic-regression accuracy (%) on standardised features."""
    return linear_probe_scores(train_f, train_y, {"test": (test_f, test_y)}, C=C, max_iter=max_iter)["test"]


def mlp_probe_accuracy(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
                       *, epochs: int = 100, batch_size: int = 256, hidden: int = 512, seed: int = 0) -> float:
    """2-layer MLP probe accuracy (%), trained with its own seeded generator."""
    return mlp_probe_scores(train_f, train_y, {"test": (test_f, test_y)}, epochs=epochs, batch_size=batch_size,
                            hidden=hidden, seed=seed)["test"]


def mlp_probe_scores(train_f: torch.Tensor, train_y: torch.Tensor, sets: EvalSets, *, epochs: int = 100,
                     batch_size: int = 256, hidden: int = 512, seed: int = 0,
                     progress: EvalProgress = NO_PROGRESS) -> Dict[str, float]:
    """2-layer MLP probe accuracy (%) on each of ``sets`` (:func:`mlp_probe_predictions`)."""
    preds = mlp_probe_predictions(train_f, train_y, sets, epochs=epochs, batch_size=batch_size, hidden=hidden,
                                  seed=seed, progress=progress)
    return {name: _accuracy(preds[name], y) for name, (_, y) in sets.items()}


def mlp_probe_predictions(train_f: torch.Tensor, train_y: torch.Tensor, sets: EvalSets, *, epochs: int = 100,
                          batch_size: int = 256, hidden: int = 512, seed: int = 0,
                          progress: EvalProgress = NO_PROGRESS) -> Dict[str, torch.Tensor]:
    """The 2-layer MLP probe's class of every image of each of ``sets``, one
    training run with its own seeded generator."""
    device = train_f.device
    mean, std = train_f.mean(dim=0), train_f.std(dim=0).clamp_min(1e-6)
    train_f = (train_f - mean) / std
    train_y = train_y.to(device)
    classes = _classes(train_y, sets)
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
    with progress.stage("MLP probe", epochs, "epochs") as shown:
        for _ in range(epochs):
            order = torch.randperm(len(train_f), generator=gen).to(device)
            for i in range(len(train_f) // batch_size):
                idx = order[i * batch_size : (i + 1) * batch_size]
                loss = F.cross_entropy(head(train_f[idx]), train_y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            shown.update()
    head.eval()
    preds = {}
    with torch.no_grad():
        for name, (f, _) in sets.items():
            f = (f.to(device) - mean) / std
            preds[name] = torch.cat([head(part).argmax(dim=1) for part in f.split(4096)])
    return preds


PROBES = ("linear", "mlp", "knn")


def evaluate_encoder(encoder: nn.Module, splits, to_input, *, knn_k: int = 20, knn_temperature: float = 0.07,
                     probe_epochs: int = 100, seed: int = 0, precision: str = "fp32",
                     progress: EvalProgress = NO_PROGRESS) -> Dict[str, object]:
    """Accuracies (%) of the frozen ``encoder``: ``{"linear", "mlp", "knn"}``
    on the test images and ``"val"``: the same three on the validation
    images (None without a validation split). ``splits`` is a
    :class:`train.splits.ProbeSplits`; ``progress`` shows each stage.
    ``"predictions"``: ``{split: {probe: int64 array}}``, every image's
    predicted class (``split`` "test", and "val" with a validation split), in
    the order of ``splits.<split>.indices``: the per-image record that paired
    tests over images need (:mod:`train.predictions`)."""
    device = next(encoder.parameters()).device

    def features(split, what):
        return (extract_features(encoder, split.images, to_input, precision=precision, progress=progress, what=what),
                split.labels.to(device))

    train_f, train_y = features(splits.train, "probe-train images")
    sets = {"test": features(splits.test, "test images")}
    if splits.val is not None:
        sets["val"] = features(splits.val, "validation images")
    classes = _classes(train_y, sets)
    preds = {
        "linear": linear_probe_predictions(train_f, train_y, sets, progress=progress),
        "mlp": mlp_probe_predictions(train_f, train_y, sets, epochs=probe_epochs, seed=seed, progress=progress),
        "knn": {name: knn_predictions(train_f, train_y, f, k=knn_k, temperature=knn_temperature, classes=classes,
                                      progress=progress, what={"test": "test", "val": "validation"}[name])
                for name, (f, _) in sets.items()},
    }
    acc = {probe: {name: _accuracy(preds[probe][name], y) for name, (_, y) in sets.items()} for probe in PROBES}
    val = {probe: acc[probe]["val"] for probe in PROBES} if "val" in sets else None
    predictions = {name: {probe: preds[probe][name].cpu().numpy() for probe in PROBES} for name in sets}
    return {**{probe: acc[probe]["test"] for probe in PROBES}, "val": val, "predictions": predictions}


def knn_monitor(encoder: nn.Module, splits, to_input, *, k: int = 20, temperature: float = 0.07,
                precision: str = "fp32", progress: EvalProgress = NO_PROGRESS) -> float:
    """kNN accuracy (%) on the validation images (the test images when there
    is no validation split), for the per-epoch monitor."""
    target, what = (splits.val, "validation") if splits.val is not None else (splits.test, "test")
    train_f = extract_features(encoder, splits.train.images, to_input, precision=precision, progress=progress,
                               what="probe-train images")
    f = extract_features(encoder, target.images, to_input, precision=precision, progress=progress,
                         what=f"{what} images")
    return knn_accuracy(train_f, splits.train.labels, f, target.labels, k=k, temperature=temperature,
                        progress=progress, what=what)
