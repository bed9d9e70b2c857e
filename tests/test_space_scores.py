"""Scoring in label spaces: group accuracy exact and one-off, race-7 nested into race-5, no race figure where a side
has none, each with the mapping's name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.datasets import load_dataset
from core.label_spaces import ADIENCE, FAIRFACE, UTKFACE, race_comparison
from core.space_scores import data_space, space_summary

FAIRFACE_FIXTURE = Path(__file__).parent / "fixtures" / "fairface"
ADIENCE_FIXTURE = Path(__file__).parent / "fixtures" / "adience"


def _fairface():
    return load_dataset("fairface", FAIRFACE_FIXTURE).table


def _perfect_fairface_outputs(table):
    groups = np.eye(9)[[FAIRFACE.age_groups.index(g) for g in table["age_group"]]]
    races = np.eye(7)[[FAIRFACE.races.index(r) for r in table["race_label"]]]
    return {"age_group": groups, "gender": table["gender"].to_numpy(dtype=float)[:, None], "race": races}


def test_a_perfect_fairface_model_scores_perfectly_in_its_own_space():
    table = _fairface()
    scores = space_summary(table, _perfect_fairface_outputs(table), FAIRFACE)
    assert data_space(table) is FAIRFACE
    assert scores["age_group_accuracy"] == scores["age_group_one_off"] == 1.0
    assert scores["gender_accuracy"] == scores["race_accuracy"] == 1.0
    assert scores["mappings"] == {"age": "FairFace age groups (its own)", "race": "FairFace races (its own)"}


def test_one_group_off_counts_for_one_off_accuracy_only():
    table = _fairface()
    outputs = _perfect_fairface_outputs(table)
    outputs["age_group"] = np.roll(outputs["age_group"], 1, axis=1)  # every face one group older (70+ wraps)
    scores = space_summary(table, outputs, FAIRFACE)
    assert scores["age_group_accuracy"] == 0.0
    wrapped = (table["age_group"] == "more than 70").mean()
    assert abs(scores["age_group_one_off"] - (1 - wrapped)) < 1e-9


def test_a_fairface_model_on_utkface_is_compared_in_race_5_and_its_own_groups():
    table = load_dataset("utkface", Path(__file__).parents[1] / "data" / "sample" / "utkface").table
    n = len(table)
    outputs = {"age_group": np.tile(np.eye(9)[3], (n, 1)), "gender": np.zeros((n, 1)),
               "race": np.tile(np.eye(7)[3], (n, 1))}  # everyone Southeast Asian, 20-29, male
    scores = space_summary(table, outputs, FAIRFACE)
    assert scores["mappings"]["race"].startswith("predicted race-7 → race-5")
    assert abs(scores["race_accuracy"] - (table["race"] == 2).mean()) < 1e-9  # Southeast Asian nests in Asian
    assert scores["mappings"]["age"] == "true years → FairFace age groups"


def test_adience_has_no_race_figure():
    table = load_dataset("adience", ADIENCE_FIXTURE).table
    outputs = {"age": np.full((len(table), 1), 30.0), "gender": np.ones((len(table), 1)),
               "race": np.full((len(table), 5), 0.2)}
    scores = space_summary(table, outputs, UTKFACE)
    assert "race_accuracy" not in scores and scores["mappings"]["race"].startswith("no race figure")
    assert scores["mappings"]["age"] == "predicted years → Adience age groups"
    truth = (table["age_group"] == "(25, 32)").mean()
    assert abs(scores["age_group_accuracy"] - truth) < 1e-9
    assert space_summary(table, {"age_group": np.eye(8)[[0] * len(table)], "gender": np.ones((len(table), 1))},
                         ADIENCE)["mappings"]["age"] == "Adience age groups (its own)"


# ------------------------------------------------------------- the Evaluate report of a group-head model

def test_a_fairface_models_report_has_its_confusion_matrices_in_its_own_space():
    from core.evaluation import evaluate_frame, join_predictions
    table = _fairface()
    report = evaluate_frame(join_predictions(table, _perfect_fairface_outputs(table)), min_group=1)
    for task, labels in (("race", FAIRFACE.races), ("age_group", FAIRFACE.age_groups)):
        matrix = np.array(report["confusion"][task]["matrix"])
        assert report["confusion"][task]["labels"] == list(labels)
        assert matrix.sum() == len(table) and (matrix == np.diag(np.diag(matrix))).all()
    assert report["age_group_accuracy"] == report["race_accuracy"] == report["gender_accuracy"] == 1.0
    assert set(report["by_group"]["race"]) == set(table["race_label"])  # per-group fairness in its 7 races


def test_an_adience_model_on_utkface_reports_no_race_figure_without_failing():
    from core.evaluation import evaluate_frame, join_predictions
    table = load_dataset("utkface", Path(__file__).parents[1] / "data" / "sample" / "utkface").table
    n = len(table)
    outputs = {"age_group": np.tile(np.eye(8)[4], (n, 1)), "gender": np.full((n, 1), 0.3)}
    report = evaluate_frame(join_predictions(table, outputs))
    assert report["race_accuracy"] is None and "race" not in report["confusion"] and "race" not in report[
        "reliability"]
    assert report["age_mae"] is not None  # its groups' middle, (25, 32) → 28.5 years, against true years
    assert abs(report["age_mae"] - np.abs(table["age"].to_numpy(dtype=float) - 28.5).mean()) < 1e-6


def test_every_report_names_the_mappings_it_used():
    from core.evaluation import evaluate_frame, join_predictions
    table = _fairface()
    report = evaluate_frame(join_predictions(table, _perfect_fairface_outputs(table)))
    assert report["label_space"] == "fairface" and report["mappings"]["race"] == "FairFace races (its own)"
    n = len(table)
    years = {"age": np.full((n, 1), 30.0), "gender": np.zeros((n, 1)), "race": np.full((n, 5), 0.2)}
    report = evaluate_frame(join_predictions(table, years))
    assert report["label_space"] == "utkface"
    assert report["mappings"] == {"age": "predicted years → FairFace age groups",
                                  "race": race_comparison(UTKFACE, FAIRFACE).mapping}
