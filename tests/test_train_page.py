"""The Train page driven like a user: start a tiny run, watch curves appear, see it finish and listed. Training runs
in a child process (core/jobs.py); the page itself never imports TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import jobs, workers
from pages import evaluate as evaluate_page
from pages import explore as explore_page
from pages import train as page
from tests.support import PROJECT_ROOT, open_app_page

TIMEOUT = 600  # seconds; generous: TensorFlow's first import and tracing crawl on a busy, shared CPU


def _train_page() -> AppTest:
    return open_app_page("pages/train.py", TIMEOUT)


def _charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def _wait_for(condition, what: str) -> None:
    """Wait without rerunning the page: each AppTest run costs CPU the training thread needs."""
    deadline = time.time() + TIMEOUT
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_start_a_tiny_run_watch_curves_and_find_it_listed(synthetic_utkface, training_gate):
    assert jobs.current_job() is None or jobs.current_job().progress.done
    device, _ = workers.training_environment(wait=True)  # the device probe (a child process) has answered
    at = _train_page()
    assert device in at.caption[0].value  # the device in use (test_workers checks it is device_name())
    at.text_input(key=page.KEY_FOLDER).set_value(str(synthetic_utkface))
    at.select_slider(key=page.KEY_IMG_SIZE).set_value(32)
    at.number_input(key=page.KEY_EPOCHS).set_value(2)
    at.select_slider(key=page.KEY_BATCH).set_value(16)
    at.button(key=page.KEY_START).click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = jobs.current_job()
    assert job is not None and job.cfg.model.img_size == 32 and job.cfg.data_dir == str(synthetic_utkface)

    _wait_for(lambda: job.progress.batch_log, "the first batch")  # then training waits at the gate
    at.run()
    assert not at.exception and not job.progress.done
    assert len(_charts(at)) == 1 and at.button(key=page.KEY_STOP)  # the live curves, after one batch
    assert any(c.value.startswith("Strategy: default, 1 replica on CPU:0; global batch 16;") for c in at.caption)

    at.button(key=page.KEY_START).click()  # a second Start while the job runs
    at.run()
    assert any("already running" in w.value for w in at.warning)
    at.switch_page("pages/home.py")  # leaving the page and coming back neither kills nor restarts the job
    at.run()
    at.switch_page("pages/train.py")
    at.run()
    assert jobs.current_job() is job and job.running and not at.exception
    assert at.subheader[0].value.startswith("Current job")

    training_gate.set()
    job.thread.join(TIMEOUT)
    assert job.progress.status == "finished", job.progress.error
    assert (Path(job.progress.run_dir) / "model.tflite").is_file()  # ready for the LiteRT pages
    at.run()
    assert not at.exception
    assert any("saved to" in s.value for s in at.success)
    assert [m.label for m in at.metric] == ["Test age MAE (years)", "Test gender accuracy", "Test race accuracy"]
    listed = at.dataframe[0].value
    run_name = Path(job.progress.run_dir).name
    assert listed.set_index("Run").loc[run_name, "Status"] == "finished"
    at.selectbox(key=page.KEY_RUN).set_value(run_name)
    at.run()
    assert len(_charts(at)) == 2  # the finished job's curves and the chosen run's curves


def test_stop_ends_a_running_job(synthetic_utkface, training_gate):
    at = _train_page()
    at.text_input(key=page.KEY_FOLDER).set_value(str(synthetic_utkface))
    at.select_slider(key=page.KEY_IMG_SIZE).set_value(32)
    at.select_slider(key=page.KEY_BATCH).set_value(8)
    at.button(key=page.KEY_START).click()
    at.run()
    job = jobs.current_job()
    _wait_for(lambda: job.progress.batch_log, "the first batch")
    at.run()
    at.button(key=page.KEY_STOP).click()
    at.run()
    job.thread.join(TIMEOUT)  # the gate stays shut: Stop alone ends the held run
    assert job.progress.status == "stopped" and len(job.progress.batch_log) <= 2
    at.run()
    assert any("Stopped" in s.value for s in at.success)


def test_a_bad_setting_is_an_error_message_not_a_traceback(tmp_path):
    at = _train_page()
    at.text_input(key=page.KEY_FOLDER).set_value(str(tmp_path / "missing"))
    at.button(key=page.KEY_START).click()
    at.run()
    _wait_for(lambda: jobs.current_job().progress.done, "the job to fail")
    at.run()
    assert not at.exception
    assert any("Folder not found" in e.value for e in at.error)


def test_a_run_can_continue_a_trained_model_on_its_own_split(synthetic_utkface, tmp_path, monkeypatch,
                                                              tiny_residual_model):
    import pandas as pd

    from core.datasets import load_dataset
    from core.splits import split_table
    from tests.support import write_run

    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    earlier = write_run(tmp_path / "runs", model=tiny_residual_model)
    table = load_dataset("utkface", synthetic_utkface).table
    listed = pd.DataFrame({"path": table["path"], "split": split_table(table, (0.6, 0.2, 0.2), seed=5)})
    listed.to_csv(earlier / "split.csv", index=False)

    at = _train_page()
    at.text_input(key=page.KEY_FOLDER).set_value(str(synthetic_utkface))
    at.number_input(key=page.KEY_EPOCHS).set_value(1)
    at.selectbox(key=page.KEY_START_FROM).set_value(f"{earlier.name} — UTKFace · residual_cnn · 1 epoch · not tested")
    at.button(key=page.KEY_START).click()
    at.run()
    job = jobs.current_job()
    assert job.cfg.init_from == str(earlier / "model.keras") and job.cfg.split_file == str(earlier / "split.csv")
    assert (job.cfg.model.arch, job.cfg.model.img_size, job.cfg.model.age_head) == ("residual_cnn", 32,
                                                                                    "distribution")
    job.thread.join(TIMEOUT)
    assert job.progress.status == "finished", job.progress.error
    again = pd.read_csv(Path(job.progress.run_dir) / "split.csv")
    assert again.set_index("path")["split"].to_dict() == listed.set_index("path")["split"].to_dict()


PAINT_SCRIPT = """
import json, sys, time
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1] + "/streamlit_app.py", default_timeout=600).run()
at.switch_page("pages/train.py")
start = time.perf_counter()
at.run()
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "exceptions": [e.value for e in at.exception],
                  "captions": [c.value for c in at.caption], "titles": [t.value for t in at.title],
                  "heavy_modules": sorted(m for m in ("tensorflow", "keras") if m in sys.modules)}))
