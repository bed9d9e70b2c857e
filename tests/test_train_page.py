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

from streamlit.testing.v1 import AppTest

from core import jobs, workers
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
    at.selectbox(key=page.KEY_START_FROM).set_value(f"{earlier.name} (run)")
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
