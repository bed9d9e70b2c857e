"""Scoring models on labelled faces, for the training engine, the CLI, the Evaluate page and the model card.

- `predict_table`: a Predictor run over a dataset table exactly as the app runs it (resize or the app's own crop,
  batched, view and flip TTA); `join_predictions` puts raw model outputs beside the labels. Both give a predictions
  frame.
- `evaluate_frame`: every metric (core/metrics.py) overall and per group (race, gender, age group) with fairness
  gaps, as a JSON-ready report; `evaluate_both_crops` and `crop_skew` compare the app's crops with the dataset's.
Predicted ages are mapped onto the target dataset's own age groups (core/labels.py), which is how a UTKFace model
is scored on Adience (8 groups) or FairFace (9 bins). Tables and text built from reports are core/reports.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from core.crops import load_crops
from core.datasets import load_dataset
from core.errors import UserError
from core.face_prediction import age_and_spread
from core.labels import AGE_SCHEMES, FAIRFACE_RACE_TO_CODE, GENDERS, RACES, SCHEME_FOR_KIND
from core.metrics import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    PER_TASK,
    RUN_METRICS,
    accuracy,
    binary_scores,
    confusion_matrix,
    cumulative_scores,
    expected_calibration_error,
    headline,
    macro_f1,
    mae,
    mean_or_none,
    one_off_accuracy,
    reliability,
    rmse,
    within_std,
)
from core.runs import Run
from core.space_scores import data_space, mappings, own_race_confusion, predicted_groups, utkface_terms
from core.splits import select_split

MIN_GROUP_SIZE = 30  # below this a group's metrics swing too much to compare: flagged and left out of gaps
# Inside one race (or gender) group every true label is the same class, so class-averaged scores of that task
# measure nothing there (one-class F1, AUC): blanked rather than compared.
_MEANINGLESS_WITHIN = {"race": ("race_macro_f1",),
                       "gender": ("gender_precision", "gender_recall", "gender_f1", "gender_auc")}


class EvaluationError(UserError):
    """An evaluation request that cannot run (no rows, unreadable split file or image); the message says why."""


# ------------------------------------------------------------------------------------ predictions frames

def join_predictions(table: pd.DataFrame, outputs: dict) -> pd.DataFrame:
    """One row per image: the labels beside the model's raw outputs turned into predictions. A group-head model's
    (FairFace's, Adience's) are read through the label-space mappings (core/space_scores.py `utkface_terms`)."""
    outputs, own_space = utkface_terms(outputs, data_space(table))
    age, age_std = age_and_spread(outputs)
    race_probs = np.asarray(outputs["race"], dtype="float64")
    frame = table.reset_index(drop=True).copy()
    frame["pred_age"] = age
    frame["pred_age_std"] = age_std if age_std is not None else np.nan
    frame["pred_female_prob"] = np.asarray(outputs["gender"], dtype="float64").reshape(-1)
    frame["pred_gender"] = (frame["pred_female_prob"] >= 0.5).astype(int)
    frame["pred_race"] = race_probs.argmax(axis=1)
    for code, name in enumerate(RACES):
        frame[f"prob_{name}"] = race_probs[:, code]
    for column, values in own_space.items():
        frame[column] = values
    return frame


def predict_table(predictor, table: pd.DataFrame, on_progress: Callable[[int, int], None] | None = None,
                  batch_size: int = 256, crops: str = "app") -> pd.DataFrame:
    """Predict every row of a dataset table with a core.predict.Predictor, batched, view- and flip-averaged as
    the predictor says (its `views`: core.alignment.VIEWS, as uploads are). `crops`:
    "app" cuts each face the way an upload is cut (detect + align, core/crops.py: what a user gets), "dataset"
    feeds the dataset's own crop resized. A `face_detected` column says where the app path fell back. Calls
    on_progress(done, total) after each batch. For a regression head the age spread is the flip disagreement,
    the same number the Predict page shows."""
    paths = table["path"].astype(str).tolist()
    if not paths:
        raise EvaluationError("No labelled images to evaluate.")
    views = predictor.views if len(predictor.views) > 1 else None  # each face cut as the Predict page cuts it
    chunks, detected = [], []
    for start in range(0, len(paths), batch_size):
        batch = paths[start:start + batch_size]
        try:
            images, detections = load_crops(batch, predictor.img_size, crops, views=views)
        except OSError as error:  # missing or corrupt file: PIL raises an OSError subclass
            raise EvaluationError(f"Cannot read an image among {batch[0]} …: {error}") from error
        if detections is not None:
            detected.append(detections.found)
        chunks.append(predictor.raw_outputs(images))
        if on_progress is not None:
            on_progress(min(start + batch_size, len(paths)), len(paths))
    outputs = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
    frame = join_predictions(table, outputs)
    if detected:
        frame["face_detected"] = np.concatenate(detected)
    if "age_dist" not in outputs and "age_flip" in outputs and "age_group" not in outputs:
        frame["pred_age_std"] = np.abs(outputs["age_flip"].reshape(-1) - frame["pred_age"].to_numpy())
    return frame


def load_rows(kind: str | None, folder: str | Path, split_file: str | Path | None = None,
              split: str = "test") -> tuple[str, pd.DataFrame]:
    """(dataset kind, labelled rows) to evaluate: a dataset folder, or only one split of a run's split.csv."""
    dataset = load_dataset(kind, folder)
    table = select_split(dataset.table, split_file, split) if split_file else dataset.table
    return dataset.kind, table


