"""Metric functions against hand-computed cases, and the one headline list every shorter list selects from."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core import metrics

# ----------------------------------------------------------------------------------------- age metrics

def test_mae_and_rmse_by_hand():
    assert metrics.mae([10, 20, 30], [12, 18, 30]) == pytest.approx(4 / 3)
    assert metrics.rmse([10, 20, 30], [12, 18, 30]) == pytest.approx(math.sqrt(8 / 3))


def test_metrics_of_nothing_are_none_not_nan():
    assert metrics.mae([], []) is None
    assert metrics.rmse([], []) is None
    assert metrics.accuracy([], []) is None
    assert metrics.one_off_accuracy([], []) is None
    assert metrics.cumulative_scores([], [])["5"] is None
    assert metrics.within_std([], [], []) is None


def test_cumulative_score_counts_errors_up_to_theta():
    true = [20, 20, 20, 20, 20]
    pred = [20, 21, 18, 25, 31]  # errors 0, 1, 2, 5, 11
    cs = metrics.cumulative_scores(true, pred)
    assert list(cs) == [str(t) for t in range(1, 11)]
    assert (cs["1"], cs["2"], cs["4"], cs["5"], cs["10"]) == (0.4, 0.6, 0.6, 0.8, 0.8)


def test_within_std_ignores_rows_without_a_spread():
    assert metrics.within_std([10, 10, 10], [11, 13, 10], [2, 2, np.nan]) == 0.5
    assert metrics.within_std([10, 10], [11, 40], [1, 10], k=2) == 0.5
    assert metrics.within_std([10], [11], [np.nan]) is None  # regression head without a spread: undefined


def test_one_off_counts_neighbouring_groups():
    assert metrics.one_off_accuracy([0, 1, 2, 7], [1, 1, 4, 6]) == 0.75


# ---------------------------------------------------------------------------------- classification


def test_roc_auc_by_hand_with_ties_and_one_class():
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts half
    assert metrics.roc_auc([1, 1, 1], [0.2, 0.9, 0.5]) is None  # undefined with one class: None, no crash
    assert metrics.roc_auc([], []) is None


def test_binary_scores_by_hand():
    scores = metrics.binary_scores([1, 1, 0, 0, 1], [0.9, 0.4, 0.6, 0.1, 0.7])  # TP 2, FP 1, FN 1, TN 1
    assert scores["accuracy"] == pytest.approx(3 / 5)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["auc"] == pytest.approx(5 / 6)


def test_binary_scores_with_a_single_class():
    only_male = metrics.binary_scores([0, 0], [0.1, 0.2])
    assert only_male == {"accuracy": 1.0, "precision": None, "recall": None, "f1": None, "auc": None}
    missed = metrics.binary_scores([1, 1], [0.1, 0.2])  # no predicted positive, but F1 is defined: 0
    assert (missed["precision"], missed["recall"], missed["f1"], missed["auc"]) == (None, 0.0, 0.0, None)


def test_confusion_matrix_and_macro_f1_by_hand():
    matrix = metrics.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], 4)
    assert matrix.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert metrics.f1_per_class(matrix) == pytest.approx([2 / 3, 2 / 3, 1.0, None])
    # class 3 never occurs: left out of the mean rather than counted as 0
    assert metrics.macro_f1(matrix) == pytest.approx(7 / 9)
    assert metrics.macro_f1(np.zeros((5, 5), int)) is None


def test_reliability_and_ece_by_hand():
    rows = metrics.reliability([0.55, 0.58, 0.95, 0.92], [1, 0, 1, 1])
    assert [(r["lower"], r["count"]) for r in rows] == [(0.5, 2), (0.9, 2)]
    assert rows[0]["confidence"] == pytest.approx(0.565) and rows[0]["accuracy"] == 0.5
    assert rows[1]["confidence"] == pytest.approx(0.935) and rows[1]["accuracy"] == 1.0
    assert metrics.expected_calibration_error([0.55, 0.58, 0.95, 0.92], [1, 0, 1, 1]) == pytest.approx(0.065)
    assert metrics.reliability([1.0], [1])[0]["lower"] == 0.9  # confidence 1 belongs to the last bin
    assert metrics.expected_calibration_error([], []) is None


# ------------------------------------------------------------------------------------------- headline

def test_headline_selections_keep_the_one_lists_order_and_reject_typos():
    assert metrics.headline("race_accuracy", "n", "age_mae") == ("n", "age_mae", "race_accuracy")
    assert metrics.PER_TASK == ("age_mae", "gender_accuracy", "race_accuracy")
    assert set(metrics.RUN_METRICS) <= set(metrics.HEADLINE)
    with pytest.raises(KeyError, match="age_mea"):
        metrics.headline("age_mea")


def test_every_compared_metric_has_a_direction():
    compared = set(metrics.HEADLINE) - {"n", "age_within_1std"}  # a size, and a check of the spread: no "better"
    assert compared <= set(metrics.HIGHER_IS_BETTER) | set(metrics.LOWER_IS_BETTER)
    assert not set(metrics.HIGHER_IS_BETTER) & set(metrics.LOWER_IS_BETTER)


def test_group_scores_count_exact_and_neighbouring_groups_and_skip_unknown_truth():
    from core.metrics import group_scores
    scores = group_scores([0, 3, 5, 7, -1], [0, 4, 3, 7, 2])
    assert scores == {"accuracy": 0.5, "one_off": 0.75}
    assert group_scores([-1], [0]) == {"accuracy": None, "one_off": None}
