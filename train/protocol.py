"""The whole protocol for one method (pretrain, evaluate, record) and for all.

Output folder of a method run::

    config.json      the resolved config
    metrics.csv      one row per epoch: loss and its terms, lr, time, images/s (kNN if monitored)
    checkpoint.pt    the last finished epoch, or the step where a stop signal ended the run (train.checkpoint)
    checkpoint.previous.pt  the checkpoint before it (a damaged last one costs one epoch, not the run)
    results.json     linear / MLP / kNN accuracy on test and on validation, the features' geometry,
                     budget, timings, seed, code (git commit)
    results.md       the same as a markdown table
    run.lock         while a run owns the folder (train.run_lock)

``--method all`` runs every method into ``OUT/<method>/`` and writes the
combined ``OUT/results.json`` and ``OUT/results.md``, with a last row for the
untrained (random-init) encoder: the floor pretraining has to beat.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Dict, List

import torch
from tqdm.auto import tqdm

from . import cpu_threads, stopping
from .augment import TwoViews, plain_input
from .build import build_trainer, seed_everything
from .checkpoint import (DATA_KEY, atomic_write_json, load_newest_checkpoint, position, previous_path, restore,
                         save_checkpoint)
from .config import EVALUATION_FIELDS, RESUME_MAY_CHANGE, Config, for_method, method_names
from .datasets import ImageData, load_dataset
from .embedding import GEOMETRY_KEYS
from .embedding import measure as measure_geometry
from .engine import EpochStats, TrainingDiverged, TrainingStopped
from .errors import RunError
from .evaluate import evaluate_encoder, knn_monitor
from .models import resnet18_encoder
from .optim import change_base_lrs
from .parallel.context import current as parallel_job
from .predictions import PREDICTIONS, write_predictions
from .progress import EvalProgress
from .provenance import code_state
from .results import (RESULTS_SCHEMA, UnreadableResults, read_results, write_combined, write_method_results,
                      write_metrics_csv)
from .run_lock import hold_run_folder
from .splits import ProbeSplits, probe_splits
from .tensorboard_log import FOLDER as TENSORBOARD_FOLDER
from .tensorboard_log import open_board

CHECKPOINT = "checkpoint.pt"
__all__ = ["CHECKPOINT", "RunError", "has_checkpoint", "run_method", "run_protocol", "random_init_reference"]


def has_checkpoint(out) -> bool:
    """Whether the run folder ``out`` holds a checkpoint (the last one or the one before it)."""
    path = Path(out) / CHECKPOINT
    return path.is_file() or previous_path(path).is_file()


def log(message: str) -> None:
    tqdm.write(message)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        label = torch.cuda.get_device_name(device)
    else:
        label = f"cpu ({cpu_threads.label() or f'{torch.get_num_threads()} threads'})"
    job = parallel_job()
    return label if job is None else f"{job.world} processes ({job.backend}), each {label}"


def dataset_label(data: ImageData) -> str:
    return f"{data.name} (JPEG copy)" if any("JPEG copy" in n for n in data.notes) else data.name


def method_dirs(cfg: Config) -> Dict[str, Path]:
    names = method_names(cfg)
    if cfg.method == "all":
        return {name: Path(cfg.out) / name for name in names}
    return {names[0]: Path(cfg.out)}


def check_out_dirs(cfg: Config) -> None:
    """Refuse to start over a finished or interrupted run without a word
    (``--overwrite`` clears it with :func:`clear_previous_run`, once the new
    run has passed :func:`check_can_start`)."""
    if cfg.resume or cfg.overwrite:
        return
    taken = [d for d in method_dirs(cfg).values()
             if any((d / name).exists() for name in (CHECKPOINT, previous_path(Path(CHECKPOINT)).name, "results.json"))]
    if taken:
        raise RunError(
            f"{taken[0]} already holds a run. Pass --resume to continue it (finished methods are kept), "
            "--overwrite to start again, or another --out"
        )


RUN_STATE = (CHECKPOINT, previous_path(Path(CHECKPOINT)).name, "results.json", "results.md", "metrics.csv",
             PREDICTIONS)


def clear_previous_run(cfg: Config) -> None:
    """``--overwrite``: delete the old run's state in every method folder and,
    for ``--method all``, its combined ``results.json`` and ``results.md``
    (a table of the old run must not outlive it)."""
    folders = list(method_dirs(cfg).values())
    if cfg.method == "all":
        folders.append(Path(cfg.out))
    for d in folders:
        for name in RUN_STATE:
            (d / name).unlink(missing_ok=True)
        shutil.rmtree(d / TENSORBOARD_FOLDER, ignore_errors=True)


def check_can_start(cfg: Config, data: ImageData) -> ProbeSplits:
    """What would stop the run after it started (a batch of one, a
    --train-subset larger than the data, probe splits or geometry points it
    cannot carve), checked before anything in the output folder changes.
    Returns the probes' splits."""
    require_two_per_batch(cfg, min(len(data.pretrain), cfg.train_subset or len(data.pretrain)))
    data.with_pretrain_subset(cfg.train_subset, cfg.seed)
    return probe_data(cfg, data)


