"""Upload decoding: allowed formats, EXIF orientation, colour modes, and every kind of bad file gets a clear
ImageError. All images are made here, in memory."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from core import images
from core.images import MAX_PIXELS, MIN_SIDE, ImageError, load_photo
from tests.photos import encode
from tests.support import PROJECT_ROOT


def _marked(size=(120, 80)) -> Image.Image:
    """Grey picture with a red block top-left, so turning it shows."""
    image = Image.new("RGB", size, (128, 128, 128))
    image.paste((255, 0, 0), (0, 0, 20, 20))
    return image


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size and holds (almost) no pixels: how a decompression bomb looks before decoding."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))


# ------------------------------------------------------------------------------------------ good images

@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_allowed_formats_decode_to_rgb(fmt):
    image = load_photo(encode(_marked(), fmt)).image
    assert image.mode == "RGB" and image.size == (120, 80)
    red = np.asarray(image)[5, 5]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


@pytest.mark.parametrize("orientation, expected_size, red_corner", [
    (1, (120, 80), (5, 5)), (3, (120, 80), (5, 5)), (6, (120, 80), (5, 5)), (8, (120, 80), (5, 5))])
def test_exif_orientation_is_applied(orientation, expected_size, red_corner):
    data = encode(_marked(), "JPEG", orientation=orientation)
    stored = Image.open(io.BytesIO(data))
    assert stored.size == ((80, 120) if orientation in (6, 8) else (120, 80))  # the file really is turned
    photo = load_photo(data)
    assert photo.image.size == expected_size and photo.full_size == expected_size
    y, x = red_corner
    assert np.asarray(photo.image)[y, x, 0] > 200  # red block back at the top left


def test_jpeg_draft_decodes_reduced_and_reports_full_size():
    data = encode(_marked((1600, 1200)), "JPEG")
    photo = load_photo(data, draft_side=800)
    assert photo.image.size == (800, 600) and photo.full_size == (1600, 1200) and photo.scale == 2.0
    assert load_photo(data).image.size == (1600, 1200)


def test_draft_with_exif_rotation_keeps_upright_full_size():
    photo = load_photo(encode(_marked((1600, 1200)), "JPEG", orientation=6), draft_side=800)
    assert photo.full_size == (1600, 1200) and photo.image.size == (800, 600)


def test_transparency_is_laid_on_white():
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 32, 64))
    pixels = np.asarray(load_photo(encode(rgba, "PNG")).image)
    assert tuple(pixels[10, 50]) == (255, 255, 255) and tuple(pixels[10, 10]) == (0, 0, 255)


def test_la_and_palette_with_transparency():
    la = Image.new("LA", (64, 64), (90, 0))
    la.paste((30, 255), (0, 0, 32, 64))
    pixels = np.asarray(load_photo(encode(la, "PNG")).image)
    assert tuple(pixels[5, 50]) == (255, 255, 255) and tuple(pixels[5, 5]) == (30, 30, 30)
    palette = Image.new("P", (64, 64), 0)
    palette.putpalette([0, 255, 0] + [200, 0, 0] * 255)
    palette.paste(1, (0, 0, 32, 64))
    pixels = np.asarray(load_photo(encode(palette, "PNG", transparency=0)).image)
    assert tuple(pixels[5, 50]) == (255, 255, 255) and tuple(pixels[5, 5]) == (200, 0, 0)


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # pure red in print colours
    pixels = np.asarray(load_photo(encode(cmyk, "JPEG")).image)
    assert pixels.shape == (64, 64, 3) and pixels[32, 32, 0] > 200 and pixels[32, 32, 1] < 60


def test_sixteen_bit_grey_is_scaled_not_clipped():
    values = np.zeros((64, 64), np.uint16)
    values[:, 32:] = 32768  # mid grey in 16 bits; Pillow's own convert would clip it to white
    grey = Image.fromarray(values)
    assert grey.mode.startswith("I;16")
    pixels = np.asarray(load_photo(encode(grey, "PNG")).image)
    assert pixels[0, 0, 0] == 0 and 120 <= pixels[0, 40, 0] <= 136


def test_one_bit_and_greyscale_images():
    assert load_photo(encode(Image.new("1", (40, 40), 1), "PNG")).image.getpixel((3, 3)) == (255, 255, 255)
    assert load_photo(encode(Image.new("L", (40, 40), 77), "BMP")).image.getpixel((3, 3)) == (77, 77, 77)


def test_nothing_is_written_to_disk(monkeypatch):
    """Decoding never opens a file: any attempt fails the test."""
    data = encode(_marked(), "PNG")
    load_photo(data)  # plugins imported before the trap is set

    def refuse(*args, **kwargs):
        raise AssertionError(f"file opened: {args[:1]}")
    monkeypatch.setattr("builtins.open", refuse)
    monkeypatch.setattr("os.open", refuse)
    assert load_photo(data).image.size == (120, 80)
    assert load_photo(encode(_marked((1600, 1200)), "JPEG"), draft_side=800).image.size == (800, 600)


# ------------------------------------------------------------------------------------------- bad input

def _error(data: bytes) -> str:
    with pytest.raises(ImageError) as caught:
        load_photo(data)
    return str(caught.value)


def test_empty_file():
    assert "empty" in _error(b"")


@pytest.mark.parametrize("content", [
    b"name,age\nalice,34\n",  # a CSV renamed .jpg
    b"<!DOCTYPE html><html><body><img src=x></body></html>",
    b"\x00\x01\x02\x03" * 100,
])
def test_non_images_are_refused(content):
    assert "not an image" in _error(content)


def test_svg_is_refused_by_name():
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    message = _error(svg)
    assert "SVG" in message and "JPEG" in message


def test_animated_gif_is_not_in_the_allow_list():
    frames = [Image.new("RGB", (64, 64), color) for color in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    message = _error(buffer.getvalue())
    assert "GIF" in message and "not supported" in message


def test_tiff_is_named_in_the_refusal():
    assert "TIFF images are not supported" in _error(encode(_marked(), "TIFF"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files(fmt):
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    data = encode(noisy, fmt)
    message = _error(data[: len(data) // 2])
    assert "damaged" in message or "incomplete" in message


def test_one_pixel_image_is_too_small():
    message = _error(encode(Image.new("RGB", (1, 1)), "PNG"))
    assert "1×1" in message and "too small" in message and str(MIN_SIDE) in message


def test_over_the_pixel_limit():
    side = int((MAX_PIXELS["PNG"] * 1.2) ** 0.5)
    message = _error(_png_header_only(side, side))
    assert "megapixels" in message and "limit" in message


def test_pillow_bomb_error_is_refused():
    """Past twice Pillow's MAX_IMAGE_PIXELS, Image.open itself raises DecompressionBombError."""
    assert "enormous" in _error(_png_header_only(30_000, 30_000))


