"""The real app end to end in headless Chromium: `streamlit run` in a subprocess (the `app_url` fixture in
conftest.py, with a tiny finished fake run so a model exists before the shipped one), every page opened from the
sidebar, a selfie uploaded on Predict and its age read back, a tiny training run whose curve appears on Train, and
Saliency explaining a face. Screenshots go to tests/artifacts/ (gitignored).

Runs in CI; skips with a message only where Chromium is absent (Debian: `apt-get install chromium`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.settings import SAMPLE_DIR
from tests.fuzz.make_corpus import encode, selfie
from tests.support import (
    AGE,
    ARTIFACTS,
    PAGES,
    finished_runs,
    no_exception,
    open_page,
    open_tab,
    start_app,
    stop_app,
    wait_idle,
)

pytestmark = pytest.mark.browser

WORK_S = 600  # a tiny training run or a first prediction, same machine
FIXTURES = Path(__file__).parent / "fixtures"
def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"e2e_{name}.png"), full_page=True)


@pytest.fixture
def page(browser, app_url):
    tab = open_tab(browser, app_url)
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
    since = finished_runs(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [{"name": "selfie.jpg", "mimeType": "image/jpeg", "buffer": encode(selfie())}])
    page.get_by_text(AGE).first.wait_for(timeout=WORK_S * 1000)
    wait_idle(page, since, WORK_S)
    ages = AGE.findall(page.locator("body").inner_text())
    assert len(ages) == 1, ages  # one face in the selfie
    age, spread = map(int, ages[0])
    assert 0 <= age <= 116 and spread >= 0
    no_exception(page)
    shot(page, "predict_result")


def _start_a_tiny_run(page) -> int:
    """Set the Train form to its smallest run (32 px, 1 epoch, 48 images) and start it; returns the runs count
    before, for `wait_idle`."""
    size = page.locator('[data-testid="stSlider"]').filter(has_text="Image size").get_by_role("slider")
    size.focus()
    size.press("Home")  # the smallest size, 32 px
    page.get_by_label("Epochs", exact=True).fill("1")
    page.get_by_label("Use at most N images (0 = all)", exact=True).fill("48")
    since = finished_runs(page)
    page.get_by_role("button", name="Start training").click()
    return since


def test_a_tiny_training_run_draws_its_curve(page):
    open_page(page, "Train")
    since = _start_a_tiny_run(page)
    page.locator(".js-plotly-plot").first.wait_for(timeout=WORK_S * 1000)  # the live curve
    page.get_by_text("saved to").first.wait_for(timeout=WORK_S * 1000)
    wait_idle(page, since, WORK_S)
    text = page.locator("body").inner_text()
    assert "Current job: custom_cnn, 32 px" in text, text[:2000]
    assert page.locator(".js-plotly-plot").count() >= 1
    no_exception(page)
    shot(page, "train_finished")


def _choose(page, label: str, option: str) -> None:
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
    page.get_by_role("option", name=option).first.click()


@pytest.fixture
def workbench_page(browser, tmp_path):
    """A tab on the app served in workbench mode (the owner's own machine: any dataset folder), runs in tmp."""
    process, url = start_app(tmp_path, {"FACE_MODE": "workbench", "FACE_RUNS_DIR": str(tmp_path / "runs"),
                                        "FACE_CACHE_DIR": str(tmp_path / "cache")})
    try:
        tab = open_tab(browser, url)
        yield tab
        tab.close()
    finally:
        stop_app(process)


# Each reference model on data of its own kind, and the test metrics of that kind's label space it must show
REFERENCE_RUNS = {
    "levi_hassner": ("Adience", FIXTURES / "adience", "Test age-group accuracy", "Test race accuracy"),
    "fairface_cnn": ("FairFace", FIXTURES / "fairface", "Test race accuracy", "Test age MAE"),
    "vgg16": ("UTKFace", SAMPLE_DIR, "Test age MAE", "Test age-group accuracy"),
}


@pytest.mark.parametrize("arch", list(REFERENCE_RUNS))
def test_a_reference_model_trains_from_the_page_in_its_own_labels(arch, workbench_page):
    """Each reference model trains one epoch from the page on its own kind of data and reports in that data's
    labels: Levi–Hassner on Adience (age groups and gender, no race figure: Adience has none), the FairFace CNN on
    FairFace (age groups, race-7), VGG16 on UTKFace (years)."""
    kind, folder, shown, absent = REFERENCE_RUNS[arch]
    page = workbench_page
    open_page(page, "Train")
    _choose(page, "Dataset kind", kind)
    page.get_by_label("Dataset folder", exact=True).fill(str(folder))
    _choose(page, "Architecture", re.compile(f"^{arch}"))
    since = _start_a_tiny_run(page)
    page.get_by_text(shown).first.wait_for(timeout=WORK_S * 1000)  # the finished job's metrics
    wait_idle(page, since, WORK_S)
    shot(page, f"train_{arch}")
    text = page.locator("body").inner_text()
    assert f"Current job: {arch}, 32 px" in text, text[:2000]
    assert absent not in text, text[:3000]
    no_exception(page)


def test_saliency_explains_a_sample_face(page):
    open_page(page, "Saliency")
    since = finished_runs(page)
    page.get_by_role("button", name="Explain").click()
    page.get_by_text("one pass; Predict averages").first.wait_for(timeout=WORK_S * 1000)
    wait_idle(page, since, WORK_S)
    no_exception(page)
    shot(page, "saliency_result")
