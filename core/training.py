"""The training engine: one `train(config, progress)` used by the Train page, the CLI and the tests.

The engine never touches Streamlit. It reports through a `Progress` object (core/config.py: thread-safe, polled
by the page) and honours `progress.stop_event` within one batch. The app runs it in a worker process
(core/jobs.py), so this module and TensorFlow are never imported by the Streamlit server.
Every run folder is written atomically: runs/<time>-<arch>/ config.json, split.csv (path, split), history.csv
(one row per epoch, rewritten after each), the best model.keras (lowest validation loss) and metrics.json
{status, device, notes, best, test, …}.
Cross-validation (core/crossval.py) repeats that once per fold.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from core import distribute, housekeeping
from core.atomic import atomic_save_model
from core.callbacks import progress_callback as make_progress_callback

# The light half of the engine (no Keras), re-exported for callers that import it from core.training.
from core.config import MIN_ROWS, SCHEDULES, Progress, TrainConfig, TrainingError  # noqa: F401
from core.crops import load_crops
from core.distillation import blend_targets, one_hot_races, teacher_outputs, teacher_paths
from core.errors import UserError
from core.label_spaces import SPACES, true_races
from core.labels import RACES
from core.metrics import GROUP_RUN_METRICS
from core.models import backbone_layer, build_model
from core.pipeline import balanced_class_weights, make_dataset, targets_and_weights
from core.recipes import with_recipe
from core.registry import ModelError, load_model
from core.runs import Run, list_runs, new_run_dir, read_history, runs_root  # noqa: F401  (list_runs, read_history: moved, they need no TensorFlow)
from core.splits import write_split_file
from core.training_data import prepare_data

log = logging.getLogger(__name__)


def device_name() -> str:
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else "CPU"


@contextlib.contextmanager
def _precision_for(device: str) -> Iterator[None]:
    """float16 compute only pays on a GPU (the builders keep output layers float32, so losses stay safe and
    Keras adds loss scaling). The policy is process-wide: restore it so later builds are not affected."""
    import keras
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16" if device.startswith("GPU") else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _losses(cfg: TrainConfig) -> tuple[dict, dict, dict]:
    """(losses, loss weights, metrics) per output. Metrics are compiled as *weighted* metrics: Keras applies
    sample weights to those only, and the weights are what masks rows that lack a head's label."""
    import keras
    space = SPACES[cfg.model.label_space]
    if not space.age_in_years:
        return _group_losses(cfg, space)
    distribution = cfg.model.age_head == "distribution"
    age_loss = {"mae": "mae", "mse": "mse", "huber": keras.losses.Huber(delta=5.0)}[cfg.age_loss]
    # A distilled model's race targets are probability rows (core/distillation.py), not class numbers.
    soft_race = bool(cfg.teachers)
    losses = {"age": "mae" if distribution else age_loss, "gender": "binary_crossentropy",
              "race": "categorical_crossentropy" if soft_race else "sparse_categorical_crossentropy"}
    weights = {"age": cfg.age_weight, "gender": cfg.gender_weight, "race": cfg.race_weight}
    race_accuracy = keras.metrics.CategoricalAccuracy if soft_race else keras.metrics.SparseCategoricalAccuracy
    metrics = {"age": [keras.metrics.MeanAbsoluteError(name="mae")],
               "gender": [keras.metrics.BinaryAccuracy(name="accuracy")],
               "race": [race_accuracy(name="accuracy")]}
    if distribution:
        losses["age_dist"] = "categorical_crossentropy"
        weights["age_dist"] = 1.0
    return losses, weights, metrics


def _group_losses(cfg: TrainConfig, space) -> tuple[dict, dict, dict]:
    """A group-head model's: cross-entropy over its age groups, at weight 1 (age_weight's 0.1 tempers squared
    years; a group cross-entropy is on the class losses' own scale), and its races where it has them."""
    import keras
    heads = ["age_group", "gender", *(["race"] if space.races is not None else [])]
    losses = {"age_group": "sparse_categorical_crossentropy", "gender": "binary_crossentropy",
              "race": "sparse_categorical_crossentropy"}
    weights = {"age_group": 1.0, "gender": cfg.gender_weight, "race": cfg.race_weight}
    metrics = {"age_group": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
               "gender": [keras.metrics.BinaryAccuracy(name="accuracy")],
               "race": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]}
    return ({h: losses[h] for h in heads}, {h: weights[h] for h in heads}, {h: metrics[h] for h in heads})


