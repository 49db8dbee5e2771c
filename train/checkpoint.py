"""Atomic file writes and the training checkpoint.

Every file a run writes goes to a temporary file in the same folder, is
flushed to disk, then renamed over the target (``os.replace``), so a killed
run leaves either the old or the new file, never a torn one.

The checkpoint holds everything an exact resume needs: the method's weights
and buffers (including BYOL's target network), the optimiser and scheduler
states, the number of finished epochs and steps, the per-epoch metrics so
far, every random-number generator (Python, NumPy, torch CPU and CUDA, and
the run's own generators for shuffling and augmentation) and the config's
training fields, checked on resume.
"""

from __future__ import annotations

import io
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


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


class CheckpointMismatch(RuntimeError):
    """The checkpoint was written by a run with different training settings."""


def save_checkpoint(path: Path, *, method, optimizer, scheduler, epoch: int, step: int, metrics: list,
                    generators: Dict[str, torch.Generator], signature: Dict[str, Any]) -> None:
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
        },
        path,
    )


def load_checkpoint(path: Path, signature: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The checkpoint at ``path`` (None when there is none), after checking
    that it belongs to a run with this training ``signature``."""
    path = Path(path)
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state.get("signature", {})
    diff = {k: (saved.get(k), v) for k, v in signature.items() if saved.get(k) != v}
    if diff:
        details = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise CheckpointMismatch(
            f"{path} was written with different training settings ({details}); "
            "resume with the same flags, or use another --out"
        )
    return state


def restore(state: Dict[str, Any], *, method, optimizer, scheduler, generators: Dict[str, torch.Generator]) -> None:
    method.load_state_dict(state["method"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"], generators)
