"""Make the Predict page's example photos (data/examples/) from faces of the bundled sample (data/sample).

    python -m scripts.make_examples

Each example is UTKFace faces from data/sample pasted onto a smooth generated background, so it carries the
sample's licence (non-commercial research, see data/examples/README.md) and no other. The same files come out
every time: the faces are fixed and the background is seeded."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "utkface"
EXAMPLES = ROOT / "data" / "examples"
# file → (canvas size, [(sample file, centre x, centre y, side)]): one person, two side by side, a group of four
LAYOUTS = {
    "one_person.jpg": ((720, 900), [("26_0_0_20170104201228553.jpg.chip.jpg", 360, 400, 420)]),
    "two_friends.jpg": ((1000, 620), [("25_1_0_20170116223848612.jpg.chip.jpg", 360, 310, 270),
                                      ("26_0_1_20170113181413611.jpg.chip.jpg", 640, 320, 270)]),
    "group_of_four.jpg": ((1200, 720), [("24_1_2_20170105162251371.jpg.chip.jpg", 210, 360, 230),
                                        ("26_0_3_20170117154454487.jpg.chip.jpg", 480, 330, 230),
                                        ("22_1_1_20170113010332246.jpg.chip.jpg", 750, 360, 230),
                                        ("26_0_4_20170103235020885.jpg.chip.jpg", 1010, 330, 230)]),
}


def background(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 200, (max(2, size[1] // 90), max(2, size[0] // 90), 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(8))


def make(size: tuple[int, int], faces: list[tuple[str, int, int, int]], seed: int) -> Image.Image:
    canvas = background(size, seed)
    for name, cx, cy, side in faces:
        face = Image.open(SAMPLE / name).convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
        canvas.paste(face, (cx - side // 2, cy - side // 2))
    return canvas


def main() -> int:
    EXAMPLES.mkdir(exist_ok=True)
    for seed, (file, (size, faces)) in enumerate(LAYOUTS.items()):
        make(size, faces, seed).save(EXAMPLES / file, "JPEG", quality=80, optimize=True)
        print(f"{file}: {(EXAMPLES / file).stat().st_size / 1024:.0f} KB, {len(faces)} face(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
