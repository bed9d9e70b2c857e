"""core/train_options.py: the train command's options come from the config dataclasses, and a config's options
parse back to the same config (a model card's command reproduces its run)."""

from __future__ import annotations

import dataclasses

import pytest

from core.config import TrainConfig
from core.model_config import ModelConfig
from core.train_options import CHOICES, Option, config_args, options, parse_config


def _changed(option: Option):
    """A value other than the option's default, of its type."""
    default = option.default
    if option.name in CHOICES:
        return next(choice for choice in CHOICES[option.name] if choice != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, tuple):
        return (0.8, 0.1, 0.1)
    if isinstance(default, int | float):
        return default * 3 + 1
    return f"some/{option.name}"


def _with(cfg: TrainConfig, option: Option, value) -> TrainConfig:
    if option.in_model:
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **{option.name: value}))
    return dataclasses.replace(cfg, **{option.name: value})


def test_options_left_out_keep_the_config_defaults():
    assert parse_config([]) == TrainConfig() and config_args(TrainConfig()) == []
    cfg = parse_config(["--arch", "resnet50", "--img-size", "64", "--lr", "0.01", "--no-augment", "--no-imagenet",
                        "--split", "0.8,0.1,0.1", "--gender-class-weights", "--init-from", "models/x.keras"])
    assert cfg.model == ModelConfig(arch="resnet50", img_size=64, imagenet=False)
    assert (cfg.learning_rate, cfg.augment, cfg.split, cfg.gender_class_weights, cfg.init_from) == (
        0.01, False, (0.8, 0.1, 0.1), True, "models/x.keras")
    assert cfg.epochs == TrainConfig().epochs


@pytest.mark.parametrize("option", options(), ids=lambda option: option.name)
def test_every_setting_has_an_option_that_round_trips(option):
    cfg = _with(TrainConfig(), option, _changed(option))
    args = config_args(cfg)
    assert args[0] == option.flag and len(args) == (1 if isinstance(option.default, bool) else 2)
    assert parse_config(args) == cfg


def test_a_config_changed_everywhere_round_trips():
    cfg = TrainConfig()
    for option in options():
        cfg = _with(cfg, option, _changed(option))
    assert parse_config(config_args(cfg)) == cfg


def test_a_malformed_split_is_an_argument_error(capsys):
    with pytest.raises(SystemExit):
        parse_config(["--split", "0.8,0.2"])
    assert "three comma-separated fractions" in capsys.readouterr().err
