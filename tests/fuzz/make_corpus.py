"""A corpus of hostile and awkward uploads, generated (never downloaded) in a second or two.

    python -m tests.fuzz.make_corpus OUT_DIR     # writes every case into OUT_DIR and lists them

Each case says what the app must answer: an error whose message contains given words, or a number of faces.
Faces come from the bundled UTKFace sample (data/sample/utkface), so the corpus builds on any checkout. Files are
named as a user would upload them: content that a browser would refuse by its extension (SVG, HTML, GIF, text)
is renamed to an allowed one, which is how such content reaches the app.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = ROOT / "data" / "sample" / "utkface"
# A frontal adult face the detector finds with a high score (0.96) in a selfie and in a 6×5 grid.
FACE_NAME = "25_1_2_20170116175124189.jpg.chip.jpg"
BOMB_SIDE = 7072  # 7072² ≈ 50 megapixels: past the app's 40 MP limit, under Pillow's own bomb threshold
GRID = (6, 5)  # 30 faces
FAST = Image.Quantize.FASTOCTREE  # the default median cut takes seconds on a photo


@dataclass(frozen=True)
class Case:
    """One upload. `error`: words the refusal must contain (None: the file must be analysed); `faces`: how many
    faces an analysed file holds."""
    name: str  # what the case is about
    filename: str
    make: Callable[[], bytes]
    error: tuple[str, ...] | None = None
    faces: int | None = None


def face() -> Image.Image:
    return Image.open(SAMPLE_DIR / FACE_NAME).convert("RGB")


def background(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A smooth colour field: photo-like, no face anywhere."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 215, (max(2, size[1] // 60), max(2, size[0] // 60), 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(6))


def selfie(size: tuple[int, int] = (1200, 900), side: int = 480) -> Image.Image:
    canvas = background(size)
    canvas.paste(face().resize((side, side), Image.Resampling.LANCZOS), ((size[0] - side) // 2, size[1] // 6))
    return canvas


def crowd() -> Image.Image:
    """The same face tiled 30 times, 6 × 5, on a 1600×1200 canvas."""
    cols, rows = GRID
    size, side = (1600, 1200), 150
    canvas = background(size, seed=3)
    tile = face().resize((side, side), Image.Resampling.LANCZOS)
    for row in range(rows):
        for col in range(cols):
            cx, cy = size[0] / cols * (col + 0.5), size[1] / rows * (row + 0.5)
            canvas.paste(tile, (round(cx - side / 2), round(cy - side / 2)))
    return canvas


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}) | options)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ cases

def truncated_jpeg() -> bytes:
    data = encode(selfie())
    return data[: len(data) // 3]


def animated_gif() -> bytes:
    frames = [selfie((400, 300), 160).quantize(64, FAST), background((400, 300)).quantize(64, FAST)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)
    return buffer.getvalue()


def sixteen_bit_png() -> bytes:
    grey = np.asarray(selfie().convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    return encode(Image.fromarray(grey), "PNG")  # uint16 → mode I;16


def cmyk_jpeg() -> bytes:
    return encode(selfie().convert("CMYK"))


def palette_png_with_transparency() -> bytes:
    image = selfie().quantize(256, FAST)
    return encode(image, "PNG", transparency=0)


def decompression_bomb() -> bytes:
    """A 50-megapixel single-colour PNG written row by row: ~50 KB on disk, 150 MB once decoded. Built by hand
    so making it never holds the pixels either."""
    width = height = BOMB_SIDE
    row = b"\x00" + b"\x80\x80\x80" * width  # filter byte + grey pixels
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def huge_exif_jpeg() -> bytes:
    """A selfie whose EXIF block is as large as a JPEG segment allows (~64 KB), mostly one maker note."""
    exif = Image.Exif()
    exif[0x010F] = "FuzzCam"  # Make
    exif.get_ifd(0x8769)[0x927C] = b"\xab" * 60_000  # Exif IFD → MakerNote
    return encode(selfie(), exif=exif.tobytes())


def exif_rotated_jpeg() -> bytes:
    """Stored on its side with Orientation 6, as phones do: upright only when the tag is honoured."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(selfie().transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())


SVG = (b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="400" height="400">'
       b'<circle cx="200" cy="200" r="150" fill="peachpuff"/><script>alert(1)</script></svg>\n')
HTML = b"<!DOCTYPE html>\n<html><head><title>me</title></head><body><img src='selfie.jpg'></body></html>\n"
TEXT = b"This is my selfie, I promise.\nage: 25\n"

CASES = (
    Case("0-byte file", "empty.jpg", lambda: b"", error=("empty",)),
    Case("truncated JPEG", "truncated.jpg", truncated_jpeg, error=("damaged",)),
    Case("text renamed .jpg", "notes.jpg", lambda: TEXT, error=("not an image",)),
    Case("SVG renamed .png", "drawing.png", lambda: SVG, error=("SVG", "not supported")),
    Case("HTML renamed .jpg", "page.jpg", lambda: HTML, error=("not an image",)),
    Case("animated GIF renamed .png", "animated.png", animated_gif, error=("GIF", "not supported")),
    Case("16-bit greyscale PNG", "sixteen_bit.png", sixteen_bit_png, faces=1),
    Case("CMYK JPEG", "cmyk.jpg", cmyk_jpeg, faces=1),
    Case("palette PNG with transparency", "palette.png", palette_png_with_transparency, faces=1),
    Case("1×1 image", "pixel.png", lambda: encode(Image.new("RGB", (1, 1), (200, 150, 120)), "PNG"),
         error=("1×1", "too small")),
    Case("50-megapixel decompression bomb", "bomb.png", decompression_bomb, error=("megapixels", "limit")),
    Case("huge EXIF block", "huge_exif.jpg", huge_exif_jpeg, faces=1),
    Case("EXIF-rotated photo", "rotated.jpg", exif_rotated_jpeg, faces=1),
    Case("photo with no face", "no_face.jpg", lambda: encode(background((1200, 900), seed=5)), faces=0),
    Case("30 faces", "crowd.jpg", lambda: encode(crowd()), faces=GRID[0] * GRID[1]),
)


def build(out_dir: str | Path) -> dict[str, Path]:
    """Write every case into `out_dir`; returns {case name: file}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for case in CASES:
        path = out_dir / case.filename
        path.write_bytes(case.make())
        files[case.name] = path
    return files


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.fuzz.make_corpus OUT_DIR")
    for name, path in build(sys.argv[1]).items():
        print(f"{path.stat().st_size:>9,} B  {path.name:<16} {name}")
