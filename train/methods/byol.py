"""BYOL (Grill et al., NeurIPS 2020, arXiv:2006.07733).

An online network (encoder, projector, predictor) predicts the projection a
momentum target network (encoder, projector) gives to the other view::

    L = L_byol(q(z1), z2') + L_byol(q(z2), z1')

The target's weights follow the online ones: ``xi <- tau_k xi + (1 - tau_k)
theta`` after each step, with ``tau_k = 1 - (1 - tau_base) (cos(pi k/K) + 1) / 2``
rising from ``tau_base`` to 1 over the ``K`` training steps (BYOL, section
3.2). As in solo-learn (``solo/utils/momentum.py``, called from
``on_train_batch_end``), the update after the ``k``-th optimiser step
(``k = 1 .. K``) uses ``tau_{k-1}``: the first one uses ``tau_base``.
Parameters only: the target's BatchNorm uses batch statistics in training.
Hyper-parameters and their sources: ``train/recipes/methods/byol.toml``.
"""

from __future__ import annotations

import copy
import math

import torch

from sinsim_ext.losses import BYOLLoss

from ..models import mlp
from .base import Method


class BYOL(Method):
    name = "byol"

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        p = cfg.params
        self.projector = mlp(feature_dim, p["proj_hidden_dim"], p["proj_output_dim"])
        self.predictor = mlp(p["proj_output_dim"], p["pred_hidden_dim"], p["proj_output_dim"])
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.tau_base = p["ema_tau"]
        self.byol = BYOLLoss()

    def trainable(self):
        return torch.nn.ModuleList([self.backbone, self.projector, self.predictor])

    def embed(self, x1, x2):
        p1 = self.predictor(self.projector(self.backbone(x1)))
        p2 = self.predictor(self.projector(self.backbone(x2)))
        with torch.no_grad():
            t1 = self.target_projector(self.target_backbone(x1))
            t2 = self.target_projector(self.target_backbone(x2))
        return p1, p2, t1, t2

    def loss_from(self, p1, p2, t1, t2):
        loss = self.byol(p1, t2) + self.byol(p2, t1)
        return loss, {"byol": loss}

    def tau(self, step: int, total_steps: int) -> float:
        return 1 - (1 - self.tau_base) * (math.cos(math.pi * step / max(1, total_steps)) + 1) / 2

    @torch.no_grad()
    def after_optimizer_step(self, step, total_steps):
        """``step``: optimiser steps taken so far (1 after the first)."""
        tau = self.tau(step - 1, total_steps)
        for online, target in ((self.backbone, self.target_backbone), (self.projector, self.target_projector)):
            torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 1 - tau)
