"""Alignment (core.alignment) on photos of real faces: the UTKFace framing reproduced, tilted faces levelled, the
border padded black, large faces shrunk smoothly, and an already-cropped face taken as its centred square."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.alignment import align_crop, center_crop, crop_geometry, whole_image_face
from core.faces import Face
from tests.photos import Placed, compose, selfie


def _eyes_level_after_alignment(detector, crop: np.ndarray) -> float:
    """Detect again on the aligned crop (on a canvas, so the face is at a comfortable size) → its eye angle."""
    canvas = Image.new("RGB", (3 * crop.shape[1],) * 2, (0, 0, 0))
    canvas.paste(Image.fromarray(crop), (crop.shape[1], crop.shape[0]))
    again = detector.detect(canvas, tiles="never")
    assert len(again) == 1
    return again[0].eye_angle


def test_crop_reproduces_the_utkface_framing(detector, faces):
    """A UTKFace face pasted at twice its size: the aligned crop gives back (nearly) the original picture, and
    closer than a tighter or looser framing would."""
    image, _ = selfie(faces[7], size=(1200, 1000), side=400)
    face = detector.detect(image)[0]
    original = np.asarray(faces[7].resize((96, 96), Image.Resampling.BILINEAR), dtype=np.float32)

    def difference(**options) -> float:
        return float(np.abs(align_crop(image, face, 96, **options).astype(np.float32) - original).mean())
    chosen = difference()
    assert chosen < 20
    assert chosen < difference(side_factor=1.243 * 0.85) and chosen < difference(side_factor=1.243 * 1.2)


@pytest.mark.parametrize("tilt", [20, -20])
def test_alignment_levels_a_tilted_face(detector, faces, tilt):
    """Photos turned by 20°: the detector sees the tilt, and the aligned crops have level eyes (measured by
    detecting again on the crop; the detector's own eye angle wobbles by ~3°), unlike crops not levelled."""
    levelled, kept = [], []
    for face_image in faces[:4]:
        upright, _ = selfie(face_image, size=(1200, 1000), side=400)
        tilted = upright.rotate(tilt, resample=Image.Resampling.BICUBIC, fillcolor=(90, 90, 90))
        face = detector.detect(tilted)[0]
        assert abs(face.eye_angle + tilt) < 5  # counter-clockwise on screen is a negative angle in image axes
        assert crop_geometry(face)[3] == pytest.approx(face.eye_angle)
        crop = align_crop(tilted, face, 192)
        levelled.append(_eyes_level_after_alignment(detector, crop))
        kept.append(_eyes_level_after_alignment(detector, align_crop(tilted, face, 192, level=False)))
        # the levelled crop looks like the crop of the upright photo
        reference = align_crop(upright, detector.detect(upright)[0], 192).astype(np.float32)
        unlevelled = align_crop(tilted, face, 192, level=False)
        assert np.abs(crop - reference).mean() < np.abs(unlevelled - reference).mean() - 5
    assert max(abs(a) for a in levelled) < 6 and np.mean(np.abs(levelled)) < 4
    assert min(abs(a) for a in kept) > 14


def test_faces_near_the_border_are_padded_black(detector, faces):
    place = Placed(120, 400, 260)  # the crop square reaches past the left edge
    image = compose([faces[2]], [place], (1000, 800), seed=4)
    face = detector.detect(image)[0]
    crop = align_crop(image, face, 96)
    assert crop.shape == (96, 96, 3) and crop[:, 0].max() < 10


def test_large_faces_are_shrunk_smoothly(detector, faces):
    """A 1000 px face down to 96 px: box-filtered first, so a crop of a finely striped face stays grey."""
    stripes = np.zeros((200, 200, 3), np.uint8)
    stripes[:, ::2] = 255
    face = Face((0, 0, 1000, 1000), 0.9, ((350, 400), (650, 400), (500, 550), (500, 700), (250, 420), (750, 420)))
    image = Image.fromarray(stripes).resize((1000, 1000), Image.Resampling.NEAREST)
    crop = align_crop(image, face, 96)
    assert 90 < crop[20:76, 20:76].mean() < 165 and crop[20:76, 20:76].std() < 40


def test_whole_image_face_is_the_centred_square():
    face = whole_image_face((300, 200))
    assert face.box == (50, 0, 200, 200) and face.score is None and face.keypoints == ()
    image = Image.new("RGB", (300, 200), (255, 0, 0))
    image.paste((0, 0, 255), (50, 0, 250, 200))
    crop = center_crop(image, 64)
    assert crop.shape == (64, 64, 3) and crop[:, :, 2].min() > 240  # only the blue centre square
    assert np.array_equal(align_crop(image, face, 64), crop)
