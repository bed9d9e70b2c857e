"""The training engine: one `train(config, progress)` used by the Train page, the CLI and the tests.

The engine never touches Streamlit. It reports through a `Progress` object (thread-safe, polled by the page)
and honours `progress.stop_event` within one batch. Every run folder is written atomically:
runs/<time>-<arch>/ config.json, history.csv, metrics.json, split.csv and the best model.keras.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core import settings
from core.atomic import atomic_save_model, atomic_write_text
from core.datasets import load_dataset
from core.models import AGE_LOSSES, ModelConfig, backbone_layer, build_model
from core.pipeline import (
    balanced_class_weights,
    load_images,
    make_dataset,
    split_table,
    targets_and_weights,
)


class TrainingError(Exception):
    """A training request that cannot run as asked (bad folder, too little data…); the message says why."""


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = ModelConfig()
    dataset: str = "utkface"
    data_dir: str = ""  # empty: settings.data_dir()
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    age_loss: str = "mae"  # regression head only; the distribution head uses cross-entropy + L1 on its mean
    # Age in years has a much larger scale than the class losses: 0.1 keeps the three heads comparable.
    age_weight: float = 0.1
    gender_weight: float = 1.0
    race_weight: float = 1.0
    age_sigma: float = 2.0  # years; the spread of the label distribution target
    race_class_weights: bool = False
    augment: bool = True
    schedule: str = "cosine"  # "cosine" (with warm-up) or "plateau"
    warmup_epochs: float = 1.0
    early_stopping_patience: int = 4
    freeze_backbone_epochs: int = 0  # resnet50: train only the heads first, then fine-tune everything
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    limit: int = 0  # 0 = all rows; otherwise a seeded sample, for quick runs
    seed: int = 42
    out_dir: str = ""  # empty: settings.runs_dir()

    @classmethod
    def tiny(cls, arch: str = "custom_cnn", **overrides) -> TrainConfig:
        """Seconds on a CPU, on the bundled sample: for tests and smoke runs."""
        model = ModelConfig.tiny(arch, **overrides.pop("model_overrides", {}))
        return cls(**{"model": model, "epochs": 1, "batch_size": 16, "limit": 64, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        data["model"] = ModelConfig(**data.get("model", {}))
        if "split" in data:
            data["split"] = tuple(data["split"])
        return cls(**data)


@dataclass
class Progress:
    """Shared between the training thread (writes) and the UI (reads snapshots). Writes take the lock."""
    status: str = "pending"  # pending → running → finished | stopped | failed
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches_per_epoch: int = 0
    device: str = ""
    message: str = ""
    notes: list[str] = field(default_factory=list)
    batch_log: list[dict] = field(default_factory=list)  # intra-epoch points: step, loss, metrics
    history: list[dict] = field(default_factory=list)  # one row per epoch, train and val
    run_dir: str = ""
    metrics: dict = field(default_factory=dict)
    error: str = ""
    started: float = field(default_factory=time.time)
    stop_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, **changes) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self, key, value)

    def snapshot(self) -> dict:
        with self.lock:
            return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()
                    if k not in ("stop_event", "lock")}

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed")


def device_name() -> str:
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else "CPU"


def _use_mixed_precision_if_gpu(device: str) -> None:
    import keras
    # float16 compute only pays on a GPU; our heads are Dense layers whose outputs Keras keeps in the layer
    # dtype policy, so losses stay numerically safe with the final activations cast to float32.
    keras.mixed_precision.set_global_policy("mixed_float16" if device.startswith("GPU") else "float32")


def _losses(cfg: TrainConfig) -> tuple[dict, dict, dict]:
    import keras
    if cfg.age_loss not in AGE_LOSSES:
        raise TrainingError(f"Unknown age loss {cfg.age_loss!r}; choose one of {', '.join(AGE_LOSSES)}.")
    distribution = cfg.model.age_head == "distribution"
    age_loss = {"mae": "mae", "mse": "mse", "huber": keras.losses.Huber(delta=5.0)}[cfg.age_loss]
    losses = {"age": "mae" if distribution else age_loss, "gender": "binary_crossentropy",
              "race": "sparse_categorical_crossentropy"}
    weights = {"age": cfg.age_weight, "gender": cfg.gender_weight, "race": cfg.race_weight}
    metrics = {"age": [keras.metrics.MeanAbsoluteError(name="mae")],
               "gender": [keras.metrics.BinaryAccuracy(name="accuracy")],
               "race": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]}
    if distribution:
        losses["age_dist"] = "categorical_crossentropy"
        weights["age_dist"] = 1.0
    return losses, weights, metrics


def _optimizer(cfg: TrainConfig, steps_per_epoch: int):
    import keras
    if cfg.schedule == "cosine":
        total = max(1, cfg.epochs * steps_per_epoch)
        warmup = min(int(cfg.warmup_epochs * steps_per_epoch), total - 1)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=cfg.learning_rate * 0.1 if warmup else cfg.learning_rate,
            decay_steps=max(1, total - warmup), alpha=0.01,
            warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup)
    else:
        lr = cfg.learning_rate
    return keras.optimizers.Adam(learning_rate=lr)


def _make_callback(progress: Progress, model_path: Path, monitor: str):
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        """Feeds the Progress object, saves the best model atomically and stops within one batch."""

        def __init__(self):
            super().__init__()
            self.best = np.inf
            self.step = 0

        def on_epoch_begin(self, epoch, logs=None):
            progress.update(epoch=epoch + 1, batch=0)

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            point = {"step": self.step, "epoch": progress.epoch - 1 + (batch + 1) / max(1, progress.batches_per_epoch)}
            point.update({k: float(v) for k, v in (logs or {}).items()})
            with progress.lock:
                progress.batch = batch + 1
                progress.batch_log.append(point)
            if progress.stop_event.is_set():
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
            with progress.lock:
                progress.history.append(row)
            value = row.get(monitor, row.get("loss", np.inf))
            if np.isfinite(value) and value < self.best:
                self.best = value
                atomic_save_model(self.model, model_path)

    return ProgressCallback()


def _prepare_data(cfg: TrainConfig) -> tuple[pd.DataFrame, pd.Series]:
    folder = cfg.data_dir or str(settings.data_dir())
    try:
        table = load_dataset(cfg.dataset, folder).table
    except Exception as error:  # DatasetError and unreadable folders alike: one clear message
        raise TrainingError(str(error)) from error
    if cfg.limit:
        table = table.sample(n=min(cfg.limit, len(table)), random_state=cfg.seed)
    table = table.reset_index(drop=True)
    if len(table) < 8:
        raise TrainingError(f"Only {len(table)} labelled images in {folder}: need at least 8 to train.")
    split = split_table(table, cfg.split, cfg.seed)
    if (split == "val").sum() == 0:  # tiny sets: borrow a few rows so validation curves exist
        split.iloc[: max(1, len(split) // 8)] = "val"
    return table, split


def _run_dir(cfg: TrainConfig) -> Path:
    root = Path(cfg.out_dir or settings.runs_dir())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = root / f"{stamp}-{cfg.model.arch}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{stamp}-{cfg.model.arch}-{suffix}"
    run_dir.mkdir(parents=True)
    return run_dir


def _set_seeds(seed: int) -> None:
    import keras
    keras.utils.set_random_seed(seed)


def _predict_metrics(model, images: np.ndarray, table: pd.DataFrame) -> dict:
    from core.evaluation import summary_metrics
    outputs = model.predict(images, batch_size=256, verbose=0)
    return summary_metrics(table, outputs)


def train(cfg: TrainConfig, progress: Progress | None = None) -> Progress:
    """Train one model as configured. Always returns the progress object with status, metrics and run_dir;
    raises TrainingError only for requests that cannot start (the page/CLI shows the message)."""
    progress = progress or Progress()
    progress.update(status="running", epochs=cfg.epochs, message="Reading the dataset…")
    table, split = _prepare_data(cfg)
    run_dir = _run_dir(cfg)
    progress.update(run_dir=str(run_dir))
    try:
        _train_in(run_dir, cfg, table, split, progress)
    except Exception as error:
        progress.update(status="failed", error=f"{type(error).__name__}: {error}", message="Training failed.")
        _write_json(run_dir / "metrics.json", {"status": "failed", "error": progress.error})
        raise
    return progress


def _train_in(run_dir: Path, cfg: TrainConfig, table: pd.DataFrame, split: pd.Series, progress: Progress):
    import keras

    device = device_name()
    progress.update(device=device)
    _use_mixed_precision_if_gpu(device)
    _set_seeds(cfg.seed)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
    atomic_write_text(run_dir / "split.csv", pd.DataFrame({"path": table["path"], "split": split}).to_csv(index=False))

    progress.update(message=f"Decoding {len(table)} images at {cfg.model.img_size} px…")
    images = load_images(table["path"].tolist(), cfg.model.img_size)
    parts = {name: (split == name).to_numpy() for name in ("train", "val", "test")}
    class_weights = None
    if cfg.race_class_weights:
        class_weights = balanced_class_weights(table.loc[parts["train"], "race"].dropna().to_numpy())
    datasets = {}
    for name in ("train", "val"):
        y, w = targets_and_weights(table[parts[name]], cfg.model.age_head, cfg.age_sigma, class_weights)
        datasets[name] = make_dataset(images[parts[name]], y, w, cfg.batch_size, training=name == "train",
                                      augment=cfg.augment, seed=cfg.seed)
    steps = int(np.ceil(parts["train"].sum() / cfg.batch_size))

    model, note = build_model(cfg.model)
    if note:
        progress.update(notes=[*progress.notes, note])
    losses, weights, metrics = _losses(cfg)
    model_path = run_dir / "model.keras"
    callback = _make_callback(progress, model_path, monitor="val_loss")
    callbacks = [callback, keras.callbacks.EarlyStopping(patience=cfg.early_stopping_patience, monitor="val_loss")]
    if cfg.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(factor=0.3, patience=2, monitor="val_loss"))
    progress.update(batches_per_epoch=steps, message=f"Training on {device}…", started=time.time())

    backbone = backbone_layer(model)
    frozen_epochs = min(cfg.freeze_backbone_epochs, cfg.epochs) if backbone is not None else 0
    if frozen_epochs:
        backbone.trainable = False
        model.compile(_optimizer(cfg, steps), losses, loss_weights=weights, metrics=metrics)
        model.fit(datasets["train"], validation_data=datasets["val"], epochs=frozen_epochs,
                  callbacks=callbacks, verbose=0)
        backbone.trainable = True
    if not progress.stop_event.is_set() and frozen_epochs < cfg.epochs:
        model.compile(_optimizer(cfg, steps), losses, loss_weights=weights, metrics=metrics)
        model.fit(datasets["train"], validation_data=datasets["val"], initial_epoch=frozen_epochs,
                  epochs=cfg.epochs, callbacks=callbacks, verbose=0)

    stopped = progress.stop_event.is_set()
    pd.DataFrame(progress.history).to_csv(tmp := run_dir / ".history.csv.tmp", index=False)
    tmp.replace(run_dir / "history.csv")
    if not model_path.exists():  # stopped before the first epoch ended: keep what we have
        atomic_save_model(model, model_path)
    best = keras.saving.load_model(model_path, safe_mode=True)
    progress.update(message="Scoring the held-out test split…")
    test_metrics = _predict_metrics(best, images[parts["test"]], table[parts["test"]]) if parts["test"].any() else {}
    metrics_doc = {
        "status": "stopped" if stopped else "finished", "device": device, "notes": progress.notes,
        "epochs_run": len(progress.history), "seconds": round(time.time() - progress.started, 1),
        "n_train": int(parts["train"].sum()), "n_val": int(parts["val"].sum()), "n_test": int(parts["test"].sum()),
        "test": test_metrics,
    }
    _write_json(run_dir / "metrics.json", metrics_doc)
    progress.update(status=metrics_doc["status"], metrics=metrics_doc,
                    message=f"{metrics_doc['status'].capitalize()}; saved to {run_dir}")


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=float))


class Job:
    """One training run in a background thread. The thread only writes to `progress`."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.progress = Progress(epochs=cfg.epochs)
        self.thread = threading.Thread(target=self._run, name="training-job", daemon=True)

    def _run(self) -> None:
        try:
            train(self.cfg, self.progress)
        except Exception as error:  # already recorded by train() when it got that far
            if not self.progress.done:
                self.progress.update(status="failed", error=str(error), message=str(error))

    def start(self) -> Job:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.progress.stop_event.set()


_job_lock = threading.Lock()
_current_job: Job | None = None


def start_job(cfg: TrainConfig) -> tuple[Job, bool]:
    """Start a job unless one is running on this server. Returns (the running job, whether it is new)."""
    global _current_job
    with _job_lock:
        if _current_job is not None and _current_job.thread.is_alive():
            return _current_job, False
        _current_job = Job(cfg).start()
        return _current_job, True


def current_job() -> Job | None:
    return _current_job
