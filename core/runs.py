"""Run folders on disk: past runs read from their small JSON and CSV files only (the Train page lists them without
TensorFlow), and a new run's folder made, never shared by two runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from core import settings
from core.atomic import atomic_write_text, read_json_object
from core.config import TrainConfig, TrainingError
from core.metrics import RUN_METRICS

COLUMNS = ["run", "arch", "img_size", "status", "epochs", *RUN_METRICS, "device", "path"]


def _running_dir() -> str | None:
    from core.jobs import current_job  # the one job of this server, if it is still going
    job = current_job()
    return job.progress.run_dir if job is not None and not job.progress.done else None


def list_runs(root: Path | None = None) -> pd.DataFrame:
    """One row per run folder (newest first) with its status and headline test metrics; reads JSON only."""
    root = Path(root or settings.runs_dir())
    rows = []
    running_dir = _running_dir()
    for run in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True) if root.is_dir() else []:
        config, metrics = read_json_object(run / "config.json"), read_json_object(run / "metrics.json")
        if config is None or (run / "cv.json").exists():
            continue
        status = metrics.get("status") if metrics else ("running" if str(run) == running_dir else "incomplete")
        test = (metrics or {}).get("test", {})
        rows.append({"run": run.name, "arch": config.get("model", {}).get("arch"),
                     "img_size": config.get("model", {}).get("img_size"), "status": status,
                     "epochs": (metrics or {}).get("epochs_run"), **{k: test.get(k) for k in RUN_METRICS},
                     "device": (metrics or {}).get("device"), "path": str(run)})
    return pd.DataFrame(rows, columns=COLUMNS)


def read_history(run_dir: str | Path) -> list[dict]:
    """A run's per-epoch history rows ([] when it has none yet or the file is unreadable)."""
    try:
        return pd.read_csv(Path(run_dir) / "history.csv").to_dict("records")
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return []


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
    atomic_write_text(path, json.dumps(data, indent=2, default=float))
