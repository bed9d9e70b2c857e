"""Test photos made of real faces: UTKFace images (real people, already cropped and aligned) pasted onto larger,
face-free backgrounds, at known places, sizes and angles. Built in memory; nothing is stored in the repository.

The pasted square is the ground truth: a face pasted at `side` px spans the UTKFace framing, so an aligned crop of
it should give back the original picture.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

# Frontal, well-lit adults (UTKFace file names: age_gender_race_timestamp), one per gender × race.
FACE_NAMES = (
    "26_0_0_20170117200030565.jpg.chip.jpg", "37_0_1_20170117104624750.jpg.chip.jpg",
    "40_0_2_20170117001148193.jpg.chip.jpg", "28_0_3_20170119194725939.jpg.chip.jpg",
    "38_0_4_20170117021834297.jpg.chip.jpg", "54_1_0_20170103183727146.jpg.chip.jpg",
    "51_1_1_20170113010949270.jpg.chip.jpg", "23_1_2_20170102235032243.jpg.chip.jpg",
    "28_1_3_20170104232916497.jpg.chip.jpg", "25_1_4_20161220222242243.jpg.chip.jpg",
)


@dataclass(frozen=True)
class Placed:
    """Where a UTKFace square landed: its centre, side and counter-clockwise rotation on screen (degrees)."""
    cx: float
    cy: float
    side: float
    angle: float = 0.0

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Axis-aligned box of the pasted square."""
        reach = self.side / 2 * (abs(math.cos(math.radians(self.angle))) + abs(math.sin(math.radians(self.angle))))
        return self.cx - reach, self.cy - reach, 2 * reach, 2 * reach

    def contains(self, x: float, y: float) -> bool:
        bx, by, bw, bh = self.box
        return bx <= x <= bx + bw and by <= y <= by + bh


def face_images(utkface_dir: Path, count: int = len(FACE_NAMES)) -> list[Image.Image]:
    return [Image.open(utkface_dir / name).convert("RGB") for name in FACE_NAMES[:count]]


def background(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A smooth random colour field: photo-like variety, and no face anywhere."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 215, (max(2, size[1] // 60), max(2, size[0] // 60), 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(6))


def compose(faces: list[Image.Image], places: list[Placed], size: tuple[int, int], seed: int = 0) -> Image.Image:
    canvas = background(size, seed)
    for face, place in zip(faces, places, strict=True):
        side = round(place.side)
        tile = face.resize((side, side), Image.Resampling.LANCZOS).convert("RGBA")
        if place.angle:
            tile = tile.rotate(place.angle, resample=Image.Resampling.BICUBIC, expand=True)
        canvas.paste(tile, (round(place.cx - tile.width / 2), round(place.cy - tile.height / 2)), tile)
    return canvas


def selfie(face: Image.Image, size: tuple[int, int] = (1600, 1200), side: int = 640,
           angle: float = 0.0) -> tuple[Image.Image, Placed]:
    """One large face, a little above centre, like a phone selfie."""
    place = Placed(size[0] / 2, size[1] * 0.45, side, angle)
    return compose([face], [place], size), place


def side_by_side(faces: list[Image.Image], size: tuple[int, int] = (1000, 600),
                 side: int = 300) -> tuple[Image.Image, list[Placed]]:
    """Faces in one row, evenly spaced, like two people next to each other."""
    step = size[0] / len(faces)
    places = [Placed(step * (i + 0.5), size[1] / 2, side) for i in range(len(faces))]
    return compose(faces, places, size, seed=1), places


def group(faces: list[Image.Image], size: tuple[int, int] = (1600, 1000), side: int = 120,
          rows: int = 2) -> tuple[Image.Image, list[Placed]]:
    """A group photo: faces of one size in rows, the back row a little smaller, as people further away are."""
    per_row = math.ceil(len(faces) / rows)
    places = []
    for i in range(len(faces)):
        row, col = divmod(i, per_row)
        row_side = side * (0.85 ** (rows - 1 - row))
        step = size[0] / per_row
        stagger = (row % 2 - 0.5) * step / 4  # rows offset sideways, so back-row faces show between front ones
        places.append(Placed(step * (col + 0.5) + stagger, size[1] * (row + 1) / (rows + 1), row_side))
    return compose(faces, places, size, seed=2), places


def encode(image: Image.Image, fmt: str = "JPEG", orientation: int | None = None, **options) -> bytes:
    """Image file bytes. With an EXIF `orientation`, the pixels are stored turned so that a viewer honouring the
    tag (as phones expect) shows `image` upright."""
    stored_turn = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    if orientation is not None:
        image = image.transpose(stored_turn[orientation]) if orientation in stored_turn else image
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 92} if fmt == "JPEG" else {}) | options)
    return buffer.getvalue()
