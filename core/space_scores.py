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
    FAIRFACE,
    SPACES,
    UTKFACE,
    LabelSpace,
    age_comparison,
    predicted_age_groups,
    predicted_years,
    race_comparison,
    race_probabilities,
    space_of_outputs,
    true_age_groups,
    true_races,
    years_of_groups,
)
from core.labels import AGE_SCHEMES, age_to_group
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
        result["age_mae"] = mae(years[known], predicted_years(outputs)[known])
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


def utkface_terms(outputs: Mapping[str, np.ndarray], data: LabelSpace) -> tuple[dict, dict]:
    """(a model's outputs as the UTKFace-space report reads them, extra predictions-frame columns in the model's own
    space). A group-head model's years are its groups' weighted middle (approximate), its race-7 are summed into
    the race-5 they nest in and an Adience model's race is NaN (no race figure); the extra columns carry what the
    years lose: `pred_age_group` in the dataset's own groups, `pred_race_label` a race-7 model's own race."""
    model = space_of_outputs({k: np.shape(v) for k, v in outputs.items() if k in ("age", "age_group", "gender",
                                                                                 "race")})
    if model is None or model.age_in_years:
        return dict(outputs), {"pred_space": "utkface"}
    probs = np.asarray(outputs["age_group"], dtype="float64")
    age, std = years_of_groups(probs, model)
    terms = {**outputs, "age": age[:, None]}
    extra = {"pred_age_std": std, "pred_space": model.name}
    if model.races is None:
        terms["race"] = np.full((len(probs), len(UTKFACE.races)), np.nan)
    else:
        terms["race"] = race_probabilities(outputs, model, UTKFACE)
        if model.races != UTKFACE.races:
            extra["pred_race_label"] = np.asarray(model.races, dtype=object)[np.asarray(outputs["race"]).argmax(1)]
    if not data.age_in_years:
        extra["pred_age_group"] = np.asarray(data.age_groups, dtype=object)[predicted_age_groups(outputs, model,
                                                                                                 data)]
    return terms, extra


# ------------------------------------------------------------------- predictions frames (core/evaluation.py)

def predicted_groups(frame: pd.DataFrame, rows: np.ndarray, scheme: str) -> np.ndarray:
    """Predicted group positions in `scheme` (core.labels.AGE_SCHEMES) for a predictions frame's `rows`: a group-head
    model's own where it speaks the dataset's groups (`pred_age_group`), else the predicted years mapped."""
    position = {label: i for i, label in enumerate(AGE_SCHEMES[scheme][0])}
    groups = (frame["pred_age_group"].to_numpy()[rows] if "pred_age_group" in frame
              else age_to_group(frame["pred_age"].to_numpy()[rows], scheme))
    return np.array([position[g] for g in groups], dtype=int)


def own_race_confusion(frame: pd.DataFrame) -> dict | None:
    """A race-7 model's confusion matrix on FairFace's race-7 labels, in FairFace's races; None otherwise."""
    if "pred_race_label" not in frame:
        return None
    rows = frame["race_label"].isin(FAIRFACE.races).fillna(False).to_numpy(dtype=bool)
    if not rows.any():
        return None
    index = {name: i for i, name in enumerate(FAIRFACE.races)}
    truth, pred = ([index[r] for r in frame[c].to_numpy()[rows]] for c in ("race_label", "pred_race_label"))
    return {"labels": list(FAIRFACE.races), "matrix": confusion_matrix(truth, pred, len(FAIRFACE.races)).tolist()}


def mappings(model_space: str, data_kind: str) -> dict[str, str]:
    """How a report compared each task: {"age": mapping name, "race": mapping name} (core/label_spaces.py)."""
    model, data = SPACES[model_space], SPACES.get(data_kind, UTKFACE)
    age = age_comparison(model, data).mapping
    if not model.age_in_years and data.age_in_years:  # the report scores years: say how a group model got them
        age = (f"{model.title} groups as years (their middles, approximate), against true years and their "
               "decades")
    return {"age": age, "race": race_comparison(model, data).mapping}