"""


def test_the_page_paints_at_once_without_tensorflow(tmp_path):
    """A fresh server process (this one has TensorFlow from other tests): the first paint of Train imports no
    TensorFlow, and the device line says it is checking until the probe answers."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "FACE_RUNS_DIR": str(tmp_path / "runs")}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(PAINT_SCRIPT), str(PROJECT_ROOT)], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"Train page first paint: {result['seconds']:.2f} s")
    assert result["exceptions"] == [] and result["titles"] == ["Train"]
    assert result["heavy_modules"] == []
    assert result["captions"][0].startswith("Training device: checking…")


FIXTURES = Path(__file__).parent / "fixtures"


def test_the_reference_models_are_listed_with_the_data_they_fit():
    at = _train_page()
    picker = at.selectbox(key=page.KEY_ARCH)
    assert {"vgg16", "levi_hassner", "fairface_cnn"} <= {option.split(" — ")[0] for option in picker.options}
    assert "Levi–Hassner age-group CNN (CVPR 2015 workshop): trains on Adience" in picker.help
    assert "fairface_cnn" not in picker.help or "trains on FairFace" in picker.help


def test_a_reference_model_refuses_another_datasets_data(synthetic_utkface):
    at = _train_page()
    at.selectbox(key=page.KEY_KIND).set_value("utkface")
    at.text_input(key=page.KEY_FOLDER).set_value(str(synthetic_utkface))
    at.selectbox(key=page.KEY_ARCH).set_value("fairface_cnn")
    at.button(key=page.KEY_START).click()
    at.run()  # refused before any job starts (start_job validates the request)
    assert not at.exception and any("fairface_cnn trains on fairface data only" in e.value for e in at.error)
    assert jobs.current_job() is None or not jobs.current_job().running


# Each reference model on its own dataset kind, and the headline metrics of that dataset's label space
REFERENCE_RUNS = {
    "fairface_cnn": ("fairface", ["Test age-group accuracy", "Test gender accuracy", "Test race accuracy"]),
    "levi_hassner": ("adience", ["Test age-group accuracy", "Test gender accuracy"]),
    "vgg16": ("utkface", ["Test age MAE (years)", "Test gender accuracy", "Test race accuracy"]),
}


@pytest.mark.parametrize("arch", sorted(REFERENCE_RUNS))
def test_each_reference_model_trains_one_epoch_from_the_page_in_its_own_labels(arch, synthetic_utkface):
    kind, headline = REFERENCE_RUNS[arch]
    at = _train_page()
    at.selectbox(key=page.KEY_KIND).set_value(kind)
    at.text_input(key=page.KEY_FOLDER).set_value(str(synthetic_utkface if kind == "utkface" else FIXTURES / kind))
    at.selectbox(key=page.KEY_ARCH).set_value(arch)
    at.select_slider(key=page.KEY_IMG_SIZE).set_value(32)
    at.number_input(key=page.KEY_EPOCHS).set_value(1)
    at.select_slider(key=page.KEY_BATCH).set_value(8)
    at.button(key=page.KEY_START).click()
    at.run()
    job = jobs.current_job()
    job.thread.join(TIMEOUT)
    assert job.progress.status == "finished", job.progress.error
    assert job.cfg.model.arch == arch and job.cfg.dataset == kind
    at.run()
    assert not at.exception and any("saved to" in s.value for s in at.success)
    assert [m.label for m in at.metric] == headline


