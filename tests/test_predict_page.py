"""The Predict page, driven like a user with Streamlit's AppTest: upload photos (or take one), read the results.
Also: the Predict and Evaluate pages, used in a fresh process, never import TensorFlow or Keras.

The model is a tiny untrained residual_cnn saved as a finished training run (with its .tflite), so the registry
lists it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from core import settings
from pages import common, live_camera, predict_views
from pages import predict as predict_page
from pages import saliency as saliency_page
from tests.photos import background, encode, face_images, selfie, side_by_side
from tests.support import PROJECT_ROOT, open_app_page, write_run

PAGE = "pages/predict.py"


@pytest.fixture(scope="module")
def photos(shared_dir) -> dict[str, bytes]:
    faces = face_images(shared_dir / "data" / "utkface")
    return {
        "selfie": encode(selfie(faces[0])[0]),
        "pair": encode(side_by_side(faces[5:7])[0], "PNG"),
        "no_face": encode(background((1600, 1200), seed=3)),  # a scene: no guess unless asked
    }


@pytest.fixture
def model_run(tmp_path, monkeypatch, tiny_residual_model):
    """A finished fake run in a runs folder of this test's own, and no shipped model."""
    run = write_run(tmp_path / "runs", model=tiny_residual_model, with_tflite=True)
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "models")
    return run


def _page() -> AppTest:
    return open_app_page(PAGE)


def _texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_upload_a_selfie_and_see_the_prediction(model_run, photos):
    at = _page()
    assert at.selectbox(key=predict_page.KEY_MODEL).value.startswith(model_run.name)
    at.file_uploader(key=predict_views.KEY_FILES).set_value(("me.jpg", photos["selfie"], "image/jpeg"))
    at.run()
    assert not at.exception and not at.error
    text = _texts(at)
    assert "Face 1" in text and "years" in text and "Face 2" not in text
    assert [s.value for s in at.subheader] == ["me.jpg"]


def test_the_faces_just_predicted_can_be_explained_on_the_saliency_page(model_run, photos):
    at = _page()
    assert common.KEY_LAST_ANALYSES not in at.session_state
    at.file_uploader(key=predict_views.KEY_FILES).set_value([("pair.png", photos["pair"], "image/png"),
                                                              ("me.jpg", photos["selfie"], "image/jpeg")])
    at.run()
    analyses = at.session_state[common.KEY_LAST_ANALYSES]
    assert [len(a.faces) for a in analyses] == [2, 1]
    at.switch_page("pages/saliency.py")
    at.run()
    assert not at.exception
    at.radio(key=saliency_page.KEY_SOURCE).set_value("Last prediction").run()
    assert list(at.selectbox(key=saliency_page.KEY_FACE).options) == ["1", "2", "3"]


