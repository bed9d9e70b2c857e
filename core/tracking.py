"""Faces followed from one video frame to the next, with steady labels (the Predict page's Live tab, core/live.py).

A detection continues the track whose box, moved on by the track's own velocity to this moment, it overlaps most
(IoU): two faces that pass each other keep their identities, where matching against the last boxes would swap
them as they cross. Each track's age and probabilities are an exponential moving average over its detections, with
a time constant rather than a fixed weight so that labels settle as fast whether the model refreshes at 5 or 30 Hz;
the flicker of one face's label from frame to frame (age ±3 years, a 48/52 gender call) is what the average
removes. A track is dropped once `forget_after_misses` detection runs in a row have missed it and it has been unseen
for `forget_after_s`: both, so that neither a model refreshing at 30 Hz (a miss every few frames is common) nor
one refreshing at 2 Hz (half a second between runs) loses faces that are still there. A blink or a turned head
does not renumber a face; a face that has left the picture goes soon after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from core.faces import Face, intersection
from core.predict import FacePrediction

Box = tuple[float, float, float, float]  # x, y, width, height, as Face.box


@dataclass(frozen=True)
class TrackerConfig:
    min_iou: float = 0.3  # below this a detection starts a new track (a face moves < 1/3 of its box per refresh)
    forget_after_s: float = 0.5  # a track unseen this long… (a blink is ~0.15 s)
    forget_after_misses: int = 2  # …and missed by this many runs in a row is dropped
    label_time_constant_s: float = 0.5  # labels follow a real change (a new face under an old box) within ~1 s
    velocity_time_constant_s: float = 0.15  # the box's velocity: steady, still quick to follow a turn
    max_coast_s: float = 0.25  # a box moves on by its velocity this long at most after its last detection


@dataclass(frozen=True)
class Track:
    number: int  # 1, 2, … in order of first appearance; never reused within one tracker
    face: Face  # the last detection
    prediction: FacePrediction  # smoothed over the track's detections
    velocity: tuple[float, float]  # of the box centre, px/s
    last_seen: float  # the time of the last detection, s
    hits: int = 1  # detections so far
    misses: int = 0  # detection runs in a row that did not find it

    def face_at(self, t: float, max_coast_s: float) -> Face:
        """The face where its velocity has carried it by time `t` (at most `max_coast_s` past the detection)."""
        dt = min(max(0.0, t - self.last_seen), max_coast_s)
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        if dx == dy == 0:
            return self.face
        x, y, w, h = self.face.box
        return replace(self.face, box=(x + dx, y + dy, w, h),
                       keypoints=tuple((kx + dx, ky + dy) for kx, ky in self.face.keypoints))


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes; 0 when either is empty."""
    shared = intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - shared
    return shared / union if union > 0 else 0.0


def blend(old: FacePrediction, new: FacePrediction, weight: float) -> FacePrediction:
    """`weight` of the new prediction and the rest of the old: one step of an exponential moving average. The race
    probabilities still sum to one."""
    def mix(a: float, b: float) -> float:
        return a + weight * (b - a)
    return FacePrediction(mix(old.age, new.age), mix(old.age_std, new.age_std), mix(old.female_prob, new.female_prob),
                          {name: mix(p, new.race_probs[name]) for name, p in old.race_probs.items()},
                          {name: mix(p, new.age_group_probs[name]) for name, p in old.age_group_probs.items()})


def _step_weight(dt: float, time_constant: float) -> float:
    """The weight of a new sample `dt` after the last one, for an average with this time constant."""
    return 1.0 if time_constant <= 0 else 1.0 - math.exp(-max(dt, 0.0) / time_constant)


class FaceTracker:
    """Tracks across the frames given to `update`. Not thread-safe: one tracker per video stream."""

    def __init__(self, config: TrackerConfig = TrackerConfig()):
        self.config = config
        self._tracks: list[Track] = []
        self._next_number = 1

    @property
    def tracks(self) -> list[Track]:
        return list(self._tracks)

    def update(self, t: float, faces: list[Face], predictions: list[FacePrediction]) -> list[Track]:
        """One frame's detections at time `t` (seconds, any clock that only goes forward): each continues the
        track it matches or starts one; tracks unseen for too long are dropped. Returns the tracks, oldest first."""
        matches = self._match(t, faces)
        kept = []
        for index, track in enumerate(self._tracks):
            if index in matches:
                detection = matches[index]
                kept.append(self._continued(track, t, faces[detection], predictions[detection]))
            elif not self._forgotten(track, t):
                kept.append(replace(track, misses=track.misses + 1))
        matched = set(matches.values())
        for detection, (face, prediction) in enumerate(zip(faces, predictions, strict=True)):
            if detection not in matched:
                kept.append(Track(self._next_number, face, prediction, (0.0, 0.0), t))
                self._next_number += 1
        self._tracks = kept
        return self.tracks

    def faces_at(self, t: float) -> list[tuple[Face, FacePrediction]]:
        """Every track's face where it has moved to by `t`, with its smoothed prediction, oldest track first: what
        a frame between two model runs shows."""
        return [(track.face_at(t, self.config.max_coast_s), track.prediction) for track in self._tracks]

    def _forgotten(self, track: Track, t: float) -> bool:
        """Whether this update, which misses the track again, drops it."""
        return (track.misses + 1 >= self.config.forget_after_misses
                and t - track.last_seen > self.config.forget_after_s)

    def _match(self, t: float, faces: list[Face]) -> dict[int, int]:
        """Track index → detection index, greedily by overlap with each track's box moved on to `t`."""
        pairs = []
        for i, track in enumerate(self._tracks):
            expected = track.face_at(t, self.config.max_coast_s).box
            pairs += [(iou(expected, face.box), i, j) for j, face in enumerate(faces)]
        matches: dict[int, int] = {}
        for overlap, i, j in sorted(pairs, reverse=True):
            if overlap < self.config.min_iou:
                break
            if i not in matches and j not in matches.values():
                matches[i] = j
        return matches

    def _continued(self, track: Track, t: float, face: Face, prediction: FacePrediction) -> Track:
        dt = t - track.last_seen
        velocity = track.velocity
        if dt > 0:
            (x0, y0), (x1, y1) = track.face.center, face.center
            # the second detection gives the first estimate whole; later ones are averaged in
            weight = 1.0 if track.hits == 1 else _step_weight(dt, self.config.velocity_time_constant_s)
            velocity = (velocity[0] + weight * ((x1 - x0) / dt - velocity[0]),
                        velocity[1] + weight * ((y1 - y0) / dt - velocity[1]))
        label_weight = _step_weight(dt, self.config.label_time_constant_s)
        return Track(track.number, face, blend(track.prediction, prediction, label_weight), velocity, t,
                     track.hits + 1)
