"""Predictions drawn on the photo they came from: a numbered box per face and a short label beside it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:  # type hints only: core.predict draws with this module
    from core.faces import Face
    from core.predict import FacePrediction

_BOX_COLORS = ("#E45756", "#4C78A8", "#54A24B", "#F58518", "#B279A2", "#EECA3B", "#72B7B2", "#FF9DA6")


def face_label(number: int, prediction: FacePrediction) -> str:
    """A short label in the model's own space: years ± spread, or a group model's most likely age group."""
    age = (f"{prediction.age:.0f}±{prediction.age_std:.0f} y" if prediction.age_group is None
           else f"age {prediction.age_group}")
    race = f", {prediction.race}" if prediction.race else ""
    return f"{number}: {age}, {prediction.gender} {prediction.gender_prob:.0%}{race}"


def annotate(image: Image.Image, faces: list[Face], predictions: list[FacePrediction]) -> Image.Image:
    """A copy of the photo with a numbered box and a short label per face (faces in this image's pixels)."""
    from PIL import ImageDraw, ImageFont
    canvas = image.convert("RGB")  # always a copy: the caller's image stays clean
    draw = ImageDraw.Draw(canvas)
    line = max(2, round(max(canvas.size) / 400))
    font = ImageFont.load_default(size=max(12, round(max(canvas.size) / 50)))
    for number, (face, prediction) in enumerate(zip(faces, predictions, strict=True), start=1):
        color = _BOX_COLORS[(number - 1) % len(_BOX_COLORS)]
        x, y, w, h = face.box
        draw.rectangle((x, y, x + w, y + h), outline=color, width=line)
        text = face_label(number, prediction)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        label_h = bottom - top + 2 * line
        label_y = y - label_h if y - label_h >= 0 else min(y + h, canvas.height - label_h)
        label_x = min(max(0, x), max(0, canvas.width - (right - left) - 2 * line))
        draw.rectangle((label_x, label_y, label_x + right - left + 2 * line, label_y + label_h), fill=color)
        draw.text((label_x + line, label_y + line - top), text, fill="white", font=font)
    return canvas
