"""Shared fixtures (the helpers they build on, and that tests import, are in tests/support.py). Every test writes
runs and caches under tmp, never into the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import SHARED_DIR, export_beside, launch, start_app, stop_app, write_run

GATE_TIMEOUT_S = 600  # TensorFlow's first import and tracing crawl on a busy 2-core machine

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
    """Tiny untrained models of each in-house (UTKFace-space) architecture saved as .keras files (32 px), keyed by
    arch name."""
    from core.models import IN_HOUSE_ARCHITECTURES, ModelConfig, build_model

    folder = tmp_path_factory.mktemp("tiny_models")
    paths = {}
    for arch in IN_HOUSE_ARCHITECTURES:
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


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_residual_model):
    """The app served by `streamlit run` for one test module, in the public profile, with a finished fake run as its
    only trained model (FACE_RUNS_DIR and FACE_CACHE_DIR in a temp folder). Skips cleanly where Chromium is
    absent: only browsers talk to it."""
    import shutil

    if shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`): browser tests skipped")
    workdir = tmp_path_factory.mktemp("app")
    write_run(workdir / "runs", model=tiny_residual_model)
    # Public: what a demo audience gets, and what these tests were written against (the browser's ::ffff:127.0.0.1
    # was taken for a visitor until core.access read IPv4-mapped loopback); workbench servers start their own.
    process, url = start_app(workdir, {"FACE_MODE": "public", "FACE_RUNS_DIR": str(workdir / "runs"),
                                       "FACE_CACHE_DIR": str(workdir / "cache")})
    try:
        yield url
    finally:
        stop_app(process)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a test module (each test opens its own tabs); skips where Chromium is absent."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        opened = launch(p)
        try:
            yield opened
        finally:
            opened.close()


@pytest.fixture
def training_gate(monkeypatch):
    """Training jobs started during the test (core/jobs.py, in a child process) pause after each batch until the
    test sets the returned flag, so "still running, mid-epoch" is certain (a Stop still gets through). Any job
    still alive at teardown is stopped and joined: no job outlives its test."""
    from core import jobs
    from core.children import SharedFlag

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