def test_several_files_one_bad(model_run, photos):
    at = _page()
    at.file_uploader(key=predict_views.KEY_FILES).set_value([
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
    at.file_uploader(key=predict_views.KEY_FILES).set_value(("wall.jpg", photos["no_face"], "image/jpeg"))
    at.run()
    assert not at.exception
    assert any("No face found" in info.value for info in at.info)
    assert "years" not in _texts(at)
    at.toggle(key=f"{predict_views.KEY_WHOLE_IMAGE}.0").set_value(True)
    at.run()
    assert not at.exception and "Face 1" in _texts(at) and "years" in _texts(at)


def test_a_face_crop_needs_no_toggle_and_says_how_it_was_taken(model_run):
    at = _page()
    at.file_uploader(key=predict_views.KEY_FILES).set_value(("crop.png", encode(background((400, 400), seed=5), "PNG"),
                                                              "image/png"))
    at.run()
    assert not at.exception and not at.error
    assert "Face 1" in _texts(at) and "years" in _texts(at)
    assert any("taken as a face crop" in caption.value for caption in at.caption)
    assert not any("No face found" in info.value for info in at.info)


def test_camera_photo(model_run, photos):
    at = _page()
    at.camera_input(key=predict_views.KEY_CAMERA).set_value(("shot.jpg", photos["selfie"], "image/jpeg"))
    at.run()
    assert not at.exception and "years" in _texts(at)


def test_the_live_tab_says_frames_stay_in_memory_and_asks_before_streaming(model_run):
    """Only the toggle starts the stream (the component itself cannot run under AppTest; tests/test_browser_live.py
    streams in a real browser)."""
    at = _page()
    assert [tab.label for tab in at.tabs] == ["Upload", "Camera", "Live"]
    assert at.toggle(key=live_camera.KEY_ON).value is False
    assert any("nothing is recorded or stored" in caption.value for caption in at.caption)
    assert live_camera.KEY_ANALYZER not in at.session_state


def test_turning_the_live_stream_off_frees_its_seat_at_once(model_run):
    """A public server's live-stream seats (core.slots.Seats) are all taken, one by this session's stream: when
    its toggle is off, that seat is free at once for the next visitor, not 5 s later."""
    from core import slots
    from core.live import LiveAnalyzer

    analyzer, others = LiveAnalyzer(), [object() for _ in range(slots.LIVE_STREAMS_AT_ONCE - 1)]
    at = _page()
    at.session_state[live_camera.KEY_ANALYZER] = analyzer
    try:
        assert slots.live_seats.hold(analyzer) and all(slots.live_seats.hold(other) for other in others)
        assert not slots.live_seats.free_for(object())
        at.run()  # the toggle is off
        assert not at.exception and slots.live_seats.free_for(object())
    finally:
        for holder in (analyzer, *others):
            slots.live_seats.release(holder)


def test_no_model_yet_is_explained(tmp_path, monkeypatch, photos):
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "empty-runs"))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "no-models")
    at = _page()
    assert any("No model yet" in w.value for w in at.warning)
    at.file_uploader(key=predict_views.KEY_FILES).set_value(("me.jpg", photos["selfie"], "image/jpeg"))
    at.run()
    assert not at.exception and "years" not in _texts(at)


def test_page_stays_short():
    lines = (PROJECT_ROOT / PAGE).read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 120


# ------------------------------------------------------------------------------------- no TensorFlow in the server

_SERVER_SESSION = """
import sys
from pathlib import Path

from core import settings

settings.MODELS_DIR = Path(sys.argv[1])  # no shipped model: the run's .keras alone, its .tflite not exported yet
from streamlit.testing.v1 import AppTest

from pages import evaluate as evaluate_page, predict_views

at = AppTest.from_file("streamlit_app.py", default_timeout=600)
at.run()
at.switch_page("pages/predict.py").run()
face = ("face.jpg", Path(sys.argv[2]).read_bytes(), "image/jpeg")
at.file_uploader(key=predict_views.KEY_FILES).set_value(face).run()
assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
assert "years" in "\\n".join(m.value for m in at.markdown), "no prediction shown"
at.switch_page("pages/evaluate.py").run()
at.text_input(key=evaluate_page.KEY_FOLDER).set_value(sys.argv[3]).run()
at.button(key=evaluate_page.KEY_RUN).click().run()
assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
assert len(at.dataframe) >= 1, "no evaluation shown"
leaked = {"tensorflow", "keras"} & set(sys.modules)
assert not leaked, f"the server imported {sorted(leaked)}"
print("no TensorFlow")
"""


