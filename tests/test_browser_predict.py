"""The real app in headless Chromium (served by conftest's `app_url`, with a finished fake run as its only model):
open Predict, upload a photo through the browser's file input, wait for the prediction. A screenshot goes to
tests/artifacts/ (gitignored)."""

from __future__ import annotations

import pytest

from tests.photos import encode, face_images, selfie
from tests.support import ARTIFACTS, launch, title

pytestmark = pytest.mark.browser

STARTUP_S = 240  # TensorFlow and MediaPipe imports are slow on a busy 2-core machine
RESULT_S = 300


def test_upload_in_the_browser_shows_a_prediction(app_url, shared_dir):
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing")
    photo = encode(selfie(face_images(shared_dir / "data" / "utkface", 1)[0])[0])
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url, timeout=STARTUP_S * 1000)  # in at the front door, then the sidebar, as a user
            # Until the router has run, the sidebar may list the files of pages/ (predict.py, predict_views.py…)
            title(page, "Home").wait_for(timeout=STARTUP_S * 1000)
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