def test_pillow_bomb_warning_is_refused_as_set_up_by_the_app():
    """Between Pillow's limit and twice it, Pillow only warns; core.images turns that warning into an error
    process-wide (pytest resets warning filters per test, so the app's filter is set again here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert "enormous" in _error(_png_header_only(10_000, 10_000))


def test_pillow_bomb_warning_is_refused_even_when_only_warned():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        assert "megapixels" in _error(_png_header_only(10_000, 10_000))  # our own, lower limit


def test_the_app_makes_bomb_warnings_errors():
    """Checked in a fresh interpreter: pytest resets warning filters around every test."""
    code = ("import warnings, core.images; from PIL import Image; print(any(f[0] == 'error' and "
            "f[2] is Image.DecompressionBombWarning for f in warnings.filters))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT,
                            timeout=60)
    assert result.stdout.strip() == "True", result.stderr


# ------------------------------------------------------------------------------- memory and upload limits

# Builds a constant 16-bit greyscale PNG row by row (so building it never holds the pixels), decodes it in this
# fresh process and prints the peak resident-memory growth in MB and the outcome.
_MEASURE = """
import resource, struct, sys, zlib
width, height = int(sys.argv[1]), int(sys.argv[2])
row = b"\\0" + b"\\x80\\x00" * width
packer = zlib.compressobj(9)
body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
def chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
data = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0))
        + chunk(b"IDAT", body) + chunk(b"IEND", b""))
del body
from core.images import ImageError, load_photo
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    photo = load_photo(data)
    grey = photo.image.getpixel((0, 0))[0]
    outcome = f"decoded {photo.image.mode} {photo.image.size} grey={grey}"
except ImageError as error:
    outcome = f"refused {error}"
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(f"{len(data)} {grown:.0f} {outcome}")
"""


def _decode_in_child(width: int, height: int) -> tuple[int, float, str]:
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(width), str(height)], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    size, grown, outcome = result.stdout.strip().splitlines()[-1].split(" ", 2)
    return int(size), float(grown), outcome


def test_a_tiny_16_bit_39_megapixel_png_is_refused_before_decoding():
    """The issue's upload: a ~80 KB PNG declaring 7200×5400 16-bit pixels cost ~1 GB while it was decoded."""
    size, grown, outcome = _decode_in_child(7200, 5400)
    assert size < 100_000 and outcome.startswith("refused") and "megapixels" in outcome, outcome
    assert grown < 50, f"refusing it grew the process by {grown:.0f} MB"


