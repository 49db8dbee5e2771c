#!/usr/bin/env python
"""Command line of the SinSim protocol: ``python train/run.py --help``.

    python train/run.py --dataset digits --method all        # every method, a few minutes on a CPU
    python train/run.py --dataset cifar10 --method sinsim --data-dir ../shared/data --device cuda
    python train/run.py --protocol paper --data-dir ../shared/data      # every experiment of the paper, see experiments/paper/
    python train/run.py --protocol campaign --minutes 8 --jobs 4        # advance the pre-registered campaign
    torchrun --standalone --nproc-per-node 8 train/run.py --dataset cifar10 --batch-size 4096 --sync-bn ...
                                                                        # data parallel, see train/parallel/

The arguments are parsed before torch is imported, so ``--help`` and
argument errors answer at once. Errors the user can act on (a missing
dataset, a folder in use, a full disk, a corrupt checkpoint, a diverged run)
end in one ``error:`` line and exit status 1. SIGTERM and SIGINT stop the run
at a step boundary with a checkpoint (:mod:`train.stopping`): one
``stopped by ...`` line, exit status 143 or 130.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root holds train/ and experiments/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.stopping import RunStopped, handle_stop_signals, stopped_line  # noqa: E402


def protocol_of(argv) -> str:
    """The value of ``--protocol`` in ``argv`` ("single" when absent)."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--protocol", default="single")
    return peek.parse_known_args(argv)[0].protocol


def line_buffered_output() -> None:
    """Print each line as it comes also into a file or a pipe (Python
    buffers 8 KB there otherwise: a log shows nothing for minutes)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(line_buffering=True)
            except (ValueError, OSError):
                pass


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    line_buffered_output()
    with handle_stop_signals():
        try:
            return _main(argv)
        except RunStopped as exc:  # before a run began (parsing, importing): nothing to save
            print(stopped_line(exc, "no run had started"), file=sys.stderr)
            return exc.exit_status


def _main(argv) -> int:
    if protocol_of(argv) == "paper":  # the paper's experiments, on the trainer's public API
        from experiments.paper.cli import main as paper_main

        return paper_main(argv)
    if protocol_of(argv) == "campaign":
        from experiments.paper.campaign.cli import main as campaign_main

        return campaign_main(argv)
    from train.config import parse_config
    from train.parallel import torchrun_world_size

    cfg = parse_config(argv)
    if torchrun_world_size() > 1:  # under torchrun: rank 0 runs the protocol, the others train with it
        from train.parallel.launch import run_distributed

        return run_distributed(cfg.device, cfg.dist_timeout, lambda: run_single(cfg))
    return run_single(cfg)


def run_single(cfg) -> int:
    """The single-run protocol (one process, or the driver of a torchrun job)."""
    from train.run_lock import hold_run_folder

    from train.command import run_command

    def body() -> int:
        with hold_run_folder(cfg.out):  # before the heavy imports: a folder in use is refused at once
            from train.protocol import run_protocol

            run_protocol(cfg)
        return 0

    kept = " (finished methods are kept)" if cfg.method == "all" else ""
    return run_command(body, f"continue with the same command plus --resume{kept} (out: {cfg.out})")


if __name__ == "__main__":
    sys.exit(main())