def run_sources(run_dir: str | Path) -> dict:
    """What evaluating a training run needs: its model, its split.csv (None if absent) and the dataset kind and
    folder it was trained on (None: the default folder)."""
    run = Run(Path(run_dir).expanduser())
    try:
        config = json.loads(run.config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise EvaluationError(f"{run.path} is not a readable run folder ({run.config_file.name}: {error}).") from error
    return {"model": run.model_file, "split_file": run.split_file if run.split_file.is_file() else None,
            "dataset": config.get("dataset") or None, "data": config.get("data_dir") or None}


def table_fingerprint(table: pd.DataFrame) -> str:
    """Changes whenever the rows or labels change: part of the cache key for predictions."""
    columns = [c for c in ("path", "age", "age_group", "gender", "race", "race_label", "source") if c in table.columns]
    hashed = pd.util.hash_pandas_object(table[columns], index=False).to_numpy()
    return hashlib.sha1(hashed.tobytes()).hexdigest()[:16]


# -------------------------------------------------------------------------------------- the full report

def _kind_of(frame: pd.DataFrame) -> str:
    sources = frame["source"].dropna().unique() if "source" in frame.columns else []
    return str(sources[0]) if len(sources) == 1 else "utkface"


def labelled(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(mask of rows that have the label, the labels as float) for a nullable label column."""
    values = frame[column].to_numpy(dtype="float64", na_value=np.nan)
    known = ~np.isnan(values)
    return known, values[known]


def _age_metrics(frame: pd.DataFrame, scheme: str) -> dict:
    known, true = labelled(frame, "age")
    pred = frame["pred_age"].to_numpy(dtype="float64")[known]
    std = frame["pred_age_std"].to_numpy(dtype="float64")[known]
    labels, _ = AGE_SCHEMES[scheme]
    position = {label: i for i, label in enumerate(labels)}
    true_group = frame["age_group"].map(position).to_numpy(dtype="float64", na_value=np.nan)
    has_group = ~np.isnan(true_group)
    pred_group = predicted_groups(frame, has_group, scheme)
    return {
        "age_mae": mae(true, pred), "age_rmse": rmse(true, pred), "age_bias": mean_or_none(pred - true),
        "age_cs5": cumulative_scores(true, pred, (5,))["5"],
        "age_within_1std": within_std(true, pred, std, 1.0), "age_within_2std": within_std(true, pred, std, 2.0),
        "age_group_accuracy": accuracy(true_group[has_group].astype(int), pred_group),
        "age_group_one_off": one_off_accuracy(true_group[has_group], pred_group),
    }


def _race_rows(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows with a race label and a race prediction, their codes, their probabilities): a model without a race
    head (Adience's) has no race figure."""
    known, _ = labelled(frame, "race")
    probs = race_probs(frame)
    known &= np.isfinite(probs).all(axis=1)
    return known, frame["race"].to_numpy(dtype="float64", na_value=np.nan)[known], probs[known]


def _gender_metrics(frame: pd.DataFrame) -> dict:
    known, true = labelled(frame, "gender")
    prob = frame["pred_female_prob"].to_numpy(dtype="float64")[known]
    scores = binary_scores(true, prob)
    confidence = np.maximum(prob, 1 - prob)
    correct = (prob >= 0.5).astype(int) == true.astype(int)
    return {**{f"gender_{k}": v for k, v in scores.items()},
            "gender_ece": expected_calibration_error(confidence, correct)}


def race_probs(frame: pd.DataFrame) -> np.ndarray:
    """The predicted probability of each race code, one row per face."""
    return frame[[f"prob_{name}" for name in RACES]].to_numpy(dtype="float64")


def _race_metrics(frame: pd.DataFrame) -> dict:
    _, true, probs = _race_rows(frame)
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
    return {
        "race_accuracy": accuracy(true.astype(int), pred),
        "race_macro_f1": macro_f1(confusion_matrix(true, pred, len(RACES))) if len(true) else None,
        "race_ece": expected_calibration_error(probs.max(axis=1) if len(probs) else [], pred == true),
    }


def scalar_metrics(frame: pd.DataFrame, scheme: str = "decade") -> dict:
    """Every single-number metric for a predictions frame (None where the rows lack the label)."""
    return {"n": int(len(frame)), **_age_metrics(frame, scheme), **_gender_metrics(frame), **_race_metrics(frame)}


def group_keys(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Per row, its race (FairFace keeps its 7 names), gender and age group (decades for UTKFace, the dataset's own
    groups elsewhere); None where unknown."""
    race_code = frame["race"].map(lambda r: RACES[int(r)] if pd.notna(r) else None)
    race = frame["race_label"].astype(object).where(frame["race_label"].notna(), race_code)
    return {
        "race": race.where(race.notna(), None),
        "gender": frame["gender"].map(lambda g: GENDERS[int(g)] if pd.notna(g) else None),
        "age_group": frame["age_group"].astype(object).where(frame["age_group"].notna(), None),
    }


def _group_order(dimension: str, scheme: str) -> list[str]:
    if dimension == "race":
        return list(dict.fromkeys([*RACES, *FAIRFACE_RACE_TO_CODE]))
    return list(GENDERS) if dimension == "gender" else list(AGE_SCHEMES[scheme][0])


def fairness_gaps(groups: dict[str, dict], min_group: int = MIN_GROUP_SIZE) -> dict[str, dict]:
    """For each metric, the best and worst group among those with at least `min_group` faces, and the gap."""
    gaps = {}
    for metric in (*LOWER_IS_BETTER, *HIGHER_IS_BETTER):
        values = {g: m[metric] for g, m in groups.items() if m["n"] >= min_group and m.get(metric) is not None}
        if len(values) < 2:
            continue
        ranked = sorted(values, key=values.get, reverse=metric in HIGHER_IS_BETTER)
        best, worst = ranked[0], ranked[-1]
        gaps[metric] = {"best": best, "best_value": values[best], "worst": worst, "worst_value": values[worst],
                        "gap": abs(values[best] - values[worst]), "groups": len(values)}
    return gaps


def _confusions(frame: pd.DataFrame, scheme: str) -> dict:
    result = {}
    known, true = labelled(frame, "gender")
    if known.any():
        pred = frame["pred_gender"].to_numpy()[known]
        result["gender"] = {"labels": list(GENDERS), "matrix": confusion_matrix(true, pred, 2).tolist()}
    known, true, probs = _race_rows(frame)
    if known.any():
        result["race"] = {"labels": list(RACES), "matrix": confusion_matrix(true, probs.argmax(1), len(RACES)).tolist()}
    if own := own_race_confusion(frame):  # a race-7 model on race-7 labels: in its own races
        result["race"] = own
    labels, _ = AGE_SCHEMES[scheme]
    position = {label: i for i, label in enumerate(labels)}
    true_group = frame["age_group"].map(position).to_numpy(dtype="float64", na_value=np.nan)
    has_group = ~np.isnan(true_group)
    if has_group.any():
        pred = predicted_groups(frame, has_group, scheme)
        result["age_group"] = {"labels": list(labels),
                               "matrix": confusion_matrix(true_group[has_group], pred, len(labels)).tolist()}
    return result


def _reliability_curves(frame: pd.DataFrame) -> dict:
    result = {}
    known, true = labelled(frame, "gender")
    if known.any():
        prob = frame["pred_female_prob"].to_numpy(dtype="float64")[known]
        result["gender"] = reliability(np.maximum(prob, 1 - prob), (prob >= 0.5).astype(int) == true)
    known, true, probs = _race_rows(frame)
    if known.any():
        result["race"] = reliability(probs.max(axis=1), probs.argmax(axis=1) == true)
    return result


def evaluate_frame(frame: pd.DataFrame, kind: str | None = None, min_group: int = MIN_GROUP_SIZE) -> dict:
    """The full, JSON-ready report for a predictions frame: headline metrics, CS curve, confusion matrices,
    reliability curves, every metric per race / gender / age group with group sizes (`small` below
    `min_group`), and the best–worst gaps. `kind` picks the age groups (default: the frame's source)."""
    kind = kind or _kind_of(frame)
    scheme = SCHEME_FOR_KIND.get(kind, "decade")
    space = str(frame["pred_space"].iloc[0]) if "pred_space" in frame and len(frame) else "utkface"
    report = {"dataset": kind, "age_groups": scheme, "min_group_size": min_group, **scalar_metrics(frame, scheme),
              "face_detected": face_detected_share(frame), "label_space": space, "mappings": mappings(space, kind)}
    known, true = labelled(frame, "age")
    report["age_cs"] = cumulative_scores(true, frame["pred_age"].to_numpy(dtype="float64")[known])
    report["confusion"] = _confusions(frame, scheme)
    report["reliability"] = _reliability_curves(frame)
    report["by_group"], report["gaps"] = {}, {}
    for dimension, keys in group_keys(frame).items():
        present = set(keys.dropna())
        if not present:
            continue  # e.g. Adience has no race labels: no race breakdown rather than an empty one
        order = [g for g in _group_order(dimension, scheme) if g in present] + sorted(present - set(_group_order(
            dimension, scheme)))
        groups = {}
        for group in order:
            metrics = scalar_metrics(frame[(keys == group).to_numpy()], scheme)
            metrics.update(dict.fromkeys(_MEANINGLESS_WITHIN.get(dimension, ()), None))
            groups[group] = {**metrics, "small": metrics["n"] < min_group}
        report["by_group"][dimension] = groups
        report["gaps"][dimension] = fairness_gaps(groups, min_group)
    return report


SKEW_METRICS = PER_TASK


def crop_skew(app_report: dict, dataset_report: dict) -> dict:
    """App path minus dataset path, per headline metric: what a selfie gets beyond what the dataset crops say
    (positive age MAE and negative accuracies mean the app does worse than the dataset crops report)."""
    return {key: None if app_report.get(key) is None or dataset_report.get(key) is None
            else app_report[key] - dataset_report[key] for key in SKEW_METRICS}


def face_detected_share(frame: pd.DataFrame) -> float | None:
    """Share of rows whose face the detector found (the rest fell back to the dataset crop)."""
    return float(frame["face_detected"].mean()) if "face_detected" in frame and len(frame) else None


def evaluate_both_crops(predictor, table: pd.DataFrame, kind: str | None = None,
                        min_group: int = MIN_GROUP_SIZE, on_progress=None) -> dict:
    """Reports on the app's crops and on the dataset's crops, and the skew between them."""
    reports = {}
    for crops in ("app", "dataset"):
        frame = predict_table(predictor, table, on_progress=on_progress, crops=crops)
        reports[crops] = evaluate_frame(frame, kind, min_group)
        reports[crops]["crops"] = crops
    return {**reports, "skew": crop_skew(reports["app"], reports["dataset"])}


def summary_metrics(table: pd.DataFrame, outputs: dict) -> dict:
    """The training engine's test metrics: a run's headline numbers plus breakdowns by race, gender and age group."""
    report = evaluate_frame(join_predictions(table, outputs))
    keys = headline("n", *RUN_METRICS)
    result = {key: report[key] for key in keys}
    result["by_group"] = {dim: {g: {key: m[key] for key in keys} for g, m in groups.items()}
                          for dim, groups in report["by_group"].items()}
    if report["age_within_1std"] is not None:
        result["age_within_1std"] = report["age_within_1std"]
    return result

