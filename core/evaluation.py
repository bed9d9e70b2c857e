"""Metrics, in one place for the training engine, the CLI, the Evaluate page and the model card."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.datasets import AGE_BINS, RACES, decade_label


def age_mean_std(outputs: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted age and, for distribution heads, its standard deviation (the model's own uncertainty)."""
    age = np.asarray(outputs["age"], dtype="float64").reshape(-1)
    if "age_dist" not in outputs:
        return age, None
    dist = np.asarray(outputs["age_dist"], dtype="float64")
    bins = np.arange(AGE_BINS)
    var = (dist * (bins[None, :] - age[:, None]) ** 2).sum(axis=1)
    return age, np.sqrt(np.maximum(var, 0))


def predictions_frame(table: pd.DataFrame, outputs: dict) -> pd.DataFrame:
    """One row per image: the labels beside the model's predictions."""
    age, age_std = age_mean_std(outputs)
    race_probs = np.asarray(outputs["race"], dtype="float64")
    frame = table.reset_index(drop=True).copy()
    frame["pred_age"] = age
    frame["pred_age_std"] = age_std if age_std is not None else np.nan
    frame["pred_female_prob"] = np.asarray(outputs["gender"], dtype="float64").reshape(-1)
    frame["pred_gender"] = (frame["pred_female_prob"] >= 0.5).astype(int)
    frame["pred_race"] = race_probs.argmax(axis=1)
    for code, name in enumerate(RACES):
        frame[f"prob_{name}"] = race_probs[:, code]
    return frame


def _headline(frame: pd.DataFrame) -> dict:
    has_age = frame["age"].notna()
    has_gender = frame["gender"].notna()
    has_race = frame["race"].notna()
    err = (frame.loc[has_age, "pred_age"] - frame.loc[has_age, "age"].astype(float)).to_numpy(dtype=float)
    gender_hits = frame.loc[has_gender, "pred_gender"].to_numpy() == frame.loc[has_gender, "gender"].to_numpy(dtype=int)
    race_hits = frame.loc[has_race, "pred_race"].to_numpy() == frame.loc[has_race, "race"].to_numpy(dtype=int)
    return {
        "n": int(len(frame)),
        "age_mae": float(np.abs(err).mean()) if len(err) else None,
        "age_rmse": float(np.sqrt((err ** 2).mean())) if len(err) else None,
        "gender_accuracy": float(gender_hits.mean()) if len(gender_hits) else None,
        "race_accuracy": float(race_hits.mean()) if len(race_hits) else None,
    }


def summary_metrics(table: pd.DataFrame, outputs: dict) -> dict:
    """Headline metrics plus breakdowns by race, gender and age decade (null where a label is absent)."""
    frame = predictions_frame(table, outputs)
    result = _headline(frame)
    groups = {
        "race": frame["race"].map(lambda r: RACES[int(r)] if pd.notna(r) else None),
        "gender": frame["gender"].map(lambda g: ("male", "female")[int(g)] if pd.notna(g) else None),
        "age_decade": frame["age"].map(lambda a: decade_label(a) if pd.notna(a) else None),
    }
    result["by_group"] = {
        name: {str(key): _headline(part) for key, part in frame.groupby(keys.to_numpy(), sort=True)}
        for name, keys in groups.items() if keys.notna().any()
    }
    _, std = age_mean_std(outputs)
    if std is not None and result["age_mae"] is not None:
        has_age = frame["age"].notna().to_numpy()
        inside = np.abs(frame["pred_age"].to_numpy() - frame["age"].to_numpy(dtype=float, na_value=np.nan)) <= std
        result["age_within_1std"] = float(inside[has_age].mean())
    return result
