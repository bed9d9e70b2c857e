"""What a server cleans up after itself: temporary files of saves a crash interrupted, runs a dead process left
"running" forever, and a cache folder that would otherwise only grow.

`startup_once()` does all three, once per server process (pages call it; every call after the first returns at
once). Each part is a function of its own, with its thresholds as arguments, so tests and the CLI can run them.

A run is in progress while a process holds its lock (`hold_run_lock`, taken by the process that trains it: the
kernel drops the lock when that process dies, even by kill -9). For runs written without the lock, a run whose
files have all been quiet for RUN_QUIET_SECONDS counts as dead: long enough for the slowest epoch we train.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from core import settings
from core.atomic import is_atomic_temp
from core.runs import Run

log = logging.getLogger(__name__)

STALE_TEMP_SECONDS = 10 * 60  # a save still in progress writes continuously; ten quiet minutes mean it died
RUN_QUIET_SECONDS = 6 * 3600  # a ResNet-50 epoch at 224 px on the full UTKFace takes ~2 h on 2 cores
RUN_LOCK = "run.lock"
UNFINISHED = ("pending", "running")
INTERRUPTED = "interrupted"


@dataclass
class SweepReport:
    removed_temp: list[Path] = field(default_factory=list)
    interrupted: list[Path] = field(default_factory=list)
    evicted: list[Path] = field(default_factory=list)


# ------------------------------------------------------------------------------------- temporary files

def sweep_temp_files(folders, older_than_s: float = STALE_TEMP_SECONDS, now: float | None = None) -> list[Path]:
    """Delete core.atomic's temporary files (`.name.XXXXXXXX.tmp|.keras|.npy`) under `folders` that have not been
    written to for `older_than_s` seconds. Links are never followed. Returns the files removed."""
    now = time.time() if now is None else now
    removed = []
    for folder in folders:
        for top, _, names in os.walk(folder):
            for name in names:
                path = Path(top) / name
                if is_atomic_temp(name) and _quiet_for(path, now) >= older_than_s:
                    with contextlib.suppress(FileNotFoundError):  # its writer may have just finished
                        path.unlink()
                        removed.append(path)
    return removed


def _quiet_for(path: Path, now: float) -> float:
    """Seconds since a regular file was last written; 0 for anything else (links, folders, vanished files)."""
    try:
        info = path.lstat()
    except OSError:
        return 0.0
    return now - info.st_mtime if stat.S_ISREG(info.st_mode) else 0.0


# --------------------------------------------------------------------------------------------------- runs

def hold_run_lock(run_dir: str | Path):
    """Take the run's lock for as long as the returned file stays open (keep it for the life of the training
    process; closing it or dying releases it). None where the platform has no flock."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(Path(run_dir) / RUN_LOCK, "a+")  # noqa: SIM115 - held open on purpose, for the process's life
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def release_run_lock(handle) -> None:
    """End a run's lock: the file goes first, while still held (a run that ended in its own process needs no
    marker; only a killed one leaves its lock file behind for the sweep to find), then the lock itself."""
    if handle is None:
        return
    Path(handle.name).unlink(missing_ok=True)
    handle.close()


def _lock_state(run_dir: Path) -> str:
    """"held", "free" (a lock file nobody holds: its process died) or "none" (no lock file, or no flock)."""
    try:
        import fcntl
    except ImportError:
        return "none"
    try:
        fd = os.open(run_dir / RUN_LOCK, os.O_RDONLY)
    except OSError:
        return "none"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return "held"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return "free"
    finally:
        os.close(fd)


def _newest_write(run_dir: Path) -> float:
    stamps = [run_dir.stat().st_mtime]
    with contextlib.suppress(OSError), os.scandir(run_dir) as entries:
        stamps += [entry.stat(follow_symlinks=False).st_mtime for entry in entries if entry.is_file()]
    return max(stamps)


def _writer_alive(run_dir: Path, now: float, quiet_s: float) -> bool:
    state = _lock_state(run_dir)
    if state != "none":
        return state == "held"
    try:
        return now - _newest_write(run_dir) < quiet_s
    except OSError:
        return False


def _final_status(run_dir: Path) -> str | None:
    metrics = Run(run_dir).metrics()
    status = metrics.get("status") if metrics else None
    return status if status and status not in UNFINISHED else None


def run_in_progress(run_dir: str | Path, now: float | None = None, quiet_s: float = RUN_QUIET_SECONDS) -> bool:
    """Whether some process may still be writing this run: it has no final status, and its lock is held or (for
    a run without a lock file) one of its files changed within `quiet_s` seconds."""
    run_dir = Path(run_dir)
    if _final_status(run_dir) is not None or Run(run_dir).is_cross_validation:
        return False
    return _writer_alive(run_dir, time.time() if now is None else now, quiet_s)


