"""Metrics, in one place for the training engine, the CLI, the Evaluate page and the model card.

Three layers:
- metric functions on plain arrays, each returning None where the metric is undefined (an empty group, a single
  class) rather than NaN or an exception, so reports stay JSON and pages never crash on a small slice;
- `evaluate_frame`: every metric overall and per group (race, gender, age) with fairness gaps, as a JSON-ready dict;
- `predict_frame`: a Predictor run over a dataset table exactly as the app runs it (resize, batched, flip TTA).
Predicted ages are mapped onto the target dataset's own age groups, which is how a UTKFace model is scored on
Adience (8 groups) or FairFace (9 bins).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from core.crops import load_app_crops
from core.datasets import (
    ADIENCE_GROUPS,
    AGE_BINS,
    DECADES,
    FAIRFACE_BINS,
    FAIRFACE_RACE_TO_CODE,
    GENDERS,
    RACES,
    adience_group,
    decade_label,
    load_dataset,
)
from core.errors import UserError
from core.pipeline import load_images

MIN_GROUP_SIZE = 30  # below this a group's metrics swing too much to compare: flagged and left out of gaps
CS_THETAS = tuple(range(1, 11))  # cumulative score thresholds, years
RELIABILITY_BINS = 10


class EvaluationError(UserError):
    """An evaluation request that cannot run (no rows, unreadable split file or image); the message says why."""


# ------------------------------------------------------------------------------------------- age groups

def _fairface_bin(year: int) -> str:
    if year < 3:
        return "0-2"
    if year < 10:
        return "3-9"
    if year >= 70:
        return "more than 70"
    return f"{year // 10 * 10}-{year // 10 * 10 + 9}"


ADIENCE_LABELS = tuple(f"({low}, {high})" for low, high in ADIENCE_GROUPS)
_YEARS = range(AGE_BINS)
# Lookup per whole year; Adience goes through adience_group itself so the widened bounds can never drift apart.
AGE_SCHEMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "decade": (DECADES, tuple(decade_label(y) for y in _YEARS)),
    "adience": (ADIENCE_LABELS, tuple(adience_group(str(y))[0] for y in _YEARS)),
    "fairface": (FAIRFACE_BINS, tuple(_fairface_bin(y) for y in _YEARS)),
}
SCHEME_FOR_KIND = {"utkface": "decade", "adience": "adience", "fairface": "fairface"}


def age_to_group(ages, scheme: str) -> np.ndarray:
    """Group labels for predicted ages. Labels are whole years, so a prediction is rounded to the nearest year
    first (a predicted 2.9 means 'about 3')."""
    _, by_year = AGE_SCHEMES[scheme]
    ages = np.nan_to_num(np.asarray(ages, dtype="float64"), nan=0.0)
    years = np.clip(np.floor(ages + 0.5), 0, AGE_BINS - 1).astype(int)
    return np.asarray(by_year, dtype=object)[years]


# ------------------------------------------------------------------------------------- metric functions

def _mean(values) -> float | None:
    values = np.asarray(values, dtype="float64")
    return float(values.mean()) if values.size else None


def mae(true, pred) -> float | None:
    return _mean(np.abs(np.asarray(pred, dtype="float64") - np.asarray(true, dtype="float64")))


def rmse(true, pred) -> float | None:
    mse = _mean((np.asarray(pred, dtype="float64") - np.asarray(true, dtype="float64")) ** 2)
    return None if mse is None else math.sqrt(mse)


def cumulative_scores(true, pred, thetas=CS_THETAS) -> dict[str, float | None]:
    """CS(θ): the share of faces whose age error is at most θ years."""
    err = np.abs(np.asarray(pred, dtype="float64") - np.asarray(true, dtype="float64"))
    return {str(theta): _mean(err <= theta) for theta in thetas}


def within_std(true, pred, std, k: float = 1.0) -> float | None:
    """Share of true ages inside pred ± k·std; ~68% (k=1) or ~95% (k=2) when the stated spread is honest.
    Rows without a finite std are ignored (a model without an uncertainty gives None)."""
    true, pred, std = (np.asarray(a, dtype="float64") for a in (true, pred, std))
    known = np.isfinite(std)
    return _mean(np.abs(pred[known] - true[known]) <= k * std[known])


def accuracy(true, pred) -> float | None:
    return _mean(np.asarray(true) == np.asarray(pred))


def one_off_accuracy(true_index, pred_index) -> float | None:
    """Adience's 'one-off' accuracy: a prediction in the neighbouring group still counts."""
    return _mean(np.abs(np.asarray(true_index, dtype=int) - np.asarray(pred_index, dtype=int)) <= 1)


