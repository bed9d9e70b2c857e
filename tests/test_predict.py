"""Photo bytes → faces → one batched LiteRT call → a prediction per face; face crops taken whole without being
asked; the Predictor itself (buckets, flip in the same call, threads, no TensorFlow); the JSON records; the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from core import predict, settings
from core.alignment import ONE_VIEW, align_views
from core.faces import Face
from core.images import ImageError
from core.labels import RACES
from core.predict import (
    FACE_CROP_NOTE,
    FacePrediction,
    KerasPredictor,
    Predictor,
    analyze_bytes,
    predict_files,
)
from tests.photos import background, encode, selfie, side_by_side

RECORD_KEYS = {"box", "score", "age", "age_std", "gender", "gender_prob", "race", "race_probs"}


@pytest.fixture(scope="module")
def model(tiny_residual_model):
    from core.registry import load_model
    return load_model(tiny_residual_model, allow_anywhere=True)  # 32 px, distribution age head


@pytest.fixture(scope="module")
def predictor(tiny_residual_model) -> Predictor:
    return Predictor(tiny_residual_model.with_suffix(".tflite"))


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    from core.export import representative_images
    return representative_images(settings.SAMPLE_DIR, 32, count=40)


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


def test_all_faces_go_through_the_model_in_one_batched_call(predictor, detector, faces, monkeypatch):
    image, _ = side_by_side(faces[:3], size=(1500, 600))
    calls = []
    original = Predictor.raw_outputs

    def spy(self, crops):
        calls.append(len(crops))
        return original(self, crops)
    monkeypatch.setattr(Predictor, "raw_outputs", spy)
    analysis = analyze_bytes(encode(image, "PNG"), predictor, detector)
    assert calls == [3] and [r.number for r in analysis.faces] == [1, 2, 3]
    for result in analysis.faces:
        _check_prediction(result.prediction)


def test_predictions_match_the_model_on_the_views(predictor, detector, selfie_jpeg, model):
    """The pipeline's numbers are the model's, averaged over the face's views and their mirror images; the crop it
    shows is the calibrated view."""
    analysis = analyze_bytes(selfie_jpeg, predictor, detector)
    result = analysis.faces[0]
    views = align_views(analysis.image, result.face.scaled(1 / analysis.scale), 32).astype(np.float32)
    np.testing.assert_array_equal(result.crop, views[0])
    female = np.mean([np.asarray(model(batch, training=False)["gender"]) for batch in (views, views[:, :, ::-1])])
    assert result.prediction.female_prob == pytest.approx(float(female), abs=1e-4)
    one_cut = np.mean([np.asarray(model(batch, training=False)["gender"]) for batch in (views[:1], views[:1, :, ::-1])])
    assert abs(female - one_cut) > 1e-4  # the views are not the one cut again


def test_a_one_view_predictor_reads_the_calibrated_cut_alone(tiny_residual_model, detector, selfie_jpeg, model):
    single = Predictor(tiny_residual_model.with_suffix(".tflite"), views=ONE_VIEW)
    result = analyze_bytes(selfie_jpeg, single, detector).faces[0]
    crop = result.crop[None].astype(np.float32)
    female = (np.asarray(model(crop, training=False)["gender"]) + np.asarray(model(crop[:, :, ::-1])["gender"])) / 2
    assert result.prediction.female_prob == pytest.approx(float(female[0, 0]), abs=1e-4)


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


def test_a_photo_without_a_face_gets_no_guess_unless_asked(predictor, detector):
    data = encode(background((1600, 1200), seed=7))  # a scene, not a face crop
    analysis = analyze_bytes(data, predictor, detector)
    assert analysis.faces == [] and analysis.note is None
    whole = analyze_bytes(data, predictor, detector, whole_image=True)
    assert whole.whole_image and len(whole.faces) == 1 and whole.note is None
    record = whole.to_dict()["faces"][0]
    assert record["box"] == [200, 0, 1200, 1200] and record["score"] is None
    _check_prediction(whole.faces[0].prediction)


def test_a_small_squarish_image_without_a_face_is_taken_as_a_face_crop(predictor, detector):
    """No toggle needed for face crops: where detection (plain, then padded) finds nothing, the image is the face."""
    analysis = analyze_bytes(encode(background((640, 480), seed=7)), predictor, detector)
    assert analysis.whole_image and analysis.note == FACE_CROP_NOTE and len(analysis.faces) == 1
    assert analysis.to_dict()["faces"][0]["box"] == [80, 0, 480, 480]
    assert analysis.to_dict()["note"] == FACE_CROP_NOTE
    _check_prediction(analysis.faces[0].prediction)


class _FindsOnlyWithABorder:
    """A detector that misses the face filling a tight crop and finds it once the crop has a border, as BlazeFace
    does on many UTKFace images."""

    def __init__(self, crop_size: tuple[int, int]):
        self.crop_size, self.calls = crop_size, []

    def detect(self, image, tiles=None, edges=False):
        self.calls.append(image.size)
        if image.size == self.crop_size:
            return []
        w, h = image.size
        keypoints = ((w * 0.42, h * 0.45), (w * 0.58, h * 0.45), (w * 0.5, h * 0.52), (w * 0.5, h * 0.58),
                     (w * 0.36, h * 0.47), (w * 0.64, h * 0.47))
        return [Face((w * 0.33, h * 0.33, w * 0.34, h * 0.34), 0.9, keypoints, "short")]


def test_a_tight_face_crop_is_detected_again_with_a_border(predictor):
    from core import crops as crop_module
    image = background((200, 200), seed=2)
    detector = _FindsOnlyWithABorder(image.size)
    analysis = analyze_bytes(encode(image, "PNG"), predictor, detector)
    pad = round(crop_module.CROP_PAD * 200)
    assert detector.calls == [(200, 200), (200 + 2 * pad, 200 + 2 * pad)]
    assert not analysis.whole_image and analysis.note is None and len(analysis.faces) == 1
    x, y, w, h = analysis.faces[0].face.box  # mapped back into the crop's own pixels: centred on it
    assert x + w / 2 == pytest.approx(100, abs=1) and y + h / 2 == pytest.approx(100, abs=1)


def test_an_already_cropped_face_is_found_or_taken_whole(predictor, detector, faces):
    """A UTKFace-style crop uploaded as is: the detector finds the face filling the frame."""
    analysis = analyze_bytes(encode(faces[2]), predictor, detector)
    assert len(analysis.faces) == 1 and analysis.faces[0].face.box[2] > 150 and analysis.note is None


def test_utkface_crops_all_get_an_answer_without_any_option(predictor, detector, shared_dir):
    paths = sorted((shared_dir / "data" / "utkface").glob("*.jpg"))
    if len(paths) < 200:
        pytest.skip("fewer than 200 UTKFace images")
    chosen = [paths[i] for i in np.random.default_rng(3).choice(len(paths), 200, replace=False)]
    analyses = [analyze_bytes(path.read_bytes(), predictor, detector) for path in chosen]
    answered = sum(bool(a.faces) for a in analyses)
    taken_whole = sum(a.note == FACE_CROP_NOTE for a in analyses)
    assert answered >= 198, f"{answered}/200 answered"
    assert taken_whole <= 20, f"{taken_whole}/200 taken whole: the padded re-detection should find most faces"


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
    crop, scene = tmp_path / "crop.png", tmp_path / "scene.png"
    crop.write_bytes(encode(background((300, 300), seed=1), "PNG"))
    scene.write_bytes(encode(background((1600, 900), seed=1), "PNG"))
    records = predict_files([str(crop), str(scene)], predictor, detector)
    assert records[0]["faces"][0]["box"] == [0, 0, 300, 300] and records[0]["note"] == FACE_CROP_NOTE
    assert records[1]["faces"] == [] and records[1]["note"] is None
    record = predict_files([str(scene)], predictor, detector, whole_image=True)[0]
    assert len(record["faces"]) == 1 and record["faces"][0]["box"] == [350, 0, 900, 900]


# ------------------------------------------------------------------------------------------------ Predictor

def test_litert_predictions_match_keras_with_flip_averaging(predictor, model, crops):
    lite, keras = predictor.raw_outputs(crops), KerasPredictor(model).raw_outputs(crops)
    assert set(lite) == set(keras) == {"age", "age_dist", "gender", "race", "age_flip"}
    tolerance = {"age": 1e-3, "age_flip": 1e-3}  # years; probabilities below
    for name in lite:
        assert np.max(np.abs(lite[name] - keras[name])) < tolerance.get(name, 1e-5), name
    assert predictor.img_size == 32 and predictor.output_names == ["age", "age_dist", "gender", "race"]


def test_face_and_mirror_go_in_one_call_padded_to_a_bucket(predictor, crops, monkeypatch):
    """Each batch size has one interpreter, allocated once; a call carries the faces and their mirror images."""
    calls = []
    original = predict._FixedBatchInterpreter.__call__
    monkeypatch.setattr(predict._FixedBatchInterpreter, "__call__",
                        lambda self, batch: calls.append(batch.copy()) or original(self, batch))
    one = predictor.raw_outputs(crops[:3])
    assert [len(b) for b in calls] == [8]  # 3 faces → bucket 4, and 4 mirrored
    assert np.array_equal(calls[0][4:7], crops[:3, :, ::-1].astype(np.float32)) and not calls[0][3].any()
    interpreters = dict(predictor._interpreters)
    predictor.raw_outputs(crops[:3])
    predictor.raw_outputs(crops[:37])  # 20 + 17: chunks of the largest bucket
    assert [len(b) for b in calls] == [8, 8, 40, 40]
    predictor.raw_outputs(crops[:10].reshape(2, 5, 32, 32, 3))  # two faces' five views: no padding
    assert [len(b) for b in calls] == [8, 8, 40, 40, 20]
    assert all(predictor._interpreters[size] is interpreter for size, interpreter in interpreters.items())
    np.testing.assert_allclose(predictor.raw_outputs(crops[:37])["race"][:3], one["race"], atol=1e-6)


def test_a_one_face_photo_uses_the_interpreter_allocated_at_start(tiny_residual_model, detector, selfie_jpeg):
    """The views of one face and their mirror images fill the interpreter built with the predictor: no second one
    is allocated for the commonest upload."""
    fresh = Predictor(tiny_residual_model.with_suffix(".tflite"))
    assert list(fresh._interpreters) == [2 * len(fresh.views)]
    assert len(analyze_bytes(selfie_jpeg, fresh, detector).faces) == 1
    assert list(fresh._interpreters) == [2 * len(fresh.views)]
    assert list(Predictor(tiny_residual_model.with_suffix(".tflite"), views=ONE_VIEW)._interpreters) == [2]


def test_no_views_given_reads_the_calibrated_cut(tiny_residual_model, model):
    """An empty view list is not a predictor that reads nothing: both predictors fall back to the one cut."""
    assert Predictor(tiny_residual_model.with_suffix(".tflite"), views=()).views == ONE_VIEW
    assert KerasPredictor(model, views=()).views == ONE_VIEW


def test_views_of_each_face_are_averaged(predictor, crops):
    """(n, views, size, size, 3): every view in the same batched calls, the outputs averaged per face."""
    stacked = crops[:6].reshape(3, 2, 32, 32, 3)  # three faces, two views each
    together = predictor.raw_outputs(stacked)
    alone = [predictor.raw_outputs(stacked[:, v]) for v in range(2)]
    assert together["age_dist"].shape == (3, alone[0]["age_dist"].shape[1]) and together["gender"].shape == (3, 1)
    for name in together:
        np.testing.assert_allclose(together[name], (alone[0][name] + alone[1][name]) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="views"):
        predictor.raw_outputs(crops[:2, :16])


def test_without_flip_the_batch_holds_the_faces_only(tiny_residual_model, crops, model):
    plain = Predictor(tiny_residual_model.with_suffix(".tflite"), flip_tta=False)
    outputs = plain.raw_outputs(crops[:2])
    assert "age_flip" not in outputs
    expected = model(crops[:2].astype(np.float32), training=False)
    np.testing.assert_allclose(outputs["gender"], np.asarray(expected["gender"]), atol=1e-5)


def test_predictor_is_thread_safe(predictor, crops):
    expected = [predictor.raw_outputs(crops[i:i + n])["race"] for i, n in ((0, 1), (1, 3), (4, 16))]
    errors, results = [], {}

    def work(index: int) -> None:
        i, n = ((0, 1), (1, 3), (4, 16))[index % 3]
        try:
            for _ in range(10):
                results.setdefault(index, []).append(predictor.raw_outputs(crops[i:i + n])["race"])
        except Exception as error:  # any failure in a thread is the finding
            errors.append(error)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for index, outputs in results.items():
        for out in outputs:
            np.testing.assert_allclose(out, expected[index % 3], atol=1e-6)


def test_predictor_needs_a_readable_tflite_file(tmp_path):
    from core.registry import ModelError
    with pytest.raises(ModelError, match="Cannot read the model file"):
        Predictor(tmp_path / "missing.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelError, match="Not a usable TFLite model"):
        Predictor(tmp_path / "junk.tflite")


def test_predicting_never_imports_tensorflow(tiny_residual_model):
    """In a fresh process: this one has TensorFlow from the fixtures."""
    code = (
        "import sys, numpy as np\n"
        "import core.predict\n"
        "assert 'tensorflow' not in sys.modules, 'import'\n"
        f"predictor = core.predict.Predictor({str(tiny_residual_model.with_suffix('.tflite'))!r})\n"
        "predictions = predictor.predict(np.zeros((3, 32, 32, 3), np.uint8))\n"
        "assert len(predictions) == 3\n"
        "assert not {'tensorflow', 'keras'} & set(sys.modules), 'predicting'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=settings.PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


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


def test_cli_takes_a_tflite_file_too(tmp_path, selfie_jpeg, tiny_residual_model, capsys):
    from core.__main__ import main
    photo = tmp_path / "me.jpg"
    photo.write_bytes(selfie_jpeg)
    assert main(["predict", str(photo), "--json", "--model", str(tiny_residual_model.with_suffix(".tflite"))]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["faces"]) == 1


def test_cli_bad_model_path_is_an_argument_error(tmp_path, capsys):
    from core.__main__ import main
    assert main(["predict", "x.jpg", "--model", str(tmp_path / "nope.keras")]) == 2
    assert "not found" in capsys.readouterr().err