def _unfinished(run_dir: Path) -> dict | None:
    """The run's metrics (possibly {}) when it never finished, else None (also for a folder that is no run)."""
    run = Run(run_dir)
    if not run.config_file.is_file() or run.is_cross_validation:
        return None
    metrics = run.metrics()
    if metrics is None:  # absent, or half-written by a process killed mid-save
        return {}
    return metrics if metrics.get("status") in UNFINISHED else None


def _run_folders(runs_dir: Path) -> list[Path]:
    """Every run folder: runs/<run>/ and one level deeper (cross-validation folds: runs/<cv>/fold1/)."""
    if not runs_dir.is_dir():
        return []
    tops = [p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink()]
    return tops + [p for top in tops for p in top.iterdir() if p.is_dir() and not p.is_symlink()]


def mark_interrupted_runs(runs_dir: str | Path | None = None, now: float | None = None,
                          quiet_s: float = RUN_QUIET_SECONDS) -> list[Path]:
    """Give every run that says it is running (or never wrote its metrics) and that no process is writing the
    status `interrupted`, keeping what its metrics.json held. Returns the runs marked."""
    now = time.time() if now is None else now
    marked = []
    for run_dir in _run_folders(Path(runs_dir or settings.runs_dir())):
        metrics = _unfinished(run_dir)
        if metrics is None or _writer_alive(run_dir, now, quiet_s):
            continue
        doc = {**metrics, "status": INTERRUPTED, "previous_status": metrics.get("status"),
               "interrupted_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)),
               "error": "The process training this run stopped before it finished (server restart or crash)."}
        Run(run_dir).write_metrics(doc)
        marked.append(run_dir)
    return marked


# -------------------------------------------------------------------------------------------------- cache

def _last_use(info: os.stat_result) -> float:
    # Readers never rewrite a cache file; the access time (where the filesystem keeps it) says it was used.
    return max(info.st_mtime, info.st_atime)


def evict_cache(max_bytes: int, cache: str | Path | None = None, now: float | None = None) -> list[Path]:
    """Delete the least recently used files of the cache folder until it holds at most `max_bytes`. Files still
    being written (a fresh temporary file of an atomic save) are neither counted nor deleted. Deleting a file a
    reader has open is safe: it keeps its copy, and the next reader rebuilds it. Returns the files deleted."""
    now = time.time() if now is None else now
    files = []
    for top, _, names in os.walk(cache or settings.cache_dir()):
        for name in names:
            path = Path(top) / name
            try:
                info = path.lstat()
            except OSError:
                continue
            if path.is_symlink() or (is_atomic_temp(name) and now - info.st_mtime < STALE_TEMP_SECONDS):
                continue
            files.append((_last_use(info), info.st_size, path))
    total = sum(size for _, size, _ in files)
    evicted = []
    for _, size, path in sorted(files, key=lambda item: (item[0], str(item[2]))):
        if total <= max_bytes:
            break
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            evicted.append(path)
        total -= size
    return evicted


# ------------------------------------------------------------------------------------------------ startup

def startup_sweep() -> SweepReport:
    """Temporary files in models/, runs/ and the cache; interrupted runs; the cache cut to its cap."""
    report = SweepReport()
    # Runs first: deleting a run's temporary file touches its folder, which would make a dead run look active.
    report.interrupted = mark_interrupted_runs(settings.runs_dir())
    folders = [settings.MODELS_DIR, settings.runs_dir(), settings.cache_dir()]
    report.removed_temp = sweep_temp_files(folder for folder in folders if Path(folder).is_dir())
    report.evicted = evict_cache(settings.cache_max_bytes())
    log.info("Startup sweep: %d temporary files removed, %d runs marked interrupted, %d cache files evicted",
             len(report.removed_temp), len(report.interrupted), len(report.evicted))
    return report


_startup_lock = threading.Lock()
_startup_done = False


def startup_once() -> SweepReport | None:
    """`startup_sweep()` the first time it is called in this process; None (at once) every later time. A failing
    sweep is logged and not retried: housekeeping must never keep a page from opening."""
    global _startup_done
    if _startup_done:
        return None
    with _startup_lock:
        if _startup_done:
            return None
        _startup_done = True
        try:
            return startup_sweep()
        except Exception:  # noqa: BLE001 - logged with its traceback; the app runs on without the sweep
            log.exception("Startup sweep failed")
            return None
