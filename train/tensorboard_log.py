"""TensorBoard event files beside ``metrics.csv`` (``--tensorboard``).

Optional: it needs the ``tensorboard`` package (``pip install tensorboard``,
or the project's ``tensorboard`` extra); without it the trainer runs as
ever and ``--tensorboard`` is refused with one line saying what to install.

A run writes ``OUT/tensorboard/`` (each method of ``--method all`` and each
paper cell in its own folder; under torchrun only the driver writes), the
x axis being the optimiser steps done:

* ``train/loss``, ``train/lr``: the mean loss of each window of
  ``--check-every`` steps (read back then anyway) and the learning rate at
  its end;
* ``epoch/<column>``: each column of ``metrics.csv`` (loss, the loss's
  terms, ``sinkhorn_error``, lr, images/s, the kNN monitor) at the epoch's
  last step;
* ``eval/test/<probe>``, ``eval/val/<probe>`` (linear, MLP, kNN accuracy, %)
  and ``geometry/<measure>`` (alignment, uniformity, effective rank,
  silhouette) at the last step.

A resumed run drops what an earlier session wrote after the resumed step
(``purge_step``), so the curves do not double back.
"""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional

FOLDER = "tensorboard"
MISSING = ("--tensorboard needs the tensorboard package, which is not installed: pip install tensorboard "
           "(or pip install -e '.[tensorboard]'), or leave --tensorboard out (metrics.csv has the same numbers)")


def available() -> bool:
    """Whether the tensorboard package can be imported (without importing it)."""
    return importlib.util.find_spec("tensorboard") is not None


class Board:
    """The event writer of one run folder."""

    def __init__(self, out: Path, resume_step: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(out) / FOLDER
        # events an earlier session wrote after this run's start are dropped (all of them for a fresh run)
        self.writer = SummaryWriter(str(self.folder), purge_step=resume_step + 1)

    def scalars(self, prefix: str, values: Dict[str, Optional[float]], step: int) -> None:
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@contextmanager
def open_board(out: Path, resumed_at: int = 0) -> Iterator[Board]:
    """The :class:`Board` of the run folder ``out`` for a ``with`` block
    (``resumed_at``: the steps a resumed run had done; 0 for a fresh one)."""
    board = Board(out, resumed_at)
    try:
        yield board
    finally:
        board.close()
