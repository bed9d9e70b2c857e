"""The reference architectures' recipes: taken where a setting was left at its default, never over the user's, and
said in a note; the dataset kinds each architecture fits, refused otherwise."""

from __future__ import annotations

import pytest

from core.config import TrainConfig, TrainingError
from core.datasets import KINDS
from core.model_config import ARCHITECTURES, DATASET_KINDS, ModelConfig, arch_kinds
from core.recipes import RECIPES, arch_caption, with_recipe


def test_the_model_configs_kinds_are_the_loaders():
    assert DATASET_KINDS == KINDS


def test_a_recipe_fills_settings_left_at_their_defaults_and_says_which():
    cfg, note = with_recipe(TrainConfig(model=ModelConfig(arch="levi_hassner"), dataset="adience"))
    assert cfg.model.img_size == 227 and cfg.optimizer == "sgd" and cfg.learning_rate == 1e-3
    assert cfg.batch_size == 50 and cfg.schedule == "constant"
    assert note.startswith("levi_hassner trains with its report's recipe") and "img_size 227" in note
    assert "learning_rate" not in note  # 1e-3 is already the default: nothing to say


def test_a_setting_the_user_changed_wins_over_the_recipe():
    asked = TrainConfig(model=ModelConfig(arch="fairface_cnn", img_size=64), dataset="fairface", epochs=2,
                        learning_rate=3e-3)
    cfg, note = with_recipe(asked)
    assert (cfg.model.img_size, cfg.epochs, cfg.learning_rate) == (64, 2, 3e-3)
    assert cfg.batch_size == 32 and cfg.race_class_weights and "epochs" not in note


def test_in_house_architectures_have_no_recipe():
    cfg = TrainConfig()
    assert with_recipe(cfg) == (cfg, None)
    assert set(RECIPES) == {"vgg16", "levi_hassner", "fairface_cnn"}


@pytest.mark.parametrize(("arch", "kind"), [("levi_hassner", "adience"), ("fairface_cnn", "fairface"),
                                            ("vgg16", "utkface")])
def test_each_reference_architecture_trains_on_its_own_dataset_only(arch, kind):
    assert arch_kinds(arch) == (kind,)
    TrainConfig(model=ModelConfig(arch=arch), dataset=kind).validate()
    for other in set(KINDS) - {kind}:
        with pytest.raises(TrainingError, match=rf"{arch} trains on {kind} data only .* not on {other}"):
            TrainConfig(model=ModelConfig(arch=arch), dataset=other).validate()
    assert kind.lower() in arch_caption(arch).lower() and "reported" in arch_caption(arch)


def test_in_house_architectures_fit_every_kind():
    for arch in ARCHITECTURES[:4]:
        assert arch_kinds(arch) == KINDS
        assert "UTKFace's labels" in arch_caption(arch)
