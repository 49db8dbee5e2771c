"""The run configuration: the trainer's settings, the method's hyper-parameters, the command line.

:class:`Config` holds the trainer's own settings (what to run, the budget,
the optimisation, the evaluation, the engineering), each tagged with its
*kind*, and in ``params`` the hyper-parameters of the method, which the
method's recipe declares and checks (:mod:`train.catalog`). A setting left at
``None`` means "the default for this dataset / method": :func:`resolve` fills
the dataset's budget from its recipe and :func:`for_method` the method's
recipe (its training settings and every hyper-parameter); the fully resolved
config of every run is written to its output folder as ``config.json``, one
flat object whose keys are the flags' names.

The kinds say what a setting changes, so no list of names is kept by hand:

* ``training``: the trained weights (a checkpoint resumes only a run that
  agrees on all of them; ``lr`` may change on resume);
* ``evaluation``: the evaluation's numbers, not the weights;
* ``parallel``: the weights under torchrun only (``--sync-bn``);
* ``run``: where, how fast, what is logged.

This module imports no torch until the arguments are parsed (the CUDA check
comes after), so ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .catalog import (DATASETS, METHOD_NAMES, METHOD_RECIPES, RecipeError, all_params, param_kind, recipe_params,
                      recipe_training)
from .checks import (at_least_two, cpu_threads, geometry_points, nonneg_float, nonneg_int, positive_float,
                     positive_int, probe_images, unit_interval)
from .errors import TrainerError

_CACHE_HOME = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "sinsim"
OPTIMIZERS = ("lars", "sgd", "adamw")
PRECISIONS = ("auto", "bf16", "fp32")
PROTOCOLS = ("single", "paper", "campaign")
KINDS = ("training", "evaluation", "parallel", "run")


def setting(default: Any, kind: str, resume_may_change: bool = False, **kwargs) -> Any:
    """A :class:`Config` field of ``kind`` (see the module docstring)."""
    assert kind in KINDS, kind
    metadata = {"kind": kind, "resume_may_change": resume_may_change}
    if "default_factory" in kwargs:
        return field(default_factory=kwargs["default_factory"], metadata=metadata)
    return field(default=default, metadata=metadata)


class ConfigError(TrainerError, ValueError):
    """A setting that no run takes, or a value its method's recipe refuses."""


