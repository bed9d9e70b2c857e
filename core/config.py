"""What a training run is asked to do and how it reports, without Keras or TensorFlow: `TrainConfig`,
`TrainingError` and `Progress`. The Streamlit server, the CLI's argument parsing and the job monitor use these
(seconds of TensorFlow start-up saved, and no TensorFlow in the server at all); core/training.py, which runs in a
worker process, re-exports them."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field

from core.crops import CROP_MODES
from core.datasets import KINDS
from core.errors import UserError
from core.model_config import AGE_LOSSES, ModelConfig, arch_kinds

SCHEDULES = ("cosine", "plateau", "constant")
OPTIMIZERS = ("adam", "sgd")
MIN_ROWS = 8


class TrainingError(UserError):
    """A training request that cannot run as asked (bad folder, too little data…); the message says why."""


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = ModelConfig()
    dataset: str = "utkface"
    data_dir: str = ""  # empty: settings.data_dir()
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # "sgd" (momentum 0.9): the Levi–Hassner recipe (core/recipes.py)
    # batch_size is per replica; on several replicas (core/distribute.py) the global batch grows with them, and the
    # learning rate with it (the linear scaling rule) unless this is off: then learning_rate is used as it is.
    scale_learning_rate: bool = True
    # Regression head only; the distribution head trains on cross-entropy over years plus L1 on its mean.
    age_loss: str = "mse"
    # The reference weighting: age in years (squared, for MSE) dwarfs the class losses, 0.1 tempers it.
    age_weight: float = 0.1
    gender_weight: float = 1.0
    race_weight: float = 1.0
    age_sigma: float = 2.0  # years; the spread of the label distribution target
    # Balanced per-head class weights, applied as per-head sample weights (Keras' class_weight cannot address
    # one output of several). The weighted training-log accuracy is then class-balanced accuracy.
    race_class_weights: bool = False
    gender_class_weights: bool = False
    augment: bool = True
    # "app": faces cut the way the app cuts an upload (detect + align, core/crops.py), so a model learns the
    # inputs it will meet; "dataset": the dataset's own crops, resized.
    crops: str = "app"
    schedule: str = "cosine"  # "cosine" (with warm-up), "plateau", or "constant" (a reference report's own)
    warmup_epochs: float = 1.0
    early_stopping_patience: int = 4
    # Every epoch's weights as epochs/epoch-NN.keras besides the best model.keras: the raw material of weight
    # averaging (`python -m core average`), which needs the models along the way, not only the best one.
    keep_epochs: bool = False
    freeze_backbone_epochs: int = 0  # resnet50: train only the heads first, then fine-tune everything
    # Fine-tuning after a frozen phase: full-size updates would wreck the pretrained features the heads fit to.
    finetune_lr_factor: float = 0.1
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    limit: int = 0  # 0 = all rows; otherwise a seeded sample, for quick runs
    # A .keras model of the same architecture to start from instead of random weights: continue a run with a new
    # learning-rate cycle (a warm restart), or fine-tune a shipped model on another dataset.
    init_from: str = ""
    # Distillation (core/distillation.py): comma-separated .keras models whose averaged outputs the model also
    # learns from, an ensemble's reading carried into one model; `teacher_weight` is the teachers' share of each
    # probability target (age distribution, gender, race), the labels keep the rest.
    teachers: str = ""
    teacher_weight: float = 0.5
    # A run's split.csv to reuse (required to continue that run honestly): images it lists keep their split,
    # others get a fresh one.
    split_file: str = ""
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
        """Inverse of to_dict. Unknown keys (a config.json from a newer or older version) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        model_known = {f.name for f in dataclasses.fields(ModelConfig)}
        data = {k: v for k, v in data.items() if k in known}
        data["model"] = ModelConfig(**{k: v for k, v in dict(data.get("model", {})).items() if k in model_known})
        if "split" in data:
            data["split"] = tuple(data["split"])
        return cls(**data)

    def validate(self) -> None:
        """Raise TrainingError naming the first setting that cannot work."""
        checks = [
            (self.age_loss not in AGE_LOSSES, f"age loss {self.age_loss!r} is not one of {', '.join(AGE_LOSSES)}"),
            (self.schedule not in SCHEDULES, f"schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}"),
            (self.crops not in CROP_MODES, f"crops {self.crops!r} is not one of {', '.join(CROP_MODES)}"),
            (self.dataset not in KINDS, f"dataset kind {self.dataset!r} is not one of {', '.join(KINDS)}"),
            (self.optimizer not in OPTIMIZERS, f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}"),
            (self.dataset in KINDS and self.dataset not in arch_kinds(self.model.arch),
             f"{self.model.arch} trains on {' or '.join(arch_kinds(self.model.arch))} data only (it learns that "
             f"dataset's own labels), not on {self.dataset}: choose a {' or '.join(arch_kinds(self.model.arch))} "
             "folder and dataset kind"),
            (self.epochs < 1, "epochs must be at least 1"),
            (self.batch_size < 1, "batch size must be at least 1"),
            (self.learning_rate <= 0, "learning rate must be positive"),
            (min(self.age_weight, self.gender_weight, self.race_weight) < 0, "loss weights cannot be negative"),
            (len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-6 or self.split[0] == 0,
             f"split fractions {self.split} must be three non-negative numbers summing to 1 with some train"),
            (self.limit < 0, "limit cannot be negative"),
            (self.freeze_backbone_epochs < 0, "frozen-backbone epochs cannot be negative"),
            (not 0 <= self.teacher_weight <= 1, "the teachers' weight must be between 0 and 1"),
            (bool(self.teachers) and (self.model.age_head != "distribution" or self.model.label_space != "utkface"),
             "teachers teach a UTKFace model with a distribution age head only"),
        ]
        problems = [*self.model.problems(), *(message for failed, message in checks if failed)]
        if problems:
            raise TrainingError(f"Cannot train: {problems[0]}.")


