"""What torchrun tells a process through its environment (no torch needed)."""

from __future__ import annotations

import os


def torchrun_world_size() -> int:
    """The number of processes of the job (``WORLD_SIZE``; 1 outside torchrun)."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(text)
    except ValueError:
        raise SystemExit(f"error: WORLD_SIZE={text!r} in the environment is not a number of processes") from None


def torchrun_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def torchrun_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))
