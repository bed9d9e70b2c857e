"""Helpers shared by several test files: where things are, fake training runs, the real app served for browsers,
a page opened through the router. Fixtures live in conftest.py, which builds on these."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import weakref
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# ../shared holds the full datasets on developer and CI machines; tests that need it skip cleanly elsewhere.
SHARED_DIR = Path(os.environ.get("FACE_SHARED_DIR", PROJECT_ROOT.parent / "shared"))


def noise_crop(size: int = 32, seed: int = 0) -> np.ndarray:
    """A random RGB face-sized crop: something for a model or a figure to take, with no face in it."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------- models and runs

def export_beside(keras_path: Path) -> Path:
    """The float32 .tflite beside a .keras, as core.export.ensure_tflite writes it (in this process: tests may
    import TensorFlow; the app's server may not)."""
    from core.export import ensure_tflite
    return ensure_tflite(keras_path, in_process=True)


def copy_model(model_path: Path, target: Path) -> Path:
    """Copy a .keras to `target`, and its .tflite when it has one: the .tflite second, so it is not older than
    the .keras and the app predicts with it at once instead of exporting the model again."""
    import shutil

    shutil.copy(model_path, target)
    if Path(model_path).with_suffix(".tflite").is_file():
        shutil.copy(Path(model_path).with_suffix(".tflite"), Path(target).with_suffix(".tflite"))
    return Path(target)


FAKE_RUN_NAME = "20250101-000000-residual_cnn"
# What the tiny residual_cnn of conftest's `tiny_residual_model` was built with
FAKE_RUN_CONFIG = {"model": {"arch": "residual_cnn", "img_size": 32, "age_head": "distribution", "width": 8},
                   "dataset": "utkface"}
FINISHED = {"status": "finished", "epochs_run": 1}


def write_run(runs_root: Path, name: str = FAKE_RUN_NAME, model: Path | bytes | None = None,
              config: dict = FAKE_RUN_CONFIG, metrics: dict | None = FINISHED, with_tflite: bool = False) -> Path:
    """A run folder as training leaves it and the registry lists it: config.json, metrics.json (None: none yet, as
    while training) and model.keras, a copy of the `model` file or the given bytes (for tests that never load it).
    Like a run fresh from training it has no model.tflite (the app exports one, in a child process, on first use),
    unless `with_tflite` copies the model's own."""
    from core.runs import Run

    run = Run(Path(runs_root) / name)
    run.path.mkdir(parents=True, exist_ok=True)
    if isinstance(model, bytes):
        run.model_file.write_bytes(model)
    elif model is not None and with_tflite:
        copy_model(model, run.model_file)
    elif model is not None:
        shutil.copy(model, run.model_file)
    run.config_file.write_text(json.dumps(config))
    if metrics is not None:
        run.metrics_file.write_text(json.dumps(metrics))
    return run.path


# ---------------------------------------------------------------- the real app, served (browser tests, benchmarks)

def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_app(workdir: Path, env: dict | None = None, startup_s: float = 300, script: str = "streamlit_app.py"):
    """`streamlit run <script>` from the project root (so .streamlit/config.toml applies) on a free port, in its own
    process group, logging to workdir/streamlit.log. Returns (process, url) once /_stcore/health answers; stop it
    with `stop_app`."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    log = (Path(workdir) / "streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    log.close()  # the child holds its own copy
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {process.returncode}:\n{_log_tail(workdir)}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.25)
    stop_app(process)
    raise TimeoutError(f"streamlit did not answer at {url} within {startup_s} s:\n{_log_tail(workdir)}")


def stop_app(process) -> None:
    """SIGTERM to the app's own process group (never anything else), SIGKILL if it lingers."""
    import signal
    import subprocess

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _log_tail(workdir: Path, lines: int = 40) -> str:
    try:
        return "\n".join((Path(workdir) / "streamlit.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------- browsers

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"  # screenshots (gitignored)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# Sidebar label → the page's title, exactly as each page draws it (regex: Evaluate's carries an emoji).
PAGES = {"Home": "^Face Insight Studio$", "Explore": "^Explore a dataset$", "Train": "^Train$",
         "Predict": "^Predict$", "Saliency": "^Saliency$", "Evaluate": "Evaluate$"}
PAGE_S = 300  # a first visit may import TensorFlow and MediaPipe on a busy 2-core machine


def launch(playwright):
    """Headless Chromium (`shutil.which("chromium")`) through Playwright; skips the test where it is absent."""
    import pytest

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`): browser test skipped")
    return playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)


def title(page, label: str):
    """A page's title element, found by the sidebar label of the page."""
    return page.locator("h1").filter(has_text=re.compile(PAGES[label]))


AGE = re.compile(r"(\d+) ± (\d+) years")  # how the Predict page states an age


class ScriptRuns:
    """What the server says over the page's websocket: how many script runs have finished, and whether one is
    running now. The exact moment a page is done, where the DOM's signs (the running indicator) show up late."""

    def __init__(self, page):
        self.finished = 0
        self.running = False
        page.on("websocket", lambda socket: socket.on("framereceived", self._frame))

    def _frame(self, payload) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        if not isinstance(payload, bytes):
            return
        message = ForwardMsg()
        try:
            message.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - not a Streamlit message: nothing to count
            return
        kind = message.WhichOneof("type")
        if kind == "session_status_changed":
            self.running = message.session_status_changed.script_is_running
        elif kind == "script_finished":
            self.finished += 1


_RUNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def watch(page) -> ScriptRuns:
    """Start counting a tab's script runs; call before its first goto."""
    _RUNS[page] = ScriptRuns(page)
    return _RUNS[page]


def wait_idle(page, since: int, timeout_s: float = PAGE_S) -> None:
    """Until a script run after the `since`-th has finished and none is running."""
    runs = _RUNS[page]
    deadline = time.monotonic() + timeout_s
    while runs.finished <= since or runs.running:
        assert time.monotonic() < deadline, f"the app was still running after {timeout_s} s"
        page.wait_for_timeout(20)  # lets Playwright deliver websocket events


def finished_runs(page) -> int:
    return _RUNS[page].finished


def open_page(page, label: str, timeout_s: float = PAGE_S) -> None:
    """Click the page's link in the sidebar navigation and wait until it has drawn and its script is done."""
    since = finished_runs(page)
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=label).click()
    title(page, label).wait_for(timeout=timeout_s * 1000)
    wait_idle(page, since, timeout_s)


def open_tab(browser, url: str, label: str = "Home", path: str = "", timeout_s: float = PAGE_S,
             viewport: dict | None = None):
    """A new browser tab on the app's `path` (e.g. "/predict"), watched, once the `label` page is drawn and idle."""
    tab = browser.new_page(viewport=viewport or {"width": 1400, "height": 1000})
    tab.set_default_timeout(timeout_s * 1000)
    watch(tab)
    tab.goto(f"{url}{path}")
    title(tab, label).wait_for()
    wait_idle(tab, 0, timeout_s)
    return tab


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator("body").inner_text()[:2000]


# ------------------------------------------------------------------------------------------ pages

def open_app_page(page: str, timeout_s: float = 300):
    """The app as a visitor reaches `page` ("pages/train.py"): through the router (streamlit_app.py), in an
    AppTest with a generous timeout (first runs import TensorFlow); asserts that the page ran without exception."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=timeout_s)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