# ---------------------------------------------- a job's states, driven through the real Keras callback (no training)

class _FakeJob:
    """What the page reads of a core.jobs.Job: its config, owner, Progress, whether it runs, and Stop."""

    def __init__(self, progress):
        from core.config import TrainConfig
        self.cfg, self.owner, self.progress = TrainConfig(epochs=3), None, progress

    @property
    def running(self) -> bool:
        return not self.progress.done

    def stop(self) -> None:
        self.progress.stop_event.set()


class _SavedModel:
    """Stands in for the Keras model the callback saves at a better epoch."""

    def save(self, path) -> None:
        Path(path).write_bytes(b"model")


def _held_job(monkeypatch, tmp_path):
    """A running job on this server whose Progress is fed by the run's real callback, called by the test."""
    from core.callbacks import progress_callback
    from core.config import Progress

    progress = Progress(status="running", epochs=3, batches_per_epoch=20, device="CPU", message="Training on CPU…")
    callback = progress_callback(progress, tmp_path, monitor="val_loss")
    callback.set_model(_SavedModel())
    job = _FakeJob(progress)
    monkeypatch.setattr(jobs, "_current_job", job)
    return job, callback


def _bar_text(at: AppTest) -> str:
    return at.get("progress")[0].proto.text


def test_the_first_step_says_compiling_and_stop_says_stopping(monkeypatch, tmp_path):
    """Issue 20 item 4: until the first batch ends (tracing and compiling can take minutes) the bar says so; after
    Stop it says the job is stopping until it has."""
    job, callback = _held_job(monkeypatch, tmp_path)
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    at = _train_page()
    assert "compiling the model" in _bar_text(at).lower(), _bar_text(at)
    callback.on_train_batch_end(0, {"loss": 2.0})
    at.run()
    assert "compiling" not in _bar_text(at).lower() and "batch 1/20" in _bar_text(at)
    at.button(key=page.KEY_STOP).click()
    at.run()
    assert job.progress.stop_event.is_set()
    assert "stopping" in _bar_text(at).lower(), _bar_text(at)


def test_the_bar_says_validating_during_validation(monkeypatch, tmp_path):
    """Issue 20 item 10: the bar at 100 % of an epoch names the validation pass it is waiting for."""
    _, callback = _held_job(monkeypatch, tmp_path)
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    for batch in range(20):
        callback.on_train_batch_end(batch, {"loss": 1.0})
    callback.on_test_begin()
    at = _train_page()
    assert "validating" in _bar_text(at).lower(), _bar_text(at)


def test_live_curves_have_epoch_points_and_a_smooth_batch_line(monkeypatch, tmp_path):
    """Issue 20 item 10: Keras reports running means that restart each epoch, which drew a jump at every epoch
    start; the train line is now per-batch values, smoothed, beside one point per finished epoch."""
    import json

    import numpy as np

    _, callback = _held_job(monkeypatch, tmp_path)
    rng = np.random.default_rng(0)
    callback.on_train_begin()
    step = 0
    for epoch in range(3):
        callback.on_epoch_begin(epoch)
        seen = []
        for batch in range(20):
            step += 1
            seen.append(2.0 - 0.02 * step + rng.normal(0, 0.05))
            callback.on_train_batch_end(batch, {"loss": float(np.mean(seen))})  # Keras's running mean
        callback.on_epoch_end(epoch, {"loss": float(np.mean(seen)), "val_loss": float(np.mean(seen)) + 0.1})
    at = _train_page()
    figure = json.loads(_charts(at)[0].proto.spec)
    loss = [t for t in figure["data"] if t.get("xaxis", "x") == "x"]
    names = {t["name"] for t in loss}
    line = next(t for t in loss if t["name"].startswith("train") and t["mode"] == "lines")
    assert max(abs(b - a) for a, b in zip(line["y"], line["y"][1:], strict=False)) < 0.08  # no jump at epoch starts
    epochs = next(t for t in loss if t["name"].startswith("train") and "markers" in t["mode"])
    assert epochs["x"] == [1, 2, 3], names


# ------------------------------------------------------------------- runs: named, renamed, deleted (issue 20 item 5)

