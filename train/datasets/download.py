"""Fetching a dataset with torchvision's own download code, when allowed.

The loaders read the files themselves (torchvision's dataset classes insist
on checksums of the complete originals, so they reject both subsets and
read-only gzip-only copies); torchvision is used for what it does well,
fetching and unpacking the official archives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional


def try_download(fetch: Callable[[str], object], root: Path, allowed: bool) -> Optional[str]:
    """Run ``fetch(root)`` (e.g. ``lambda r: torchvision.datasets.MNIST(r, download=True)``).

    Returns None on success, or a short reason why there is no download
    (not allowed, no network, unwritable directory...), for error messages.
    """
    if not allowed:
        return "downloading is off (--no-download)"
    try:
        root.mkdir(parents=True, exist_ok=True)
        fetch(str(root))
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable download"
        detail = " ".join(str(exc).split())  # torchvision's messages span lines
        return f"download failed: {type(exc).__name__}: {detail[:300]}"
    return None
