"""The Streamlit server never loads TensorFlow, and a training process that dies takes nothing else with it.

The real app (`streamlit run`, FACE_MODE=workbench, runs and caches in a temp folder) is driven in headless
Chromium through every page: a selfie predicted on Predict (LiteRT, in the server), explained on Saliency (the
saliency worker, a child process), a tiny training run finished on Train (a training child process). The server's
memory map must then hold no TensorFlow library. Then a longer training run is started and its child process is
killed, once with SIGSEGV (a native crash) and once with SIGKILL (the out-of-memory killer): the server must still
answer, the Train page must say the job failed and name the signal, the run's metrics.json must say failed, and
the shipped model files must be untouched. Screenshots go to tests/artifacts/ (gitignored).

Skips with a message where Chromium is absent (Debian: `apt-get install chromium`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from core.settings import SAMPLE_DIR
from tests.support import (
    PAGES,
    PROJECT_ROOT,
    finished_runs,
    launch,
    no_exception,
    open_page,
    open_tab,
    start_app,
    stop_app,
    wait_idle,
)

pytestmark = pytest.mark.browser

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
MODELS_DIR = PROJECT_ROOT / "models"
SELFIE_FACE = "25_1_2_20170116175124189.jpg.chip.jpg"  # a frontal adult face in data/sample/utkface
PAGE_S = 300  # a first visit may wait for MediaPipe on a busy 2-core machine
WORK_S = 600  # a child's TensorFlow import and a first prediction, saliency map or epoch, same machine
AGE = re.compile(r"(\d+) ± (\d+) years")
TENSORFLOW_LIBRARIES = ("libtensorflow", "_pywrap_tensorflow")
SPAWNED = "multiprocessing.spawn"  # in the command line of every multiprocessing spawn child
SIGNAL_WORDS = {signal.SIGSEGV: "SIGSEGV, a native crash in TensorFlow", signal.SIGKILL: "SIGKILL, killed"}


# ---------------------------------------------------------------------------------------------- /proc helpers

def _tensorflow_mappings(pid: int) -> list[str]:
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return [line for line in lines if any(name in line for name in TENSORFLOW_LIBRARIES)]


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm)": state, then ppid


def _spawned_children(parent: int) -> set[int]:
    """The live multiprocessing-spawn children of `parent` (training jobs, the saliency worker, probes)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or _parent_pid(int(entry.name)) != parent:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if SPAWNED in cmdline:
            found.add(int(entry.name))
    return found


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as response:
        return response.status == 200 and response.read().strip() == b"ok"


def _wait(condition, what: str, timeout: float = WORK_S, page=None):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        if page is not None:
            page.wait_for_timeout(200)  # lets Playwright deliver the page's websocket events
        else:
            time.sleep(0.2)
    return result


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"isolation_{name}.png"), full_page=True)


def _run_folders(runs: Path) -> set[Path]:
    return {p for p in runs.iterdir() if p.is_dir()} if runs.is_dir() else set()


# ------------------------------------------------------------------------------------------- the page steps

def _fill_training_form(page, img_size_steps: int, epochs: int, limit: int) -> None:
    """custom_cnn (the default architecture) on the bundled sample; the image size `img_size_steps` stops above
    the smallest (0: 32 px)."""
    page.get_by_label("Dataset folder", exact=True).fill(str(SAMPLE_DIR))
    size = page.locator('[data-testid="stSlider"]').filter(has_text="Image size").get_by_role("slider")
    size.focus()
    size.press("Home")
    for _ in range(img_size_steps):
        size.press("ArrowRight")
    page.get_by_label("Epochs", exact=True).fill(str(epochs))
    page.get_by_label("Use at most N images (0 = all)", exact=True).fill(str(limit))


def _predict_a_selfie(page) -> None:
    from PIL import Image

    from tests.photos import encode, selfie

    open_page(page, "Predict")
    photo, _ = selfie(Image.open(SAMPLE_DIR / SELFIE_FACE).convert("RGB"))
    since = finished_runs(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [{"name": "selfie.jpg", "mimeType": "image/jpeg", "buffer": encode(photo)}])
    page.get_by_text(AGE).first.wait_for(timeout=WORK_S * 1000)
    wait_idle(page, since, WORK_S)
    assert len(AGE.findall(page.locator("body").inner_text())) == 1  # one face in the selfie
    no_exception(page)
    _shot(page, "predict")


