"""Views of a dataset table for browsing: display names and orders, age-group bounds, filters, pages, captions,
thumbnails, and the labelled sample faces."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from PIL import Image

from core import datasets, labels, settings
from core.browse import (
    age_group_bounds,
    age_group_order,
    filter_table,
    gender_names,
    page_count,
    page_of,
    race_names,
    race_order,
    sample_faces,
    short_labels,
    thumbnail_jpeg,
)
from core.datasets import RACES, load_dataset


@pytest.fixture
def mixed_table() -> pd.DataFrame:
    rows = [
        {"path": "a", "age": 5.0, "age_group": "0-9", "gender": 0, "race": 0, "race_label": "White"},
        {"path": "b", "age": 25.0, "age_group": "20-29", "gender": 1, "race": 2, "race_label": "Asian"},
        {"path": "c", "age": None, "age_group": "(25, 32)", "gender": None, "race": None, "race_label": None},
        {"path": "d", "age": None, "age_group": "more than 70", "gender": 1, "race": 4, "race_label": "Middle Eastern"},
        {"path": "e", "age": 71.0, "age_group": "70-79", "gender": 0, "race": 1, "race_label": "Black"},
    ]
    return datasets._frame(rows, "utkface")


def test_names_for_display(mixed_table):
    assert gender_names(mixed_table).tolist() == ["male", "female", "unknown", "female", "male"]
    assert race_names(mixed_table).tolist() == ["White", "Asian", "unknown", "Middle Eastern", "Black"]
    assert race_order(race_names(mixed_table)) == ["White", "Black", "Asian", "Middle Eastern", "unknown"]
    assert short_labels(mixed_table)[:3] == [
        "5 y · male · White", "25 y · female · Asian", "(25, 32) · unknown · unknown"]


@pytest.mark.parametrize(("label", "bounds"), [
    ("0-9", (0, 9)), ("100+", (100, 116)), ("more than 70", (70, 116)), ("(60, 100)", (60, 100)), ("3-9", (3, 9)),
])
def test_age_group_bounds(label, bounds):
    assert age_group_bounds(label) == bounds


def test_age_group_order_sorts_by_age_not_text():
    assert age_group_order(["100+", "10-19", "0-9", "20-29"]) == ["0-9", "10-19", "20-29", "100+"]
    assert age_group_order(labels.FAIRFACE_BINS[::-1]) == list(labels.FAIRFACE_BINS)
    adience = [f"({lo}, {hi})" for lo, hi in labels.ADIENCE_GROUPS]
    assert age_group_order(adience[::-1]) == adience


def test_filter_table(mixed_table):
    def paths(**filters):
        return filter_table(mixed_table, **filters)["path"].tolist()

    assert paths() == ["a", "b", "c", "d", "e"]
    assert paths(age_range=(20, 30)) == ["b", "c"]  # group (25, 32) overlaps 20–30
    assert paths(age_range=(72, 116)) == ["d"]  # 71 years is out; "more than 70" may be in
    assert paths(genders=["female"]) == ["b", "d"]
    assert paths(genders=["unknown"]) == ["c"]
    assert paths(races=["White", "Black"]) == ["a", "e"]
    assert paths(age_range=(0, 40), genders=["female"], races=["Asian"]) == ["b"]
    assert paths(genders=[], races=[]) == ["a", "b", "c", "d", "e"]  # empty selection = no filter


def test_filters_on_the_sample_agree_with_direct_counts():
    table = load_dataset(None, settings.SAMPLE_DIR).table
    female = filter_table(table, genders=["female"])
    assert len(female) == int((table["gender"] == 1).sum())
    twenties = filter_table(table, age_range=(20, 29))
    assert len(twenties) == int(table["age"].between(20, 29).sum()) > 0


def test_pages():
    table = pd.DataFrame({"n": range(95)})
    assert page_count(95, 40) == 3 and page_count(0, 40) == 1 and page_count(80, 40) == 2
    assert page_of(table, 1, 40)["n"].tolist() == list(range(40))
    assert page_of(table, 3, 40)["n"].tolist() == list(range(80, 95))
    assert page_of(table, 9, 40)["n"].tolist() == list(range(80, 95))  # stale page number: the last page
    assert page_of(table, 0, 40)["n"].tolist() == list(range(40))
    assert page_of(table.iloc[:0], 1, 40).empty


def test_thumbnails_are_small_jpegs(tmp_path):
    big = tmp_path / "big.jpg"
    Image.new("RGB", (400, 400), (120, 90, 60)).save(big)
    with Image.open(io.BytesIO(thumbnail_jpeg(big, 100))) as image:
        assert image.format == "JPEG" and max(image.size) == 100
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with Image.open(io.BytesIO(thumbnail_jpeg(broken, 64))) as image:
        assert image.size == (64, 64)  # a grey stand-in, not an exception
    with Image.open(io.BytesIO(thumbnail_jpeg(tmp_path / "gone.jpg", 64))) as image:
        assert image.size == (64, 64)


def test_sample_faces_are_labelled():
    faces = sample_faces(settings.SAMPLE_DIR)
    assert len(faces) == len(list(settings.SAMPLE_DIR.glob("*.jpg")))
    path, label = next(iter(faces.items()))
    age, race, gender = label.split(" — ")[0].split(" · ")
    assert age.endswith(" y") and race in RACES and gender in ("male", "female")


def test_sorting_by_age_gender_race_or_file_name(mixed_table):
    from core.browse import SORTS, face_details, sort_table

    by_name = sort_table(mixed_table, "file name")
    assert by_name["path"].map(lambda p: p.rsplit("/", 1)[-1]).is_monotonic_increasing
    by_age = sort_table(mixed_table, "age")
    youngest = by_age["age"].fillna(by_age["age_group"].map(lambda g: age_group_bounds(g)[0]))
    assert youngest.tolist() == [5, 25, 25, 70, 71]  # a row with only an age group by its youngest age
    genders = gender_names(sort_table(mixed_table, "gender")).tolist()
    assert genders == sorted(genders, key=["male", "female", "unknown"].index)
    races = race_names(sort_table(mixed_table, "race")).tolist()
    assert races == sorted(races, key=race_order(races).index)
    assert set(SORTS) == {"file name", "age", "gender", "race"} and len(sort_table(mixed_table, "age")) == len(
        mixed_table)
    with pytest.raises(ValueError):
        sort_table(mixed_table, "colour")
    assert "`" in face_details(mixed_table.iloc[0])
