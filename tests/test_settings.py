"""Settings: every folder the app reads comes from an environment variable, else a default inside the project."""

from __future__ import annotations

from core import settings


def test_defaults_point_inside_the_project(monkeypatch):
    for name in ("FACE_DATA_DIR", "FACE_RUNS_DIR", "FACE_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert settings.data_dir() == settings.SAMPLE_DIR and settings.SAMPLE_DIR.is_dir()
    assert settings.runs_dir() == settings.PROJECT_ROOT / "runs"
    assert settings.cache_dir() == settings.PROJECT_ROOT / ".cache"
    assert (settings.DETECTOR_DIR).is_dir()


def test_environment_variables_override_and_expand_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FACE_DATA_DIR", "~/faces")
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FACE_CACHE_DIR", str(tmp_path / "cache"))
    assert settings.data_dir() == tmp_path / "faces"
    assert settings.runs_dir() == tmp_path / "runs" and settings.cache_dir() == tmp_path / "cache"
