"""The server's one training job, run in a child process so the Streamlit server never imports TensorFlow.

Why a process (see core/children.py for the spawn context): a native crash in TensorFlow must not take the server
and every visitor's session down with it, and with `keras` imported Streamlit clears Keras' session after every
script run, which slowed training 10× while the Train page polled.

The child (core/training_child.py) streams its Progress here over a one-way pipe. A monitor thread in the server
(named "training-job") mirrors it into `Job.progress`, which the page reads as before. Stop sets a shared flag
(core.children.SharedFlag) that the child's Keras callback checks after every batch; a child still alive
STOP_GRACE_S later is terminated (SIGTERM, SIGKILL after KILL_GRACE_S more) and the run is marked stopped. A child
that dies on its own is named by its signal ("SIGSEGV, a native crash in TensorFlow"), its progress marked failed,
and its run folder's metrics.json written with the reason, unless the child wrote a final status itself.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from core import access, policy, public_runs
from core.children import SPAWN, SharedFlag, end_process, exit_reason
from core.config import Progress, TrainConfig, TrainingError
from core.runs import Run
from core.training_child import run_training_child

log = logging.getLogger(__name__)

MONITOR_POLL_S = 0.1  # the monitor's wake-up: pipe reads, the stop deadline, the child's exit
STOP_GRACE_S = 2.0  # after Stop, the child's time to end its batch, save and report
KILL_GRACE_S = 1.0  # after SIGTERM, the time before SIGKILL
EXIT_WAIT_S = 5.0  # after its last report, the child's time to exit (TensorFlow's teardown) before it is ended
FINAL_STATUSES = ("finished", "stopped", "failed")

# Tests hold a run mid-epoch with this: a SharedFlag; while it is unset, the child waits after each training batch
# (a Stop still gets through). Read when a job starts; None in the app.
batch_gate = None


# ----------------------------------------------------------------------------------------------- the server

class Job:
    """One training run in a child process; `progress` mirrors the child's, `thread` is the monitor that keeps it
    current and records how the child ended (alive exactly while the job is)."""

    def __init__(self, cfg: TrainConfig, owner: str | None = None, limits: policy.TrainingLimits | None = None):
        self.cfg = cfg
        self.owner = owner  # the session that started it (public jobs): only it may stop or watch it
        self.limits = limits  # a public job's limits; None: unbounded (the workbench)
        self.progress = Progress(epochs=cfg.epochs, stop_event=SharedFlag())  # the child's callback reads it
        self.process = None
        self.thread = threading.Thread(target=self._monitor, name="training-job", daemon=True)
        self._reader = None
        self._stop_seen_at: float | None = None
        self._terminated_at: float | None = None
        self._killed = False
        self.ended_by_server = False  # the child outlived Stop's grace and was terminated

    def start(self) -> Job:
        reader, writer = SPAWN.Pipe(duplex=False)
        self.process = SPAWN.Process(target=run_training_child, name="training-job", daemon=True,
                                     args=(self.cfg, writer, self.progress.stop_event, batch_gate, self.owner,
                                           *self._child_limits()))
        try:
            self.process.start()
        except OSError as error:
            reader.close()
            raise TrainingError(f"Cannot start the training process: {error.strerror or error}.") from error
        finally:
            writer.close()  # the child holds the only write end now: its exit is end-of-file here
        self._reader = reader
        self.thread.start()
        return self

    def _child_limits(self) -> tuple[int | None, int | None]:
        """(memory bytes, CPU seconds) for the child, as plain ints (spawn pickles its arguments)."""
        if self.limits is None:
            return None, None
        return int(self.limits.memory_bytes), int(self.limits.cpu_seconds)

    def stop(self) -> None:
        """Ask the child to stop after its current batch; the monitor ends it if it has not within STOP_GRACE_S."""
        self.progress.stop_event.set()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    # ---- the monitor thread

    def _monitor(self) -> None:
        try:
            self._follow_child()
            self._wait_for_exit()
            self._settle()
        except Exception as error:  # the monitor must leave a final status whatever happens
            log.exception("Training job monitor failed")
            if not self.progress.done:
                self.progress.update(status="failed", error=f"{type(error).__name__}: {error}",
                                     message="Training failed.")
        finally:
            self._reader.close()

    def _follow_child(self) -> None:
        """Apply the child's reports until its end of the pipe closes (it exited or died)."""
        while True:
            if self._reader.poll(MONITOR_POLL_S):
                try:
                    self._apply(self._reader.recv())
                except (EOFError, OSError):
                    return
            self._enforce_stop()
            if self.process.exitcode is not None and not self._reader.poll(0):
                return

    def _apply(self, delta: dict) -> None:
        progress = self.progress
        with progress.lock:
            for key, value in delta.get("set", {}).items():
                setattr(progress, key, value)
            progress.batch_log.extend(delta.get("batch_log", ()))
            progress.history.extend(delta.get("history", ()))

    def _enforce_stop(self) -> None:
        if not self.progress.stop_event.is_set() or self.process.exitcode is not None:
            return
        now = time.monotonic()
        self._stop_seen_at = self._stop_seen_at or now
        if self._terminated_at is None and now - self._stop_seen_at >= STOP_GRACE_S:
            log.warning("Training process %s ignored Stop for %.0f s: terminating it", self.pid, STOP_GRACE_S)
            self.process.terminate()
            self._terminated_at, self.ended_by_server = now, True
        elif self._terminated_at is not None and not self._killed and now - self._terminated_at >= KILL_GRACE_S:
            self.process.kill()
            self._killed = True

    def _wait_for_exit(self) -> None:
        """The pipe is closed; collect the exit code (a child that lingers after its last word is ended)."""
        self.process.join(EXIT_WAIT_S)
        if self.process.is_alive():
            log.warning("Training process %s closed its pipe but did not exit: ending it", self.pid)
            end_process(self.process, KILL_GRACE_S)

    def _settle(self) -> None:
        """Give the run a final status when the child could not: stopped by us, or died."""
        if self.progress.done:
            return
        snapshot = self.progress.snapshot()
        if self.owner is not None and snapshot["run_dir"] and Path(snapshot["run_dir"]).is_dir() \
                and public_runs.run_owner(snapshot["run_dir"]) is None:  # the child died before it could label it
            public_runs.mark_public_run(snapshot["run_dir"], self.owner)
        written = self._final_metrics_on_disk(snapshot["run_dir"])
        if written is not None:  # it finished its work but its last report was lost with it
            self.progress.update(status=written["status"], metrics=written, error=written.get("error", ""),
                                 message=self._final_message(written["status"], snapshot["run_dir"]))
            return
        if self._stop_seen_at is not None:
            note = "Stopped by the user: the training process did not stop in time and was ended; the test split " \
                   "was not scored."
            self._finish("stopped", snapshot, notes=[*snapshot["notes"], note])
            return
        reason = exit_reason(self.process.exitcode)
        if self.limits is not None and self.process.exitcode in (-signal.SIGKILL, -signal.SIGABRT, -signal.SIGSEGV):
            reason += "; a public job also stops at the server's memory or CPU time limit"
        error = (f"the training process stopped unexpectedly ({reason})." if self.process.exitcode != 0 else
                 "the training process ended without reporting a result.")
        self._finish("failed", snapshot, error=error[0].upper() + error[1:])

    def _finish(self, status: str, snapshot: dict, error: str = "", notes: list[str] | None = None) -> None:
        notes = snapshot["notes"] if notes is None else notes
        doc = {"status": status, "device": snapshot["device"], "notes": notes,
               "epochs_run": len(snapshot["history"]), "seconds": round(time.time() - snapshot["started"], 1),
               "test": {}}
        if error:
            doc["error"] = error
        if snapshot["run_dir"] and Path(snapshot["run_dir"]).is_dir():
            Run(snapshot["run_dir"]).write_metrics(doc)
        message = error or self._final_message(status, snapshot["run_dir"])
        self.progress.update(status=status, notes=notes, metrics=doc, error=error, message=message)

    @staticmethod
    def _final_metrics_on_disk(run_dir: str) -> dict | None:
        metrics = Run(run_dir).metrics() if run_dir else None
        return metrics if metrics is not None and metrics.get("status") in FINAL_STATUSES else None

    @staticmethod
    def _final_message(status: str, run_dir: str) -> str:
        return f"{status.capitalize()}; saved to {run_dir}" if run_dir else status.capitalize()


_job_lock = threading.Lock()
_current_job: Job | None = None


def start_job(cfg: TrainConfig, owner: str | None = None,
              limits: policy.TrainingLimits | None = None) -> tuple[Job, bool]:
    """Start a job unless one is running on this server. Returns (the running job, whether it is new).
    Raises TrainingError at once for a config that cannot work, rather than from the child later.

    `owner`: the session starting it; with one, the run folder is marked public (core.public_runs.mark_public_run).
    `limits`: the child's memory and CPU caps; by default a public profile's (core.access.current_profile, bound
    by the page) and none in the workbench."""
    global _current_job
    cfg.validate()
    if limits is None and access.current_profile().public:
        limits = policy.public_training_limits()
    with _job_lock:
        if _current_job is not None and _current_job.running:
            return _current_job, False
        _current_job = Job(cfg, owner, limits).start()
        return _current_job, True


def current_job() -> Job | None:
    return _current_job
