"""Faults: Stop pressed mid-epoch, the Train page closed and reopened while a job runs, the process killed in the
middle of a save, corrupt or foreign files in runs/, and model files from outside the app's folders or carrying
code. The previous model and the run registry must come through intact, and no training thread may outlive its
job."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import jobs, registry, settings
from core.atomic import atomic_save_model, atomic_write_text
from core.config import TrainConfig
from pages import predict_views
from pages import train as train_page
from tests.support import FAKE_RUN_NAME, PROJECT_ROOT, write_run

TIMEOUT = 600  # seconds: TensorFlow imports and tracing on a busy 2-core machine
TRAIN_FOLDER, TRAIN_IMG_SIZE, TRAIN_BATCH, TRAIN_START, TRAIN_STOP = (
    train_page.KEY_FOLDER, train_page.KEY_IMG_SIZE, train_page.KEY_BATCH, train_page.KEY_START, train_page.KEY_STOP)


@pytest.fixture
def runs_root(tmp_path, monkeypatch, tiny_residual_model) -> Path:
    """A runs folder of this test's own holding one finished run (the "previous model"); no shipped model."""
    root = tmp_path / "runs"
    write_run(root, model=tiny_residual_model)
    monkeypatch.setenv("FACE_RUNS_DIR", str(root))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "no-shipped-model")
    return root


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _wait(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _training_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "training-job" and t.is_alive()]


def _finish(job: jobs.Job) -> None:
    job.stop()
    job.thread.join(TIMEOUT)
    assert not job.thread.is_alive()


# ----------------------------------------------------------------------------------------- Stop, rerun, close