def roc_auc(true, score) -> float | None:
    """Area under the ROC curve as the Mann–Whitney statistic (ties count half); None with a single class."""
    true = np.asarray(true, dtype=bool)
    positives, negatives = int(true.sum()), int((~true).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = pd.Series(np.asarray(score, dtype="float64")).rank(method="average").to_numpy()
    return float((ranks[true].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def binary_scores(true, prob, threshold: float = 0.5) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1 and ROC AUC for the positive class (label 1) from probabilities.
    Precision needs a predicted positive, recall a true one; F1 = 2TP / (2TP + FP + FN) needs either."""
    true = np.asarray(true, dtype=int)
    prob = np.asarray(prob, dtype="float64")
    pred = (prob >= threshold).astype(int)
    tp = int(((pred == 1) & (true == 1)).sum())
    fp = int(((pred == 1) & (true == 0)).sum())
    fn = int(((pred == 0) & (true == 1)).sum())
    return {
        "accuracy": accuracy(true, pred),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "auc": roc_auc(true, prob),
    }


def confusion_matrix(true, pred, n_classes: int) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns."""
    matrix = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(matrix, (np.asarray(true, dtype=int), np.asarray(pred, dtype=int)), 1)
    return matrix


def f1_per_class(matrix: np.ndarray) -> list[float | None]:
    """F1 of each class from a confusion matrix; None for a class neither present nor predicted."""
    tp = np.diag(matrix).astype("float64")
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)  # = 2TP + FP + FN
    return [float(2 * t / d) if d else None for t, d in zip(tp, denominator, strict=True)]


def macro_f1(matrix: np.ndarray) -> float | None:
    """Unweighted mean F1 over the classes that occur (as truth or prediction), so rare races count fully."""
    scores = [s for s in f1_per_class(matrix) if s is not None]
    return float(np.mean(scores)) if scores else None


def reliability(confidence, correct, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Reliability curve: per equal-width confidence bin, the mean confidence, the accuracy and the count.
    Empty bins are left out."""
    confidence = np.asarray(confidence, dtype="float64")
    correct = np.asarray(correct, dtype="float64")
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            rows.append({"lower": b / bins, "upper": (b + 1) / bins, "confidence": float(confidence[inside].mean()),
                         "accuracy": float(correct[inside].mean()), "count": int(inside.sum())})
    return rows


def expected_calibration_error(confidence, correct, bins: int = RELIABILITY_BINS) -> float | None:
    """ECE: the count-weighted mean gap between confidence and accuracy over the reliability bins."""
    rows = reliability(confidence, correct, bins)
    total = sum(r["count"] for r in rows)
    if not total:
        return None
    return float(sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / total)


# ------------------------------------------------------------------------------------ model predictions

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


def predict_frame(predictor, table: pd.DataFrame, on_progress: Callable[[int, int], None] | None = None,
                  batch_size: int = 256, crops: str = "app") -> pd.DataFrame:
    """Predict every row of a dataset table with a core.predict.Predictor, batched and flip-averaged. `crops`:
    "app" cuts each face the way an upload is cut (detect + align, core/crops.py: what a user gets), "dataset"
    feeds the dataset's own crop resized. A `face_detected` column says where the app path fell back. Calls
    on_progress(done, total) after each batch. For a regression head the age spread is the flip disagreement,
    the same number the Predict page shows."""
    paths = table["path"].astype(str).tolist()
    if not paths:
        raise EvaluationError("No labelled images to evaluate.")
    chunks, detected = [], []
    for start in range(0, len(paths), batch_size):
        batch = paths[start:start + batch_size]
        try:
            if crops == "app":
                images, detections = load_app_crops(batch, predictor.img_size)
                detected.append(detections.found)
            else:
                images = load_images(batch, predictor.img_size)
        except OSError as error:  # missing or corrupt file: PIL raises an OSError subclass
            raise EvaluationError(f"Cannot read an image among {batch[0]} …: {error}") from error
        chunks.append(predictor.raw_outputs(images))
        if on_progress is not None:
            on_progress(min(start + batch_size, len(paths)), len(paths))
    outputs = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
    frame = predictions_frame(table, outputs)
    if detected:
        frame["face_detected"] = np.concatenate(detected)
    if "age_dist" not in outputs and "age_flip" in outputs:
        frame["pred_age_std"] = np.abs(outputs["age_flip"].reshape(-1) - frame["pred_age"].to_numpy())
    return frame


def select_split(table: pd.DataFrame, split_file: str | Path, split: str = "test") -> pd.DataFrame:
    """The rows of `table` that a run's split.csv (path, split) puts in `split`. Matches by path, or by file name
    when the dataset folder has moved since training."""
    try:
        splits = pd.read_csv(split_file, dtype=str)
    except (OSError, ValueError) as error:
        raise EvaluationError(f"Cannot read split file {split_file}: {error}") from error
    if not {"path", "split"} <= set(splits.columns):
        raise EvaluationError(f"{split_file} is not a split file: it needs the columns path and split.")
    wanted = splits.loc[splits["split"] == split, "path"].dropna()
    if wanted.empty:
        found = ", ".join(sorted(splits["split"].dropna().unique())) or "none"
        raise EvaluationError(f"{split_file} has no {split!r} rows (splits present: {found}).")
    chosen = table[table["path"].isin(set(wanted))]
    if chosen.empty:
        names = {Path(p).name for p in wanted}
        chosen = table[table["path"].map(lambda p: Path(p).name).isin(names)]
    if chosen.empty:
        raise EvaluationError(f"None of the {len(wanted)} {split!r} images of {split_file} are in this dataset "
                              "folder: evaluate the run on the folder it was trained on.")
    return chosen.reset_index(drop=True)


def load_rows(kind: str | None, folder: str | Path, split_file: str | Path | None = None,
              split: str = "test") -> tuple[str, pd.DataFrame]:
    """(dataset kind, labelled rows) to evaluate: a dataset folder, or only one split of a run's split.csv."""
    dataset = load_dataset(kind, folder)
    table = select_split(dataset.table, split_file, split) if split_file else dataset.table
    return dataset.kind, table


def run_sources(run_dir: str | Path) -> dict:
    """What evaluating a training run needs: its model, its split.csv (None if absent) and the dataset kind and
    folder it was trained on (None: the default folder)."""
    run_dir = Path(run_dir).expanduser()
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise EvaluationError(f"{run_dir} is not a readable run folder (config.json: {error}).") from error
    split_file = run_dir / "split.csv"
    return {"model": run_dir / "model.keras", "split_file": split_file if split_file.is_file() else None,
            "dataset": config.get("dataset") or None, "data": config.get("data_dir") or None}


def table_fingerprint(table: pd.DataFrame) -> str:
    """Changes whenever the rows or labels change: part of the cache key for predictions."""
    columns = [c for c in ("path", "age", "age_group", "gender", "race", "race_label", "source") if c in table.columns]
    hashed = pd.util.hash_pandas_object(table[columns], index=False).to_numpy()
    return hashlib.sha1(hashed.tobytes()).hexdigest()[:16]


# -------------------------------------------------------------------------------------- the full report

HIGHER_IS_BETTER = ("age_cs5", "age_group_accuracy", "age_group_one_off", "gender_accuracy", "gender_precision",
                    "gender_recall", "gender_f1", "gender_auc", "race_accuracy", "race_macro_f1")
LOWER_IS_BETTER = ("age_mae", "age_rmse", "gender_ece", "race_ece")
HEADLINE = ("n", "age_mae", "age_rmse", "age_cs5", "age_group_accuracy", "age_group_one_off", "age_within_1std",
            "gender_accuracy", "gender_f1", "gender_auc", "gender_ece", "race_accuracy", "race_macro_f1", "race_ece")
# Inside one race (or gender) group every true label is the same class, so class-averaged scores of that task
# measure nothing there (one-class F1, AUC): blanked rather than compared.
_MEANINGLESS_WITHIN = {"race": ("race_macro_f1",),
                       "gender": ("gender_precision", "gender_recall", "gender_f1", "gender_auc")}


def _kind_of(frame: pd.DataFrame) -> str:
    sources = frame["source"].dropna().unique() if "source" in frame.columns else []
    return str(sources[0]) if len(sources) == 1 else "utkface"


def _labels(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(mask of rows that have the label, the labels as float) for a nullable label column."""
    values = frame[column].to_numpy(dtype="float64", na_value=np.nan)
    known = ~np.isnan(values)
    return known, values[known]


def _age_metrics(frame: pd.DataFrame, scheme: str) -> dict:
    known, true = _labels(frame, "age")
    pred = frame["pred_age"].to_numpy(dtype="float64")[known]
    std = frame["pred_age_std"].to_numpy(dtype="float64")[known]
    labels, _ = AGE_SCHEMES[scheme]
    position = {label: i for i, label in enumerate(labels)}
    true_group = frame["age_group"].map(position).to_numpy(dtype="float64", na_value=np.nan)
    has_group = ~np.isnan(true_group)
    pred_group = np.array([position[g] for g in age_to_group(frame["pred_age"].to_numpy()[has_group], scheme)])
    return {
        "age_mae": mae(true, pred), "age_rmse": rmse(true, pred), "age_bias": _mean(pred - true),
        "age_cs5": cumulative_scores(true, pred, (5,))["5"],
        "age_within_1std": within_std(true, pred, std, 1.0), "age_within_2std": within_std(true, pred, std, 2.0),
        "age_group_accuracy": accuracy(true_group[has_group].astype(int), pred_group),
        "age_group_one_off": one_off_accuracy(true_group[has_group], pred_group),
    }


def _gender_metrics(frame: pd.DataFrame) -> dict:
    known, true = _labels(frame, "gender")
    prob = frame["pred_female_prob"].to_numpy(dtype="float64")[known]
    scores = binary_scores(true, prob)
    confidence = np.maximum(prob, 1 - prob)
    correct = (prob >= 0.5).astype(int) == true.astype(int)
    return {**{f"gender_{k}": v for k, v in scores.items()},
            "gender_ece": expected_calibration_error(confidence, correct)}


def _race_probs(frame: pd.DataFrame) -> np.ndarray:
    return frame[[f"prob_{name}" for name in RACES]].to_numpy(dtype="float64")


def _race_metrics(frame: pd.DataFrame) -> dict:
    known, true = _labels(frame, "race")
    probs = _race_probs(frame)[known]
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
    """Per row, its race (FairFace keeps its 7 names), gender and age group; None where unknown. The age key keeps
    the name `age_decade` of the training metrics: decades for UTKFace, the dataset's own groups elsewhere."""
    race_code = frame["race"].map(lambda r: RACES[int(r)] if pd.notna(r) else None)
    race = frame["race_label"].astype(object).where(frame["race_label"].notna(), race_code)
    return {
        "race": race.where(race.notna(), None),
        "gender": frame["gender"].map(lambda g: GENDERS[int(g)] if pd.notna(g) else None),
        "age_decade": frame["age_group"].astype(object).where(frame["age_group"].notna(), None),
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
    known, true = _labels(frame, "gender")
    if known.any():
        pred = frame["pred_gender"].to_numpy()[known]
        result["gender"] = {"labels": list(GENDERS), "matrix": confusion_matrix(true, pred, 2).tolist()}
    known, true = _labels(frame, "race")
    if known.any():
        pred = _race_probs(frame)[known].argmax(axis=1)
        result["race"] = {"labels": list(RACES), "matrix": confusion_matrix(true, pred, len(RACES)).tolist()}
    labels, _ = AGE_SCHEMES[scheme]
    position = {label: i for i, label in enumerate(labels)}
    true_group = frame["age_group"].map(position).to_numpy(dtype="float64", na_value=np.nan)
    has_group = ~np.isnan(true_group)
    if has_group.any():
        pred = [position[g] for g in age_to_group(frame["pred_age"].to_numpy()[has_group], scheme)]
        result["age_group"] = {"labels": list(labels),
                               "matrix": confusion_matrix(true_group[has_group], pred, len(labels)).tolist()}
    return result


def _reliability_curves(frame: pd.DataFrame) -> dict:
    result = {}
    known, true = _labels(frame, "gender")
    if known.any():
        prob = frame["pred_female_prob"].to_numpy(dtype="float64")[known]
        result["gender"] = reliability(np.maximum(prob, 1 - prob), (prob >= 0.5).astype(int) == true)
    known, true = _labels(frame, "race")
    if known.any():
        probs = _race_probs(frame)[known]
        result["race"] = reliability(probs.max(axis=1), probs.argmax(axis=1) == true)
    return result


def evaluate_frame(frame: pd.DataFrame, kind: str | None = None, min_group: int = MIN_GROUP_SIZE) -> dict:
    """The full, JSON-ready report for a predictions frame: headline metrics, CS curve, confusion matrices,
    reliability curves, every metric per race / gender / age group with group sizes (`small` below
    `min_group`), and the best–worst gaps. `kind` picks the age groups (default: the frame's source)."""
    kind = kind or _kind_of(frame)
    scheme = SCHEME_FOR_KIND.get(kind, "decade")
    report = {"dataset": kind, "age_groups": scheme, "min_group_size": min_group, **scalar_metrics(frame, scheme),
              "face_detected": face_detected_share(frame)}
    known, true = _labels(frame, "age")
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


SKEW_METRICS = ("age_mae", "gender_accuracy", "race_accuracy")


def crop_skew(app_report: dict, dataset_report: dict) -> dict:
    """App path minus dataset path, per headline metric: what a selfie gets beyond what the dataset crops say
    (positive age MAE and negative accuracies mean the app does worse than the dataset crops report)."""
    return {key: None if app_report.get(key) is None or dataset_report.get(key) is None
            else app_report[key] - dataset_report[key] for key in SKEW_METRICS}


def skew_table(pairs: dict[str, tuple[dict, dict]]) -> pd.DataFrame:
    """One row per model from {model: (app report, dataset report)}: the skew, age MAE in years and
    accuracies in points."""
    rows = []
    for model, (app_report, dataset_report) in pairs.items():
        skew = crop_skew(app_report, dataset_report)
        points = {key: None if skew[key] is None else 100 * skew[key] for key in ("gender_accuracy", "race_accuracy")}
        rows.append({"model": model, "age MAE (years)": skew["age_mae"],
                     "gender accuracy (points)": points["gender_accuracy"],
                     "race accuracy (points)": points["race_accuracy"],
                     "faces detected": app_report.get("face_detected")})
    return pd.DataFrame(rows)


def face_detected_share(frame: pd.DataFrame) -> float | None:
    """Share of rows whose face the detector found (the rest fell back to the dataset crop)."""
    return float(frame["face_detected"].mean()) if "face_detected" in frame and len(frame) else None


def evaluate_both_crops(predictor, table: pd.DataFrame, kind: str | None = None,
                        min_group: int = MIN_GROUP_SIZE, on_progress=None) -> dict:
    """Reports on the app's crops and on the dataset's crops, and the skew between them."""
    reports = {}
    for crops in ("app", "dataset"):
        frame = predict_frame(predictor, table, on_progress=on_progress, crops=crops)
        reports[crops] = evaluate_frame(frame, kind, min_group)
        reports[crops]["crops"] = crops
    return {**reports, "skew": crop_skew(reports["app"], reports["dataset"])}


def summary_metrics(table: pd.DataFrame, outputs: dict) -> dict:
    """The training engine's test metrics: headline numbers plus breakdowns by race, gender and age decade."""
    report = evaluate_frame(predictions_frame(table, outputs))
    headline = ("n", "age_mae", "age_rmse", "gender_accuracy", "race_accuracy")
    result = {key: report[key] for key in headline}
    result["by_group"] = {dim: {g: {key: m[key] for key in headline} for g, m in groups.items()}
                          for dim, groups in report["by_group"].items()}
    if report["age_within_1std"] is not None:
        result["age_within_1std"] = report["age_within_1std"]
    return result


# ------------------------------------------------------------------------- tables for pages, CLI, CSV

def comparison_table(reports: dict[str, dict]) -> pd.DataFrame:
    """One row per model, the headline metrics as columns."""
    return pd.DataFrame([{"model": name, **{k: report.get(k) for k in HEADLINE}} for name, report in reports.items()])


def group_table(report: dict, dimension: str) -> pd.DataFrame:
    """One row per group of a dimension: size, small-group flag and every metric."""
    groups = report["by_group"].get(dimension, {})
    return pd.DataFrame([{"group": g, **m} for g, m in groups.items()])


def gaps_table(reports: dict[str, dict], dimension: str) -> pd.DataFrame:
    rows = [{"model": name, "metric": metric, **gap}
            for name, report in reports.items() for metric, gap in report["gaps"].get(dimension, {}).items()]
    return pd.DataFrame(rows)


def metrics_long(reports: dict[str, dict]) -> pd.DataFrame:
    """Every number of every report as rows (model, dimension, group, metric, value): the metrics CSV."""
    rows = []
    for name, report in reports.items():
        rows += [{"model": name, "dimension": "overall", "group": "", "metric": k, "value": report.get(k)}
                 for k in HEADLINE + ("age_bias", "age_within_2std", "gender_precision", "gender_recall")]
        rows += [{"model": name, "dimension": "overall", "group": "", "metric": f"age_cs{t}", "value": v}
                 for t, v in report["age_cs"].items()]
        for dimension, groups in report["by_group"].items():
            rows += [{"model": name, "dimension": dimension, "group": g, "metric": k, "value": v}
                     for g, metrics in groups.items() for k, v in metrics.items()]
    return pd.DataFrame(rows, columns=["model", "dimension", "group", "metric", "value"])


def worst_errors(frame: pd.DataFrame, k: int = 12) -> dict[str, pd.DataFrame]:
    """The faces to look at first: largest age errors and the most confident wrong gender and race calls. Label
    mistakes (an elderly man labelled 5) surface here. Each row has the path and a caption."""
    result = {}
    known, _ = _labels(frame, "age")
    ages = frame[known].assign(error=lambda f: (f["pred_age"] - f["age"].astype("float64")).abs())
    ages = ages.nlargest(k, "error")
    result["age"] = ages.assign(caption=[f"true {round(a)} · predicted {round(p)}" for a, p in zip(
        ages["age"].astype("float64"), ages["pred_age"], strict=True)])
    known, true = _labels(frame, "gender")
    wrong = frame[known][frame["pred_gender"].to_numpy()[known] != true]
    wrong = wrong.assign(confidence=np.maximum(wrong["pred_female_prob"], 1 - wrong["pred_female_prob"]))
    wrong = wrong.nlargest(k, "confidence")
    result["gender"] = wrong.assign(caption=[f"true {GENDERS[int(g)]} · predicted {GENDERS[int(p)]} {c:.0%}" for g, p, c
                                             in zip(wrong["gender"], wrong["pred_gender"], wrong["confidence"],
                                                    strict=True)])
    known, true = _labels(frame, "race")
    probs = _race_probs(frame)[known]
    wrong_rows = probs.argmax(axis=1) != true if len(probs) else np.zeros(0, dtype=bool)
    wrong = frame[known][wrong_rows].assign(confidence=probs.max(axis=1)[wrong_rows] if len(probs) else [])
    wrong = wrong.nlargest(k, "confidence")
    result["race"] = wrong.assign(caption=[f"true {RACES[int(r)]} · predicted {RACES[int(p)]} {c:.0%}" for r, p, c
                                           in zip(wrong["race"], wrong["pred_race"], wrong["confidence"], strict=True)])
    return result


def format_report(report: dict) -> str:
    """A plain-text summary for the terminal: headline numbers, then each breakdown (* = group too small)."""
    def fmt(value, pattern="{:.3f}"):
        return "–" if value is None else pattern.format(value)

    lines = [
        f"{report['n']} images · {report['dataset']} · age groups: {report['age_groups']}",
        f"age     MAE {fmt(report['age_mae'], '{:.2f}')}  RMSE {fmt(report['age_rmse'], '{:.2f}')}  "
        f"CS(5) {fmt(report['age_cs5'], '{:.0%}')}  group accuracy {fmt(report['age_group_accuracy'], '{:.0%}')} "
        f"(one-off {fmt(report['age_group_one_off'], '{:.0%}')})  within ±1 std "
        f"{fmt(report['age_within_1std'], '{:.0%}')}",
        f"gender  accuracy {fmt(report['gender_accuracy'])}  F1 {fmt(report['gender_f1'])}  "
        f"AUC {fmt(report['gender_auc'])}  ECE {fmt(report['gender_ece'])}",
        f"race    accuracy {fmt(report['race_accuracy'])}  macro-F1 {fmt(report['race_macro_f1'])}  "
        f"ECE {fmt(report['race_ece'])}",
    ]
    columns = ["n", "age_mae", "age_group_accuracy", "gender_accuracy", "race_accuracy"]
    for dimension in report["by_group"]:
        table = group_table(report, dimension).set_index("group")
        table.index = [f"{g}{' *' if small else ''}" for g, small in zip(table.index, table["small"], strict=True)]
        lines += ["", f"by {dimension} (* fewer than {report['min_group_size']} images):",
                  table[columns].dropna(axis=1, how="all").to_string(float_format=lambda v: f"{v:.3f}")]
    return "\n".join(lines)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # a model that outputs NaN must still give valid JSON
    return value


def to_json(report: dict) -> str:
    """The report as one line of strict JSON (NaN becomes null)."""
    return json.dumps(_jsonable(report), allow_nan=False)
