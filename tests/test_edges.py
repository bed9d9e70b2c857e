"""Faces cut by the frame edge (core/edges.py): window geometry, padding, and detection on group selfies built
from the bundled sample (tests/photos `edge_selfie`)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core import crops, live, predict
from core.alignment import align_crop, crop_geometry
from core.edges import EDGE_MIN_SIDE, EDGE_OUTSIDE, clipped, edge_windows, padded_window
from core.faces import Face
from core.settings import SAMPLE_DIR
from tests.photos import background, edge_faces, edge_selfie, matched

CUT = (2, 3)  # the faces of edge_selfie cut by the frame edge


@pytest.fixture(scope="module")
def selfies() -> dict[str, tuple[Image.Image, list]]:
    faces = edge_faces(SAMPLE_DIR)
    return {"landscape": edge_selfie(faces[:7]), "portrait": edge_selfie(faces[7:], portrait=True)}


def _found(detector, image: Image.Image, places: list, **options) -> tuple[list[Face], list[bool]]:
    """The faces detected and, per placed face, whether one of them matches it."""
    faces = detector.detect(image, **options)
    return faces, matched([f.pixel_box(image.size) for f in faces], places, image.size)


# --------------------------------------------------------------------------------------------- geometry

def test_edge_windows_run_along_every_border_and_reach_past_it():
    windows = edge_windows(800, 600)
    side = 300  # half the short side
    assert {(w, h) for _, _, w, h in windows} == {(side, side)}
    out = round(side * EDGE_OUTSIDE)
    left = sorted(top for x, top, _, _ in windows if x == -out)
    right = sorted(top for x, top, _, _ in windows if x == 800 - side + out)
    top = sorted(x for x, y, _, _ in windows if y == -out)
    bottom = sorted(x for x, y, _, _ in windows if y == 600 - side + out)
    assert len(left) + len(right) + len(top) + len(bottom) == len(windows)
    for starts, length in ((left, 600), (right, 600), (top, 800), (bottom, 800)):
        assert starts[0] == 0 and starts[-1] + side == length  # the whole border, corners included
        assert all(b - a <= side * 2 / 3 + 1 for a, b in zip(starts, starts[1:], strict=False))  # overlapping


def test_padded_window_keeps_the_inside_and_fills_past_the_border():
    pixels = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    window = padded_window(pixels, (-4, 2, 8, 8))  # 4 columns past the left border
    assert window.shape == (8, 8, 3) and window.flags.c_contiguous
    assert np.array_equal(window[:, 4:], pixels[2:10, 0:4])
    assert np.array_equal(window[:, 3], pixels[2:10, 1])  # mirrored at the border (reflect)
    black = padded_window(pixels, (-4, 2, 8, 8), "constant")
    assert not black[:, :4].any() and np.array_equal(black[:, 4:], pixels[2:10, 0:4])
    assert not padded_window(pixels, (50, 50, 6, 6)).any()  # wholly outside: nothing to show


def test_clipped_box_stays_in_the_photo_and_keypoints_stay_as_found():
    face = Face((-40.0, 500.0, 200.0, 200.0), 0.8, ((-10.0, 560.0),) * 6, "edge")
    inside = clipped(face, (800, 600))
    assert inside.box == (0.0, 500.0, 160.0, 100.0)
    assert inside.keypoints == face.keypoints and inside.score == 0.8


# -------------------------------------------------------------------------------------------- detection

@pytest.mark.parametrize("orientation", ["landscape", "portrait"])
def test_faces_cut_by_the_edge_are_found_with_edge_windows(detector, selfies, orientation):
    image, places = selfies[orientation]
    _, before = _found(detector, image, places)
    faces, after = _found(detector, image, places, edges=True)
    assert not any(before[i] for i in CUT)  # what issue 15 reports: the whole-photo passes miss them
    assert all(after[i] for i in CUT)
    assert all(a or not b for a, b in zip(after, before, strict=True))  # nothing found before is lost
    assert len(faces) == sum(after)  # and nothing found that is not a face
    assert sum(after) >= 6


def test_upload_path_searches_the_edges_at_draft_size(detector, selfies):
    image, places = selfies["landscape"]
    view = image.resize((800, 600), Image.Resampling.BILINEAR)  # as a 1600 px JPEG's draft decode
    faces = [f.scaled(2) for f in predict._detect(view, detector, None)]
    hits = matched([f.pixel_box(image.size) for f in faces], places, image.size)
    assert all(hits[i] for i in CUT)


def test_edge_faces_have_boxes_in_the_photo_and_crops_black_past_the_border(detector, selfies):
    image, places = selfies["landscape"]
    edge_finds = [f for f in detector.detect(image, edges=True) if f.source == "edge"]
    assert len(edge_finds) >= 2
    for face in edge_finds:
        x, y, w, h = face.box
        assert x >= 0 and y >= 0 and x + w <= image.width and y + h <= image.height
    for i in CUT:  # the crop square, from keypoints that may lie past the border, frames the whole face
        place = places[i]
        face = next(f for f in edge_finds if place.contains(*f.center))
        cx, cy, side, _ = crop_geometry(face)
        assert abs(side / place.side - 1) < 0.2 and np.hypot(cx - place.cx, cy - place.cy) < 0.15 * place.side
    left_cut = min(edge_finds, key=lambda f: f.center[0])
    crop = align_crop(image, left_cut, 96)
    assert crop.shape == (96, 96, 3)
    assert crop[:, :8].max() == 0  # past the left border: black, as UTKFace pads its own crops
    assert crop[:, 56:].mean() > 40  # the visible half of the face


def test_no_new_false_faces_on_face_free_backgrounds(detector):
    for seed in range(4):
        for size in ((1600, 1200), (1200, 1600), (800, 600)):
            image = background(size, seed)
            assert detector.detect(image, edges=True) == detector.detect(image)


# ------------------------------------------------------------------------------------ where it runs

@pytest.fixture
def edge_calls(detector, monkeypatch) -> list[tuple[int, int]]:
    calls = []
    real = detector._edge_pass

    def spy(pixels, known):
        calls.append(pixels.shape[:2])
        return real(pixels, known)
    monkeypatch.setattr(detector, "_edge_pass", spy)
    return calls


def test_edge_windows_run_only_when_asked_and_only_on_photos(detector, selfies, edge_calls):
    image, _ = selfies["landscape"]
    detector.detect(image)
    assert edge_calls == []  # off by default
    crop = edge_faces(SAMPLE_DIR)[0]
    detector.detect(crop, edges=True)
    assert max(crop.size) < EDGE_MIN_SIDE and edge_calls == []  # a face crop has no frame edge to look past
    detector.detect(image, edges=True)
    assert edge_calls == [(1200, 1600)]


def test_dataset_crops_and_live_frames_do_not_search_the_edges(detector, selfies, edge_calls):
    """The dataset path (the shipped model's calibration) and the Live tab (its frame budget) are unchanged."""
    image, _ = selfies["landscape"]
    crops.choose_face(image, detector)
    crops.choose_face(edge_faces(SAMPLE_DIR)[3], detector)

    class NoModel:
        img_size = 32

        def predict(self, batch):
            return [None] * len(batch)
    live.analyze_frame(image.resize((640, 480)), NoModel(), detector)
    assert edge_calls == []