def test_predict_and_evaluate_pages_never_import_tensorflow(tmp_path, tiny_residual_model):
    """A fresh process (this one has TensorFlow from the fixtures) plays a server: Predict a face, Evaluate a small
    folder, with a model whose .tflite must first be exported (in a child process)."""
    run = write_run(tmp_path / "runs", model=tiny_residual_model)  # no .tflite: the server must export one first
    sample = sorted(settings.SAMPLE_DIR.glob("*.jpg"))
    folder = tmp_path / "faces"
    folder.mkdir()
    for path in sample[:24]:
        shutil.copy(path, folder / path.name)
    env = {**os.environ, "FACE_RUNS_DIR": str(tmp_path / "runs"), "FACE_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", _SERVER_SESSION, str(tmp_path / "models"), str(sample[0]),
                           str(folder)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "no TensorFlow" in done.stdout, done.stderr[-3000:]
    assert (run / "model.tflite").is_file()  # exported for the page, by a child process


def test_an_upload_beyond_the_cap_is_cut_with_a_note(model_run):
    from core.images import MAX_FILES_PER_UPLOAD
    from tests.photos import background
    count = MAX_FILES_PER_UPLOAD + 2
    at = _page()
    at.file_uploader(key=predict_views.KEY_FILES).set_value(
        [(f"scene{i}.jpg", encode(background((640, 480), seed=i)), "image/jpeg") for i in range(count)])
    at.run()
    assert not at.exception and not at.error
    notes = [i.value for i in at.info]
    assert any(f"Only the first {MAX_FILES_PER_UPLOAD} of {count} photos" in note for note in notes), notes
    analysed = [s.value for s in at.subheader] + [note for note in notes if "No face found" in note]
    assert len(analysed) == MAX_FILES_PER_UPLOAD  # with faces or without, the first ones only
    assert not any(f"scene{i}" in text for text in analysed for i in range(MAX_FILES_PER_UPLOAD, count))


def test_the_session_keeps_the_crops_and_only_a_preview_of_the_photo(model_run):
    from core.images import SESSION_PREVIEW_SIDE  # not from the page: importing it would run its script
    from tests.photos import background
    at = _page()
    at.file_uploader(key=predict_views.KEY_FILES).set_value(("big.png", encode(background((2400, 1800), seed=1), "PNG"),
                                                             "image/png"))
    at.run()
    at.toggle(key=f"{predict_views.KEY_WHOLE_IMAGE}.0").set_value(True).run()
    assert not at.exception and not at.error
    (analysis,) = at.session_state[common.KEY_LAST_ANALYSES]
    assert max(analysis.image.size) == SESSION_PREVIEW_SIDE and analysis.full_size == (2400, 1800)
    assert len(analysis.faces) == 1 and analysis.faces[0].crop.shape[:2] == (32, 32)  # what Saliency explains


def test_a_busy_server_is_a_warning_not_a_wait(model_run, monkeypatch):
    import contextlib

    from core import slots
    from tests.photos import background

    @contextlib.contextmanager
    def busy(timeout_s=0):
        raise slots.Busy("The server is busy analysing other photos: try again in a moment.")
        yield

    monkeypatch.setattr(slots, "photo_analysis_slot", busy)
    at = _page()
    at.file_uploader(key=predict_views.KEY_FILES).set_value(("a.jpg", encode(background((160, 120))), "image/jpeg"))
    at.run()
    assert not at.exception and not at.error
    assert any("busy analysing other photos" in w.value for w in at.warning)


@pytest.fixture(scope="module")
def fairface_model(tmp_path_factory):
    """A tiny untrained FairFace-space model (9 age groups, race-7) with its .tflite beside it."""
    from core.models import ModelConfig, build_model
    from tests.support import export_beside

    model, _ = build_model(ModelConfig.tiny("fairface_cnn"))
    path = tmp_path_factory.mktemp("fairface_model") / "fairface_cnn.keras"
    model.save(path)
    export_beside(path)
    return path


def test_a_fairface_model_shows_its_age_groups_and_seven_races(fairface_model, tmp_path, monkeypatch, photos):
    from core.labels import FAIRFACE_BINS, FAIRFACE_RACES
    write_run(tmp_path / "runs", model=fairface_model, with_tflite=True)
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "models")
    at = _page()
    at.file_uploader(key=predict_views.KEY_FILES).set_value(("me.jpg", photos["selfie"], "image/jpeg"))
    at.run()
    assert not at.exception and not at.error
    text = _texts(at)
    assert "Face 1" in text and "years" not in text
    assert any(f"**age {group} (" in text for group in FAIRFACE_BINS)
    assert any(f"\n{race} (" in text for race in FAIRFACE_RACES)
    (face,) = at.session_state[common.KEY_LAST_ANALYSES][0].faces
    assert list(face.prediction.age_group_probs) == list(FAIRFACE_BINS)
    assert list(face.prediction.race_probs) == list(FAIRFACE_RACES)
    assert len(at.get("plotly_chart")) == 3  # gender, age groups and race-7


# ------------------------------------------------------------------ issue 20, item 6: a day with the Predict page

