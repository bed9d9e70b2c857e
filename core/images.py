"""Uploaded images, from bytes to an upright RGB picture, entirely in memory.

Anything a user uploads is untrusted: only four formats are decoded (whatever the file name says), the pixel
count is checked against that format's cap from the header before any pixel is decoded, and every way Pillow can
fail becomes an ImageError whose message can be shown as is (Pillow's own words go to the log).

Memory: the caps bound what one decode can cost (a 40 MP JPEG is 120 MB as RGB, a 24 MP PNG at most ~260 MB
while its transparency is flattened); 16-bit and 32-bit images are converted strip by strip, never as one
float64 copy of the whole picture (which made a 77 KB 39 MP PNG cost ~1 GB).
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from core.errors import UserError

log = logging.getLogger(__name__)

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "HEIF")
EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "heic", "heif")  # for upload widgets; the content decides
# Pixel caps per format, checked on the header. JPEG: phone photos (up to 40 MP; a reduced "draft" decode is
# available for it). Lossless formats compress flat areas to almost nothing, so a tiny file can declare a huge
# picture, and they decode to up to 4 bytes a pixel (RGBA), plus a flattened copy: capped lower.
MAX_PIXELS = {"JPEG": 40_000_000, "MPO": 40_000_000, "HEIF": 40_000_000, "PNG": 24_000_000, "WEBP": 24_000_000,
              "BMP": 24_000_000}
MAX_FILES_PER_UPLOAD = 4  # photos analysed per upload; each may cost a few hundred MB while it is processed
DISPLAY_MAX_SIDE = 1600  # long side of an image worth keeping for display
# What a session keeps of each analysed photo beside its face crops: a 1600×1200 photo is 5.8 MB decoded, most of
# the server's memory growth per visitor when sessions kept it.
SESSION_PREVIEW_SIDE = 256
MIN_SIDE = 32  # a face smaller than this holds nothing a 96 px model can use

# Pillow only *warns* between MAX_IMAGE_PIXELS and twice that. Warnings filters are process-wide and
# `catch_warnings` is not thread-safe (Streamlit serves sessions from threads), so the policy is set once here:
# a decompression bomb is an error everywhere in the app.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def _register_heif() -> bool:
    """HEIC / HEIF, an iPhone's default photo format, through the pillow-heif plugin (libheif; decodes only the
    primary image, like a phone shows it). Without the plugin such a file is refused by name, as before."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener(thumbnails=False)
    return True


HEIF_SUPPORTED = _register_heif()


class ImageError(UserError):
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
    if width * height > max_pixels(image.format):
        raise ImageError(_too_large(width, height, image.format))
    if draft_side and image.format in ("JPEG", "MPO") and max(width, height) > draft_side:
        ratio = draft_side / max(width, height)
        image.draft(image.mode, (max(1, int(width * ratio)), max(1, int(height * ratio))))
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as error:
        # Pillow reports truncation and corrupt streams as any of these, depending on the format
        log.info("Undecodable upload: %s", error)
        raise ImageError("The file is damaged or incomplete and cannot be decoded.") from error
    rgb = _to_rgb(_upright(image))
    full_size = _upright_size(image, (width, height))
    if min(full_size) < MIN_SIDE:
        raise ImageError(f"The image is only {full_size[0]}×{full_size[1]} pixels: too small to hold a face "
                         f"(at least {MIN_SIDE}×{MIN_SIDE} is needed).")
    return Photo(rgb, full_size, image.format or "")


def max_pixels(image_format: str | None) -> int:
    """The pixel cap of a format (the strictest one for a format without its own)."""
    return MAX_PIXELS.get(image_format or "", min(MAX_PIXELS.values()))


def _too_large(width: int, height: int, image_format: str | None) -> str:
    kind = f" for a {image_format} image" if image_format else ""
    return (f"The image is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); the limit{kind} is "
            f"{max_pixels(image_format) / 1e6:.0f} megapixels. Please upload a smaller copy.")


def limit_uploads(files: list) -> tuple[list, str | None]:
    """At most MAX_FILES_PER_UPLOAD of an upload's files, and a note for the user when some were left out."""
    if len(files) <= MAX_FILES_PER_UPLOAD:
        return list(files), None
    return list(files[:MAX_FILES_PER_UPLOAD]), (f"Only the first {MAX_FILES_PER_UPLOAD} of {len(files)} photos are "
                                                "analysed: upload the others separately.")


