"""What a training run learns from: the labelled table (limited, at least MIN_ROWS) and its train / val / test split
(seeded, or a split file's, with a validation share guaranteed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core import settings
from core.config import MIN_ROWS, TrainConfig, TrainingError
from core.datasets import load_dataset
from core.splits import split_from_file, split_table


def load_table(cfg: TrainConfig) -> pd.DataFrame:
    folder = cfg.data_dir or str(settings.data_dir())
    table = load_dataset(cfg.dataset, folder).table  # a folder that cannot be read is a DatasetError, a UserError
    if cfg.limit:
        table = table.sample(n=min(cfg.limit, len(table)), random_state=cfg.seed)
    table = table.reset_index(drop=True)
    if len(table) < MIN_ROWS:
        raise TrainingError(f"Only {len(table)} labelled images in {folder}: need at least {MIN_ROWS} to train.")
    return table


def ensure_validation(split: pd.Series) -> pd.Series:
    """A split with no validation rows (tiny sets, val fraction 0) borrows a few training rows, so early
    stopping and the validation curves have something to watch."""
    if (split == "val").any():
        return split
    split = split.copy()
    train_rows = split.index[split == "train"]
    split.loc[train_rows[: max(1, len(train_rows) // 8)]] = "val"
    if not (split == "train").any():
        raise TrainingError("The split leaves no training rows; use more images or a larger train fraction.")
    return split


def prepare_data(cfg: TrainConfig) -> tuple[pd.DataFrame, pd.Series]:
    table = load_table(cfg)
    split = split_table(table, cfg.split, cfg.seed)
    if cfg.split_file:
        listed = split_from_file(table, Path(cfg.split_file).expanduser())  # a SplitError is the user's to fix
        # Listed images keep their split exactly (a model never trained on its own validation or test images);
        # images the file does not know, e.g. another dataset to fine-tune on, get the fresh seeded split.
        split = listed.fillna(split).astype(object)
    return table, ensure_validation(split)