def _changed(saved: Dict, now: Dict, fields) -> Dict[str, list]:
    return {k: [saved.get(k), now[k]] for k in fields if saved.get(k) != now[k]}


def _advice(cfg: Config, checkpoint_path: Path, done: int) -> str:
    lower = f"{cfg.lr / 10:.3g}"
    if checkpoint_path.exists():
        return (f"the last good checkpoint (epoch {done}) is kept at {checkpoint_path}. Lower the learning rate "
                f"(it was --lr {cfg.lr:g}): the same command with --resume --lr {lower} continues from that epoch; "
                "or start again with a longer --warmup-epochs (--overwrite)")
    return (f"no epoch finished, so there is no checkpoint. Run again with a lower --lr "
            f"(it was {cfg.lr:g}; try {lower}) or a longer --warmup-epochs")


def run_method(cfg: Config, data: ImageData, may_change=()) -> Dict:
    """Pretrain ``cfg.method`` on ``data``, evaluate it, write its outputs.

    ``may_change``: training fields a resumed run may change (the flags the
    user gave explicitly, among :data:`train.config.RESUME_MAY_CHANGE`)."""
    with hold_run_folder(cfg.out, log=log), contextlib.ExitStack() as closing:
        return _run_method(cfg, data, tuple(may_change), closing)


