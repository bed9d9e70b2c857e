"""Training past one device: which `tf.distribute` strategy a process trains with, the cluster it belongs to,
and where each worker of a cluster writes.

The strategy is picked once per process (`pick`): a `TF_CONFIG` (what Kubernetes TFJob, Vertex AI and SageMaker
set, or the CLI's `--workers host:port,… --worker-index i`) → MultiWorkerMirroredStrategy; else several GPUs →
MirroredStrategy; else TensorFlow's default strategy, exactly the one-device training of before. `batch_size`
is per replica: the global batch is `batch_size × replicas`, and the learning rate follows it (the linear
scaling rule) unless `TrainConfig.scale_learning_rate` is off.

A cluster trains like the Keras multi-worker guide says: every worker runs the same program and writes the same
files, the chief into the run folder, the others into a scratch folder of their own that they delete at the end;
`keras.callbacks.BackupAndRestore` keeps one backup per worker, so a cluster whose workers are killed and
restarted (a failed worker takes the others down with it) resumes after the last finished epoch, and a Stop on
any worker stops them all after the same batch. Scratch and backups live in
`<runs>/.distributed/<key>/`, the key a digest of the config and the cluster: a restart with the same command
finds them, a different run never does. Cross-validation stays on one process.

The parts that need no TensorFlow (TF_CONFIG, folders, `describe`) are plain functions the server may call;
TensorFlow is imported inside the functions that create or use a strategy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.atomic import atomic_write_text, read_json_object
from core.config import TrainConfig, TrainingError
from core.keras_distributed import moving_statistics_sync, work_around_keras_distributed_fit
from core.runs import Run, read_history

TASK_TYPES = ("chief", "worker")  # what MultiWorkerMirroredStrategy trains with (no parameter servers)
SCRATCH = ".distributed"  # under the runs folder: a dot-folder without config.json, which no run listing shows
RUN_POINTER = "run.json"  # the chief's note of its run folder, so a restarted chief writes into the same one
_ADDRESS = re.compile(r"^[A-Za-z0-9_.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")


class ClusterError(TrainingError):
    """A cluster description (TF_CONFIG, --workers) that cannot work; the message says what to fix."""


# ------------------------------------------------------------------------------------------- the cluster

@dataclass(frozen=True)
class Task:
    """This process's place in a cluster: its TF_CONFIG, parsed and checked."""
    cluster: dict[str, tuple[str, ...]]  # task type → host:port of each task
    type: str
    index: int

    @property
    def workers(self) -> int:
        return sum(len(self.cluster.get(kind, ())) for kind in TASK_TYPES)

    @property
    def is_chief(self) -> bool:
        """The chief writes the run folder: a "chief" task, or worker 0 of a cluster that has none."""
        return self.type == "chief" or (self.type == "worker" and self.index == 0 and not self.cluster.get("chief"))

    @property
    def name(self) -> str:
        return f"{self.type}-{self.index}"


def parse_workers(text: str) -> tuple[str, ...]:
    """"host:port,host:port" → the addresses, each checked."""
    addresses = tuple(part.strip() for part in text.split(",") if part.strip())
    if not addresses:
        raise ClusterError("--workers needs at least one host:port.")
    for address in addresses:
        if not _ADDRESS.match(address) or not 0 < int(address.rsplit(":", 1)[1]) < 65536:
            raise ClusterError(f"Worker address {address!r} is not host:port (e.g. 10.0.0.2:12345).")
    if len(set(addresses)) != len(addresses):
        raise ClusterError(f"Two workers share one address in {text!r}: each needs its own host:port.")
    return addresses


def tf_config(workers: tuple[str, ...] | list[str], index: int) -> str:
    """The TF_CONFIG of worker `index` of a cluster of `workers` (worker 0 is the chief)."""
    if not 0 <= index < len(workers):
        raise ClusterError(f"--worker-index {index} is not one of the {len(workers)} workers (0 to "
                           f"{len(workers) - 1}).")
    return json.dumps({"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": index}})


def use_workers(workers: tuple[str, ...], index: int | None, environ: dict | None = None) -> None:
    """Set TF_CONFIG for this process (the CLI's --workers and --worker-index); before TensorFlow starts."""
    if index is None:
        raise ClusterError("--workers needs --worker-index: which of the workers this process is (0 is the chief).")
    (os.environ if environ is None else environ)["TF_CONFIG"] = tf_config(workers, index)


