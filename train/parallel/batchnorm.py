r"""BatchNorm over the global batch (``--sync-bn``).

On GPUs this is ``torch.nn.SyncBatchNorm``. It refuses CPU tensors, so on
CPUs (gloo) every BatchNorm becomes a :class:`GlobalBatchNorm`, which
computes the same statistics in plain PyTorch: each process forms the mean
and (biased) variance of its rows per channel, an all-gather with gradient
brings every process's ``(count, mean, var)``, and they are combined
exactly (Chan et al.'s parallel variance)::

    N = sum_r n_r,   mu = sum_r n_r mu_r / N,
    var = sum_r n_r (var_r + (mu_r - mu)^2) / N

then ``y = (x - mu) / sqrt(var + eps) * weight + bias``, and the running
statistics move towards ``mu`` and the unbiased ``var N / (N - 1)`` with the
layer's momentum, as BatchNorm does. Evaluation mode uses the running
statistics and no communication.

The all-gather's backward sums each process's gradient over the processes,
the convention of the rest of the loss (see :mod:`train.parallel.model`), so
with DistributedDataParallel's average the parameters get the gradient of one
process normalising the whole batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm{1,2,3}d whose training statistics are the global batch's.
    Same parameters and buffers as the layer it replaces (checkpoints load
    into either)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, group=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.group = group

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-d input (batch, channels, ...), got {input.dim()}-d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        dims = [0] + list(range(2, x.dim()))
        count = x.numel() // x.shape[1]
        xf = x.float()
        mean = xf.mean(dim=dims)
        var = xf.var(dim=dims, unbiased=False)
        local = torch.cat([torch.full((1,), float(count), device=x.device), mean, var])
        every = torch.stack(dist_nn.all_gather(local, group=self.group))  # (ranks, 1 + 2C)
        c = x.shape[1]
        counts, means, variances = every[:, :1], every[:, 1 : 1 + c], every[:, 1 + c :]
        total = counts.sum()
        mu = (counts * means).sum(0) / total
        sigma2 = (counts * (variances + (means - mu) ** 2)).sum(0) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = sigma2 * (total / (total - 1).clamp_min(1))
                self.running_mean.lerp_(mu.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mu.view(shape)) * torch.rsqrt(sigma2.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_to_global(module: nn.Module, group=None) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a
    :class:`GlobalBatchNorm` holding the same parameters and buffers (the same
    tensors: an optimiser built before still updates them), as
    ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` does."""
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, (GlobalBatchNorm, nn.SyncBatchNorm)):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, group)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_to_global(child, group))
    return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device, group=None) -> nn.Module:
    """Global BatchNorm for ``module``: torch's SyncBatchNorm on GPUs, :class:`GlobalBatchNorm` elsewhere."""
    if not dist.is_initialized():
        raise RuntimeError("--sync-bn needs the torch.distributed process group (run under torchrun)")
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, group)
    return convert_to_global(module, group)
