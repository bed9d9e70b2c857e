"""`python -m core evaluate` on the bundled sample, a run's split, Adience and a FairFace-format folder; it predicts
with the model's LiteRT export, as the app does (exported beside the .keras when missing)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from core import settings
from core.__main__ import main
from core.datasets import load_dataset
from tests.support import write_run

HEADLINE = ("n", "age_mae", "age_rmse", "gender_accuracy", "race_accuracy")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny untrained residual CNN with a distribution age head, saved outside models/ and runs/."""
    from core.models import ModelConfig, build_model
    model, _ = build_model(ModelConfig.tiny("residual_cnn", age_head="distribution"))
    path = tmp_path_factory.mktemp("cli_model") / "mine.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def sample_rows():
    return load_dataset("utkface", settings.SAMPLE_DIR).table


def run_json(capsys, *argv) -> dict:
    assert main(["evaluate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bundled_sample_gives_sane_headline_and_groups(capsys, tiny_model, sample_rows):
    report = run_json(capsys, "--data", str(settings.SAMPLE_DIR), "--model", str(tiny_model))
    assert set(HEADLINE) <= set(report)
    assert report["n"] == len(sample_rows) >= 100
    assert 0 <= report["age_mae"] <= report["age_rmse"] < 117
    for key in ("gender_accuracy", "race_accuracy", "gender_auc", "age_group_accuracy"):
        assert 0 <= report[key] <= 1, key
    assert 0 <= report["age_within_1std"] <= 1  # distribution head: an uncertainty to check
    assert set(report["by_group"]) == {"race", "gender", "age_group"}
    assert sum(g["n"] for g in report["by_group"]["race"].values()) == report["n"]
    assert set(report["by_group"]["gender"]) == {"male", "female"}
    assert report["dataset"] == "utkface" and report["split"] == "all" and report["model"] == str(tiny_model)
    assert len(report["age_cs"]) == 10 and report["age_cs"]["10"] >= report["age_cs"]["1"]


def test_run_folder_scores_only_its_test_rows(capsys, tmp_path, tiny_model, sample_rows):
    run = write_run(tmp_path, model=tiny_model, config={"dataset": "utkface", "data_dir": str(settings.SAMPLE_DIR)},
                    metrics=None)
    splits = ["test" if i % 5 == 0 else "train" for i in range(len(sample_rows))]
    pd.DataFrame({"path": sample_rows["path"], "split": splits}).to_csv(run / "split.csv", index=False)

    report = run_json(capsys, "--run", str(run))
    assert report["n"] == splits.count("test") and report["split"] == "test"
    assert report["model"] == str(run / "model.keras")

    train = run_json(capsys, "--split-file", str(run / "split.csv"), "--split", "train", "--model", str(tiny_model))
    assert train["n"] == splits.count("train") and train["split"] == "train"


def test_it_predicts_with_the_tflite_export_as_the_app_does(capsys, tmp_path, tiny_model):
    model = shutil.copy(tiny_model, tmp_path / "copy.keras")
    from_keras = run_json(capsys, "--model", str(model), "--limit", "20")
    assert (tmp_path / "copy.tflite").is_file()  # written beside the .keras on first use
    from_tflite = run_json(capsys, "--model", str(tmp_path / "copy.tflite"), "--limit", "20")
    for key in HEADLINE:
        assert from_keras[key] == pytest.approx(from_tflite[key], abs=1e-9), key


def test_limit_and_predictions_csv(capsys, tmp_path, tiny_model):
    out = tmp_path / "predictions.csv"
    report = run_json(capsys, "--model", str(tiny_model), "--limit", "20", "--predictions", str(out))
    predictions = pd.read_csv(out)
    assert report["n"] == 20 == len(predictions)
    assert {"path", "age", "pred_age", "pred_age_std", "pred_female_prob", "pred_race"} <= set(predictions.columns)


def test_faces_are_read_through_the_views_unless_one_is_asked(capsys, tiny_model):
    views = run_json(capsys, "--model", str(tiny_model), "--limit", "12", "--predictions", "")
    one = run_json(capsys, "--model", str(tiny_model), "--limit", "12", "--one-view")
    assert (views["views"], one["views"]) == (5, 1) and views["n"] == one["n"] == 12
    assert views["age_mae"] != one["age_mae"]


def test_text_output_is_readable(capsys, tiny_model):
    assert main(["evaluate", "--data", str(settings.SAMPLE_DIR), "--model", str(tiny_model), "--limit", "40"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("40 images · utkface") and "by race" in out and "gender  accuracy" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "/nowhere/model.keras"], "Model file not found"),
    (["--data", "/nowhere/at/all"], "Folder not found"),
    (["--split", "test"], "--split needs --split-file"),
    (["--run", "/nowhere/run"], "not a readable run folder"),
])
def test_user_errors_exit_2_with_a_message(capsys, tiny_model, argv, message):
    if "--model" not in argv and "--run" not in argv:
        argv = [*argv, "--model", str(tiny_model)]
    assert main(["evaluate", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_no_shipped_model_says_what_to_do(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path)
    assert main(["evaluate"]) == 2
    assert "No shipped model yet" in capsys.readouterr().err


def test_cross_dataset_on_adience(capsys, shared_dir, tiny_model):
    report = run_json(capsys, "--dataset", "adience", "--data", str(shared_dir / "data" / "adience"),
                      "--model", str(tiny_model))
    assert report["n"] == 19 and report["dataset"] == "adience" and report["age_groups"] == "adience"
    assert 0 <= report["age_group_accuracy"] <= report["age_group_one_off"] <= 1
    assert 0 <= report["gender_accuracy"] <= 1
    assert report["race_accuracy"] is None and "race" not in report["by_group"]
    assert set(report["by_group"]["age_group"]) == {"(25, 32)"}


def test_cross_dataset_on_fairface_format(capsys, tmp_path, tiny_model, sample_rows):
    """A FairFace-format folder (train/N.jpg + fairface_label_train.csv) built from sample images."""
    (tmp_path / "train").mkdir()
    races = ["White", "Black", "East Asian", "Southeast Asian", "Indian", "Latino_Hispanic", "Middle Eastern"]
    bins = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"]
    rows = []
    for i, path in enumerate(sample_rows["path"][:14], start=1):
        shutil.copy(path, tmp_path / "train" / f"{i}.jpg")
        rows.append({"file": f"train/{i}.jpg", "age": bins[i % 9], "gender": ("Male", "Female")[i % 2],
                     "race": races[i % 7], "service_test": "False"})
    pd.DataFrame(rows).to_csv(tmp_path / "fairface_label_train.csv", index=False)

    report = run_json(capsys, "--data", str(tmp_path), "--model", str(tiny_model))
    assert report["dataset"] == "fairface" and report["n"] == 14
    assert report["age_mae"] is None and 0 <= report["age_group_accuracy"] <= 1
    assert report["confusion"]["age_group"]["labels"] == bins
    assert set(report["by_group"]["race"]) == set(races)  # FairFace's 7 names, though scored on UTKFace's 5
    assert 0 <= report["race_accuracy"] <= 1


def test_module_entry_point_prints_json_last(tiny_model):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [sys.executable, "-m", "core", "evaluate", "--data", str(settings.SAMPLE_DIR), "--model", str(tiny_model),
            "--limit", "30", "--json"]
    done = subprocess.run(argv, cwd=settings.PROJECT_ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["n"] == 30 and all(key in report for key in HEADLINE)
    assert math.isfinite(report["age_mae"])
