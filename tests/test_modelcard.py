"""The model card's numbers must be what `python -m core evaluate` prints for the same model and data."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pandas as pd
import pytest

from core import settings
from core.__main__ import main
from core.modelcard import remeasure_card, ship_run, train_command
from core.registry import DEFAULT_MODEL_NAME
from core.train_options import parse_config
from core.training import TrainConfig, train

KEYS = ("n", "age_mae", "age_rmse", "gender_accuracy", "race_accuracy")


def _evaluate_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["evaluate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cfg = TrainConfig.tiny("residual_cnn", model_overrides={"age_head": "distribution"},
                           data_dir=str(settings.SAMPLE_DIR), limit=120,
                           out_dir=str(tmp_path_factory.mktemp("runs")))
    return train(cfg).run_dir


def test_shipped_card_matches_evaluate_on_its_test_split(tiny_run, tmp_path, capsys):
    card = ship_run(tiny_run, settings.SAMPLE_DIR, name="tiny", models_dir=tmp_path)
    assert (tmp_path / "tiny.keras").is_file() and (tmp_path / "tiny.split.csv").is_file()
    printed = _evaluate_json(capsys, "--data", str(settings.SAMPLE_DIR), "--model", str(tmp_path / "tiny.keras"),
                             "--split-file", str(tmp_path / "tiny.split.csv"), "--split", "test")
    for key in KEYS:
        assert card["metrics"][key] == pytest.approx(printed[key], abs=1e-9), key
    assert card["metrics"]["n"] == card["data"]["n_test"] > 0
    assert set(card["metrics"]["by_group"]) == {"race", "gender", "age_group"}
    assert "/work" not in (tmp_path / "tiny.split.csv").read_text()  # names only, no machine paths


def test_remeasuring_rewrites_the_cards_numbers_and_keeps_the_rest(tiny_run, tmp_path):
    card = ship_run(tiny_run, settings.SAMPLE_DIR, name="tiny", models_dir=tmp_path)
    stale = {**card, "metrics": {**card["metrics"], "age_mae": 99.0}, "limitations": ["kept"]}
    (tmp_path / "tiny.json").write_text(json.dumps(stale))
    again = remeasure_card(settings.SAMPLE_DIR, "tiny", tmp_path)
    assert again["metrics"]["age_mae"] == pytest.approx(card["metrics"]["age_mae"], abs=1e-9)
    assert again["limitations"] == ["kept"] and again["training"] == card["training"]
    assert json.loads((tmp_path / "tiny.json").read_text()) == again


def _parsed(command: str) -> TrainConfig:
    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "core", "train"]
    return parse_config(argv[4:])


def test_train_command_reproduces_the_config(tiny_run):
    config = json.loads((Path(tiny_run) / "config.json").read_text())
    command = train_command(config, data_placeholder="/data")
    assert command.startswith("python -m core train --arch residual_cnn")
    assert _parsed(command) == dataclasses.replace(TrainConfig.from_dict(config), data_dir="/data", out_dir="")


def test_train_command_carries_every_changed_setting_and_no_machine_path():
    cfg = TrainConfig.tiny(age_loss="huber", age_weight=0.2, race_weight=2.0, schedule="plateau", augment=False,
                           race_class_weights=True, warmup_epochs=0.5, data_dir="/machine/data",
                           out_dir="/machine/runs", init_from="/machine/runs/a/model.keras")
    command = train_command(json.loads(json.dumps(cfg.to_dict())))
    assert "/machine" not in command
    assert _parsed(command) == dataclasses.replace(cfg, data_dir="/path/to/UTKFace", out_dir="",
                                                   init_from="models/model.keras")


def test_a_continued_run_ships_with_the_recipe_of_both_stages(tiny_run, tmp_path):
    first = ship_run(tiny_run, settings.SAMPLE_DIR, name="tiny", models_dir=tmp_path)
    cfg = TrainConfig.tiny("residual_cnn", model_overrides={"age_head": "distribution"},
                           data_dir=str(settings.SAMPLE_DIR), init_from=str(tmp_path / "tiny.keras"),
                           split_file=str(tmp_path / "tiny.split.csv"), out_dir=str(tmp_path / "runs"), limit=0)
    first_split = pd.read_csv(tmp_path / "tiny.split.csv").set_index("path")["split"]
    continued = train(cfg).run_dir
    second = ship_run(continued, settings.SAMPLE_DIR, name="tiny", models_dir=tmp_path)
    # shipping the same run again (a fixed card, say) keeps the stage it started from, not itself
    assert ship_run(continued, settings.SAMPLE_DIR, name="tiny", models_dir=tmp_path)["training"]["started_from"] == \
        second["training"]["started_from"]
    command = second["training"]["command"]
    assert "--init-from models/tiny.keras --split-file models/tiny.split.csv" in command and "--split " not in command
    assert _parsed(command) == dataclasses.replace(cfg, data_dir="/path/to/UTKFace", out_dir="",
                                                   init_from="models/tiny.keras", split_file="models/tiny.split.csv")
    earlier = second["training"]["started_from"]
    assert earlier["training"]["command"] == first["training"]["command"]
    assert earlier["metrics"]["age_mae"] == first["metrics"]["age_mae"]
    # The first run's images keep their split (its test images are never trained on); the rest of the sample,
    # unknown to it, is split afresh
    second_split = pd.read_csv(tmp_path / "tiny.split.csv").set_index("path")["split"]
    assert second_split.loc[first_split.index].equals(first_split)
    assert len(second_split) == 300 > len(first_split)


def test_default_model_card_matches_evaluate_on_the_bundled_sample(capsys):
    card_path = settings.MODELS_DIR / f"{DEFAULT_MODEL_NAME}.json"
    if not card_path.is_file():
        pytest.skip("no shipped model yet")
    card = json.loads(card_path.read_text())
    printed = _evaluate_json(capsys, "--data", str(settings.SAMPLE_DIR),
                             "--model", str(settings.MODELS_DIR / card["file"]))
    for key in KEYS:
        assert card["sample_metrics"][key] == pytest.approx(printed[key], abs=1e-6), key
