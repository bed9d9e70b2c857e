"""The reference models: each in its dataset's label space, named outputs of the right shapes, the layers their
reports describe, and a safe-mode save → load round-trip that keeps the space readable from the outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from core import reference_builders
from core.label_spaces import SPACES
from core.model_config import REFERENCE_ARCHITECTURES, ModelConfig
from core.models import build_model, model_space

EXPECTED = {"vgg16": {"age": 1, "gender": 1, "race": 5},
            "levi_hassner": {"age_group": 8, "gender": 1},
            "fairface_cnn": {"age_group": 9, "gender": 1, "race": 7}}


def _images(n: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def built() -> dict:
    return {arch: build_model(ModelConfig.tiny(arch)) for arch in REFERENCE_ARCHITECTURES}


@pytest.mark.parametrize("arch", REFERENCE_ARCHITECTURES)
def test_outputs_are_named_and_shaped_in_the_datasets_own_space(arch, built):
    model, _ = built[arch]
    out = model.predict(_images(3), verbose=0)
    assert {name: value.shape[1] for name, value in out.items()} == EXPECTED[arch]
    assert all(value.shape[0] == 3 and value.dtype == np.float32 for value in out.values())
    for name in ("age_group", "race"):
        if name in out:
            np.testing.assert_allclose(out[name].sum(axis=1), 1.0, rtol=1e-5)
    assert model_space(model) is SPACES[ModelConfig(arch=arch).label_space]


@pytest.mark.parametrize("arch", REFERENCE_ARCHITECTURES)
def test_save_and_load_in_safe_mode_give_identical_predictions_and_the_same_space(arch, built, tmp_path):
    model, _ = built[arch]
    x = _images(2)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)  # no Lambda layers
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    assert model_space(loaded) is model_space(model) is not None


def test_levi_hassner_follows_the_paper_at_227_px():
    model, note = build_model(ModelConfig(arch="levi_hassner", img_size=227))
    assert note is None
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.strides) for c in convs] == [(96, (7, 7), (4, 4)), (256, (5, 5), (1, 1)),
                                                                      (384, (3, 3), (1, 1))]
    # Caffe's ceil-mode pooling sizes, 56 → 28 → 14 → 7
    assert [model.get_layer(f"pool{i}").output.shape[1] for i in (1, 2, 3)] == [28, 14, 7]
    dense = [(d.units, d.activation.__name__) for d in model.layers if isinstance(d, layers.Dense)]
    assert dense[:2] == [(512, "relu"), (512, "relu")]
    assert [model.get_layer(f"drop{i}").rate for i in (1, 2)] == [0.5, 0.5]
    init = model.get_layer("fc1").kernel_initializer
    assert isinstance(init, keras.initializers.RandomNormal) and init.stddev == 0.01


def test_fairface_cnn_doubles_its_filters_over_four_blocks(built):
    model, _ = built["fairface_cnn"]
    width = ModelConfig.tiny("fairface_cnn").width
    assert [model.get_layer(f"block{i}_conv").filters for i in (1, 2, 3, 4)] == [width, 2 * width, 4 * width,
                                                                                  8 * width]
    kinds = [type(model.get_layer(f"block1_{part}")).__name__ for part in ("conv", "bn", "relu", "pool")]
    assert kinds == ["Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D"]


def test_vgg16_branches_and_random_init_fallback_is_said(built, monkeypatch):
    model, note = built["vgg16"]
    assert "random init" in note
    assert all(layer.trainable for layer in model.get_layer("vgg16_backbone").layers)  # random: nothing frozen
    assert [model.get_layer(n).units for n in ("gender_fc1", "gender_fc2", "age_fc1", "age_fc2")] == [128, 256,
                                                                                                      256, 512]
    assert [model.get_layer(n).rate for n in ("gender_drop1", "gender_drop2", "age_drop1")] == [0.3, 0.5, 0.2]
    assert model.get_layer("age").activation.__name__ == "relu"
    monkeypatch.setattr(reference_builders, "imagenet_weights_note", lambda *a: "no internet here")
    _, offline_note = build_model(ModelConfig.tiny("vgg16", imagenet=True))
    assert offline_note == "no internet here"


def test_vgg16_with_imagenet_weights_freezes_all_but_the_last_three_layers(monkeypatch):
    # The weights themselves are a 58 MB download: stand a random backbone in for them, counted as pretrained.
    real = reference_builders._vgg16_backbone
    monkeypatch.setattr(reference_builders, "_vgg16_backbone",
                        lambda cfg: (real(ModelConfig.tiny("vgg16"))[0], True, None))
    model, note = build_model(ModelConfig.tiny("vgg16", imagenet=True))
    backbone = model.get_layer("vgg16_backbone")
    trainable = [layer.name for layer in backbone.layers if layer.trainable and layer.weights]
    assert note is None and trainable == ["block5_conv2", "block5_conv3"]  # and block5_pool, which has no weights
    assert not backbone.layers[-4].trainable


def test_a_group_space_has_no_distribution_age_head():
    with pytest.raises(Exception, match="no distribution-over-years age head"):
        build_model(ModelConfig.tiny("levi_hassner", age_head="distribution"))
