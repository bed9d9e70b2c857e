"""core/console.py: training progress on a terminal."""

from __future__ import annotations

from core.config import Progress
from core.console import ProgressPrinter


def test_the_progress_bar_shows_no_loss_before_the_first_batch(capsys):
    progress = Progress(epochs=3, message="Decoding 48 images at 32 px…")
    printer = ProgressPrinter()
    printer.watch(progress)
    progress.update(epoch=1, batches_per_epoch=5)
    printer.draw()
    before = capsys.readouterr().err
    assert "Decoding 48 images" in before and "loss" not in before and "nan" not in before
    progress.update(batch=2, batch_log=[{"step": 2, "epoch": 0.4, "loss": 1.25, "age_mae": 7.5}])
    printer.draw()
    assert "epoch 1/3" in (bar := capsys.readouterr().err) and "loss 1.250" in bar and "age MAE 7.50" in bar
    progress.update(history=[{"epoch": 1, "loss": 1.0, "val_loss": 1.5, "val_race_accuracy": 0.5}],
                    notes=["ResNet-50 starts from random weights."])
    printer.draw()
    lines = capsys.readouterr().err
    assert "note: ResNet-50 starts from random weights." in lines
    assert "epoch 1/3: loss 1.000, val loss 1.500, val race acc 0.500" in lines
