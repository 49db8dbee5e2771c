"""The common shape of a self-supervised method.

A method owns the encoder (``backbone``), its heads and its loss. Its recipe
(``train/recipes/methods/<name>.toml``: the published hyper-parameters with
their sources, checked there, and its augmentations) names the class;
subclasses set ``name``, build their heads in ``__init__`` from
``cfg.params`` (every hyper-parameter of the recipe, resolved) and implement
two steps:

* :meth:`embed`: the per-image outputs of the two views (projections,
  predictions, features; row ``i`` of each comes from image ``i``);
* :meth:`loss_from`: the loss of a batch from those outputs.

The training step is ``loss_from(*batch.gather(*embed(x1, x2)))``. In one
process ``batch`` is :class:`LocalBatch`, which gathers nothing; under
torchrun it all-gathers the outputs of every process
(:class:`train.parallel.model.GatheredBatch`), so the loss is that of the
whole global batch (NT-Xent's negatives, VICReg's covariance, Barlow Twins'
cross-correlation); :meth:`Method.distribute` is where a method that needs
more than gathered outputs under torchrun sets that up. The base class also
supplies the hook called after each optimiser step.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Tuple

import torch
from torch import nn

Terms = Dict[str, torch.Tensor]


class LocalBatch:
    """The batch is this process's: nothing to gather."""

    def gather(self, *tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tensors


class Method(nn.Module):
    name: ClassVar[str] = ""

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.cfg = cfg
        self.params: Dict[str, Any] = cfg.params
        self.batch = LocalBatch()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features ``h`` (what the probes see)."""
        return self.backbone(x)

    def embed(self, x1: torch.Tensor, x2: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The per-image outputs the loss compares, for two augmented views
        of the same images (each tensor has one row per image)."""
        raise NotImplementedError

    def loss_from(self, *outputs: torch.Tensor) -> Tuple[torch.Tensor, Terms]:
        """``(loss, terms)`` of the batch whose outputs (from :meth:`embed`)
        are given; ``terms`` are scalars logged per epoch."""
        raise NotImplementedError

    def loss_terms(self, x1: torch.Tensor, x2: torch.Tensor) -> Tuple[torch.Tensor, Terms]:
        """``(loss, terms)`` for two augmented views of the same images."""
        return self.loss_from(*self.batch.gather(*self.embed(x1, x2)))

    def training_step(self, x1: torch.Tensor, x2: torch.Tensor) -> Tuple[torch.Tensor, Terms]:
        loss, terms = self.loss_terms(x1, x2)
        return loss, {k: v.detach() for k, v in terms.items()}

    def convergence_limits(self) -> Dict[str, float]:
        """Terms that are convergence reports of an inner solver (the largest
        value is what matters, not the mean), each with the value above which
        the solve did not converge: ``{"sinkhorn_error": 1e-3}`` for SinSim.
        The engine keeps their maximum, reads it with the loss and warns."""
        return {}

    def distribute(self, batch, global_batch: int) -> None:
        """Under torchrun, before the method is wrapped for data-parallel
        training: ``batch`` gathers outputs over the processes
        (:class:`train.parallel.model.GatheredBatch`), ``global_batch`` is the
        number of images per step over all of them."""
        self.batch = batch

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called after every optimiser step (BYOL's target update)."""

    def trainable(self) -> nn.Module:
        """The modules the optimiser updates (all but a momentum target)."""
        return self
