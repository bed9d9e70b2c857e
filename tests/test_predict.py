"""Photo bytes → faces → one batched model call → a prediction per face; the JSON records; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import settings
from core.datasets import RACES
from core.images import ImageError
from core.predict import FacePrediction, Predictor, analyze_bytes, annotate, predict_files
from tests.photos import background, encode, selfie, side_by_side

RECORD_KEYS = {"box", "score", "age", "age_std", "gender", "gender_prob", "race", "race_probs"}


@pytest.fixture(scope="module")
def model(tiny_residual_model):
    from core.registry import load_model
    return load_model(tiny_residual_model, allow_anywhere=True)  # 32 px, distribution age head


@pytest.fixture(scope="module")
def predictor(model) -> Predictor:
    return Predictor(model)


@pytest.fixture(scope="module")
def selfie_jpeg(faces) -> bytes:
    return encode(selfie(faces[0])[0])


def _check_prediction(p: FacePrediction) -> None:
    assert 0 <= p.age <= 116 and p.age_std > 0
    assert p.gender in ("male", "female") and 0.5 <= p.gender_prob <= 1
    assert list(p.race_probs) == list(RACES) and sum(p.race_probs.values()) == pytest.approx(1, abs=1e-4)
    assert p.race == max(p.race_probs, key=p.race_probs.get)


# ---------------------------------------------------------------------------------------------- analysis

def test_selfie_bytes_to_one_prediction(predictor, detector, selfie_jpeg, faces):
    analysis = analyze_bytes(selfie_jpeg, predictor, detector)
    assert analysis.full_size == (1600, 1200) and not analysis.whole_image
    assert analysis.image.size == (800, 600)  # decoded at half scale: the face is big enough for that
    assert len(analysis.faces) == 1
    result = analysis.faces[0]
    assert result.number == 1 and result.crop.shape == (32, 32, 3) and result.crop.dtype == np.uint8
    _check_prediction(result.prediction)
    _, place = selfie(faces[0])
    x, y, w, h = result.face.box  # in full-resolution pixels
    assert place.contains(x + w / 2, y + h / 2) and w > 400


def test_all_faces_go_through_the_model_in_one_batched_call(predictor, detector, faces, model, monkeypatch):
    image, _ = side_by_side(faces[:3], size=(1500, 600))
    calls = []
    original = Predictor.raw_outputs

    def spy(self, crops):
        calls.append(len(crops))
        return original(self, crops)
    monkeypatch.setattr(Predictor, "raw_outputs", spy)
    monkeypatch.setattr(model, "predict", lambda *a, **k: pytest.fail("model.predict must not be used"))
    analysis = analyze_bytes(encode(image, "PNG"), predictor, detector)
    assert calls == [3] and [r.number for r in analysis.faces] == [1, 2, 3]
    for result in analysis.faces:
        _check_prediction(result.prediction)


def test_predictions_match_the_model_on_the_crops(predictor, detector, selfie_jpeg, model):
    """The pipeline's numbers are the model's, for the crop it shows (flip averaging included)."""
    result = analyze_bytes(selfie_jpeg, predictor, detector).faces[0]
    crop = result.crop[None].astype(np.float32)
    out = model(crop, training=False)
    flipped = model(crop[:, :, ::-1], training=False)
    female = (float(out["gender"][0, 0]) + float(flipped["gender"][0, 0])) / 2
    assert result.prediction.female_prob == pytest.approx(female, abs=1e-4)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_photo_gives_the_same_faces(predictor, detector, faces, orientation):
    image, _ = side_by_side(faces[4:6])
    upright = analyze_bytes(encode(image), predictor, detector)
    turned = analyze_bytes(encode(image, orientation=orientation), predictor, detector)
    assert turned.full_size == upright.full_size == image.size
    assert len(turned.faces) == len(upright.faces) == 2
    for a, b in zip(upright.faces, turned.faces, strict=True):
        assert np.allclose(a.face.box, b.face.box, atol=6)
        assert abs(a.prediction.age - b.prediction.age) < 3


def test_small_faces_in_a_big_jpeg_are_cropped_from_full_resolution(predictor, detector, faces, monkeypatch):
    """A 3200×2400 JPEG decodes at 1/4 scale for detection; its 200 px faces are then cut from the full decode."""
    image, places = side_by_side(faces[:4], size=(3200, 2400), side=200)
    import core.predict
    decodes = []
    original = core.predict.load_photo
    monkeypatch.setattr(core.predict, "load_photo", lambda data, **kw: decodes.append(kw) or original(data, **kw))
    analysis = analyze_bytes(encode(image), predictor, detector)
    assert decodes == [{"draft_side": core.predict.DRAFT_SIDE}, {}]
    assert analysis.image.size == (800, 600) and analysis.full_size == (3200, 2400)
    assert len(analysis.faces) == 4
    for result, place in zip(analysis.faces, places, strict=True):
        assert place.contains(*result.face.center)  # boxes are reported in full-resolution pixels


def test_no_face_then_whole_image_as_one_face(predictor, detector):
    data = encode(background((640, 480), seed=7))
    assert analyze_bytes(data, predictor, detector).faces == []
    whole = analyze_bytes(data, predictor, detector, whole_image=True)
    assert whole.whole_image and len(whole.faces) == 1
    record = whole.to_dict()["faces"][0]
    assert record["box"] == [80, 0, 480, 480] and record["score"] is None
    _check_prediction(whole.faces[0].prediction)


def test_an_already_cropped_face_is_found_or_taken_whole(predictor, detector, faces):
    """A UTKFace-style crop uploaded as is: the detector finds the face filling the frame."""
    analysis = analyze_bytes(encode(faces[2]), predictor, detector)
    assert len(analysis.faces) == 1 and analysis.faces[0].face.box[2] > 150


def test_bad_bytes_raise_image_error(predictor, detector):
    with pytest.raises(ImageError, match="not an image"):
        analyze_bytes(b"hello", predictor, detector)


def test_annotate_draws_numbered_boxes(predictor, detector, faces):
    image, _ = side_by_side(faces[:2])
    analysis = analyze_bytes(encode(image, "PNG"), predictor, detector)
    drawn = analysis.annotated()
    assert drawn.size == image.size and drawn is not analysis.image
    before, after = np.asarray(analysis.image), np.asarray(drawn)
    x, y, w, h = (round(v) for v in analysis.faces[0].face.box)
    assert np.abs(after[y + h // 2, x].astype(int) - before[y + h // 2, x]).sum() > 0  # the box's left side
    assert np.array_equal(after[y + h // 2, x + w // 2], before[y + h // 2, x + w // 2])  # the face is untouched
    assert np.array_equal(np.asarray(annotate(image, [], [])), np.asarray(image))


# --------------------------------------------------------------------------------------------- records

def test_predict_files_keeps_going_after_bad_files(predictor, detector, selfie_jpeg, tmp_path):
    good = tmp_path / "me.jpg"
    good.write_bytes(selfie_jpeg)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    records = predict_files([str(text), str(good), str(tmp_path / "missing.jpg"), str(empty)], predictor, detector)
    assert [r["image"] for r in records] == [str(text), str(good), str(tmp_path / "missing.jpg"), str(empty)]
    assert "not an image" in records[0]["error"] and records[0]["faces"] == []
    assert records[1]["error"] is None and len(records[1]["faces"]) == 1
    assert "Cannot read" in records[2]["error"] and "empty" in records[3]["error"]
    face = records[1]["faces"][0]
    assert set(face) == RECORD_KEYS and len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
    assert set(face["race_probs"]) == set(RACES)
    json.dumps(records)  # plain JSON types throughout


def test_predict_files_whole_image_fallback(predictor, detector, tmp_path):
    path = tmp_path / "plain.png"
    path.write_bytes(encode(background((300, 300), seed=1), "PNG"))
    assert predict_files([str(path)], predictor, detector)[0]["faces"] == []
    record = predict_files([str(path)], predictor, detector, whole_image=True)[0]
    assert len(record["faces"]) == 1 and record["faces"][0]["box"] == [0, 0, 300, 300]


# ------------------------------------------------------------------------------------------------- CLI

def _shipped_tiny_model(folder, model_path) -> None:
    import shutil
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_path, folder / "face_insight_v1.keras")
    (folder / "face_insight_v1.json").write_text(json.dumps({"name": "face_insight_v1", "img_size": 32}))


def test_cli_prints_one_json_array(tmp_path, selfie_jpeg, tiny_residual_model, capsys, monkeypatch):
    from core.__main__ import main
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "models")
    _shipped_tiny_model(tmp_path / "models", tiny_residual_model)  # the default model, as the registry lists it
    good, bad = tmp_path / "a.jpg", tmp_path / "b.jpg"
    good.write_bytes(selfie_jpeg)
    bad.write_text("<html></html>")
    assert main(["predict", str(good), str(bad), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in records] == [str(good), str(bad)]
    assert records[0]["error"] is None and set(records[0]["faces"][0]) == RECORD_KEYS
    assert records[1]["faces"] == [] and "not an image" in records[1]["error"]


def test_cli_model_option_and_readable_output(tmp_path, selfie_jpeg, tiny_residual_model, capsys):
    from core.__main__ import main
    photo = tmp_path / "me.jpg"
    photo.write_bytes(selfie_jpeg)
    assert main(["predict", str(photo), "--model", str(tiny_residual_model)]) == 0
    out = capsys.readouterr().out
    assert "me.jpg" in out and "face 1" in out and "years" in out


def test_cli_without_any_model_says_so(tmp_path, capsys, monkeypatch):
    from core.__main__ import main
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "no-models")
    assert main(["predict", "x.jpg", "--json"]) == 2
    err = capsys.readouterr().err
    assert "no model" in err.lower() and "--model" in err


def test_cli_bad_model_path_is_an_argument_error(tmp_path, capsys):
    from core.__main__ import main
    assert main(["predict", "x.jpg", "--model", str(tmp_path / "nope.keras")]) == 2
    assert "not found" in capsys.readouterr().err
