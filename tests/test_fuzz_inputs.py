"""Hostile and awkward input, through the app's two front doors: the Predict page (AppTest) and the CLI
(`python -m core predict FILE --json`); then bad dataset folders and bad paths typed into the Explore, Train and
Evaluate path boxes. Every case must end in a clear message or a correct result: no traceback, no crash, and
nothing written to disk.

The corpus (tests/fuzz/make_corpus.py) is generated into a temp folder per session; faces come from the bundled
sample, so none of this needs the full datasets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import settings
from core.images import MAX_FILES_PER_UPLOAD
from pages import evaluate as evaluate_page
from pages import explore as explore_page
from pages import predict_views
from pages import train as train_page
from tests.fuzz.make_corpus import CASES, build
from tests.support import PROJECT_ROOT, open_app_page, write_run

APP = str(PROJECT_ROOT / "streamlit_app.py")
TIMEOUT = 600  # seconds: TensorFlow, MediaPipe and tracing on a busy 2-core machine
# Where a stray write could land and be missed: caches and bytecode are expected, everything else is not.
IGNORED_DIRS = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", "artifacts", ".venv"}
AUTOGRAPH_PREFIX = "__autograph_generated_file"
ANALYSED = [case for case in CASES if case.error is None]
REFUSED = [case for case in CASES if case.error is not None]


def _files_under(root: Path) -> set[Path]:
    found = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in IGNORED_DIRS]
        found.update(Path(folder) / name for name in files)
    return found


def _new_files(before: set[Path], root: Path) -> list[Path]:
    # Source files are left out: other people may be editing the project while this runs. A photo, a cache or a
    # model written by mistake is never a .py file.
    return sorted(p for p in _files_under(root) - before if p.suffix != ".py")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return build(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture
def sandbox(tmp_path, monkeypatch, tiny_residual_model):
    """The app sees one finished tiny run and no shipped model; temp files, caches and runs go to folders of this
    test's own, so anything written there can be found."""
    runs, scratch = tmp_path / "runs", tmp_path / "scratch"
    write_run(runs, model=tiny_residual_model)
    scratch.mkdir()
    monkeypatch.setenv("FACE_RUNS_DIR", str(runs))
    monkeypatch.setenv("FACE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "no-shipped-model")
    return tmp_path


def _written(sandbox: Path, project_before: set[Path]) -> list[Path]:
    """Files that appeared in the project, the temp folder, the cache or the runs folder (beyond the fake run)."""
    stray = _new_files(project_before, PROJECT_ROOT)
    # TensorFlow's autograph writes the source it generates for a traced function (Predictor's compiled call)
    # to the temp folder: our code, not the user's data.
    stray += sorted(p for p in (sandbox / "scratch").rglob("*") if not p.name.startswith(AUTOGRAPH_PREFIX))
    stray += sorted((sandbox / "cache").rglob("*")) if (sandbox / "cache").exists() else []
    stray += [p for p in (sandbox / "runs").rglob("*") if "20250101-000000" not in str(p)]
    return stray


def _page(path: str) -> AppTest:
    return open_app_page(path, TIMEOUT)


# ------------------------------------------------------------------------------------------- the corpus

def test_the_corpus_is_what_it_claims(corpus):
    from PIL import Image

    sizes = {name: path.stat().st_size for name, path in corpus.items()}
    assert sizes["0-byte file"] == 0
    assert sizes["50-megapixel decompression bomb"] < 1_000_000  # tiny on disk…
    with Image.open(corpus["50-megapixel decompression bomb"]) as bomb:
        assert bomb.width * bomb.height >= 50_000_000  # …huge once decoded
    with Image.open(corpus["16-bit greyscale PNG"]) as grey, Image.open(corpus["CMYK JPEG"]) as cmyk:
        assert grey.mode == "I;16" and cmyk.mode == "CMYK"
    with Image.open(corpus["palette PNG with transparency"]) as palette:
        assert palette.mode == "P" and "transparency" in palette.info
    with Image.open(corpus["huge EXIF block"]) as exif:
        assert len(exif.info["exif"]) > 60_000
    with Image.open(corpus["EXIF-rotated photo"]) as rotated:
        assert rotated.getexif()[0x0112] == 6 and rotated.size == (900, 1200)  # stored on its side
    with Image.open(corpus["animated GIF renamed .png"]) as gif:
        assert gif.format == "GIF" and gif.n_frames == 2


# --------------------------------------------------------------------------------------- Predict page

def test_every_bad_upload_gets_a_message_and_every_photo_a_result(corpus, sandbox):
    before = _files_under(PROJECT_ROOT)
    at = _page("pages/predict.py")
    uploads = [(path.name, path.read_bytes(), "application/octet-stream") for path in corpus.values()]
    errors, drawn, captions, infos, markdown = {}, [], [], [], []
    # A few photos per upload (core/images.py MAX_FILES_PER_UPLOAD): the corpus goes up in groups of that many.
    for start in range(0, len(uploads), MAX_FILES_PER_UPLOAD):
        at.file_uploader(key=predict_views.KEY_FILES).set_value(uploads[start:start + MAX_FILES_PER_UPLOAD])
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        errors |= {e.value.split("**")[1]: e.value for e in at.error}  # "**name**: message"
        drawn += [s.value for s in at.subheader]
        captions += [caption for image in at.get("image") for caption in image.captions]
        infos += [info.value for info in at.info]
        markdown += [m.value for m in at.markdown]
    assert not any("Only the first" in info for info in infos), infos  # no file was left out

    for case in REFUSED:
        message = errors.pop(case.filename, "")
        assert all(word in message for word in case.error), f"{case.name}: {message!r}"
        assert "Traceback" not in message
    assert not errors, f"unexpected errors: {errors}"

    for case in ANALYSED:
        if case.faces == 0:
            assert case.filename not in drawn
            assert any(f"No face found in **{case.filename}**" in info for info in infos), case.name
        else:
            assert case.filename in drawn, case.name
            count = f"{case.faces} face{'s' * (case.faces != 1)} found"
            assert any(count in caption for caption in captions), f"{case.name}: no caption with {count!r}"
    assert "\n".join(markdown).count("years") == sum(case.faces for case in ANALYSED)
    assert _written(sandbox, before) == []


def test_a_browser_refuses_other_extensions_before_upload(sandbox):
    """SVG, HTML, GIF and text files reach the app only renamed (the corpus does that): the uploader's own filter
    lists image extensions only, and zip archives of them (core/uploads.py reads only their image members)."""
    at = _page("pages/predict.py")
    allowed = {t.lstrip(".").lower() for t in at.file_uploader(key=predict_views.KEY_FILES).allowed_type}
    assert allowed and allowed <= {"jpg", "jpeg", "png", "webp", "bmp", "heic", "heif", "zip"}


# ------------------------------------------------------------------------------------------------- CLI

def test_cli_answers_every_file_in_json(corpus, sandbox, tiny_residual_model):
    before = _files_under(PROJECT_ROOT)
    env = {**os.environ, "TMPDIR": str(sandbox / "scratch"), "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "core", "predict", *map(str, corpus.values()), "--json",
         "--model", str(tiny_residual_model)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    records = {Path(r["image"]).name: r for r in json.loads(result.stdout)}
    assert len(records) == len(CASES)
    for case in REFUSED:
        record = records[case.filename]
        assert record["faces"] == [] and all(word in record["error"] for word in case.error), (case.name, record)
    for case in ANALYSED:
        record = records[case.filename]
        assert record["error"] is None and len(record["faces"]) == case.faces, (case.name, record)
        for face in record["faces"]:
            assert 0 <= face["age"] <= 116 and face["gender"] in ("male", "female")
    assert f"no face found in {corpus['photo with no face']}" in result.stderr
    # The EXIF-rotated photo is answered upright: its face sits in the top half, centred (see make_corpus.selfie).
    x, y, w, h = records["rotated.jpg"]["faces"][0]["box"]
    assert abs(x + w / 2 - 600) < 60 and y + h / 2 < 450
    assert _written(sandbox, before) == []


# ------------------------------------------------------------------------------- bad folders and paths

@pytest.fixture(scope="module")
def bad_folders(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """{case: (path typed, words the error must contain)}. "Unreadable" files are made unreadable by mode 000
    (ignored by root, who reads anything: they are corrupt as well) and by links that lead nowhere."""
    root = tmp_path_factory.mktemp("bad_folders")
    (root / "empty").mkdir()
    (root / "wrong_names").mkdir()
    for i in range(10):
        (root / "wrong_names" / f"IMG_{1000 + i}.jpg").write_bytes(b"\xff\xd8 not really")
    (root / "unreadable").mkdir()
    for i in range(12):
        path = root / "unreadable" / f"{20 + i}_{i % 2}_{i % 5}_2017010912345{i:02d}.jpg.chip.jpg"
        path.write_bytes(b"garbage")
        path.chmod(0)
    (root / "dangling").mkdir()
    for i in range(12):
        (root / "dangling" / f"{20 + i}_{i % 2}_{i % 5}_2017010912345{i:02d}.jpg.chip.jpg").symlink_to(root / "gone")
    (root / "a_file.txt").write_text("not a folder")
    return {
        "missing": (str(root / "missing"), "Folder not found"),
        "a file": (str(root / "a_file.txt"), "is a file, not a folder"),
        "blank": ("   ", "No folder given"),
        "empty": (str(root / "empty"), "No UTKFace images"),
        "wrong names": (str(root / "wrong_names"), "No usable UTKFace images"),
        "links to nowhere": (str(root / "dangling"), "No UTKFace images"),
        "null byte": (f"{root}/a\x00b", "Folder not found"),
        "name too long": ("/" + "x" * 5000, "Cannot read"),
        "unknown user's home": ("~no_such_user_here/faces", "Cannot resolve"),
        "unreadable files": (str(root / "unreadable"), None),  # listed by name; refused when decoded
    }


FOLDER_CASES = ["missing", "a file", "blank", "empty", "wrong names", "links to nowhere", "null byte",
                "name too long", "unknown user's home"]


@pytest.mark.parametrize("case", FOLDER_CASES)
def test_explore_path_box(bad_folders, case):
    folder, words = bad_folders[case]
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "explore.py"), default_timeout=TIMEOUT).run()
    at.text_input(key=explore_page.KEY_FOLDER).input(folder).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and words in at.error[0].value, [e.value for e in at.error]


def test_explore_lists_unreadable_files_with_grey_previews(bad_folders):
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "explore.py"), default_timeout=TIMEOUT).run()
    at.text_input(key=explore_page.KEY_FOLDER).input(bad_folders["unreadable files"][0]).run()
    assert not at.exception and not at.error
    assert next(m.value for m in at.metric if m.label == "Images") == "12"


