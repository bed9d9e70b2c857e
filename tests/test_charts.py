"""Explore charts: one trace per label, bars that add up to the rows they were built from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core import charts
from core.datasets import load_dataset
from core.labels import FAIRFACE_BINS, GENDERS, RACES

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "data" / "sample" / "utkface"
FAIRFACE_FIXTURE = Path(__file__).parent / "fixtures" / "fairface"


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return load_dataset("utkface", SAMPLE_DIR).table


@pytest.fixture(scope="module")
def fairface() -> pd.DataFrame:
    return load_dataset("fairface", FAIRFACE_FIXTURE).table


def bar_total(figure) -> int:
    return int(sum(sum(trace.y) for trace in figure.data))


def test_age_histogram_by_gender(sample):
    figure = charts.age_histogram(sample, "gender")
    assert [trace.name for trace in figure.data] == list(GENDERS)
    assert bar_total(figure) == len(sample)
    female = next(trace for trace in figure.data if trace.name == "female")
    assert sum(female.y) == int((sample["gender"] == 1).sum())
    assert list(female.x) == list(range(117))  # one bar per year, 0..116
    assert female.y[30] == int(((sample["age"] == 30) & (sample["gender"] == 1)).sum())
    assert figure.layout.barmode == "stack"


def test_age_histogram_by_race(sample):
    figure = charts.age_histogram(sample, "race")
    assert [trace.name for trace in figure.data] == list(RACES)
    assert bar_total(figure) == len(sample)


def test_age_histogram_falls_back_to_groups_without_years(fairface):
    figure = charts.age_histogram(fairface, "race")
    assert len(figure.data) == 7
    assert list(figure.data[0].x) == list(FAIRFACE_BINS)  # in age order, not text order
    assert bar_total(figure) == len(fairface)


def test_age_histogram_rejects_unknown_colouring(sample):
    with pytest.raises(ValueError, match="color_by"):
        charts.age_histogram(sample, "hair")


def test_gender_and_race_bars(sample, fairface):
    gender = charts.gender_bar(sample)
    assert len(gender.data) == 1 and list(gender.data[0].x) == list(GENDERS)
    assert list(gender.data[0].y) == [int((sample["gender"] == g).sum()) for g in (0, 1)]
    race = charts.race_bar(sample)
    assert list(race.data[0].x) == list(RACES) and bar_total(race) == len(sample)
    fair_race = charts.race_bar(fairface)
    assert set(fair_race.data[0].x) == set(fairface["race_label"]) and bar_total(fair_race) == len(fairface)


def test_gender_bar_counts_unknown(sample):
    table = sample.copy()
    table.loc[table.index[:7], "gender"] = pd.NA
    figure = charts.gender_bar(table)
    assert list(figure.data[0].x) == ["male", "female", "unknown"]
    assert figure.data[0].y[-1] == 7 and bar_total(figure) == len(table)


def test_age_race_heatmap_counts(sample):
    figure = charts.age_race_heatmap(sample)
    heatmap = figure.data[0]
    assert heatmap.type == "heatmap"
    assert list(heatmap.x) == list(RACES)
    assert list(heatmap.y) == sorted(set(sample["age_group"]), key=lambda g: int(g.rstrip("+").split("-")[0]))
    assert int(heatmap.z.sum()) == len(sample)
    row, column = list(heatmap.y).index("20-29"), list(heatmap.x).index("Asian")
    assert heatmap.z[row][column] == int(((sample["age_group"] == "20-29") & (sample["race"] == 2)).sum())


def test_empty_table_gives_empty_charts(sample):
    empty = sample.iloc[:0]
    assert len(charts.age_histogram(empty).data) == 0
    assert bar_total(charts.gender_bar(empty)) == 0
    assert charts.age_race_heatmap(empty).data[0].z.size == 0


def test_training_curves_of_a_group_head_model_show_age_group_accuracy():
    from core.charts import training_curves
    history = [{"epoch": 1, "loss": 2.0, "val_loss": 2.1, "age_group_accuracy": 0.3, "val_age_group_accuracy": 0.25,
                "gender_accuracy": 0.6, "val_gender_accuracy": 0.55}]
    fig = training_curves([], history)
    titles = [a.text for a in fig.layout.annotations]
    assert "Age-group accuracy" in titles and "Age MAE (years)" not in titles
    assert "Race accuracy" not in titles  # an Adience model has no race head: no empty panel for it
    assert [0.25] in [list(t.y) for t in fig.data if t.name == "validation"]
