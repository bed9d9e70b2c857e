"""The one crop path: dataset images are cut the way an upload is (detect + align), with the dataset crop as the
counted fallback."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core import crops, settings
from core.alignment import align_crop
from tests.photos import background, selfie

SAMPLE = sorted(str(p) for p in settings.SAMPLE_DIR.glob("*.jpg"))


@pytest.mark.parametrize(("size", "expected"), [
    ((200, 200), True), ((160, 200), True), ((1024, 900), True),  # dataset crops, a cropped selfie
    ((1600, 1200), False), ((400, 150), False), ((1200, 1200), False),  # a photo, a banner, a large square
])
def test_face_crop_shape_is_small_and_squareish(size, expected):
    assert crops.looks_like_face_crop(size) is expected


def test_a_frame_filling_face_is_found_with_a_border(detector):
    """UTKFace's own crops often defeat BlazeFace: the face fills the frame. With a border it is found, and its
    keypoints land inside the original image."""
    missed_plain, found_padded = 0, 0
    for path in SAMPLE[:60]:
        image = Image.open(path).convert("RGB")
        if detector.detect(image, "never"):
            continue
        missed_plain += 1
        faces = crops.detect_padded(image, detector)
        if faces:
            found_padded += 1
            x, y = faces[0].keypoints[2]  # the nose tip
            assert 0 <= x <= image.width and 0 <= y <= image.height
    assert missed_plain > 0, "expected some sample crops that the plain pass misses"
    assert found_padded / missed_plain >= 0.9


def test_nearly_every_sample_image_gets_a_detected_face(detector):
    choices = [crops.choose_face(Image.open(p).convert("RGB"), detector) for p in SAMPLE[:100]]
    assert all(choice is not None for choice in choices)
    assert np.mean([choice.detected for choice in choices]) >= 0.98


def test_the_central_face_wins_over_a_neighbour():
    from core.faces import Face
    size = (200, 200)
    central = Face((50, 40, 110, 120), 0.9, ())
    edge = Face((150, 0, 50, 50), 0.95, ())
    assert crops.central_face([edge, central], size) is central
    assert crops.central_face([], size) is None


def test_a_face_free_scene_is_not_taken_as_a_face(detector):
    assert crops.choose_face(background((1600, 1200), seed=5), detector) is None


def test_a_face_free_small_square_is_taken_whole_and_counted(detector):
    choice = crops.choose_face(background((200, 200), seed=6), detector)
    assert choice is not None and not choice.detected
    assert "face crop" in choice.note


def test_dataset_crops_equal_the_app_cut_of_the_same_image(detector):
    """load_app_crops cuts exactly what the upload path's align_crop cuts from the detected keypoints."""
    paths = SAMPLE[:8]
    images, detections = crops.load_app_crops(paths, 64, use_cache=False)
    assert images.shape == (8, 64, 64, 3) and images.dtype == np.uint8
    for path, image in zip(paths, images, strict=True):
        picture = Image.open(path).convert("RGB")
        choice = crops.choose_face(picture, detector)
        np.testing.assert_array_equal(image, crops.cut(picture, choice, 64))
    assert detections.found.sum() == sum(crops.choose_face(Image.open(p).convert("RGB"), detector).detected
                                         for p in paths)


def test_load_crops_serves_both_modes_from_one_call():
    """Training, evaluation and weight averaging ask load_crops; each mode gives its own pixels."""
    from core.pipeline import load_images
    paths = SAMPLE[:4]
    app, detections = crops.load_crops(paths, 48, "app", use_cache=False)
    np.testing.assert_array_equal(app, crops.load_app_crops(paths, 48, use_cache=False)[0])
    assert detections is not None and len(detections.keypoints) == 4
    dataset, none = crops.load_crops(paths, 48, "dataset", use_cache=False)
    np.testing.assert_array_equal(dataset, load_images(paths, 48, use_cache=False))
    assert none is None and not np.array_equal(app, dataset)
    with pytest.raises(ValueError, match="crop mode"):
        crops.load_crops(paths, 48, "tight")


def test_views_are_cut_per_image_for_both_modes(tmp_path, monkeypatch):
    """With views, every image is cut once per view, the calibrated cut first; cached apart from the one-cut array."""
    from core.alignment import VIEWS, shifted
    monkeypatch.setenv("FACE_CACHE_DIR", str(tmp_path))
    paths = SAMPLE[:256]  # enough to be cached
    one, _ = crops.load_app_crops(paths, 32)
    views, _ = crops.load_app_crops(paths, 32, views=VIEWS)
    assert views.shape == (256, len(VIEWS), 32, 32, 3)
    np.testing.assert_array_equal(views[:, 0], one)
    assert not np.array_equal(views[:, 1], one) and len(list(tmp_path.glob("appcrops-32px-256-*.npy"))) == 2
    np.testing.assert_array_equal(crops.load_app_crops(paths, 32, views=VIEWS)[0], views)  # from the cache
    dataset, _ = crops.load_crops(paths[:3], 32, "dataset", use_cache=False, views=VIEWS)
    plain, _ = crops.load_crops(paths[:3], 32, "dataset", use_cache=False)
    np.testing.assert_array_equal(dataset[:, 0], plain)
    np.testing.assert_array_equal(dataset[2, 4], shifted(plain[2], VIEWS[4]))


def test_detections_are_cached_per_image_list(tmp_path, monkeypatch):
    monkeypatch.setenv("FACE_CACHE_DIR", str(tmp_path))
    paths = SAMPLE[:64]
    first = crops.detect_dataset(paths)
    assert list(tmp_path.glob("faces-64-*.npy"))
    np.testing.assert_array_equal(crops.detect_dataset(paths).keypoints, first.keypoints)


def test_a_photo_crop_matches_the_pasted_face(faces, detector):
    """On a selfie made of a UTKFace face, the app crop of the photo resembles the original crop."""
    photo, _ = selfie(faces[0])
    choice = crops.choose_face(photo, detector)
    assert choice is not None and choice.detected
    crop = align_crop(photo, choice.face, 96).astype(float)
    original = crops.cut(faces[0], crops.choose_face(faces[0], detector), 96).astype(float)
    assert np.abs(crop - original).mean() < 30
