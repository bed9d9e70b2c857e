"""k-fold cross-validation: k training runs, each scored on its held-out fold, under runs/<time>-<arch>-cv<k>/
fold<i>/, with cv.json (per-fold test metrics, mean ± std)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from core import distribute, housekeeping
from core.config import Progress, TrainConfig, TrainingError
from core.metrics import RUN_METRICS
from core.runs import Run, new_run_dir, runs_root
from core.splits import fold_split, kfold_assignment
from core.training import train_on_split
from core.training_data import ensure_validation, load_table


def summarize_folds(fold_metrics: list[dict]) -> dict:
    """Mean and sample standard deviation (ddof=1) of each headline test metric across folds."""
    summary = {}
    for key in RUN_METRICS:
        values = np.array([m[key] for m in fold_metrics if m.get(key) is not None], dtype=float)
        if len(values):
            summary[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1
                            else 0.0, "n": int(len(values))}
    return summary


def cross_validate(cfg: TrainConfig, folds: int,
                   on_fold: Callable[[int, Progress], None] | None = None) -> dict:
    """k-fold cross-validation: fold i is the test set of run i; a stratified share of the rest (the
    config's val : train ratio) is its validation set. `on_fold(i, progress)` is called as each fold starts
    (the CLI points its progress bar there). Returns and writes cv.json: per-fold test metrics, mean ± std."""
    cfg.validate()
    if distribute.cluster_task() is not None:
        raise TrainingError("Cross-validation trains on one process: run it without TF_CONFIG or --workers.")
    table = load_table(cfg)
    assignment = kfold_assignment(table, folds, cfg.seed)
    root = new_run_dir(runs_root(cfg), f"{cfg.model.arch}-cv{folds}")
    root_lock = housekeeping.hold_run_lock(root)
    try:
        return _cross_validate_in(root, cfg, folds, table, assignment, on_fold)
    finally:
        housekeeping.release_run_lock(root_lock)


def _cross_validate_in(root: Path, cfg: TrainConfig, folds: int, table: pd.DataFrame, assignment,
                       on_fold: Callable[[int, Progress], None] | None) -> dict:
    Run(root).write_config({**cfg.to_dict(), "folds": folds})
    val_share = cfg.split[1] / (cfg.split[0] + cfg.split[1])
    per_fold, status = [], "finished"
    for fold in range(folds):
        progress = Progress(epochs=cfg.epochs)
        if on_fold:
            on_fold(fold, progress)
        split = ensure_validation(fold_split(assignment, fold, val_share, cfg.seed, table))
        fold_dir = root / f"fold{fold + 1}"
        fold_dir.mkdir()
        fold_lock = housekeeping.hold_run_lock(fold_dir)
        try:
            train_on_split(cfg, table, split, fold_dir, progress)
        finally:
            housekeeping.release_run_lock(fold_lock)
        per_fold.append({"fold": fold + 1, "run_dir": str(fold_dir),
                         **{k: progress.metrics.get("test", {}).get(k) for k in RUN_METRICS}})
        if progress.status == "stopped":
            status = "stopped"
            break
    result = {"status": status, "folds": folds, "completed": len(per_fold), "run_dir": str(root),
              "per_fold": per_fold, "summary": summarize_folds(per_fold)}
    Run(root).write_cv(result)
    return result