@dataclass
class Config:
    # what to run, on what, where
    dataset: str = setting("digits", "training")
    method: str = setting("sinsim", "training")
    data_dir: str = setting(str(_CACHE_HOME / "data"), "run")
    cache_dir: str = setting(str(_CACHE_HOME), "run")
    out: Optional[str] = setting(None, "run")
    download: bool = setting(True, "run")
    device: str = setting("auto", "run")
    seed: int = setting(0, "training")
    resume: bool = setting(False, "run")
    overwrite: bool = setting(False, "run")
    # budget (None: the dataset's recipe)
    epochs: Optional[int] = setting(None, "training")
    batch_size: Optional[int] = setting(None, "training")
    image_size: Optional[int] = setting(None, "training")
    train_subset: Optional[int] = setting(None, "training")
    # optimisation (None: the method's recipe)
    optimizer: Optional[str] = setting(None, "training")
    lr: Optional[float] = setting(None, "training", resume_may_change=True)
    weight_decay: Optional[float] = setting(None, "training")
    momentum: float = setting(0.9, "training")
    warmup_epochs: Optional[float] = setting(None, "training")
    bias_lr_scale: Optional[float] = setting(None, "training")
    # evaluation
    eval: bool = setting(True, "evaluation")
    probe_epochs: int = setting(100, "evaluation")
    probe_train_subset: Optional[int] = setting(None, "evaluation")  # probes on a fixed random subset of the labelled splits
    probe_test_subset: Optional[int] = setting(None, "evaluation")
    knn_k: int = setting(20, "evaluation")
    knn_temperature: float = setting(0.07, "evaluation")
    knn_every: int = setting(0, "run")  # a monitor: logged, not evaluated
    val_fraction: float = setting(0.1, "evaluation")  # validation images carved from the labelled train split (train/splits.py)
    geometry_points: int = setting(2000, "evaluation")  # test images the geometry is measured on (train/embedding.py)
    # engineering
    compile: bool = setting(False, "run")
    precision: str = setting("auto", "training")
    cpu_threads: str = setting("auto", "run")  # or a number (train/cpu_threads.py)
    tensorboard: bool = setting(False, "run")  # event files in OUT/tensorboard (train/tensorboard_log.py)
    num_workers: int = setting(min(8, os.cpu_count() or 1), "run")
    check_every: int = setting(50, "run")
    checkpoint_every: int = setting(1, "run")
    progress_every: float = setting(30.0, "run")  # seconds between progress lines within an epoch (0: off)
    # several processes (torchrun; train/parallel/): no effect in one process
    sync_bn: bool = setting(False, "parallel")
    dist_timeout: float = setting(30.0, "run")  # minutes a training collective may wait
    # the method's hyper-parameters, by name (its recipe's; before for_method, the ones given)
    params: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """The settings as one flat object (the hyper-parameters beside the trainer's settings)."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "params"}
        return {**flat, **self.params}

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> "Config":
        """A config from flat settings (trainer settings and hyper-parameters by
        name, as :meth:`to_dict` writes them); a hyper-parameter at None is unset.
        Raises :class:`ConfigError` for a name no run takes."""
        trainer = {k: v for k, v in values.items() if k in TRAINER_FIELDS}
        params = {k: v for k, v in values.items() if k not in TRAINER_FIELDS}
        unknown = [k for k in params if k not in all_params()]
        if unknown:
            raise ConfigError(f"{', '.join(unknown)}: not a trainer setting (train/config.py) nor any method's "
                              "hyper-parameter (train/recipes/methods/)")
        return cls(**trainer, params={k: v for k, v in params.items() if v is not None})

    def training_signature(self) -> Dict[str, Any]:
        """The settings that change the trained weights: the ``training``
        fields and hyper-parameters; under torchrun also the number of
        processes and the ``parallel`` fields, which change the data order,
        the augmentations and the BatchNorm statistics (absent in one
        process)."""
        from .parallel.env import torchrun_world_size  # no torch

        signature = {k: getattr(self, k) for k in TRAINING_FIELDS}
        signature.update({k: v for k, v in self.params.items() if param_kind(k) == "training"})
        world = torchrun_world_size()
        if world > 1:
            signature.update(world_size=world, **{k: getattr(self, k) for k in PARALLEL_FIELDS})
        return signature


def _fields_of(kind: str) -> tuple:
    return tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("kind") == kind)


TRAINER_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.name != "params")
#: Fields that change the trained weights: a checkpoint only resumes a run that agrees on them (and on the
#: method's training hyper-parameters).
TRAINING_FIELDS = _fields_of("training")
#: Fields that change the evaluation's numbers but not the trained weights: a finished run kept on
#: --resume says which of them it does not apply.
EVALUATION_FIELDS = _fields_of("evaluation")
PARALLEL_FIELDS = _fields_of("parallel")
RUN_FIELDS = _fields_of("run")
#: Training fields a resumed run may change when the flag is given explicitly (the change is applied from
#: the resumed epoch on and recorded in config.json and results.json). The other training settings shape
#: the model, the data order or the schedule's length, which the checkpoint was built for; the other
#: settings (device, --compile, --check-every, evaluation flags...) may always change.
RESUME_MAY_CHANGE = tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("resume_may_change"))


def setting_names() -> List[str]:
    """Every name a flat settings object may use: the trainer's fields and every method's hyper-parameters."""
    return list(TRAINER_FIELDS) + [k for k in all_params() if k not in TRAINER_FIELDS]


def setting_kind(name: str) -> str:
    """The kind of a trainer field or hyper-parameter (``training``, ``evaluation``, ``parallel``, ``run``)."""
    if name in TRAINER_FIELDS:
        return next(f.metadata["kind"] for f in dataclasses.fields(Config) if f.name == name)
    return param_kind(name)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
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
        formatter_class=HelpFormatter,
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


def add_method_arguments(p: argparse.ArgumentParser) -> None:
    """A flag for every hyper-parameter any method's recipe declares; unset
    (None) unless given, so the recipe's value applies."""
    g = p.add_argument_group("method hyper-parameters (defaults: each method's recipe, train/recipes/methods/)")
    for name, users in all_params().items():
        param = users[0][1]
        values = ", ".join(f"{m} {'unset' if q.default is None else q.default}" for m, q in users)
        text = f"{param.help} [{values}]"
        if param.type == "bool":
            g.add_argument(param.flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif param.choices:
            g.add_argument(param.flag, dest=name, choices=list(param.choices), default=None, help=text)
        else:
            g.add_argument(param.flag, dest=name, type=param.parse, default=None, metavar=param.metavar, help=text)
        for alias, value in param.aliases:
            g.add_argument(alias, dest=name, action="store_const", const=value,
                           help=f"the same as {param.flag} {value}")


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The budget, optimisation, method, evaluation and engineering flags:
    shared by the single-run parser and the paper protocol's, so both spell
    every setting the same way."""
    d = Config()
    g = p.add_argument_group("budget (defaults: the dataset's recipe, train/recipes/datasets/)")
    g.add_argument("--epochs", type=positive_int, help="pretraining epochs")
    g.add_argument("--batch-size", type=at_least_two,
                   help="images per step (two views each); under torchrun the global batch, split evenly over the "
                   "processes (must be divisible by their number); --lr scales with it")
    g.add_argument("--image-size", type=positive_int, help="images are resized once to this side")
    g.add_argument("--train-subset", type=at_least_two, metavar="K",
                   help="pretrain on K images; the probes still use the full labelled splits")

    g = p.add_argument_group("optimisation (defaults: each method's recipe, train/recipes/methods/)")
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--lr", type=positive_float,
                   help="learning rate per 256 images (scaled by batch/256, the global batch under torchrun)")
    g.add_argument("--weight-decay", type=nonneg_float)
    g.add_argument("--momentum", type=unit_interval, default=d.momentum, help="SGD / LARS momentum")
    g.add_argument("--warmup-epochs", type=nonneg_float, help="linear warm-up (default: min(10, epochs/10))")
    g.add_argument("--bias-lr-scale", type=nonneg_float,
                   help="learning-rate factor of biases and norm parameters (default 1, as solo-learn's CIFAR "
                   "recipes; the Barlow Twins paper's ImageNet recipe: 0.0048 / 0.2 = 0.024)")

    add_method_arguments(p)

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
    g.add_argument("--dist-timeout", type=positive_float, default=d.dist_timeout, metavar="MINUTES",
                   help="a training collective that waits this long (a process hung or a machine vanished) stops "
                   "the job with an error")


def cuda_available() -> bool:
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
    cfg = Config.from_settings(args)
    if cfg.resume and cfg.overwrite:
        parser.error("--resume and --overwrite contradict each other")
    check_params(cfg, parser)
    if cfg.device == "cuda" and not cuda_available():
        parser.error("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if cfg.precision == "bf16" and resolved_device(cfg) == "cpu":
        parser.error("--precision bf16 needs --device cuda (CPU runs use fp32)")
    require_tensorboard(cfg, parser)
    return resolve(cfg)


def check_params(cfg: Config, parser: argparse.ArgumentParser) -> None:
    """The hyper-parameters given must be taken by the method run (any of
    them for ``--method all``), and each method's recipe must accept its
    values (:meth:`~train.catalog.MethodRecipe.validate`)."""
    if cfg.method != "all":
        foreign = [k for k in cfg.params if k not in METHOD_RECIPES[cfg.method].param_names]
        if foreign:
            flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
            users = [m for m in METHOD_NAMES if any(k in METHOD_RECIPES[m].param_names for k in foreign)]
            parser.error(f"{flags}: {cfg.method} takes no such hyper-parameter (only {', '.join(users)} do); "
                         f"{cfg.method}'s are {', '.join(METHOD_RECIPES[cfg.method].param_names) or 'none'}")
    for name in method_names(cfg):
        try:
            method_params(cfg, name)
        except RecipeError as exc:
            parser.error(str(exc))


def require_tensorboard(cfg: Config, parser: argparse.ArgumentParser) -> None:
    """``--tensorboard`` without the tensorboard package is an argument error (before any training)."""
    from .tensorboard_log import MISSING, available

    if cfg.tensorboard and not available():
        parser.error(MISSING)


def resolved_device(cfg: Config) -> str:
    if cfg.device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return cfg.device


def resolve(cfg: Config) -> Config:
    """Fill the dataset's budget and the device; methods are filled later."""
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


def method_params(cfg: Config, name: str) -> Dict[str, Any]:
    """The hyper-parameters of method ``name`` in a run of ``cfg``: its recipe
    (changed by the dataset's recipe), then the ones ``cfg`` gives that it
    takes; checked by the recipe (:class:`~train.catalog.RecipeError`)."""
    recipe = METHOD_RECIPES[name]
    params = recipe_params(name, cfg.dataset)
    params.update({k: v for k, v in cfg.params.items() if k in recipe.param_names})
    return recipe.validate(params)


def for_method(cfg: Config, name: str, out: Optional[str] = None) -> Config:
    """``cfg`` for one method: its recipe fills the unset training settings
    and gives every hyper-parameter a value (:func:`method_params`)."""
    try:
        params = method_params(cfg, name)
    except RecipeError as exc:
        raise ConfigError(str(exc)) from None
    filled = {k: v for k, v in recipe_training(name, cfg.dataset).items() if getattr(cfg, k) is None}
    cfg = dataclasses.replace(cfg, method=name, out=out or cfg.out, params=params, **filled)
    if cfg.bias_lr_scale is None:
        cfg.bias_lr_scale = 1.0
    return cfg


def run_config(method: str, dataset: str = "digits", **settings) -> Config:
    """The resolved config of one run of ``method`` on ``dataset``:
    ``settings`` (trainer settings and the method's hyper-parameters, by
    name) over the dataset's and the method's recipes. Hyper-parameters the
    method does not take are ignored, as for ``--method all``."""
    cfg = resolve(Config.from_settings({"dataset": dataset, "method": method, **settings}))
    return for_method(cfg, method)


def method_names(cfg: Config) -> List[str]:
    return list(METHOD_NAMES) if cfg.method == "all" else [cfg.method]

