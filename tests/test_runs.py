"""Run folders: their layout (`Run`), what pickers call a run, and renaming and deleting one safely."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core import runs
from core.runs import Run, RunError, delete_run, list_runs, new_run_dir, rename_run, run_summary, run_title
from tests.support import FAKE_RUN_CONFIG, write_run


def test_a_run_is_summarised_by_dataset_architecture_epochs_and_headline_metric():
    config = {"dataset": "fairface", "model": {"arch": "resnet50"}}
    assert run_summary(config, {"status": "finished", "epochs_run": 1, "test": {"age_mae": 6.789}}) == \
        "FairFace · resnet50 · 1 epoch · test age MAE 6.79"
    assert run_summary(config, {"status": "stopped", "epochs_run": 3, "best": {"val_age_mae": 7.0}}) == \
        "FairFace · resnet50 · 3 epochs · validation age MAE 7.00 · stopped"
    assert run_summary({}, {}) == "not tested"
    adience = {"dataset": "adience", "model": {"arch": "levi_hassner"}}  # a group head: no years to report
    assert run_summary(adience, {"epochs_run": 2, "test": {"age_group_accuracy": 0.512}}) == \
        "Adience · levi_hassner · 2 epochs · test age-group accuracy 51.2%"
    assert run_summary(adience, {"epochs_run": 2, "best": {"val_age_group_accuracy": 0.4}}) == \
        "Adience · levi_hassner · 2 epochs · validation age-group accuracy 40.0%"


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



def test_a_run_written_through_run_reads_back_and_is_listed(tmp_path):
    run = Run(new_run_dir(tmp_path, "residual_cnn"))
    run.write_config(FAKE_RUN_CONFIG)
    run.write_history([{"epoch": 1, "loss": 2.5}, {"epoch": 2, "loss": 2.0}])
    # numpy scalars, as Keras logs and metric functions give them, must land as JSON numbers
    run.write_metrics({"status": "finished", "epochs_run": 2, "test": {"age_mae": np.float32(5.25)}})

    assert json.loads(run.metrics_file.read_text())["test"]["age_mae"] == 5.25
    assert run.config() == FAKE_RUN_CONFIG
    assert [row["loss"] for row in run.history()] == [2.5, 2.0]
    listed = list_runs(tmp_path)
    assert listed.loc[0, "run"] == run.name and listed.loc[0, "status"] == "finished"
    assert listed.loc[0, "age_mae"] == 5.25


def test_what_the_test_helper_writes_is_the_layout_run_reads(tmp_path):
    run = Run(write_run(tmp_path, model=b"not a model"))
    assert run.config_file.is_file() and run.metrics_file.is_file() and run.model_file.is_file()
    assert run.metrics()["status"] == "finished"


def test_missing_or_half_written_files_read_as_nothing(tmp_path):
    run = Run(tmp_path / "run")
    run.path.mkdir()
    assert run.config() is None and run.metrics() is None and run.history() == []
    run.metrics_file.write_text('{"status": "fini')  # a process killed mid-write (before atomic saves existed)
    run.history_file.write_text("")
    assert run.metrics() is None and run.history() == []


def test_cross_validation_roots_are_not_listed_as_runs(tmp_path):
    root = Run(tmp_path / "20250101-000000-cv")
    root.path.mkdir()
    root.write_config(FAKE_RUN_CONFIG)
    root.write_cv({"folds": 3})
    assert root.is_cross_validation
    assert list_runs(tmp_path).empty


def test_runs_of_two_label_spaces_list_their_own_headline_metrics(tmp_path):
    """An Adience run reports age-group accuracy, a UTKFace run age MAE: both appear, each where it applies."""
    years, groups = Run(new_run_dir(tmp_path, "residual_cnn")), Run(new_run_dir(tmp_path, "levi_hassner"))
    for run, test in ((years, {"age_mae": 5.25, "gender_accuracy": 0.9}),
                      (groups, {"age_group_accuracy": 0.51, "age_group_one_off": 0.85, "gender_accuracy": 0.8})):
        run.write_config(FAKE_RUN_CONFIG)
        run.write_metrics({"status": "finished", "epochs_run": 1, "test": test})
    listed = list_runs(tmp_path).set_index("run")
    assert listed.loc[years.name, "age_mae"] == 5.25 and pd.isna(listed.loc[groups.name, "age_mae"])
    assert listed.loc[groups.name, "age_group_one_off"] == 0.85
    assert "race_accuracy" not in listed  # no listed run has one