def _fake_runs(monkeypatch, tmp_path) -> Path:
    from tests.support import write_run

    root = tmp_path / "runs"
    monkeypatch.setenv("FACE_RUNS_DIR", str(root))
    monkeypatch.setattr(jobs, "_current_job", None)  # no earlier test's job on this server
    write_run(root, "20250101-000000-residual_cnn", b"unused", metrics={
        "status": "finished", "epochs_run": 8, "test": {"age_mae": 5.234, "gender_accuracy": 0.9}})
    write_run(root, "20250101-000001-residual_cnn", b"unused", metrics={"status": "finished", "epochs_run": 2})
    write_run(root, "20250101-000002-residual_cnn", b"unused", metrics={"status": "stopped", "epochs_run": 0})
    return root


def test_runs_are_named_by_what_they_are_and_can_be_renamed_and_deleted(monkeypatch, tmp_path):
    root = _fake_runs(monkeypatch, tmp_path)
    at = _train_page()
    starts = at.selectbox(key=page.KEY_START_FROM).options
    assert "20250101-000000-residual_cnn — UTKFace · residual_cnn · 8 epochs · test age MAE 5.23" in starts, starts
    assert not any(o.startswith("20250101-000002") for o in starts)  # stopped before one epoch: no model to offer

    at.selectbox(key=page.KEY_MANAGE_RUN).set_value("20250101-000000-residual_cnn")
    at.text_input(key=page.KEY_NEW_NAME).set_value("my first model")
    at.button(key=page.KEY_RENAME).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "my first model — UTKFace · residual_cnn · 8 epochs · test age MAE 5.23" in \
        at.selectbox(key=page.KEY_START_FROM).options
    assert "my first model" in at.dataframe[0].value["Name"].tolist()

    at.selectbox(key=page.KEY_MANAGE_RUN).set_value("20250101-000001-residual_cnn")
    at.text_input(key=page.KEY_NEW_NAME).set_value("my first model")  # taken: refused in words
    at.button(key=page.KEY_RENAME).click().run()
    assert any("already" in e.value for e in at.error), [e.value for e in at.error]

    at.checkbox(key=page.KEY_CONFIRM_DELETE).check().run()  # Delete is enabled only once confirmed
    at.button(key=page.KEY_DELETE).click().run()
    assert not at.exception
    assert not (root / "20250101-000001-residual_cnn").exists()
    assert "20250101-000001-residual_cnn" not in at.dataframe[0].value["Run"].tolist()
    assert not any("000001" in o for o in at.selectbox(key=page.KEY_START_FROM).options)


def test_a_public_visitor_renames_and_deletes_only_their_own_runs(monkeypatch, tmp_path):
    from core import public_runs
    from core.access import Profile

    root = _fake_runs(monkeypatch, tmp_path)
    public_runs.mark_public_run(root / "20250101-000000-residual_cnn", "me")
    public_runs.mark_public_run(root / "20250101-000001-residual_cnn", "someone else")
    monkeypatch.setenv("FACE_MODE", "public")
    monkeypatch.setenv("FACE_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.session_state["session.owner"] = "me"
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert at.selectbox(key=page.KEY_MANAGE_RUN).options == ["20250101-000000-residual_cnn"]
    public = Profile("public")
    assert not public_runs.may_manage_run(public, root / "20250101-000001-residual_cnn", "me")
    assert not public_runs.may_manage_run(public, root / "20250101-000002-residual_cnn", "me")  # the operator's
    assert public_runs.may_manage_run(public, root / "20250101-000000-residual_cnn", "me")


def test_choices_survive_a_page_switch_and_one_folder_is_shared(monkeypatch, tmp_path):
    """Issue 20 item 2: the Train form as last submitted comes back after a page switch, and the dataset folder
    typed on one page is the folder on Explore, Train and Evaluate."""
    started = []
    monkeypatch.setattr(jobs, "start_job", lambda cfg, *args: (started.append(cfg), (None, True))[1])
    folder = str(tmp_path)
    at = _train_page()
    at.text_input(key=page.KEY_FOLDER).set_value(folder)
    at.number_input(key=page.KEY_EPOCHS).set_value(7)
    at.selectbox(key=page.KEY_ARCH).set_value("custom_cnn")
    at.button(key=page.KEY_START).click().run()
    assert [cfg.epochs for cfg in started] == [7]
    at.switch_page("pages/home.py").run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert at.number_input(key=page.KEY_EPOCHS).value == 7 and at.selectbox(key=page.KEY_ARCH).value == "custom_cnn"
    assert at.text_input(key=page.KEY_FOLDER).value == folder
    at.switch_page("pages/evaluate.py").run()
    assert at.text_input(key=evaluate_page.KEY_FOLDER).value == folder
    at.text_input(key=evaluate_page.KEY_FOLDER).set_value(str(tmp_path / "other")).run()
    at.switch_page("pages/explore.py").run()
    assert at.text_input(key=explore_page.KEY_FOLDER).value == str(tmp_path / "other")
