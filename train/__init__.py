"""The SinSim trainer: self-supervised pretraining of a ResNet-18 with SinSim
or a baseline (SimCLR, BYOL, VICReg, Barlow Twins), then frozen-feature
evaluation (linear probe, 2-layer MLP probe, kNN).

Entry point: ``python train/run.py --help``. The library (``sinsim_ext``)
never imports this package.

The names below are the trainer's public API, what code outside the package
(the paper's experiments in ``experiments/``, tests, benchmarks) builds on;
the modules behind them are the trainer's own business. Importing ``train``
imports no torch: each name is loaded on first use, so a command line built
on it still parses its arguments before torch is imported.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, List

_EXPORTS: Dict[str, str] = {
    # settings: the run's configuration and its command line
    "Config": "train.config",
    "ConfigError": "train.config",
    "run_config": "train.config",
    "parse_config": "train.config",
    "resolve": "train.config",
    "for_method": "train.config",
    "method_params": "train.config",
    "setting_names": "train.config",
    "setting_kind": "train.config",
    "add_training_arguments": "train.config",
    "HelpFormatter": "train.config",
    "cuda_available": "train.config",
    "resolved_device": "train.config",
    "require_tensorboard": "train.config",
    "EVALUATION_FIELDS": "train.config",
    "positive_float": "train.checks",
    "nonneg_float": "train.checks",
    "nonneg_int": "train.checks",
    # the recipes: datasets and methods
    "DATASETS": "train.catalog",
    "METHOD_NAMES": "train.catalog",
    "METHOD_RECIPES": "train.catalog",
    "RecipeError": "train.catalog",
    # running
    "run_method": "train.protocol",
    "run_protocol": "train.protocol",
    "random_init_reference": "train.protocol",
    "CHECKPOINT": "train.protocol",
    "has_checkpoint": "train.protocol",
    "build_trainer": "train.build",
    "seed_everything": "train.build",
    "test_features": "train.features",
    "load_dataset": "train.datasets",
    "ImageData": "train.datasets",
    "DatasetError": "train.datasets",
    # what a run leaves
    "read_results": "train.results",
    "write_method_results": "train.results",
    "UnreadableResults": "train.results",
    "RESULTS_SCHEMA": "train.results",
    "read_predictions": "train.predictions",
    "correct": "train.predictions",
    # errors, stops, files, locks, threads, several processes, provenance
    "TrainerError": "train.errors",
    "RunError": "train.errors",
    "RunStopped": "train.stopping",
    "stopped_line": "train.stopping",
    "run_command": "train.command",
    "describe_os_error": "train.storage",
    "atomic_write_json": "train.storage",
    "atomic_write_text": "train.storage",
    "atomic_write_bytes": "train.storage",
    "append_text": "train.storage",
    "hold_run_folder": "train.run_lock",
    "work_inside": "train.run_lock",
    "chosen_cpu_threads": "train.cpu_threads",
    "torchrun_world_size": "train.parallel.env",
    "run_distributed": "train.parallel.launch",
    "git_state": "train.provenance",
    "code_label": "train.provenance",
    "code_fingerprint": "train.provenance",
    "changed_files": "train.provenance",
    "fingerprint_paths": "train.provenance",
}

__all__: List[str] = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))
