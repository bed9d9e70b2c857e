"""The Live tab in headless Chromium with a fake camera: a .y4m video made here from the bundled sample faces,
composed on a 640×480 frame, stands in for the webcam. The WebRTC stream must connect (on this machine's own
addresses: no STUN server is reachable without internet, and none is needed between two local peers), the video the
server sends back must carry the labels it drew (its pixels compared with the input's, read from the <video>
element through a canvas), and the measured frame rate must appear. The server is conftest's `app_url`. A
screenshot goes to tests/artifacts/."""

from __future__ import annotations

import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from core.settings import SAMPLE_DIR
from tests.photos import Placed, compose
from tests.support import PROJECT_ROOT

pytestmark = pytest.mark.browser

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
FAKE_CAMERA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
               "--autoplay-policy=no-user-gesture-required"]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
FRAME_SIZE = (640, 480)
FIRST_LABEL = (0xE4, 0x57, 0x56)  # core.predict's colour for face 1: its box and the fill behind its label
COLOUR_TOLERANCE = 40  # per channel: the video is VP8-compressed both ways
SENT_FAR = 80  # per channel: a pixel sent this far from the label colour does not come back near it undrawn
MIN_DRAWN = 1000  # pixels (see drawn_pixels)
PAGE_S = 300  # a first visit imports MediaPipe on a busy 2-core machine
STREAM_S = 180  # connecting, loading the model, the first labelled frames


def sample_faces(count: int) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in sorted(SAMPLE_DIR.glob("*.jpg"))[:count]]


def camera_picture() -> np.ndarray:
    """Two sample faces on a 640×480 background: a still picture, so each returned frame can be compared with
    it pixel by pixel (faces that move are core/tracking.py's tests)."""
    places = [Placed(170, 250, 220), Placed(470, 250, 220)]
    return np.asarray(compose(sample_faces(2), places, FRAME_SIZE, seed=4))


def write_y4m(path, frames: list[np.ndarray], fps: int = 30) -> None:
    """Raw 4:2:0 video as Chromium's fake camera reads it: a YUV4MPEG2 header, then each frame's Y, U and V planes
    (BT.601 full range, chroma averaged over 2×2 pixels)."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            r, g, b = (frame[..., i].astype(np.float32) for i in range(3))
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
            v = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
            out.write(b"FRAME\n" + _plane(y))
            for chroma in (u, v):
                out.write(_plane(chroma.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))))


def _plane(values: np.ndarray) -> bytes:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8).tobytes()


def label_distance(pixels: np.ndarray) -> np.ndarray:
    """Each pixel's largest channel difference from face 1's label colour."""
    return np.abs(pixels.astype(np.int16) - np.array(FIRST_LABEL, np.int16)).max(axis=-1)


def drawn_pixels(returned: np.ndarray, sent: np.ndarray) -> int:
    """Pixels of the label colour in the returned frame where the frame sent was far from it: what the server drew.
    Measured through a VP8 round trip (aiortc's codec, 0.1–1 Mbit/s): a frame sent back undrawn scores 0, one with
    two labels ~2,400 (a box outline and the fill behind its text). Merely "near the colour" would not do: the
    background's reds drift in and out of any tolerance under compression, ~800–1,900 pixels of an undrawn frame."""
    return int(((label_distance(returned) <= COLOUR_TOLERANCE) & (label_distance(sent) > SENT_FAR)).sum())


# The <video> the component plays the server's stream in, read back through a canvas, as a (lossless) PNG
READ_VIDEO = """
(video) => {
  if (!video.videoWidth || video.readyState < 2) return null;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return canvas.toDataURL("image/png");
}
"""


def returned_frame(video) -> np.ndarray | None:
    """The frame the returned video shows now, RGB; None before it plays."""
    data_url = video.evaluate(READ_VIDEO)
    if data_url is None:
        return None
    png = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_the_live_tab_streams_the_camera_back_with_labels_and_shows_the_frame_rate(app_url, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing")
    picture = camera_picture()
    video_file = tmp_path / "faces.y4m"
    write_y4m(video_file, [picture] * 10)
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            *CHROMIUM_ARGS, *FAKE_CAMERA, f"--use-file-for-fake-video-capture={video_file}"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.set_default_timeout(PAGE_S * 1000)
        try:
            page.goto(f"{app_url}/predict")
            page.get_by_role("heading", name="Predict").wait_for()
            page.get_by_role("tab", name="Live").click()
            page.get_by_text("Analyse my webcam live").click()
            component = page.frame_locator('iframe[title*="webrtc_streamer"]')
            component.get_by_role("button", name="Start").click()
            returned = wait_for_labels(component.locator("video"), picture)
            assert returned is not None, "the returned video never played"
            assert returned.shape == picture.shape
            assert drawn_pixels(returned, picture) > MIN_DRAWN
            Image.fromarray(returned).save(ARTIFACTS / "live_returned_frame.png")

            fps = page.locator('[data-testid="stMetric"]').filter(has_text="Frames drawn per second")
            value = fps.locator('[data-testid="stMetricValue"]')
            shown = []
            for _ in range(30):  # the fragment shows the rate once a second; it counts from the first frames
                shown.append(float(value.inner_text(timeout=STREAM_S * 1000)))
                if shown[-1] > 0:
                    break
                page.wait_for_timeout(1000)
            assert shown[-1] > 0, shown
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            page.screenshot(path=str(ARTIFACTS / "predict_live.png"))  # the page as it was, passed or failed
            browser.close()


def wait_for_labels(video, picture: np.ndarray) -> np.ndarray | None:
    """The first returned frame with labels drawn on it, else the last one seen (None if none played)."""
    video.wait_for(timeout=STREAM_S * 1000)
    returned = None
    for _ in range(STREAM_S):  # about a second a poll
        returned = returned_frame(video)
        if returned is not None and returned.shape == picture.shape and drawn_pixels(returned, picture) > MIN_DRAWN:
            break
        video.page.wait_for_timeout(500)
    return returned
