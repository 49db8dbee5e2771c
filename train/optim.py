r"""Optimisers and the learning-rate schedule of the pretraining runs.

LARS (You, Gitman, Ginsburg, "Large Batch Training of Convolutional Networks",
arXiv:1708.03888) is what SimCLR, BYOL, VICReg and Barlow Twins train with.
PyTorch has no LARS, so :class:`LARS` adds the layer-wise trust ratio to
``torch.optim.SGD``: for every weight ``w`` with gradient ``g``::

    g <- g + wd * w
    g <- g * min(eta * |w| / (|g_0| + wd * |w|) / lr, 1)     (|g_0|: norm before weight decay)

then an SGD momentum step. Biases and normalisation parameters are in a
group without weight decay or adaptation, as in SimCLR and BYOL. The
clipped variant and ``eta = 0.02`` follow solo-learn's CIFAR recipes
(``solo/utils/lars.py``). Norms are computed with foreach kernels and the
ratio with tensor ops, so a step never synchronises with the device.
"""

from __future__ import annotations

import math
from typing import Iterable, List

import torch
from torch import nn


def parameter_groups(module: nn.Module, weight_decay: float, lr: float, bias_lr_scale: float = 1.0) -> List[dict]:
    """Weights (>= 2-d) with weight decay and LARS adaptation; biases and
    norm parameters (1-d) without either, at ``bias_lr_scale`` times the
    learning rate (Barlow Twins: 0.0048 / 0.2)."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "lars": True, "lr": lr},
        {"params": no_decay, "weight_decay": 0.0, "lars": False, "lr": lr * bias_lr_scale},
    ]


class LARS(torch.optim.SGD):
    """SGD with momentum and LARS trust ratios on the groups marked ``lars``."""

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, eta: float = 0.02, clip: bool = True, eps: float = 1e-8):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=0.0, foreach=True)
        for group in self.param_groups:
            group.setdefault("lars", True)
            group["lars_weight_decay"] = group.pop("weight_decay", 0.0)
            group["weight_decay"] = 0.0  # applied before the trust ratio instead
        self.eta, self.clip, self.eps = eta, clip, eps

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params or not group["lars"]:
                continue
            grads = [p.grad for p in params]
            wd = group["lars_weight_decay"]
            w_norm = torch.stack(torch._foreach_norm(params))
            g_norm = torch.stack(torch._foreach_norm(grads))
            if wd:
                torch._foreach_add_(grads, params, alpha=wd)
            ratio = self.eta * w_norm / (g_norm + wd * w_norm + self.eps)
            ratio = torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
            if self.clip:
                ratio = torch.clamp(ratio / max(group["lr"], 1e-12), max=1.0)
            torch._foreach_mul_(grads, list(ratio.unbind(0)))
        return super().step(closure)


def build_optimizer(name: str, module: nn.Module, lr: float, weight_decay: float, momentum: float = 0.9,
                    bias_lr_scale: float = 1.0) -> torch.optim.Optimizer:
    groups = parameter_groups(module, weight_decay, lr, bias_lr_scale)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    for g in groups:
        g.pop("lars")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, foreach=True)
    raise ValueError(f"unknown optimizer {name!r}")


class WarmupCosine:
    """Learning-rate factor at step ``t``: linear warm-up from 0 over
    ``warmup`` steps, then a half cosine down to 0 at ``total`` steps (the
    schedule of SimCLR, BYOL, VICReg and Barlow Twins). A callable object,
    so ``LambdaLR.state_dict`` saves it."""

    def __init__(self, total: int, warmup: int):
        self.total, self.warmup = max(1, int(total)), max(0, int(warmup))

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps))


def change_base_lrs(optimizer: torch.optim.Optimizer, scheduler, base_lrs: List[float]) -> None:
    """Continue a restored ``LambdaLR`` from its current step with new base
    learning rates (a resumed run given another ``--lr``): the schedule's
    shape is kept, its scale changes from this step on."""
    scheduler.base_lrs = list(base_lrs)
    for group, base, factor in zip(optimizer.param_groups, base_lrs, scheduler.lr_lambdas):
        group["initial_lr"] = base
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