def _run_method(cfg: Config, data: ImageData, may_change: tuple, closing: contextlib.ExitStack) -> Dict:
    out = Path(cfg.out)
    signature = {**cfg.training_signature(), DATA_KEY: data.fingerprint}
    previous = previous_results(out) if cfg.resume else None
    if previous is not None:
        kept = {k: v for k, v in signature.items() if k not in may_change}
        kept.setdefault("world_size", 1)  # a result of several processes is not one process's, and vice versa
        saved = {"world_size": 1, **previous.get("signature", {})}
        if all(saved.get(k) == v for k, v in kept.items()):
            changed = _changed(previous.get("signature", {}), signature, may_change)
            note = (" (" + ", ".join(f"--{k} {b!r}" for k, (a, b) in changed.items()) + " does not change a finished run)"
                    if changed else "")
            log(f"{cfg.method}: finished earlier, keeping {out / 'results.json'}{note}{_not_applied(cfg, out)}")
            return previous
    wall_start = time.perf_counter()

    seed_everything(cfg.seed)
    device = torch.device(cfg.device)
    images = data.with_pretrain_subset(cfg.train_subset, cfg.seed).pretrain.to(device)
    require_two_per_batch(cfg, len(images))
    mean, std = data.channel_stats()
    splits = probe_data(cfg, data)
    trainer = build_trainer(cfg, images, data.channels, mean, std, job=parallel_job())
    method, views, optimizer, scheduler = trainer.method, trainer.views, trainer.optimizer, trainer.scheduler
    batch_size, steps_per_epoch = trainer.batch_size, trainer.steps_per_epoch
    if batch_size < cfg.batch_size:
        log(f"note: batch size {cfg.batch_size} > {len(images)} pretraining images; using {batch_size}")

    checkpoint_path = out / CHECKPOINT
    start_epoch, metrics, changes = 0, [], []
    saved_at = (0, 0)  # (finished epochs, steps of the next one) of the newest checkpoint on disk
    if cfg.resume:
        fresh_base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        state, used = load_newest_checkpoint(checkpoint_path, signature, may_change, log=log,
                                             data_source=data.source)
        if state is not None:
            if DATA_KEY not in state["signature"]:
                log(f"note: {checkpoint_path} does not record the fingerprint of its images (written before it was "
                    f"recorded): cannot check that it was trained on {data.source}")
            restore(state, method=method, optimizer=optimizer, scheduler=scheduler, generators=trainer.generators)
            trainer.load_state_dict(state.get("trainer", {}))
            start_epoch, metrics, changes = state["epoch"], state["metrics"], list(state.get("resume_changes", []))
            partial = trainer.in_progress
            saved_at = (start_epoch, 0 if partial is None else partial.done)
            # the checkpoint's rows, also when no epoch is left to train (a kill during the evaluation
            # may have damaged the file); rows of epochs after the checkpoint are dropped
            write_metrics_csv(out / "metrics.csv", metrics)
            changed = _changed(state["signature"], signature, may_change)
            if "lr" in changed:
                change_base_lrs(optimizer, scheduler, fresh_base_lrs)
            if changed:
                at = {} if partial is None else {"and_steps": partial.done}
                changes.append({"after_epoch": start_epoch, **at, **changed})
            how = "".join(f"; --{k.replace('_', '-')} changes from {a!r} to {b!r}" for k, (a, b) in changed.items())
            newest = "" if used == checkpoint_path else " (the newest intact checkpoint)"
            log(f"{cfg.method}: resuming {position(state)} from {used}{newest}{how}")
        else:
            log(f"{cfg.method}: --resume found no checkpoint at {checkpoint_path}; starting from scratch")
    record = cfg.to_dict()
    if changes:
        record["resume_changes"] = changes  # the flags changed on resume, and after which epoch
    atomic_write_json(out / "config.json", record)
    if start_epoch < cfg.epochs:
        job = parallel_job()
        spread = "" if job is None else f" x {job.world} processes ({batch_size // job.world} images each)"
        log(f"{cfg.method}: pretraining epochs {start_epoch + 1}-{cfg.epochs}, {steps_per_epoch} steps of "
            f"{batch_size} images each, on {cfg.device}{spread} -> {out}")

    resumed_at = saved_at[0] * steps_per_epoch + saved_at[1]
    board = closing.enter_context(open_board(out, resumed_at)) if cfg.tensorboard else None  # closed by run_method
    if board is not None:
        trainer.on_check = lambda step, loss, lr: board.scalars("train", {"loss": loss, "lr": lr}, step)

    def save(epoch: int) -> None:
        nonlocal saved_at
        save_checkpoint(checkpoint_path, method=method, optimizer=optimizer, scheduler=scheduler,
                        epoch=epoch, step=epoch * steps_per_epoch, metrics=metrics,
                        generators=trainer.generators, signature=signature,
                        extra={"trainer": trainer.state_dict(), "resume_changes": changes,
                               "data_source": data.source})
        saved_at = (epoch, 0 if trainer.in_progress is None else trainer.in_progress.done)

    def on_epoch_end(s: EpochStats) -> None:
        row = s.row()
        if cfg.knn_every and s.epoch % cfg.knn_every == 0:
            row["knn"] = knn_monitor(method.backbone, splits, views.plain, k=cfg.knn_k,
                                     temperature=cfg.knn_temperature, precision=cfg.precision,
                                     progress=EvalProgress(f"{cfg.method} epoch {s.epoch} kNN monitor",
                                                           cfg.progress_every))
        metrics.append(row)
        write_metrics_csv(out / "metrics.csv", metrics)
        if board is not None:
            board.scalars("epoch", {k: v for k, v in row.items() if k != "epoch"}, s.epoch * steps_per_epoch)
            board.flush()
        if s.epoch % cfg.checkpoint_every == 0 or s.epoch == cfg.epochs:
            save(s.epoch)
        terms = " ".join(f"{k} {v:.4f}" for k, v in s.terms.items() if len(s.terms) > 1)
        knn = f" knn {row['knn']:.2f}%" if "knn" in row else ""
        log(f"{cfg.method} epoch {s.epoch}/{cfg.epochs}: loss {s.loss:.4f} {terms}{knn} "
            f"({s.seconds:.1f} s, {s.images_per_second:.0f} img/s)")

    try:
        with stopping.deferred():
            trainer.fit(start_epoch, on_epoch_end)
    except TrainingDiverged as exc:
        done = metrics[-1]["epoch"] if metrics else 0
        raise RunError(f"{cfg.method}: {exc}; {_advice(cfg, checkpoint_path, done)}") from exc
    except TrainingStopped as stop:
        finished = stop.epoch - 1
        if (finished, stop.done) != saved_at:
            save(finished)
        where = (f"at step {stop.done}/{stop.steps} of epoch {stop.epoch}/{cfg.epochs}" if stop.done
                 else f"after epoch {finished}/{cfg.epochs}")
        saved = f"saved in {checkpoint_path}" if saved_at != (0, 0) else "nothing was trained yet"
        raise stopping.RunStopped(stop.signum, f"{cfg.method} stopped {where}, {saved}") from None
    except stopping.RunStopped as exc:  # asked for while the last epoch's checkpoint was written
        exc.detail = exc.detail or (f"{cfg.method} stopped after its pretraining (epoch {cfg.epochs}/{cfg.epochs}, "
                                    f"saved in {checkpoint_path}), before its evaluation")
        raise

    pretrain_seconds = sum(m["seconds"] for m in metrics)
    eval_start = time.perf_counter()
    try:
        scores, geometry = _evaluate(cfg, data, method, splits, views)
    except stopping.RunStopped as exc:
        exc.detail = exc.detail or (f"{cfg.method} stopped during its evaluation; its pretraining is finished "
                                    f"and saved in {checkpoint_path}")
        raise
    eval_seconds = time.perf_counter() - eval_start
    result = {
        "schema": RESULTS_SCHEMA,
        "method": cfg.method,
        "dataset": cfg.dataset,
        "dataset_label": dataset_label(data),
        **rounded_scores(scores),
        "geometry": geometry,
        "knn_k": cfg.knn_k,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "pretrain_seconds": round(pretrain_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "wall_seconds": round(time.perf_counter() - wall_start, 3),
        "epoch_seconds_median": round(statistics.median(m["seconds"] for m in metrics), 4),
        "images_per_second": round(statistics.median(m["images_per_second"] for m in metrics), 1),
        "final_loss": metrics[-1]["loss"],
        "device": device_label(device),
        "budget": {
            "epochs": cfg.epochs,
            "batch_size": batch_size,
            "image_size": cfg.image_size,
            "train_subset": cfg.train_subset,
            "pretrain_images": len(images),
            "steps": steps_per_epoch * cfg.epochs,
            **probe_budget(splits),
        },
        "data_source": data.source,
        "notes": data.notes,
        "signature": signature,
        **({"resume_changes": changes} if changes else {}),
        "code": code_state(),
    }
    if board is not None and cfg.eval:
        last = steps_per_epoch * cfg.epochs
        board.scalars("eval/test", {k: scores[k] for k in ("linear", "mlp", "knn")}, last)
        board.scalars("eval/val", scores["val"] or {}, last)
        board.scalars("geometry", {k: geometry.get(k) for k in GEOMETRY_KEYS}, last)
    write_method_results(out, result)
    if cfg.eval:
        log(f"{cfg.method}: linear {result['linear']:.2f}%  MLP {result['mlp']:.2f}%  kNN {result['knn']:.2f}%  "
            f"(pretrain {pretrain_seconds:.1f} s, eval {eval_seconds:.1f} s) -> {out}")
    else:
        log(f"{cfg.method}: pretrained in {pretrain_seconds:.1f} s (median epoch {result['epoch_seconds_median']:.2f} s), "
            f"no evaluation (--no-eval) -> {out}")
    return result


def _evaluate(cfg: Config, data: ImageData, method, splits: ProbeSplits, views: TwoViews):
    """The probes' scores and the features' geometry of the pretrained
    encoder (no scores and no geometry with --no-eval)."""
    if not cfg.eval:
        return {"linear": None, "mlp": None, "knn": None, "val": None}, None
    log(f"{cfg.method}: evaluating the frozen encoder (linear and MLP probes, {cfg.probe_epochs} epochs, "
        f"kNN k={cfg.knn_k}) on {len(splits.train)} train / {len(splits.val) if splits.val else 0} validation / "
        f"{len(splits.test)} test labelled images")
    progress = EvalProgress(cfg.method, cfg.progress_every)
    scores = evaluate_encoder(method.backbone, splits, views.plain, knn_k=cfg.knn_k,
                              knn_temperature=cfg.knn_temperature, probe_epochs=cfg.probe_epochs,
                              seed=cfg.seed, precision=cfg.precision, progress=progress)
    write_predictions(cfg.out, scores["predictions"], splits)
    geometry = measure_geometry(method.backbone, data, cfg.dataset, cfg.image_size, cfg.geometry_points,
                                cfg.precision, validation=splits.val, progress=progress).record
    return scores, geometry


def _not_applied(cfg: Config, out: Path) -> str:
    """The evaluation flags that differ from those a kept run was evaluated
    with (its config.json), as a sentence for the log ("" when none)."""
    try:
        recorded = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(recorded, dict):
        return ""
    differ = [f"--{k.replace('_', '-')} {getattr(cfg, k)!r} (it was evaluated with {recorded[k]!r})"
              for k in EVALUATION_FIELDS if k in recorded and recorded[k] != getattr(cfg, k)]
    if not differ:
        return ""
    return ("; its numbers are those of its own evaluation, not of " + ", ".join(differ)
            + ": --overwrite (or another --out) trains and evaluates again")


def previous_results(out: Path):
    """The ``results.json`` a resumed method run may keep (None: none, or one
    that cannot be read but can be rebuilt from the final checkpoint)."""
    try:
        return read_results(out)
    except UnreadableResults as exc:
        if not (out / CHECKPOINT).is_file():
            raise RunError(f"{exc}, and there is no checkpoint to rebuild it from; start this run again with "
                           "--overwrite, or pass another --out") from exc
        log(f"note: {exc}; rebuilding it from {out / CHECKPOINT}")
        return None


def require_two_per_batch(cfg: Config, pretrain_images: int) -> None:
    """Refuse a batch of one image: NT-Xent with one has no negatives and is exactly 0."""
    batch = min(cfg.batch_size, pretrain_images)
    if batch < 2:
        raise RunError(f"{cfg.method}: a batch of {batch} image: self-supervised methods "
                       "compare two or more images per batch (NT-Xent with one has no negatives and is exactly 0); "
                       "use --batch-size 2 or more, and at least 2 pretraining images (--train-subset)")


def probe_data(cfg: Config, data: ImageData) -> ProbeSplits:
    """The probes' fixed probe-train / validation / test images (train/splits.py),
    refused when the probes or the geometry could not be measured on them."""
    try:
        splits = probe_splits(data, cfg.val_fraction, cfg.probe_train_subset, cfg.probe_test_subset)
    except ValueError as exc:
        raise RunError(f"{data.name}: cannot carve the probes' splits ({exc}); change --val-fraction "
                       "(0 for no validation split) or use more labelled images") from exc
    if cfg.eval or cfg.knn_every:
        check_probes(cfg, data, splits)
    return splits


def check_probes(cfg: Config, data: ImageData, splits: ProbeSplits) -> None:
    """Refuse probes that would fail or mean nothing: fewer than two
    probe-train images (the MLP probe's BatchNorm), a single class (every
    probe scores 100 %), fewer than two geometry points."""
    n = len(splits.train)
    pretrain_only = "or pretrain only with --no-eval"
    if n < 2:
        raise RunError(f"{data.name}: the probes' train split holds {n} labelled image(s) and the probes need 2 or "
                       "more; raise --probe-train-subset, lower --val-fraction, use more labelled images, "
                       + pretrain_only)
    present = sorted(set(splits.train.labels.tolist()))
    if len(present) < 2:
        subset = f" of --probe-train-subset {cfg.probe_train_subset}" if cfg.probe_train_subset else ""
        raise RunError(f"{data.name}: the probes' train split{subset} holds 1 class ({data.classes[present[0]]}), so "
                       "every probe would score 100 % whatever the features; use a dataset of two or more classes"
                       + (", a larger --probe-train-subset" if subset else "") + ", " + pretrain_only)
    split, images = ("validation", len(splits.val)) if splits.val is not None else ("test", len(data.test_images))
    if cfg.eval and min(cfg.geometry_points, images) < 2:
        raise RunError(f"--geometry-points: the {split} split of {data.name} holds {images} image(s) "
                       f"and the geometry (uniformity, effective rank) needs 2 or more points; add {split} images, "
                       + pretrain_only)


def probe_budget(splits: ProbeSplits) -> Dict:
    """How many labelled images the probes saw (goes into results.json)."""
    return splits.budget()


def rounded_scores(scores: Dict) -> Dict:
    """Test accuracies at the top level, validation ones under ``"val"``."""
    val = scores.get("val")
    out = {k: None if scores.get(k) is None else round(scores[k], 4) for k in ("linear", "mlp", "knn")}
    out["val"] = None if val is None else {k: round(v, 4) for k, v in val.items()}
    return out


def random_init_reference(cfg: Config, data: ImageData, out=None) -> Dict:
    """The probes on an untrained encoder: the floor that pretraining must
    beat. With ``out``, its per-image predictions go to ``out/predictions.npz``."""
    seed_everything(cfg.seed)
    device = torch.device(cfg.device)
    encoder, _ = resnet18_encoder(data.channels, cfg.image_size)
    mean, std = data.channel_stats()
    splits = probe_data(cfg, data)
    to_input = plain_input(mean, std)
    start = time.perf_counter()
    encoder = encoder.to(device)
    progress = EvalProgress("random init", cfg.progress_every)
    log("random init: evaluating an untrained encoder (the floor pretraining has to beat)")
    scores = evaluate_encoder(encoder, splits, to_input, knn_k=cfg.knn_k, knn_temperature=cfg.knn_temperature,
                              probe_epochs=cfg.probe_epochs, seed=cfg.seed, precision=cfg.precision,
                              progress=progress)
    if out is not None:
        write_predictions(out, scores["predictions"], splits)
    geometry = measure_geometry(encoder, data, cfg.dataset, cfg.image_size, cfg.geometry_points, cfg.precision,
                                validation=splits.val, progress=progress)
    log(f"random init (no pretraining): linear {scores['linear']:.2f}%  MLP {scores['mlp']:.2f}%  kNN {scores['knn']:.2f}%")
    return {"schema": RESULTS_SCHEMA, "method": "random init", "dataset": cfg.dataset,
            "dataset_label": dataset_label(data), **rounded_scores(scores), "geometry": geometry.record, "knn_k": cfg.knn_k, "epochs": 0,
            "seed": cfg.seed, "eval_seconds": round(time.perf_counter() - start, 3), "device": device_label(device),
            "budget": {"epochs": 0, "batch_size": None, "image_size": cfg.image_size, "train_subset": None,
                       **probe_budget(splits)},
            "code": code_state()}


def run_protocol(cfg: Config) -> List[Dict]:
    """Run ``cfg.method`` (or every method) and return the result records.
    The run owns ``cfg.out`` from the start (:mod:`train.run_lock`): a second
    run there refuses to start before it touches anything."""
    with hold_run_folder(cfg.out, log=log):
        return _run_protocol(cfg)


def _run_protocol(cfg: Config) -> List[Dict]:
    with contextlib.ExitStack() as methods:  # --method all: every method folder is ours from the start
        for folder in method_dirs(cfg).values():
            methods.enter_context(hold_run_folder(folder, log=log))
        return _run_methods(cfg)


def _run_methods(cfg: Config) -> List[Dict]:
    check_out_dirs(cfg)
    with cpu_threads.chosen(cfg.cpu_threads, cfg.device, log):
        return _run_methods_on(cfg)


def _run_methods_on(cfg: Config) -> List[Dict]:
    # --lr given on the command line (not a method's default) may change on --resume
    may_change = tuple(k for k in RESUME_MAY_CHANGE if getattr(cfg, k) is not None) if cfg.resume else ()
    log(f"loading {cfg.dataset} from {cfg.data_dir if cfg.dataset != 'digits' else 'scikit-learn'} ...")
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.cache_dir, cfg.image_size,
                        download=cfg.download, num_workers=cfg.num_workers)
    for note in data.notes:
        log(f"note: {note}")
    for channel, value in data.constant_channels().items():
        log(f"note: channel {channel} of the pretraining images is constant (every pixel {value}): it is "
            "normalised to 0, and carries no information")
    subset = f" (a random {cfg.train_subset} of them with --train-subset)" if cfg.train_subset else ""
    log(f"{data.name}: {len(data.pretrain)} pretraining images{subset}, {len(data.train_images)} train / "
        f"{len(data.test_images)} test labelled, {data.num_classes} classes, {cfg.image_size} px, device {cfg.device}")
    probed = check_can_start(cfg, data).budget()
    log(f"probes: {probed['probe_train_images']} train / {probed['val_images']} validation (choices) / "
        f"{probed['probe_test_images']} test (final numbers) images")
    if cfg.overwrite:
        clear_previous_run(cfg)  # only now: a run that cannot start leaves the old one as it was
    if cfg.method == "all":
        atomic_write_json(Path(cfg.out) / "config.json", cfg.to_dict())
    results = [run_method(for_method(cfg, name, str(path)), data, may_change)
               for name, path in method_dirs(cfg).items()]
    if cfg.method == "all" and cfg.eval:
        results.append(random_init_reference(cfg, data))
        table = write_combined(Path(cfg.out), results)
        log("\n" + table + f"\n(written to {Path(cfg.out) / 'results.md'})")
    return results
