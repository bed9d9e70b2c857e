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