def _explain_the_last_prediction(page) -> None:
    open_page(page, "Saliency")
    since = finished_runs(page)
    page.get_by_text("Last prediction", exact=True).click()  # the selfie just predicted
    wait_idle(page, since, WORK_S)
    explain = page.get_by_role("button", name="Explain")
    explain.wait_for(timeout=WORK_S * 1000)  # after the worker listed the model's layers
    since = finished_runs(page)
    explain.click()
    page.get_by_text("one pass; Predict averages").first.wait_for(timeout=WORK_S * 1000)  # the figure's caption
    wait_idle(page, since, WORK_S)
    assert page.locator('[data-testid="stImage"] img').count() >= 2  # the crop and the figure
    no_exception(page)
    _shot(page, "saliency")


def _train_one_tiny_epoch(page) -> None:
    open_page(page, "Train")
    _fill_training_form(page, img_size_steps=0, epochs=1, limit=48)
    since = finished_runs(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("saved to").first.wait_for(timeout=WORK_S * 1000)  # "Finished; saved to <run>"
    wait_idle(page, since, WORK_S)
    text = page.locator("body").inner_text()
    assert "Current job: custom_cnn, 32 px" in text and "Finished; saved to" in text, text[:2000]
    no_exception(page)
    _shot(page, "train_finished")


def _start_a_long_run_and_kill_it(page, url: str, server, runs: Path, sig: signal.Signals) -> None:
    """A run of many epochs at 96 px, killed with `sig` once it is training (its run folder has config.json)."""
    before_children, before_runs = _spawned_children(server.pid), _run_folders(runs)
    page.get_by_role("button", name="Start training").click()
    child = _wait(lambda: _spawned_children(server.pid) - before_children, "the training process")
    assert len(child) == 1, child
    child = child.pop()
    run = _wait(lambda: _run_folders(runs) - before_runs, "the run folder")
    assert len(run) == 1, run
    run = run.pop()
    _wait(lambda: (run / "config.json").is_file(), "the run's config.json (TensorFlow imported, data read)")
    time.sleep(1.0)
    assert _parent_pid(child) == server.pid and not (run / "metrics.json").exists()  # still training

    os.kill(child, sig)  # the training process of the server this test started, by its pid

    words = SIGNAL_WORDS[sig]
    page.get_by_text(re.compile(re.escape(words))).first.wait_for(timeout=WORK_S * 1000)
    assert server.poll() is None and _healthy(url)
    text = page.locator("body").inner_text()
    assert f"Training failed: The training process stopped unexpectedly ({words}" in text, text[:2000]
    no_exception(page)
    _shot(page, f"train_{sig.name.lower()}")
    _wait(lambda: (run / "metrics.json").is_file(), "the run's metrics.json")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and words in metrics["error"], metrics
    _wait(lambda: _parent_pid(child) is None, "the killed process to be reaped")


# -------------------------------------------------------------------------------------------------- the test

@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        opened = launch(p)  # skips where Chromium is absent
        try:
            yield opened
        finally:
            opened.close()


@pytest.fixture
def served(browser, tmp_path):
    """The app served in workbench mode with no run yet (the shipped model predicts), runs and caches in tmp."""
    runs = tmp_path / "runs"
    env = {"FACE_MODE": "workbench", "FACE_RUNS_DIR": str(runs), "FACE_CACHE_DIR": str(tmp_path / "cache"),
           "FACE_DATA_DIR": str(SAMPLE_DIR)}
    process, url = start_app(tmp_path, env)
    try:
        yield process, url, runs
    finally:
        stop_app(process)


def test_the_server_holds_no_tensorflow_and_outlives_a_crashed_training_process(browser, served):
    server, url, runs = served
    shipped = _fingerprint(MODELS_DIR)
    page = open_tab(browser, url)
    for label in PAGES:
        open_page(page, label)
        no_exception(page)

    _predict_a_selfie(page)
    _explain_the_last_prediction(page)
    _train_one_tiny_epoch(page)
    assert _tensorflow_mappings(server.pid) == []

    _fill_training_form(page, img_size_steps=3, epochs=200, limit=0)  # 96 px, all 300 images: minutes of work
    for sig in (signal.SIGSEGV, signal.SIGKILL):
        _start_a_long_run_and_kill_it(page, url, server, runs, sig)

    assert _tensorflow_mappings(server.pid) == []
    assert _fingerprint(MODELS_DIR) == shipped
    page.close()
