#!/usr/bin/env python
"""Command line of the SinSim protocol: ``python train/run.py --help``.

    python train/run.py --dataset digits --method all        # every method, a few minutes on a CPU
    python train/run.py --dataset cifar10 --method sinsim --data-dir ../shared/data --device cuda
    python train/run.py --protocol paper --data-dir ../shared/data      # every experiment of the paper, see train/paper/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.checkpoint import CheckpointMismatch  # noqa: E402
from train.config import parse_config  # noqa: E402
from train.datasets import DatasetError  # noqa: E402
from train.protocol import RunError, run_protocol  # noqa: E402


def protocol_of(argv) -> str:
    """The value of ``--protocol`` in ``argv`` ("single" when absent)."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--protocol", default="single")
    return peek.parse_known_args(argv)[0].protocol


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if protocol_of(argv) == "paper":
        from train.paper.cli import main as paper_main

        return paper_main(argv)
    cfg = parse_config(argv)
    try:
        run_protocol(cfg)
    except (DatasetError, RunError, CheckpointMismatch) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with the same command plus --resume (out: {cfg.out})", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
