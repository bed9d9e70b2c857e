"""Issue #14, the app as an anonymous visitor of a public server meets it (FACE_MODE=public, through the router).
One test per finding that is visible from the pages; the details of each mechanism are tested beside it:
tests/test_access.py (profiles), tests/test_policy.py (row cap, training policy, child limits),
tests/test_slots.py (shared slots), tests/test_public_runs.py (owners, quota), tests/test_datasets.py (the
allowlist inside load_dataset), tests/test_images.py (decode memory, upload caps), tests/test_housekeeping.py
(sweep, interrupted runs, cache cap), tests/test_explore_page.py and tests/test_evaluate_page.py (the pages)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from core import access, housekeeping, policy, public_runs, settings, slots
from core.datasets import DatasetError, load_dataset
from pages import train as train_page
from pages.common import KEY_OWNER
from tests.support import PROJECT_ROOT, open_app_page, write_run

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
    problems = policy.check_training_request(request, access.current_profile())
    assert len(problems) == 5 and not any(ABSOLUTE.search(p) for p in problems)
    assert policy.public_training_limits().max_img_size <= 64


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
    assert slots.PHOTO_ANALYSES_AT_ONCE == 2


# 4. Evaluate unbounded: a row cap, one evaluation per server, a capped cache.
def test_4_evaluation_is_bounded():
    assert policy.PUBLIC_MAX_EVAL_ROWS <= 2000 and settings.cache_max_bytes() > 0
    with slots.evaluation_slot(), pytest.raises(slots.Busy), slots.evaluation_slot():
        pass


# 5. Crash leftovers: the first page run of a server process sweeps them.
def test_5_the_first_page_run_sweeps_crash_leftovers(tmp_path, monkeypatch):
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    monkeypatch.setenv("FACE_RUNS_DIR", str(runs))
    monkeypatch.setenv("FACE_CACHE_DIR", str(cache))
    monkeypatch.setenv("FACE_CACHE_MAX_MB", "0.01")
    monkeypatch.setattr(housekeeping, "_startup_done", False)  # as in a fresh server process
    run = write_run(runs, "20250101-000000-custom_cnn", config={}, metrics={"status": "running"})
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


# 1, on the Train page: no folder box, widgets within the limits, a refusal in words, jobs and runs per session.
TRAIN = "pages/train.py"


def _train_page_as(owner: str):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=300)
    at.session_state[KEY_OWNER] = owner
    at.run()
    at.switch_page(TRAIN)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _run(runs: Path, name: str, owner: str | None = None, arch: str = "custom_cnn", img_size: int = 32,
         age: float = 0.0) -> Path:
    """A finished run folder as the registry and the runs list see it, marked public for `owner` (if any)."""
    run = write_run(runs, name, b"not loaded by these tests",
                    config={"model": {"arch": arch, "img_size": img_size}, "dataset": "utkface"})
    if owner is not None:
        public_runs.mark_public_run(run, owner)
        stamp = time.time() - 1000 + age
        os.utime(run / public_runs.PUBLIC_RUN_MARKER, (stamp, stamp))
    return run


class _FakeJob:
    """What the Train page reads of a job, without a training process: running, one batch in."""

    def __init__(self, cfg, owner):
        from core.config import Progress
        self.cfg, self.owner, self.stopped = cfg, owner, False
        self.progress = Progress(epochs=cfg.epochs)
        self.progress.update(status="running", batches_per_epoch=4, epoch=1, batch=1)
        self.progress.record_batch(1, {"step": 1, "epoch": 0.25, "loss": 1.0})

    @property
    def running(self):
        return not self.progress.done

    def stop(self):
        self.stopped = True


@pytest.fixture
def fake_jobs(tmp_path, monkeypatch):
    """Public runs in this test's own folder; start_job records its call and makes a _FakeJob current."""
    from core import jobs
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(jobs, "_current_job", None)
    calls = []

    def start_job(cfg, owner=None, limits=None):
        calls.append({"cfg": cfg, "owner": owner, "limits": limits})
        job = _FakeJob(cfg, owner)
        monkeypatch.setattr(jobs, "_current_job", job)
        return job, True

    monkeypatch.setattr(jobs, "start_job", start_job)
    return calls


def test_1_the_train_page_offers_only_what_a_public_job_may_use(fake_jobs):
    from core.model_config import ARCHITECTURES
    limits = policy.public_training_limits()
    at = _train_page_as("visitor")
    assert not at.text_input and not any(s.label == "Dataset kind" for s in at.selectbox)  # no folder box
    archs = [option.split(" — ")[0] for option in at.selectbox(key=train_page.KEY_ARCH).options]  # "name — its line"
    assert archs == [a for a in ARCHITECTURES if a in limits.architectures] and "resnet50" not in archs
    assert max(int(o) for o in at.select_slider(key=train_page.KEY_IMG_SIZE).options) <= limits.max_img_size
    assert max(int(o) for o in at.select_slider(key=train_page.KEY_BATCH).options) <= limits.max_batch_size
    assert at.number_input(key=train_page.KEY_EPOCHS).max == limits.max_epochs
    assert not ABSOLUTE.search(_shown(at)), _shown(at)

    at.button(key=train_page.KEY_START).click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (call,) = fake_jobs
    assert call["owner"] == "visitor" and call["limits"] == limits
    assert os.path.realpath(call["cfg"].data_dir) == os.path.realpath(settings.SAMPLE_DIR)