def cluster_task(environ: dict | None = None) -> Task | None:
    """This process's task from TF_CONFIG, or None when it trains alone (no TF_CONFIG, or one without a cluster)."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ClusterError(f"TF_CONFIG is not JSON ({error}).") from error
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not cluster:
        return None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ClusterError('TF_CONFIG needs "cluster" {"worker": ["host:port", …]} and "task" {"type", "index"}.')
    unknown = set(cluster) - set(TASK_TYPES)
    if unknown:
        raise ClusterError(f"TF_CONFIG has {', '.join(sorted(unknown))} tasks: MultiWorkerMirroredStrategy trains "
                           "with chief and worker tasks only.")
    kind, index = task.get("type"), task.get("index", 0)
    tasks = {name: tuple(parse_workers(",".join(addresses))) for name, addresses in cluster.items() if addresses}
    if kind not in tasks or not isinstance(index, int) or not 0 <= index < len(tasks[kind]):
        raise ClusterError(f"TF_CONFIG's task {task} is not one of its cluster's tasks.")
    return Task(tasks, kind, index)


# ------------------------------------------------------------------------------------- where each writes

def _scratch(cfg: TrainConfig, runs_root: Path, task: Task) -> Path:
    """<runs>/.distributed/<key>: the same for every restart of the same command on the same cluster."""
    digest = hashlib.sha1(json.dumps([cfg.to_dict(), task.cluster], sort_keys=True).encode()).hexdigest()[:12]
    return runs_root / SCRATCH / digest


def run_folder(cfg: TrainConfig, runs_root: Path, new_run_dir: Callable[[], Path]) -> Path:
    """Where this process writes the run: alone or as the chief, a new run folder (`new_run_dir()`) or, restarted,
    the one it wrote before; any other worker, its own scratch folder, deleted at the end (`clean_up`)."""
    task = cluster_task()
    if task is None:
        return new_run_dir()
    scratch = _scratch(cfg, runs_root, task)
    if not task.is_chief:
        folder = scratch / task.name / "run"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    pointer = read_json_object(scratch / RUN_POINTER) or {}
    previous = runs_root / str(pointer.get("run", ""))
    if pointer.get("run") and Run(previous).config_file.is_file():
        # A sweep may have marked it interrupted meanwhile: it is running again and says so at the end.
        Run(previous).metrics_file.unlink(missing_ok=True)
        return previous
    folder = new_run_dir()
    scratch.mkdir(parents=True, exist_ok=True)
    atomic_write_text(scratch / RUN_POINTER, json.dumps({"run": folder.name}))
    return folder


def backup_dir(cfg: TrainConfig, runs_root: Path) -> Path | None:
    """This worker's BackupAndRestore folder, or None for a process that trains alone (nobody restarts it into
    the same run: a new Start is a new run)."""
    task = cluster_task()
    return None if task is None else _scratch(cfg, runs_root, task) / task.name / "backup"


def resumed_history(run_dir: Path, backup: Path | None) -> list[dict]:
    """The history rows a restarted worker keeps: those of the epochs its backup holds ([] for a fresh start; a
    row written after the last backup belongs to an epoch that will be trained again)."""
    if backup is None:
        return []
    epochs = [int((read_json_object(path) or {}).get("epoch", 0)) for path in backup.glob("*/training_metadata.json")]
    last = max(epochs, default=0)
    return [row for row in read_history(run_dir) if row.get("epoch", 0) <= last] if last else []


def clean_up(cfg: TrainConfig, runs_root: Path) -> None:
    """After a run that ended (finished or stopped; not failed, which keeps its backup to resume): this worker's
    scratch folder goes, and the cluster's folder with the last worker out."""
    task = cluster_task()
    if task is None:
        return
    scratch = _scratch(cfg, runs_root, task)
    shutil.rmtree(scratch / task.name, ignore_errors=True)
    if task.is_chief:
        (scratch / RUN_POINTER).unlink(missing_ok=True)
    for folder in (scratch, scratch.parent):
        with contextlib.suppress(OSError):  # another worker's folder is still there: the last one removes it
            folder.rmdir()


# -------------------------------------------------------------------------------------------- the strategy

def steps_per_epoch(rows: int, batch_size: int, workers: int = 1, local_replicas: int = 1) -> int:
    """Global steps of an epoch: each worker reads its shard (rows split evenly, the first ones one longer) in
    per-replica batches, and a step takes one batch per local replica."""
    batches = math.ceil(math.ceil(rows / workers) / batch_size)
    return max(1, math.ceil(batches / local_replicas))


def learning_rate(cfg: TrainConfig, replicas: int) -> float:
    """The linear scaling rule: a global batch `replicas` times larger takes steps `replicas` times larger."""
    return cfg.learning_rate * replicas if cfg.scale_learning_rate else cfg.learning_rate


