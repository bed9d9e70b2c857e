"""Metric functions on plain arrays, and the one list of headline metrics.

Each function returns None where its metric is undefined (an empty group, a single class) rather than NaN or an
exception, so reports stay JSON and pages never crash on a small slice. `HEADLINE` names the numbers a report
leads with; every shorter list (a training run's test scores, the model card, the crop skew, the tables and
charts) selects from it with `headline(...)`, so a metric is named in one place and every view orders it alike.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

CS_THETAS = tuple(range(1, 11))  # cumulative score thresholds, years
RELIABILITY_BINS = 10

HEADLINE = ("n", "age_mae", "age_rmse", "age_cs5", "age_group_accuracy", "age_group_one_off", "age_within_1std",
            "gender_accuracy", "gender_f1", "gender_auc", "gender_ece", "race_accuracy", "race_macro_f1", "race_ece")
HIGHER_IS_BETTER = ("age_cs5", "age_group_accuracy", "age_group_one_off", "gender_accuracy", "gender_precision",
                    "gender_recall", "gender_f1", "gender_auc", "race_accuracy", "race_macro_f1")
LOWER_IS_BETTER = ("age_mae", "age_rmse", "gender_ece", "race_ece")


def headline(*names: str) -> tuple[str, ...]:
    """The named headline metrics in `HEADLINE`'s order. A name outside it is a typo: KeyError at import time."""
    unknown = set(names) - set(HEADLINE)
    if unknown:
        raise KeyError(f"Not headline metrics: {', '.join(sorted(unknown))}.")
    return tuple(name for name in HEADLINE if name in names)


# Every metric's name on screen (tables, charts, the Train page): the keys above are for files and code only.
METRIC_NAMES = {
    "n": "Images", "age_mae": "Age MAE (years)", "age_rmse": "Age RMSE (years)",
    "age_bias": "Age bias (years, + = too old)", "age_cs5": "Share within 5 years",
    "age_group_accuracy": "Age-group accuracy", "age_group_one_off": "Age-group one-off accuracy",
    "age_within_1std": "True age within ±1 std", "age_within_2std": "True age within ±2 std",
    "gender_accuracy": "Gender accuracy", "gender_precision": "Gender precision", "gender_recall": "Gender recall",
    "gender_f1": "Gender F1", "gender_auc": "Gender ROC AUC", "gender_ece": "Gender calibration error",
    "race_accuracy": "Race accuracy", "race_macro_f1": "Race macro-F1", "race_ece": "Race calibration error",
}


def metric_name(key: str) -> str:
    """A metric's name on screen; `age_cs3` and other cumulative scores by their threshold."""
    if key in METRIC_NAMES:
        return METRIC_NAMES[key]
    if (theta := key.removeprefix("age_cs")).isdigit():
        return f"Share within {theta} years"
    return key.replace("_", " ")


# One score per task: the crop skew, the Train page's test scores and its training curves.
PER_TASK = headline("age_mae", "gender_accuracy", "race_accuracy")
# What a training run reports on its test split: metrics.json, the run table, cross-validation, the CLI.
RUN_METRICS = headline("age_mae", "age_rmse", "gender_accuracy", "race_accuracy")
# The same for a model whose age head is groups (FairFace's, Adience's: core/label_spaces.py).
GROUP_RUN_METRICS = headline("age_group_accuracy", "age_group_one_off", "gender_accuracy", "race_accuracy")
ANY_RUN_METRICS = headline(*RUN_METRICS, *GROUP_RUN_METRICS)  # what a run of either kind may report


def mean_or_none(values) -> float | None:
    """The mean, or None for no values (the shape of every metric here)."""
    values = np.asarray(values, dtype="float64")
    return float(values.mean()) if values.size else None


# ------------------------------------------------------------------------------------------------- age

def mae(true, pred) -> float | None:
    return mean_or_none(np.abs(np.asarray(pred, dtype="float64") - np.asarray(true, dtype="float64")))


def rmse(true, pred) -> float | None:
    mse = mean_or_none((np.asarray(pred, dtype="float64") - np.asarray(true, dtype="float64")) ** 2)
    return None if mse is None else math.sqrt(mse)


def cumulative_scores(true, pred, thetas=CS_THETAS) -> dict[str, float | None]:
    """CS(θ): the share of faces whose age error is at most θ years."""
    err = np.abs(np.asarray(pred, dtype="float64") - np.asarray(true, dtype="float64"))
    return {str(theta): mean_or_none(err <= theta) for theta in thetas}


def within_std(true, pred, std, k: float = 1.0) -> float | None:
    """Share of true ages inside pred ± k·std; ~68% (k=1) or ~95% (k=2) when the stated spread is honest.
    Rows without a finite std are ignored (a model without an uncertainty gives None)."""
    true, pred, std = (np.asarray(a, dtype="float64") for a in (true, pred, std))
    known = np.isfinite(std)
    return mean_or_none(np.abs(pred[known] - true[known]) <= k * std[known])


def one_off_accuracy(true_index, pred_index) -> float | None:
    """Adience's 'one-off' accuracy: a prediction in the neighbouring group still counts."""
    return mean_or_none(np.abs(np.asarray(true_index, dtype=int) - np.asarray(pred_index, dtype=int)) <= 1)


def group_scores(true_index, pred_index) -> dict[str, float | None]:
    """Exact and one-off accuracy of an age-group head, as Adience papers report them; rows whose true group is
    unknown (index < 0) are left out."""
    true_index, pred_index = np.asarray(true_index, dtype=int), np.asarray(pred_index, dtype=int)
    known = true_index >= 0
    return {"accuracy": accuracy(true_index[known], pred_index[known]),
            "one_off": one_off_accuracy(true_index[known], pred_index[known])}


# -------------------------------------------------------------------------------------- classification

def accuracy(true, pred) -> float | None:
    return mean_or_none(np.asarray(true) == np.asarray(pred))


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


# ----------------------------------------------------------------------------------------- calibration

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
