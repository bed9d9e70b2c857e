"""Many sessions at once. Streamlit serves every browser tab from its own thread of one process, so what the pages
share (the cached model loader, the Predictor, the face detector, the one training job) is exercised here from
several threads at once: the model must load once, every answer must match a serial run, memory must stay flat,
and two Start presses must make one job.

(AppTest cannot stand in for concurrent sessions: each run swaps a process-wide mock Runtime in and out.)
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from core import jobs, registry, settings
from core.config import TrainConfig
from core.predict import analyze_bytes
from tests.fuzz.make_corpus import encode, selfie
from tests.support import write_run

SESSIONS = 8
# Fresh threads per round, as Streamlit runs every rerun in a new thread: the allocator's per-thread arenas grow
# for the first few rounds (+~90 MB measured over 4 rounds), then hold within ±15 MB (a serial loop stays flat).
WARMUP_ROUNDS = 4
ROUNDS = 6
TIMEOUT = 600
FLAT_MB = 64  # growth allowed over ROUNDS × SESSIONS predictions after the warm-up


def rss_mb() -> float:
    """Resident memory of this process, from /proc (no psutil needed)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.fixture
def entry(tmp_path, monkeypatch, tiny_residual_model) -> registry.ModelEntry:
    write_run(tmp_path / "runs", model=tiny_residual_model)
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "no-shipped-model")
    entries, _ = registry.all_models()
    assert len(entries) == 1
    return entries[0]


@pytest.fixture
def common(monkeypatch):
    """pages/common.py with an empty predictor cache, a counting .tflite export (the model's first use exports it
    in a child process) and a counting, deliberately slow Predictor: a slow construction is when a second session
    would build one too if the cache let it."""
    import core.export
    import core.predict
    import pages.common as module

    module._load_predictor.clear()
    exports, loads = [], []
    real_export, real_predictor = core.export._export_in_child, core.predict.Predictor

    def counting_export(keras_path, *args, **kwargs):
        exports.append(keras_path)
        return real_export(keras_path, *args, **kwargs)

    def counting_predictor(tflite_path, *args, **kwargs):
        loads.append(tflite_path)
        time.sleep(1.0)
        return real_predictor(tflite_path, *args, **kwargs)

    monkeypatch.setattr(core.export, "_export_in_child", counting_export)
    monkeypatch.setattr(core.predict, "Predictor", counting_predictor)
    module.exports, module.loads = exports, loads
    yield module
    module._load_predictor.clear()


@pytest.fixture(scope="module")
def photo() -> bytes:
    return encode(selfie())


def _sessions(work, count: int = SESSIONS) -> list:
    """`work()` in `count` threads released together; every result, or the first error re-raised."""
    barrier = threading.Barrier(count)

    def session(_):
        barrier.wait(TIMEOUT)
        return work()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(session, range(count), timeout=TIMEOUT))


def _numbers(analysis) -> tuple:
    p = analysis.faces[0].prediction
    return (p.age, p.age_std, p.female_prob, *p.race_probs.values())


def test_eight_sessions_predict_at_once_and_the_model_loads_once(entry, common, photo):
    def session():
        predictor = common.predictor_for(entry)
        return predictor, analyze_bytes(photo, predictor)

    results = _sessions(session)

    assert len(common.exports) == 1  # the model was exported to .tflite once, for all eight sessions
    assert len(common.loads) == 1  # st.cache_resource let one session build the Predictor; the others waited
    predictors = {id(predictor) for predictor, _ in results}
    assert len(predictors) == 1
    predictor = results[0][0]
    expected = _numbers(analyze_bytes(photo, predictor))  # the same photo, alone
    for _, analysis in results:
        assert len(analysis.faces) == 1
        np.testing.assert_allclose(_numbers(analysis), expected, rtol=1e-5, atol=1e-5)


def test_memory_stays_flat_over_rounds_of_concurrent_sessions(entry, common, photo):
    def session():
        return len(analyze_bytes(photo, common.predictor_for(entry)).faces)

    for _ in range(WARMUP_ROUNDS):  # model, detector, traced functions, allocator arenas
        assert _sessions(session) == [1] * SESSIONS
    before = rss_mb()
    for _ in range(ROUNDS):
        assert _sessions(session) == [1] * SESSIONS
    growth = rss_mb() - before
    print(f"RSS {before:.0f} MB before, growth {growth:+.1f} MB over {ROUNDS * SESSIONS} concurrent predictions")
    assert growth < FLAT_MB
    assert len(common.exports) == 1 and len(common.loads) == 1


def test_sessions_pressing_start_together_get_one_job(tmp_path, monkeypatch, synthetic_utkface, training_gate):
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    previous = jobs.current_job()
    if previous is not None:  # a job left by another test must not decide this one
        previous.stop()
        previous.thread.join(TIMEOUT)
    cfg = TrainConfig.tiny("custom_cnn", data_dir=str(synthetic_utkface), batch_size=8, epochs=2)

    results = _sessions(lambda: jobs.start_job(cfg))

    started = {id(job) for job, _ in results}
    assert len(started) == 1 and sum(is_new for _, is_new in results) == 1
    job = results[0][0]
    assert jobs.current_job() is job
    assert len([t for t in threading.enumerate() if t.name == "training-job" and t.is_alive()]) == 1
    # held after its first batch (training_gate): its run folder exists, so a second job would show a second one
    deadline = time.monotonic() + TIMEOUT
    while not (job.progress.batch_log or job.progress.done):
        assert time.monotonic() < deadline, "timed out waiting for the first batch"
        time.sleep(0.1)
    assert not job.progress.done, job.progress.error
    job.stop()
    training_gate.set()
    job.thread.join(TIMEOUT)
    assert job.progress.status == "stopped"
    assert not [t for t in threading.enumerate() if t.name == "training-job" and t.is_alive()]
    assert len(list((tmp_path / "runs").iterdir())) == 1  # one run folder
