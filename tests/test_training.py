"""The training engine end to end on tiny synthetic data: run folders, progress, masking, stopping, k-fold. (Jobs,
the engine run in a child process, are tests/test_jobs.py.)"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from core import runs, training, training_data
from core.callbacks import progress_callback
from core.crossval import cross_validate
from core.datasets import DatasetError
from core.models import build_model
from core.pipeline import targets_and_weights
from core.training import Progress, TrainConfig, TrainingError, device_name, train


def _cfg(folder, out, arch: str = "custom_cnn", **overrides) -> TrainConfig:
    return TrainConfig.tiny(arch, **{"data_dir": str(folder), "out_dir": str(out), "batch_size": 8, "limit": 0,
                                     **overrides})


@pytest.fixture(scope="module")
def finished_run(synthetic_utkface, tmp_path_factory) -> Progress:
    """One tiny two-epoch run shared by the tests that only read its results."""
    out = tmp_path_factory.mktemp("runs")
    return train(_cfg(synthetic_utkface, out, epochs=2, model_overrides={"age_head": "distribution"}))


def test_a_run_writes_a_complete_loadable_run_folder(finished_run):
    run_dir = Path(finished_run.run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "history.csv", "metrics.json",
                                                         "model.keras", "split.csv"]
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    assert config.epochs == 2 and config.model.age_head == "distribution"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["device"] == device_name() and metrics["epochs_run"] == 2
    # One device: the default strategy, the batch and learning rate as asked (core/distribute.py).
    alone = {"strategy": "default", "replicas": 1, "global_batch_size": 8, "learning_rate": config.learning_rate}
    assert alone.items() <= metrics["distribution"].items()
    assert json.loads((run_dir / "config.json").read_text())["distribution"] == metrics["distribution"]
    assert metrics["n_train"] + metrics["n_val"] + metrics["n_test"] == 48 and metrics["n_test"] > 0
    assert {"age_mae", "gender_accuracy", "race_accuracy", "age_within_1std"} <= metrics["test"].keys()
    assert "val_loss" in metrics["best"] and metrics["best_epoch"] in (1, 2)
    split = pd.read_csv(run_dir / "split.csv")
    assert len(split) == 48 and split["split"].value_counts().to_dict() == {
        "train": metrics["n_train"], "val": metrics["n_val"], "test": metrics["n_test"]}
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert model.predict(np.zeros((1, 32, 32, 3), "uint8"), verbose=0)["age_dist"].shape == (1, 117)
    assert not list(run_dir.glob(".*"))  # no temporary files left behind


def test_progress_is_updated_per_batch_and_per_epoch(finished_run):
    p = finished_run
    assert p.status == "finished" and p.done and p.device == device_name() and p.fraction == 1.0
    assert len(p.history) == 2 and [row["epoch"] for row in p.history] == [1, 2]
    assert {"loss", "age_mae", "gender_accuracy", "race_accuracy", "val_loss", "val_age_mae",
            "val_gender_accuracy", "val_race_accuracy"} <= p.history[0].keys()
    assert len(p.batch_log) == 2 * p.batches_per_epoch
    assert [point["step"] for point in p.batch_log] == list(range(1, len(p.batch_log) + 1))
    assert p.batch_log[0]["epoch"] == pytest.approx(1 / p.batches_per_epoch)
    assert p.batch_log[-1]["epoch"] == pytest.approx(2.0)
    history_csv = pd.read_csv(Path(p.run_dir) / "history.csv")
    assert list(history_csv["epoch"]) == [1, 2]
    assert history_csv["val_loss"].tolist() == pytest.approx([row["val_loss"] for row in p.history])


def test_past_runs_are_listed_with_their_history(finished_run):
    root = Path(finished_run.run_dir).parent
    listed = runs.list_runs(root)
    row = listed.set_index("path").loc[finished_run.run_dir]
    assert row["status"] == "finished" and row["arch"] == "custom_cnn" and row["img_size"] == 32
    assert row["age_mae"] == pytest.approx(finished_run.metrics["test"]["age_mae"])
    assert [r["epoch"] for r in runs.read_history(finished_run.run_dir)] == [1, 2]
    assert runs.read_history(root / "no-such-run") == []
    assert training.list_runs is runs.list_runs  # still importable from where it used to live


def _compiled(cfg: TrainConfig):
    model, _ = build_model(cfg.model)
    losses, weights, metrics = training._losses(cfg)
    model.compile("adam", losses, loss_weights=weights, weighted_metrics=metrics)
    return model


def _labels(n: int, rng) -> pd.DataFrame:
    return pd.DataFrame({"age": pd.array(rng.integers(1, 80, n).astype(float), dtype="Float64"),
                         "gender": pd.array(rng.integers(0, 2, n), dtype="Int64"),
                         "race": pd.array(rng.integers(0, 5, n), dtype="Int64")})


def test_a_head_with_all_labels_missing_gets_zero_loss():
    rng = np.random.default_rng(0)
    model = _compiled(TrainConfig.tiny())
    x = rng.integers(0, 256, (8, 32, 32, 3)).astype("float32")
    labels = _labels(8, rng)
    labels["race"] = pd.array([None] * 8, dtype="Int64")
    y, w = targets_and_weights(labels, "regression")
    logs = model.evaluate(x, y, sample_weight=w, batch_size=8, return_dict=True, verbose=0)
    assert logs["race_loss"] == 0.0
    assert logs["age_loss"] > 0 and logs["gender_loss"] > 0


def test_rows_missing_a_label_do_not_train_that_head():
    rng = np.random.default_rng(1)
    model = _compiled(TrainConfig.tiny())
    x = rng.integers(0, 256, (8, 32, 32, 3)).astype("float32")
    labels = _labels(8, rng)
    labels.loc[4:, "age"] = None
    y, w = targets_and_weights(labels, "regression")
    before = model.evaluate(x, y, sample_weight=w, batch_size=8, return_dict=True, verbose=0)
    y["age"][4:] = 100.0  # whatever sits behind a missing label must not matter, to the loss or the metric
    after = model.evaluate(x, y, sample_weight=w, batch_size=8, return_dict=True, verbose=0)
    assert after["age_loss"] == pytest.approx(before["age_loss"]) and after["age_mae"] == pytest.approx(
        before["age_mae"])
    y["age"][:4] = 100.0
    assert model.evaluate(x, y, sample_weight=w, batch_size=8, return_dict=True, verbose=0)["age_mae"] != \
        pytest.approx(before["age_mae"])


class _StopAfter(list):
    """A batch log that presses Stop as the n-th batch is logged, i.e. in the middle of an epoch."""

    def __init__(self, progress: Progress, n: int):
        super().__init__()
        self.progress, self.n = progress, n

    def append(self, item):
        super().append(item)
        if len(self) == self.n:
            self.progress.stop_event.set()


def test_the_stop_event_stops_fit_within_one_batch(synthetic_utkface, tmp_path):
    progress = Progress()
    progress.batch_log = _StopAfter(progress, 2)
    train(_cfg(synthetic_utkface, tmp_path, epochs=3, batch_size=4), progress)
    assert progress.batches_per_epoch > 4  # stopped mid-epoch, not at an epoch's natural end
    assert len(progress.batch_log) == 2
    assert progress.status == "stopped" and progress.history == []  # a partial epoch is not an epoch
    metrics = json.loads((Path(progress.run_dir) / "metrics.json").read_text())
    assert metrics["status"] == "stopped" and metrics["test"] == {}
    assert (Path(progress.run_dir) / "model.keras").is_file()  # what was learnt is kept


def test_a_stop_during_validation_ends_it_within_one_batch(tmp_path):
    progress = Progress()
    stop = progress_callback(progress, tmp_path, "val_loss")
    seen = []
    counter = keras.callbacks.LambdaCallback(on_test_batch_end=lambda batch, logs: seen.append(batch))
    model = _compiled(TrainConfig.tiny())
    y, w = targets_and_weights(_labels(8, np.random.default_rng(2)), "regression")
    progress.stop_event.set()
    model.evaluate(np.zeros((8, 32, 32, 3), "float32"), y, sample_weight=w, batch_size=1,
                   callbacks=[stop, counter], verbose=0)
    assert seen == [0]  # one batch of eight, then it stopped


def test_impossible_requests_fail_before_training_with_a_clear_message(synthetic_utkface, tmp_path):
    progress = Progress()
    with pytest.raises(DatasetError, match="not found"):  # the dataset's own user error, not re-wrapped
        train(_cfg(tmp_path / "missing", tmp_path), progress)
    assert progress.status == "failed" and "not found" in progress.error
    with pytest.raises(TrainingError, match="learning rate"):
        train(_cfg(synthetic_utkface, tmp_path, learning_rate=0))
    few = tmp_path / "few"
    few.mkdir()
    for image in sorted(synthetic_utkface.iterdir())[:5]:
        (few / image.name).write_bytes(image.read_bytes())
    with pytest.raises(TrainingError, match="at least 8"):
        train(_cfg(few, tmp_path))
    assert not any(p.is_dir() for p in tmp_path.iterdir() if p.name != "few")  # no run folder was started


def test_a_bug_keeps_its_own_type_and_a_user_error_in_a_run_is_recorded_as_its_message(synthetic_utkface, tmp_path,
                                                                                     monkeypatch):
    with monkeypatch.context() as patched:
        patched.setattr(training_data, "load_dataset", lambda kind, folder: {}["table"])  # a bug, not a bad folder
        with pytest.raises(KeyError):
            train(_cfg(synthetic_utkface, tmp_path))
    progress = Progress()
    with pytest.raises(TrainingError, match="Cannot start from missing.keras"):
        train(_cfg(synthetic_utkface, tmp_path, init_from=str(tmp_path / "missing.keras")), progress)
    assert progress.status == "failed" and progress.error.startswith("Cannot start from missing.keras")
    metrics = json.loads((Path(progress.run_dir) / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error"] == progress.error


def test_config_round_trips_through_a_dict_and_ignores_unknown_keys():
    cfg = TrainConfig.tiny("multitask_cnn", gender_class_weights=True, split=(0.8, 0.1, 0.1))
    data = json.loads(json.dumps(cfg.to_dict()))
    assert TrainConfig.from_dict(data) == cfg
    data["from_the_future"] = 1
    data["model"]["also_new"] = 2
    assert TrainConfig.from_dict(data) == cfg


def test_cross_validation_tests_every_row_once_and_reports_mean_and_std(synthetic_utkface, tmp_path):
    folds = []
    result = cross_validate(_cfg(synthetic_utkface, tmp_path), 2, on_fold=lambda i, p: folds.append((i, p)))
    assert [i for i, _ in folds] == [0, 1] and all(p.status == "finished" for _, p in folds)
    tested = pd.concat([pd.read_csv(Path(row["run_dir"]) / "split.csv").query("split == 'test'")
                        for row in result["per_fold"]])
    assert len(tested) == 48 and tested["path"].is_unique
    maes = [row["age_mae"] for row in result["per_fold"]]
    assert result["summary"]["age_mae"]["mean"] == pytest.approx(np.mean(maes))
    assert result["summary"]["age_mae"]["std"] == pytest.approx(np.std(maes, ddof=1))
    saved = json.loads((Path(result["run_dir"]) / "cv.json").read_text())
    assert saved["completed"] == 2 and saved["summary"] == result["summary"]


@pytest.mark.slow
def test_resnet50_trains_heads_on_a_frozen_backbone_then_fine_tunes(synthetic_utkface, tmp_path):
    progress = train(_cfg(synthetic_utkface, tmp_path, "resnet50", epochs=2, freeze_backbone_epochs=1, limit=24))
    assert progress.status == "finished" and len(progress.history) == 2
    assert any("random features" in note for note in progress.notes)
    assert keras.saving.load_model(Path(progress.run_dir) / "model.keras").get_layer("resnet50_backbone")


def test_a_run_can_start_from_the_weights_of_an_earlier_model(finished_run, tmp_path):
    earlier = keras.saving.load_model(Path(finished_run.run_dir) / "model.keras", compile=False)
    model, _ = build_model(earlier_config := TrainConfig.from_dict(
        json.loads((Path(finished_run.run_dir) / "config.json").read_text())).model)
    assert not np.allclose(model.weights[0].numpy(), earlier.weights[0].numpy())
    note = training._warm_start(model, Path(finished_run.run_dir) / "model.keras")
    assert "Started from" in note
    for ours, theirs in zip(model.weights, earlier.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())

    other, _ = build_model(dataclasses.replace(earlier_config, arch="multitask_cnn"))
    with pytest.raises(TrainingError, match="do not match"):
        training._warm_start(other, Path(finished_run.run_dir) / "model.keras")
    with pytest.raises(TrainingError, match="Cannot start from"):
        training._warm_start(model, tmp_path / "missing.keras")


def test_a_warm_started_run_records_where_it_started(finished_run, synthetic_utkface, tmp_path):
    start = Path(finished_run.run_dir) / "model.keras"
    progress = train(_cfg(synthetic_utkface, tmp_path, epochs=1, init_from=str(start),
                          model_overrides={"age_head": "distribution"}))
    assert progress.status == "finished"
    assert any("Started from the weights of model.keras" in note for note in progress.metrics["notes"])


def test_a_run_can_reuse_the_split_of_an_earlier_run(finished_run, synthetic_utkface, tmp_path):
    earlier = pd.read_csv(Path(finished_run.run_dir) / "split.csv")
    earlier.iloc[:-3].to_csv(tmp_path / "split.csv", index=False)  # three images it does not know
    progress = train(_cfg(synthetic_utkface, tmp_path / "runs", epochs=1, split=(0.5, 0.5, 0.0),
                          split_file=str(tmp_path / "split.csv")))
    again = pd.read_csv(Path(progress.run_dir) / "split.csv").set_index("path")["split"]
    assert len(again) == len(earlier)
    assert again.loc[earlier["path"].iloc[:-3]].tolist() == earlier["split"].iloc[:-3].tolist()
    assert set(again.loc[earlier["path"].iloc[-3:]]) <= {"train", "val"}  # the run's own 50/50 split, no test


def test_an_exported_run_has_its_tflite_and_a_stopped_one_does_not(synthetic_utkface, tmp_path):
    progress = train(_cfg(synthetic_utkface, tmp_path / "a", epochs=1), export_tflite=True)
    assert progress.status == "finished" and (Path(progress.run_dir) / "model.tflite").stat().st_size > 0
    stopped = Progress()
    stopped.batch_log = _StopAfter(stopped, 1)
    train(_cfg(synthetic_utkface, tmp_path / "b", epochs=2), stopped, export_tflite=True)
    assert stopped.status == "stopped" and not (Path(stopped.run_dir) / "model.tflite").exists()


def test_a_failed_export_is_a_note_not_a_failed_run(synthetic_utkface, tmp_path, monkeypatch):
    from core import export

    def broken(model_path, out_path, *args, **kwargs):
        raise export.ExportError("converter says no")

    monkeypatch.setattr(export, "export_tflite", broken)
    progress = train(_cfg(synthetic_utkface, tmp_path, epochs=1), export_tflite=True)
    assert progress.status == "finished" and any("converter says no" in note for note in progress.metrics["notes"])
    assert not (Path(progress.run_dir) / "model.tflite").exists()


# ------------------------------------------------------------------------------------ reference models

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_fairface_model_trains_and_is_scored_in_its_own_space(tmp_path):
    result = train(_cfg(FIXTURES / "fairface", tmp_path, "fairface_cnn", dataset="fairface", crops="dataset"))
    run_dir = Path(result.run_dir)
    assert result.status == "finished"
    assert any(note.startswith("fairface_cnn trains with its report's recipe") for note in result.notes)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["race_class_weights"] is True and config["learning_rate"] == 1e-4  # the report's, recorded
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert {"age_group_accuracy", "age_group_one_off", "gender_accuracy", "race_accuracy"} <= test.keys()
    assert "age_mae" not in test
    assert {"val_age_group_accuracy", "val_race_accuracy"} <= result.history[-1].keys()
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    out = model.predict(np.zeros((1, 32, 32, 3), "uint8"), verbose=0)
    assert out["age_group"].shape == (1, 9) and out["race"].shape == (1, 7)


def test_a_reference_model_refuses_another_datasets_kind_before_reading_it(synthetic_utkface, tmp_path):
    with pytest.raises(TrainingError, match="levi_hassner trains on adience data only"):
        train(_cfg(synthetic_utkface, tmp_path, "levi_hassner"))
    assert not list(tmp_path.iterdir())  # no run folder for a request that cannot run


def test_adience_cross_validation_uses_its_fold_files(tmp_path):
    cfg = _cfg(FIXTURES / "adience", tmp_path, "levi_hassner", dataset="adience", crops="dataset")
    result = cross_validate(cfg, 5)
    assert result["completed"] == 5 and result["status"] == "finished"
    tested = [pd.read_csv(Path(fold["run_dir"]) / "split.csv").query("split == 'test'") for fold in result["per_fold"]]
    users = [set(part["path"].map(lambda p: Path(p).parent.name)) for part in tested]
    assert all(len(u) == 1 for u in users) and len(set.union(*users)) == 5  # one subject per fold, each once
    assert {"age_group_accuracy", "age_group_one_off", "gender_accuracy"} <= result["summary"].keys()
    with pytest.raises(TrainingError, match="5 of them have images here .* --folds 5, not 3"):
        cross_validate(cfg, 3)
