"""Issue #14, the app as an anonymous visitor of a public server meets it (FACE_MODE=public, through the router).
One test per finding that is visible from the pages; the details of each mechanism are tested beside it:
tests/test_access.py (profiles, limits, training policy, quota, child limits), tests/test_datasets.py (the
allowlist inside load_dataset), tests/test_images.py (decode memory, upload caps), tests/test_housekeeping.py
(sweep, interrupted runs, cache cap), tests/test_explore_page.py and tests/test_evaluate_page.py (the pages)."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from core import access, housekeeping, settings
from core.datasets import DatasetError, load_dataset
from tests.conftest import PROJECT_ROOT, open_app_page

ABSOLUTE = re.compile(r"(?<![\w.])/(?:tmp|etc|proc|work|home|root|var)\b")
EXCEPTION_NAME = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b")


@pytest.fixture(autouse=True)
def public(monkeypatch):
    monkeypatch.setenv("FACE_MODE", "public")
    monkeypatch.delenv("FACE_DATASET_ROOTS", raising=False)
    monkeypatch.setenv("FACE_DATA_DIR", str(settings.SAMPLE_DIR))


def _shown(at) -> str:
    kinds = ("title", "markdown", "caption", "error", "warning", "info", "success")
    parts = [str(e.value) for kind in kinds for e in getattr(at, kind)]
    parts += [f"{w.label} {w.options} {w.help}" for w in at.selectbox]
    return "\n".join(parts)


# 1. Anyone could train anything: the public policy refuses the issue's own request.
def test_1_a_224_px_training_on_a_server_folder_is_refused():
    request = {"dataset": "utkface", "data_dir": "/etc", "epochs": 50, "batch_size": 64,
               "model": {"arch": "resnet50", "img_size": 224}}
    problems = access.check_training_request(request, access.current_profile())
    assert len(problems) == 5 and not any(ABSOLUTE.search(p) for p in problems)
    assert access.public_training_limits().max_img_size <= 64


# 2. Server filesystem disclosure: no folder box, the allowlist inside load_dataset, no absolute paths shown.
@pytest.mark.parametrize("page", ["pages/home.py", "pages/explore.py", "pages/evaluate.py"])
def test_2_pages_offer_no_folder_box_and_show_no_server_path(page):
    at = open_app_page(page)
    assert not at.text_input and not at.error
    assert not ABSOLUTE.search(_shown(at)), _shown(at)


@pytest.mark.parametrize("folder", ["/etc", "/proc/self", PROJECT_ROOT, PROJECT_ROOT / "tests" / "fixtures"])
def test_2_server_folders_are_refused_by_the_dataset_layer(folder):
    with pytest.raises(DatasetError, match="reads only the datasets it offers"):
        load_dataset(None, folder)  # no profile passed: the process's public profile applies


def test_2_tables_and_downloads_carry_paths_relative_to_the_dataset():
    table = load_dataset(None, settings.SAMPLE_DIR).table
    shown = access.shown_table(table, access.current_profile())
    assert not shown["path"].str.startswith("/").any() and shown["path"].iloc[0] == os.path.basename(table["path"][0])


# 3. Upload memory: caps per format, per upload and per server.
def test_3_uploads_are_bounded():
    from core import images
    assert images.MAX_PIXELS["PNG"] < 39_000_000 and images.MAX_FILES_PER_UPLOAD <= 4
    assert access.PHOTO_ANALYSES_AT_ONCE == 2


# 4. Evaluate unbounded: a row cap, one evaluation per server, a capped cache.
def test_4_evaluation_is_bounded():
    assert access.PUBLIC_MAX_EVAL_ROWS <= 2000 and settings.cache_max_bytes() > 0
    with access.evaluation_slot(), pytest.raises(access.Busy), access.evaluation_slot():
        pass


# 5. Crash leftovers: the first page run of a server process sweeps them.
def test_5_the_first_page_run_sweeps_crash_leftovers(tmp_path, monkeypatch):
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    monkeypatch.setenv("FACE_RUNS_DIR", str(runs))
    monkeypatch.setenv("FACE_CACHE_DIR", str(cache))
    monkeypatch.setenv("FACE_CACHE_MAX_MB", "0.01")
    monkeypatch.setattr(housekeeping, "_startup_done", False)  # as in a fresh server process
    run = runs / "20250101-000000-custom_cnn"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "metrics.json").write_text(json.dumps({"status": "running"}))
    leftover = run / ".model.keras.k3j4h5g6.keras"
    leftover.write_bytes(b"half a model")
    cache.mkdir()
    (cache / "images-96px-300-0123.npy").write_bytes(b"x" * 50_000)
    old = time.time() - housekeeping.RUN_QUIET_SECONDS - 60
    for path in (leftover, run / "config.json", run / "metrics.json", run):
        os.utime(path, (old, old))

    at = open_app_page("pages/home.py")
    assert not at.exception
    assert not leftover.exists() and json.loads((run / "metrics.json").read_text())["status"] == "interrupted"
    assert not list(cache.iterdir())


# 7. Internals in messages: refusals and failures name no exception class and no server path.
def test_7_messages_hold_no_internals():
    profile = access.current_profile()
    raw = f"Cannot read {settings.SAMPLE_DIR}/x.jpg: PermissionError: [Errno 13] denied: '/tmp/pytest/secret'"
    shown = access.public_text(raw, profile)
    assert not ABSOLUTE.search(shown) and not EXCEPTION_NAME.search(shown)
    failure = access.unexpected_error(ValueError("/tmp/secret/credentials.env"), profile, "test")
    assert not ABSOLUTE.search(failure) and "ValueError" not in failure and "reference" in failure


# 8. Refused uploads are named from their signature, never reopened with every Pillow format.
def test_8_refused_formats_never_reach_other_decoders():
    source = (PROJECT_ROOT / "core" / "images.py").read_text(encoding="utf-8")
    body = source.split("def _why_not_allowed", 1)[1].split("\ndef ", 1)[0]
    assert "Image.open" not in body