def _optimizer(cfg: TrainConfig, steps_per_epoch: int, epochs: int, learning_rate: float):
    import keras
    if cfg.schedule == "cosine":
        total = max(1, epochs * steps_per_epoch)
        warmup = min(int(cfg.warmup_epochs * steps_per_epoch), total - 1)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=learning_rate * 0.1 if warmup else learning_rate,
            decay_steps=max(1, total - warmup), alpha=0.01,
            warmup_target=learning_rate if warmup else None, warmup_steps=warmup)
    else:
        lr = learning_rate
    if cfg.optimizer == "sgd":  # Levi–Hassner's Caffe solver
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    return keras.optimizers.Adam(learning_rate=lr)


# ---------------------------------------------------------------------------------------------- engine

def train(cfg: TrainConfig, progress: Progress | None = None, export_tflite: bool = False) -> Progress:
    """Train one model as configured. Always returns the progress object with status, metrics and run_dir;
    raises a UserError (TrainingError, DatasetError…) for requests that cannot start (the page/CLI shows the
    message) and re-raises any error after recording it in progress and metrics.json. With `export_tflite`, a
    finished (not stopped) run also gets model.tflite (float32), for the app's LiteRT inference; written before
    metrics.json says "finished", so a listed run has it."""
    progress = progress or Progress(epochs=cfg.epochs)
    progress.update(status="running", epochs=cfg.epochs, message="Reading the dataset…")
    root = runs_root(cfg)
    try:
        cfg.validate()
        cfg, recipe_note = with_recipe(cfg)  # a reference model trains as its report did (core/recipes.py)
        if recipe_note:
            progress.update(epochs=cfg.epochs, notes=[*progress.notes, recipe_note])
        table, split = prepare_data(cfg)
        # In a cluster, only the chief writes a run folder (core/distribute.py).
        run_dir = distribute.run_folder(cfg, root, lambda: new_run_dir(root, cfg.model.arch))
    except UserError as error:
        progress.update(status="failed", error=str(error), message=str(error))
        raise
    lock = housekeeping.hold_run_lock(run_dir)  # the run is in progress while this process holds it
    try:
        train_on_split(cfg, table, split, run_dir, progress, export_tflite)
    finally:
        housekeeping.release_run_lock(lock)
    distribute.clean_up(cfg, root)  # a run that ended needs no backup (a failed one keeps it to resume)
    return progress


def train_on_split(cfg: TrainConfig, table: pd.DataFrame, split: pd.Series, run_dir: Path,
                   progress: Progress, export_tflite: bool = False) -> Progress:
    """Train on a given train/val/test assignment into an existing, empty run folder."""
    progress.update(status="running", run_dir=str(run_dir))
    try:
        _train_in(run_dir, cfg, table, split, progress, export_tflite)
    except Exception as error:  # recorded for the page and the run folder, then raised again with its traceback
        shown = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
        progress.update(status="failed", error=shown, message="Training failed.")
        Run(run_dir).write_metrics({"status": "failed", "error": progress.error,
                                               "device": progress.device, "notes": progress.notes})
        raise
    return progress


def _class_weights(cfg: TrainConfig, train_rows: pd.DataFrame) -> dict:
    weights, space = {}, SPACES[cfg.model.label_space]
    if cfg.race_class_weights and space.races is not None:
        races = true_races(train_rows, space)
        weights["race_class_weights"] = balanced_class_weights(races[races >= 0], len(space.races))
    if cfg.gender_class_weights:
        weights["gender_class_weights"] = balanced_class_weights(train_rows["gender"].dropna().to_numpy(), 2)
    return weights


def _fit_phases(model, cfg: TrainConfig, datasets: dict, callbacks: list, steps: int, progress: Progress,
                pretrained: bool, backup: Path | None = None) -> None:
    """Plain fit, or for a backbone model with freeze_backbone_epochs: heads first, then everything at a
    lower learning rate. Each phase gets its own schedule over its own epochs."""
    import keras
    losses, weights, metrics = _losses(cfg)
    backbone = backbone_layer(model)
    frozen = min(cfg.freeze_backbone_epochs, cfg.epochs) if backbone is not None else 0
    phases = [(0, frozen, False, cfg.learning_rate), (frozen, cfg.epochs, True, cfg.learning_rate)]
    if frozen:
        phases[1] = (frozen, cfg.epochs, True, cfg.learning_rate * cfg.finetune_lr_factor)
        if not pretrained:
            progress.update(notes=[*progress.notes, "The backbone was frozen with random weights: the first "
                                                    "epochs trained the heads on random features."])
    for first, last, backbone_trainable, learning_rate in phases:
        if last <= first or progress.stop_event.is_set():
            continue
        if backbone is not None:
            backbone.trainable = backbone_trainable
        stage = ("Training" if not frozen else "Fine-tuning everything" if backbone_trainable
                 else "Training the heads (backbone frozen)")
        progress.update(message=f"{stage} on {progress.device}…")
        model.compile(_optimizer(cfg, steps, last - first, learning_rate), losses, loss_weights=weights,
                      weighted_metrics=metrics)
        # A cluster's worker keeps a backup of each phase (their optimizers differ), resumed after a restart.
        restore = [] if backup is None else [
            keras.callbacks.BackupAndRestore(backup / f"phase-{first}", delete_checkpoint=False)]
        model.fit(datasets["train"], validation_data=datasets["val"], initial_epoch=first, epochs=last,
                  callbacks=[*callbacks, *restore], verbose=0, shuffle=False)  # the dataset shuffles itself


