"""The training checkpoint: what an exact resume needs, sealed with a checksum.

The checkpoint holds the method's weights and buffers (including BYOL's
target network), the optimiser and scheduler states, the number of finished
epochs and steps, the per-epoch metrics so far, every random-number generator
(Python, NumPy, torch CPU and CUDA, and the run's own generators for
shuffling and augmentation), the trainer's divergence reference, the
learning-rate changes made on resume, and the config's training fields and
the fingerprint of the images trained on (:data:`DATA_KEY`), checked on
resume, with the images' source.

Integrity: the file is the zip archive ``torch.save`` writes, whose archive
comment (the last field of a zip file; ``torch.load`` and ``zipfile`` ignore
it) is set to ``sinsim-sha256:<64 hex digits>``, the SHA-256 of every byte
before the comment. :func:`load_checkpoint` recomputes it before unpickling
anything, so an empty, truncated or altered file is refused with one line
naming it (:class:`CorruptCheckpoint`) instead of a miniz traceback or, worse,
resuming with changed weights. Files are written atomically by
:mod:`train.storage` (re-exported here for the older imports).

Two checkpoints: a new checkpoint replaces ``checkpoint.pt`` only after the
one there, if intact, is kept as ``checkpoint.previous.pt``
(:func:`previous_path`), so one damaged file does not cost the run.
:func:`load_newest_checkpoint` resumes from the newer (more steps) of the
intact ones and says which, and why when it is not the last.
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np
import torch

from .errors import RunError, TrainerError
from .storage import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: F401  (re-exported)

_MAGIC = b"sinsim-sha256:"
_TRAILER = len(_MAGIC) + 64
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory record: 22 bytes, the last 2 the comment length
_EOCD_SIZE = 22


class CorruptCheckpoint(RunError):
    """The checkpoint file is empty, truncated or altered: ``what`` (the path
    and the problem), then the advice."""

    def __init__(self, what: str, advice: str):
        super().__init__(f"{what}. {advice}")
        self.what = what


def seal(data: bytes) -> bytes:
    """``torch.save`` output with the SHA-256 of its bytes as the zip comment."""
    if len(data) < _EOCD_SIZE or data[-_EOCD_SIZE:-_EOCD_SIZE + 4] != _EOCD or data[-2:] != b"\0\0":
        raise ValueError("torch.save did not end with a zip end-of-central-directory record without comment")
    head = data[:-2] + struct.pack("<H", _TRAILER)
    return head + _MAGIC + hashlib.sha256(head).hexdigest().encode("ascii")


def verify(data: bytes) -> Optional[str]:
    """None when ``data`` is a sealed checkpoint whose checksum matches,
    else what is wrong with it."""
    if not data:
        return "it is empty (0 bytes)"
    if len(data) < _EOCD_SIZE + _TRAILER or data[-_TRAILER:-64] != _MAGIC:
        return (f"it has no checksum at its end ({len(data)} bytes): it is truncated, "
                "or was not written by this trainer")
    head, written = data[:-_TRAILER], data[-64:]
    if hashlib.sha256(head).hexdigest().encode("ascii") != written:
        return "its SHA-256 does not match the one written with it: the file was damaged or altered"
    return None


def previous_path(path: Path) -> Path:
    """Where the checkpoint before ``path``'s is kept: ``checkpoint.previous.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def is_intact(path: Path) -> bool:
    """``path`` is a sealed checkpoint whose checksum holds."""
    try:
        return verify(Path(path).read_bytes()) is None
    except OSError:
        return False


def atomic_torch_save(obj: Any, path: Path, keep_previous: bool = False) -> None:
    """``torch.save`` sealed with its checksum, written atomically;
    ``keep_previous``: the checkpoint there, if intact, becomes the previous
    one (a damaged one is not kept: the previous stays)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    path = Path(path)
    keep = previous_path(path) if keep_previous and path.exists() and is_intact(path) else None
    atomic_write_bytes(path, seal(buffer.getvalue()), keep_previous=keep)


def rng_state(generators: Dict[str, torch.Generator]) -> Dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "generators": {name: g.get_state() for name, g in generators.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Dict[str, Any], generators: Dict[str, torch.Generator]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        g.set_state(state["generators"][name])


class CheckpointMismatch(TrainerError):
    """The checkpoint was written by a run with different training settings."""


DATA_KEY = "data_fingerprint"
"""The signature's entry for the images a run trains on
(:attr:`train.datasets.ImageData.fingerprint`); the checkpoint keeps their
source (``data_source``) for the message."""


def save_checkpoint(path: Path, *, method, optimizer, scheduler, epoch: int, step: int, metrics: list,
                    generators: Dict[str, torch.Generator], signature: Dict[str, Any],
                    extra: Optional[Dict[str, Any]] = None) -> None:
    atomic_torch_save(
        {
            "epoch": epoch,
            "step": step,
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "metrics": metrics,
            "rng": rng_state(generators),
            "signature": signature,
            **(extra or {}),
        },
        path,
        keep_previous=True,
    )


def corrupt(path: Path, problem: str) -> CorruptCheckpoint:
    return CorruptCheckpoint(f"{path} cannot be resumed: {problem}",
                             "Start this run again with --overwrite (which discards it; in the paper protocol, "
                             "delete the file), or pass another --out")


def read_checkpoint(path: Path) -> Dict[str, Any]:
    """The verified contents of the checkpoint at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise corrupt(path, f"it cannot be read ({exc.strerror or exc})") from exc
    problem = verify(data)
    if problem is not None:
        raise corrupt(path, problem)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - the checksum held, so this is a version problem
        raise corrupt(path, f"torch.load failed although its checksum holds ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:200]})") from exc


