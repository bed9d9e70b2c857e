"""The real app in headless Chromium: start `streamlit run`, open Predict, upload a photo through the browser's
file input, wait for the prediction. A screenshot goes to tests/artifacts/ (gitignored)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import PROJECT_ROOT
from tests.photos import encode, face_images, selfie

pytestmark = pytest.mark.browser

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
STARTUP_S = 240  # TensorFlow and MediaPipe imports are slow on a busy 2-core machine
RESULT_S = 300


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {STARTUP_S} s")


@pytest.fixture
def app_url(tmp_path, tiny_residual_model):
    """`streamlit run` in its own process group, with a finished fake run as its only trained model."""
    run = tmp_path / "runs" / "20250101-000000-residual_cnn"
    run.mkdir(parents=True)
    shutil.copy(tiny_residual_model, run / "model.keras")
    (run / "config.json").write_text(json.dumps({"model": {"arch": "residual_cnn", "img_size": 32}}))
    (run / "metrics.json").write_text(json.dumps({"status": "finished"}))
    port = _free_port()
    env = {**os.environ, "FACE_RUNS_DIR": str(tmp_path / "runs"), "FACE_CACHE_DIR": str(tmp_path / "cache")}
    log = (tmp_path / "streamlit.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # our own process group only
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_upload_in_the_browser_shows_a_prediction(app_url, shared_dir):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`): browser test skipped")
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing")
    photo = encode(selfie(face_images(shared_dir / "data" / "utkface", 1)[0])[0])
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url, timeout=STARTUP_S * 1000)  # in at the front door, then the sidebar, as a user
            page.locator('[data-testid="stSidebarNav"] a', has_text="Predict").click(timeout=STARTUP_S * 1000)
            page.get_by_role("heading", name="Predict").wait_for(timeout=STARTUP_S * 1000)
            file_input = page.locator('[data-testid="stFileUploader"] input[type="file"]')
            file_input.wait_for(state="attached", timeout=STARTUP_S * 1000)
            file_input.set_input_files([{"name": "me.jpg", "mimeType": "image/jpeg", "buffer": photo}])
            page.get_by_text("years").first.wait_for(timeout=RESULT_S * 1000)
            page.get_by_text("Face 1").first.wait_for(timeout=10_000)
            assert page.get_by_text("Face 2").count() == 0
            # the annotated photo, the crop and both charts drawn before the screenshot
            page.locator('[data-testid="stImage"] img').nth(1).wait_for(timeout=60_000)
            page.locator(".js-plotly-plot").nth(1).wait_for(timeout=60_000)
            page.wait_for_timeout(1000)  # let Plotly finish its first paint
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(ARTIFACTS / "predict_page.png"))
            # Streamlit scrolls inside its own container, so a "full page" shot is only the viewport: a second
            # shot with the face card in view
            page.get_by_text("Face 1").first.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "predict_page_face.png"))
        finally:
            browser.close()
    assert (ARTIFACTS / "predict_page.png").stat().st_size > 10_000
    assert (ARTIFACTS / "predict_page_face.png").stat().st_size > 10_000