def _train_in(run_dir: Path, cfg: TrainConfig, table: pd.DataFrame, split: pd.Series, progress: Progress,
              export_tflite: bool = False):
    import keras

    progress.update(message="Starting TensorFlow…")
    distribution = distribute.pick()  # before any other TensorFlow work: a cluster's strategy must come first
    device = device_name()
    shared = distribution.run_info(cfg)
    progress.update(device=device, distribution=shared)
    Run(run_dir).write_config({**cfg.to_dict(), "distribution": shared})
    write_split_file(Run(run_dir).split_file, table["path"], split)

    images = _input_images(cfg, table, progress)
    parts = {name: (split == name).to_numpy() for name in ("train", "val", "test")}
    inputs = {name: images[parts[name]] for name in ("train", "val")}  # each a copy: cut once, shared below
    class_weights = _class_weights(cfg, table[parts["train"]])
    teacher = _teacher_outputs(cfg, table[parts["train"]], inputs["train"], progress) if cfg.teachers else None
    datasets = {}
    for name in ("train", "val"):
        y, w = targets_and_weights(table[parts[name]], cfg.model.age_head, cfg.age_sigma, **class_weights,
                                   space=SPACES[cfg.model.label_space])
        if teacher is not None:  # validation keeps the labels alone: its loss is comparable across runs
            y = one_hot_races(y, len(RACES))
            y = blend_targets(y, teacher, cfg.teacher_weight) if name == "train" else y
        build = functools.partial(make_dataset, inputs[name], y, w, cfg.batch_size, training=name == "train",
                                  augment=cfg.augment)
        datasets[name] = distribution.dataset(build, cfg.seed)
    steps = distribution.steps_per_epoch(int(parts["train"].sum()), cfg.batch_size)
    backup = distribute.backup_dir(cfg, runs_root(cfg))
    if resumed := distribute.resumed_history(run_dir, backup):
        progress.update(history=resumed, notes=[*progress.notes, f"Resumed from the backup after epoch "
                                                                 f"{int(resumed[-1]['epoch'])}."])

    with _precision_for(device):
        keras.utils.set_random_seed(cfg.seed)
        with distribution.scope():  # the model, its optimizer and metrics: variables mirrored on every replica
            model, note = build_model(cfg.model)
            if cfg.init_from:
                note = _warm_start(model, Path(cfg.init_from).expanduser())
            if note:
                progress.update(notes=[*progress.notes, note])
            progress_callback = make_progress_callback(progress, run_dir, monitor="val_loss",
                                                       keep_epochs=cfg.keep_epochs)
            progress_callback.best = min((row.get("val_loss", np.inf) for row in resumed), default=np.inf)
            progress_callback.stop_requested = distribution.stop_requested(progress.stop_event)
            callbacks = [*distribution.callbacks(), progress_callback,
                         keras.callbacks.EarlyStopping(patience=cfg.early_stopping_patience, monitor="val_loss")]
            if cfg.schedule == "plateau":
                callbacks.append(keras.callbacks.ReduceLROnPlateau(factor=0.3, patience=2, monitor="val_loss"))
            progress.update(batches_per_epoch=steps, started=time.time())
            pretrained = cfg.model.arch in ("resnet50", "vgg16") and note is None
            scaled = dataclasses.replace(cfg, learning_rate=shared["learning_rate"])
            _fit_phases(model, scaled, datasets, callbacks, steps, progress, pretrained, backup)

        stopped = progress.stop_event.is_set()
        model_path = Run(run_dir).model_file
        if not model_path.exists():  # stopped before the first epoch ended: keep what we have
            atomic_save_model(model, model_path)
        Run(run_dir).write_history(progress.snapshot()["history"])
        test_metrics = {}
        if stopped:
            progress.update(notes=[*progress.notes, "Stopped by the user: the test split was not scored."])
        elif parts["test"].any() and distribution.is_chief:  # the others' run folders are scratch
            progress.update(message="Scoring the held-out test split…")
            best = keras.saving.load_model(model_path, safe_mode=True, compile=False)
            test_metrics = _predict_metrics(best, images[parts["test"]], table[parts["test"]], cfg.model.label_space)
    if export_tflite and not stopped and distribution.is_chief:
        _export_for_litert(model_path, progress)

    history = progress.snapshot()["history"]
    best_row = min(history, key=lambda row: row.get("val_loss", np.inf), default={})
    metrics_doc = {
        "status": "stopped" if stopped else "finished", "device": device, "notes": progress.notes,
        "epochs_run": len(history), "best_epoch": best_row.get("epoch"),
        "best": {k: v for k, v in best_row.items() if k.startswith("val_")},
        "seconds": round(time.time() - progress.started, 1),
        "n_train": int(parts["train"].sum()), "n_val": int(parts["val"].sum()), "n_test": int(parts["test"].sum()),
        "test": test_metrics, "distribution": shared,
    }
    Run(run_dir).write_metrics(metrics_doc)
    where = f"saved to {run_dir}" if distribution.is_chief else "the chief saved the run"
    progress.update(status=metrics_doc["status"], metrics=metrics_doc, message=f"{metrics_doc['status'].capitalize()}; "
                                                                               f"{where}")


