"""The training process: it runs `core.training.train(cfg, progress, export_tflite=True)` and streams its Progress
to the server (core/jobs.py) over a one-way pipe as deltas: batch updates at most every PUBLISH_SECONDS, epoch ends
and status changes at once. A public job first caps its own memory and CPU time and labels its run folder as its
owner's; a job that runs into the memory cap says so in words.

Nothing here imports TensorFlow until the child has started: `train` is imported inside `run_training_child`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from core import policy, public_runs
from core.config import Progress, TrainConfig
from core.errors import UserError
from core.runs import Run

log = logging.getLogger(__name__)

PUBLISH_SECONDS = 0.25  # batch updates to the server: 4 a second, well inside the page's 1 s poll
# Updates that only move the counters and the status line wait for the throttle; any other change goes at once.
THROTTLED_FIELDS = frozenset({"message", "epoch", "batch"})
GATE_WAIT_S = 600.0  # the longest a test's batch gate (core.jobs.batch_gate) holds a run


class StreamingProgress(Progress):
    """The child's Progress: every change is also sent to the server as a delta (changed fields, new batch points,
    new history rows). Throttled changes are sent by a flusher thread within PUBLISH_SECONDS."""

    def attach(self, writer, gate, owner: str | None = None) -> StreamingProgress:
        self._writer, self._gate, self._owner = writer, gate, owner
        self._send_lock = threading.Lock()
        self._sent_fields: dict = {}
        self._sent_points = self._sent_rows = 0
        self._last_send, self._dirty, self._closed = 0.0, False, False
        threading.Thread(target=self._flush_loop, name="progress-flusher", daemon=True).start()
        return self

    def update(self, **changes) -> None:
        super().update(**changes)
        if self._owner is not None and changes.get("run_dir"):
            # Here, in the process that made the folder and before the server hears of it: the server never
            # lists a public run without its owner, and the quota can delete it even if the server dies.
            public_runs.mark_public_run(changes["run_dir"], self._owner)
        self._publish(force=not changes.keys() <= THROTTLED_FIELDS)

    def record_batch(self, batch: int, point: dict) -> None:
        super().record_batch(batch, point)
        self._publish(force=False)
        self._hold_at_gate()

    def record_epoch(self, row: dict) -> None:
        super().record_epoch(row)
        self._publish(force=True)

    def close(self) -> None:
        self._publish(force=True)
        with self._send_lock:
            self._closed = True
            self._writer.close()

    def _publish(self, force: bool) -> None:
        with self._send_lock:
            if self._closed:
                return
            now = time.monotonic()
            if not force and now - self._last_send < PUBLISH_SECONDS:
                self._dirty = True
                return
            delta = self._delta()
            self._last_send, self._dirty = now, False
            if delta is None:
                return
            try:
                self._writer.send(delta)
            except OSError:  # the server is gone: nobody is watching, so stop after this batch, keeping the model
                self._closed = True
                self.stop_event.set()

    def _delta(self) -> dict | None:
        state = self.snapshot()
        points, rows = state.pop("batch_log"), state.pop("history")
        changed = {k: v for k, v in state.items() if k not in self._sent_fields or self._sent_fields[k] != v}
        delta = {"set": changed, "batch_log": points[self._sent_points:], "history": rows[self._sent_rows:]}
        self._sent_fields.update(changed)
        self._sent_points, self._sent_rows = len(points), len(rows)
        return delta if any(delta.values()) else None

    def _flush_loop(self) -> None:
        while not self._closed:
            time.sleep(PUBLISH_SECONDS)
            if self._dirty:
                self._publish(force=True)

    def _hold_at_gate(self) -> None:
        if self._gate is None:
            return
        self._publish(force=True)  # the server sees the batch it is held at
        deadline = time.monotonic() + GATE_WAIT_S
        while not self._gate.wait(0.1) and not self.stop_event.is_set() and time.monotonic() < deadline:
            pass


def _exit_on_sigterm(signum, frame) -> None:
    # Unwinds `finally` blocks, so an atomic save cut short by the server's terminate leaves no temporary file.
    raise SystemExit(128 + signum)


def run_training_child(cfg: TrainConfig, writer, stop_event, gate=None, owner: str | None = None,
                       memory_bytes: int | None = None, cpu_seconds: int | None = None) -> None:
    """The training process's entry point (module-level: spawn pickles it by reference). A public job first caps
    its own memory and CPU time (core.policy.apply_child_limits: plain ints, before anything else) and labels its
    run folder as its `owner`'s (core.public_runs.mark_public_run) as soon as the folder exists."""
    if memory_bytes or cpu_seconds:
        policy.apply_child_limits(memory_bytes, cpu_seconds)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    progress = StreamingProgress(epochs=cfg.epochs, stop_event=stop_event).attach(writer, gate, owner)
    try:
        progress.update(message="Starting TensorFlow…")
        from core.training import train  # seconds: TensorFlow's import, in this process only
        train(cfg, progress, export_tflite=True)
    except UserError:
        pass  # train() put the message in progress (and in metrics.json once a run folder existed)
    except Exception as error:  # recorded by train() when it got that far; the traceback goes to the server log
        log.exception("Training failed")
        if memory_bytes and _out_of_memory(error):
            _report_memory_limit(progress, memory_bytes)
        elif not progress.done:
            progress.update(status="failed", error=f"{type(error).__name__}: {error}", message="Training failed.")
    finally:
        progress.close()
    _leave_at_once()


# What running into RLIMIT_AS looks like: a failed Python allocation, or a shared library (TensorFlow's) that
# cannot be mapped at import.
_OUT_OF_MEMORY_WORDS = ("failed to map segment", "cannot allocate memory", "bad_alloc", "out of memory")


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or any(word in str(error).lower() for word in _OUT_OF_MEMORY_WORDS)


def _report_memory_limit(progress: Progress, memory_bytes: int) -> None:
    """Name the limit rather than the allocation that hit it, in progress and in the run's metrics.json."""
    error = (f"Training stopped at this server's memory limit for a training job ({memory_bytes / 1024 ** 3:.1f} GB "
             "of address space): choose a smaller image size, batch size or model.")
    progress.update(status="failed", error=error, message="Training failed.")
    run_dir = progress.snapshot()["run_dir"]
    metrics = Run(run_dir).metrics() if run_dir else None
    if metrics is not None:
        Run(run_dir).write_metrics({**metrics, "status": "failed", "error": error})


def _leave_at_once() -> None:
    """Everything is saved (atomically) and reported: skip the interpreter's teardown, which with TensorFlow loaded
    took 1.5–4.5 s here and would hold the server's one job slot (and Stop's few seconds) for nothing."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
