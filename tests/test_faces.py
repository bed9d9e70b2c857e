"""Face detection on photos of real faces (UTKFace faces pasted into scenes, see tests/photos)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from core import settings
from core.faces import KEYPOINT_NAMES, DetectorError, Face, FaceDetector
from tests.photos import Placed, background, compose, group, selfie, side_by_side


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih / (aw * ah + bw * bh - iw * ih)


def _matches(found: list[Face], places: list[Placed]) -> list[int]:
    """For each placed face, how many detections have their centre on it."""
    return [sum(place.contains(*face.center) for face in found) for place in places]


# ------------------------------------------------------------------------------------------------ detection

def test_selfie_one_face_with_box_and_keypoints(detector, faces):
    image, place = selfie(faces[0])
    found = detector.detect(image)
    assert len(found) == 1
    face = found[0]
    assert face.score > 0.8 and face.source == "short"
    assert _iou(face.box, place.box) > 0.6
    assert len(face.keypoints) == len(KEYPOINT_NAMES) == 6
    (rx, ry), (lx, ly), (nx, ny), (mx, my) = face.keypoints[:4]
    assert rx < nx < lx and ry < ny < my  # image-left eye, nose between the eyes, mouth below
    assert all(place.contains(x, y) for x, y in face.keypoints[:4])


def test_two_faces_side_by_side(detector, faces):
    image, places = side_by_side(faces[5:7])
    found = detector.detect(image)
    assert len(found) == 2
    assert _matches(found, places) == [1, 1]
    assert found[0].center[0] < found[1].center[0]  # numbered left to right
    for face, place in zip(found, places, strict=True):
        assert _iou(face.box, place.box) > 0.5


def test_group_photo_finds_every_face(detector, faces):
    image, places = group(faces, side=120)  # 10 faces of ~7% of the long side in two rows
    found = detector.detect(image)
    assert _matches(found, places) == [1] * len(places)
    assert len(found) == len(places)


def test_small_faces_need_the_full_range_model_and_tiles(detector, faces):
    """Faces at 4% of the long side: invisible to the short-range model, partly found by the full-range model on
    the whole photo, all found with the tiles."""
    places = [Placed(160 + 320 * i, 500 + 40 * (i % 2), 64) for i in range(5)]
    image = compose(faces[:5], places, (1600, 1200), seed=3)
    pixels = np.asarray(image)
    short_only = detector._run(detector._short, pixels, "short")
    full_only = detector._run(detector._full, pixels, "full")
    assert sum(_matches(short_only, places)) == 0
    assert sum(_matches(full_only, places)) < len(places)
    assert _matches(detector.detect(image), places) == [1] * len(places)


def test_frame_filling_faces_need_the_short_range_model(detector, faces):
    """UTKFace images as they are (the face fills the frame): the full-range model misses some, the app none."""
    full_only = [len(detector._run(detector._full, np.asarray(face), "full")) for face in faces]
    found = [detector.detect(face) for face in faces]
    assert sum(full_only) < len(faces)
    assert [len(f) for f in found] == [1] * len(faces)
    assert all(f[0].source == "short" and f[0].box[2] > 150 for f in found)


def test_no_face_in_a_face_free_photo(detector):
    for seed in range(3):
        assert detector.detect(background((1200, 900), seed), tiles="always") == []


def test_the_detector_accepts_arrays_and_any_pil_mode(detector, faces):
    image, _ = side_by_side(faces[:2])
    from_array = detector.detect(np.asarray(image))
    from_rgba = detector.detect(image.convert("RGBA"))
    assert [f.box for f in from_array] == [f.box for f in from_rgba] and len(from_array) == 2


def test_concurrent_calls_are_serialised(detector, faces):
    image, _ = side_by_side(faces[2:4])
    expected = [f.box for f in detector.detect(image)]
    results, errors = [], []

    def work():
        try:
            results.append([f.box for f in detector.detect(image)])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == [expected] * 4


def test_closed_detector_refuses_and_close_is_idempotent(faces):
    detector = FaceDetector()
    detector.close()
    detector.close()
    with pytest.raises(DetectorError, match="closed"):
        detector.detect(faces[0])


def test_missing_model_files_give_a_clear_error(tmp_path):
    with pytest.raises(DetectorError, match="face_detection_short_range.tflite is missing"):
        FaceDetector(model_dir=tmp_path)


def test_unknown_tile_policy_is_refused(detector, faces):
    with pytest.raises(ValueError, match="tiles"):
        detector.detect(faces[0], tiles="sometimes")


def test_shipped_detector_models_and_license():
    for name in ("face_detection_short_range.tflite", "face_detection_full_range_sparse.tflite", "LICENSE",
                 "SOURCE.md"):
        assert (settings.DETECTOR_DIR / name).is_file(), name
    assert "Apache License" in (settings.DETECTOR_DIR / "LICENSE").read_text(encoding="utf-8")


def test_pixel_box_and_scaling():
    face = Face((-5.4, 10.6, 50.2, 40.0), 0.9, ((1.0, 2.0),) * 6)
    assert face.pixel_box((40, 100)) == [0, 11, 40, 40]
    doubled = face.scaled(2)
    assert doubled.box == (-10.8, 21.2, 100.4, 80.0) and doubled.keypoints[0] == (2.0, 4.0)
