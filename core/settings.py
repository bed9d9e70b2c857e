"""Where things live. Every path the app reads comes from here, overridable by environment variables."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The bundled sample makes the app work on first launch with no download.
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample" / "utkface"
MODELS_DIR = PROJECT_ROOT / "models"
DETECTOR_DIR = MODELS_DIR / "mediapipe"


def data_dir() -> Path:
    """Default dataset folder: $FACE_DATA_DIR if set (e.g. a full UTKFace copy), else the bundled sample."""
    return Path(os.environ.get("FACE_DATA_DIR", SAMPLE_DIR)).expanduser()


def runs_dir() -> Path:
    """Where training runs are written; $FACE_RUNS_DIR lets tests and hosts redirect it."""
    return Path(os.environ.get("FACE_RUNS_DIR", PROJECT_ROOT / "runs")).expanduser()


def cache_dir() -> Path:
    """Decoded-image caches (regenerable, never committed)."""
    return Path(os.environ.get("FACE_CACHE_DIR", PROJECT_ROOT / ".cache")).expanduser()