@dataclass(frozen=True)
class Distribution:
    """The strategy this process trains with, and what the page and the CLI say about it."""
    strategy: Any  # a tf.distribute.Strategy
    name: str  # "default", "MirroredStrategy" or "MultiWorkerMirroredStrategy"
    replicas: int  # in sync, on every worker together
    devices: tuple[str, ...]  # this worker's replica devices, e.g. ("CPU:0",) or ("GPU:0", "GPU:1")
    task: Task | None = None

    @property
    def is_chief(self) -> bool:
        return self.task is None or self.task.is_chief

    def scope(self):
        return self.strategy.scope()

    def steps_per_epoch(self, rows: int, batch_size: int) -> int:
        return steps_per_epoch(rows, batch_size, self.task.workers if self.task else 1, len(self.devices))

    def dataset(self, build: Callable[..., Any], seed: int):
        """`build(seed=…, shard=(count, index))` → a tf.data pipeline of per-replica batches. Alone on one device,
        that pipeline as it is; else one per worker, each reading its own shard of the rows (explicit sharding:
        auto-sharding by data would gather and augment every row on every worker only to drop most), seeded per
        worker so replicas augment differently and reproducibly."""
        if self.name == "default":
            return build(seed=seed)
        return self.strategy.distribute_datasets_from_function(lambda context: build(
            seed=seed + context.input_pipeline_id, shard=(context.num_input_pipelines, context.input_pipeline_id)))

    def callbacks(self) -> list:
        """The Keras callbacks training on this distribution needs (none on one device)."""
        return [] if self.name == "default" else [moving_statistics_sync(self.strategy)]

    def stop_requested(self, stop_event) -> Callable[[], bool]:
        """Whether to stop now, for a check made at the same batch on every worker: alone, whether `stop_event`
        (Stop, Ctrl-C) is set; in a cluster, whether it is set on any worker (then it is set on all). A worker
        leaving alone would leave the others waiting for it until they fail, with backups of different epochs.
        One all-reduce of a flag per check: milliseconds beside a training step."""
        if self.task is None:
            return stop_event.is_set
        import tensorflow as tf
        strategy = self.strategy

        @tf.function
        def anyone(flag):
            return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("SUM", tf.identity(flag)))

        def agreed() -> bool:
            votes = anyone(tf.constant(1.0 if stop_event.is_set() else 0.0))
            if float(strategy.experimental_local_results(votes)[0]) > 0:
                stop_event.set()
            return stop_event.is_set()
        return agreed

    def run_info(self, cfg: TrainConfig) -> dict:
        """What config.json, metrics.json, the page and the CLI record about this run's distribution."""
        task = self.task
        return {"strategy": self.name, "replicas": self.replicas, "devices": list(self.devices),
                "workers": task.workers if task else 1, "worker": task.name if task else "", "chief": self.is_chief,
                "batch_size_per_replica": cfg.batch_size, "global_batch_size": cfg.batch_size * self.replicas,
                "learning_rate": learning_rate(cfg, self.replicas), "base_learning_rate": cfg.learning_rate}


_picked: Distribution | None = None
_pick_lock = threading.Lock()


def pick(devices: list[str] | None = None) -> Distribution:
    """This process's distribution, chosen on the first call (later calls return it): call it before any other
    TensorFlow work, since MultiWorkerMirroredStrategy configures collective ops at program start. `devices`
    mirrors over those devices instead of choosing (tests: two logical CPUs)."""
    global _picked
    with _pick_lock:
        if _picked is None:
            _picked = _create(cluster_task(), devices)
        return _picked


def _short(device: str) -> str:
    return device.rsplit("device:", 1)[-1].upper()


def _create(task: Task | None, devices: list[str] | None) -> Distribution:
    import tensorflow as tf
    gpus = [f"/gpu:{i}" for i in range(len(tf.config.list_physical_devices("GPU")))]
    if task is not None:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        name = "MultiWorkerMirroredStrategy"
    elif len(devices or gpus) > 1:
        strategy, name = tf.distribute.MirroredStrategy(devices or gpus), "MirroredStrategy"
    else:
        return Distribution(tf.distribute.get_strategy(), "default", 1, ("GPU:0",) if gpus else ("CPU:0",))
    work_around_keras_distributed_fit()
    # With several replicas per pipeline (or uneven shards) Keras' count of batches differs from the steps it
    # takes, and it warns every epoch that the input "ran out of data": expected here, not a problem.
    warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
    return Distribution(strategy, name, strategy.num_replicas_in_sync,
                        tuple(_short(d) for d in strategy.extended.worker_devices), task)


# ----------------------------------------------------------------------------------------- what it says

def describe(info: dict) -> str:
    """One line for the page and the CLI: strategy, replicas, devices, global batch and learning rate."""
    replicas, devices = info["replicas"], ", ".join(info["devices"])
    if info.get("workers", 1) > 1:
        role = "the chief: it writes the run folder" if info["chief"] else "not the chief, which writes the run folder"
        where = f"on {info['workers']} workers, this one {info['worker']} ({role}) on {devices}"
    else:
        where = f"on {devices}"
    batch = f"global batch {info['global_batch_size']}"
    lr = f"learning rate {info['learning_rate']:g}"
    if replicas > 1:
        batch += f" ({info['batch_size_per_replica']} per replica)"
        scaled = info["learning_rate"] != info["base_learning_rate"]
        lr += f" ({info['base_learning_rate']:g} × {replicas} replicas)" if scaled else " (fixed)"
    return f"Strategy: {info['strategy']}, {replicas} replica{'s' if replicas > 1 else ''} {where}; {batch}; {lr}."
