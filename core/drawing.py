"""Predictions drawn on the photo they came from: a numbered box per face and a short label beside it.

Labels are placed so that none covers another (two people side by side get one above the other), and their text
scales with the photo's width: a photo is shown at the width of the screen, so on a phone (about 358 CSS px) a
1600 px photo is shrunk 4.5×, and text sized for a desktop became unreadable there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:  # type hints only: core.predict draws with this module
    from core.faces import Face
    from core.predict import FacePrediction

_BOX_COLORS = ("#E45756", "#4C78A8", "#54A24B", "#F58518", "#B279A2", "#EECA3B", "#72B7B2", "#FF9DA6")
# Text height as a share of the photo's width: 1/32 keeps it ≥ 11 CSS px at a phone's 358 px (measured in
# tests/test_theme.py) while a label of ~26 characters still fits in about half the photo.
_FONT_SHARE = 1 / 32
_MIN_FONT_PX = 12

Box = tuple[int, int, int, int]  # left, top, right, bottom


def face_label(number: int, prediction: FacePrediction) -> str:
    """A short label in the model's own space: years ± spread, or a group model's most likely age group."""
    age = (f"{prediction.age:.0f}±{prediction.age_std:.0f} y" if prediction.age_group is None
           else f"age {prediction.age_group}")
    race = f", {prediction.race}" if prediction.race else ""
    return f"{number}: {age}, {prediction.gender} {prediction.gender_prob:.0%}{race}"


def label_font_px(size: tuple[int, int]) -> int:
    """The label text size for a photo of `size` (its width decides how much a screen shrinks it)."""
    return max(_MIN_FONT_PX, round(size[0] * _FONT_SHARE))


def _font(size: tuple[int, int]):
    from PIL import ImageFont
    return ImageFont.load_default(size=label_font_px(size))


def _line(size: tuple[int, int]) -> int:
    return max(2, round(max(size) / 400))


def label_boxes(size: tuple[int, int], faces: list[Face], predictions: list[FacePrediction]) -> list[Box]:
    """Where each face's label goes, in its order: above its box (else below, else inside its top), then moved
    down or up past the labels already placed, so that no two overlap; always inside the photo."""
    from PIL import ImageDraw
    font, line = _font(size), _line(size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    placed: list[Box] = []
    for number, (face, prediction) in enumerate(zip(faces, predictions, strict=True), start=1):
        left, top, right, bottom = measure.textbbox((0, 0), face_label(number, prediction), font=font)
        width, height = min(right - left + 2 * line, size[0]), min(bottom - top + 2 * line, size[1])
        x, y, w, h = face.box
        label_x = min(max(0, x), size[0] - width)
        starts = [y - height, y + h, y]  # above, below, inside the box's top
        candidates = [start for start in starts if 0 <= start <= size[1] - height] or [max(0, size[1] - height)]
        placed.append(_free_spot(candidates, label_x, width, height, size[1], placed))
    return placed


def _free_spot(candidates: list[int], x: int, width: int, height: int, limit: int, placed: list[Box]) -> Box:
    """The first candidate height that overlaps no placed label, else the nearest free one found by stepping away
    from the first candidate (down, then up); the first candidate when the photo is full of labels."""
    def clashes(top: int) -> bool:
        return any(x < right and left < x + width and top < bottom and upper < top + height
                   for left, upper, right, bottom in placed)

    for top in candidates:
        if not clashes(top):
            return x, top, x + width, top + height
    first = candidates[0]
    for step in range(1, limit // max(1, height) + 2):
        for top in (first + step * height, first - step * height):
            if 0 <= top <= limit - height and not clashes(top):
                return x, top, x + width, top + height
    return x, first, x + width, first + height


def annotate(image: Image.Image, faces: list[Face], predictions: list[FacePrediction]) -> Image.Image:
    """A copy of the photo with a numbered box and a short label per face (faces in this image's pixels)."""
    from PIL import ImageDraw
    canvas = image.convert("RGB")  # always a copy: the caller's image stays clean
    draw = ImageDraw.Draw(canvas)
    line, font = _line(canvas.size), _font(canvas.size)
    boxes = label_boxes(canvas.size, faces, predictions)
    colors = [_BOX_COLORS[i % len(_BOX_COLORS)] for i in range(len(faces))]
    for face, color in zip(faces, colors, strict=True):
        x, y, w, h = face.box
        draw.rectangle((x, y, x + w, y + h), outline=color, width=line)
    for number, (prediction, label, color) in enumerate(zip(predictions, boxes, colors, strict=True), start=1):
        # labels after every box: a neighbour's box line never crosses a label
        text = face_label(number, prediction)
        top = draw.textbbox((0, 0), text, font=font)[1]
        draw.rectangle((label[0], label[1], label[2] - 1, label[3] - 1), fill=color)
        draw.text((label[0] + line, label[1] + line - top), text, fill="white", font=font)
    return canvas