def test_stop_mid_epoch_marks_the_run_stopped_and_keeps_the_previous_one(runs_root, synthetic_utkface, training_gate):
    previous = runs_root / FAKE_RUN_NAME
    before = _fingerprint(previous)
    cfg = TrainConfig.tiny("custom_cnn", data_dir=str(synthetic_utkface), batch_size=8, epochs=3)
    job, is_new = jobs.start_job(cfg)
    assert is_new
    _wait(lambda: job.progress.batch_log, "the first batch")
    assert job.progress.epoch == 1 and not job.progress.done  # held inside epoch 1
    job.stop()
    training_gate.set()
    job.thread.join(TIMEOUT)

    assert not job.thread.is_alive() and not _training_threads()
    assert job.progress.status == "stopped" and len(job.progress.batch_log) <= 2
    run = Path(job.progress.run_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "stopped" and metrics["test"] == {} and metrics["epochs_run"] == 0
    assert _fingerprint(previous) == before
    entries, warnings = registry.run_models()
    # stopped before one finished epoch: its weights are the random initialisation, so it is not offered as a model
    assert {e.name: e.card["metrics"]["status"] for e in entries} == {FAKE_RUN_NAME: "finished"}
    assert run.name not in {e.name for e in entries}
    assert warnings == []
    registry.load_model(run / "model.keras")  # the file itself was saved whole
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary files left behind


def test_closing_the_page_mid_run_leaves_one_job_the_next_session_can_stop(runs_root, synthetic_utkface, training_gate):
    first = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    first.switch_page("pages/train.py").run()
    first.text_input(key=TRAIN_FOLDER).set_value(str(synthetic_utkface))
    first.select_slider(key=TRAIN_IMG_SIZE).set_value(32)
    first.select_slider(key=TRAIN_BATCH).set_value(8)
    first.button(key=TRAIN_START).click().run()
    assert not first.exception
    job = jobs.current_job()
    _wait(lambda: job.progress.batch_log, "the first batch")
    del first  # the tab is closed: the job belongs to the server, not to the session

    second = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    second.switch_page("pages/train.py").run()
    for _ in range(3):  # reruns find the running job and start nothing
        second.run()
        assert not second.exception and jobs.current_job() is job
    assert len(_training_threads()) == 1
    assert any("Current job" in s.value for s in second.subheader)
    second.button(key=TRAIN_STOP).click().run()
    training_gate.set()
    job.thread.join(TIMEOUT)
    assert job.progress.status == "stopped" and not _training_threads()
    second.run()
    assert not second.exception and any("Stopped" in s.value for s in second.success)


# ------------------------------------------------------------------------------------- killed while saving

KILLED_MID_MODEL_SAVE = """
import sys, time
import numpy as np, keras
from core.atomic import atomic_path
inputs = keras.Input((4,))
model = keras.Model(inputs, keras.layers.Dense(2, name="out")(inputs))
model.get_layer("out").set_weights([np.full((4, 2), 7.0, "float32"), np.zeros(2, "float32")])
with atomic_path(sys.argv[1], suffix=".keras") as tmp:
    model.save(tmp)
    print("written", flush=True)  # the new file is complete beside the old one, not yet swapped in
    time.sleep(600)
"""

SAVING_JSON_IN_A_LOOP = """
import json, sys
from core.atomic import atomic_write_text
print("started", flush=True)
i = 0
while True:
    i += 1
    atomic_write_text(sys.argv[1], json.dumps({"status": "finished", "save": i, "pad": "x" * 200_000}))
"""


def _child(code: str, target: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-c", code, str(target)], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)  # our own child, by its pid
    child.wait(TIMEOUT)
    child.stdout.close()


def _model_weights(path: Path) -> np.ndarray:
    import keras
    return keras.saving.load_model(path, safe_mode=True, compile=False).get_layer("out").get_weights()[0]


def test_killed_in_the_middle_of_a_model_save_leaves_the_old_model(tmp_path):
    import keras
    inputs = keras.Input((4,))
    old = keras.Model(inputs, keras.layers.Dense(2, name="out")(inputs))
    old.get_layer("out").set_weights([np.ones((4, 2), "float32"), np.zeros(2, "float32")])
    target = tmp_path / "run" / "model.keras"
    atomic_save_model(old, target)

    child = _child(KILLED_MID_MODEL_SAVE, target)
    assert child.stdout.readline().strip() == "written"
    _kill(child)

    leftovers = [p for p in target.parent.iterdir() if p != target]
    assert leftovers, "the kill should have landed while the new file sat beside the old one"
    np.testing.assert_array_equal(_model_weights(target), np.ones((4, 2)))


def test_killed_at_random_while_saving_in_a_loop_leaves_a_whole_file(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, json.dumps({"status": "finished", "save": 0}))
    rng = random.Random(0)
    saves = []
    for _ in range(5):
        child = _child(SAVING_JSON_IN_A_LOOP, target)
        assert child.stdout.readline().strip() == "started"
        time.sleep(rng.uniform(0.05, 0.4))
        _kill(child)
        document = json.loads(target.read_text())  # never half a file
        assert document["status"] == "finished"
        saves.append(document["save"])
    assert max(saves) > 0  # the loop really was saving when killed


def test_an_error_in_the_middle_of_a_model_save_keeps_the_old_model(runs_root):
    target = runs_root / FAKE_RUN_NAME / "model.keras"
    before = target.read_bytes()

    class FailingMidSave:
        def save(self, path):
            Path(path).write_bytes(before[: len(before) // 2])  # half a zip, then the disk fills up
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_save_model(FailingMidSave(), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json", "metrics.json", "model.keras"]
    assert [e.name for e in registry.run_models()[0]] == [FAKE_RUN_NAME]


# ------------------------------------------------------------------------- corrupt or foreign files in runs/

def _run_folder(root: Path, name: str, config: str | None, metrics: str | None, model: bytes | None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    for filename, content in (("config.json", config), ("metrics.json", metrics)):
        if content is not None:
            (run / filename).write_text(content)
    if model is not None:
        (run / "model.keras").write_bytes(model)
    return run


FINISHED = json.dumps({"status": "finished"})
CONFIG = json.dumps({"model": {"arch": "residual_cnn", "img_size": 32}})


def test_corrupt_and_foreign_run_folders_are_skipped_with_a_warning(runs_root):
    model = (runs_root / FAKE_RUN_NAME / "model.keras").read_bytes()
    _run_folder(runs_root, "20250102-000000-corrupt-config", "{not json", FINISHED, model)
    _run_folder(runs_root, "20250103-000000-config-is-a-list", "[1, 2]", FINISHED, model)
    _run_folder(runs_root, "20250104-000000-no-model", CONFIG, FINISHED, None)
    _run_folder(runs_root, "20250105-000000-still-training", CONFIG, None, model)  # not a fault: not listed yet
    _run_folder(runs_root, "20250106-000000-failed", CONFIG, json.dumps({"status": "failed"}), None)
    (runs_root / "notes.txt").write_text("a stray file")
    (runs_root / "photos").mkdir()  # a foreign folder with no config.json

    entries, warnings = registry.run_models()

    assert [e.name for e in entries] == [FAKE_RUN_NAME]
    skipped = {w.split()[3].rstrip(":") for w in warnings}
    assert skipped == {"20250102-000000-corrupt-config", "20250103-000000-config-is-a-list",
                       "20250104-000000-no-model"}


def test_a_corrupt_metrics_file_is_skipped_with_a_warning(runs_root):
    model = (runs_root / FAKE_RUN_NAME / "model.keras").read_bytes()
    _run_folder(runs_root, "20250102-000000-corrupt-metrics", CONFIG, "{garbage", model)
    entries, warnings = registry.run_models()
    assert [e.name for e in entries] == [FAKE_RUN_NAME]
    assert any("20250102-000000-corrupt-metrics" in w for w in warnings)


def test_a_runs_path_that_is_a_file_lists_nothing(tmp_path, monkeypatch):
    (tmp_path / "runs").write_text("not a folder")
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    assert registry.run_models() == ([], [])


def test_a_corrupt_model_file_is_a_message_on_the_predict_page(runs_root):
    from tests.fuzz.make_corpus import encode, selfie

    (runs_root / FAKE_RUN_NAME / "model.keras").write_bytes(b"PK\x03\x04 this is no zip")
    at = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    at.file_uploader(key=predict_views.KEY_FILES).set_value(("me.jpg", encode(selfie()), "image/jpeg")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "Cannot load model.keras" in at.error[0].value


# ------------------------------------------------------------------------------ where models may come from

def _lambda_model():
    import keras
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2, name="twice")(inputs))


def test_models_outside_models_and_runs_are_refused(runs_root, tmp_path, tiny_residual_model):
    outside = tmp_path / "elsewhere" / "model.keras"
    outside.parent.mkdir()
    outside.write_bytes(tiny_residual_model.read_bytes())
    link_dir = runs_root / "20250102-000000-link"
    link_dir.mkdir()
    (link_dir / "model.keras").symlink_to(outside)  # inside runs/ by name, outside by its target
    for path in (outside, link_dir / "model.keras", runs_root / ".." / "elsewhere" / "model.keras"):
        with pytest.raises(registry.ModelError, match="only from models/ and runs/"):
            registry.load_model(path)
    registry.load_model(runs_root / FAKE_RUN_NAME / "model.keras")  # the app's own folder: fine
    registry.load_model(outside, allow_anywhere=True)  # the CLI, for a file the user names


def test_a_model_with_a_lambda_layer_is_refused_under_safe_mode(runs_root, monkeypatch, tmp_path):
    run = runs_root / "20250102-000000-lambda"
    run.mkdir()
    _lambda_model().save(run / "model.keras")
    for allow_anywhere in (False, True):  # safe_mode holds for the CLI's own files too
        with pytest.raises(registry.ModelError, match="Lambda"):
            registry.load_model(run / "model.keras", allow_anywhere=allow_anywhere)
    calls = []
    real_load = __import__("keras").saving.load_model
    monkeypatch.setattr("keras.saving.load_model", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    registry.load_model(runs_root / FAKE_RUN_NAME / "model.keras")
    assert calls and all(call.get("safe_mode") is True for call in calls)
