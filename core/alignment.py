"""Cutting a detected face out of a photo the way the training faces were cut (core/faces.py finds it).

UTKFace's "aligned & cropped" faces are levelled (eyes horizontal) and cut square around the face
from the top of the forehead to just below the chin, with little background. Measured by running the detector
on 1,500 of them (`--calibrate`): the crop side is 1.24 × (eye distance + eye-to-mouth distance), within 4.6%;
the eyes are centred and 31% from the top. (The BlazeFace box gives 1.08 × its width, within 4.4%, but the box
shrinks as a face tilts: 0.94 at 20°, 0.87 at 30°, where the keypoint span stays within 2%.) `align_crop` cuts
that square, turned by the eye angle, in one resampling step. Crops of held-out faces pasted at random sizes and
tilts (`--margin`) match the UTKFace originals best at this framing: mean pixel difference 25 at 96 px, against
28 for 10% tighter, 33 for 10% looser, 33 without levelling and 36 for the bare BlazeFace box. The first shipped
model (15 epochs) agrees, on 599 of its held-out test faces: age MAE 5.80 / gender 91.5% / race 80.5% at this
framing, against 5.98 / 90.8% / 79.6% 10% tighter, 6.21 / 91.2% / 79.5% 10% looser, 6.32 / 91.3% / 78.8% not
levelled and 6.68 / 88.8% / 76.1% on the bare box (4.89 age MAE on the UTKFace originals themselves).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.faces import Face

# Crop geometry, measured on UTKFace (bench_predict.py --calibrate prints these from the data).
CROP_SIDE_PER_KEYPOINT_SPAN = 1.243  # crop side / (eye distance + eye-to-mouth distance)
EYES_FROM_TOP = 0.31  # height of the eye line, as a fraction of the crop side


@dataclass(frozen=True)
class View:
    """One cut of a face for test-time averaging: the crop square moved by `dx` of its side along the eye line and
    `dy` down the face. View() is the calibrated cut itself."""
    dx: float = 0.0
    dy: float = 0.0


# Test-time views: the calibrated cut and four cuts shifted by 4 % of the side (within the ±5 % shift training
# augments with), each with its mirror image, averaged. On the shipped model's validation split (n = 2,165, app
# path) they read age MAE 4.609 / gender 94.04 % / race 84.67 % against 4.626 / 93.90 % / 84.71 % for the one cut:
# the detector's keypoints jitter, and so does a single cut's reading. In the experiment that chose them (shifts
# along the image axes, 4.605 years), cutting shifted squares from the photo beat shifting the cut crop (4.620: the
# strip it uncovers is invented); two more views, 6 % larger and smaller, gave 4.600 for 40 % more passes; ±6°
# turns 4.623. Uploads and Evaluate use them; live frames one view.
VIEW_SHIFT = 0.04
VIEWS = (View(), View(-VIEW_SHIFT, 0.0), View(VIEW_SHIFT, 0.0), View(0.0, -VIEW_SHIFT), View(0.0, VIEW_SHIFT))
ONE_VIEW = (View(),)


def crop_geometry(face: Face, side_factor: float = CROP_SIDE_PER_KEYPOINT_SPAN, level: bool = True,
                  view: View = View()) -> tuple[float, float, float, float]:
    """(center x, center y, side, angle in degrees) of the square to cut for this face, moved as `view` says. A
    `side_factor` other than the calibrated one, or `level=False` (keep the photo's tilt), are for comparisons."""
    (rx, ry), (lx, ly), _, (mx, my) = face.keypoints[:4]
    eye_x, eye_y = (rx + lx) / 2, (ry + ly) / 2
    span = math.hypot(lx - rx, ly - ry) + math.hypot(mx - eye_x, my - eye_y)
    side = side_factor * span
    angle = math.atan2(ly - ry, lx - rx) if level else 0.0
    down = (-math.sin(angle), math.cos(angle))  # the face's own "down", perpendicular to the eye line
    along = (math.cos(angle), math.sin(angle))  # the eye line
    shift = (0.5 - EYES_FROM_TOP + view.dy) * side
    return (eye_x + down[0] * shift + along[0] * view.dx * side, eye_y + down[1] * shift + along[1] * view.dx * side,
            side, math.degrees(angle))


def align_crop(image: Image.Image, face: Face, size: int, side_factor: float = CROP_SIDE_PER_KEYPOINT_SPAN,
               level: bool = True, view: View = View()) -> np.ndarray:
    """The face as a (size, size, 3) uint8 crop: eyes level, framed like a UTKFace image. Outside the photo is
    black, as in UTKFace's own crops. `level=False` keeps the photo's own tilt (for comparison)."""
    if not face.keypoints:
        return shifted(center_crop(image, size), view)
    cx, cy, side, angle = crop_geometry(face, side_factor, level, view)
    reduction = int(side / size / 1.5)
    if reduction > 1:
        # Bilinear sampling alone aliases when shrinking a lot; a box-filter reduce first keeps it smooth.
        half = side / math.sqrt(2) + reduction
        left, top = math.floor(cx - half), math.floor(cy - half)
        region = image.crop((left, top, math.ceil(cx + half), math.ceil(cy + half))).reduce(reduction)
        image, cx, cy, side = region, (cx - left) / reduction, (cy - top) / reduction, side / reduction
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    step = side / size
    # output (u, v) -> input: center + (u/size - 1/2) * side * eye_direction + (v/size - 1/2) * side * down
    coefficients = (step * cos, -step * sin, cx - side / 2 * (cos - sin),
                    step * sin, step * cos, cy - side / 2 * (sin + cos))
    crop = image.transform((size, size), Image.Transform.AFFINE, coefficients,
                           resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    return np.asarray(crop, dtype=np.uint8)


def whole_image_face(image_size: tuple[int, int]) -> Face:
    """The centred square of an image that is already a face crop, as a Face (no score, no keypoints)."""
    width, height = image_size
    side = min(width, height)
    return Face(((width - side) / 2, (height - side) / 2, side, side), None, (), "whole-image")


def center_crop(image: Image.Image, size: int) -> np.ndarray:
    """The centred square, resized: how an already-cropped face is fed to the model."""
    x, y, side, _ = whole_image_face(image.size).box
    square = image.crop((round(x), round(y), round(x + side), round(y + side)))
    return np.asarray(square.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.uint8)


def align_views(image: Image.Image, face: Face, size: int, views: tuple[View, ...] = VIEWS) -> np.ndarray:
    """The face cut once per view, (len(views), size, size, 3) uint8, for a predictor to average over."""
    return np.stack([align_crop(image, face, size, view=view) for view in views])


def shifted(crops: np.ndarray, view: View) -> np.ndarray:
    """A crop, or a stack of crops (…, size, size, 3), moved by a view's shift in whole pixels, black where it
    uncovers: the views of an image that is already the face crop (nothing to cut a shifted square from; UTKFace
    pads its own crops black too)."""
    size = crops.shape[-2]
    dx, dy = round(view.dx * size), round(view.dy * size)
    if not dx and not dy:
        return crops
    out = np.zeros_like(crops)
    src_y, dst_y = slice(max(dy, 0), size + min(dy, 0)), slice(max(-dy, 0), size + min(-dy, 0))
    src_x, dst_x = slice(max(dx, 0), size + min(dx, 0)), slice(max(-dx, 0), size + min(-dx, 0))
    out[..., dst_y, dst_x, :] = crops[..., src_y, src_x, :]
    return out
