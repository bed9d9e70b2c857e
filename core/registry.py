"""The models the app knows: shipped ones in models/ (each `<name>.keras` beside a `<name>.json` model card) and
training runs in runs/<run>/model.keras. Listing reads only small JSON/CSV files, never TensorFlow.

Each model is predicted with from the TFLite file beside it (`<name>.tflite`, a run's `model.tflite`, see
core/export.py `ensure_tflite`); the `.keras` is what training, saliency and the exporter load."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

from core import settings
from core.atomic import read_json_object
from core.errors import UserError
from core.runs import Run, run_summary, run_title

log = logging.getLogger(__name__)
DEFAULT_MODEL_NAME = "face_insight_v1"
OFFERED_STATUSES = ("finished", "stopped")  # running, failed or interrupted runs hold no model to trust


class ModelError(UserError):
    """A model that cannot be used (missing, outside the app's folders, unreadable); the message says why."""


def file_version(path: str | Path) -> int:
    """A model file's modification time (ns), the key of everything computed with it; ModelError when it is gone."""
    try:
        return Path(path).stat().st_mtime_ns
    except OSError as error:
        raise ModelError(f"Model file {path} is gone: {error.strerror}.") from error


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    source: str  # "shipped" or "run"
    card: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def stopped(self) -> bool:
        """A run the user stopped early: a usable model, but not the one its config asked for."""
        return self.source == "run" and self.card.get("metrics", {}).get("status") == "stopped"

    @property
    def label(self) -> str:
        """How pickers name it: a run by its given name (or folder) and what it is, a shipped model by name."""
        if self.source != "run":
            return f"{self.name} ({self.source})"
        return f"{self.card.get('title') or self.name} — {run_summary(self.card, self.card.get('metrics', {}))}"

    @property
    def version(self) -> int:
        """The model file's `file_version`: what caches of its results are keyed by."""
        return file_version(self.path)

    @property
    def tflite_path(self) -> Path:
        """The LiteRT file the app predicts with, beside the .keras: `<name>.tflite`, or a run's `model.tflite`."""
        return self.path.with_suffix(".tflite")

    @property
    def img_size(self) -> int | None:
        return self.card.get("img_size") or self.card.get("model", {}).get("img_size")

    @property
    def model_config(self) -> dict | None:
        """The ModelConfig fields it was built with (a run's config, a shipped card's training config), needed to
        continue training it; None when its card does not say."""
        config = self.card.get("model") or self.card.get("training", {}).get("config", {}).get("model")
        return dict(config) if isinstance(config, dict) else None

    @property
    def split_file(self) -> Path | None:
        """Which images it trained, validated and was tested on (split.csv beside a run's model, or
        `<name>.split.csv` beside a shipped one): continuing its training must keep that split."""
        path = Run(self.path.parent).split_file if self.source == "run" else self.path.with_suffix(".split.csv")
        return path if path.is_file() else None


def shipped_models(models_dir: Path | None = None) -> list[ModelEntry]:
    models_dir = models_dir or settings.MODELS_DIR
    entries = []
    for card_path in sorted(models_dir.glob("*.json")):
        card = read_json_object(card_path)
        model_path = card_path.with_suffix(".keras")
        if card is None or not model_path.is_file():
            log.warning("Skipping %s: unreadable card or no %s beside it", card_path, model_path.name)
            continue
        entries.append(ModelEntry(card_path.stem, model_path, "shipped", card))
    # the default model first, so pickers preselect it
    return sorted(entries, key=lambda e: (e.name != DEFAULT_MODEL_NAME, e.name))


def run_models(runs_dir: Path | None = None) -> tuple[list[ModelEntry], list[str]]:
    """Finished or stopped runs with a model trained for at least one epoch, newest first, and warnings about
    folders that were skipped."""
    runs_dir = runs_dir or settings.runs_dir()
    entries, warnings = [], []
    if not runs_dir.is_dir():
        return entries, warnings
    for folder in sorted((p for p in runs_dir.iterdir() if p.is_dir()), reverse=True):
        run = Run(folder)
        config, model_path, metrics = run.config(), run.model_file, run.metrics() or {}
        if config is None or not model_path.is_file():
            if run.config_file.exists() and metrics.get("status") not in (None, "failed"):
                warnings.append(f"Skipped run folder {run.name}: its config or model is missing or unreadable.")
            continue
        if run.metrics_file.exists() and not metrics:
            warnings.append(f"Skipped run folder {run.name}: its metrics.json is unreadable.")
            continue
        if metrics.get("status") not in OFFERED_STATUSES:
            continue  # still training or failed: its model.keras may be a mid-run checkpoint
        if not _trained(run.path, metrics):
            log.info("Not offering %s: stopped before its first epoch ended (untrained weights)", run.name)
            continue
        entries.append(ModelEntry(run.name, model_path, "run", {**config, "metrics": metrics,
                                                                "title": run_title(run)}))
    return entries, warnings


def epochs_completed(run: Path, metrics: dict) -> int | None:
    """Epochs a run finished: metrics.json's `epochs_run`, else the rows of its history.csv (one per finished
    epoch, rewritten after each); None when neither says."""
    epochs = metrics.get("epochs_run")
    if isinstance(epochs, int) and not isinstance(epochs, bool):
        return epochs
    try:
        with Run(run).history_file.open(newline="", encoding="utf-8") as handle:
            return max(0, sum(1 for row in csv.reader(handle) if row) - 1)  # less the header
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _trained(run: Path, metrics: dict) -> bool:
    """A model worth offering: at least one epoch finished. Training writes "finished" only once fit returns,
    after its epochs, so a finished run whose files do not count epochs (written by hand, or before the count was
    recorded) is trusted; a stopped one must show an epoch, or it is the random initialisation."""
    epochs = epochs_completed(run, metrics)
    if epochs is None:
        return metrics.get("status") == "finished"
    return epochs >= 1


def all_models() -> tuple[list[ModelEntry], list[str]]:
    runs, warnings = run_models()
    return shipped_models() + runs, warnings


def default_model() -> ModelEntry | None:
    shipped = shipped_models()
    return shipped[0] if shipped else None


def _inside_app_folders(path: Path) -> bool:
    allowed = [settings.MODELS_DIR.resolve(), settings.runs_dir().resolve()]
    resolved = path.resolve()
    return any(resolved.is_relative_to(root) for root in allowed)


def load_model(path: str | Path, allow_anywhere: bool = False):
    """Load a `.keras` model with safe_mode on. The app only loads from models/ and runs/ (a model file can
    carry code; those folders hold only what we wrote); the CLI may pass allow_anywhere for a user's own file."""
    import keras
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Model file not found: {path}")
    if not allow_anywhere and not _inside_app_folders(path):
        raise ModelError(f"Refusing to load {path}: models are loaded only from models/ and runs/.")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # corrupt zip, foreign file, Lambda layers under safe_mode…
        raise ModelError(f"Cannot load {path.name}: {type(error).__name__}: {error}") from error
