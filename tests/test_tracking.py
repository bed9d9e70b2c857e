"""core/tracking.py on synthetic box sequences at 30 frames per second: faces entering, leaving, blinking, two faces
crossing, and labels that settle instead of flickering."""

from __future__ import annotations

import pytest

from core.datasets import RACES
from core.faces import Face
from core.predict import FacePrediction
from core.tracking import FaceTracker, TrackerConfig, blend, iou

FRAME_S = 1 / 30
SIDE = 80


def face(x: float, y: float = 200, side: float = SIDE) -> Face:
    return Face((x, y, side, side), 0.9, ((x + side / 3, y + side / 3), (x + 2 * side / 3, y + side / 3)), "short")


def prediction(age: float, female: float = 0.2, race: str = "White") -> FacePrediction:
    return FacePrediction(age, 3.0, female, {name: 0.8 if name == race else 0.05 for name in RACES})


def run(tracker: FaceTracker, frames: list[list[tuple[Face, FacePrediction]]], start: int = 0):
    """Feed frames of (face, prediction) pairs one per 1/30 s; returns the tracks after each."""
    after = []
    for i, frame in enumerate(frames, start=start):
        after.append(tracker.update(i * FRAME_S, [f for f, _ in frame], [p for _, p in frame]))
    return after


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert iou((0, 0, 10, 10), (20, 0, 10, 10)) == 0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0


def test_a_face_entering_gets_the_next_number_and_the_first_keeps_its_own():
    tracker = FaceTracker()
    frames = [[(face(100), prediction(30))] + ([(face(400), prediction(60))] if i >= 5 else []) for i in range(10)]
    after = run(tracker, frames)
    assert [t.number for t in after[4]] == [1]
    assert [t.number for t in after[5]] == [1, 2]
    assert [t.number for t in after[-1]] == [1, 2]
    assert after[-1][1].face.box[0] == 400


def test_a_face_that_leaves_is_dropped_and_one_that_comes_back_later_is_new():
    tracker = FaceTracker()
    present = [[(face(100), prediction(30)), (face(400), prediction(60))] for _ in range(10)]
    run(tracker, present)
    alone = [[(face(100), prediction(30))] for _ in range(30)]  # one second without the second face
    after = run(tracker, alone, start=10)
    assert [t.number for t in after[0]] == [1, 2]  # one miss is a blink, not a departure
    assert [t.number for t in after[5]] == [1, 2]  # still within forget_after_s
    assert [t.number for t in after[-1]] == [1]
    back = run(tracker, present[:1], start=40)
    assert [t.number for t in back[0]] == [1, 3]  # numbers are never reused


def test_a_blink_keeps_the_face_and_its_number():
    tracker = FaceTracker()
    frames = [[(face(100 + i), prediction(30))] if i not in (6, 7, 8) else [] for i in range(15)]
    after = run(tracker, frames)
    assert all([t.number for t in tracks] == [1] for tracks in after)


def test_a_slow_model_does_not_lose_faces_between_its_runs():
    """Runs 0.7 s apart (a loaded machine): each run misses nothing, so no track may be forgotten."""
    tracker = FaceTracker()
    for run_index in range(5):
        tracks = tracker.update(run_index * 0.7, [face(100)], [prediction(30)])
        assert [t.number for t in tracks] == [1]
    tracks = tracker.update(5 * 0.7, [], [])  # one run that misses it: still kept
    assert [t.number for t in tracks] == [1]
    assert tracker.update(6 * 0.7, [], []) == []  # a second miss, long unseen: gone


def test_two_faces_crossing_keep_their_identities():
    """A (age 20) moves right and B (age 60) left at 300 px/s on one row; they pass each other between two frames,
    where matching on the last boxes alone would swap them. The velocity each track has learnt keeps them apart."""
    tracker = FaceTracker()
    young, old = prediction(20, female=0.1), prediction(60, female=0.9)
    frames = []
    for i in range(21):
        a, b = face(100 + 10 * i), face(305 - 10 * i)  # level between frames 10 and 11
        frames.append(sorted([(a, young), (b, old)], key=lambda pair: pair[0].box[0]))  # left to right, as detected
    after = run(tracker, frames)
    first, second = after[-1]
    assert (first.number, second.number) == (1, 2)
    assert first.face.box[0] == 300 and second.face.box[0] == 105  # A ended on the right, B on the left
    assert first.prediction.age == pytest.approx(20, abs=1) and second.prediction.age == pytest.approx(60, abs=1)
    assert first.velocity[0] == pytest.approx(300, rel=0.05) and second.velocity[0] == pytest.approx(-300, rel=0.05)


def test_labels_settle_instead_of_flickering_and_follow_a_real_change():
    tracker = FaceTracker()
    noisy = [[(face(100), prediction(30 + 10 * (i % 2), female=0.45 + 0.3 * (i % 2)))] for i in range(60)]
    after = run(tracker, noisy)
    settled = [tracks[0].prediction for tracks in after[30:]]
    assert all(33 <= p.age <= 37 for p in settled)  # the raw ages jump 30 ↔ 40 every frame
    assert len({p.gender for p in settled}) == 1  # the raw call flips 45 % ↔ 75 % every frame
    changed = run(tracker, [[(face(100), prediction(60))] for _ in range(60)], start=60)
    assert changed[-1][0].prediction.age > 58  # two seconds on, the average has followed


def test_boxes_between_model_runs_move_on_with_their_velocity_for_a_while():
    config = TrackerConfig()
    tracker = FaceTracker(config)
    run(tracker, [[(face(100 + 10 * i), prediction(30))] for i in range(10)])  # 300 px/s, last at x = 190
    last = 9 * FRAME_S
    (moved, _), = tracker.faces_at(last + 0.1)
    assert moved.box[0] == pytest.approx(190 + 30, abs=1)
    assert moved.keypoints[0][0] == pytest.approx(190 + SIDE / 3 + 30, abs=1)
    (far, _), = tracker.faces_at(last + 10)
    assert far.box[0] == pytest.approx(190 + 300 * config.max_coast_s, abs=1)


def test_blend_is_one_step_of_a_moving_average():
    mixed = blend(prediction(20, 0.0, "White"), prediction(40, 1.0, "Black"), 0.25)
    assert mixed.age == pytest.approx(25) and mixed.female_prob == pytest.approx(0.25)
    assert sum(mixed.race_probs.values()) == pytest.approx(1)
    assert mixed.race_probs["White"] == pytest.approx(0.8 * 0.75 + 0.05 * 0.25)
