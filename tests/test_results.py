"""What the Predict page keeps and hands out (core/results.py): memory by content, the summary table, downloads."""

from __future__ import annotations

import io
import json
from collections import OrderedDict

import numpy as np
import pandas as pd
from PIL import Image

from core import results
from core.faces import Face
from core.labels import RACES
from core.predict import Analysis, FacePrediction, FaceResult
from tests.photos import encode

PREDICTION = FacePrediction(34.4, 2.6, 0.9, {race: 0.8 if race == "Black" else 0.05 for race in RACES})


def _analysis(size=(800, 600)) -> tuple[bytes, Analysis]:
    photo = Image.new("RGB", size, (90, 120, 150))
    face = FaceResult(1, Face((100, 80, 200, 200), 0.93), np.zeros((32, 32, 3), np.uint8), PREDICTION)
    return encode(photo), Analysis(photo, size, [face], False)


def test_a_photo_is_known_by_its_bytes_and_options():
    data, _ = _analysis()
    assert results.photo_key(data, "model", 1) == results.photo_key(bytes(data), "model", 1)
    assert results.photo_key(data, "model", 1) != results.photo_key(data, "model", 2)
    assert results.photo_key(data + b"\0", "model", 1) != results.photo_key(data, "model", 1)


def test_remembered_analyses_keep_a_preview_and_come_back_at_display_size():
    data, analysis = _analysis((2400, 1800))
    store = OrderedDict()
    results.remember(store, "k", analysis)
    assert max(store["k"].image.size) == results.SESSION_PREVIEW_SIDE  # what the session holds
    back = results.recall(store, "k", data)
    assert back.faces == analysis.faces and back.full_size == (2400, 1800)
    assert max(back.image.size) >= 800 and back.scale == 2400 / back.image.width
    assert results.recall(store, "unknown", data) is None


def test_the_oldest_analyses_are_forgotten(monkeypatch):
    monkeypatch.setattr(results, "MAX_REMEMBERED", 2)
    _, analysis = _analysis()
    store = OrderedDict()
    for key in "abc":
        results.remember(store, key, analysis)
    assert list(store) == ["b", "c"]


def test_summary_csv_json_and_png():
    data, analysis = _analysis()
    table = results.summary_table([("a.jpg", analysis, ""), ("notes.jpg", None, "This file is not an image")])
    assert table["faces"].tolist() == [1, 0] and table["ages"].tolist() == ["34", "—"]
    assert not table.isna().to_numpy().any() and "not an image" in table["note"][1]
    rows = pd.read_csv(io.BytesIO(results.results_csv([("a.jpg", analysis)])))
    assert rows.loc[0, "race"] == "Black" and rows.loc[0, "box width"] == 200
    (record,) = json.loads(results.results_json([("a.jpg", analysis)]))
    assert record["image"] == "a.jpg" and record["faces"][0]["box"] == [100, 80, 200, 200]
    png = Image.open(io.BytesIO(results.annotated_png(analysis)))
    assert png.format == "PNG" and png.size == (800, 600)


def test_an_adience_models_faces_download_and_summarise_without_a_race():
    """A group-head model with no race head (Adience's): its age group in the CSV and the table, race cells empty
    (face_rows raised KeyError and the summary TypeError on the missing race)."""
    photo = Image.new("RGB", (400, 300))
    prediction = FacePrediction(28.5, 6.0, 0.3, {}, {"(25, 32)": 0.6, "(38, 43)": 0.4})
    face = FaceResult(1, Face((10, 10, 100, 100), 0.9), np.zeros((8, 8, 3), np.uint8), prediction)
    analysis = Analysis(photo, photo.size, [face], False)
    rows = pd.read_csv(io.BytesIO(results.results_csv([("group.jpg", analysis)])))
    assert rows.loc[0, "age group"] == "(25, 32)" and rows.loc[0, "age group probability"] == 0.6
    assert pd.isna(rows.loc[0, "race"]) and pd.isna(rows.loc[0, "race probability"])
    summary = results.summary_table([("group.jpg", analysis, "")])
    assert summary.loc[0, "ages"] == "(25, 32)" and summary.loc[0, "races"] == "—"
