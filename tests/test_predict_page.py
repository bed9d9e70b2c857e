"""The Predict page, driven like a user with Streamlit's AppTest: upload photos (or take one), read the results.

The model is a tiny untrained residual_cnn saved as a finished training run, so the registry lists it."""

from __future__ import annotations

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from core import settings
from tests.conftest import PROJECT_ROOT, open_app_page
from tests.photos import background, encode, face_images, selfie, side_by_side

PAGE = "pages/predict.py"


@pytest.fixture(scope="module")
def photos(shared_dir) -> dict[str, bytes]:
    faces = face_images(shared_dir / "data" / "utkface")
    return {
        "selfie": encode(selfie(faces[0])[0]),
        "pair": encode(side_by_side(faces[5:7])[0], "PNG"),
        "no_face": encode(background((640, 480), seed=3)),
    }


@pytest.fixture
def model_run(tmp_path, monkeypatch, tiny_residual_model):
    """A finished fake run in a runs folder of this test's own, and no shipped model."""
    run = tmp_path / "runs" / "20250101-000000-residual_cnn"
    run.mkdir(parents=True)
    shutil.copy(tiny_residual_model, run / "model.keras")
    (run / "config.json").write_text(json.dumps({"model": {"arch": "residual_cnn", "img_size": 32}}))
    (run / "metrics.json").write_text(json.dumps({"status": "finished"}))
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "models")
    return run


def _page() -> AppTest:
    return open_app_page(PAGE)


def _texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_upload_a_selfie_and_see_the_prediction(model_run, photos):
    at = _page()
    assert at.selectbox(key="predict.model").value.startswith(model_run.name)
    at.file_uploader(key="predict.files").set_value(("me.jpg", photos["selfie"], "image/jpeg"))
    at.run()
    assert not at.exception and not at.error
    text = _texts(at)
    assert "Face 1" in text and "years" in text and "Face 2" not in text
    assert [s.value for s in at.subheader] == ["me.jpg"]


def test_the_faces_just_predicted_can_be_explained_on_the_saliency_page(model_run, photos):
    at = _page()
    assert "predict.last_analysis" not in at.session_state
    at.file_uploader(key="predict.files").set_value([("pair.png", photos["pair"], "image/png"),
                                                      ("me.jpg", photos["selfie"], "image/jpeg")])
    at.run()
    analyses = at.session_state["predict.last_analysis"]
    assert [len(a.faces) for a in analyses] == [2, 1]
    at.switch_page("pages/saliency.py")
    at.run()
    assert not at.exception
    at.radio(key="saliency.source").set_value("Last prediction").run()
    assert list(at.selectbox(key="saliency.face").options) == ["1", "2", "3"]


def test_several_files_one_bad(model_run, photos):
    at = _page()
    at.file_uploader(key="predict.files").set_value([
        ("pair.png", photos["pair"], "image/png"),
        ("notes.jpg", b"shopping list: eggs", "image/jpeg"),
    ])
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "notes.jpg" in at.error[0].value and "not an image" in at.error[0].value
    text = _texts(at)
    assert "Face 1" in text and "Face 2" in text and text.count("years") == 2


def test_no_face_offers_the_whole_image(model_run, photos):
    at = _page()
    at.file_uploader(key="predict.files").set_value(("wall.jpg", photos["no_face"], "image/jpeg"))
    at.run()
    assert not at.exception
    assert any("No face found" in info.value for info in at.info)
    assert "years" not in _texts(at)
    at.toggle(key="predict.whole_image.0").set_value(True)
    at.run()
    assert not at.exception and "Face 1" in _texts(at) and "years" in _texts(at)


def test_camera_photo(model_run, photos):
    at = _page()
    at.camera_input(key="predict.camera").set_value(("shot.jpg", photos["selfie"], "image/jpeg"))
    at.run()
    assert not at.exception and "years" in _texts(at)


def test_no_model_yet_is_explained(tmp_path, monkeypatch, photos):
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "empty-runs"))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "no-models")
    at = _page()
    assert any("No model yet" in w.value for w in at.warning)
    at.file_uploader(key="predict.files").set_value(("me.jpg", photos["selfie"], "image/jpeg"))
    at.run()
    assert not at.exception and "years" not in _texts(at)


def test_page_stays_short():
    lines = (PROJECT_ROOT / PAGE).read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 120