def test_a_16_bit_png_at_the_cap_decodes_in_bounded_memory():
    width = 5600
    height = MAX_PIXELS["PNG"] // width
    _, grown, outcome = _decode_in_child(width, height)
    assert outcome == f"decoded RGB ({width}, {height}) grey=128", outcome  # 0x8000 of 65535 → 128, not clipped
    assert grown < 300, f"decoding grew the process by {grown:.0f} MB"  # was ~1 GB with float64 copies


def test_each_format_has_its_own_cap():
    assert MAX_PIXELS["JPEG"] > MAX_PIXELS["PNG"] and set(MAX_PIXELS) >= set(images.ALLOWED_FORMATS)
    side = int((MAX_PIXELS["PNG"] * 1.1) ** 0.5)
    assert "limit for a PNG image is 24 megapixels" in _error(_png_header_only(side, side))


def test_32_bit_and_float_greys_are_stretched_strip_by_strip(monkeypatch):
    monkeypatch.setattr(images, "_STRIP_ROWS", 7)  # many strips, so their seams are tested too
    values = np.tile(np.linspace(-1000, 3000, 64, dtype=np.int32), (50, 1))
    rgb = np.asarray(images._to_rgb(Image.fromarray(values, "I")))
    assert rgb.shape == (50, 64, 3) and rgb[:, 0].max() == 0 and rgb[:, -1].min() == 255
    assert (np.diff(rgb[0, :, 0].astype(int)) >= 0).all() and (rgb == rgb[0]).all()
    floats = np.asarray(images._to_rgb(Image.fromarray(np.full((40, 40), 0.5, np.float32), "F")))
    assert floats.shape == (40, 40, 3)


def test_uploads_are_capped_in_count():
    files = [f"photo{i}.jpg" for i in range(images.MAX_FILES_PER_UPLOAD + 3)]
    kept, note = images.limit_uploads(files)
    assert kept == files[: images.MAX_FILES_PER_UPLOAD] and f"first {images.MAX_FILES_PER_UPLOAD} of" in note
    assert images.limit_uploads(files[:2]) == (files[:2], None)


def test_big_images_are_shrunk_for_keeping():
    big = Image.new("RGB", (4000, 3000))
    small = images.shrink_for_display(big)
    assert small.size == (images.DISPLAY_MAX_SIDE, 1200)
    tiny = Image.new("RGB", (300, 200))
    assert images.shrink_for_display(tiny) is tiny


def test_refused_formats_are_named_without_opening_them_with_other_decoders(monkeypatch):
    """Only the four allowed decoders ever see an upload's bytes: naming a refused format reads its signature."""
    calls = []
    real_open = Image.open

    def spying_open(fp, mode="r", formats=None):
        calls.append(formats)
        return real_open(fp, mode, formats)
    monkeypatch.setattr(images.Image, "open", spying_open)
    assert "TIFF images are not supported" in _error(encode(_marked(), "TIFF"))
    assert "GIF images are not supported" in _error(encode(_marked(), "GIF"))
    avif = b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif" + b"\x00" * 64  # HEIC is read (pillow-heif)
    assert "AVIF images are not supported" in _error(avif)
    assert calls and all(formats == list(images.ALLOWED_FORMATS) for formats in calls)


@pytest.mark.parametrize("make", [
    lambda: encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), np.uint8)), "PNG")[:3000],
    lambda: _png_header_only(30_000, 30_000),
    lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
])
def test_messages_hold_no_decoder_internals(make):
    data = make()
    try:  # what Pillow itself says about these bytes
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.open(io.BytesIO(data)).load()
        internal = None
    except Exception as error:  # noqa: BLE001 - any of Pillow's errors
        internal = str(error)
    message = _error(data)
    assert internal and internal not in message and "Error" not in message, message


def test_heic_photos_from_iphones_decode():
    """Issue 20: HEIC, the iPhone's default, through the pillow-heif plugin (its HEVC encoder makes the fixture)."""
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    _marked((160, 120)).save(buffer, "HEIF", quality=95)
    assert buffer.getvalue()[4:12] == b"ftypheic"
    photo = load_photo(buffer.getvalue())
    assert photo.image.mode == "RGB" and photo.full_size == (160, 120)
    assert np.asarray(photo.image)[5, 5, 0] > 200
    assert "heic" in images.EXTENSIONS and "heif" in images.EXTENSIONS
