"""The label vocabularies and age groupings: Adience's age cells, and predicted ages mapped onto each dataset's own
groups for cross-dataset scoring."""

from __future__ import annotations

import numpy as np
import pytest

from core.labels import ADIENCE_GROUPS, ADIENCE_LABELS, AGE_SCHEMES, DECADES, FAIRFACE_BINS, adience_group, age_to_group

# ------------------------------------------------------------------------------------------- Adience cells

@pytest.mark.parametrize(("cell", "expected"), [
    ("(25, 32)", ("(25, 32)", None)),
    ("(60, 100)", ("(60, 100)", None)),
    ("13", ("(8, 12)", 13.0)),
    ("35", ("(25, 32)", 35.0)),  # halfway between groups: the younger one
    ("3", ("(0, 2)", 3.0)),
    ("22", ("(15, 20)", 22.0)),
    ("45", ("(38, 43)", 45.0)),
    ("55", ("(48, 53)", 55.0)),
    ("(38, 42)", ("(38, 43)", None)),
    ("(27, 32)", ("(25, 32)", None)),
])
def test_adience_age_cells_map_to_one_group(cell, expected):
    assert adience_group(cell) == expected


def test_adience_age_cells_that_fit_no_group_say_why():
    for cells, reason in ((("(38, 48)", "(8, 23)"), "spans more than one group"),
                          (("None", ""), "not a group or a number")):
        for cell in cells:
            assert reason in adience_group(cell), cell


# ------------------------------------------------------------------------------------ predicted age → group

@pytest.mark.parametrize(("age", "group"), [
    (0, "(0, 2)"), (3, "(0, 2)"), (3.4, "(0, 2)"), (3.6, "(4, 6)"), (13.4, "(8, 12)"), (13.6, "(15, 20)"),
    (35, "(25, 32)"), (35.6, "(38, 43)"), (57, "(60, 100)"), (116, "(60, 100)"), (-4, "(0, 2)"),
])
def test_predicted_ages_to_adience_groups(age, group):
    assert age_to_group([age], "adience")[0] == group


def test_adience_mapping_uses_the_dataset_loaders_bounds_for_every_year():
    for year in range(117):
        assert age_to_group([year], "adience")[0] == adience_group(str(year))[0]
    assert tuple(f"({a}, {b})" for a, b in ADIENCE_GROUPS) == ADIENCE_LABELS


@pytest.mark.parametrize(("age", "group"), [
    (0, "0-2"), (2.4, "0-2"), (2.6, "3-9"), (9, "3-9"), (10, "10-19"), (45, "40-49"), (69.4, "60-69"),
    (69.6, "more than 70"), (70, "more than 70"), (99, "more than 70"),
])
def test_predicted_ages_to_fairface_bins(age, group):
    assert age_to_group([age], "fairface")[0] == group


def test_every_fairface_bin_is_reachable():
    assert set(age_to_group(np.arange(117), "fairface")) == set(FAIRFACE_BINS)


def test_decades_round_predictions_to_whole_years():
    assert list(age_to_group([19.4, 19.6, 104, np.nan], "decade")) == ["10-19", "20-29", "100+", "0-9"]


def test_every_scheme_lists_each_group_it_maps_to_in_age_order():
    for labels, by_year in AGE_SCHEMES.values():
        assert set(by_year) <= set(labels)
        first_year = [by_year.index(label) for label in labels if label in by_year]
        assert first_year == sorted(first_year)
    assert AGE_SCHEMES["decade"][0] == DECADES
