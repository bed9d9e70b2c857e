"""`python -m core train`: its help, a real tiny run, k-fold cross-validation and user errors (the options
themselves: test_train_options.py; the progress display: test_console.py)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import keras
import pytest

from core.__main__ import main
from core.training import TrainConfig


def test_help_answers_without_starting_tensorflow():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "core", "train", "--help"],
                            capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0 and "--init-from" in result.stdout
    defaults = TrainConfig()  # the help shows the defaults the code uses
    for flag, default in [("--lr", defaults.learning_rate), ("--img-size", defaults.model.img_size),
                          ("--age-loss", defaults.age_loss), ("--split", ",".join(map(str, defaults.split)))]:
        assert re.search(rf"{flag} [^(]*\(default: {re.escape(str(default))}\)", result.stdout), flag
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "core.model_config" in imported
    assert not {"tensorflow", "keras"} & imported


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


def test_only_a_user_error_becomes_a_message_and_exit_2(tmp_path, capsys, monkeypatch):
    from core import commands
    assert main(["ship", "--run", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path} has no model.keras\n"

    def a_bug(args):
        raise KeyError("a bug")
    monkeypatch.setitem(commands.COMMANDS, "ship", (commands.add_ship, a_bug))
    with pytest.raises(KeyError):  # with its traceback
        main(["ship", "--run", str(tmp_path), "--data", str(tmp_path)])


def test_a_fixed_learning_rate_is_a_setting_of_the_run():
    from core.train_options import config_args, parse_config
    fixed = TrainConfig(scale_learning_rate=False)
    assert parse_config(["--no-scale-learning-rate"]) == fixed and config_args(fixed) == ["--no-scale-learning-rate"]


def test_a_worker_list_without_an_index_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert main(["train", "--workers", "127.0.0.1:2222,127.0.0.1:2223"]) == 2
    assert "error: --workers needs --worker-index" in capsys.readouterr().err
    assert "TF_CONFIG" not in os.environ  # nothing set, nothing trained


# ------------------------------------------------------------------------------------ reference models

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(("arch", "kind"), [("vgg16", "adience"), ("levi_hassner", "utkface"),
                                            ("fairface_cnn", "adience")])
def test_a_reference_architecture_refuses_other_dataset_kinds(arch, kind, tmp_path, capsys):
    assert main(["train", "--arch", arch, "--dataset", kind, "--data", str(FIXTURES / "adience"),
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Cannot train: {arch} trains on ") and f"not on {kind}" in err
    assert "Traceback" not in err


def test_fairface_cnn_trains_one_epoch_on_the_fairface_fixture(tmp_path, capsys):
    code = main(["train", "--arch", "fairface_cnn", "--dataset", "fairface", "--data", str(FIXTURES / "fairface"),
                 "--img-size", "32", "--width", "8", "--epochs", "1", "--batch-size", "8", "--crops", "dataset",
                 "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "age_group_accuracy=" in err and "race_accuracy=" in err
    model = keras.saving.load_model(Path(out.strip().splitlines()[-1]) / "model.keras", safe_mode=True)
    assert model.name == "fairface_cnn"


def test_without_dataset_the_kind_is_read_from_the_folder(tmp_path, capsys):
    """`--data <an Adience folder>` alone trains Levi–Hassner (it was refused: the kind defaulted to UTKFace)."""
    code = main(["train", "--arch", "levi_hassner", "--data", str(FIXTURES / "adience"), "--img-size", "32",
                 "--epochs", "1", "--crops", "dataset", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    config = json.loads((Path(out.strip().splitlines()[-1]) / "config.json").read_text())
    assert config["dataset"] == "adience" and "age_group_accuracy=" in err


def test_adience_5_fold_cross_validation_prints_exact_and_one_off_mean_and_std(tmp_path, capsys):
    code = main(["train", "--arch", "levi_hassner", "--dataset", "adience", "--data", str(FIXTURES / "adience"),
                 "--img-size", "32", "--epochs", "1", "--crops", "dataset", "--folds", "5", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "5/5 folds finished" in out
    cv = json.loads((Path(out.strip().splitlines()[-1]) / "cv.json").read_text())
    for key in ("age_group_accuracy", "age_group_one_off"):
        stats = cv["summary"][key]
        assert stats["n"] == 5 and f"{key:<16} {stats['mean']:.4f} ± {stats['std']:.4f}" in out


def test_adience_cross_validation_on_the_shared_subset_says_why_it_cannot_run(shared_dir, tmp_path, capsys):
    # Its 19 images all belong to fold 0 (SOURCE.md): there is no second fold to test on.
    assert main(["train", "--arch", "levi_hassner", "--dataset", "adience", "--data",
                 str(shared_dir / "data" / "adience"), "--img-size", "32", "--crops", "dataset", "--folds", "5",
                 "--out", str(tmp_path)]) == 2
    assert "only 1 of them (fold 0) has images here" in capsys.readouterr().err
