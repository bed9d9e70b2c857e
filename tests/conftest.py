"""Shared fixtures. Every test writes runs and caches under tmp, never into the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

GATE_TIMEOUT_S = 600  # TensorFlow's first import and tracing crawl on a busy 2-core machine

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample" / "utkface"
# ../shared holds the full datasets on developer and CI machines; tests that need it skip cleanly elsewhere.
SHARED_DIR = Path(os.environ.get("FACE_SHARED_DIR", PROJECT_ROOT.parent / "shared"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Runs and decoded-image caches go to a per-session temp folder."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("FACE_RUNS_DIR", str(base / "runs"))
    monkeypatch.setenv("FACE_CACHE_DIR", str(base / "cache"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} not present")
    return SHARED_DIR


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny untrained models of each architecture saved as .keras files (32 px), keyed by arch name."""
    from core.models import ARCHITECTURES, ModelConfig, build_model

    folder = tmp_path_factory.mktemp("tiny_models")
    paths = {}
    for arch in ARCHITECTURES:
        head = "distribution" if arch == "residual_cnn" else "regression"
        model, _ = build_model(ModelConfig.tiny(arch, age_head=head))
        paths[arch] = folder / f"{arch}.keras"
        model.save(paths[arch])
    return paths


@pytest.fixture(scope="session")
def synthetic_utkface(tmp_path_factory) -> Path:
    """48 small JPEGs named like UTKFace (age_gender_race_timestamp.jpg.chip.jpg), every decade × gender ×
    race mix represented; brightness follows age and tint follows race, so a model has something to learn."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("synthetic_utkface")
    rng = np.random.default_rng(0)
    for i in range(48):
        age, gender, race = int(rng.integers(1, 90)), i % 2, (i // 2) % 5
        pixels = rng.integers(0, 40, (48, 48, 3)) + age * 2
        pixels[..., race % 3] += 60
        pixels[:, : 8 + 16 * gender] //= 2
        name = f"{age}_{gender}_{race}_20170109{i:09d}.jpg.chip.jpg"
        Image.fromarray(pixels.clip(0, 255).astype("uint8")).save(folder / name, quality=90)
    return folder


@pytest.fixture(scope="session")
def tiny_residual_model(tmp_path_factory) -> Path:
    """Only the tiny residual_cnn (32 px, distribution age head: the shipped model's kind), as a .keras file with
    its float32 .tflite beside it (what the app predicts with), for tests that need one model, without building
    every architecture as `tiny_models` does."""
    from core.models import ModelConfig, build_model

    model, _ = build_model(ModelConfig.tiny("residual_cnn", age_head="distribution"))
    path = tmp_path_factory.mktemp("tiny_residual") / "residual_cnn.keras"
    model.save(path)
    export_beside(path)
    return path


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


# ------------------------------------------------------------------ the real app, served (browser tests, benchmarks)

FAKE_RUN_NAME = "20250101-000000-residual_cnn"


def write_fake_run(runs_root: Path, model_path: Path, with_tflite: bool = False) -> Path:
    """A finished training run as the registry lists it (config.json, metrics.json, model.keras), holding the tiny
    residual_cnn with a distribution age head: the app then has a model before the shipped one exists. Like a run
    fresh from training it has no model.tflite (the app exports one, in a child process, on first use), unless
    `with_tflite` copies the model's own."""
    import json
    import shutil

    run = Path(runs_root) / FAKE_RUN_NAME
    run.mkdir(parents=True, exist_ok=True)
    if with_tflite:
        copy_model(model_path, run / "model.keras")
    else:
        shutil.copy(model_path, run / "model.keras")
    config = {"model": {"arch": "residual_cnn", "img_size": 32, "age_head": "distribution", "width": 8},
              "dataset": "utkface"}
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.json").write_text(json.dumps({"status": "finished", "epochs_run": 1}))
    return run


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


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_residual_model):
    """The app served by `streamlit run` for one test module, with a finished fake run as its only trained model
    (FACE_RUNS_DIR and FACE_CACHE_DIR in a temp folder). Skips cleanly where Chromium is absent: only browsers
    talk to it."""
    import shutil

    if shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`): browser tests skipped")
    workdir = tmp_path_factory.mktemp("app")
    write_fake_run(workdir / "runs", tiny_residual_model)
    process, url = start_app(workdir, {"FACE_RUNS_DIR": str(workdir / "runs"),
                                       "FACE_CACHE_DIR": str(workdir / "cache")})
    try:
        yield url
    finally:
        stop_app(process)


@pytest.fixture
def training_gate(monkeypatch):
    """Training jobs started during the test (core/jobs.py, in a child process) pause after each batch until the
    test sets the returned flag, so "still running, mid-epoch" is certain (a Stop still gets through). Any job
    still alive at teardown is stopped and joined: no job outlives its test."""
    from core import jobs
    from core.workers import SharedFlag

    opened = SharedFlag()
    monkeypatch.setattr(jobs, "batch_gate", opened)
    yield opened
    opened.set()
    if (job := jobs.current_job()) is not None:
        job.stop()
        job.thread.join(GATE_TIMEOUT_S)


@pytest.fixture(scope="module")
def faces(shared_dir):
    """Real UTKFace faces (PIL images) from ../shared, for the detection and prediction tests."""
    from tests.photos import face_images
    return face_images(shared_dir / "data" / "utkface")


@pytest.fixture(scope="module")
def detector():
    """One open MediaPipe detector per test module."""
    from core.faces import FaceDetector
    with FaceDetector() as opened:
        yield opened


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
