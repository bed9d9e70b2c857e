"""Tables, worst errors, the terminal summary and strict JSON built from evaluation reports."""

from __future__ import annotations

import json

import numpy as np

from core import reports
from core.evaluation import evaluate_frame
from tests.test_evaluation import frame_for


def test_worst_errors_put_the_biggest_mistakes_first():
    rows = [{"age": 80, "gender": 0, "race": 0}, {"age": 5, "gender": 0, "race": 1},
            {"age": 30, "gender": 1, "race": 2}]
    frame = frame_for(rows, ages=[78, 70, 31], female_probs=[0.6, 0.99, 0.8], races=[0, 3, 2])
    worst = reports.worst_errors(frame, k=2)
    assert worst["age"]["path"].tolist() == ["/faces/1.jpg", "/faces/0.jpg"]
    assert worst["age"]["caption"].iloc[0] == "true 5 · predicted 70"
    assert worst["gender"]["path"].tolist() == ["/faces/1.jpg", "/faces/0.jpg"]  # 99% wrong before 60% wrong
    assert worst["race"]["caption"].tolist() == ["true Black · predicted Indian 80%"]


def test_worst_errors_without_labels_are_empty():
    frame = frame_for([{"age": None, "age_group": "(0, 2)", "gender": None}], ages=[1], female_probs=[0.5],
                      races=[0], source="adience")
    assert all(rows.empty for rows in reports.worst_errors(frame).values())


def test_tables_for_pages_and_csv():
    frame = frame_for([{"age": 20, "gender": 0, "race": 0}, {"age": 40, "gender": 1, "race": 1}],
                      ages=[21, 44], female_probs=[0.2, 0.7], races=[0, 1])
    by_model = {"a": evaluate_frame(frame, min_group=1), "b": evaluate_frame(frame, min_group=1)}
    comparison = reports.comparison_table(by_model)
    assert comparison["model"].tolist() == ["a", "b"] and comparison["age_mae"].tolist() == [2.5, 2.5]
    groups = reports.group_table(by_model["a"], "gender")
    assert groups["group"].tolist() == ["male", "female"] and groups["n"].tolist() == [1, 1]
    long = reports.metrics_long(by_model)
    assert set(long["model"]) == {"a", "b"}
    value = long.query("model == 'a' and dimension == 'race' and group == 'Black' and metric == 'age_mae'")["value"]
    assert value.tolist() == [4.0]
    gaps = reports.gaps_table(by_model, "race")
    assert set(gaps.query("metric == 'age_mae'")["worst"]) == {"Black"}
    text = reports.format_report(by_model["a"])
    assert "2 images" in text and "by race" in text and "MAE 2.50" in text


def test_report_is_strict_json_even_with_nan_outputs():
    frame = frame_for([{"age": 20, "gender": 0, "race": 0}], ages=[np.nan], female_probs=[0.2], races=[0])
    text = reports.to_json(evaluate_frame(frame))
    parsed = json.loads(text)
    assert "\n" not in text and parsed["age_mae"] is None and parsed["gender_accuracy"] == 1.0


def test_skew_table_gives_the_app_minus_the_dataset_crops_in_years_and_points():
    app = {"age_mae": 6.5, "gender_accuracy": 0.90, "race_accuracy": None, "face_detected": 0.97}
    dataset = {"age_mae": 5.0, "gender_accuracy": 0.95, "race_accuracy": 0.8}
    row = reports.skew_table({"m": (app, dataset)}).iloc[0]
    assert row["age MAE (years)"] == 1.5 and round(row["gender accuracy (points)"], 6) == -5.0
    assert row["race accuracy (points)"] is None and row["faces detected"] == 0.97  # no race labels: no skew


def test_a_column_with_a_missing_value_is_all_text_with_a_dash():
    """Runs of two label spaces in one table (an Adience run has no age MAE): Arrow refuses numbers mixed with a
    dash, so the whole column is text, numbers rounded."""
    import pandas as pd

    shown = reports.for_display(pd.DataFrame({"age_mae": [4.75849, None], "epochs": [8, 3]}))
    assert shown.iloc[:, 0].tolist() == ["4.758", reports.MISSING]
    assert shown.iloc[:, 1].tolist() == [8, 3]  # a full column stays numeric
    import pyarrow as pa
    pa.Table.from_pandas(shown)  # what st.dataframe does; raised ArrowInvalid before
