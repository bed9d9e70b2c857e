"""k-fold cross-validation: k training runs, each scored on its held-out fold, under runs/<time>-<arch>-cv<k>/
fold<i>/, with cv.json (per-fold test metrics, mean ± std). Adience's folds are its fold files (subject-exclusive,
as its papers score it); other datasets get seeded stratified folds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from core import distribute, housekeeping, settings
from core.config import Progress, TrainConfig, TrainingError
from core.datasets import adience_folds
from core.metrics import ANY_RUN_METRICS
from core.recipes import with_recipe
from core.runs import Run, new_run_dir, runs_root
from core.splits import fold_split, kfold_assignment
from core.training import train_on_split
from core.training_data import ensure_validation, load_table


def summarize_folds(fold_metrics: list[dict]) -> dict:
    """Mean and sample standard deviation (ddof=1) of each headline test metric across folds."""
    summary = {}
    for key in ANY_RUN_METRICS:
        values = np.array([m[key] for m in fold_metrics if m.get(key) is not None], dtype=float)
        if len(values):
            summary[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1
                            else 0.0, "n": int(len(values))}
    return summary


def adience_assignment(table: pd.DataFrame, cfg: TrainConfig, folds: int) -> pd.Series:
    """Adience's own protocol: fold i is the rows of the i-th fold file that has images. Those folds are subject-
    exclusive (each Flickr album in one), which a stratified random k-fold would not be: the same faces would
    then train and test, and the score would flatter the model."""
    by_path = adience_folds(Path(cfg.data_dir or settings.data_dir()))
    numbers = table["path"].map(by_path)
    present = sorted(numbers.dropna().unique())
    if len(present) < 2:
        raise TrainingError(f"Adience cross-validation uses its fold files, and only {len(present)} of them "
                            f"(fold {', '.join(str(int(n)) for n in present) or 'none'}) has images here: it needs "
                            "at least 2 folds with images.")
    if folds != len(present):
        raise TrainingError(f"Adience cross-validation uses its fold files: {len(present)} of them have images "
                            f"here (folds {', '.join(str(int(n)) for n in present)}), so ask for --folds "
                            f"{len(present)}, not {folds}.")
    return numbers.map({number: i for i, number in enumerate(present)}).astype(int)


def cross_validate(cfg: TrainConfig, folds: int,
                   on_fold: Callable[[int, Progress], None] | None = None) -> dict:
    """k-fold cross-validation: fold i is the test set of run i; a stratified share of the rest (the
    config's val : train ratio) is its validation set. `on_fold(i, progress)` is called as each fold starts
    (the CLI points its progress bar there). Returns and writes cv.json: per-fold test metrics, mean ± std."""
    cfg.validate()
    cfg, _ = with_recipe(cfg)  # as train() does (cv config.json records it): every fold trains by the same recipe
    if distribute.cluster_task() is not None:
        raise TrainingError("Cross-validation trains on one process: run it without TF_CONFIG or --workers.")
    table = load_table(cfg)
    assignment = (adience_assignment(table, cfg, folds) if cfg.dataset == "adience"
                  else kfold_assignment(table, folds, cfg.seed))
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
                         **{k: progress.metrics.get("test", {}).get(k) for k in ANY_RUN_METRICS}})
        if progress.status == "stopped":
            status = "stopped"
            break
    result = {"status": status, "folds": folds, "completed": len(per_fold), "run_dir": str(root),
              "per_fold": per_fold, "summary": summarize_folds(per_fold)}
    Run(root).write_cv(result)
    return result
