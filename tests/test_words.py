"""Issue 20, item 8: plain words on every page. Each page is opened like a visitor does (AppTest through the router,
Predict and Evaluate with results on screen) and everything it shows is read: text, labels, options, tables.
No raw metric key (`age_cs5`, `small`), no jargon ("Rows", "group overlaps"), no empty (None) table cell, one
name for the dataset-kind choice, and a one-line description per architecture."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest

from core import settings
from core.metrics import HEADLINE
from pages import evaluate as evaluate_page
from pages import explore as explore_page
from pages import predict_views
from pages import train as train_page
from tests.photos import encode, face_images, side_by_side
from tests.support import open_app_page, write_run

RAW_NAMES = {*(name for name in HEADLINE if "_" in name), "age_bias", "age_within_2std", "gender_precision",
             "gender_recall", "age_group"}
TABLE_RAW = RAW_NAMES | {"n", "small", "age_std", "gender_prob"}  # column keys a table must not show as they are
JARGON = ("small = True", "group overlaps", "Rows")
KIND_KEYS = {"pages/explore.py": explore_page.KEY_KIND, "pages/train.py": train_page.KEY_KIND,
             "pages/evaluate.py": evaluate_page.KEY_KIND}


@pytest.fixture
def model_run(tmp_path, monkeypatch, tiny_residual_model):
    write_run(tmp_path / "runs", model=tiny_residual_model, with_tflite=True)
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "models")
    monkeypatch.delenv("FACE_DATA_DIR", raising=False)


def _widget_words(widget) -> list[str]:
    words = [str(getattr(widget, "label", "") or "")]
    for option in getattr(widget, "options", None) or []:
        words.append(str(getattr(option, "content", option)))
    return words


def shown(at) -> tuple[list[str], list[pd.DataFrame]]:
    """Every piece of text the page shows (elements, widget labels and options), and its tables."""
    texts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success"):
        texts += [str(element.value) for element in getattr(at, kind)]
    texts += [f"{m.label} {m.value}" for m in at.metric]
    for kind in ("selectbox", "multiselect", "radio", "slider", "select_slider", "toggle", "checkbox",
                 "text_input", "number_input", "button", "button_group"):
        for widget in getattr(at, kind):
            texts += _widget_words(widget)
    texts += [tab.label for tab in at.tabs] + [expander.label for expander in at.expander]
    return texts, [frame.value for frame in at.dataframe]


def assert_plain(at, page: str) -> None:
    texts, tables = shown(at)
    raw = re.compile(r"\b(" + "|".join(sorted(RAW_NAMES, key=len, reverse=True)) + r")\b")
    for text in texts:
        assert not raw.search(text), f"{page}: raw name in {text!r}"
        for word in JARGON:
            assert not re.search(rf"\b{re.escape(word)}\b", text), f"{page}: {word!r} in {text!r}"
    raw_column = re.compile("|".join(sorted(TABLE_RAW, key=len, reverse=True)))
    for table in tables:
        for column in table.columns:
            assert not raw_column.fullmatch(str(column)), f"{page}: raw column {column!r}"
        cells = table.astype("object")
        assert not cells.isna().to_numpy().any(), f"{page}: empty cells in\n{table}"
        for value in cells.to_numpy().ravel():
            assert not (isinstance(value, str) and raw.fullmatch(value)), f"{page}: raw name {value!r} in a table"


@pytest.mark.parametrize("page", ["pages/home.py", "pages/explore.py", "pages/train.py", "pages/saliency.py"])
def test_pages_use_plain_words(model_run, page):
    assert_plain(open_app_page(page), page)


def test_predict_results_use_plain_words(model_run, shared_dir):
    at = open_app_page("pages/predict.py")
    pair = encode(side_by_side(face_images(shared_dir / "data" / "utkface")[:2])[0], "PNG")
    at.file_uploader(key=predict_views.KEY_FILES).set_value([("pair.png", pair, "image/png"),
                                                              ("notes.jpg", b"eggs", "image/jpeg")]).run()
    assert "years" in "\n".join(m.value for m in at.markdown)
    assert_plain(at, "Predict")


def test_evaluate_results_use_plain_words(model_run, tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for path in sorted(settings.SAMPLE_DIR.glob("*.jpg"))[::12]:
        shutil.copy(path, folder / path.name)
    at = open_app_page("pages/evaluate.py")
    at.text_input(key=evaluate_page.KEY_FOLDER).set_value(str(folder)).run()
    at.button(key=evaluate_page.KEY_RUN).click().run()
    assert not at.exception and len(at.dataframe) >= 2  # comparison and groups (25 faces: no gap table)
    assert_plain(at, "Evaluate")
    for dimension in at.radio(key=evaluate_page.KEY_DIMENSION).options:
        at.radio(key=evaluate_page.KEY_DIMENSION).set_value(dimension).run()
        assert_plain(at, f"Evaluate ({dimension})")


def test_the_dataset_kind_has_one_name_on_every_page(model_run):
    boxes = {page: open_app_page(page).selectbox(key=key) for page, key in KIND_KEYS.items()}
    assert len({box.label for box in boxes.values()}) == 1, {page: box.label for page, box in boxes.items()}
    automatic = {page: box.options[0] for page, box in boxes.items() if len(box.options) > 3}
    assert len(set(automatic.values())) == 1, automatic


def test_every_architecture_has_a_one_line_description_on_the_train_page(model_run):
    from core.model_config import ARCHITECTURE_NOTES, ARCHITECTURES

    assert set(ARCHITECTURE_NOTES) == set(ARCHITECTURES)
    assert all(0 < len(note) <= 90 and "\n" not in note for note in ARCHITECTURE_NOTES.values())
    texts, _ = shown(open_app_page("pages/train.py"))
    for note in ARCHITECTURE_NOTES.values():
        assert any(note in text for text in texts), note
