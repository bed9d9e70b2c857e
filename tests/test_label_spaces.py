"""Label spaces: each dataset's heads, a model's space read from its outputs, targets per space and the named
cross-space mappings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.datasets import load_dataset
from core.label_spaces import (
    ADIENCE,
    FAIRFACE,
    MISSING,
    SPACES,
    UTKFACE,
    age_comparison,
    predicted_age_groups,
    predicted_years,
    race_comparison,
    race_probabilities,
    space_of_outputs,
    true_age_groups,
    true_races,
)
from core.labels import AGE_BINS, FAIRFACE_BINS, FAIRFACE_RACES
from core.settings import SAMPLE_DIR

FAIRFACE_FIXTURE = Path(__file__).parent / "fixtures" / "fairface"


def test_each_dataset_has_its_own_heads():
    assert UTKFACE.output_widths() == {"age": 1, "gender": 1, "race": 5}
    assert FAIRFACE.output_widths() == {"age_group": 9, "gender": 1, "race": 7}
    assert ADIENCE.output_widths() == {"age_group": 8, "gender": 1}
    assert FAIRFACE.races == ("White", "Black", "East Asian", "Southeast Asian", "Indian", "Latino_Hispanic",
                              "Middle Eastern")
    assert ADIENCE.age_groups[0] == "(0, 2)" and ADIENCE.age_groups[-1] == "(60, 100)"
    assert "no race" in ADIENCE.describe() and "9 groups" in FAIRFACE.describe()


@pytest.mark.parametrize("space", list(SPACES.values()), ids=list(SPACES))
def test_a_space_is_read_back_from_its_output_shapes(space):
    shapes = {name: (None, width) for name, width in space.output_widths().items()}
    assert space_of_outputs(shapes) is space
    if space.age_in_years:
        assert space_of_outputs({**shapes, "age_dist": (None, 117)}) is space


def test_outputs_of_no_space_are_not_guessed():
    assert space_of_outputs({"age_group": 8, "gender": 1, "race": 5}) is None  # Adience has no race
    assert space_of_outputs({"age_group": 9, "gender": 1, "race": 5}) is None
    assert space_of_outputs({"gender": 1}) is None


def test_fairface_rows_keep_their_seven_races_and_nine_groups():
    table = load_dataset("fairface", FAIRFACE_FIXTURE).table
    races, groups = true_races(table, FAIRFACE), true_age_groups(table, FAIRFACE)
    assert [FAIRFACE_RACES[i] for i in races] == table["race_label"].tolist()
    assert [FAIRFACE_BINS[i] for i in groups] == table["age_group"].tolist()
    assert (true_races(table, UTKFACE) == table["race"].to_numpy()).all()  # race-5, nested by the loader
    assert (true_age_groups(table, ADIENCE) == MISSING).all()  # FairFace's bins are not Adience's groups


def test_utkface_rows_have_no_race_7_even_where_the_names_agree():
    table = load_dataset("utkface", SAMPLE_DIR).table
    assert (true_races(table, FAIRFACE) == MISSING).all()
    groups = true_age_groups(table, FAIRFACE)  # years map onto FairFace's bins
    assert (groups >= 0).all()
    assert FAIRFACE_BINS[groups[table["age"].to_numpy() == table["age"].max()][0]] == "more than 70"


def test_every_cross_space_comparison_names_its_mapping():
    assert age_comparison(UTKFACE, ADIENCE).mapping == "predicted years → Adience age groups"
    assert age_comparison(FAIRFACE, UTKFACE).space is FAIRFACE
    assert "approximate" in age_comparison(FAIRFACE, ADIENCE).mapping
    assert race_comparison(FAIRFACE, UTKFACE).space is UTKFACE
    assert race_comparison(FAIRFACE, UTKFACE).mapping.startswith("predicted race-7 → race-5")
    assert race_comparison(UTKFACE, FAIRFACE).mapping.startswith("true race-7 → race-5")
    assert race_comparison(FAIRFACE, FAIRFACE).space is FAIRFACE
    for model, data in ((ADIENCE, FAIRFACE), (UTKFACE, ADIENCE)):
        comparison = race_comparison(model, data)
        assert comparison.space is None and comparison.mapping.startswith("no race figure")


def test_race_7_probabilities_sum_into_the_race_5_they_nest_in():
    probs = np.array([[0.1, 0.1, 0.2, 0.3, 0.1, 0.15, 0.05]])
    np.testing.assert_allclose(race_probabilities({"race": probs}, FAIRFACE, UTKFACE), [[0.1, 0.1, 0.5, 0.1, 0.2]])
    with pytest.raises(ValueError):
        race_probabilities({"race": np.ones((1, 5)) / 5}, UTKFACE, FAIRFACE)


def test_predicted_groups_in_each_target_space():
    years = {"age": np.array([[1.0], [34.6], [80.0]])}
    assert [ADIENCE.age_groups[i] for i in predicted_age_groups(years, UTKFACE, ADIENCE)] == [
        "(0, 2)", "(25, 32)", "(60, 100)"]
    own = {"age_group": np.eye(9)[[0, 8]]}
    assert predicted_age_groups(own, FAIRFACE, FAIRFACE).tolist() == [0, 8]
    # FairFace's "30-39" is 34.5 years in the middle, which Adience's widened groups put in (25, 32)
    assert predicted_age_groups({"age_group": np.eye(9)[[4]]}, FAIRFACE, ADIENCE).tolist() == [4]


def test_a_distribution_heads_years_are_its_median_not_its_mean():
    """Age MAE is scored, and the median minimises the expected absolute error: a face the model splits 60/40
    between 20 and 60 reads about 20 (the mean would say 36, an age it gives almost no weight)."""
    split = np.zeros(AGE_BINS)
    split[20], split[60] = 0.6, 0.4
    bell = np.exp(-0.5 * ((np.arange(AGE_BINS) - 30) / 3.0) ** 2)
    outputs = {"age": np.array([[36.0], [30.0]]), "age_dist": np.stack([split, bell / bell.sum()])}
    years = predicted_years(outputs)
    assert abs(years[0] - (20 - 0.5 + 0.5 / 0.6)) < 1e-9
    assert abs(years[1] - 30.0) < 1e-6  # symmetric: median and mean agree


def test_a_regression_heads_years_are_its_output():
    assert predicted_years({"age": np.array([[41.5], [7.0]])}).tolist() == [41.5, 7.0]
