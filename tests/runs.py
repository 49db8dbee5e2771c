"""Tiny trainer runs on digits (or on a small image folder written here) for the command-line tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "train" / "run.py"
# 4 steps of 32 images per epoch on 8 px digits, no probes: seconds per epoch
TINY = ["--dataset", "digits", "--train-subset", "128", "--batch-size", "32", "--image-size", "8", "--no-eval",
        "--method", "simclr"]


def command(out, *extra):
    return [sys.executable, str(RUN), *TINY, "--out", str(out), *extra]


def run_cli(out, *extra, **kwargs):
    return subprocess.run(command(out, *extra), capture_output=True, text=True, timeout=600, **kwargs)


def error_line(stderr: str) -> str:
    """The one line of a clean error (fails the test if there is more, or a traceback)."""
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def write_image_folder(root, seed=0, classes=("ant", "bee"), train_per_class=8, test_per_class=4, size=8,
                       constant_channel=None):
    """A small ``--dataset folder`` source: random RGB PNGs (lossless) in
    ``train/<class>/`` and ``test/<class>/``; ``constant_channel``: that
    channel is 0 in every image."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(count):
                x = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
                if constant_channel is not None:
                    x[..., constant_channel] = 0
                Image.fromarray(x).save(root / split / cls / f"{i}.png")
    return root


def folder_args(data_dir, out, *extra, cache=None):
    """Arguments of a tiny simclr run on the image folder ``data_dir`` (8 px,
    batches of 4, no probes, its decoded cache next to ``out`` unless given)."""
    cache = cache if cache is not None else Path(out).parent / "cache"
    return ["--dataset", "folder", "--data-dir", str(data_dir), "--cache-dir", str(cache), "--image-size", "8",
            "--batch-size", "4", "--val-fraction", "0", "--no-eval", "--method", "simclr", "--epochs", "1",
            "--out", str(out), *extra]
