"""A long evaluation as a job: its predictions run in a server thread (LiteRT, as every prediction of the server
does), so a page switch or a rerun no longer throws away an evaluation half done. The page follows its progress
and ETA and may cancel it; the job holds the server's one evaluation slot (core/slots.py) from start to end, and
its results go into the page's shared store when it has finished."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import pandas as pd

from core import evaluation, slots
from core.errors import UserError

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside the job's thread at the next batch after Cancel."""


@dataclass(frozen=True)
class Task:
    """One (model, crop path) to score: `key` names its result in the page's store."""
    key: tuple
    name: str
    predictor: object
    crops: str


class EvaluationJob:
    """Scores every task on one table in a thread. `status`: running → finished | cancelled | failed."""

    def __init__(self, tasks: list[Task], table: pd.DataFrame, kind: str):
        self.tasks, self.table, self.kind = list(tasks), table, kind
        self.total = len(table) * len(self.tasks)
        self.done, self.current, self.status = 0, "", "running"
        self.failure: BaseException | None = None  # why a failed job has no results, raised again by the page
        self.results: dict[tuple, tuple] = {}
        self.started = time.monotonic()
        self._cancel = threading.Event()
        self._release = None
        self.thread = threading.Thread(target=self._run, name="evaluation-job", daemon=True)

    def start(self) -> EvaluationJob:
        """Take the evaluation slot (Busy when another session holds it) and start."""
        self._release = slots.take_evaluation_slot()
        self.thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def eta_seconds(self) -> float | None:
        """The time left at the rate so far; None before the first batch."""
        if not self.done:
            return None
        return (time.monotonic() - self.started) / self.done * (self.total - self.done)

    def status_line(self) -> str:
        if self._cancel.is_set():
            return "Cancelling after the current batch…"
        eta = self.eta_seconds()
        left = "estimating the time left" if eta is None else f"about {_duration(eta)} left"
        return f"{self.current}: {self.done:,} of {self.total:,} images, {left}"

    def _run(self) -> None:
        try:
            for number, task in enumerate(self.tasks):
                self.current, before = task.name, number * len(self.table)
                frame = evaluation.predict_table(task.predictor, self.table, crops=task.crops,
                                                 on_progress=lambda done, _total, b=before: self._progress(b + done))
                self.results[task.key] = frame, evaluation.evaluate_frame(frame, self.kind)
            self.status = "finished"
        except Cancelled:
            self.status = "cancelled"
        except Exception as error:  # the page raises it again, as if it had happened there
            if not isinstance(error, UserError):
                log.exception("Evaluation job failed")
            self.status, self.failure = "failed", error
        finally:
            self._release()

    def _progress(self, done: int) -> None:
        self.done = done
        if self._cancel.is_set():
            raise Cancelled


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
