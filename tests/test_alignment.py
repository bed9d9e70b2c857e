"""Alignment (core.alignment) on photos of real faces: the UTKFace framing reproduced, tilted faces levelled, the
border padded black, large faces shrunk smoothly, an already-cropped face taken as its centred square, and the
shifted views the app averages over."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.alignment import VIEWS, View, align_crop, align_views, center_crop, crop_geometry, shifted, whole_image_face
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


@pytest.mark.parametrize("tilt", [0, 20])
def test_a_view_moves_the_cut_along_the_face_itself(detector, faces, tilt):
    """View(dx, dy) moves the square by that fraction of its side along the eye line and down the face: at a
    shift of whole output pixels, the shifted cut is the calibrated cut moved by those pixels, tilted face or not
    (up to resampling: a large face is box-filtered first, on a grid that moves with the square)."""
    upright, _ = selfie(faces[3], size=(1200, 1000), side=400)
    image = upright.rotate(tilt, resample=Image.Resampling.BICUBIC, fillcolor=(90, 90, 90))
    face = detector.detect(image)[0]
    base = align_crop(image, face, 64).astype(np.float32)
    right = align_crop(image, face, 64, view=View(0.125, 0.0)).astype(np.float32)  # 8 px along the eyes
    down = align_crop(image, face, 64, view=View(0.0, 0.125)).astype(np.float32)
    assert np.abs(right[:, :-8] - base[:, 8:]).mean() < 1.5 and np.abs(down[:-8] - base[8:]).mean() < 1.5
    assert np.abs(right - base).mean() > 10 and np.abs(down - base).mean() > 10  # and each is another cut


def test_views_stack_the_cuts_with_the_calibrated_one_first(detector, faces):
    image, _ = selfie(faces[1], size=(1000, 800), side=300)
    face = detector.detect(image)[0]
    views = align_views(image, face, 48)
    assert views.shape == (len(VIEWS), 48, 48, 3) and views.dtype == np.uint8 and VIEWS[0] == View()
    np.testing.assert_array_equal(views[0], align_crop(image, face, 48))
    assert len({view.tobytes() for view in views}) == len(VIEWS)


def test_a_face_crop_without_keypoints_is_shifted_black_where_uncovered():
    crop = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3) + 1
    moved = shifted(crop, View(0.25, -0.25))  # one pixel right along the face, one up
    np.testing.assert_array_equal(moved[1:, :3], crop[:3, 1:])
    assert not moved[0].any() and not moved[:, 3].any()
    assert shifted(crop, View()) is crop
    image = Image.fromarray(np.repeat(np.repeat(crop, 8, axis=0), 8, axis=1))  # 32 × 32, no keypoints
    np.testing.assert_array_equal(align_views(image, whole_image_face(image.size), 32, (View(), View(0.25, 0.0)))[1],
                                  shifted(center_crop(image, 32), View(0.25, 0.0)))
