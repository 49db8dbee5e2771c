"""The run configuration: one dataclass, its command line, and its resolution.

A field left at ``None`` means "the default for this dataset / method":
:func:`resolve` fills dataset defaults (epochs, batch size, image size) from
``train.catalog.DATASETS`` and :func:`for_method` fills the method's
published hyper-parameters from ``Method.defaults``. The fully resolved config
of every run is written to its output folder as ``config.json``.

This module imports no torch until the arguments are parsed (the CUDA check
and the methods' defaults come after), so ``--help`` and argument errors
answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .catalog import DATASETS, METHOD_NAMES

_CACHE_HOME = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "sinsim"
OPTIMIZERS = ("lars", "sgd", "adamw")
PRECISIONS = ("auto", "bf16", "fp32")
PROTOCOLS = ("single", "paper", "campaign")
SINKHORN_TERMS = ("entropic", "divergence")
SINKHORN_PLACEMENTS = ("features", "projection")


@dataclass
class Config:
    # what to run, on what, where
    dataset: str = "digits"
    method: str = "sinsim"
    data_dir: str = str(_CACHE_HOME / "data")
    cache_dir: str = str(_CACHE_HOME)
    out: Optional[str] = None
    download: bool = True
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    # budget
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    image_size: Optional[int] = None
    train_subset: Optional[int] = None
    # optimisation (None: the method's published value)
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    momentum: float = 0.9
    warmup_epochs: Optional[float] = None
    bias_lr_scale: Optional[float] = None
    # heads and losses (None: the method's published value, or unused)
    temperature: Optional[float] = None
    proj_hidden_dim: Optional[int] = None
    proj_output_dim: Optional[int] = None
    pred_hidden_dim: Optional[int] = None
    ema_tau: Optional[float] = None
    barlow_lambda: Optional[float] = None
    barlow_scale: Optional[float] = None
    # SinSim's Sinkhorn term
    sinkhorn_weight: float = 0.1
    sinkhorn_eps: float = 0.05
    sinkhorn_on: str = "features"
    sinkhorn_cost: str = "sqeuclidean"
    sinkhorn_normalize: bool = True
    sinkhorn_iters: int = 100
    sinkhorn_tol: Optional[float] = None  # stop a solve once its marginal error is below this (None: all iterations)
    sinkhorn_term: str = "entropic"  # chosen on the validation split: docs/trainer/paper.md, the default term
    sinkhorn_backend: str = "auto"
    # evaluation
    eval: bool = True
    probe_epochs: int = 100
    probe_train_subset: Optional[int] = None  # probes on a fixed random subset of the labelled splits
    probe_test_subset: Optional[int] = None
    knn_k: int = 20
    knn_temperature: float = 0.07
    knn_every: int = 0
    val_fraction: float = 0.1  # validation images carved from the labelled train split (train/splits.py)
    geometry_points: int = 2000  # test images the geometry is measured on (train/embedding.py)
    # engineering
    compile: bool = False
    precision: str = "auto"
    cpu_threads: str = "auto"  # or a number (train/cpu_threads.py)
    tensorboard: bool = False  # event files in OUT/tensorboard (train/tensorboard_log.py)
    num_workers: int = min(8, os.cpu_count() or 1)
    check_every: int = 50
    checkpoint_every: int = 1
    progress_every: float = 30.0  # seconds between progress lines within an epoch (0: off)
    # several processes (torchrun; train/parallel/): no effect in one process
    sync_bn: bool = False
    sinkhorn_shard: str = "auto"
    dist_timeout: float = 30.0  # minutes a training collective may wait

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    # Fields that change the trained weights: a checkpoint only resumes a run
    # that agrees on all of them.
    TRAINING_FIELDS = (
        "dataset", "method", "seed", "epochs", "batch_size", "image_size", "train_subset",
        "optimizer", "lr", "weight_decay", "momentum", "warmup_epochs", "bias_lr_scale",
        "temperature", "proj_hidden_dim", "proj_output_dim", "pred_hidden_dim", "ema_tau", "barlow_lambda",
        "barlow_scale",
        "sinkhorn_weight", "sinkhorn_eps", "sinkhorn_on", "sinkhorn_cost", "sinkhorn_normalize",
        "sinkhorn_iters", "sinkhorn_tol", "sinkhorn_term", "precision",
    )

    # Fields that change the evaluation's numbers but not the trained weights:
    # a finished run kept on --resume says which of them it does not apply.
    EVALUATION_FIELDS = ("eval", "probe_epochs", "probe_train_subset", "probe_test_subset", "knn_k",
                         "knn_temperature", "val_fraction", "geometry_points")

    # Training fields a resumed run may change when the flag is given
    # explicitly (the change is applied from the resumed epoch on and
    # recorded in config.json and results.json). The other training fields
    # shape the model, the data order or the schedule's length, which the
    # checkpoint was built for; the fields outside TRAINING_FIELDS (device,
    # --compile, --check-every, evaluation flags...) may always change.
    RESUME_MAY_CHANGE = ("lr",)

    def training_signature(self) -> Dict[str, Any]:
        """The fields above; under torchrun also the number of processes and
        --sync-bn, which change the data order, the augmentations and the
        BatchNorm statistics (absent in one process, so its signatures are
        those of before)."""
        from .parallel.env import torchrun_world_size  # no torch

        signature = {k: getattr(self, k) for k in self.TRAINING_FIELDS}
        world = torchrun_world_size()
        if world > 1:
            signature.update(world_size=world, sync_bn=self.sync_bn)
        return signature


def _typed(cast, predicate, what):
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not predicate(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what
    return parse


positive_int = _typed(int, lambda v: v > 0, "a positive integer")
nonneg_int = _typed(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _typed(float, lambda v: v > 0 and v < float("inf"), "a positive number")
nonneg_float = _typed(float, lambda v: 0 <= v < float("inf"), "a non-negative number")
unit_interval = _typed(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
# NT-Xent with one image has no negatives (the loss is exactly 0), and the
# other methods normalise over the batch: every method needs two or more.
def cpu_threads(text: str) -> str:
    """``auto`` or a positive number of threads (kept as text: the config is JSON)."""
    if text == "auto" or (text.isdigit() and int(text) > 0):
        return text if text == "auto" else str(int(text))
    raise argparse.ArgumentTypeError(f"{text!r} is not auto or a positive integer")
at_least_two = _typed(int, lambda v: v >= 2, "an integer >= 2 (a self-supervised batch compares two or more images)")
# The MLP probe's BatchNorm needs two images, a probe two classes; uniformity compares pairs of points.
probe_images = _typed(int, lambda v: v >= 2, "an integer >= 2 (the probes train on two or more labelled images)")
geometry_points = _typed(int, lambda v: v >= 2, "an integer >= 2 (the geometry compares pairs of points)")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the unset (None) and off (False) ones."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.help is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(
        prog="python train/run.py",
        description="Self-supervised pretraining (SinSim = SimCLR + lambda * Sinkhorn, and baselines) "
        "followed by frozen-feature evaluation: linear probe, 2-layer MLP probe, kNN.",
        epilog="Example: python train/run.py --dataset digits --method all   (a few minutes on 2 CPU cores)",
        formatter_class=_HelpFormatter,
    )
    g = p.add_argument_group("what to run")
    g.add_argument("--dataset", choices=list(DATASETS), default=d.dataset,
                   help="; ".join(f"{k}: {s.description}" for k, s in DATASETS.items()))
    g.add_argument("--method", choices=list(METHOD_NAMES) + ["all"], default=d.method,
                   help="'all' runs every method into OUT/<method>/ and writes a combined table")
    g.add_argument("--data-dir", default=d.data_dir, help="where the dataset files are (or are downloaded to)")
    g.add_argument("--cache-dir", default=d.cache_dir, help="where decoded image archives are cached")
    g.add_argument("--out", default=None, help="output folder (default: runs/<dataset>-<method>)")
    g.add_argument("--download", action=argparse.BooleanOptionalAction, default=d.download,
                   help="download missing datasets with torchvision")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device, help="auto: CUDA when available")
    g.add_argument("--seed", type=int, default=d.seed, help="seeds the model, the data order and the augmentations")
    g.add_argument("--resume", action="store_true",
                   help="continue from OUT's last checkpoint (skips finished methods); the training flags must be "
                   "the same, except --lr, which changes the learning rate from the resumed epoch on")
    g.add_argument("--overwrite", action="store_true", help="start again even if OUT already holds a run")
    g.add_argument("--protocol", choices=PROTOCOLS, default="single",
                   help="single: one --dataset/--method run (this page); paper: the SinSim paper's experiments "
                   "(tables, embeddings, sweeps, report), see `python train/run.py --protocol paper --help`; "
                   "campaign: advance the pre-registered campaign, see `python train/run.py --protocol campaign "
                   "--help`")
    add_training_arguments(p)
    return p


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The budget, optimisation, heads, Sinkhorn, evaluation and engineering
    flags: shared by the single-run parser and the paper protocol's
    (:mod:`train.paper.spec`), so both spell every setting the same way."""
    d = Config()
    g = p.add_argument_group("budget (defaults depend on the dataset)")
    g.add_argument("--epochs", type=positive_int, help="pretraining epochs")
    g.add_argument("--batch-size", type=at_least_two,
                   help="images per step (two views each); under torchrun the global batch, split evenly over the "
                   "processes (must be divisible by their number); --lr scales with it")
    g.add_argument("--image-size", type=positive_int, help="images are resized once to this side")
    g.add_argument("--train-subset", type=at_least_two, metavar="K",
                   help="pretrain on K images; the probes still use the full labelled splits")

    g = p.add_argument_group("optimisation (defaults: each method's published recipe)")
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--lr", type=positive_float,
                   help="learning rate per 256 images (scaled by batch/256, the global batch under torchrun)")
    g.add_argument("--weight-decay", type=nonneg_float)
    g.add_argument("--momentum", type=unit_interval, default=d.momentum, help="SGD / LARS momentum")
    g.add_argument("--warmup-epochs", type=nonneg_float, help="linear warm-up (default: min(10, epochs/10))")
    g.add_argument("--bias-lr-scale", type=nonneg_float,
                   help="learning-rate factor of biases and norm parameters (default 1, as solo-learn's CIFAR "
                   "recipes; the Barlow Twins paper's ImageNet recipe: 0.0048 / 0.2 = 0.024)")

    g = p.add_argument_group("method heads and losses (defaults: published values)")
    g.add_argument("--temperature", type=positive_float, help="NT-Xent temperature (simclr, sinsim)")
    g.add_argument("--proj-hidden-dim", type=positive_int)
    g.add_argument("--proj-output-dim", type=positive_int)
    g.add_argument("--pred-hidden-dim", type=positive_int, help="BYOL predictor width")
    g.add_argument("--ema-tau", type=unit_interval, help="BYOL base target momentum")
    g.add_argument("--barlow-lambda", type=nonneg_float, help="Barlow Twins off-diagonal weight")
    g.add_argument("--barlow-scale", type=positive_float, help="Barlow Twins overall loss factor")

    g = p.add_argument_group("SinSim's Sinkhorn term")
    g.add_argument("--sinkhorn-weight", type=nonneg_float, default=d.sinkhorn_weight, metavar="LAMBDA",
                   help="weight of the Sinkhorn term")
    g.add_argument("--sinkhorn-eps", type=positive_float, default=d.sinkhorn_eps, metavar="EPS",
                   help="entropic regularisation, in units of the cost")
    g.add_argument("--sinkhorn-term", choices=SINKHORN_TERMS, default=d.sinkhorn_term,
                   help="entropic: OT_eps(s1, s2), the paper's equation (the default: the validation split chose "
                   "it); divergence: the debiased Sinkhorn divergence OT(s1,s2) - OT(s1,s1)/2 - OT(s2,s2)/2, 0 for "
                   "a batch against itself (docs/trainer/paper.md)")
    g.add_argument("--sinkhorn-on", choices=SINKHORN_PLACEMENTS, default=d.sinkhorn_on,
                   help="compare encoder features h (the paper's text) or projections z")
    g.add_argument("--sinkhorn-cost", choices=["sqeuclidean", "cosine"], default=d.sinkhorn_cost, help="ground cost")
    g.add_argument("--sinkhorn-normalize", action=argparse.BooleanOptionalAction, default=d.sinkhorn_normalize,
                   help="L2-normalise the embeddings before transport")
    g.add_argument("--sinkhorn-iters", type=positive_int, default=d.sinkhorn_iters, help="Sinkhorn iterations")
    g.add_argument("--sinkhorn-tol", type=positive_float, metavar="TOL",
                   help="stop each Sinkhorn solve once its marginal error is below TOL (at most --sinkhorn-iters "
                   "iterations; default: always run them all)")
    g.add_argument("--sinkhorn-debias", action="store_const", dest="sinkhorn_term", const="divergence",
                   help="the same as --sinkhorn-term divergence")
    g.add_argument("--sinkhorn-backend", choices=["auto", "kernel", "reference"], default=d.sinkhorn_backend,
                   help="compiled kernel, plain-PyTorch reference, or auto (kernel when built for the device)")

    g = p.add_argument_group("evaluation")
    g.add_argument("--eval", action=argparse.BooleanOptionalAction, default=d.eval,
                   help="probe the encoder after pretraining (--no-eval: timing runs)")
    g.add_argument("--probe-epochs", type=positive_int, default=d.probe_epochs, help="MLP probe epochs")
    g.add_argument("--probe-train-subset", type=probe_images, metavar="K",
                   help="probes (linear, MLP, kNN) train on K labelled images, a fixed random subset (seed 0, the same "
                   "for every run) of the train split minus validation (default: all of them)")
    g.add_argument("--val-fraction", type=unit_interval, default=d.val_fraction, metavar="F",
                   help="validation: a fixed stratified fraction F of the labelled train split (seed 0), never "
                   "trained on by a probe; every choice is made on it, the test split gives the final numbers "
                   "(0: none)")
    g.add_argument("--probe-test-subset", type=positive_int, metavar="K",
                   help="probes are scored on K test images, a fixed random subset (seed 0) of the test split")
    g.add_argument("--knn-k", type=positive_int, default=d.knn_k, help="neighbours of the kNN classifier")
    g.add_argument("--knn-every", type=nonneg_int, default=d.knn_every,
                   help="kNN monitor (on the validation images) every N epochs (0: off)")
    g.add_argument("--geometry-points", type=geometry_points, default=d.geometry_points, metavar="K",
                   help="alignment, uniformity, effective rank and silhouette of the encoder features on K test "
                   "images (a fixed random subsample, seed 0), recorded in results.json")

    g = p.add_argument_group("engineering")
    g.add_argument("--compile", action="store_true", help="torch.compile the augmentations and the training step")
    g.add_argument("--precision", choices=PRECISIONS, default=d.precision, help="auto: bf16 autocast on CUDA, fp32 on CPU")
    g.add_argument("--cpu-threads", type=cpu_threads, default=d.cpu_threads, metavar="auto|N",
                   help="torch's CPU threads. auto: one per core while the machine is otherwise idle, fewer while "
                   "other processes keep cores busy (checked every 2 s; with a thread per core a run on a busy "
                   "machine slows far more than its share of the cores, each step waiting for the threads that "
                   "lost their core). N: exactly N, for bit-identical reruns (the thread count changes the order "
                   "of floating-point sums). An OMP_NUM_THREADS in the environment is kept under auto; OpenMP's "
                   "wait at barriers is left to OMP_WAIT_POLICY / GOMP_SPINCOUNT")
    g.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to OUT/tensorboard (losses, learning rate, Sinkhorn "
                   "error, probe accuracies, geometry); needs the tensorboard package: pip install tensorboard")
    g.add_argument("--num-workers", type=positive_int, default=d.num_workers, help="threads decoding image archives")
    g.add_argument("--check-every", type=positive_int, default=d.check_every,
                   help="every N steps, read the loss and the weights' norm back and stop the run if they are "
                   "NaN/inf or exploding")
    g.add_argument("--checkpoint-every", type=positive_int, default=d.checkpoint_every, help="epochs between checkpoints")
    g.add_argument("--progress-every", type=nonneg_float, default=d.progress_every, metavar="SECONDS",
                   help="a progress line (steps, images/s, time left) this often within an epoch when the output "
                   "is not a terminal (0: only a line per epoch); a terminal gets a progress bar")

    g = p.add_argument_group(
        "several processes: torchrun --nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT] train/run.py ... "
        "(docs/scaling.md)")
    g.add_argument("--sync-bn", action="store_true",
                   help="BatchNorm statistics over the global batch (torch's SyncBatchNorm on GPUs); without it "
                   "each process normalises its own batch/N images")
    g.add_argument("--sinkhorn-shard", choices=["auto", "always", "never"], default=d.sinkhorn_shard,
                   help="SinSim's Sinkhorn term: each process solves only its rows of the cost matrix (always), "
                   "or gathers both views and solves the whole problem (never); auto: shard when the gathered "
                   "cost matrices would exceed 256 MB per process")
    g.add_argument("--dist-timeout", type=positive_float, default=d.dist_timeout, metavar="MINUTES",
                   help="a training collective that waits this long (a process hung or a machine vanished) stops "
                   "the job with an error")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def parse_config(argv: Optional[Sequence[str]] = None) -> Config:
    """Parse the command line into a dataset-resolved :class:`Config`;
    impossible combinations exit through ``parser.error``."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    protocol = args.pop("protocol")
    if protocol != "single":
        parser.error(f"--protocol {protocol} has its own flags: python train/run.py --protocol {protocol} --help")
    cfg = Config(**args)
    if cfg.resume and cfg.overwrite:
        parser.error("--resume and --overwrite contradict each other")
    if cfg.device == "cuda" and not _cuda_available():
        parser.error("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if cfg.precision == "bf16" and resolved_device(cfg) == "cpu":
        parser.error("--precision bf16 needs --device cuda (CPU runs use fp32)")
    if cfg.sinkhorn_tol is not None and cfg.sinkhorn_shard == "always":
        parser.error("--sinkhorn-tol with --sinkhorn-shard always: the row-sharded solve runs exactly "
                     "--sinkhorn-iters iterations; drop one of the two")
    require_tensorboard(cfg, parser)
    return resolve(cfg)


def require_tensorboard(cfg: Config, parser: argparse.ArgumentParser) -> None:
    """``--tensorboard`` without the tensorboard package is an argument error (before any training)."""
    from .tensorboard_log import MISSING, available

    if cfg.tensorboard and not available():
        parser.error(MISSING)


def resolved_device(cfg: Config) -> str:
    if cfg.device == "auto":
        return "cuda" if _cuda_available() else "cpu"
    return cfg.device


def resolve(cfg: Config) -> Config:
    """Fill the dataset defaults and the device; methods are filled later."""
    spec = DATASETS[cfg.dataset]
    cfg = dataclasses.replace(
        cfg,
        device=resolved_device(cfg),
        epochs=cfg.epochs or spec.epochs,
        batch_size=cfg.batch_size or spec.batch_size,
        image_size=cfg.image_size or spec.image_size,
        out=cfg.out or str(Path("runs") / f"{cfg.dataset}-{cfg.method}"),
    )
    if cfg.precision == "auto":
        cfg.precision = "bf16" if cfg.device == "cuda" else "fp32"
    if cfg.warmup_epochs is None:
        cfg.warmup_epochs = min(10.0, cfg.epochs / 10)
    return cfg


def for_method(cfg: Config, name: str, out: Optional[str] = None) -> Config:
    """``cfg`` for one method: its published defaults fill the unset fields."""
    from .methods import METHODS

    filled = {k: v for k, v in METHODS[name].defaults.items() if getattr(cfg, k) is None}
    cfg = dataclasses.replace(cfg, method=name, out=out or cfg.out, **filled)
    if cfg.bias_lr_scale is None:
        cfg.bias_lr_scale = 1.0
    return cfg


def method_names(cfg: Config) -> List[str]:
    return list(METHOD_NAMES) if cfg.method == "all" else [cfg.method]
