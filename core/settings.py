"""Where things live. Every path the app reads comes from here, overridable by environment variables."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The bundled sample makes the app work on first launch with no download.
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample" / "utkface"
EXAMPLES_DIR = PROJECT_ROOT / "data" / "examples"  # the Predict page's example photos, made from the sample
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


def dataset_roots() -> list[Path]:
    """Dataset folders the operator offers on a public server: $FACE_DATASET_ROOTS, separated like PATH
    (`/data/UTKFace:/data/fairface`). Each entry is one dataset folder, offered as it is (not its sub-folders)."""
    raw = os.environ.get("FACE_DATASET_ROOTS", "")
    return [Path(part).expanduser() for part in raw.split(os.pathsep) if part.strip()]


def face_mode() -> str | None:
    """$FACE_MODE as set ("public" / "workbench"), None when unset or blank: core.access decides what it means."""
    return os.environ.get("FACE_MODE", "").strip() or None


DEFAULT_CACHE_MAX_MB = 2048  # two full-UTKFace crop caches at 96 px (~600 MB each) and room to spare


def cache_max_bytes() -> int:
    """Size cap of the cache folder: $FACE_CACHE_MAX_MB megabytes, else DEFAULT_CACHE_MAX_MB. A value that is
    not a positive number falls back to the default rather than switching the cap off."""
    try:
        megabytes = float(os.environ.get("FACE_CACHE_MAX_MB", DEFAULT_CACHE_MAX_MB))
    except ValueError:
        megabytes = DEFAULT_CACHE_MAX_MB
    return int((megabytes if megabytes > 0 else DEFAULT_CACHE_MAX_MB) * 1024 * 1024)