def test_train_path_box(bad_folders, sandbox):
    from core import jobs

    at = _page("pages/train.py")
    cases = {**{case: bad_folders[case] for case in FOLDER_CASES},
             "unreadable files": (bad_folders["unreadable files"][0], "Training failed")}
    for case, (folder, words) in cases.items():
        at.text_input(key=train_page.KEY_FOLDER).set_value(folder)
        at.select_slider(key=train_page.KEY_IMG_SIZE).set_value(32)
        at.button(key=train_page.KEY_START).click()
        at.run()
        job = jobs.current_job()
        job.thread.join(TIMEOUT)
        assert job.progress.status == "failed", (case, job.progress.status)
        at.run()
        assert not at.exception, (case, [e.value for e in at.exception])
        messages = [e.value for e in at.error]
        assert any(words in m for m in messages), (case, messages)
        assert not any("Traceback" in m for m in messages)


def test_evaluate_path_box(bad_folders, sandbox):
    at = _page("pages/evaluate.py")
    for case in FOLDER_CASES:
        folder, words = bad_folders[case]
        at.text_input(key=evaluate_page.KEY_FOLDER).set_value(folder)
        at.run()
        assert not at.exception, (case, [e.value for e in at.exception])
        assert any(words in e.value for e in at.error), (case, [e.value for e in at.error])
    at.text_input(key=evaluate_page.KEY_FOLDER).set_value(bad_folders["unreadable files"][0])
    at.run()
    assert not at.error and any("12 labelled images" in i.value for i in at.info)
    at.button(key=evaluate_page.KEY_RUN).click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Cannot read an image" in e.value for e in at.error), [e.value for e in at.error]

