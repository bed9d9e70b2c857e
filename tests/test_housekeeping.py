"""core/housekeeping.py: a save killed with kill -9 leaves a temporary file the startup sweep removes; a run whose
process died is marked interrupted (at once when it held the run lock, after a quiet spell otherwise); the cache
folder is cut to its cap, least recently used first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import housekeeping, settings
from core.atomic import is_atomic_temp
from tests.support import PROJECT_ROOT, write_run

OLD = 3600.0  # seconds: far past STALE_TEMP_SECONDS


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def _child_until_ready(code: str) -> subprocess.Popen:
    """A Python child that prints 'ready' once it has done its part, then waits to be killed."""
    child = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    return child


def _kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL


# ------------------------------------------------------------------------------------- temporary files

@pytest.mark.parametrize(("name", "temp"), [
    (".model.keras.abc123_z.keras", True), (".metrics.json.k2j4h5g6.tmp", True),
    (".images-96px-300-0123456789abcdef.npy.q1w2e3r4.npy", True),
    ("model.keras", False), (".gitkeep", False), ("run.lock", False), (".metrics.json.short.tmp", False),
    (".model.keras.ABCDEFGH.keras", False), ("metrics.json.abc123_z.tmp", False),
])
def test_the_pattern_of_atomic_temporary_files(name, temp):
    assert is_atomic_temp(name) is temp


def test_a_save_killed_mid_write_leaves_a_file_the_sweep_removes(tmp_path):
    target = tmp_path / "runs" / "r1" / "model.keras"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"the good model")
    child = _child_until_ready(
        "import sys, time\nfrom core.atomic import atomic_path\n"
        f"with atomic_path({str(target)!r}, suffix='.keras') as tmp:\n"
        "    tmp.write_bytes(b'half a model')\n    print('ready', flush=True)\n    time.sleep(600)\n")
    _kill(child)
    leftovers = [p for p in target.parent.iterdir() if p != target]
    assert len(leftovers) == 1 and is_atomic_temp(leftovers[0].name)  # what kill -9 leaves behind

    assert housekeeping.sweep_temp_files([tmp_path]) == []  # too fresh: it could be a save in progress
    _age(leftovers[0], OLD)
    fresh = target.parent / ".metrics.json.zzzzzzzz.tmp"
    fresh.write_text("a save happening right now")
    keep = [target, target.parent / ".gitkeep", target.parent / "run.lock"]
    for path in keep[1:]:
        path.write_text("")
        _age(path, OLD)
    assert housekeeping.sweep_temp_files([tmp_path]) == leftovers
    assert sorted(target.parent.iterdir()) == sorted([*keep, fresh])
    assert target.read_bytes() == b"the good model"


def test_the_sweep_never_follows_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / ".precious.json.abcdefgh.tmp"
    victim.write_text("not ours")
    _age(victim, OLD)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "link").symlink_to(outside, target_is_directory=True)
    (tmp_path / "cache" / ".x.npy.abcdefgh.npy").symlink_to(victim)
    assert housekeeping.sweep_temp_files([tmp_path / "cache"]) == []
    assert victim.exists()


# --------------------------------------------------------------------------------------------------- runs

def _run(root: Path, name: str, metrics: dict | None, quiet_s: float = 0.0) -> Path:
    run = write_run(root, name, config={"model": {"arch": "custom_cnn"}}, metrics=metrics)
    for path in [*run.iterdir(), run]:
        _age(path, quiet_s)
    return run


def _status(run: Path) -> str:
    return json.loads((run / "metrics.json").read_text())["status"] if (run / "metrics.json").exists() else "-"


def test_runs_left_running_are_marked_interrupted(tmp_path):
    quiet = housekeeping.RUN_QUIET_SECONDS + 60
    said_running = _run(tmp_path, "20250101-000000-custom_cnn", {"status": "running", "epochs_run": 2}, quiet)
    no_metrics = _run(tmp_path, "20250101-000001-custom_cnn", None, quiet)
    half_written = _run(tmp_path, "20250101-000002-custom_cnn", None, quiet)
    (half_written / "metrics.json").write_text('{"status": "fini')
    for path in (half_written / "metrics.json", half_written):
        _age(path, quiet)
    finished = _run(tmp_path, "20250101-000003-custom_cnn", {"status": "finished"}, quiet)
    recent = _run(tmp_path, "20250101-000004-custom_cnn", None, 60)  # maybe a CLI training in another process
    fold = _run(tmp_path / "20250101-000005-custom_cnn-cv3", "fold1", {"status": "running"}, quiet)
    (tmp_path / "not-a-run").mkdir()

    marked = housekeeping.mark_interrupted_runs(tmp_path)
    assert sorted(marked) == sorted([said_running, no_metrics, half_written, fold])
    assert [_status(r) for r in (said_running, no_metrics, half_written, fold)] == ["interrupted"] * 4
    doc = json.loads((said_running / "metrics.json").read_text())
    assert doc["epochs_run"] == 2 and doc["previous_status"] == "running" and "stopped before" in doc["error"]
    assert _status(finished) == "finished" and _status(recent) == "-"
    assert housekeeping.mark_interrupted_runs(tmp_path) == []  # marking is done once


def test_a_killed_training_process_is_seen_at_once_by_its_lock(tmp_path):
    run = _run(tmp_path, "20250101-000000-residual_cnn", {"status": "running"})
    child = _child_until_ready(
        "import time\nfrom core.housekeeping import hold_run_lock\n"
        f"lock = hold_run_lock({str(run)!r})\nprint('ready', flush=True)\ntime.sleep(600)\n")
    try:
        assert housekeeping.run_in_progress(run)
        assert housekeeping.mark_interrupted_runs(tmp_path, quiet_s=0) == []  # alive: however quiet
    finally:
        _kill(child)
    assert not housekeeping.run_in_progress(run)  # the kernel dropped the lock with the process
    assert housekeeping.mark_interrupted_runs(tmp_path) == [run]  # without waiting RUN_QUIET_SECONDS
    assert _status(run) == "interrupted" and not housekeeping.run_in_progress(run)


# -------------------------------------------------------------------------------------------------- cache

def test_the_cache_is_evicted_to_its_cap_least_recently_used_first(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    files = []
    for i, age in enumerate((500, 400, 300, 200, 100)):  # seconds since last use: file 0 is the oldest
        path = cache / f"images-96px-{i}.npy"
        path.write_bytes(b"x" * 1000)
        _age(path, age)
        files.append(path)
    writing = cache / ".faces-9.npy.abcdefgh.npy"  # a save in progress: neither counted nor touched
    writing.write_bytes(b"x" * 5000)
    assert housekeeping.evict_cache(10_000, cache) == []
    assert housekeeping.evict_cache(2500, cache) == files[:3]
    assert sorted(cache.iterdir()) == sorted([*files[3:], writing])
    assert sum(p.stat().st_size for p in files[3:]) <= 2500
    assert housekeeping.evict_cache(0, tmp_path / "no-cache") == []


def test_the_cache_cap_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("FACE_CACHE_MAX_MB", "300")
    assert settings.cache_max_bytes() == 300 * 1024 ** 2
    for bad in ("lots", "-5", "0"):
        monkeypatch.setenv("FACE_CACHE_MAX_MB", bad)
        assert settings.cache_max_bytes() == settings.DEFAULT_CACHE_MAX_MB * 1024 ** 2


# ------------------------------------------------------------------------------------------------ startup

def test_startup_sweeps_once_per_process(tmp_path, monkeypatch):
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    monkeypatch.setenv("FACE_RUNS_DIR", str(runs))
    monkeypatch.setenv("FACE_CACHE_DIR", str(cache))
    monkeypatch.setenv("FACE_CACHE_MAX_MB", "0.001")  # ~1 KB
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "models")
    monkeypatch.setattr(housekeeping, "_startup_done", False)
    stale = tmp_path / "models" / ".face.keras.abcdefgh.keras"
    stale.parent.mkdir()
    stale.write_bytes(b"half")
    _age(stale, OLD)
    dead = _run(runs, "20250101-000000-custom_cnn", {"status": "running"}, housekeeping.RUN_QUIET_SECONDS + 1)
    cache.mkdir()
    (cache / "big.npy").write_bytes(b"x" * 5000)

    report = housekeeping.startup_once()
    assert report.removed_temp == [stale] and report.interrupted == [dead] and report.evicted == [cache / "big.npy"]
    assert housekeeping.startup_once() is None  # every later page run: nothing to do, at once


def test_a_failing_sweep_never_stops_the_app(monkeypatch, caplog):
    monkeypatch.setattr(housekeeping, "_startup_done", False)

    def broken():
        raise PermissionError("read-only filesystem")
    monkeypatch.setattr(housekeeping, "startup_sweep", broken)
    assert housekeeping.startup_once() is None
    assert "Startup sweep failed" in caplog.text


def test_a_released_run_lock_leaves_no_file(tmp_path):
    from core.housekeeping import RUN_LOCK, hold_run_lock, release_run_lock
    lock = hold_run_lock(tmp_path)
    assert (tmp_path / RUN_LOCK).is_file()
    release_run_lock(lock)
    assert not (tmp_path / RUN_LOCK).exists()
    release_run_lock(None)  # platforms without flock hand out None
