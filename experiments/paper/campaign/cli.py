"""``python train/run.py --protocol campaign``: advance the pre-registered campaign within a time budget.

    python train/run.py --protocol campaign --register "the plan as first written"   # on the dev checkout
    python train/run.py --protocol campaign --data-dir ../shared/data --minutes 8 --jobs 4   # on a GPU
    python train/run.py --protocol campaign --dry-run          # what would run next, and why the rest waits
    python train/run.py --protocol campaign --report-only      # rewrite OUT/report.md from the files

Arguments are parsed before torch is imported. A run holds ``OUT/run.lock``;
it refuses to start when the plan or the code is not the one registered last
(:mod:`.registry`), when a cell folder holds results the campaign did not
make, or when a started cell's settings differ from the plan's; it never
reruns a finished cell. Each cell folder gets ``campaign.json`` (stage, plan,
code fingerprint, git state, machine) beside the trainer's files and
``predictions.npz``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from train import TrainerError, describe_os_error

DEFAULT_PLAN = "results/campaign/plan.toml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python train/run.py --protocol campaign",
        description="Advance the pre-registered campaign (its plan: a committed TOML file of stages, cells, seeds, "
        "budgets and decision rules) by the cells that fit in --minutes, --jobs at a time on one device; resumable "
        "cell by cell; then write OUT/report.md: how far each stage is and what the finished stages decided by "
        "the plan's own rules.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--protocol", choices=["campaign"], default="campaign", help="this protocol")
    p.add_argument("--plan", default=DEFAULT_PLAN, help="the plan file")
    p.add_argument("--out", default=None, help="the campaign's folder (default: the plan's folder)")
    p.add_argument("--minutes", type=float, default=8.0,
                   help="time budget: no cell is started that would not finish in it (estimated from the cells "
                   "this session finished), and running ones are stopped when it is spent")
    p.add_argument("--jobs", type=int, default=1, help="cells trained at once (worker processes sharing the device)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per worker (default: cores / jobs)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when available")
    p.add_argument("--data-dir", default=None, help="where the dataset files are (the trainer's default if unset)")
    p.add_argument("--cache-dir", default=None, help="where decoded image archives are cached")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=False,
                   help="download missing datasets with torchvision")
    p.add_argument("--num-workers", type=int, default=None, help="threads decoding image archives")
    p.add_argument("--compile", action="store_true", help="torch.compile each cell's training step")
    p.add_argument("--progress-every", type=float, default=60.0, help="seconds between a worker's progress lines")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--register", metavar="REASON",
                   help="register the plan and the current code (a committed checkout), with a reason; trains nothing")
    g.add_argument("--report-only", action="store_true", help="write OUT/report.md from the files; trains nothing")
    g.add_argument("--dry-run", action="store_true", help="list the cells that would run next; trains nothing")
    return p


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: at least 1 worker")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads}: at least 1 thread per worker")
    if not args.minutes > 0:
        parser.error(f"--minutes {args.minutes}: the budget must be positive")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    from .plan import PlanError, read_plan
    from .registry import RegistrationError
    from .store import ForeignCell
    from ..runner import CellMismatch

    try:
        plan = read_plan(args.plan)
        out = Path(args.out) if args.out else plan.path.parent
        if args.register is not None:
            from .registry import register

            entry = register(plan, out, args.register)
            print(f"registered plan {entry['plan_sha256'][:12]} and code {entry['code_fingerprint']} in "
                  f"{out / 'registry.jsonl'}: commit that file with the plan")
            return 0
        if args.report_only:
            from .report import write_report

            print(f"report: {write_report(out, plan)}")
            return 0
        from .runner import CampaignRunner

        return CampaignRunner(plan, out, args).run()
    except (PlanError, RegistrationError, ForeignCell, CellMismatch, TrainerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again: finished cells are kept, interrupted ones resume from "
              "their last checkpoint", file=sys.stderr)
        return 130


def run_fields(args: argparse.Namespace) -> dict:
    """The Config fields the command line sets for every cell (where and how fast, never what)."""
    fields = {"device": args.device, "compile": args.compile, "progress_every": args.progress_every,
              "download": args.download}
    for name in ("data_dir", "cache_dir", "num_workers"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    return fields


__all__: List[str] = ["main", "build_parser", "parse", "run_fields", "DEFAULT_PLAN"]