def _count_analyses(monkeypatch) -> list[str]:
    """Every photo analysis the page asks for (the page reads core.predict.analyze_bytes at each run)."""
    import core.predict

    calls, real = [], core.predict.analyze_bytes
    monkeypatch.setattr(core.predict, "analyze_bytes", lambda data, *a, **k: calls.append(len(data)) or real(
        data, *a, **k))
    return calls


def test_a_spinner_is_shown_while_photos_are_analysed(model_run, photos, monkeypatch):
    import streamlit

    said, real = [], streamlit.spinner
    monkeypatch.setattr(streamlit, "spinner", lambda text="", *a, **k: said.append(text) or real(text, *a, **k))
    at = _page()
    at.file_uploader(key=predict_views.KEY_FILES).set_value(("me.jpg", photos["selfie"], "image/jpeg")).run()
    assert not at.exception and "years" in _texts(at)
    assert any("me.jpg" in text and "nalys" in text for text in said), said


def test_results_are_kept_per_photo_so_a_click_elsewhere_does_not_analyse_again(model_run, photos, monkeypatch):
    calls = _count_analyses(monkeypatch)
    at = _page()
    at.file_uploader(key=predict_views.KEY_FILES).set_value([("pair.png", photos["pair"], "image/png"),
                                                              ("me.jpg", photos["selfie"], "image/jpeg")]).run()
    assert len(calls) == 2 and _texts(at).count("years") == 3
    at.run()  # any other click reruns the page with the same photos
    assert len(calls) == 2 and _texts(at).count("years") == 3
    at.file_uploader(key=predict_views.KEY_FILES).set_value([("me.jpg", photos["selfie"], "image/jpeg")]).run()
    assert len(calls) == 2, "the same bytes again: their results are known"


def test_the_size_limit_is_stated_in_words_beside_the_uploader(model_run):
    from streamlit import config

    at = _page()
    limit = f"{config.get_option('server.maxUploadSize')} MB"
    assert any(limit in caption.value for caption in at.caption), [c.value for c in at.caption]


def test_an_example_photo_is_one_click_away(model_run):
    at = _page()
    examples = at.button_group(key=predict_views.KEY_EXAMPLE)
    assert len(examples.options) >= 3
    examples.set_value(getattr(examples.options[0], "content", examples.options[0])).run()
    assert not at.exception and not at.error
    assert "years" in _texts(at) and len(at.subheader) == 1


def test_results_and_the_annotated_photo_can_be_downloaded(model_run, photos):
    at = _page()
    at.file_uploader(key=predict_views.KEY_FILES).set_value(("pair.png", photos["pair"], "image/png")).run()
    labels = [button.proto.label for button in at.get("download_button")]
    assert any("CSV" in label for label in labels) and any("JSON" in label for label in labels), labels
    assert any("PNG" in label for label in labels), labels


def test_a_zip_of_photos_is_summarised_in_one_table(model_run, photos):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("holiday/pair.png", photos["pair"])
        archive.writestr("holiday/me.jpg", photos["selfie"])
        archive.writestr("holiday/notes.jpg", b"shopping list: eggs")
        archive.writestr("__MACOSX/holiday/._me.jpg", b"resource fork")
    at = _page()
    at.file_uploader(key=predict_views.KEY_FILES).set_value(("holiday.zip", buffer.getvalue(), "application/zip")).run()
    assert not at.exception
    (summary,) = [frame.value for frame in at.dataframe]
    assert len(summary) == 3 and summary.iloc[:, 0].tolist() == ["pair.png", "me.jpg", "notes.jpg"]
    assert summary.iloc[:, 1].tolist()[:2] == [2, 1]
    assert "not an image" in " ".join(str(v) for v in summary.iloc[2].tolist())


def test_an_iphone_heic_photo_is_accepted(model_run, photos):
    pillow_heif = pytest.importorskip("pillow_heif")
    import io

    from PIL import Image

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photos["selfie"])).save(buffer, "HEIF", quality=90)
    at = _page()
    at.file_uploader(key=predict_views.KEY_FILES).set_value(("IMG_0001.HEIC", buffer.getvalue(), "image/heic")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Face 1" in _texts(at) and "years" in _texts(at)