def load_checkpoint(path: Path, signature: Dict[str, Any], may_change: Iterable[str] = (),
                    data_source: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The checkpoint at ``path`` (None when there is none), after checking
    its checksum and that it belongs to a run with this training
    ``signature``; the fields in ``may_change`` may differ (the caller
    applies and records the change). With :data:`DATA_KEY` in ``signature``
    the images must be the same too (``data_source``: where this run read
    them, for the message); a checkpoint that predates the fingerprint is
    not checked for them."""
    path = Path(path)
    if not path.exists():
        return None
    state = read_checkpoint(path)
    check_signature(path, state, signature, may_change, data_source)
    return state


def check_signature(path: Path, state: Dict[str, Any], signature: Dict[str, Any], may_change: Iterable[str] = (),
                    data_source: Optional[str] = None) -> None:
    """Raise :class:`CheckpointMismatch` unless the checkpoint ``state`` (read
    from ``path``) belongs to a run with this training ``signature``
    (``data_source``: where this run read its images, for the message)."""
    saved = state.get("signature", {})
    saved_world, world = saved.get("world_size", 1), signature.get("world_size", 1)
    if saved_world != world:
        raise CheckpointMismatch(
            f"{path} was written by a run of {saved_world} process(es) and this one has {world}: the data order and "
            "the augmentations depend on the number of processes. Resume with the same number (torchrun "
            "--nnodes x --nproc-per-node, or plain python for 1), or use another --out"
        )
    _check_data(path, state, signature, data_source)
    diff = {k: (saved.get(k), v) for k, v in signature.items()
            if saved.get(k) != v and k not in set(may_change) and k != DATA_KEY}
    if diff:
        details = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise CheckpointMismatch(
            f"{path} was written with different training settings ({details}); "
            "resume with the same flags, or use another --out"
        )


def position(state: Dict[str, Any]) -> str:
    """Where a checkpoint stands: "after epoch 2", "at step 7 of 21 of epoch 3"."""
    partial = (state.get("trainer") or {}).get("in_progress")
    if partial is None:
        return f"after epoch {state['epoch']}"
    return f"at step {partial['done']} of {partial['steps']} of epoch {partial['epoch']}"


def _steps_done(state: Dict[str, Any]) -> int:
    partial = (state.get("trainer") or {}).get("in_progress")
    return state["step"] + (partial["done"] if partial is not None else 0)


def load_newest_checkpoint(path: Path, signature: Dict[str, Any], may_change: Iterable[str] = (),
                           log=print, data_source: Optional[str] = None
                           ) -> Tuple[Optional[Dict[str, Any]], Optional[Path]]:
    """``(state, its path)`` of the newest intact checkpoint among ``path``
    and :func:`previous_path` of it, checked as :func:`load_checkpoint`
    does; ``(None, None)`` when there is none. A damaged one is named in a
    note (``log``) when the other one is used; when both are damaged (or the
    only one is), :class:`CorruptCheckpoint` names each problem."""
    path = Path(path)
    found, problems = [], []
    for candidate in (path, previous_path(path)):
        if not candidate.exists():
            continue
        try:
            found.append((read_checkpoint(candidate), candidate))
        except CorruptCheckpoint as exc:
            problems.append((candidate, exc))
    if not found:
        if not problems:
            return None, None
        if len(problems) == 1:
            raise problems[0][1]
        raise CorruptCheckpoint("; ".join(exc.what for _, exc in problems),
                                "Start this run again with --overwrite (which discards them; in the paper protocol, "
                                "delete the files), or pass another --out")
    state, used = max(found, key=lambda f: (_steps_done(f[0]), f[1] == path))
    for _, exc in problems:
        log(f"note: {exc.what}; resuming from {used} instead")
    check_signature(used, state, signature, may_change, data_source)
    return state, used


def _check_data(path: Path, state: Dict[str, Any], signature: Dict[str, Any], data_source: Optional[str]) -> None:
    now, saved = signature.get(DATA_KEY), state.get("signature", {}).get(DATA_KEY)
    if now is None or saved is None or now == saved:
        return
    raise CheckpointMismatch(
        f"{path} was trained on other images than this run loaded: {state.get('data_source') or 'its source'} "
        f"(fingerprint {saved}) then, {data_source or 'this --data-dir'} (fingerprint {now}) now. Resume with the "
        "--dataset and --data-dir of that run, or use another --out"
    )


def restore(state: Dict[str, Any], *, method, optimizer, scheduler, generators: Dict[str, torch.Generator]) -> None:
    method.load_state_dict(state["method"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"], generators)
