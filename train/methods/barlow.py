"""Barlow Twins (Zbontar et al., ICML 2021, arXiv:2103.03230): the
cross-correlation of the two views' projections is pushed to the identity."""

from __future__ import annotations

from sinsim_ext.losses import BarlowTwinsLoss

from ..models import mlp
from .base import Method


class BarlowTwins(Method):
    name = "barlow"
    # ResNet-18 on CIFAR: solo-learn (da Costa et al., JMLR 2022),
    # scripts/pretrain/cifar/barlow.yaml and solo/methods/barlow_twins.py:
    #   optimiser      LARS (eta 0.02, clipped, biases and norms excluded: train/optim.py)
    #   lr             0.3 per 256 images, the same for every parameter (no
    #                  separate bias / BatchNorm rate: that, 0.0048 vs 0.2, is
    #                  the paper's ImageNet recipe, --bias-lr-scale 0.024)
    #   weight decay   1e-4
    #   projector      3 layers, 2048-2048-2048 (the paper's ImageNet: 8192)
    #   lambda         0.0051 (solo-learn's default; the paper: 5e-3)
    #   loss scale     0.1 (``scale_loss``; the paper's equation has none)
    #   augmentations  asymmetric, BYOL's (asymmetric.yaml; train/augment.py "byol")
    #   schedule       warm-up + cosine (train/optim.py)
    defaults = dict(optimizer="lars", lr=0.3, weight_decay=1e-4, proj_hidden_dim=2048, proj_output_dim=2048,
                    barlow_lambda=0.0051, barlow_scale=0.1)
    recipe = "byol"

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        self.projector = mlp(feature_dim, cfg.proj_hidden_dim, cfg.proj_output_dim, layers=3)
        self.barlow = BarlowTwinsLoss(lambda_offdiag=cfg.barlow_lambda, scale=cfg.barlow_scale)

    def embed(self, x1, x2):
        return self.projector(self.backbone(x1)), self.projector(self.backbone(x2))

    def loss_from(self, z1, z2):
        loss = self.barlow(z1, z2)
        return loss, {"barlow": loss}
