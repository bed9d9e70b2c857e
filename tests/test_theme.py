"""Issue 20, item 9: the theme follows the browser's light or dark preference with the app's palette in both, and
a Predict result stays readable on a phone (390 × 844 CSS px)."""

from __future__ import annotations

import tomllib

import pytest

from tests.photos import encode, face_images, side_by_side
from tests.support import ARTIFACTS, PROJECT_ROOT, launch, open_tab

CONFIG = PROJECT_ROOT / ".streamlit" / "config.toml"
PHONE = {"width": 390, "height": 844}


def test_the_theme_is_not_forced_and_both_schemes_keep_the_palette():
    theme = tomllib.loads(CONFIG.read_text(encoding="utf-8"))["theme"]
    assert "base" not in theme, "a forced base ignores the browser's light/dark preference"
    for scheme in ("light", "dark"):
        assert {"primaryColor", "backgroundColor", "textColor"} <= set(theme[scheme]), scheme
    assert theme["light"]["primaryColor"] == theme["dark"]["primaryColor"]


@pytest.mark.browser
def test_dark_browsers_get_the_dark_scheme_and_phones_can_read_the_labels(app_url, shared_dir):
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing")
    from core.drawing import label_font_px

    size = (1000, 600)
    pair = encode(side_by_side(face_images(shared_dir / "data" / "utkface")[:2], size=size)[0])
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = open_tab(browser, app_url, "Predict", "/predict", viewport=PHONE)
            page.emulate_media(color_scheme="dark")
            page.wait_for_timeout(1500)
            background = page.evaluate("getComputedStyle(document.querySelector('.stApp')).backgroundColor")
            channels = [int(v) for v in background[background.index("(") + 1:-1].split(",")[:3]]
            assert max(channels) < 80, f"dark preference, light background {background}"
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
                [{"name": "pair.jpg", "mimeType": "image/jpeg", "buffer": pair}])
            page.get_by_text("Face 2").first.wait_for()
            shown = page.locator('[data-testid="stImage"] img').first
            shown.scroll_into_view_if_needed()
            width = shown.evaluate("img => img.getBoundingClientRect().width")
            text_px = label_font_px(size) * width / size[0]
            page.screenshot(path=str(ARTIFACTS / "predict_phone_dark.png"))
            print(f"phone: photo shown {width:.0f} CSS px wide, label text {text_px:.1f} CSS px")
            assert width <= PHONE["width"] and text_px >= 9, (width, text_px)
        finally:
            browser.close()
