"""Shared fixtures. Every test writes runs and caches under tmp, never into the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    """Only the tiny residual_cnn (32 px, distribution age head: the shipped model's kind), as a .keras file;
    for tests that need one model, without building every architecture as `tiny_models` does."""
    from core.models import ModelConfig, build_model

    model, _ = build_model(ModelConfig.tiny("residual_cnn", age_head="distribution"))
    path = tmp_path_factory.mktemp("tiny_residual") / "residual_cnn.keras"
    model.save(path)
    return path
