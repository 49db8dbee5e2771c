"""The common shape of a self-supervised method.

A method owns the encoder (``backbone``), its heads and its loss. Subclasses
set ``name``, their published ``defaults`` and augmentation ``recipe``, build
their heads in ``__init__`` and implement :meth:`loss_terms`; the base class
supplies the training step, the optimiser's parameter groups and the hook
called after each optimiser step.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Tuple

import torch
from torch import nn

Terms = Dict[str, torch.Tensor]


class Method(nn.Module):
    name: ClassVar[str] = ""
    #: Published hyper-parameters; the run's config fills its unset fields
    #: from here. ``lr`` is per 256 images (linear scaling with the batch).
    defaults: ClassVar[Dict[str, Any]] = {}
    #: Augmentation recipe, see :func:`train.augment.view_specs`.
    recipe: ClassVar[str] = "simclr"

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features ``h`` (what the probes see)."""
        return self.backbone(x)

    def loss_terms(self, x1: torch.Tensor, x2: torch.Tensor) -> Tuple[torch.Tensor, Terms]:
        """``(loss, terms)`` for two augmented views of the same images;
        ``terms`` are detached scalars logged per epoch."""
        raise NotImplementedError

    def training_step(self, x1: torch.Tensor, x2: torch.Tensor) -> Tuple[torch.Tensor, Terms]:
        loss, terms = self.loss_terms(x1, x2)
        return loss, {k: v.detach() for k, v in terms.items()}

    def convergence_limits(self) -> Dict[str, float]:
        """Terms that are convergence reports of an inner solver (the largest
        value is what matters, not the mean), each with the value above which
        the solve did not converge: ``{"sinkhorn_error": 1e-3}`` for SinSim.
        The engine keeps their maximum, reads it with the loss and warns."""
        return {}

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called after every optimiser step (BYOL's target update)."""

    def trainable(self) -> nn.Module:
        """The modules the optimiser updates (all but a momentum target)."""
        return self
