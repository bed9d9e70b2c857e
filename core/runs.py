"""Run folders on disk: `Run`, the one place that names the files a run folder holds; past runs read from their
small JSON and CSV files only (the Train page lists them without TensorFlow); a new run's folder made, never
shared by two runs."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core import settings
from core.atomic import atomic_write_text, read_json_object
from core.config import TrainConfig, TrainingError
from core.datasets import KIND_TITLES
from core.errors import UserError
from core.metrics import ANY_RUN_METRICS

COLUMNS = ["run", "name", "arch", "img_size", "status", "epochs", *ANY_RUN_METRICS, "device", "path"]
TITLE_FILE = "title.json"  # a name the user gave the run; the folder keeps its own (other runs' configs point to it)
TRASH = ".trash"  # a deleted run is moved here first (one atomic rename), then removed
MAX_TITLE = 60


class RunError(UserError):
    """A run that cannot be renamed or deleted as asked; the message says why."""


def _plain(value):
    """JSON for what metrics hold besides plain numbers: numpy scalars as floats, anything else as its text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class _RunFile:
    """A file of a run folder, read as an attribute of the Run: the path of that file in its folder."""

    def __init__(self, file_name: str):
        self.file_name = file_name

    def __get__(self, run: Run | None, owner=None):
        return self if run is None else run.path / self.file_name


@dataclass(frozen=True)
class Run:
    """A run folder's layout. Training writes config.json, split.csv and history.csv as it goes, model.keras (the
    best epoch so far), then metrics.json with the final status; a cross-validation root holds cv.json instead."""
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    def __fspath__(self) -> str:  # a Run goes wherever a folder path does
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # The files a run folder holds, each named here once: run.metrics_file is <run>/metrics.json.
    config_file = _RunFile("config.json")
    metrics_file = _RunFile("metrics.json")
    history_file = _RunFile("history.csv")
    split_file = _RunFile("split.csv")
    model_file = _RunFile("model.keras")
    cv_file = _RunFile("cv.json")
    title_file = _RunFile(TITLE_FILE)
    epochs_dir = _RunFile("epochs")  # a run with `keep_epochs` keeps each epoch's model here

    def epoch_model_file(self, epoch: int) -> Path:
        """Where a run with `keep_epochs` keeps the model after `epoch` (1-based)."""
        return self.epochs_dir / f"epoch-{epoch:02d}.keras"

    @property
    def is_cross_validation(self) -> bool:
        return self.cv_file.exists()

    def config(self) -> dict | None:
        """config.json, or None when absent or unreadable."""
        return read_json_object(self.config_file)

    def metrics(self) -> dict | None:
        """metrics.json, or None when absent (still training) or half-written by a killed process."""
        return read_json_object(self.metrics_file)

    def history(self) -> list[dict]:
        """Per-epoch history rows ([] when there are none yet or the file is unreadable)."""
        try:
            return pd.read_csv(self.history_file).to_dict("records")
        except (OSError, ValueError, pd.errors.EmptyDataError):
            return []

    def write_config(self, doc: dict) -> None:
        write_json(self.config_file, doc)

    def write_metrics(self, doc: dict) -> None:
        write_json(self.metrics_file, doc)

    def write_history(self, rows: list[dict]) -> None:
        atomic_write_text(self.history_file, pd.DataFrame(rows).to_csv(index=False))

    def write_cv(self, doc: dict) -> None:
        write_json(self.cv_file, doc)


def _running_dir() -> str | None:
    from core.jobs import current_job  # the one job of this server, if it is still going
    job = current_job()
    return job.progress.run_dir if job is not None and not job.progress.done else None


def list_runs(root: Path | None = None) -> pd.DataFrame:
    """One row per run folder (newest first) with its status and headline test metrics, in years or age groups
    as the run's label space has them (a metric no listed run has is left out); reads JSON only."""
    root = Path(root or settings.runs_dir())
    rows = []
    running_dir = _running_dir()
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True) if root.is_dir() else []:
        run = Run(folder)
        config, metrics = run.config(), run.metrics()
        if config is None or run.is_cross_validation:
            continue
        status = metrics.get("status") if metrics else ("running" if str(run.path) == running_dir else "incomplete")
        test = (metrics or {}).get("test", {})
        rows.append({"run": run.name, "name": run_title(run) or run.name, "arch": config.get("model", {}).get("arch"),
                     "img_size": config.get("model", {}).get("img_size"), "status": status,
                     "epochs": (metrics or {}).get("epochs_run"), **{k: test.get(k) for k in ANY_RUN_METRICS},
                     "device": (metrics or {}).get("device"), "path": str(run.path)})
    listed = pd.DataFrame(rows, columns=COLUMNS)
    return listed.drop(columns=[k for k in ANY_RUN_METRICS if listed[k].isna().all()] if rows else [])


