"""Which image trains, validates and tests: seeded stratified splits, k-fold folds, and the split file.

A run's `split.csv` (columns path, split) records its split; `read_split_file` is the one reader. Training reuses
a file to continue a run honestly (`split_from_file`), evaluation scores one split of it (`select_split`), and
shipping copies it beside the model with file names only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import atomic_write_text
from core.datasets import stratum
from core.errors import UserError

SPLITS = ("train", "val", "test")


class SplitError(UserError):
    """A split that cannot be made as asked, or a split file that cannot be used; the message says why."""


def _stratified_order(table: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Row positions grouped by stratum (age decade × gender × race), shuffled within each stratum."""
    groups = pd.Series(np.arange(len(table))).groupby(stratum(table).to_numpy()).indices
    parts = [rng.permutation(groups[key]) for key in sorted(groups)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=int)


def split_table(table: pd.DataFrame, fractions=(0.7, 0.15, 0.15), seed: int = 42) -> pd.Series:
    """Assign each row to 'train' / 'val' / 'test', stratified by age decade × gender × race. Same seed, same
    split.

    Rows are walked stratum by stratum and each goes to the split furthest behind its quota. Every stratum
    then gets its share to within a row or two, and the totals match `fractions` exactly even when most strata
    hold one or two faces (rounding per stratum would leave a small set with no validation or test rows)."""
    fractions = np.asarray(fractions, dtype=float)
    if len(fractions) != 3 or (fractions < 0).any() or abs(fractions.sum() - 1) > 1e-6:
        raise SplitError(f"Split fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}.")
    order = _stratified_order(table, np.random.default_rng(seed))
    labels = np.empty(len(table), dtype=object)
    counts = np.zeros(3)
    for seen, position in enumerate(order, start=1):
        choice = int(np.argmax(fractions * seen - counts))
        counts[choice] += 1
        labels[position] = SPLITS[choice]
    return pd.Series(labels, index=table.index, dtype="object")


def kfold_assignment(table: pd.DataFrame, k: int, seed: int = 42) -> pd.Series:
    """Fold number 0..k-1 per row, stratified the same way as `split_table`: a round-robin over the rows
    grouped by stratum, so each fold holds every stratum's share to within one row."""
    if k < 2:
        raise SplitError("k-fold needs k ≥ 2.")
    if k > len(table):
        raise SplitError(f"k-fold with k={k} needs at least {k} rows, got {len(table)}.")
    order = _stratified_order(table, np.random.default_rng(seed))
    folds = np.empty(len(table), dtype=int)
    folds[order] = np.arange(len(order)) % k
    return pd.Series(folds, index=table.index, dtype=int)


def fold_split(folds: pd.Series, fold: int, val_fraction: float = 0.15, seed: int = 42,
               table: pd.DataFrame | None = None) -> pd.Series:
    """train / val / test for one cross-validation fold: the fold itself is the test set; a stratified
    `val_fraction` of the rest (when `table` is given, else a seeded random one) watches for overfitting."""
    split = pd.Series("train", index=folds.index, dtype="object")
    split[folds == fold] = "test"
    rest = folds.index[folds != fold]
    if table is not None:
        inner = split_table(table.loc[rest], (1 - val_fraction, val_fraction, 0.0), seed)
        split.loc[rest] = inner.to_numpy()
    else:
        picked = np.random.default_rng(seed).permutation(len(rest))[: int(round(len(rest) * val_fraction))]
        split.loc[rest[picked]] = "val"
    return split


# -------------------------------------------------------------------------------------------- split file

def write_split_file(target: str | Path, paths, split) -> None:
    """Write a split file atomically: one (path, split) row per image, in the given order."""
    listed = pd.DataFrame({"path": np.asarray(paths, dtype=object), "split": np.asarray(split, dtype=object)})
    atomic_write_text(target, listed.to_csv(index=False))


def read_split_file(split_file: str | Path) -> pd.DataFrame:
    """A split file's (path, split) rows, checked: it must have both columns and only train / val / test."""
    try:
        listed = pd.read_csv(split_file, dtype=str)
    except (OSError, ValueError) as error:  # missing, unreadable, empty or not CSV
        raise SplitError(f"Cannot read split file {split_file}: {error}") from error
    if not {"path", "split"} <= set(listed.columns) or not listed["split"].isin(SPLITS).all():
        raise SplitError(f"{split_file} is not a split file: it needs path and split columns with "
                         f"{', '.join(SPLITS)} values.")
    return listed[["path", "split"]]


def split_from_file(table: pd.DataFrame, split_file: str | Path) -> pd.Series:
    """Each row's split in a run's split file, matched by file name, or NA when the file does not list it.
    Continuing a run must keep its validation and test images out of training exactly, even after `split_table`
    changes or the dataset folder moves, hence by name and not by recomputing."""
    listed = read_split_file(split_file)
    by_name = dict(zip(listed["path"].map(lambda p: Path(p).name), listed["split"], strict=True))
    return table["path"].map(lambda p: by_name.get(Path(p).name, pd.NA)).rename("split")


def select_split(table: pd.DataFrame, split_file: str | Path, split: str = "test") -> pd.DataFrame:
    """The rows of `table` that a run's split file puts in `split`. Matches by path, or by file name when the
    dataset folder has moved since training."""
    listed = read_split_file(split_file)
    wanted = listed.loc[listed["split"] == split, "path"].dropna()
    if wanted.empty:
        found = ", ".join(sorted(listed["split"].unique())) or "none"
        raise SplitError(f"{split_file} has no {split!r} rows (splits present: {found}).")
    chosen = table[table["path"].isin(set(wanted))]
    if chosen.empty:
        names = {Path(p).name for p in wanted}
        chosen = table[table["path"].map(lambda p: Path(p).name).isin(names)]
    if chosen.empty:
        raise SplitError(f"None of the {len(wanted)} {split!r} images of {split_file} are in this dataset "
                         "folder: evaluate the run on the folder it was trained on.")
    return chosen.reset_index(drop=True)


def split_counts(table: pd.DataFrame, split_file: str | Path) -> dict[str, int]:
    """How many rows of `table` a split file puts in each split (by file name, as `split_from_file` matches):
    scores on rows the model trained on flatter it, so Evaluate says how many there are."""
    counts = split_from_file(table, split_file).value_counts()
    return {name: int(counts.get(name, 0)) for name in SPLITS}
