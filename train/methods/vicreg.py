"""VICReg (Bardes, Ponce, LeCun, ICLR 2022, arXiv:2105.04906): variance,
invariance and covariance terms on the expander's outputs."""

from __future__ import annotations

from sinsim_ext.losses import VICRegLoss

from ..models import mlp
from .base import Method


class VICReg(Method):
    name = "vicreg"
    # ResNet-18 on CIFAR: solo-learn (da Costa et al., JMLR 2022),
    # scripts/pretrain/cifar/vicreg.yaml:
    #   optimiser      LARS (eta 0.02, clipped, biases and norms excluded: train/optim.py)
    #   lr             0.3 per 256 images
    #   weight decay   1e-4
    #   expander       3 layers, 2048-2048-2048 (the paper's ImageNet: 8192)
    #   coefficients   invariance 25, variance 25, covariance 1 (also the paper, section 4.3),
    #                  with solo-learn's sum of the two views' variance terms
    #                  (solo/losses/vicreg.py; the authors' code halves it)
    #   augmentations  its own symmetric recipe: crop scale (0.2, 1), jitter
    #                  (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2, no blur,
    #                  solarisation 0.1 (train/augment.py "vicreg"; larger
    #                  images: the authors' ImageNet pipeline, BYOL's)
    #   schedule       warm-up + cosine (train/optim.py)
    defaults = dict(optimizer="lars", lr=0.3, weight_decay=1e-4, proj_hidden_dim=2048, proj_output_dim=2048)
    recipe = "vicreg"

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        self.projector = mlp(feature_dim, cfg.proj_hidden_dim, cfg.proj_output_dim, layers=3)
        self.vicreg = VICRegLoss(sim_weight=25.0, var_weight=25.0, cov_weight=1.0, variance_views="sum")

    def embed(self, x1, x2):
        return self.projector(self.backbone(x1)), self.projector(self.backbone(x2))

    def loss_from(self, z1, z2):
        terms = self.vicreg.terms(z1, z2)
        return self.vicreg.combine(terms), terms
