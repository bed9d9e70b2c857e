"""The real app end to end in headless Chromium: `streamlit run` in a subprocess (the `app_url` fixture in
conftest.py, with a tiny finished fake run so a model exists before the shipped one), every page opened from the
sidebar, a selfie uploaded on Predict and its age read back, a tiny training run whose curve appears on Train, and
Saliency explaining a face. Screenshots go to tests/artifacts/ (gitignored).

Runs in CI; skips with a message only where Chromium is absent (Debian: `apt-get install chromium`)."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.conftest import PROJECT_ROOT
from tests.fuzz.make_corpus import encode, selfie

pytestmark = pytest.mark.browser

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# Sidebar label → the page's title, exactly as each page draws it (regex: Evaluate's carries an emoji).
PAGES = {"Home": "^Face Insight Studio$", "Explore": "^Explore a dataset$", "Train": "^Train$",
         "Predict": "^Predict$", "Saliency": "^Saliency$", "Evaluate": "Evaluate$"}
PAGE_S = 300  # a first visit may import TensorFlow and MediaPipe on a busy 2-core machine
WORK_S = 600  # a tiny training run or a first prediction, same machine
AGE = re.compile(r"(\d+) ± (\d+) years")


def launch(playwright):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`): browser test skipped")
    return playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)


def title(page, label: str):
    return page.locator("h1").filter(has_text=re.compile(PAGES[label]))


def wait_idle(page, timeout_s: float = PAGE_S) -> None:
    """Until the script run is over: Streamlit marks stale elements while it reruns, and shows a status widget."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && !document.querySelector('[data-stale=\"true\"]')", timeout=timeout_s * 1000)


def open_page(page, label: str, timeout_s: float = PAGE_S) -> None:
    """Click the page's link in the sidebar navigation and wait until it has drawn."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=label).click()
    title(page, label).wait_for(timeout=timeout_s * 1000)
    wait_idle(page, timeout_s)


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator("body").inner_text()[:2000]


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"e2e_{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        opened = launch(p)
        try:
            yield opened
        finally:
            opened.close()


@pytest.fixture
def page(browser, app_url):
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.set_default_timeout(PAGE_S * 1000)
    tab.goto(app_url)
    title(tab, "Home").wait_for()
    yield tab
    tab.close()


def test_every_page_opens_from_the_sidebar(page):
    no_exception(page)
    shot(page, "home")
    for label in PAGES:
        open_page(page, label)
        no_exception(page)
        shot(page, label.lower())


def test_predict_reads_an_age_from_an_uploaded_selfie(page):
    open_page(page, "Predict")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [{"name": "selfie.jpg", "mimeType": "image/jpeg", "buffer": encode(selfie())}])
    page.get_by_text(AGE).first.wait_for(timeout=WORK_S * 1000)
    wait_idle(page, WORK_S)
    ages = AGE.findall(page.locator("body").inner_text())
    assert len(ages) == 1, ages  # one face in the selfie
    age, spread = map(int, ages[0])
    assert 0 <= age <= 116 and spread >= 0
    no_exception(page)
    shot(page, "predict_result")


def test_a_tiny_training_run_draws_its_curve(page):
    open_page(page, "Train")
    size = page.locator('[data-testid="stSlider"]').filter(has_text="Image size").get_by_role("slider")
    size.focus()
    size.press("Home")  # the smallest size, 32 px
    page.get_by_label("Epochs", exact=True).fill("1")
    page.get_by_label("Use at most N images (0 = all)", exact=True).fill("48")
    page.get_by_role("button", name="Start training").click()
    page.locator(".js-plotly-plot").first.wait_for(timeout=WORK_S * 1000)  # the live curve
    page.get_by_text("saved to").first.wait_for(timeout=WORK_S * 1000)
    wait_idle(page, WORK_S)
    text = page.locator("body").inner_text()
    assert "Current job: custom_cnn, 32 px" in text, text[:2000]
    assert page.locator(".js-plotly-plot").count() >= 1
    no_exception(page)
    shot(page, "train_finished")


def test_saliency_explains_a_sample_face(page):
    open_page(page, "Saliency")
    page.get_by_role("button", name="Explain").click()
    page.get_by_text("one pass, no flip averaging").first.wait_for(timeout=WORK_S * 1000)
    wait_idle(page, WORK_S)
    no_exception(page)
    shot(page, "saliency_result")
