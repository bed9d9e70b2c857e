"""What the pages, the CLI and the downloads show of evaluation reports (core/evaluation.py): comparison, group and
gap tables, the long metrics CSV, the crop-skew table, the worst errors to look at, a terminal summary and strict
JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from core.evaluation import crop_skew, labelled, race_probs
from core.labels import GENDERS, RACES
from core.metrics import HEADLINE, headline, metric_name

# Table columns on screen that are not metrics (metrics: core.metrics.METRIC_NAMES)
COLUMN_NAMES = {"model": "Model", "group": "Group", "metric": "Metric", "small": "Too few to trust",
                "best": "Best group", "best_value": "Best", "worst": "Worst group", "worst_value": "Worst",
                "gap": "Gap", "groups": "Groups compared", "run": "Run", "arch": "Architecture",
                "img_size": "Image size (px)", "status": "Status", "epochs": "Epochs", "device": "Device",
                "name": "Name"}
MISSING = "—"  # a number that does not exist (no labels, one class): shown as a dash, never as "None"


def _cell_text(value) -> str:
    """A cell of a column that holds a dash: all text, since Arrow (st.dataframe) refuses numbers mixed with text."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def for_display(table: pd.DataFrame) -> pd.DataFrame:
    """A table as a page shows it: plain column names, metric names in a "metric" column too, yes / no for
    flags, and a dash where a value is missing. The tables themselves keep their keys (files, the CLI)."""
    shown = table.copy()
    if "metric" in shown:
        shown["metric"] = shown["metric"].map(metric_name)
    for column in shown.columns:
        if shown[column].dtype == bool:
            shown[column] = shown[column].map({True: "yes", False: "no"})
        if shown[column].isna().any():  # a dash among numbers: the column becomes text, numbers rounded first
            shown[column] = shown[column].map(_cell_text)
    return shown.rename(columns=lambda c: COLUMN_NAMES.get(c) or metric_name(c))


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
    known, _ = labelled(frame, "age")
    ages = frame[known].assign(error=lambda f: (f["pred_age"] - f["age"].astype("float64")).abs())
    ages = ages.nlargest(k, "error")
    result["age"] = ages.assign(caption=[f"true {round(a)} · predicted {round(p)}" for a, p in zip(
        ages["age"].astype("float64"), ages["pred_age"], strict=True)])
    known, true = labelled(frame, "gender")
    wrong = frame[known][frame["pred_gender"].to_numpy()[known] != true]
    wrong = wrong.assign(confidence=np.maximum(wrong["pred_female_prob"], 1 - wrong["pred_female_prob"]))
    wrong = wrong.nlargest(k, "confidence")
    result["gender"] = wrong.assign(caption=[f"true {GENDERS[int(g)]} · predicted {GENDERS[int(p)]} {c:.0%}" for g, p, c
                                             in zip(wrong["gender"], wrong["pred_gender"], wrong["confidence"],
                                                    strict=True)])
    known, true = labelled(frame, "race")
    probs = race_probs(frame)[known]
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
    columns = list(headline("n", "age_mae", "age_group_accuracy", "gender_accuracy", "race_accuracy"))
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