def _export_for_litert(model_path: Path, progress: Progress) -> None:
    """model.tflite beside model.keras. A failed export costs the run its LiteRT file, not its result: a note."""
    from core.export import export_tflite
    progress.update(message="Exporting the model for LiteRT…")
    try:
        export_tflite(model_path, model_path.with_suffix(".tflite"))
    except Exception as error:  # ExportError and the converter's assorted internal errors alike
        log.warning("TFLite export of %s failed", model_path, exc_info=True)
        progress.update(notes=[*progress.notes, f"Could not export model.tflite for LiteRT ({type(error).__name__}: "
                                                f"{error}); try `python -m core export --model {model_path}`."])


def _input_images(cfg: TrainConfig, table: pd.DataFrame, progress: Progress) -> np.ndarray:
    paths, size = table["path"].tolist(), cfg.model.img_size
    progress.update(message=f"Decoding {len(table)} images at {size} px…" if cfg.crops == "dataset" else
                    f"Finding and aligning the faces of {len(table)} images (cached after the first run)…")
    images, detections = load_crops(paths, size, cfg.crops, on_progress=lambda done, total: progress.update(
        message=f"Finding and aligning faces: {done}/{total} images…"))
    missed = int((~detections.found).sum()) if detections is not None else 0
    if missed:
        progress.update(notes=[*progress.notes, f"No face detected in {missed} of {len(paths)} images "
                                                f"({missed / len(paths):.1%}): their own crop was used."])
    return images


def _teacher_outputs(cfg: TrainConfig, train_rows: pd.DataFrame, train_images: np.ndarray, progress: Progress) -> dict:
    paths = teacher_paths(cfg.teachers)
    outputs = teacher_outputs(paths, train_rows["path"].tolist(), cfg.crops,
                              lambda message: progress.update(message=message), {cfg.model.img_size: train_images})
    progress.update(notes=[*progress.notes, f"Learning from {len(paths)} teacher model"
                                            f"{'s' * (len(paths) > 1)} ({', '.join(p.name for p in paths)}), "
                                            f"at weight {cfg.teacher_weight:g} beside the labels."])
    return outputs


def _warm_start(model, source: Path) -> str:
    """Copy every weight of the model saved at `source` into the freshly built `model` (same architecture and
    input size; weight count and shapes are checked so a mismatch is a clear error, not a silent partial load)."""
    try:  # the user named this file (CLI, or a server's own model checked by core.access), so from anywhere
        saved = load_model(source, allow_anywhere=True)
    except ModelError as error:  # missing file, not a Keras archive, unsafe content…
        raise TrainingError(f"Cannot start from {source.name}: {error}") from error
    # Matched by position, not name: Keras numbers unnamed layers per process, so names differ between builds.
    ours, theirs = model.weights, saved.weights
    mismatched = [w.path for w, t in zip(ours, theirs, strict=False) if tuple(w.shape) != tuple(t.shape)]
    if mismatched or len(ours) != len(theirs):
        raise TrainingError(f"Cannot start from {source.name}: its layers do not match this architecture and size "
                            f"({len(theirs)} saved weights for {len(ours)}, {len(mismatched)} of other shapes).")
    for weight, value in zip(ours, theirs, strict=True):
        weight.assign(value)
    return f"Started from the weights of {source.name}."


def _predict_metrics(model, images: np.ndarray, table: pd.DataFrame, label_space: str = "utkface") -> dict:
    outputs = model.predict(images, batch_size=256, verbose=0)
    if label_space != "utkface":  # group heads: scored in their own space (exact and one-off group accuracy)
        from core.space_scores import space_summary
        scores = space_summary(table, outputs, SPACES[label_space], SPACES[label_space])
        return {k: v for k, v in scores.items() if k in GROUP_RUN_METRICS or k == "n"}
    from core.evaluation import summary_metrics
    return summary_metrics(table, outputs)
