"""An evaluation as a job: it predicts in its own thread, reports progress and an ETA, can be cancelled, holds the
server's one evaluation slot while it runs, and ends with its results or the reason it has none."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from core import eval_jobs, evaluation, slots
from core.eval_jobs import EvaluationJob, Task

WAIT_S = 30


@pytest.fixture
def gated(monkeypatch):
    """predict_table stand-in: 4 batches of 25 rows, each waiting for the test's go-ahead."""
    go = threading.Semaphore(0)

    def predict_table(predictor, table, on_progress=None, crops="app"):
        for done in (25, 50, 75, 100):
            assert go.acquire(timeout=WAIT_S)
            on_progress(done, len(table))
        return table.assign(pred_age=30.0)

    monkeypatch.setattr(evaluation, "predict_table", predict_table)
    monkeypatch.setattr(evaluation, "evaluate_frame", lambda frame, kind: {"n": len(frame)})
    return go


def _job(models: int = 1) -> EvaluationJob:
    table = pd.DataFrame({"path": [f"{i}.jpg" for i in range(100)]})
    return EvaluationJob([Task(("key", n), f"model {n}", None, "app") for n in range(models)], table, "utkface")


def _until(condition) -> None:
    event = threading.Event()
    for _ in range(WAIT_S * 20):
        if condition():
            return
        event.wait(0.05)
    raise AssertionError("timed out")


def test_a_job_reports_progress_and_eta_then_its_results(gated):
    job = _job(models=2).start()
    assert job.running and job.eta_seconds() is None and "estimating" in job.status_line()
    gated.release()
    _until(lambda: job.done == 25)
    assert job.fraction == 25 / 200 and job.eta_seconds() >= 0 and "model 0: 25 of 200 images" in job.status_line()
    with pytest.raises(slots.Busy):  # the server's one slot is the job's while it runs
        slots.take_evaluation_slot()
    for _ in range(7):
        gated.release()
    job.thread.join(WAIT_S)
    assert job.status == "finished" and set(job.results) == {("key", 0), ("key", 1)}
    assert job.results[("key", 1)][1] == {"n": 100}
    slots.take_evaluation_slot()()  # free again


def test_cancel_stops_at_the_next_batch_and_frees_the_slot(gated):
    job = _job().start()
    job.cancel()
    assert "Cancelling" in job.status_line()
    gated.release()
    job.thread.join(WAIT_S)
    assert job.status == "cancelled" and not job.results and job.done == 25
    slots.take_evaluation_slot()()


def test_a_failure_is_a_reason_not_a_crash(monkeypatch):
    def broken(*args, **kwargs):
        raise evaluation.EvaluationError("Cannot read 0.jpg.")

    monkeypatch.setattr(evaluation, "predict_table", broken)
    job = _job().start()
    job.thread.join(WAIT_S)
    assert job.status == "failed" and str(job.failure) == "Cannot read 0.jpg."
    slots.take_evaluation_slot()()


def test_durations_read_as_minutes_and_seconds():
    assert eval_jobs._duration(75) == "1 min 15 s" and eval_jobs._duration(9.4) == "9 s"