def read_history(run_dir: str | Path) -> list[dict]:
    """A run's per-epoch history rows ([] when it has none yet or the file is unreadable)."""
    return Run(run_dir).history()


def run_title(run_dir: str | Path) -> str | None:
    """The name the user gave a run (None: it has only its folder name)."""
    title = (read_json_object(Run(run_dir).title_file) or {}).get("title")
    return title if isinstance(title, str) and title else None


def run_summary(config: dict, metrics: dict) -> str:
    """What a run is, for every picker: dataset · architecture · epochs · headline metric (· stopped)."""
    model = config.get("model") or {}
    epochs = metrics.get("epochs_run")
    parts = [KIND_TITLES.get(config.get("dataset"), config.get("dataset")), model.get("arch"),
             None if epochs is None else f"{epochs} epoch{'' if epochs == 1 else 's'}",
             _headline(metrics.get("test") or {}, "test", "") or _headline(metrics.get("best") or {}, "validation",
                                                                           "val_") or "not tested",
             "stopped" if metrics.get("status") == "stopped" else None]
    return " · ".join(str(part) for part in parts if part)


# A run's headline metric in its own label space: age MAE in years, else a group head's age-group accuracy
_HEADLINES = (("age_mae", "age MAE {:.2f}"), ("age_group_accuracy", "age-group accuracy {:.1%}"))


def _headline(scores: dict, where: str, prefix: str) -> str | None:
    for key, text in _HEADLINES:
        value = scores.get(prefix + key)
        if isinstance(value, float | int):
            return f"{where} {text.format(value)}"
    return None


def rename_run(run_dir: str | Path, title: str) -> str:
    """Give a run a name (written atomically beside its files); a name another run has already is refused."""
    run_dir, title = Path(run_dir), " ".join(str(title).split())
    if not title or len(title) > MAX_TITLE:
        raise RunError(f"A run's name needs 1 to {MAX_TITLE} characters.")
    if not Run(run_dir).config_file.is_file():
        raise RunError(f"There is no run {run_dir.name} any more.")
    for other in (p for p in run_dir.parent.iterdir() if p.is_dir() and p != run_dir):
        if title in (other.name, run_title(other)):
            raise RunError(f"Another run is already called {title!r}: pick another name.")
    atomic_write_text(Run(run_dir).title_file, json.dumps({"title": title}) + "\n")
    return title


def delete_run(run_dir: str | Path) -> None:
    """Delete a run that is not training: first moved out of every listing in one atomic rename, so a reader
    never sees half a run, then removed."""
    from core.housekeeping import run_in_progress

    run_dir = Path(run_dir)
    if not Run(run_dir).config_file.is_file():
        raise RunError(f"There is no run {run_dir.name} any more.")
    if str(run_dir) == _running_dir() or run_in_progress(run_dir):
        raise RunError(f"{run_dir.name} is still training: stop it first.")
    trash = run_dir.parent / TRASH
    trash.mkdir(exist_ok=True)
    target = trash / f"{run_dir.name}-{uuid.uuid4().hex[:8]}"
    os.replace(run_dir, target)
    shutil.rmtree(target, ignore_errors=True)


# ------------------------------------------------------------------------------- writing a new run

def new_run_dir(root: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for suffix in range(1, 1000):
        run_dir = root / (f"{stamp}-{name}" if suffix == 1 else f"{stamp}-{name}-{suffix}")
        try:
            run_dir.mkdir()  # not exist_ok: two runs started in the same second must not share a folder
            return run_dir
        except FileExistsError:
            continue
    raise TrainingError(f"Cannot create a run folder in {root}.")


def runs_root(cfg: TrainConfig) -> Path:
    return Path(cfg.out_dir or settings.runs_dir()).expanduser()


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_plain))