def shrink_for_display(image: Image.Image, max_side: int = DISPLAY_MAX_SIDE) -> Image.Image:
    """The image itself when small enough, else a copy whose long side is `max_side`: what to keep in a session's
    state or send to a browser instead of a full-resolution decode."""
    if max(image.size) <= max_side:
        return image
    ratio = max_side / max(image.size)
    return image.resize((max(1, round(image.width * ratio)), max(1, round(image.height * ratio))),
                        Image.Resampling.BILINEAR, reducing_gap=2.0)


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        log.info("Decompression bomb refused: %s", error)
        raise ImageError("The image declares an enormous size and was refused.") from error
    except UnidentifiedImageError:
        raise ImageError(_why_not_allowed(data)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        log.info("Unreadable upload: %s", error)
        raise ImageError("The file is damaged and cannot be read as an image.") from error


# Leading bytes of formats people upload by mistake. Read here instead of asking Pillow: opening a refused file
# with every Pillow plugin would run decoders outside the allowlist on untrusted bytes.
_SIGNATURES = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
               (b"8BPS", "PSD (Photoshop)"), (b"%PDF", "PDF"), (b"\x00\x00\x01\x00", "ICO"),
               (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
               (b"\xff\x0a", "JPEG XL"), (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"), (b"icns", "ICNS"),
               (b"qoif", "QOI"), (b"DDS ", "DDS"))
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
                b"hevm": "HEIC", b"hevs": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}


def _known_format(data: bytes) -> str | None:
    """The name of a (refused) image format recognised by its leading bytes, None when unknown."""
    if data[4:8] == b"ftyp":  # ISO media files: HEIC from iPhones, AVIF
        return _FTYP_BRANDS.get(data[8:12])
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


def _why_not_allowed(data: bytes) -> str:
    """Name the format when it is a known one (an animated GIF, a TIFF, an AVIF…), so the user knows what to
    convert."""
    allowed = "JPEG, PNG, WebP, HEIC or BMP" if HEIF_SUPPORTED else "JPEG, PNG, WebP or BMP"
    kind = _known_format(data)
    if kind in ("HEIC", "HEIF") and HEIF_SUPPORTED:  # the plugin tried and could not read it
        return f"This {kind} file is damaged and cannot be read as an image."
    if kind:
        return f"{kind} images are not supported: please upload a {allowed} file."
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) or b"<svg" in head:
        return f"SVG drawings are not supported: please upload a photo as {allowed}."
    return f"This file is not an image (or not one we can read): please upload a {allowed} file."


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright); a malformed EXIF block counts as upright: the pixels are fine."""
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # noqa: BLE001 - Pillow raises assorted errors for malformed EXIF
        return 1


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, as a phone means its photo to be seen. Only when there is one to apply:
    Pillow's exif_transpose returns a full copy even of an upright image."""
    if _orientation(image) in (1, 0):
        return image
    try:
        return ImageOps.exif_transpose(image)
    except Exception as error:  # noqa: BLE001 - Pillow raises assorted errors for malformed EXIF
        log.info("Ignoring unreadable EXIF orientation: %s", error)
        return image


def _upright_size(image: Image.Image, size: tuple[int, int]) -> tuple[int, int]:
    """The header size, swapped when the EXIF orientation turns the picture by 90°."""
    return (size[1], size[0]) if _orientation(image) in (5, 6, 7, 8) else size


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB. Transparency is laid on white; 16-bit and float greys are rescaled rather
    than clipped (Pillow's own conversion clips 16-bit values above 255 to white)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(image)
    try:
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            return _on_white(image if mode == "RGBA" else image.convert("RGBA"))
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        log.info("Colour mode %s not converted: %s", mode, error)
        raise ImageError(f"Images in the {mode} colour mode are not supported.") from error


def _on_white(rgba: Image.Image) -> Image.Image:
    # One RGB canvas with the image pasted through its own alpha: the blend alpha_composite would give on an
    # opaque white background, without its two extra RGBA copies.
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


_STRIP_ROWS = 256  # rows converted at a time: a few MB of float32 even for the widest allowed image


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer or float greys to 8-bit RGB, strip by strip (see _grey_range for the scaling)."""
    low, high = _grey_range(image)
    scale = 255.0 / max(high - low, 1e-9)
    width, height = image.size
    grey = np.empty((height, width), np.uint8)
    for top in range(0, height, _STRIP_ROWS):
        bottom = min(height, top + _STRIP_ROWS)
        strip = np.asarray(image.crop((0, top, width, bottom)), dtype=np.float32)
        grey[top:bottom] = np.clip((strip - low) * scale + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _grey_range(image: Image.Image) -> tuple[float, float]:
    """The values that map to black and white: 16-bit greys (mode I;16, or I holding 16-bit data) scale by 65535,
    8-bit data in mode I by 255; other ranges are stretched from their minimum to their maximum."""
    if image.mode.startswith("I;16"):
        return 0.0, 65535.0
    low, high = (float(v) for v in image.getextrema())  # computed by Pillow, without a copy of the pixels
    if image.mode == "I" and low >= 0 and 255 < high <= 65535:
        return 0.0, 65535.0
    if image.mode == "I" and low >= 0 and high <= 255:
        return 0.0, 255.0
    return low, high
