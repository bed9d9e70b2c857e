"""The Saliency page driven like a user (AppTest), with a tiny model saved as a finished run. The maps come from the
saliency worker process (core/workers.py); the page cuts faces with its LiteRT predictor."""

from __future__ import annotations

import io

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import settings
from pages import common
from pages import saliency as saliency_page
from tests.support import open_app_page, write_run

RUN = "20250101-000000-multitask_cnn"
TIMEOUT = 600  # seconds: the model's first TFLite export and the worker's TensorFlow start, on a busy 2-core machine


@pytest.fixture
def run(tmp_path, monkeypatch, tiny_models):
    """One finished fake run (multitask_cnn: each head has its own branch) and no shipped model."""
    folder = write_run(tmp_path / "runs", RUN, tiny_models["multitask_cnn"],
                       config={"dataset": "utkface", "data_dir": ""}, metrics={"status": "finished"})
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "models")
    st.cache_resource.clear()
    return folder


def open_page() -> AppTest:
    return open_app_page("pages/saliency.py", TIMEOUT)


def explain(at: AppTest, heads: list[str], methods: list[str]) -> AppTest:
    at.multiselect(key=saliency_page.KEY_HEADS).set_value(heads)
    at.multiselect(key=saliency_page.KEY_METHODS).set_value(methods)
    at.run()
    at.button(key=saliency_page.KEY_RUN).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def test_sample_face_explained_by_two_heads_and_methods(run):
    at = explain(open_page(), ["gender", "race"], ["saliency", "gradcam"])
    assert len(at.image) == 2  # the chosen face, then the figure
    result = at.session_state[saliency_page.KEY_RESULT]
    assert [(m.head, m.method) for m in result["maps"]] == [
        ("gender", "saliency"), ("gender", "gradcam"), ("race", "saliency"), ("race", "gradcam")]
    assert all(m.heatmap.shape == (32, 32) for m in result["maps"])
    assert {m.layer for m in result["maps"] if m.method == "gradcam"} == {"gender_branch1_relu", "race_branch1_relu"}
    table = at.dataframe[0].value
    assert list(table["method"]) == ["Saliency", "Grad-CAM"] * 2 and (table["seconds"] > 0).all()
    assert at.image[1].proto.imgs[0].caption.startswith("Prediction: ")
    assert len(at.download_button) == 1


def test_opacity_redraws_without_recomputing(run):
    at = explain(open_page(), ["age"], ["gradcam"])
    maps, before = at.session_state[saliency_page.KEY_RESULT]["maps"], at.image[1].proto.imgs[0].url
    at.slider(key=saliency_page.KEY_ALPHA).set_value(0.9).run()
    assert not at.exception and len(at.image) == 2
    assert at.image[1].proto.imgs[0].url != before  # a new figure…
    assert at.session_state[saliency_page.KEY_RESULT]["maps"][0].seconds == maps[0].seconds  # the same, stored map


def test_changing_a_choice_asks_to_explain_again(run):
    at = explain(open_page(), ["age"], ["saliency"])
    at.multiselect(key=saliency_page.KEY_METHODS).set_value(["saliency", "scorecam"]).run()
    assert len(at.image) == 1 and any("Press **Explain**" in i.value for i in at.info)


def test_race_class_and_layer_can_be_chosen(run):
    at = open_page()
    at.multiselect(key=saliency_page.KEY_HEADS).set_value(["race"]).run()
    assert "trunk3_relu" in at.selectbox(key=saliency_page.KEY_LAYER).options
    at.selectbox(key=saliency_page.KEY_RACE).set_value("Black")
    at.selectbox(key=saliency_page.KEY_LAYER).set_value("trunk2_relu")
    at = explain(at, ["race"], ["gradcam++", "scorecam"])
    maps = at.session_state[saliency_page.KEY_RESULT]["maps"]
    assert all(m.target.startswith("Black") and m.layer == "trunk2_relu" for m in maps)


def test_an_uploaded_photo_is_explained(run):
    at = open_page()
    at.radio(key=saliency_page.KEY_SOURCE).set_value("Upload").run()
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 90, 3), dtype=np.uint8)).save(buffer, "PNG")
    at.file_uploader(key=saliency_page.KEY_UPLOAD).set_value(("noise.png", buffer.getvalue(), "image/png")).run()
    assert not at.exception
    assert any("No face was detected" in i.value for i in at.info)
    at = explain(at, ["gender"], ["saliency"])
    assert len(at.image) == 2


def test_a_broken_upload_is_an_error_not_a_traceback(run):
    at = open_page()
    at.radio(key=saliency_page.KEY_SOURCE).set_value("Upload").run()
    at.file_uploader(key=saliency_page.KEY_UPLOAD).set_value(("face.jpg", b"definitely not a jpeg", "image/jpeg")).run()
    assert not at.exception and len(at.error) == 1 and "not an image" in at.error[0].value


def test_the_predict_pages_last_photo_can_be_explained(run):
    at = open_page()
    assert "Last prediction" not in at.radio(key=saliency_page.KEY_SOURCE).options
    crops = [np.full((32, 32, 3), value, np.uint8) for value in (40, 200)]
    at.session_state[common.KEY_LAST_ANALYSES] = crops
    at.run()
    at.radio(key=saliency_page.KEY_SOURCE).set_value("Last prediction").run()
    at.selectbox(key=saliency_page.KEY_FACE).set_value(2).run()
    at = explain(at, ["age"], ["saliency"])
    assert len(at.image) == 2 and "face 2" in at.image[0].proto.imgs[0].caption


def test_without_any_model_the_page_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "no_runs"))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "no_models")
    at = open_page()
    assert any("No model yet" in w.value for w in at.warning) and not at.image


def test_an_upload_while_the_server_is_busy_is_a_warning(run, monkeypatch):
    import contextlib

    from core import slots

    @contextlib.contextmanager
    def busy(timeout_s=0):
        raise slots.Busy("The server is busy analysing other photos: try again in a moment.")
        yield

    at = open_page()
    at.radio(key=saliency_page.KEY_SOURCE).set_value("Upload").run()
    monkeypatch.setattr(slots, "photo_analysis_slot", busy)
    at.file_uploader(key=saliency_page.KEY_UPLOAD).set_value(("face.png", b"not read: no slot", "image/png")).run()
    assert not at.exception and not at.error
    assert any("busy analysing other photos" in w.value for w in at.warning)


def test_heads_and_methods_survive_a_change_of_face_source(run):
    """Issue 20 item 2: picking Upload (no photo yet, so no options drawn) and coming back keeps the choices."""
    at = open_page()
    at.multiselect(key=saliency_page.KEY_HEADS).set_value(["age", "race"])
    at.multiselect(key=saliency_page.KEY_METHODS).set_value(["gradcam"])
    at.run()
    at.radio(key=saliency_page.KEY_SOURCE).set_value("Upload").run()
    assert not at.exception and not [m for m in at.multiselect if m.key == saliency_page.KEY_HEADS]
    at.radio(key=saliency_page.KEY_SOURCE).set_value("Sample face").run()
    assert at.multiselect(key=saliency_page.KEY_HEADS).value == ["age", "race"]
    assert at.multiselect(key=saliency_page.KEY_METHODS).value == ["gradcam"]
