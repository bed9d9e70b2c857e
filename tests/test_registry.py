"""The model registry: shipped models with cards, finished runs, what is skipped and why, and where models may be
loaded from."""

from __future__ import annotations

import json
import shutil

import pytest

from core import registry, settings
from core.registry import DEFAULT_MODEL_NAME, ModelError, all_models, load_model, run_models, shipped_models
from tests.support import write_run


@pytest.fixture
def models_dir(tmp_path, monkeypatch, tiny_residual_model):
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("another", DEFAULT_MODEL_NAME):
        shutil.copy(tiny_residual_model, folder / f"{name}.keras")
        (folder / f"{name}.json").write_text(json.dumps({"img_size": 32}))
    (folder / "orphan.json").write_text("{}")  # a card without its model
    monkeypatch.setattr(settings, "MODELS_DIR", folder)
    return folder


def test_shipped_models_list_the_default_first_and_skip_cards_without_a_model(models_dir):
    entries = shipped_models()
    assert [e.name for e in entries] == [DEFAULT_MODEL_NAME, "another"]
    assert entries[0].source == "shipped" and entries[0].img_size == 32
    assert registry.default_model() == entries[0]


def test_only_finished_or_stopped_runs_are_listed_newest_first(tmp_path, tiny_residual_model):
    runs = tmp_path / "runs"
    older = write_run(runs, model=tiny_residual_model).rename(runs / "20250101-000000-old")
    newer = write_run(runs, model=tiny_residual_model)
    running = shutil.copytree(newer, runs / "20991231-000000-running")
    (running / "metrics.json").write_text(json.dumps({"status": "running"}))
    broken = shutil.copytree(newer, runs / "20991231-000001-broken")
    (broken / "metrics.json").write_text("{not json")
    (runs / "stray-file.txt").write_text("not a run")

    entries, warnings = run_models(runs)
    assert [e.path.parent for e in entries] == [newer, older]
    assert entries[0].img_size == 32 and entries[0].card["metrics"]["status"] == "finished"
    assert warnings == ["Skipped run folder 20991231-000001-broken: its metrics.json is unreadable."]
    assert run_models(tmp_path / "no-runs-yet") == ([], [])


def test_all_models_puts_shipped_models_before_runs(models_dir, tmp_path, monkeypatch, tiny_residual_model):
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    write_run(tmp_path / "runs", model=tiny_residual_model)
    entries, _ = all_models()
    assert [e.source for e in entries] == ["shipped", "shipped", "run"]


def test_models_load_only_from_the_apps_folders_with_safe_mode(models_dir, tmp_path):
    model = load_model(models_dir / f"{DEFAULT_MODEL_NAME}.keras")
    assert {"age", "gender", "race"} <= set(model.output_names)
    outside = shutil.copy(models_dir / "another.keras", tmp_path / "elsewhere.keras")
    with pytest.raises(ModelError, match="only from models/ and runs/"):
        load_model(outside)
    assert load_model(outside, allow_anywhere=True) is not None  # the CLI, for a user's own file
    with pytest.raises(ModelError, match="not found"):
        load_model(models_dir / "missing.keras")
    (models_dir / "corrupt.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError, match="Cannot load corrupt.keras"):
        load_model(models_dir / "corrupt.keras")


def test_entries_say_how_they_were_built_and_on_which_split(models_dir, tmp_path, tiny_residual_model):
    run = write_run(tmp_path / "runs", model=tiny_residual_model)
    (run / "split.csv").write_text("path,split\na.jpg,train\n")
    (run_entry,), _ = run_models(tmp_path / "runs")
    assert run_entry.model_config["arch"] == "residual_cnn" and run_entry.split_file == run / "split.csv"

    card = {"img_size": 32, "training": {"config": {"model": {"arch": "custom_cnn", "img_size": 32}}}}
    (models_dir / "another.json").write_text(json.dumps(card))
    (models_dir / "another.split.csv").write_text("path,split\na.jpg,test\n")
    shipped = {e.name: e for e in shipped_models()}
    assert shipped["another"].model_config == {"arch": "custom_cnn", "img_size": 32}
    assert shipped["another"].split_file == models_dir / "another.split.csv"
    assert shipped[DEFAULT_MODEL_NAME].model_config is None and shipped[DEFAULT_MODEL_NAME].split_file is None


def test_entries_name_the_tflite_file_the_app_predicts_with(models_dir, tmp_path, tiny_residual_model):
    run = write_run(tmp_path / "runs", model=tiny_residual_model)
    (run_entry,), _ = run_models(tmp_path / "runs")
    assert run_entry.tflite_path == run / "model.tflite"
    assert shipped_models()[0].tflite_path == models_dir / f"{DEFAULT_MODEL_NAME}.tflite"


def _run_with(runs, tiny_residual_model, name: str, metrics: dict | None, history_rows: int | None = None):
    run = shutil.copytree(write_run(runs, model=tiny_residual_model), runs / name)
    if metrics is None:
        (run / "metrics.json").unlink()
    else:
        (run / "metrics.json").write_text(json.dumps(metrics))
    if history_rows is not None:
        rows = "".join(f"{epoch},1.0,1.1\n" for epoch in range(1, history_rows + 1))
        (run / "history.csv").write_text("epoch,loss,val_loss\n" + rows)
    return run


def test_only_runs_trained_for_an_epoch_are_offered_and_stopped_ones_say_so(tmp_path, tiny_residual_model):
    """Untrained models must not be published: a run stopped before its first epoch ended holds random weights."""
    runs = tmp_path / "runs"
    cases = {
        "20250102-000000-stopped-at-once": ({"status": "stopped", "epochs_run": 0}, None, False),
        "20250103-000000-stopped-later": ({"status": "stopped", "epochs_run": 2}, None, True),
        "20250104-000000-stopped-history-only": ({"status": "stopped"}, 1, True),
        "20250105-000000-stopped-empty-history": ({"status": "stopped"}, 0, False),
        "20250106-000000-stopped-no-record": ({"status": "stopped"}, None, False),
        "20250107-000000-failed": ({"status": "failed", "epochs_run": 3}, 3, False),
        "20250108-000000-interrupted": ({"status": "interrupted", "epochs_run": 3}, 3, False),
        "20250109-000000-running": ({"status": "running"}, 2, False),
        "20250110-000000-no-metrics": (None, 2, False),
        "20250111-000000-finished": ({"status": "finished", "epochs_run": 5}, 5, True),
    }
    for name, (metrics, history_rows, _) in cases.items():
        _run_with(runs, tiny_residual_model, name, metrics, history_rows)
    entries, warnings = run_models(runs)
    offered = {e.name: e for e in entries}
    assert set(offered) == {name for name, case in cases.items() if case[2]} | {"20250101-000000-residual_cnn"}
    assert warnings == []
    assert offered["20250103-000000-stopped-later"].label == \
        "20250103-000000-stopped-later — UTKFace · residual_cnn · 2 epochs · not tested · stopped"
    assert offered["20250104-000000-stopped-history-only"].stopped
    assert offered["20250111-000000-finished"].label == \
        "20250111-000000-finished — UTKFace · residual_cnn · 5 epochs · not tested"
    assert registry.epochs_completed(runs / "20250104-000000-stopped-history-only", {}) == 1
