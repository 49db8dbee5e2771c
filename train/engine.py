"""The pretraining loop.

The whole pretraining set lives on the device as uint8; each step indexes a
batch out of a per-epoch permutation, augments it on the device and takes an
optimiser step, all without a DataLoader (as in KellerJordan/cifar10-airbench).
On CUDA the step runs under bf16 autocast with channels-last activations, and
optionally ``torch.compile``.

A step never synchronises with the device: the loss is accumulated on the
device, and only every ``check_every`` steps and at the end of each epoch is
it read back, which is also when a NaN/inf loss is detected. The step index of
the first bad loss is tracked on the device, so the error can name it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from tqdm.auto import tqdm

from .augment import TwoViews
from .methods import Method


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf."""


@dataclass
class EpochStats:
    epoch: int
    loss: float
    terms: Dict[str, float]
    lr: float
    seconds: float
    images_per_second: float

    def row(self) -> Dict[str, float]:
        return {"epoch": self.epoch, "loss": self.loss, **self.terms, "lr": self.lr,
                "seconds": self.seconds, "images_per_second": self.images_per_second}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """Runs epochs of self-supervised training of ``method`` on ``images``."""

    def __init__(
        self,
        method: Method,
        images: torch.Tensor,
        views: TwoViews,
        optimizer: torch.optim.Optimizer,
        scheduler,
        *,
        batch_size: int,
        epochs: int,
        generator: torch.Generator,
        precision: str = "fp32",
        compile: bool = False,
        check_every: int = 50,
        progress: Optional[bool] = None,
        label: str = "",
    ):
        self.method, self.images, self.views = method, images, views
        self.optimizer, self.scheduler = optimizer, scheduler
        self.device = images.device
        self.batch_size = min(batch_size, len(images))
        self.steps_per_epoch = len(images) // self.batch_size
        self.epochs = epochs
        self.total_steps = self.steps_per_epoch * epochs
        self.generator = generator
        self.check_every = check_every
        self.progress = progress  # None: tqdm shows bars only on a terminal
        self.label = label
        self.channels_last = self.device.type == "cuda"
        self.autocast = (
            (lambda: torch.autocast("cuda", dtype=torch.bfloat16))
            if precision == "bf16"
            else contextlib.nullcontext
        )
        self.step_fn: Callable = method.training_step
        if compile:
            self.step_fn = torch.compile(method.training_step)
            views.compile()
        if self.channels_last:
            method.to(memory_format=torch.channels_last)

    def _train_step(self, batch: torch.Tensor):
        v1, v2 = self.views(batch, self.generator)
        if self.channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            loss, terms = self.step_fn(v1, v2)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach(), terms

    def train_epoch(self, epoch: int, first_step: int) -> EpochStats:
        """One pass over a fresh permutation; ``epoch`` counts from 1."""
        self.method.train()
        order = torch.randperm(len(self.images), generator=self.generator, device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        term_sums: Dict[str, torch.Tensor] = {}
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        _sync(self.device)
        start = time.perf_counter()
        bar = tqdm(range(self.steps_per_epoch), desc=f"{self.label} epoch {epoch}/{self.epochs}",
                   unit="step", leave=False, disable=None if self.progress is None else not self.progress,
                   dynamic_ncols=True)
        for i in bar:
            step = first_step + i
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            loss, terms = self._train_step(self.images[idx])
            self.method.after_optimizer_step(step + 1, self.total_steps)
            loss_sum += loss
            for k, v in terms.items():
                term_sums[k] = term_sums.get(k, 0) + v.float()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
            if (i + 1) % self.check_every == 0 or i + 1 == self.steps_per_epoch:
                self._check(first_bad, epoch)
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{loss_sum.item() / (i + 1):.4f}",
                                img_s=f"{(i + 1) * self.batch_size / max(elapsed, 1e-9):.0f}")
        bar.close()
        _sync(self.device)
        seconds = time.perf_counter() - start
        n = self.steps_per_epoch
        return EpochStats(
            epoch=epoch,
            loss=loss_sum.item() / n,
            terms={k: v.item() / n for k, v in term_sums.items()},
            lr=lr,
            seconds=seconds,
            images_per_second=n * self.batch_size / seconds,
        )

    def _check(self, first_bad: torch.Tensor, epoch: int) -> None:
        bad = int(first_bad.item())
        if bad >= 0:
            raise NonFiniteLossError(
                f"the training loss became NaN/inf at step {bad + 1} (epoch {epoch}); "
                "try a longer --warmup-epochs or a lower --lr (a short run's warm-up is short: epochs/10)"
            )

    def fit(self, start_epoch: int, on_epoch_end: Callable[[EpochStats], None]) -> List[EpochStats]:
        """Train epochs ``start_epoch + 1 .. epochs``, calling ``on_epoch_end``
        after each one (checkpointing, logging)."""
        stats = []
        for epoch in range(start_epoch + 1, self.epochs + 1):
            s = self.train_epoch(epoch, first_step=(epoch - 1) * self.steps_per_epoch)
            on_epoch_end(s)
            stats.append(s)
        return stats
