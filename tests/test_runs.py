"""Run folders: what pickers call a run, and renaming and deleting one safely."""

from __future__ import annotations

import json

import pytest

from core import runs
from core.runs import RunError, delete_run, list_runs, rename_run, run_summary, run_title
from tests.support import write_run


def test_a_run_is_summarised_by_dataset_architecture_epochs_and_headline_metric():
    config = {"dataset": "fairface", "model": {"arch": "resnet50"}}
    assert run_summary(config, {"status": "finished", "epochs_run": 1, "test": {"age_mae": 6.789}}) == \
        "FairFace · resnet50 · 1 epoch · test age MAE 6.79"
    assert run_summary(config, {"status": "stopped", "epochs_run": 3, "best": {"val_age_mae": 7.0}}) == \
        "FairFace · resnet50 · 3 epochs · validation age MAE 7.00 · stopped"
    assert run_summary({}, {}) == "not tested"


def test_rename_is_written_beside_the_run_and_refuses_a_taken_or_empty_name(tmp_path):
    first, second = write_run(tmp_path, "20250101-000000-a"), write_run(tmp_path, "20250101-000001-b")
    assert rename_run(first, "  my   model ") == "my model" and run_title(first) == "my model"
    assert json.loads((first / runs.TITLE_FILE).read_text()) == {"title": "my model"}
    assert list_runs(tmp_path).set_index("run").loc[first.name, "name"] == "my model"
    with pytest.raises(RunError, match="already called"):
        rename_run(second, "my model")
    with pytest.raises(RunError, match="already called"):
        rename_run(second, first.name)  # another run's folder name is taken too
    with pytest.raises(RunError, match="1 to"):
        rename_run(second, "   ")
    assert rename_run(first, "my model") == "my model"  # its own name again is fine


def test_delete_removes_the_run_and_leaves_nothing_listed(tmp_path):
    run = write_run(tmp_path, "20250101-000000-a")
    delete_run(run)
    assert not run.exists() and list_runs(tmp_path).empty
    assert not any((tmp_path / runs.TRASH).iterdir())
    with pytest.raises(RunError, match="no run"):
        delete_run(run)


def test_a_run_still_training_cannot_be_deleted(tmp_path):
    run = write_run(tmp_path, "20250101-000000-a", metrics=None)  # no final status, files just written
    with pytest.raises(RunError, match="still training"):
        delete_run(run)
    assert run.is_dir()
