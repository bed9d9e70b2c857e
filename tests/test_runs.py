"""core.runs: the run-folder layout (`Run`), listing runs from their small files, and new run folders."""

import json

import numpy as np

from core.runs import Run, list_runs, new_run_dir
from tests.support import FAKE_RUN_CONFIG, write_run


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
