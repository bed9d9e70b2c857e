"""Training progress on a terminal: a one-line bar redrawn on stderr, a line per finished epoch, and the work run in a
thread so that the main thread can draw it and turn Ctrl-C into Stop."""

from __future__ import annotations

import sys
import threading


class ProgressPrinter:
    """A one-line progress bar on stderr, redrawn when it changes, plus one summary line per finished epoch
    and any note (e.g. ResNet-50 without ImageNet weights) as soon as it appears."""

    def __init__(self):
        self.progress, self.label = None, ""
        self.epochs_shown = self.notes_shown = 0
        self.drawn, self.line_open = "", False  # the last bar text, and whether the cursor sits on it
        self.distribution_shown = False

    def watch(self, progress, label: str = "") -> None:
        self.draw()
        self.end_line()
        self.progress, self.label = progress, label
        self.epochs_shown = self.notes_shown = 0

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop_event.set()

    def draw(self) -> None:
        if self.progress is None:
            return
        s = self.progress.snapshot()
        if s["distribution"] and not self.distribution_shown:
            from core.distribute import describe
            self.print_line(describe(s["distribution"]))
            self.distribution_shown = True
        for note in s["notes"][self.notes_shown:]:
            self.print_line(f"note: {note}")
        self.notes_shown = len(s["notes"])
        for row in s["history"][self.epochs_shown:]:
            self.print_line(self._epoch_summary(row, s["epochs"]))
        self.epochs_shown = len(s["history"])
        if s["status"] == "failed":
            return  # the caller prints the error once, as "error: …"
        line = self._bar(s) if s["batch_log"] and not self.progress.done else f"{self.label}{s['message']}"
        if line != self.drawn:
            print(f"\r{line:<100}", end="", file=sys.stderr, flush=True)
            self.drawn, self.line_open = line, True

    def _bar(self, s: dict) -> str:
        # Only once a batch was logged: before that there is no loss to show (it used to print "loss nan").
        last = s["batch_log"][-1]
        frac = s["batch"] / max(1, s["batches_per_epoch"])
        return (f"{self.label}epoch {s['epoch']}/{s['epochs']} [{'#' * int(frac * 30):<30}] "
                f"{s['batch']}/{s['batches_per_epoch']} loss {last['loss']:.3f}"
                + (f" age MAE {last['age_mae']:.2f}" if "age_mae" in last else ""))

    def _epoch_summary(self, row: dict, epochs: int) -> str:
        shown = [("loss", "loss", 3), ("val_loss", "val loss", 3), ("val_age_mae", "val age MAE", 2),
                 ("val_age_group_accuracy", "val age group acc", 3),
                 ("val_gender_accuracy", "val gender acc", 3), ("val_race_accuracy", "val race acc", 3)]
        parts = [f"{label} {row[key]:.{digits}f}" for key, label, digits in shown if key in row]
        return f"{self.label}epoch {int(row['epoch'])}/{epochs}: " + ", ".join(parts)

    def print_line(self, text: str) -> None:
        self.end_line()
        print(text, file=sys.stderr, flush=True)

    def end_line(self) -> None:
        if self.line_open:
            print(file=sys.stderr, flush=True)
            self.line_open = False


def run_in_background(work, printer: ProgressPrinter):
    """Run `work()` in a thread while the main thread draws progress. Ctrl-C asks training to stop after the
    current batch (the run folder is still completed, status "stopped"); a second Ctrl-C aborts."""
    outcome = {}

    def target():
        try:
            outcome["result"] = work()
        except BaseException as error:  # handed to the main thread, which re-raises it
            outcome["error"] = error

    worker = threading.Thread(target=target, name="cli-training", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.5)
            printer.draw()
    except KeyboardInterrupt:
        printer.stop()
        printer.print_line("stopping after the current batch… (Ctrl-C again to abort)")
        while worker.is_alive():
            worker.join(0.5)
            printer.draw()
    printer.draw()
    printer.end_line()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
