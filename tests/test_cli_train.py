"""`python -m core train`: options, the progress display, a real tiny run and k-fold cross-validation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import pytest

from core.__main__ import _ProgressPrinter, _train_config, main
from core.training import Progress, TrainConfig


def _parse(*argv: str):
    import argparse

    from core.__main__ import _add_train
    parser = argparse.ArgumentParser()
    _add_train(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


def test_help_answers_without_starting_tensorflow():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "core", "train", "--help"],
                            capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=120)
    assert result.returncode == 0 and "--init-from" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "core.model_config" in imported
    assert not {"tensorflow", "keras"} & imported


def test_warm_restart_options_reach_the_config():
    cfg = _train_config(_parse("--init-from", "models/x.keras", "--split-file", "runs/a/split.csv",
                               "--early-stopping-patience", "9"))
    assert (cfg.init_from, cfg.split_file, cfg.early_stopping_patience) == ("models/x.keras", "runs/a/split.csv", 9)


def test_options_left_out_keep_the_config_defaults():
    assert _train_config(_parse()) == TrainConfig()
    cfg = _train_config(_parse("--arch", "resnet50", "--img-size", "64", "--lr", "0.01", "--no-augment",
                               "--no-imagenet", "--split", "0.8,0.1,0.1", "--gender-class-weights"))
    assert (cfg.model.arch, cfg.model.img_size, cfg.model.imagenet) == ("resnet50", 64, False)
    assert (cfg.learning_rate, cfg.augment, cfg.split, cfg.gender_class_weights) == (0.01, False, (0.8, 0.1, 0.1),
                                                                                     True)
    assert cfg.epochs == TrainConfig().epochs


def test_distribution_options_fix_the_learning_rate_and_stay_out_of_the_config():
    args = _parse("--fixed-lr", "--workers", "127.0.0.1:2222,127.0.0.1:2223", "--worker-index", "1")
    assert _train_config(args) == TrainConfig(scale_learning_rate=False)  # the cluster is no setting of the run
    assert (args.workers, args.worker_index) == ("127.0.0.1:2222,127.0.0.1:2223", 1)


def test_a_worker_list_without_an_index_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert main(["train", "--workers", "127.0.0.1:2222,127.0.0.1:2223"]) == 2
    assert "error: --workers needs --worker-index" in capsys.readouterr().err
    assert "TF_CONFIG" not in os.environ  # nothing set, nothing trained


def test_a_malformed_split_is_an_argument_error(capsys):
    with pytest.raises(SystemExit):
        _parse("--split", "0.8,0.2")
    assert "three comma-separated fractions" in capsys.readouterr().err


def test_the_progress_bar_shows_no_loss_before_the_first_batch(capsys):
    progress = Progress(epochs=3, message="Decoding 48 images at 32 px…")
    printer = _ProgressPrinter()
    printer.watch(progress)
    progress.update(epoch=1, batches_per_epoch=5)
    printer.draw()
    before = capsys.readouterr().err
    assert "Decoding 48 images" in before and "loss" not in before and "nan" not in before
    progress.update(batch=2, batch_log=[{"step": 2, "epoch": 0.4, "loss": 1.25, "age_mae": 7.5}])
    printer.draw()
    assert "epoch 1/3" in (bar := capsys.readouterr().err) and "loss 1.250" in bar and "age MAE 7.50" in bar
    progress.update(history=[{"epoch": 1, "loss": 1.0, "val_loss": 1.5, "val_race_accuracy": 0.5}],
                    notes=["ResNet-50 starts from random weights."])
    printer.draw()
    lines = capsys.readouterr().err
    assert "note: ResNet-50 starts from random weights." in lines
    assert "epoch 1/3: loss 1.000, val loss 1.500, val race acc 0.500" in lines


def test_train_runs_one_epoch_and_prints_a_loadable_run_folder(synthetic_utkface, tmp_path, capsys):
    code = main(["train", "--data", str(synthetic_utkface), "--img-size", "32", "--epochs", "1", "--batch-size",
                 "16", "--arch", "multitask_cnn", "--width", "8", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path and (run_dir / "history.csv").is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "finished"
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert model.name == "multitask_cnn" and model.input_shape == (None, 32, 32, 3)
    assert "epoch 1/1: loss" in err and "finished on CPU" in err and "nan" not in err


def test_folds_report_mean_and_std_across_folds(synthetic_utkface, tmp_path, capsys):
    code = main(["train", "--data", str(synthetic_utkface), "--img-size", "32", "--epochs", "1", "--batch-size",
                 "16", "--width", "8", "--arch", "multitask_cnn", "--folds", "2", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "2/2 folds finished" in out and "fold 2/2 epoch 1/1" in err
    cv = json.loads((Path(out.strip().splitlines()[-1]) / "cv.json").read_text())
    mae = cv["summary"]["age_mae"]
    assert f"age_mae          {mae['mean']:.4f} ± {mae['std']:.4f}" in out


def test_a_missing_folder_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: Folder not found")
