"""core/config.py: the training vocabulary (TrainConfig, TrainingError, Progress) without Keras or TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core import training
from core.config import Progress, TrainConfig, TrainingError
from tests.support import PROJECT_ROOT


def test_it_imports_without_tensorflow():
    code = ("import sys, core.config, core.runs, core.jobs, core.workers; "
            "print([m for m in ('tensorflow', 'keras') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


def test_the_engine_re_exports_the_same_classes():
    assert training.TrainConfig is TrainConfig and training.TrainingError is TrainingError
    assert training.Progress is Progress


def test_a_bad_setting_is_named():
    with pytest.raises(TrainingError, match="schedule"):
        TrainConfig(schedule="linear").validate()


def test_progress_records_batches_and_epochs_and_snapshots_copies():
    progress = Progress(epochs=2, batches_per_epoch=4)
    progress.update(status="running", epoch=1)
    progress.record_batch(2, {"step": 2, "epoch": 0.5, "loss": 1.0})
    progress.record_epoch({"epoch": 1, "loss": 0.9})
    snapshot = progress.snapshot()
    assert snapshot["batch"] == 2 and snapshot["batch_log"][0]["loss"] == 1.0 and snapshot["history"][0]["epoch"] == 1
    assert "stop_event" not in snapshot and "lock" not in snapshot
    snapshot["batch_log"].append({})
    assert len(progress.batch_log) == 1  # a copy
    assert progress.fraction == pytest.approx(0.25) and progress.status_line().startswith("Epoch 1/2, batch 2/4")
    assert not progress.done
    progress.update(status="stopped")
    assert progress.done
