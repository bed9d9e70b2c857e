"""Model builders: names and shapes of the outputs, the reference architecture exactly, learning, serialisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from core import models
from core.errors import UserError
from core.labels import AGE_BINS
from core.models import IN_HOUSE_ARCHITECTURES as ARCHITECTURES  # reference models: test_reference_builders.py
from core.models import ModelConfig, backbone_layer, build_model


def _images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def tiny_built() -> dict:
    """(model, note) per architecture, built once: ResNet-50 alone takes many seconds on a busy CPU. The
    residual_cnn gets the distribution head, as the shipped model has."""
    return {arch: build_model(ModelConfig.tiny(arch, age_head="distribution" if arch == "residual_cnn"
                                               else "regression")) for arch in ARCHITECTURES}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_builder_has_named_outputs_of_the_right_shapes(arch, tiny_built):
    model, _ = tiny_built[arch]
    extra = ["age_dist"] if arch == "residual_cnn" else []
    assert sorted(model.output_names) == sorted(["age", "gender", "race", *extra])
    assert model.input_shape == (None, 32, 32, 3)
    out = model.predict(_images(3), verbose=0)
    assert out["age"].shape == (3, 1) and out["gender"].shape == (3, 1) and out["race"].shape == (3, 5)
    assert np.all((out["gender"] >= 0) & (out["gender"] <= 1))
    np.testing.assert_allclose(out["race"].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("arch", ["custom_cnn", "multitask_cnn"])
def test_distribution_head_outputs_years_as_the_expectation_of_its_bins(arch):
    model, _ = build_model(ModelConfig.tiny(arch, age_head="distribution"))
    assert sorted(model.output_names) == ["age", "age_dist", "gender", "race"]
    out = model.predict(_images(2), verbose=0)
    assert out["age_dist"].shape == (2, AGE_BINS)
    expected = (out["age_dist"] * np.arange(AGE_BINS)).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["age"], expected, rtol=1e-4)


def test_custom_cnn_parameter_count_at_128_px_equals_the_reference_architecture():
    def conv(cin, cout):  # 3×3 kernel + bias
        return 3 * 3 * cin * cout + cout

    def batch_norm(c):  # gamma, beta, moving mean, moving variance
        return 4 * c

    def dense(cin, cout):
        return cin * cout + cout

    flat = (128 // 2 // 2 // 2) ** 2 * 128  # three 2×2 poolings of a 128-px image, 128 channels: 32,768
    expected = (conv(3, 32) + batch_norm(32) + conv(32, 64) + batch_norm(64) + conv(64, 128) + batch_norm(128)
                + dense(flat, 512) + dense(512, 256)
                + dense(256, 1) + dense(256, 1) + dense(256, 5))  # age, gender, race heads
    assert expected == 17_004_999
    model, _ = build_model(ModelConfig(arch="custom_cnn", img_size=128))
    assert model.count_params() == expected


def test_custom_cnn_follows_the_reference_layer_order():
    model, _ = build_model(ModelConfig.tiny("custom_cnn"))
    body = [layer for layer in model.layers if not isinstance(layer, (layers.InputLayer, layers.Rescaling))]
    kinds = [type(layer).__name__ for layer in body[:14]]
    assert kinds == ["Conv2D", "BatchNormalization", "MaxPooling2D"] * 3 + ["Flatten", "Dense", "Dropout", "Dense",
                                                                              "Dropout"]
    convs = [layer for layer in body if isinstance(layer, layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.activation.__name__) for c in convs] == [
        (32, (3, 3), "relu"), (64, (3, 3), "relu"), (128, (3, 3), "relu")]
    dense = [layer for layer in body[:14] if isinstance(layer, (layers.Dense, layers.Dropout))]
    assert [(getattr(d, "units", None), getattr(d, "rate", None)) for d in dense] == [
        (512, None), (None, 0.5), (256, None), (None, 0.3)]


def test_multitask_cnn_gives_each_head_its_own_regularised_branch():
    model, _ = build_model(ModelConfig.tiny("multitask_cnn"))
    names = {layer.name for layer in model.layers}
    for head in ("age", "gender", "race"):
        assert {f"{head}_branch1_conv", f"{head}_branch1_bn", f"{head}_gap", f"{head}_fc"} <= names
        assert model.get_layer(f"{head}_fc").kernel_regularizer is not None


def test_a_model_overfits_one_batch():
    keras.utils.set_random_seed(0)
    model, _ = build_model(ModelConfig.tiny("multitask_cnn"))
    model.compile(keras.optimizers.Adam(3e-3), {"age": "mae", "gender": "binary_crossentropy",
                                                "race": "sparse_categorical_crossentropy"},
                  loss_weights={"age": 0.1, "gender": 1.0, "race": 1.0})
    x = _images(8, seed=1)
    y = {"age": np.linspace(5, 75, 8, dtype="float32")[:, None], "gender": np.array([0, 1] * 4, "float32")[:, None],
         "race": np.arange(8) % 5}
    first = float(model.train_on_batch(x, y, return_dict=True)["loss"])
    for _ in range(60):
        last = float(model.train_on_batch(x, y, return_dict=True)["loss"])
    assert last < 0.3 * first, (first, last)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_save_and_load_give_identical_predictions(arch, tiny_built, tmp_path):
    model, _ = tiny_built[arch]
    x = _images(4, seed=2)
    before = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)  # safe_mode: no Lambda layers
    after = loaded.predict(x, verbose=0)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


def test_outputs_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, _ = build_model(ModelConfig.tiny("custom_cnn", age_head="distribution"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("fc1").compute_dtype == "float16"  # the body does run in half precision
    assert {name: str(t.dtype) for name, t in zip(model.output_names, model.outputs, strict=True)} == {
        "age": "float32", "gender": "float32", "race": "float32", "age_dist": "float32"}


class _FakeResNet50:
    """Stands in for keras.applications.ResNet50: records the weights asked for, fails the download if told to,
    and returns a one-layer backbone so the fallback logic is tested in milliseconds."""

    def __init__(self, download_fails: bool = False):
        self.calls, self.download_fails = [], download_fails

    def __call__(self, include_top, weights, input_shape, name):
        self.calls.append(weights)
        if weights == "imagenet" and self.download_fails:
            raise ValueError("corrupt download")
        image = keras.Input(input_shape)
        return keras.Model(image, layers.Conv2D(8, 3, strides=32, padding="same")(image), name=name)


def _offline(*args, **kwargs):
    raise OSError("network is unreachable")


class _Connection:
    def close(self):
        pass


def test_resnet50_falls_back_to_random_weights_offline_without_trying_to_download(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "_keras_home", lambda: tmp_path)  # no cached weights file there
    monkeypatch.setattr(models.socket, "create_connection", _offline)
    monkeypatch.setattr(keras.applications, "ResNet50", fake := _FakeResNet50())
    assert "random" in models.resnet50_weights_note()
    model, note = build_model(ModelConfig.tiny("resnet50", imagenet=True))
    assert fake.calls == [None]  # an offline machine must not hang on a download
    assert "ImageNet" in note and "random" in note
    assert backbone_layer(model).name == "resnet50_backbone"


def test_resnet50_uses_imagenet_weights_when_reachable_and_survives_a_failed_download(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "_keras_home", lambda: tmp_path)
    monkeypatch.setattr(models.socket, "create_connection", lambda *args, **kwargs: _Connection())
    monkeypatch.setattr(keras.applications, "ResNet50", fake := _FakeResNet50())
    assert build_model(ModelConfig.tiny("resnet50", imagenet=True))[1] is None and fake.calls == ["imagenet"]
    monkeypatch.setattr(keras.applications, "ResNet50", fake := _FakeResNet50(download_fails=True))
    _, note = build_model(ModelConfig.tiny("resnet50", imagenet=True))
    assert fake.calls == ["imagenet", None] and "could not be loaded" in note


def test_resnet50_without_imagenet_says_it_starts_from_random_weights(tiny_built):
    model, note = tiny_built["resnet50"]  # tiny configs skip ImageNet
    assert "random" in note
    assert backbone_layer(model) is not None and backbone_layer(tiny_built["custom_cnn"][0]) is None


def test_resnet50_preprocessing_matches_keras_caffe_preprocessing():
    from keras.applications.resnet50 import preprocess_input
    image = keras.Input((32, 32, 3))
    probe = keras.Model(image, models._imagenet_preprocess(image))
    x = _images(2, seed=3)
    np.testing.assert_allclose(probe.predict(x, verbose=0), preprocess_input(x.copy()), atol=1e-3)


@pytest.mark.parametrize("overrides,message", [({"arch": "vgg"}, "architecture 'vgg' is not one of"),
                                               ({"img_size": 16}, "at least 32 px"),
                                               ({"age_head": "ordinal"}, "age head 'ordinal' is not one of")])
def test_build_model_rejects_impossible_configs_as_a_user_error(overrides, message):
    with pytest.raises(UserError, match=message):
        build_model(ModelConfig.tiny(**overrides))
