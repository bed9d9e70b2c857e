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

import numpy as np
from PIL import Image

from core.faces import Face

# Crop geometry, measured on UTKFace (bench_predict.py --calibrate prints these from the data).
CROP_SIDE_PER_KEYPOINT_SPAN = 1.243  # crop side / (eye distance + eye-to-mouth distance)
EYES_FROM_TOP = 0.31  # height of the eye line, as a fraction of the crop side


def crop_geometry(face: Face, side_factor: float = CROP_SIDE_PER_KEYPOINT_SPAN,
                  level: bool = True) -> tuple[float, float, float, float]:
    """(center x, center y, side, angle in degrees) of the square to cut for this face. A `side_factor` other
    than the calibrated one, or `level=False` (keep the photo's tilt), are for comparisons."""
    (rx, ry), (lx, ly), _, (mx, my) = face.keypoints[:4]
    eye_x, eye_y = (rx + lx) / 2, (ry + ly) / 2
    span = math.hypot(lx - rx, ly - ry) + math.hypot(mx - eye_x, my - eye_y)
    side = side_factor * span
    angle = math.atan2(ly - ry, lx - rx) if level else 0.0
    down = (-math.sin(angle), math.cos(angle))  # the face's own "down", perpendicular to the eye line
    shift = (0.5 - EYES_FROM_TOP) * side
    return eye_x + down[0] * shift, eye_y + down[1] * shift, side, math.degrees(angle)


def align_crop(image: Image.Image, face: Face, size: int, side_factor: float = CROP_SIDE_PER_KEYPOINT_SPAN,
               level: bool = True) -> np.ndarray:
    """The face as a (size, size, 3) uint8 crop: eyes level, framed like a UTKFace image. Outside the photo is
    black, as in UTKFace's own crops. `level=False` keeps the photo's own tilt (for comparison)."""
    if not face.keypoints:
        return center_crop(image, size)
    cx, cy, side, angle = crop_geometry(face, side_factor, level)
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
