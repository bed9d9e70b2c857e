"""ModelConfig and the names the CLI and pages offer, without importing Keras."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import UserError
from core.model_config import AGE_HEADS, ARCHITECTURES, ConfigError, ModelConfig


def test_tiny_preset_is_small_and_keeps_overrides():
    tiny = ModelConfig.tiny("residual_cnn", age_head="distribution")
    assert (tiny.arch, tiny.img_size, tiny.width, tiny.imagenet, tiny.age_head) == ("residual_cnn", 32, 8, False,
                                                                                    "distribution")
    assert json.loads(tiny.to_json()) == {**json.loads(ModelConfig().to_json()), "arch": "residual_cnn",
                                          "img_size": 32, "width": 8, "imagenet": False, "age_head": "distribution"}


def test_defaults_are_among_the_offered_names():
    assert ModelConfig().arch in ARCHITECTURES and ModelConfig().age_head in AGE_HEADS


def test_importing_it_does_not_start_tensorflow():
    code = "import sys, core.model_config; print(sorted({'keras', 'tensorflow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parents[1]).stdout.strip()
    assert out == "[]"


def test_a_model_that_cannot_be_built_is_a_user_error_naming_the_setting():
    assert ModelConfig.tiny().problems() == []
    ModelConfig.tiny().validate()
    with pytest.raises(ConfigError, match="Cannot build the model: image size must be at least 32 px"):
        ModelConfig.tiny(img_size=16).validate()
    assert issubclass(ConfigError, UserError)
    assert len(ModelConfig(arch="vgg", age_head="ordinal", img_size=8).problems()) == 3
