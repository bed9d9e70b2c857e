"""Predictions frames (both crop paths), the report on hand-made frames of each dataset, groups and gaps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core import evaluation as ev
from core.alignment import ONE_VIEW
from core.datasets import COLUMNS
from core.labels import ADIENCE_LABELS, RACES, decade_label

# ------------------------------------------------------------------------------------------- helpers


def make_table(rows: list[dict], source: str = "utkface") -> pd.DataFrame:
    """A table in the dataset schema; rows give age / gender / race (None = unknown) and optional age_group."""
    records = []
    for i, row in enumerate(rows):
        age, race = row.get("age"), row.get("race")
        group = row.get("age_group", decade_label(age) if age is not None else None)
        label = row.get("race_label", RACES[race] if race is not None else None)
        records.append({"path": f"/faces/{i}.jpg", "age": age, "age_group": group, "gender": row.get("gender"),
                        "race": race, "race_label": label, "source": source})
    table = pd.DataFrame(records, columns=COLUMNS)
    table["age"] = table["age"].astype("Float64")
    table["gender"] = table["gender"].astype("Int64")
    table["race"] = table["race"].astype("Int64")
    for column in ("path", "age_group", "race_label", "source"):
        table[column] = table[column].astype("string")
    return table


def outputs_for(ages, female_probs, races, confidence: float = 0.8) -> dict:
    """Model outputs with the given predicted ages, P(female) and argmax races (race prob = confidence)."""
    n = len(ages)
    race_probs = np.full((n, 5), (1 - confidence) / 4)
    race_probs[np.arange(n), races] = confidence
    return {"age": np.asarray(ages, float).reshape(-1, 1), "gender": np.asarray(female_probs, float).reshape(-1, 1),
            "race": race_probs}


def frame_for(rows, ages, female_probs, races, source="utkface", **kwargs) -> pd.DataFrame:
    return ev.join_predictions(make_table(rows, source), outputs_for(ages, female_probs, races, **kwargs))


# ---------------------------------------------------------------------------------------- the report

def test_report_on_a_hand_made_utkface_frame():
    rows = [{"age": 20, "gender": 0, "race": 0}, {"age": 30, "gender": 1, "race": 0},
            {"age": 40, "gender": 1, "race": 1}, {"age": 60, "gender": 0, "race": 1}]
    frame = frame_for(rows, ages=[22, 30, 50, 61], female_probs=[0.2, 0.9, 0.3, 0.6], races=[0, 0, 1, 2])
    report = ev.evaluate_frame(frame, min_group=2)
    assert report["n"] == 4 and report["dataset"] == "utkface" and report["age_groups"] == "decade"
    assert report["age_mae"] == pytest.approx((2 + 0 + 10 + 1) / 4)
    assert report["age_bias"] == pytest.approx((2 + 0 + 10 + 1) / 4)
    assert report["age_cs"]["2"] == 0.75 and report["age_cs5"] == 0.75
    assert report["age_group_accuracy"] == 0.75  # only 40→50 leaves its decade
    assert report["gender_accuracy"] == 0.5 and report["race_accuracy"] == 0.75
    assert report["age_within_1std"] is None  # regression outputs carry no spread
    assert report["confusion"]["gender"]["matrix"] == [[1, 1], [1, 1]]
    assert report["confusion"]["race"]["matrix"][1] == [0, 1, 1, 0, 0]
    by_race = report["by_group"]["race"]
    assert list(by_race) == ["White", "Black"]  # empty groups (Asian, …) are absent, not zero
    assert by_race["White"]["age_mae"] == pytest.approx(1.0) and by_race["Black"]["age_mae"] == pytest.approx(5.5)
    assert by_race["White"]["race_macro_f1"] is None  # one true class inside a race group: not meaningful
    assert report["by_group"]["gender"]["male"]["gender_auc"] is None
    gap = report["gaps"]["race"]["age_mae"]
    assert (gap["best"], gap["worst"], gap["gap"]) == ("White", "Black", pytest.approx(4.5))
    assert report["gaps"]["race"]["race_accuracy"]["worst"] == "Black"


def test_small_groups_are_flagged_and_left_out_of_gaps():
    rows = [{"age": 25, "gender": 0, "race": 0}] * 3 + [{"age": 25, "gender": 0, "race": 1}]
    frame = frame_for(rows, ages=[25, 25, 25, 60], female_probs=[0.1] * 4, races=[0, 0, 0, 1])
    report = ev.evaluate_frame(frame, min_group=2)
    assert report["by_group"]["race"]["White"]["small"] is False
    assert report["by_group"]["race"]["Black"]["small"] is True
    assert report["by_group"]["race"]["Black"]["n"] == 1
    assert "age_mae" not in report["gaps"]["race"]  # only one trusted group: no gap to report


def test_distribution_outputs_give_an_uncertainty_check():
    table = make_table([{"age": 30, "gender": 1, "race": 2}, {"age": 50, "gender": 0, "race": 3}])
    dist = np.zeros((2, 117))
    dist[0, [29, 31]] = 0.5  # mean 30, std 1: inside
    dist[1, [39, 41]] = 0.5  # mean 40, std 1: 10 years off, outside
    outputs = {**outputs_for([30, 40], [0.9, 0.1], [2, 3]), "age": np.array([[30.0], [40.0]]), "age_dist": dist}
    report = ev.evaluate_frame(ev.join_predictions(table, outputs))
    assert report["age_within_1std"] == 0.5
    assert report["age_within_2std"] == 0.5


def test_summary_metrics_keeps_its_api():
    rows = [{"age": 20, "gender": 0, "race": 0}, {"age": 70, "gender": 1, "race": 4}]
    table = make_table(rows)
    summary = ev.summary_metrics(table, outputs_for([25, 70], [0.1, 0.8], [0, 1]))
    assert set(summary) == {"n", "age_mae", "age_rmse", "gender_accuracy", "race_accuracy", "by_group"}
    assert summary["age_mae"] == pytest.approx(2.5) and summary["race_accuracy"] == 0.5
    assert set(summary["by_group"]) == {"race", "gender", "age_group"}
    assert summary["by_group"]["age_group"]["70-79"] == {
        "n": 1, "age_mae": 0.0, "age_rmse": 0.0, "gender_accuracy": 1.0, "race_accuracy": 0.0}


def test_adience_report_scores_groups_and_gender_but_not_race():
    rows = [{"age": None, "age_group": "(25, 32)", "gender": 0}, {"age": None, "age_group": "(25, 32)", "gender": 1},
            {"age": 35.0, "age_group": "(25, 32)", "gender": 1},
            {"age": None, "age_group": "(60, 100)", "gender": None}]
    frame = frame_for(rows, ages=[28, 40, 30, 50], female_probs=[0.3, 0.7, 0.2, 0.5], races=[0, 0, 0, 0],
                      source="adience")
    report = ev.evaluate_frame(frame)
    assert report["dataset"] == "adience" and report["age_groups"] == "adience"
    # groups: (25, 32)→(25, 32) exact; →(38, 43) one off; →(25, 32) exact; (60, 100)→(48, 53) one off
    assert report["age_group_accuracy"] == 0.5 and report["age_group_one_off"] == 1.0
    assert report["age_mae"] == pytest.approx(5.0)  # only the row with a bare age in years
    assert report["gender_accuracy"] == pytest.approx(2 / 3)  # the unknown gender is not counted
    assert report["race_accuracy"] is None and report["race_ece"] is None
    assert "race" not in report["by_group"] and "race" not in report["confusion"]
    assert list(report["by_group"]["age_group"]) == ["(25, 32)", "(60, 100)"]
    assert report["confusion"]["age_group"]["labels"] == list(ADIENCE_LABELS)


def test_fairface_report_keeps_seven_race_names_and_scores_bins():
    rows = [{"age": None, "age_group": "20-29", "gender": 0, "race": 2, "race_label": "Southeast Asian"},
            {"age": None, "age_group": "more than 70", "gender": 1, "race": 4, "race_label": "Middle Eastern"},
            {"age": None, "age_group": "0-2", "gender": 1, "race": 0, "race_label": "White"}]
    frame = frame_for(rows, ages=[24, 66, 2.2], female_probs=[0.1, 0.9, 0.8], races=[2, 0, 0], source="fairface")
    report = ev.evaluate_frame(frame)
    assert report["age_groups"] == "fairface" and report["age_mae"] is None
    assert report["age_group_accuracy"] == pytest.approx(2 / 3) and report["age_group_one_off"] == 1.0
    assert report["race_accuracy"] == pytest.approx(2 / 3)
    assert list(report["by_group"]["race"]) == ["White", "Southeast Asian", "Middle Eastern"]
    assert report["by_group"]["race"]["Middle Eastern"]["race_accuracy"] == 0.0


# ----------------------------------------------------------------------------------- rows and runs

def test_fingerprint_follows_labels():
    table = make_table([{"age": 10, "gender": 0, "race": 0}, {"age": 20, "gender": 1, "race": 1}])
    relabelled = table.copy()
    relabelled.loc[0, "age"] = 11
    assert ev.table_fingerprint(table) == ev.table_fingerprint(table.copy())
    assert ev.table_fingerprint(table) != ev.table_fingerprint(relabelled)


def test_run_sources_reads_the_run_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"dataset": "adience", "data_dir": "/data/adience"}))
    sources = ev.run_sources(tmp_path)
    assert sources == {"model": tmp_path / "model.keras", "split_file": None, "dataset": "adience",
                       "data": "/data/adience"}
    with pytest.raises(ev.EvaluationError, match="not a readable run folder"):
        ev.run_sources(tmp_path / "nope")


# ------------------------------------------------------------------------------------------ predicting

class FakePredictor:
    """Stands in for core.predict.Predictor: age = mean pixel / 2, plus a flipped age 2 years higher."""
    img_size = 8
    views = ONE_VIEW

    def __init__(self):
        self.batches = []

    def raw_outputs(self, crops):
        self.batches.append(len(crops))
        age = crops.reshape(len(crops), -1).mean(axis=1, keepdims=True) / 2
        return {"age": age, "age_flip": age + 2, "gender": np.full((len(crops), 1), 0.7),
                "race": np.tile([0.1, 0.6, 0.1, 0.1, 0.1], (len(crops), 1))}


def test_predict_table_batches_reports_progress_and_uses_flip_spread(tmp_path):
    from PIL import Image
    rows = []
    for i, level in enumerate((20, 40, 60)):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (20, 20), (level, level, level)).save(path)
        rows.append({"age": 10.0 * (i + 1), "gender": 1, "race": 1})
    table = make_table(rows).assign(path=[str(tmp_path / f"{i}.png") for i in range(3)])
    predictor, progress = FakePredictor(), []
    frame = ev.predict_table(predictor, table, on_progress=lambda done, total: progress.append((done, total)),
                             batch_size=2)
    assert predictor.batches == [2, 1] and progress == [(2, 3), (3, 3)]
    assert frame["pred_age"].tolist() == pytest.approx([10, 20, 30])
    assert frame["pred_age_std"].tolist() == pytest.approx([2, 2, 2])
    assert frame["pred_race"].tolist() == [1, 1, 1] and frame["pred_gender"].tolist() == [1, 1, 1]


def test_predict_table_errors_are_clear(tmp_path):
    with pytest.raises(ev.EvaluationError, match="No labelled images"):
        ev.predict_table(FakePredictor(), make_table([]))
    table = make_table([{"age": 1, "gender": 0, "race": 0}]).assign(path=[str(tmp_path / "gone.jpg")])
    with pytest.raises(ev.EvaluationError, match="Cannot read an image"):
        ev.predict_table(FakePredictor(), table)
