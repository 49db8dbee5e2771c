"""The paper protocol's settings: its command line, :class:`PaperConfig`, and ``paper.json``.

``paper.json`` (schema :data:`PAPER_SCHEMA`): ``settings`` and ``selection``
(below), ``primary_declared_before_runs`` (true when the protocol wrote the
folder's first ``paper.json`` before any of its cells ran) and ``notes``
(what a reader of the folder's report must know about its runs, printed
under the report's *Budget and limits*).

Two kinds of setting:

* **settings** change the numbers a cell produces or the analysis declared
  for them (budget, optimiser, heads, the grid SinSim's term / lambda / eps /
  placement, probes, validation fraction, kNN k, geometry subsample size,
  the primary dataset). One output folder holds one set of them: a rerun
  with other settings is refused (:class:`ProtocolMismatch`), so that a
  table never mixes budgets without saying so, and the primary comparison
  cannot be changed after the numbers are in. Use another ``--out`` instead.
* **selection** says which cells to run: datasets, methods, seeds, sweep
  values. It may grow between invocations; ``paper.json`` keeps the union, so
  the report lists every cell ever asked for and shows the unfinished ones as
  "not run".

Defaults that differ from a single run, and why:

* ``--knn-k 200``: the k of the earlier measurement the sweeps are set beside
  (``prior.toml``: CIFAR-10 JPEG copy, 50 epochs, kNN against lambda).
* ``--sweep-on features projection``: that measurement put the term on the
  projections, the paper (and the grid's SinSim, ``--sinkhorn-on features``)
  on the encoder features; the sweeps run both.
* ``--sweep-terms entropic divergence``: the paper's literal entropic cost
  and the debiased divergence, both swept (docs/trainer/index.md).

**The primary comparison** (declared here, before any number): SinSim (the
grid's variant) against SimCLR, linear probe, test top-1, on
``--primary-dataset`` (default: CIFAR-10 when it is in ``--datasets``, else
the first of them); a paired t-test over the seeds at level 0.05. Every
other comparison the report makes is one family, Holm-corrected
(:mod:`.aggregate`).
* ``--epsilons 0.02 0.05 0.1 0.5``: around the default 0.05; smaller values
  need more than the 100 Sinkhorn iterations to converge (docs/performance/convergence.md).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from types import SimpleNamespace

from train import (DATASETS, METHOD_NAMES, METHOD_RECIPES, Config, HelpFormatter, RecipeError, add_training_arguments,
                   atomic_write_json, cuda_available, method_params, nonneg_float, nonneg_int, positive_float,
                   require_tensorboard, resolved_device, setting_kind, setting_names)

PAPER_DATASETS = ("mnist", "cifar10", "cifar100", "stl10")
PAPER_METHODS = ("simclr", "byol", "vicreg", "barlow", "sinsim")
FIGURE_METHODS = ("simclr", "sinsim", "vicreg")  # the paper's figure 1
SWEEPS = ("lambda", "eps")
SINSIM = METHOD_RECIPES["sinsim"]
PLACEMENTS = SINSIM.param("sinkhorn_on").choices
TERMS = SINSIM.param("sinkhorn_term").choices
#: The grid SinSim's settings: its cells are named by them, so paper.json fixes them.
GRID_SETTINGS = ("sinkhorn_term", "sinkhorn_weight", "sinkhorn_eps", "sinkhorn_on")
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_LAMBDAS = (0.0, 0.01, 0.1, 1.0)
DEFAULT_EPSILONS = (0.02, 0.05, 0.1, 0.5)
DEFAULT_OUT = "runs/paper"
PAPER_SCHEMA = 1  # the version of paper.json's layout (the module docstring)

# Settings that say where and how fast a cell runs, not what it computes, and the ones each cell sets.
RUN_ONLY_FIELDS = tuple(k for k in setting_names() if setting_kind(k) == "run") + ("dataset", "method", "seed")
SELECTION_FIELDS = ("datasets", "methods", "seeds", "sweep_datasets", "sweeps", "lambdas", "epsilons", "sweep_on",
                    "sweep_terms")


class ProtocolMismatch(RuntimeError):
    """The output folder holds a protocol run with other settings, or a ``paper.json`` of another schema."""


@dataclass
class PaperConfig:
    base: Config  # the shared settings; dataset, method and seed are set per cell
    out: str = DEFAULT_OUT
    datasets: List[str] = field(default_factory=lambda: list(PAPER_DATASETS))
    methods: List[str] = field(default_factory=lambda: list(PAPER_METHODS))
    seeds: List[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    sweep_datasets: List[str] = field(default_factory=list)
    sweeps: List[str] = field(default_factory=lambda: list(SWEEPS))
    lambdas: List[float] = field(default_factory=lambda: list(DEFAULT_LAMBDAS))
    epsilons: List[float] = field(default_factory=lambda: list(DEFAULT_EPSILONS))
    sweep_on: List[str] = field(default_factory=lambda: list(PLACEMENTS))
    sweep_terms: List[str] = field(default_factory=lambda: list(TERMS))
    primary_dataset: Optional[str] = None  # None: default_primary(datasets)
    report_only: bool = False
    argv: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # paper.json's notes on its runs
    declared_before_runs: bool = True  # paper.json's primary_declared_before_runs

    def __post_init__(self):
        if self.primary_dataset is None:
            self.primary_dataset = default_primary(self.datasets)

    @property
    def sinsim(self) -> SimpleNamespace:
        """The grid SinSim's hyper-parameters: its recipe's, changed by the settings."""
        given = {k: v for k, v in self.base.params.items() if k in SINSIM.param_names}
        return SimpleNamespace(**{**SINSIM.defaults, **given})

    def settings(self) -> Dict[str, Any]:
        """What must agree between invocations into one output folder."""
        kept = {k: v for k, v in self.base.to_dict().items() if k not in RUN_ONLY_FIELDS}
        return {**kept, "primary_dataset": self.primary_dataset}

    def selection(self) -> Dict[str, list]:
        return {k: list(getattr(self, k)) for k in SELECTION_FIELDS}

    @property
    def all_datasets(self) -> List[str]:
        return _unique(self.datasets + self.sweep_datasets)

    @classmethod
    def from_saved(cls, saved: Dict[str, Any], out: str) -> "PaperConfig":
        """The config a ``paper.json`` describes (for the report)."""
        settings = dict(saved["settings"])
        primary = settings.pop("primary_dataset", None)
        base = Config.from_settings(settings)
        return cls(base=base, out=out, primary_dataset=primary, notes=list(saved.get("notes", [])),
                   declared_before_runs=saved["primary_declared_before_runs"],
                   **{k: v for k, v in saved["selection"].items() if k in SELECTION_FIELDS})


def default_primary(datasets: Sequence[str]) -> Optional[str]:
    """CIFAR-10 when it is among ``datasets``, else the first of them."""
    return "cifar10" if "cifar10" in datasets else (datasets[0] if datasets else None)


def _unique(items: Sequence) -> list:
    seen: list = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def build_paper_parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(
        prog="python train/run.py --protocol paper",
        description="The SinSim paper's experiments: tables I and II (linear and MLP probes, methods x datasets x "
        "seeds), figure 1 (t-SNE / UMAP, alignment, uniformity, effective rank, silhouette), figures 2 and 3 "
        "(lambda and eps sweeps, for each Sinkhorn term and placement), and OUT/report.md. Choices are read on a "
        "validation split, final numbers on test; one primary comparison, the rest Holm-corrected. Resumable "
        "cell by cell: run the same command again and finished cells are kept, an interrupted one resumes from "
        "its checkpoint.",
        epilog="Examples: python train/run.py --protocol paper --data-dir ../shared/data   |   "
        "python train/run.py --protocol paper --datasets digits --seeds 0 1 2 --epochs 1 --train-subset 256 "
        "--sweep-datasets digits --lambdas 0 0.1 1 --epsilons 0.05 0.5 --out runs/paper-digits   (about 12 minutes "
        "on 2 shared CPU cores)   |   "
        "python train/run.py --protocol paper --report-only --out runs/paper",
        formatter_class=HelpFormatter,
    )
    g = p.add_argument_group("what to run")
    g.add_argument("--protocol", choices=["paper"], default="paper", help="this protocol")
    g.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(PAPER_DATASETS), metavar="NAME",
                   help=f"datasets of tables I and II and figure 1 ({', '.join(DATASETS)})")
    g.add_argument("--methods", nargs="+", choices=list(METHOD_NAMES), default=list(PAPER_METHODS), metavar="NAME",
                   help=f"methods of the tables ({', '.join(METHOD_NAMES)})")
    g.add_argument("--seeds", nargs="+", type=nonneg_int, default=list(DEFAULT_SEEDS), help="seeds of every cell")
    g.add_argument("--primary-dataset", choices=list(DATASETS), default=None, metavar="NAME",
                   help="the dataset of the one primary comparison (SinSim vs SimCLR, linear probe, test top-1; "
                   "default: cifar10 when in --datasets, else the first of them)")
    g.add_argument("--out", default=DEFAULT_OUT, help="output folder (cells, figures, report.md)")
    g.add_argument("--data-dir", default=d.data_dir, help="where the dataset files are (or are downloaded to)")
    g.add_argument("--cache-dir", default=d.cache_dir, help="where decoded image archives are cached")
    g.add_argument("--download", action=argparse.BooleanOptionalAction, default=d.download,
                   help="download missing datasets with torchvision")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device, help="auto: CUDA when available")
    g.add_argument("--report-only", action="store_true",
                   help="write OUT/report.md and its figures from the files already in OUT; trains nothing")

    g = p.add_argument_group("sweeps (figures 2 and 3)")
    g.add_argument("--sweep-datasets", nargs="*", choices=list(DATASETS), default=None, metavar="NAME",
                   help="datasets of the sweeps (default: cifar10 when it is in --datasets, else none; "
                   "give the flag alone for none)")
    g.add_argument("--sweeps", nargs="*", choices=SWEEPS, default=list(SWEEPS),
                   help="lambda: accuracy vs the Sinkhorn weight at --sinkhorn-eps; eps: vs epsilon at --sinkhorn-weight")
    g.add_argument("--lambdas", nargs="+", type=nonneg_float, default=list(DEFAULT_LAMBDAS), metavar="LAMBDA",
                   help="Sinkhorn weights (0 is SimCLR)")
    g.add_argument("--epsilons", nargs="+", type=positive_float, default=list(DEFAULT_EPSILONS), metavar="EPS",
                   help="entropic regularisations")
    g.add_argument("--sweep-on", nargs="+", choices=PLACEMENTS, default=list(PLACEMENTS),
                   help="where the term acts in the sweeps: encoder features h, projections z, or both")
    g.add_argument("--sweep-terms", nargs="+", choices=TERMS, default=list(TERMS),
                   help="which Sinkhorn terms the sweeps run: the paper's entropic cost, the debiased divergence, "
                   "or both")

    add_training_arguments(p)
    p.set_defaults(knn_k=200)
    return p


def parse_paper_config(argv: Optional[Sequence[str]] = None) -> PaperConfig:
    parser = build_paper_parser()
    args = vars(parser.parse_args(argv))
    args.pop("protocol")
    if not args["eval"]:
        parser.error("--no-eval: the paper protocol's tables are the probes' accuracies")
    if not args["val_fraction"] > 0:
        parser.error("--val-fraction 0: the paper protocol makes every choice on the validation split")
    if args["device"] == "cuda" and not cuda_available():
        parser.error("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    known = setting_names()
    base = Config.from_settings({k: v for k, v in args.items() if k in known})
    base.params = {**{k: SINSIM.defaults[k] for k in GRID_SETTINGS}, **base.params}
    for method in args["methods"]:
        try:
            method_params(base, method)
        except RecipeError as exc:
            parser.error(str(exc))
    if base.precision == "bf16" and resolved_device(base) == "cpu":
        parser.error("--precision bf16 needs --device cuda (CPU runs use fp32)")
    require_tensorboard(base, parser)
    datasets = _unique(args["datasets"])
    if args["primary_dataset"] is not None and args["primary_dataset"] not in datasets:
        parser.error(f"--primary-dataset {args['primary_dataset']} is not in --datasets ({' '.join(datasets)})")
    sweep_datasets = args["sweep_datasets"]
    if sweep_datasets is None:
        sweep_datasets = ["cifar10"] if "cifar10" in datasets else []
    return PaperConfig(
        base=base,
        out=args["out"],
        datasets=datasets,
        methods=_unique(args["methods"]),
        seeds=_unique(args["seeds"]),
        sweep_datasets=_unique(sweep_datasets),
        sweeps=_unique(args["sweeps"]),
        lambdas=_unique(args["lambdas"]),
        epsilons=_unique(args["epsilons"]),
        sweep_on=_unique(args["sweep_on"]),
        sweep_terms=_unique(args["sweep_terms"]),
        primary_dataset=args["primary_dataset"],
        report_only=args["report_only"],
        argv=list(argv) if argv is not None else [],
    )


def paper_json(out) -> Path:
    return Path(out) / "paper.json"


def read_protocol(out) -> Optional[Dict[str, Any]]:
    """``OUT/paper.json`` (None when there is none); :class:`ProtocolMismatch` for another schema."""
    path = paper_json(out)
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved.get("schema") != PAPER_SCHEMA:
        raise ProtocolMismatch(f"{path} has schema {saved.get('schema')!r}; this code reads paper.json schema "
                               f"{PAPER_SCHEMA} only (experiments/paper/spec.py)")
    return saved


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def record_protocol(pcfg: PaperConfig) -> Dict[str, Any]:
    """Write ``OUT/paper.json``: this invocation's settings, which must equal
    those already there, and the union of every selection so far."""
    saved = read_protocol(pcfg.out)
    settings, selection = pcfg.settings(), pcfg.selection()
    if saved is not None:
        diff = {k: (saved["settings"].get(k), v) for k, v in settings.items() if saved["settings"].get(k) != v}
        if diff:
            details = ", ".join(f"{_flag(k)}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise ProtocolMismatch(
                f"{pcfg.out} holds a paper protocol run with other settings ({details}). One folder holds one "
                "budget, so that its tables never mix them: repeat the same flags, or pass another --out"
            )
        selection = {k: _unique(list(saved["selection"].get(k, [])) + v) for k, v in selection.items()}
    record = {"schema": PAPER_SCHEMA, "settings": settings, "selection": selection,
              "primary_declared_before_runs": True if saved is None else saved["primary_declared_before_runs"],
              "notes": [] if saved is None else saved.get("notes", [])}
    atomic_write_json(paper_json(pcfg.out), record)
    return record
