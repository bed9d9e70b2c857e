"""What a public session may ask of the server, and what its processes may use: the row cap of an evaluation, the
training requests it may start (`check_training_request`), and the memory and CPU caps of its training child
(`apply_child_limits`). The workbench has none of these limits.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core import settings
from core.access import Profile

PUBLIC_MAX_EVAL_ROWS = 2000  # ~16 s of CPU on a 2-core host, where all 21.7k UTKFace faces took 175 s


def evaluation_rows(table, profile: Profile):
    """(rows to evaluate, note or None): in public at most PUBLIC_MAX_EVAL_ROWS, a fixed seeded sample so a
    repeat visit hits the same stored results."""
    if not profile.public or len(table) <= PUBLIC_MAX_EVAL_ROWS:
        return table, None
    sample = table.sample(n=PUBLIC_MAX_EVAL_ROWS, random_state=0).sort_index().reset_index(drop=True)
    return sample, (f"This public server scores a fixed sample of {PUBLIC_MAX_EVAL_ROWS:,} of the "
                    f"{len(table):,} images.")


# --------------------------------------------------------------------------------------------- training

@dataclass(frozen=True)
class TrainingLimits:
    """What one public training job may ask for, and what its process may use."""
    max_img_size: int = 64
    max_epochs: int = 5
    max_batch_size: int = 32
    architectures: tuple[str, ...] = ("custom_cnn", "multitask_cnn", "residual_cnn")  # no ResNet-50: 25 M params
    max_runs: int = 8  # public runs kept in runs/; the oldest finished ones are deleted beyond that
    # Address space (RLIMIT_AS, virtual: more than resident) of the training process. Measured on 2 cores: TensorFlow
    # maps 1.7 GB at import, and fitting a 64 px residual CNN peaks at 3.3 GB virtual / 1.2 GB resident.
    memory_bytes: int = 6 * 1024 ** 3
    cpu_seconds: int = 30 * 60  # CPU time, both cores counted: a wide margin over 5 epochs at 64 px on 300 images


def public_training_limits() -> TrainingLimits:
    return TrainingLimits()


def _field(cfg, name: str, default=None):
    """A TrainConfig's or its to_dict()'s field; `model.x` reaches into the model part."""
    data = cfg if isinstance(cfg, Mapping) else dataclasses.asdict(cfg)
    for part in name.split("."):
        data = data.get(part, default) if isinstance(data, Mapping) else default
    return data


def _inside(path: str, folders) -> bool:
    resolved = Path(os.path.realpath(Path(path).expanduser()))
    return any(Path(os.path.realpath(folder)) in resolved.parents for folder in folders)


def check_training_request(cfg, profile: Profile, limits: TrainingLimits | None = None) -> list[str]:
    """Why this profile may not run this training request (a TrainConfig or its dict), one sentence each; [] when
    it may. The workbench may run anything the engine accepts."""
    if not profile.public:
        return []
    limits = limits or public_training_limits()
    problems = []
    folder = _field(cfg, "data_dir") or str(settings.data_dir())
    if Path(os.path.realpath(Path(folder).expanduser())) != Path(os.path.realpath(settings.SAMPLE_DIR)):
        problems.append("This public server trains on its bundled sample only.")
    if _field(cfg, "dataset", "utkface") != "utkface":
        problems.append("The bundled sample is a UTKFace dataset: choose the UTKFace kind.")
    if _field(cfg, "model.arch") not in limits.architectures:
        problems.append(f"Architectures on this server: {', '.join(limits.architectures)}.")
    checks = (("model.img_size", limits.max_img_size, "Image size", " px"), ("epochs", limits.max_epochs, "Epochs", ""),
              ("batch_size", limits.max_batch_size, "Batch size", ""))
    for name, most, label, unit in checks:
        value = _field(cfg, name)
        if not isinstance(value, int | float) or value > most:
            problems.append(f"{label} is at most {most}{unit} on this server.")
    known = (settings.MODELS_DIR, settings.runs_dir())
    for name, label in (("init_from", "a model to start from"), ("split_file", "a split file"),
                        ("teachers", "teachers")):
        values = [part.strip() for part in str(_field(cfg, name) or "").split(",") if part.strip()]
        if any(not _inside(value, known) for value in values):
            problems.append(f"Only the server's own models and runs can be used as {label}.")
    if _field(cfg, "out_dir"):
        problems.append("Runs are written to the server's runs folder only.")
    return problems


# ------------------------------------------------------------------------------------ the training child

def apply_child_limits(memory_bytes: int | None, cpu_seconds: int | None) -> bool:
    """Cap this process's address space (RLIMIT_AS: allocations past it fail with MemoryError) and CPU time
    (RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL 10 s later). For the first lines of a training child process,
    never the server itself. Limits only go down (an unprivileged process cannot raise a hard limit). Returns
    False where the platform has no `resource` module (Windows): the job then runs unbounded."""
    try:
        import resource
    except ImportError:
        return False
    if memory_bytes:
        _lower(resource, resource.RLIMIT_AS, int(memory_bytes), int(memory_bytes))
    if cpu_seconds:
        _lower(resource, resource.RLIMIT_CPU, int(cpu_seconds), int(cpu_seconds) + 10)
    return True


def _lower(resource, which: int, soft: int, hard: int) -> None:
    # Never above what is in force: a process may not raise its hard limit, and a lower soft one stays.
    current_soft, current_hard = resource.getrlimit(which)
    infinity = resource.RLIM_INFINITY
    hard = hard if current_hard == infinity else min(hard, current_hard)
    soft = min(soft if current_soft == infinity else min(soft, current_soft), hard)
    resource.setrlimit(which, (soft, hard))
