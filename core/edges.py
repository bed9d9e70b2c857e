"""Faces cut by the frame edge: windows along a photo's borders that reach past them, so that a face half outside
the frame sits inside a window, where the detector sees it (core/faces.py runs them; uploads only, see below).

BlazeFace rarely finds a face 30–50 % outside the frame on the whole photo: shrunk to 128 px it is a half face
pressed against the border. In the group selfies of tests/photos `edge_selfie` (7 people: a close-up, one face
half behind it, two cut by the edges) the whole-photo passes find none of the 4 cut faces, and 21 of 36 in
`cut_scenes` (`tests/benchmarks/bench_edges.py` prints these figures for the settings below and each padding;
the window layouts compared were measured with its functions). The
short-range model on square windows of half the short side, 40 % of each past the border, overlapping by a third,
finds all 40 once the part past the border is the photo mirrored at it: repeating the border pixels found 35,
black 25. Faces cut by the top edge (16 at each cut) were found without windows up to 30 % out; at 40 and 50 %
out 8 and 2 of them, with the windows 13 and 12: the eyes leave the frame first. A mirror image pairs the
visible half face with its reflection, which the model takes for a face; it also mirrors faces near the border
into the space past it, hence MIN_VISIBLE.

False faces: a window find is re-detected only when its box crosses the border (a find wholly inside is the
whole-photo passes' to judge) and is not a face they already saw with confidence. It is kept when the
short-range model finds it again in a window centred on it (REFINE_WINDOW face sizes, mirrored too) and one of
the two scores reaches CONFIDENT_SCORE, the whole-photo rule for a face one model saw; on face-free backgrounds
window finds score ≤ 0.67 and their re-detections ≤ 0.68, and the 50 backgrounds of the benchmark (as uploads
and at full size) get no new false face. A confirmed face's keypoints, which the crop is cut from, come from a
third pass padded black: a mirrored half face places the hidden eye at the mirror image of the visible one.
Against the same faces in a frame widened so they are whole, cut faces' crop squares are then off by a median
4.9 % of their side at the centre and 6.1 % in side (with the mirrored keypoints: 9.5 % and 12.4 %). Keypoints
past the border stay as found; align_crop fills what lies outside the photo with black, as UTKFace pads its own
crops. Boxes are clipped to the photo.

Cost and where it runs: 14 windows on an 800×600 upload (the draft decode of a 1600×1200 JPEG), one short-range
pass each, and one or two per find the frame cuts: detector passes per photo go from 2.2 to 18.8 on a one-face
selfie and from 6.1 to 26.3 on the edge photos. Fewer windows cost recall or false faces: 2 per border (8
windows, 13.5 passes on the selfie) found 38 of the 40 cut faces; one strip per border (4 windows) all 40 but
2 new false faces on the 50 backgrounds. Only the Upload path asks for it (`FaceDetector.detect(edges=True)` from
core/predict.py), and only on photos with a long side of EDGE_MIN_SIDE or more: the Live tab's frames and the
dataset path (core/crops.py `choose_face`, UTKFace crops) are detected as before, so the shipped model's
calibration and skew figures are untouched.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.faces import Face

EDGE_WINDOW = 0.5  # window side, as a fraction of the photo's short side: a cut face of ~15–35 % of it fits
EDGE_OUTSIDE = 0.4  # of each window past the border: a face half outside then sits near the window's middle
EDGE_OVERLAP = 1 / 3  # of a window shared with the next along a border: a face on one seam is mostly in the next
MIN_VISIBLE = 0.4  # of a find's box inside the frame: a face 50 % out shows ~half; a mirror image of a face near
# the border (reflect padding) lies wholly past it
EDGE_MIN_SIDE = 480  # below this the photo is a face crop or a small frame, not a scene with cut faces
PADDING = "reflect"  # numpy.pad mode for outside the frame: the photo mirrored at its border (see the docstring)
KEYPOINT_PADDING = "constant"  # for a confirmed face's keypoints, which the crop is cut from: black (a mirrored
# half face misplaces the hidden eye); the mirrored re-detection's when black loses the face

Window = tuple[int, int, int, int]  # left, top, width, height, in the photo's pixels (negative past the border)


def edge_windows(width: int, height: int) -> list[Window]:
    """Windows along each border, reaching EDGE_OUTSIDE of their depth past it."""
    side = round(min(width, height) * EDGE_WINDOW)
    out = round(side * EDGE_OUTSIDE)

    def along(length: int) -> list[int]:
        count = max(1, math.ceil((length - side) / (side * (1 - EDGE_OVERLAP)))) + 1
        return [round(i * (length - side) / (count - 1)) for i in range(count)]
    windows = []
    for top in along(height):
        windows += [(-out, top, side, side), (width - side + out, top, side, side)]
    for left in along(width):
        windows += [(left, -out, side, side), (left, height - side + out, side, side)]
    return windows


def centred_window(face: Face, size_factor: float) -> Window:
    """A square window of `size_factor` face sizes around a face (it may reach past the borders)."""
    cx, cy = face.center
    half = max(face.box[2:]) * size_factor / 2
    return round(cx - half), round(cy - half), round(2 * half), round(2 * half)


def padded_window(pixels: np.ndarray, window: Window, mode: str | None = None) -> np.ndarray:
    """The window's pixels, (height, width, 3), with the parts past the photo's borders filled by PADDING."""
    left, top, side_x, side_y = window
    height, width = pixels.shape[:2]
    inside = pixels[max(0, top):min(height, top + side_y), max(0, left):min(width, left + side_x)]
    if inside.size == 0:
        return np.zeros((side_y, side_x, 3), np.uint8)
    pad = ((max(0, -top), max(0, top + side_y - height)), (max(0, -left), max(0, left + side_x - width)), (0, 0))
    return np.ascontiguousarray(np.pad(inside, pad, mode=mode or PADDING))


def visible_fraction(face: Face, size: tuple[int, int]) -> float:
    """How much of the face's box lies inside the photo."""
    x, y, w, h = face.box
    inside = max(0.0, min(float(size[0]), x + w) - max(0.0, x)) * max(0.0, min(float(size[1]), y + h) - max(0.0, y))
    return inside / (w * h) if w * h > 0 else 0.0


def clipped(face: Face, size: tuple[int, int]) -> Face:
    """The face with its box clipped to the photo (what is drawn and matched); its keypoints are kept as found,
    past the border too, as alignment (core/alignment.py) needs the whole face's geometry and fills black."""
    x, y, w, h = face.box
    left, top = max(0.0, x), max(0.0, y)
    right, bottom = min(float(size[0]), x + w), min(float(size[1]), y + h)
    return replace(face, box=(left, top, max(0.0, right - left), max(0.0, bottom - top)))
