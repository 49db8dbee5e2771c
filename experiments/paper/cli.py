"""``python train/run.py --protocol paper ...``: run the paper's cells, or only write the report.

The arguments are parsed before torch is imported (``--help`` answers at
once). A run holds ``OUT/run.lock`` for its life (:mod:`train.run_lock`), so
a second run on the same folder refuses to start; ``--report-only`` only
reads finished files and writes the report atomically, so it may run beside
a grid that is still training.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from train import run_command

from .spec import ProtocolMismatch, parse_paper_config


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pcfg = parse_paper_config(argv)

    from train import torchrun_world_size

    if torchrun_world_size() > 1:  # under torchrun: rank 0 runs the grid, the others train each cell with it
        from train import resolved_device, run_distributed

        return run_distributed(resolved_device(pcfg.base), pcfg.base.dist_timeout, lambda: run_paper(pcfg))
    return run_paper(pcfg)


def run_paper(pcfg) -> int:
    """The paper protocol (one process, or the driver of a torchrun job)."""
    from train import hold_run_folder

    from .report import ReportError, write_report
    from .runner import CellMismatch, PaperRunner

    def body() -> int:
        if pcfg.report_only:
            print(f"report: {write_report(pcfg.out)}")
            return 0
        with hold_run_folder(pcfg.out, log=print):
            return PaperRunner(pcfg).run()

    return run_command(body, f"run the same command again: finished cells are kept and the stopped one resumes "
                             f"from its checkpoint (out: {pcfg.out})", expected=(ProtocolMismatch, CellMismatch,
                                                                                  ReportError))
