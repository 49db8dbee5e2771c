"""``python train/run.py --protocol paper ...``: run the paper's cells, or only write the report."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from ..checkpoint import CheckpointMismatch
from ..protocol import RunError
from .report import ReportError, write_report
from .runner import CellMismatch, PaperRunner
from .spec import ProtocolMismatch, parse_paper_config


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pcfg = parse_paper_config(argv)
    try:
        if pcfg.report_only:
            print(f"report: {write_report(pcfg.out)}")
            return 0
        return PaperRunner(pcfg).run()
    except (ProtocolMismatch, CellMismatch, CheckpointMismatch, ReportError, RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; run the same command again: finished cells are kept and the interrupted one "
              f"resumes from its last checkpoint (out: {pcfg.out})", file=sys.stderr)
        return 130
