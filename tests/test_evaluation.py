"""Metrics against hand-computed cases, the age-group mappings used for cross-dataset scoring, and the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from core import evaluation as ev
from core.datasets import ADIENCE_GROUPS, COLUMNS, FAIRFACE_BINS, RACES, adience_group, decade_label

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
    return ev.predictions_frame(make_table(rows, source), outputs_for(ages, female_probs, races, **kwargs))


# ----------------------------------------------------------------------------------------- age metrics

def test_mae_and_rmse_by_hand():
    assert ev.mae([10, 20, 30], [12, 18, 30]) == pytest.approx(4 / 3)
    assert ev.rmse([10, 20, 30], [12, 18, 30]) == pytest.approx(math.sqrt(8 / 3))


def test_metrics_of_nothing_are_none_not_nan():
    assert ev.mae([], []) is None
    assert ev.rmse([], []) is None
    assert ev.accuracy([], []) is None
    assert ev.one_off_accuracy([], []) is None
    assert ev.cumulative_scores([], [])["5"] is None
    assert ev.within_std([], [], []) is None


def test_cumulative_score_counts_errors_up_to_theta():
    true = [20, 20, 20, 20, 20]
    pred = [20, 21, 18, 25, 31]  # errors 0, 1, 2, 5, 11
    cs = ev.cumulative_scores(true, pred)
    assert list(cs) == [str(t) for t in range(1, 11)]
    assert (cs["1"], cs["2"], cs["4"], cs["5"], cs["10"]) == (0.4, 0.6, 0.6, 0.8, 0.8)


def test_within_std_ignores_rows_without_a_spread():
    assert ev.within_std([10, 10, 10], [11, 13, 10], [2, 2, np.nan]) == 0.5
    assert ev.within_std([10, 10], [11, 40], [1, 10], k=2) == 0.5
    assert ev.within_std([10], [11], [np.nan]) is None  # regression head without a spread: undefined


def test_one_off_counts_neighbouring_groups():
    assert ev.one_off_accuracy([0, 1, 2, 7], [1, 1, 4, 6]) == 0.75


# ---------------------------------------------------------------------------------- classification


def test_roc_auc_by_hand_with_ties_and_one_class():
    assert ev.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert ev.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts half
    assert ev.roc_auc([1, 1, 1], [0.2, 0.9, 0.5]) is None  # undefined with one class: None, no crash
    assert ev.roc_auc([], []) is None


def test_binary_scores_by_hand():
    scores = ev.binary_scores([1, 1, 0, 0, 1], [0.9, 0.4, 0.6, 0.1, 0.7])  # TP 2, FP 1, FN 1, TN 1
    assert scores["accuracy"] == pytest.approx(3 / 5)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["auc"] == pytest.approx(5 / 6)


def test_binary_scores_with_a_single_class():
    only_male = ev.binary_scores([0, 0], [0.1, 0.2])
    assert only_male == {"accuracy": 1.0, "precision": None, "recall": None, "f1": None, "auc": None}
    missed = ev.binary_scores([1, 1], [0.1, 0.2])  # no predicted positive, but F1 is defined: 0
    assert (missed["precision"], missed["recall"], missed["f1"], missed["auc"]) == (None, 0.0, 0.0, None)


def test_confusion_matrix_and_macro_f1_by_hand():
    matrix = ev.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], 4)
    assert matrix.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert ev.f1_per_class(matrix) == pytest.approx([2 / 3, 2 / 3, 1.0, None])
    # class 3 never occurs: left out of the mean rather than counted as 0
    assert ev.macro_f1(matrix) == pytest.approx(7 / 9)
    assert ev.macro_f1(np.zeros((5, 5), int)) is None


def test_reliability_and_ece_by_hand():
    rows = ev.reliability([0.55, 0.58, 0.95, 0.92], [1, 0, 1, 1])
    assert [(r["lower"], r["count"]) for r in rows] == [(0.5, 2), (0.9, 2)]
    assert rows[0]["confidence"] == pytest.approx(0.565) and rows[0]["accuracy"] == 0.5
    assert rows[1]["confidence"] == pytest.approx(0.935) and rows[1]["accuracy"] == 1.0
    assert ev.expected_calibration_error([0.55, 0.58, 0.95, 0.92], [1, 0, 1, 1]) == pytest.approx(0.065)
    assert ev.reliability([1.0], [1])[0]["lower"] == 0.9  # confidence 1 belongs to the last bin
    assert ev.expected_calibration_error([], []) is None


# ------------------------------------------------------------------------------------------ age groups


@pytest.mark.parametrize(("age", "group"), [
    (0, "(0, 2)"), (3, "(0, 2)"), (3.4, "(0, 2)"), (3.6, "(4, 6)"), (13.4, "(8, 12)"), (13.6, "(15, 20)"),
    (35, "(25, 32)"), (35.6, "(38, 43)"), (57, "(60, 100)"), (116, "(60, 100)"), (-4, "(0, 2)"),
])
def test_predicted_ages_to_adience_groups(age, group):
    assert ev.age_to_group([age], "adience")[0] == group


def test_adience_mapping_uses_the_dataset_loaders_bounds_for_every_year():
    for year in range(117):
        assert ev.age_to_group([year], "adience")[0] == adience_group(str(year))[0]
    assert tuple(f"({a}, {b})" for a, b in ADIENCE_GROUPS) == ev.ADIENCE_LABELS


@pytest.mark.parametrize(("age", "group"), [
    (0, "0-2"), (2.4, "0-2"), (2.6, "3-9"), (9, "3-9"), (10, "10-19"), (45, "40-49"), (69.4, "60-69"),
    (69.6, "more than 70"), (70, "more than 70"), (99, "more than 70"),
])
def test_predicted_ages_to_fairface_bins(age, group):
    assert ev.age_to_group([age], "fairface")[0] == group


def test_every_fairface_bin_is_reachable():
    assert set(ev.age_to_group(np.arange(117), "fairface")) == set(FAIRFACE_BINS)


def test_decades_round_predictions_to_whole_years():
    assert list(ev.age_to_group([19.4, 19.6, 104, np.nan], "decade")) == ["10-19", "20-29", "100+", "0-9"]


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
    report = ev.evaluate_frame(ev.predictions_frame(table, outputs))
    assert report["age_within_1std"] == 0.5
    assert report["age_within_2std"] == 0.5


def test_summary_metrics_keeps_its_api():
    rows = [{"age": 20, "gender": 0, "race": 0}, {"age": 70, "gender": 1, "race": 4}]
    table = make_table(rows)
    summary = ev.summary_metrics(table, outputs_for([25, 70], [0.1, 0.8], [0, 1]))
    assert set(summary) == {"n", "age_mae", "age_rmse", "gender_accuracy", "race_accuracy", "by_group"}
    assert summary["age_mae"] == pytest.approx(2.5) and summary["race_accuracy"] == 0.5
    assert set(summary["by_group"]) == {"race", "gender", "age_decade"}
    assert summary["by_group"]["age_decade"]["70-79"] == {
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
    assert list(report["by_group"]["age_decade"]) == ["(25, 32)", "(60, 100)"]
    assert report["confusion"]["age_group"]["labels"] == list(ev.ADIENCE_LABELS)


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


def test_report_is_strict_json_even_with_nan_outputs():
    frame = frame_for([{"age": 20, "gender": 0, "race": 0}], ages=[np.nan], female_probs=[0.2], races=[0])
    text = ev.to_json(ev.evaluate_frame(frame))
    parsed = json.loads(text)
    assert "\n" not in text and parsed["age_mae"] is None and parsed["gender_accuracy"] == 1.0


# ------------------------------------------------------------------------------------ tables and rows

def test_worst_errors_put_the_biggest_mistakes_first():
    rows = [{"age": 80, "gender": 0, "race": 0}, {"age": 5, "gender": 0, "race": 1},
            {"age": 30, "gender": 1, "race": 2}]
    frame = frame_for(rows, ages=[78, 70, 31], female_probs=[0.6, 0.99, 0.8], races=[0, 3, 2])
    worst = ev.worst_errors(frame, k=2)
    assert worst["age"]["path"].tolist() == ["/faces/1.jpg", "/faces/0.jpg"]
    assert worst["age"]["caption"].iloc[0] == "true 5 · predicted 70"
    assert worst["gender"]["path"].tolist() == ["/faces/1.jpg", "/faces/0.jpg"]  # 99% wrong before 60% wrong
    assert worst["race"]["caption"].tolist() == ["true Black · predicted Indian 80%"]


def test_worst_errors_without_labels_are_empty():
    frame = frame_for([{"age": None, "age_group": "(0, 2)", "gender": None}], ages=[1], female_probs=[0.5],
                      races=[0], source="adience")
    assert all(rows.empty for rows in ev.worst_errors(frame).values())


def test_tables_for_pages_and_csv():
    frame = frame_for([{"age": 20, "gender": 0, "race": 0}, {"age": 40, "gender": 1, "race": 1}],
                      ages=[21, 44], female_probs=[0.2, 0.7], races=[0, 1])
    reports = {"a": ev.evaluate_frame(frame, min_group=1), "b": ev.evaluate_frame(frame, min_group=1)}
    comparison = ev.comparison_table(reports)
    assert comparison["model"].tolist() == ["a", "b"] and comparison["age_mae"].tolist() == [2.5, 2.5]
    groups = ev.group_table(reports["a"], "gender")
    assert groups["group"].tolist() == ["male", "female"] and groups["n"].tolist() == [1, 1]
    long = ev.metrics_long(reports)
    assert set(long["model"]) == {"a", "b"}
    value = long.query("model == 'a' and dimension == 'race' and group == 'Black' and metric == 'age_mae'")["value"]
    assert value.tolist() == [4.0]
    gaps = ev.gaps_table(reports, "race")
    assert set(gaps.query("metric == 'age_mae'")["worst"]) == {"Black"}
    text = ev.format_report(reports["a"])
    assert "2 images" in text and "by race" in text and "MAE 2.50" in text


# --------------------------------------------------------------------------------- splits and rows

def test_select_split_by_path_then_by_name(tmp_path):
    table = make_table([{"age": a, "gender": 0, "race": 0} for a in (10, 20, 30)])
    split_file = tmp_path / "split.csv"
    pd.DataFrame({"path": table["path"], "split": ["train", "test", "test"]}).to_csv(split_file, index=False)
    assert ev.select_split(table, split_file)["age"].tolist() == [20, 30]
    assert ev.select_split(table, split_file, "train")["age"].tolist() == [10]
    moved = pd.DataFrame({"path": ["/old/place/1.jpg", "/old/place/2.jpg"], "split": ["test", "val"]})
    moved.to_csv(split_file, index=False)
    assert ev.select_split(table, split_file)["age"].tolist() == [20]


def test_select_split_errors_say_why(tmp_path):
    table = make_table([{"age": 10, "gender": 0, "race": 0}])
    with pytest.raises(ev.EvaluationError, match="Cannot read split file"):
        ev.select_split(table, tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ev.EvaluationError, match="columns path and split"):
        ev.select_split(table, tmp_path / "bad.csv")
    (tmp_path / "split.csv").write_text("path,split\n/elsewhere/9.jpg,test\n/faces/0.jpg,train\n")
    with pytest.raises(ev.EvaluationError, match="None of the 1 'test' images"):
        ev.select_split(table, tmp_path / "split.csv")
    with pytest.raises(ev.EvaluationError, match="no 'val' rows"):
        ev.select_split(table, tmp_path / "split.csv", "val")


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

    def __init__(self):
        self.batches = []

    def raw_outputs(self, crops):
        self.batches.append(len(crops))
        age = crops.reshape(len(crops), -1).mean(axis=1, keepdims=True) / 2
        return {"age": age, "age_flip": age + 2, "gender": np.full((len(crops), 1), 0.7),
                "race": np.tile([0.1, 0.6, 0.1, 0.1, 0.1], (len(crops), 1))}


def test_predict_frame_batches_reports_progress_and_uses_flip_spread(tmp_path):
    from PIL import Image
    rows = []
    for i, level in enumerate((20, 40, 60)):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (20, 20), (level, level, level)).save(path)
        rows.append({"age": 10.0 * (i + 1), "gender": 1, "race": 1})
    table = make_table(rows).assign(path=[str(tmp_path / f"{i}.png") for i in range(3)])
    predictor, progress = FakePredictor(), []
    frame = ev.predict_frame(predictor, table, on_progress=lambda done, total: progress.append((done, total)),
                             batch_size=2)
    assert predictor.batches == [2, 1] and progress == [(2, 3), (3, 3)]
    assert frame["pred_age"].tolist() == pytest.approx([10, 20, 30])
    assert frame["pred_age_std"].tolist() == pytest.approx([2, 2, 2])
    assert frame["pred_race"].tolist() == [1, 1, 1] and frame["pred_gender"].tolist() == [1, 1, 1]


def test_predict_frame_errors_are_clear(tmp_path):
    with pytest.raises(ev.EvaluationError, match="No labelled images"):
        ev.predict_frame(FakePredictor(), make_table([]))
    table = make_table([{"age": 1, "gender": 0, "race": 0}]).assign(path=[str(tmp_path / "gone.jpg")])
    with pytest.raises(ev.EvaluationError, match="Cannot read an image"):
        ev.predict_frame(FakePredictor(), table)
