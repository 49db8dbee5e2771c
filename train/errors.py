"""The trainer's error types: each carries a one-line message for the user
(what happened, to which path, and what to do), printed as ``error: ...``
with exit status 1 by ``train/run.py``. None of them needs torch.

* :class:`RunError`: one run cannot start or cannot go on (a diverged loss,
  a corrupt checkpoint, a batch too small). In the paper protocol this fails
  one cell and the others go on.
* :class:`StorageError`: the file system refused a write (read-only, full, a
  file where a folder should be). Every other run would fail the same way,
  so it stops the whole command.
* :class:`FolderBusy`: another process owns the output folder.
"""

from __future__ import annotations


class TrainerError(RuntimeError):
    """Base of the errors whose message is the whole story (no traceback)."""


class RunError(TrainerError):
    """A run cannot start or cannot go on; the message says why and what to do."""


class StorageError(TrainerError):
    """A file or folder could not be written; the message names the path."""


class FolderBusy(TrainerError):
    """The output folder is held by another live run; the message names it."""