def test_1_a_224_px_resnet50_request_is_refused_in_words(fake_jobs, tmp_path):
    """The widgets cannot ask for more than the limits; continuing a big model can, and is refused."""
    _run(tmp_path / "runs", "20250101-000000-resnet50", arch="resnet50", img_size=224)  # the operator's run
    at = _train_page_as("visitor")
    at.selectbox(key=train_page.KEY_START_FROM).set_value(
        "20250101-000000-resnet50 — UTKFace · resnet50 · 1 epoch · not tested")
    at.button(key=train_page.KEY_START).click()
    at.run()
    assert not at.exception and not fake_jobs  # nothing started
    (error,) = [e.value for e in at.error]
    assert "cannot run on this server" in error and "Image size is at most 64 px" in error
    assert "Architectures on this server" in error and not ABSOLUTE.search(error)


def test_1_another_session_sees_a_busy_server_but_not_its_job_or_runs(fake_jobs, tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "20250101-000001-custom_cnn", owner="alice")
    _run(runs, "20250101-000002-custom_cnn", owner="bob")
    _run(runs, "20250101-000003-custom_cnn")  # the operator's own, from the command line
    alice = _train_page_as("alice")
    alice.button(key=train_page.KEY_START).click()
    alice.run()
    alice.run()
    assert alice.button(key=train_page.KEY_STOP) and alice.subheader[0].value.startswith("Current job")
    assert list(alice.dataframe[0].value["Run"]) == ["20250101-000001-custom_cnn"]

    bob = _train_page_as("bob")
    assert not [b for b in bob.button if b.key == train_page.KEY_STOP] and not bob.get("plotly_chart")
    assert not any(s.value.startswith("Current job") for s in bob.subheader)
    assert any("A training job is running on this server" in i.value for i in bob.info)
    assert list(bob.dataframe[0].value["Run"]) == ["20250101-000002-custom_cnn"]
    assert not any("000001" in o for o in bob.selectbox(key=train_page.KEY_START_FROM).options)
    bob.button(key=train_page.KEY_START).click()  # a Start while alice's job runs starts nothing and says why
    bob.run()
    assert len(fake_jobs) == 1 and any("running on this server" in w.value for w in bob.warning)

    alice.button(key=train_page.KEY_STOP).click()
    alice.run()
    assert jobs_current().stopped


def jobs_current():
    from core import jobs
    return jobs.current_job()


def test_1_a_new_public_job_deletes_the_oldest_public_run_beyond_the_quota(fake_jobs, tmp_path):
    runs, most = tmp_path / "runs", policy.public_training_limits().max_runs
    made = [_run(runs, f"20250101-0000{i:02d}-custom_cnn", owner=f"v{i}", age=i) for i in range(most)]
    operators = _run(runs, "20240101-000000-custom_cnn")  # never counted, never deleted
    at = _train_page_as("visitor")
    at.button(key=train_page.KEY_START).click()
    at.run()
    assert not at.exception and len(fake_jobs) == 1
    assert not made[0].exists() and all(run.exists() for run in made[1:]) and operators.exists()


def test_1_the_workbench_keeps_the_full_form(fake_jobs, monkeypatch):
    from core.model_config import ARCHITECTURES
    monkeypatch.setenv("FACE_MODE", "workbench")
    at = _train_page_as("owner")
    assert at.text_input(key=train_page.KEY_FOLDER).value and at.selectbox(key=train_page.KEY_KIND)
    assert [option.split(" — ")[0] for option in at.selectbox(key=train_page.KEY_ARCH).options] == list(ARCHITECTURES)
    assert 224 in [int(o) for o in at.select_slider(key=train_page.KEY_IMG_SIZE).options]
    assert at.number_input(key=train_page.KEY_EPOCHS).max == 500
    at.button(key=train_page.KEY_START).click()
    at.run()
    assert fake_jobs[0]["owner"] is None and fake_jobs[0]["limits"] is None


def test_1_the_model_picker_hides_other_visitors_runs(tmp_path, monkeypatch):
    from core.registry import all_models
    from pages.common import visible_models
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    _run(tmp_path / "runs", "20250101-000001-custom_cnn", owner="alice")
    _run(tmp_path / "runs", "20250101-000002-custom_cnn", owner="bob")
    _run(tmp_path / "runs", "20250101-000003-custom_cnn")
    entries = all_models()[0]
    names = {e.name for e in visible_models(entries, access.current_profile(), "alice") if e.source == "run"}
    assert names == {"20250101-000001-custom_cnn", "20250101-000003-custom_cnn"}
    assert len(visible_models(entries, access.WORKBENCH_PROFILE, "alice")) == len(entries)
