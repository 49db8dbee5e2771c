"""SimCLR (Chen et al., ICML 2020, arXiv:2002.05709): NT-Xent on projections."""

from __future__ import annotations

import torch

from sinsim_ext.losses import NTXentLoss

from ..models import mlp
from .base import Method


class SimCLR(Method):
    name = "simclr"
    # ResNet-18 on CIFAR: solo-learn (da Costa et al., JMLR 2022),
    # scripts/pretrain/cifar/simclr.yaml:
    #   optimiser      LARS (eta 0.02, clipped, biases and norms excluded: train/optim.py)
    #   lr             0.4 per 256 images
    #   weight decay   1e-4
    #   temperature    0.2 (the SimCLR paper's CIFAR-10 runs: 0.5)
    #   projector      2 layers, 2048 -> 256 (the paper's CIFAR-10 runs: 128-d)
    #   augmentations  symmetric; for 32 px colour strength 0.5 and no blur: the
    #                  SimCLR paper's CIFAR-10 setting, appendix B.9 (solo-learn's
    #                  symmetric.yaml uses strength 0.8 with blur); larger images:
    #                  strength 1.0 and blur (appendix A); train/augment.py "simclr"
    #   schedule       warm-up + cosine (train/optim.py)
    defaults = dict(optimizer="lars", lr=0.4, weight_decay=1e-4, temperature=0.2, proj_hidden_dim=2048, proj_output_dim=256)
    recipe = "simclr"

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        self.projector = mlp(feature_dim, cfg.proj_hidden_dim, cfg.proj_output_dim)
        self.ntxent = NTXentLoss(cfg.temperature)

    def encode_pair(self, x1, x2):
        """Features and projections of both views, in one batched pass."""
        h = self.backbone(torch.cat([x1, x2]))
        z = self.projector(h)
        return h.chunk(2), z.chunk(2)

    def embed(self, x1, x2):
        _, (z1, z2) = self.encode_pair(x1, x2)
        return z1, z2

    def loss_from(self, z1, z2):
        loss = self.ntxent(z1, z2)
        return loss, {"ntxent": loss}
