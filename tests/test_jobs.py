"""Training jobs in a child process (core/jobs.py), for real on this CPU: progress reaches the server, a finished run
has model.keras and model.tflite, Stop ends the child within seconds, a child killed by a signal is a failed run
that names the signal, and the server process never imports TensorFlow."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core import jobs, policy, public_runs, runs
from core.config import TrainConfig, TrainingError
from tests.support import PROJECT_ROOT

TIMEOUT = 600  # seconds: a child's TensorFlow import and first trace on a busy 2-core machine
STOPPED_WITHIN_S = 8.0  # 2 s grace, SIGTERM, the monitor's polling, on a fully loaded 2-core machine (7.5 s seen)


def _cfg(folder: Path, out: Path, **overrides) -> TrainConfig:
    """Seconds of training; the dataset's own crops (no face detection) unless a test asks for the app's."""
    return TrainConfig.tiny(**{"data_dir": str(folder), "out_dir": str(out), "batch_size": 8, "limit": 0,
                               "crops": "dataset", **overrides})


def _wait(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def _no_job_outlives_its_test():
    yield
    job = jobs.current_job()
    if job is not None and job.running:
        job.stop()
        job.thread.join(TIMEOUT)


def _held_job(cfg: TrainConfig) -> jobs.Job:
    """A new job, held after its first batch: its run folder exists and it has no final status yet."""
    job, is_new = jobs.start_job(cfg)
    assert is_new
    _wait(lambda: job.progress.batch_log or job.progress.done, "the first batch")
    assert not job.progress.done, job.progress.error
    return job


# ----------------------------------------------------------------------------------- a run, seen from a server

SERVER_SCRIPT = """
import json, sys, time
from core import jobs, settings
from core.config import TrainConfig

cfg = TrainConfig.tiny(data_dir=str(settings.SAMPLE_DIR), out_dir=sys.argv[1])
job, is_new = jobs.start_job(cfg)
seen_running_with_batches = False
while job.running:
    progress = job.progress
    seen_running_with_batches |= progress.status == "running" and bool(progress.batch_log)
    time.sleep(0.05)
s = job.progress.snapshot()
print(json.dumps({"is_new": is_new, "status": s["status"], "error": s["error"], "run_dir": s["run_dir"],
                  "points": len(s["batch_log"]), "epochs": len(s["history"]), "batches": s["batches_per_epoch"],
                  "device": s["device"], "notes": s["notes"], "fraction": job.progress.fraction,
                  "seen_running_with_batches": seen_running_with_batches, "exitcode": job.process.exitcode,
                  "heavy_modules": sorted(m for m in ("tensorflow", "keras", "tf_keras_vis") if m in sys.modules)}))
