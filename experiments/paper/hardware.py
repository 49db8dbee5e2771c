"""What machine and code an invocation ran on (a line of ``sessions.jsonl``)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Dict

import torch

from train import git_state


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> Dict[str, object]:
    info: Dict[str, object] = {
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device == "cuda" else None,
        "platform": platform.platform(),
        "git": git_state(),
    }
    try:
        import sinsim_ext

        info["sinsim_ext_backends"] = list(sinsim_ext.backends())
    except Exception:  # noqa: BLE001 - the extension is not built: the reference backend runs
        info["sinsim_ext_backends"] = None
    return info
