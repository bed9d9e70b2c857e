"""Test photos made of real faces: UTKFace images (real people, already cropped and aligned) pasted onto larger,
face-free backgrounds, at known places, sizes and angles. Built in memory; nothing is stored in the repository.

Faces cut by the frame edge (`edge_selfie`, `cut_scenes`) use the bundled sample (data/sample/utkface, see its
README for UTKFace's licence: non-commercial research), so they need no ../shared.

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


# Sample faces (data/sample/utkface, so the edge photos need no ../shared) for the cut-by-the-edge selfies.
EDGE_FACE_NAMES = (
    "25_1_0_20170116223848612.jpg.chip.jpg", "32_0_0_20170111181750357.jpg.chip.jpg",
    "28_0_1_20170114032935025.jpg.chip.jpg", "24_1_2_20170105162251371.jpg.chip.jpg",
    "30_0_4_20170103230146433.jpg.chip.jpg", "26_1_1_20170116232329337.jpg.chip.jpg",
    "28_1_3_20170109141400528.jpg.chip.jpg", "30_1_0_20170117134355934.jpg.chip.jpg",
    "27_0_0_20170117114918781.jpg.chip.jpg", "25_1_4_20170103230304689.jpg.chip.jpg",
    "26_0_0_20170104201228553.jpg.chip.jpg", "24_1_3_20170104222905601.jpg.chip.jpg",
    "30_0_1_20170117130035831.jpg.chip.jpg", "28_1_4_20170117202606048.jpg.chip.jpg",
)


def edge_faces(sample_dir: Path) -> list[Image.Image]:
    return [Image.open(sample_dir / name).convert("RGB") for name in EDGE_FACE_NAMES]


def edge_selfie(faces: list[Image.Image], portrait: bool = False) -> tuple[Image.Image, list[Placed]]:
    """A group selfie of 7: the phone holder's close-up, one face half behind it, two cut by the side edges (45 %
    and 35 % of the pasted square outside the frame) and three further back. `portrait` (1200×1600) cuts one
    face by the bottom edge (35 %) instead of the right one. Faces are pasted back to front: the occluded face first."""
    size = (1200, 1600) if portrait else (1600, 1200)
    width, height = size
    if portrait:
        places = [Placed(260, 1000, 250),  # behind the close-up: its right half hidden
                  Placed(560, 1050, 600),  # the close-up
                  Placed(-0.45 * 340 + 170, 560, 340),  # cut by the left edge
                  Placed(1000, height + 0.35 * 300 - 150, 300),  # cut by the bottom edge
                  Placed(360, 300, 240), Placed(700, 420, 250), Placed(1010, 280, 230)]
    else:
        places = [Placed(1090, 700, 280),  # behind the close-up: its left half hidden
                  Placed(760, 740, 640),  # the close-up
                  Placed(-0.45 * 360 + 180, 620, 360),  # cut by the left edge
                  Placed(width + 0.35 * 320 - 160, 520, 320),  # cut by the right edge
                  Placed(360, 260, 250), Placed(780, 200, 230), Placed(1200, 240, 250)]
    return compose(faces[:len(places)], places, size, seed=7 if portrait else 6), places


def cut_scenes(pool: list[Image.Image], count: int, seed: int = 0,
               margin: int = 0) -> list[tuple[Image.Image, list[Placed]]]:
    """Random photos (alternately landscape and portrait) with three faces cut by the left, right and bottom
    edges, 18–32 % of the short side and 30–50 % outside: for measuring, apart from the fixed test selfies.
    `margin` widens every frame by that much on each side: the same scenes with the faces whole."""
    rng = np.random.default_rng(seed)
    scenes = []
    for k in range(count):
        chosen = [pool[i] for i in rng.choice(len(pool), 3, replace=False)]
        width, height = (1600, 1200) if k % 2 == 0 else (1200, 1600)
        places = []
        for edge in ("left", "right", "bottom"):
            side, out = rng.uniform(0.18, 0.32) * min(width, height), rng.uniform(0.3, 0.5)
            places.append({"left": Placed(side / 2 - out * side, height * rng.uniform(0.25, 0.75), side),
                           "right": Placed(width + out * side - side / 2, height * rng.uniform(0.25, 0.75), side),
                           "bottom": Placed(width * rng.uniform(0.3, 0.7), height + out * side - side / 2, side),
                           }[edge])
        places = [Placed(p.cx + margin, p.cy + margin, p.side) for p in places]
        scenes.append((compose(chosen, places, (width + 2 * margin, height + 2 * margin), seed=seed * 100 + k),
                       places))
    return scenes


def visible_box(place: Placed, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A placed face's box clipped to the image (a face cut by the edge is only scored on what shows)."""
    x, y, w, h = place.box
    left, top = max(0.0, x), max(0.0, y)
    return left, top, max(0.0, min(size[0], x + w) - left), max(0.0, min(size[1], y + h) - top)


def matched(boxes: list[tuple[float, float, float, float]], places: list[Placed], size: tuple[int, int],
            min_iou: float = 0.4) -> list[bool]:
    """For each placed face, whether a detection box matches its visible part (IoU ≥ min_iou, one detection per
    face, best pairs first). 0.4, not 0.5: BlazeFace's box is ~0.9 of the pasted UTKFace square's side."""
    def iou(a, b):
        iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        union = a[2] * a[3] + b[2] * b[3] - iw * ih
        return iw * ih / union if union > 0 else 0.0
    truth = [visible_box(place, size) for place in places]
    pairs = sorted(((iou(t, b), i, j) for i, t in enumerate(truth) for j, b in enumerate(boxes)), reverse=True)
    found, used = [False] * len(places), set()
    for overlap, i, j in pairs:
        if overlap >= min_iou and not found[i] and j not in used:
            found[i] = True
            used.add(j)
    return found


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
