"""Uploaded images, from bytes to an upright RGB picture, entirely in memory.

Anything a user uploads is untrusted: only four formats are decoded (whatever the file name says), the pixel
count is checked from the header before any pixel is decoded, and every way Pillow can fail becomes an
ImageError whose message can be shown as is.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")  # for upload widgets; the content decides, not the name
MAX_PIXELS = 40_000_000  # above any phone photo in normal use; a 40 MP RGB image is already 120 MB in memory
MIN_SIDE = 32  # a face smaller than this holds nothing a 96 px model can use

# Pillow only *warns* between MAX_IMAGE_PIXELS and twice that. Warnings filters are process-wide and
# `catch_warnings` is not thread-safe (Streamlit serves sessions from threads), so the policy is set once here:
# a decompression bomb is an error everywhere in the app.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


class ImageError(Exception):
    """An upload that cannot be used as a photo; the message says why in words a user understands."""


@dataclass(frozen=True)
class Photo:
    """An upright RGB image. `image` may be a reduced decode (see `load_photo`); `full_size` is the size of the
    whole-resolution upright image, the coordinate system answers are reported in."""
    image: Image.Image
    full_size: tuple[int, int]
    format: str

    @property
    def scale(self) -> float:
        """Full-resolution pixels per pixel of `image` (1.0 unless decoded reduced)."""
        return self.full_size[0] / self.image.width


def load_image(data: bytes) -> Image.Image:
    """Decode an upload at full resolution to an upright RGB image, or raise ImageError."""
    return load_photo(data).image


def load_photo(data: bytes, draft_side: int | None = None) -> Photo:
    """Decode an upload to an upright RGB image, or raise ImageError.

    With `draft_side`, a JPEG is decoded at the smallest 1/2, 1/4 or 1/8 scale whose long side is still at least
    that: the decoder skips the work, so a 2 MP photo decodes in ~2 ms instead of ~15 ms. Other formats are
    decoded whole.
    """
    if not data:
        raise ImageError("The file is empty (0 bytes).")
    image = _open(data)
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(_too_large(width, height))
    if draft_side and image.format in ("JPEG", "MPO") and max(width, height) > draft_side:
        ratio = draft_side / max(width, height)
        image.draft(image.mode, (max(1, int(width * ratio)), max(1, int(height * ratio))))
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as error:
        # Pillow reports truncation and corrupt streams as any of these, depending on the format
        raise ImageError(f"The file is damaged or incomplete and cannot be decoded ({error}).") from error
    rgb = _to_rgb(_upright(image))
    full_size = _upright_size(image, (width, height))
    if min(full_size) < MIN_SIDE:
        raise ImageError(f"The image is only {full_size[0]}×{full_size[1]} pixels: too small to hold a face "
                         f"(at least {MIN_SIDE}×{MIN_SIDE} is needed).")
    return Photo(rgb, full_size, image.format or "")


def _too_large(width: int, height: int) -> str:
    return (f"The image is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); the limit is "
            f"{MAX_PIXELS / 1e6:.0f} megapixels. Please upload a smaller copy.")


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"The image declares an enormous size and was refused ({error}).") from error
    except UnidentifiedImageError:
        raise ImageError(_why_not_allowed(data)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"The file is damaged and cannot be read as an image ({error}).") from error


def _why_not_allowed(data: bytes) -> str:
    """Name the format when Pillow knows it (an animated GIF, a TIFF…), so the user knows what to convert."""
    allowed = "JPEG, PNG, WebP or BMP"
    try:
        with Image.open(io.BytesIO(data)) as other:
            kind = other.format
    except Exception:  # noqa: BLE001 - any failure just means "not an image we recognise"
        kind = None
    if kind:
        return f"{kind} images are not supported: please upload a {allowed} file."
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) or b"<svg" in head:
        return f"SVG drawings are not supported: please upload a photo as {allowed}."
    return f"This file is not an image (or not one we can read): please upload a {allowed} file."


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, as a phone means its photo to be seen. A broken EXIF block is ignored rather
    than refused: the pixels are still fine."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception as error:  # noqa: BLE001 - Pillow raises assorted errors for malformed EXIF
        log.info("Ignoring unreadable EXIF orientation: %s", error)
        return image


def _upright_size(image: Image.Image, size: tuple[int, int]) -> tuple[int, int]:
    """The header size, swapped when the EXIF orientation turns the picture by 90°."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - malformed EXIF: treated as upright by `_upright` too
        orientation = 1
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB. Transparency is laid on white; 16-bit and float greys are rescaled rather
    than clipped (Pillow's own conversion clips 16-bit values above 255 to white)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_grey_to_uint8(np.asarray(image, dtype=np.float64), mode)).convert("RGB")
    try:
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ImageError(f"Images in the {mode} colour mode are not supported ({error}).") from error


def _grey_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit greys (mode I;16, or I holding 16-bit data) scale by 65535; other ranges are stretched."""
    low, high = float(values.min()), float(values.max())
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and 255 < high <= 65535):
        low, high = 0.0, 65535.0
    elif low >= 0 and high <= 255 and mode == "I":
        low, high = 0.0, 255.0
    return np.clip((values - low) / max(high - low, 1e-9) * 255 + 0.5, 0, 255).astype(np.uint8)