"""


def test_a_tiny_run_in_a_child_reports_to_a_server_that_never_imports_tensorflow(tmp_path):
    """A fresh interpreter plays the server (other tests in this process import TensorFlow themselves)."""
    from core.training import device_name  # imports TensorFlow: not at the top
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SERVER_SCRIPT), str(tmp_path / "runs")],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy_modules"] == []  # the child trained; the server only read its reports
    assert result["is_new"] and result["status"] == "finished", result["error"]
    assert result["seen_running_with_batches"]  # per-batch progress arrived while the child was training
    assert result["points"] == result["batches"] > 0 and result["epochs"] == 1 and result["fraction"] == 1.0
    assert result["device"] == device_name() and result["exitcode"] == 0
    run_dir = Path(result["run_dir"])
    assert (run_dir / "model.keras").is_file() and (run_dir / "model.tflite").stat().st_size > 0
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "finished"
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]  # no temporary files left


# ------------------------------------------------------------------------------------------------------ Stop

def test_stop_mid_epoch_stops_the_child_after_its_batch(synthetic_utkface, tmp_path, training_gate, monkeypatch):
    # The graceful path whatever the load: a wall-clock bound here only measured the CI machine (2 s grace: jobs).
    monkeypatch.setattr(jobs, "STOP_GRACE_S", TIMEOUT)
    job = _held_job(_cfg(synthetic_utkface, tmp_path, epochs=3))
    assert runs.list_runs(tmp_path).set_index("path").loc[job.progress.run_dir, "status"] == "running"
    job.stop()
    job.thread.join(TIMEOUT)
    assert job.progress.status == "stopped" and not job.ended_by_server and job.process.exitcode == 0
    assert len(job.progress.batch_log) == 1 and job.progress.message.startswith("Stopped; saved to")
    run = Path(job.progress.run_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "stopped" and metrics["test"] == {}
    assert (run / "model.keras").is_file() and not (run / "model.tflite").exists()  # a stopped run is not exported


def test_a_child_that_cannot_stop_at_once_is_ended_within_seconds(synthetic_utkface, tmp_path):
    job, _ = jobs.start_job(_cfg(synthetic_utkface, tmp_path))
    _wait(lambda: job.progress.message == "Starting TensorFlow…", "the child to start")
    pressed = time.monotonic()
    job.stop()  # it is importing TensorFlow: no Keras callback is there yet to see the event
    job.thread.join(TIMEOUT)
    assert time.monotonic() - pressed < STOPPED_WITHIN_S + 1.0  # + SIGKILL's second, should SIGTERM not do
    assert job.progress.status == "stopped" and job.ended_by_server
    assert not job.process.is_alive()


# ------------------------------------------------------------------------------------------- a child that dies

@pytest.mark.parametrize(("sig", "reason"), [(signal.SIGSEGV, "SIGSEGV, a native crash in TensorFlow"),
                                             (signal.SIGKILL, "SIGKILL, killed, perhaps out of memory")])
def test_a_killed_child_is_a_failed_run_that_names_the_signal(synthetic_utkface, tmp_path, training_gate, sig, reason):
    from core.training import device_name  # imports TensorFlow: not at the top
    job = _held_job(_cfg(synthetic_utkface, tmp_path))
    os.kill(job.pid, sig)  # our own child, by its pid
    job.thread.join(TIMEOUT)
    assert job.progress.status == "failed" and reason in job.progress.error
    assert job.process.exitcode == -sig
    metrics = json.loads((Path(job.progress.run_dir) / "metrics.json").read_text())
    assert metrics["status"] == "failed" and reason in metrics["error"] and metrics["device"] == device_name()
    assert runs.list_runs(tmp_path).set_index("path").loc[job.progress.run_dir, "status"] == "failed"

    again, is_new = jobs.start_job(_cfg(synthetic_utkface, tmp_path))  # the server carries on
    assert is_new and again is not job and again.running
    again.stop()
    again.thread.join(TIMEOUT)
    assert again.progress.status == "stopped"


def test_an_error_inside_training_is_reported_with_its_message(synthetic_utkface, tmp_path):
    job, _ = jobs.start_job(_cfg(synthetic_utkface, tmp_path, init_from=str(tmp_path / "missing.keras")))
    job.thread.join(TIMEOUT)
    assert job.progress.status == "failed" and "Cannot start from" in job.progress.error
    assert job.process.exitcode == 0  # the child recorded the failure itself and exited cleanly
    metrics = json.loads((Path(job.progress.run_dir) / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "Cannot start from" in metrics["error"]


# ------------------------------------------------------------------------------------------ one job per server

def test_only_one_job_runs_per_server(synthetic_utkface, tmp_path, training_gate):
    job = _held_job(_cfg(synthetic_utkface, tmp_path))
    second, second_is_new = jobs.start_job(_cfg(synthetic_utkface, tmp_path, epochs=5))
    assert not second_is_new and second is job and jobs.current_job() is job
    with pytest.raises(TrainingError, match="epochs"):  # a config that cannot work fails at once, in the server
        jobs.start_job(_cfg(synthetic_utkface, tmp_path, epochs=0))
    assert jobs.current_job() is job
    training_gate.set()
    job.thread.join(TIMEOUT)
    assert job.progress.status == "finished", job.progress.error
    assert not job.running and jobs.start_job(_cfg(synthetic_utkface, tmp_path))[1]


# ------------------------------------------------------------------------------------------------ public jobs

def test_a_public_child_runs_within_its_limits_in_a_run_marked_and_locked(synthetic_utkface, tmp_path, training_gate):
    from core import housekeeping
    limits = policy.TrainingLimits(memory_bytes=5 * 1024 ** 3, cpu_seconds=1234)
    job, is_new = jobs.start_job(_cfg(synthetic_utkface, tmp_path), owner="visitor", limits=limits)
    assert is_new and job.owner == "visitor"
    _wait(lambda: job.progress.batch_log or job.progress.done, "the first batch")
    assert not job.progress.done, job.progress.error
    proc_limits = Path(f"/proc/{job.pid}/limits").read_text()
    assert re.search(r"Max cpu time\s+1234\s+1244\s+seconds", proc_limits), proc_limits
    assert re.search(rf"Max address space\s+{limits.memory_bytes}\s+{limits.memory_bytes}\s+bytes", proc_limits)
    run = Path(job.progress.run_dir)
    assert public_runs.run_owner(run) == "visitor"  # labelled before the server heard of the folder
    assert housekeeping.run_in_progress(run) and (run / housekeeping.RUN_LOCK).is_file()  # the child holds its lock
    assert public_runs.enforce_runs_quota(tmp_path, 0) == []  # a run in progress is never deleted by the quota
    training_gate.set()
    job.thread.join(TIMEOUT)
    assert job.progress.status == "finished", job.progress.error
    assert not housekeeping.run_in_progress(run) and public_runs.run_owner(run) == "visitor"


def test_a_public_child_past_its_memory_limit_fails_saying_so(synthetic_utkface, tmp_path):
    limits = policy.TrainingLimits(memory_bytes=600 * 1024 ** 2)  # TensorFlow alone maps more than this
    job, _ = jobs.start_job(_cfg(synthetic_utkface, tmp_path), owner="visitor", limits=limits)
    job.thread.join(TIMEOUT)
    assert job.progress.status == "failed" and "memory limit" in job.progress.error, job.progress.error
    assert "0.6 GB" in job.progress.error


def test_a_workbench_job_has_no_limits_and_no_owner(monkeypatch):
    monkeypatch.setenv("FACE_MODE", "workbench")
    assert jobs.Job(TrainConfig.tiny())._child_limits() == (None, None)
    assert jobs.Job(TrainConfig.tiny(), "v", policy.TrainingLimits())._child_limits() == (6 * 1024 ** 3, 1800)
