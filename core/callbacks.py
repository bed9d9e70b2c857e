"""The Keras callback of a training run: progress to the page or terminal, history.csv and the best model.keras
kept current, and Stop honoured within one batch (training and the validation pass after it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.atomic import atomic_save_model
from core.config import Progress
from core.runs import Run


def progress_callback(progress: Progress, run_dir: Path, monitor: str, keep_epochs: bool = False):
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        """Feeds the Progress object, keeps history.csv and the best model.keras current, and stops training
        (and the validation pass that would follow) within one batch of the stop event."""

        def __init__(self):
            super().__init__()
            self.best = np.inf
            self.step = 0
            self.interrupted = False
            self.stop_requested = progress.stop_event.is_set  # a cluster's workers agree on it (core/distribute.py)

        def on_train_begin(self, logs=None):
            progress.update(stage="compiling")  # each fit traces and compiles its step before the first batch

        def on_train_end(self, logs=None):
            progress.update(stage="")

        def on_epoch_begin(self, epoch, logs=None):
            progress.update(epoch=epoch + 1, batch=0)

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            # `batch` (1-based) lets a chart undo Keras's running means, which restart every epoch
            point = {"step": self.step, "batch": batch + 1,
                     "epoch": progress.epoch - 1 + (batch + 1) / max(1, progress.batches_per_epoch)}
            point.update({k: float(v) for k, v in (logs or {}).items()})
            if progress.stage != "training":
                progress.update(stage="training")
            progress.record_batch(batch + 1, point)
            self._check_stop()

        def on_test_begin(self, logs=None):
            progress.update(stage="validating")

        def on_test_end(self, logs=None):
            progress.update(stage="training")

        def on_test_batch_begin(self, batch, logs=None):
            self._check_stop()

        def _check_stop(self):
            if self.stop_requested():
                self.interrupted = True
                self.model.stop_training = True
                self.model.stop_evaluating = True

        def on_epoch_end(self, epoch, logs=None):
            if self.interrupted:  # a partial epoch or validation pass would make a misleading point and "best"
                return
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
            progress.record_epoch(row)
            Run(run_dir).write_history(progress.snapshot()["history"])
            if keep_epochs:
                Run(run_dir).epochs_dir.mkdir(exist_ok=True)
                atomic_save_model(self.model, Run(run_dir).epoch_model_file(epoch + 1))
            value = row.get(monitor, row.get("loss", np.inf))
            if np.isfinite(value) and value < self.best:
                self.best = value
                atomic_save_model(self.model, Run(run_dir).model_file)

    return ProgressCallback()
