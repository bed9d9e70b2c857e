"""A model scored in label spaces (core/label_spaces.py): its age groups (exact and one-off accuracy), gender and
race, compared with a dataset's labels through the explicit mapping each task needs, whose name the result keeps.

This is how a group-head model (FairFace's, Adience's) is scored on its test split, and how any model is compared
across spaces. A UTKFace-space model on UTKFace-like labels is core/evaluation.py's full report.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from core.label_spaces import (
    SPACES,
    LabelSpace,
    age_comparison,
    predicted_age_groups,
    race_comparison,
    race_probabilities,
    true_age_groups,
    true_races,
)
from core.metrics import accuracy, confusion_matrix, group_scores, macro_f1, mae


def data_space(table: pd.DataFrame) -> LabelSpace:
    """The label space of a dataset table: its rows' source kind (one kind per table, as the loaders give it)."""
    sources = table["source"].dropna().unique()
    return SPACES[str(sources[0])] if len(sources) else SPACES["utkface"]


def space_summary(table: pd.DataFrame, outputs: Mapping[str, np.ndarray], model: LabelSpace,
                  data: LabelSpace | None = None) -> dict:
    """Headline scores of a model's outputs on a table's labels, and `mappings`: how each task was compared."""
    data = data or data_space(table)
    result: dict = {"n": len(table), "label_space": model.name, "mappings": {}}
    age = age_comparison(model, data)
    result["mappings"]["age"] = age.mapping
    if age.space is not None:
        scores = group_scores(true_age_groups(table, age.space), predicted_age_groups(outputs, model, age.space))
        result.update(age_group_accuracy=scores["accuracy"], age_group_one_off=scores["one_off"])
    elif "age" in outputs:  # years on both sides
        years = table["age"].to_numpy(dtype="float64", na_value=np.nan)
        known = ~np.isnan(years)
        result["age_mae"] = mae(years[known], np.asarray(outputs["age"]).reshape(-1)[known])
    gender = table["gender"].to_numpy(dtype="float64", na_value=np.nan)
    known = ~np.isnan(gender)
    female = np.asarray(outputs["gender"], dtype="float64").reshape(-1) >= 0.5
    result["gender_accuracy"] = accuracy(gender[known].astype(int), female[known].astype(int))
    race = race_comparison(model, data)
    result["mappings"]["race"] = race.mapping
    if race.space is not None:
        truth = true_races(table, race.space)
        pred = race_probabilities(outputs, model, race.space).argmax(axis=1)
        known = truth >= 0
        result["race_accuracy"] = accuracy(truth[known], pred[known])
        result["race_macro_f1"] = macro_f1(confusion_matrix(truth[known], pred[known], len(race.space.races)))
    return result


def age_group_confusion(table: pd.DataFrame, outputs: Mapping[str, np.ndarray], model: LabelSpace,
                        data: LabelSpace | None = None) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """(confusion matrix, group labels) of the age groups they are compared in, or None (years on both sides)."""
    comparison = age_comparison(model, data or data_space(table))
    if comparison.space is None:
        return None
    truth = true_age_groups(table, comparison.space)
    pred = predicted_age_groups(outputs, model, comparison.space)
    groups = comparison.space.age_groups
    return confusion_matrix(truth[truth >= 0], pred[truth >= 0], len(groups)), groups


def race_confusion(table: pd.DataFrame, outputs: Mapping[str, np.ndarray], model: LabelSpace,
                   data: LabelSpace | None = None) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """(confusion matrix, race names) in the races they are compared in, or None (no race on one side)."""
    comparison = race_comparison(model, data or data_space(table))
    if comparison.space is None:
        return None
    truth = true_races(table, comparison.space)
    pred = race_probabilities(outputs, model, comparison.space).argmax(axis=1)
    races = comparison.space.races
    return confusion_matrix(truth[truth >= 0], pred[truth >= 0], len(races)), races
