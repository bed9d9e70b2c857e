"""Predictions drawn on a photo (core.drawing): a numbered box per face with its label, on a copy."""

from __future__ import annotations

import numpy as np
from PIL import Image

from core.drawing import annotate, face_label
from core.faces import Face
from core.labels import RACES
from core.predict import FacePrediction

PREDICTION = FacePrediction(34.4, 2.6, 0.1, {race: 0.8 if race == "Asian" else 0.05 for race in RACES})


def test_a_label_gives_number_age_spread_gender_and_race():
    assert face_label(2, PREDICTION) == "2: 34±3 y, male 90%, Asian"


def test_each_face_gets_a_box_on_a_copy_of_the_photo():
    photo = Image.new("RGB", (400, 300), (128, 128, 128))
    faces = [Face((40, 120, 100, 100), 0.9), Face((240, 120, 100, 100), 0.8)]
    drawn = annotate(photo, faces, [PREDICTION, PREDICTION])
    before, after = np.asarray(photo), np.asarray(drawn)
    assert drawn.size == photo.size and drawn is not photo and (before == 128).all()  # the photo stays clean
    for x, y, w, h in (face.box for face in faces):
        assert (after[y + h // 2, x] != 128).any()  # the box's left side
        assert (after[y + h // 2, x + w // 2] == 128).all()  # the face itself is untouched
        assert (after[y - 5, x + 5] != 128).any()  # the label, above the box
    assert not np.array_equal(after[170, 40], after[170, 240])  # each face its own colour
    assert np.array_equal(np.asarray(annotate(photo, [], [])), before)


def test_labels_of_two_close_faces_do_not_overlap():
    """Issue 20: two faces side by side, boxes nearly touching: each label gets its own place, inside the photo,
    and is drawn in its face's colour there."""
    from core.drawing import label_boxes

    photo = Image.new("RGB", (640, 400), (128, 128, 128))
    faces = [Face((200, 150, 110, 110), 0.9), Face((320, 160, 110, 110), 0.8)]
    boxes = label_boxes(photo.size, faces, [PREDICTION, PREDICTION])
    (a_left, a_top, a_right, a_bottom), (b_left, b_top, b_right, b_bottom) = boxes
    assert a_right <= b_left or b_right <= a_left or a_bottom <= b_top or b_bottom <= a_top, boxes
    for left, top, right, bottom in boxes:
        assert 0 <= left < right <= photo.width and 0 <= top < bottom <= photo.height
    drawn = np.asarray(annotate(photo, faces, [PREDICTION, PREDICTION]))
    for (left, top, _, _), colour in zip(boxes, ("#E45756", "#4C78A8"), strict=True):
        assert tuple(drawn[top + 1, left + 1]) == tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def test_label_text_scales_with_the_photo_so_a_phone_can_read_it():
    """A photo shown at a phone's width (358 CSS px inside a 390 px screen) keeps its label text ≥ 9 px tall."""
    from core.drawing import label_font_px

    for size in ((1600, 1200), (1200, 1600), (800, 600), (400, 400), (4000, 3000)):
        shown = min(358, size[0]) / size[0]
        assert label_font_px(size) * shown >= 9, size