@dataclass
class Progress:
    """Shared between whoever trains (writes) and the UI (reads snapshots). Writes take the lock. In the server
    it is the job monitor's mirror of the worker process's own Progress (core/jobs.py), and `stop_event` a flag
    in shared memory (core.children.SharedFlag) the worker's Keras callback checks."""
    status: str = "pending"  # pending → running → finished | stopped | failed
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches_per_epoch: int = 0
    device: str = ""
    distribution: dict = field(default_factory=dict)  # strategy, replicas, devices, global batch (core/distribute.py)
    message: str = ""
    # inside fit: "compiling" until its first batch ends (tracing can take minutes), "training", "validating"
    stage: str = ""
    notes: list[str] = field(default_factory=list)
    batch_log: list[dict] = field(default_factory=list)  # intra-epoch points: step, epoch (fractional), logs
    history: list[dict] = field(default_factory=list)  # one row per completed epoch, train and val
    run_dir: str = ""
    metrics: dict = field(default_factory=dict)
    error: str = ""
    started: float = field(default_factory=time.time)
    stop_event: threading.Event = field(default_factory=threading.Event)  # or a SharedFlag
    lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, **changes) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self, key, value)

    def record_batch(self, batch: int, point: dict) -> None:
        """A training batch ended: `batch` is its 1-based number in the epoch, `point` its batch_log entry."""
        with self.lock:
            self.batch = batch
            self.batch_log.append(point)

    def record_epoch(self, row: dict) -> None:
        """An epoch ended: its history row (train and validation logs)."""
        with self.lock:
            self.history.append(row)

    def snapshot(self) -> dict:
        """The reported fields, copied (lists too); not the stop event, the lock or a subclass's own state."""
        with self.lock:
            return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()
                    if k not in ("stop_event", "lock") and not k.startswith("_")}

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed")

    @property
    def fraction(self) -> float:
        """Share of all planned batches done, 0–1 (early stopping may end a run before it reaches 1)."""
        with self.lock:
            if not self.batches_per_epoch or not self.epochs:
                return 0.0
            done = (self.epoch - 1 + self.batch / self.batches_per_epoch) / self.epochs
        return min(max(done, 0.0), 1.0)

    def status_line(self) -> str:
        """What the job is doing now, in words: a Stop not yet honoured first, since the user waits for it."""
        with self.lock:
            epoch = f"Epoch {self.epoch}/{self.epochs}"
            if not self.batches_per_epoch:
                line = self.message
            elif self.stage == "compiling":
                line = f"{epoch}: compiling the model and running its first step (minutes for a large model)…"
            elif self.stage == "validating":
                line = f"{epoch}: validating…"
            else:
                line = f"{epoch}, batch {self.batch}/{self.batches_per_epoch}: {self.message}"
            stopping = self.stop_event.is_set() and self.status not in ("finished", "stopped", "failed")
        return f"Stopping after the current step… ({line})" if stopping else line
