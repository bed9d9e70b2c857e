"""Model builders: functional Keras models with outputs named `age` (years), `gender` (P(female)) and `race`
(5-way softmax). Models with a distribution age head also output `age_dist`, a softmax over whole years 0–116,
whose expectation is `age` (what training's L1 term scores) and whose spread is the age uncertainty; the app reads
the distribution's median as the age (core/label_spaces.py `predicted_years`: less MAE). The reference models of
other label spaces (`age_group` softmax, race-7 or no race) are built in core/reference_builders.py; `build_model`
builds any.

Preprocessing lives inside every model, so callers pass RGB pixels in 0–255, uint8 or float. Output layers are
pinned to float32, so under a mixed-precision policy (GPU) losses and saved predictions stay float32.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import keras
import numpy as np
from keras import layers, regularizers

from core.labels import AGE_BINS
from core.model_config import (  # noqa: F401  (the architecture lists: callers' lists of builders)
    ARCHITECTURES,
    IN_HOUSE_ARCHITECTURES,
    OUTPUTS,
    ModelConfig,
)

# keras.applications' ResNet-50 ImageNet weights were trained on "caffe" inputs: BGR, mean-subtracted, unscaled.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
RESNET50_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET50_WEIGHTS_HOST = "storage.googleapis.com"


# ------------------------------------------------------------------------------------------------ heads

def _inputs(cfg: ModelConfig) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    image = keras.Input((cfg.img_size, cfg.img_size, 3), name="image")
    return image, layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(image)


def age_outputs(features, cfg: ModelConfig, prefix: str = "age") -> dict:
    """`age` in years; with a distribution head also `age_dist`. The expectation is a frozen Dense layer whose
    kernel holds the bin ages, so the model stays Lambda-free and serialisable."""
    if cfg.age_head == "regression":
        return {"age": layers.Dense(1, dtype="float32", name="age")(features)}
    dist = layers.Dense(AGE_BINS, activation="softmax", dtype="float32", name="age_dist")(features)
    expectation = layers.Dense(1, use_bias=False, trainable=False, dtype="float32", name="age")
    age = expectation(dist)
    expectation.set_weights([np.arange(AGE_BINS, dtype="float32").reshape(-1, 1)])
    return {"age": age, "age_dist": dist}


def _classification_outputs(gender_features, race_features) -> dict:
    return {
        "gender": layers.Dense(1, activation="sigmoid", dtype="float32", name="gender")(gender_features),
        "race": layers.Dense(5, activation="softmax", dtype="float32", name="race")(race_features),
    }


def _model(image, outputs: dict, name: str) -> keras.Model:
    ordered = {key: outputs[key] for key in (*OUTPUTS, "age_dist") if key in outputs}
    return keras.Model(image, ordered, name=name)


# --------------------------------------------------------------------------------------------- builders

def build_custom_cnn(cfg: ModelConfig) -> keras.Model:
    """The reference architecture, exactly: 3 × (Conv 3×3 → ReLU → BN → MaxPool), Flatten, Dense 512 + Dropout
    0.5, Dense 256 + Dropout 0.3, three heads."""
    image, x = _inputs(cfg)
    for i, filters in enumerate((32, 64, 128)):
        x = layers.Conv2D(filters, 3, activation="relu", padding="same", name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(512, activation="relu", name="fc1")(x)
    x = layers.Dropout(0.5, name="drop1")(x)
    x = layers.Dense(256, activation="relu", name="fc2")(x)
    x = layers.Dropout(0.3, name="drop2")(x)
    return _model(image, {**age_outputs(x, cfg), **_classification_outputs(x, x)}, "custom_cnn")


def _conv_bn(x, filters: int, name: str, l2: float, strides: int = 1):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                      kernel_regularizer=regularizers.L2(l2), name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_multitask_cnn(cfg: ModelConfig) -> keras.Model:
    """A shared trunk learns generic face features; each head gets its own conv + dense branch so age, gender
    and race can specialise instead of fighting over one representation."""
    image, x = _inputs(cfg)
    w = cfg.width
    for i, filters in enumerate((w, 2 * w, 4 * w)):
        x = _conv_bn(x, filters, f"trunk{i + 1}", cfg.l2)
        x = layers.MaxPooling2D(2, name=f"trunk{i + 1}_pool")(x)

    def branch(head: str, units: int):
        b = _conv_bn(x, 4 * w, f"{head}_branch1", cfg.l2)
        b = _conv_bn(b, 8 * w, f"{head}_branch2", cfg.l2, strides=2)
        b = layers.GlobalAveragePooling2D(name=f"{head}_gap")(b)
        b = layers.Dense(units, activation="relu", kernel_regularizer=regularizers.L2(cfg.l2), name=f"{head}_fc")(b)
        return layers.Dropout(cfg.dropout, name=f"{head}_drop")(b)

    outputs = {**age_outputs(branch("age", 8 * w), cfg),
               **_classification_outputs(branch("gender", 4 * w), branch("race", 4 * w))}
    return _model(image, outputs, "multitask_cnn")


def _residual_block(x, filters: int, name: str, l2: float, strides: int = 1):
    shortcut = x
    y = _conv_bn(x, filters, f"{name}_a", l2, strides)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=regularizers.L2(l2),
                      name=f"{name}_b_conv")(y)
    y = layers.BatchNormalization(name=f"{name}_b_bn")(y)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(shortcut)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def build_residual_cnn(cfg: ModelConfig) -> keras.Model:
    """The shipped model's trunk: a small ResNet (2 blocks per stage, 4 stages) trained from scratch. Sized for
    a 2-core CPU: ~3M parameters with width 32 at 96 px."""
    image, x = _inputs(cfg)
    w = cfg.width
    x = _conv_bn(x, w, "stem1", cfg.l2, strides=2)
    x = _conv_bn(x, w, "stem2", cfg.l2)
    for stage, filters in enumerate((w, 2 * w, 4 * w, 8 * w)):
        for block in range(2):
            strides = 2 if block == 0 and stage > 0 else 1
            x = _residual_block(x, filters, f"stage{stage + 1}_block{block + 1}", cfg.l2, strides)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(cfg.dropout, name="drop")(x)

    def head(name: str, units: int):
        return layers.Dense(units, activation="relu", kernel_regularizer=regularizers.L2(cfg.l2), name=name)(x)

    outputs = {**age_outputs(head("age_fc", 256), cfg),
               **_classification_outputs(head("gender_fc", 64), head("race_fc", 128))}
    return _model(image, outputs, "residual_cnn")


def _keras_home() -> Path:
    """Where keras.utils.get_file caches downloads ($KERAS_HOME, else ~/.keras); Keras keeps its own accessor
    private."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def imagenet_weights_note(title: str = "ResNet-50", weights_file: str = RESNET50_WEIGHTS_FILE,
                          timeout: float = 3.0) -> str | None:
    """None when a backbone's ImageNet weights are cached or downloadable, else a sentence for the user. A
    short connection probe first: an offline machine must not hang on a download that never starts."""
    if (_keras_home() / "models" / weights_file).is_file():
        return None
    try:
        socket.create_connection((RESNET50_WEIGHTS_HOST, 443), timeout=timeout).close()
        return None
    except OSError:
        return (f"ImageNet weights for {title} cannot be downloaded here (no internet): it starts from random "
                "weights, so expect it to need far more data and epochs than a pretrained backbone.")


def resnet50_weights_note(timeout: float = 3.0) -> str | None:
    return imagenet_weights_note("ResNet-50", RESNET50_WEIGHTS_FILE, timeout)


def _imagenet_preprocess(image):
    """RGB 0–255 → the caffe-style input the ImageNet weights expect, as a frozen 1×1 convolution (kernel
    swaps R and B, bias subtracts the mean): exact, and serialisable without a Lambda layer."""
    layer = layers.Conv2D(3, 1, trainable=False, name="imagenet_preprocess")
    x = layer(image)
    layer.set_weights([np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3),
                       -np.asarray(IMAGENET_BGR_MEAN, dtype="float32")])
    return x


def _resnet50_backbone(cfg: ModelConfig) -> tuple[keras.Model, bool, str | None]:
    """(backbone, pretrained, note). Falls back to random init when the weights cannot be had."""
    shape = (cfg.img_size, cfg.img_size, 3)
    if not cfg.imagenet:
        return (keras.applications.ResNet50(include_top=False, weights=None, input_shape=shape,
                                            name="resnet50_backbone"),
                False, "ResNet-50 built without ImageNet weights (random init), as configured.")
    note = resnet50_weights_note()
    if note is None:
        try:
            return (keras.applications.ResNet50(include_top=False, weights="imagenet", input_shape=shape,
                                                name="resnet50_backbone"), True, None)
        except Exception as error:  # blocked or corrupt download: keep going, but say so
            note = (f"ImageNet weights for ResNet-50 could not be loaded ({type(error).__name__}): it starts "
                    "from random weights, so expect it to need far more data and epochs.")
    return (keras.applications.ResNet50(include_top=False, weights=None, input_shape=shape,
                                        name="resnet50_backbone"), False, note)


def build_resnet50(cfg: ModelConfig) -> tuple[keras.Model, str | None]:
    """ResNet-50 backbone with our heads. Returns (model, note); the note explains a fallback to random init."""
    image = keras.Input((cfg.img_size, cfg.img_size, 3), name="image")
    backbone, pretrained, note = _resnet50_backbone(cfg)
    # Pretrained BatchNorm statistics must survive fine-tuning on small batches (the Keras transfer-learning
    # recipe), so they run in inference mode; a randomly initialised backbone needs them to learn.
    x = backbone(_imagenet_preprocess(image), training=False) if pretrained else backbone(_imagenet_preprocess(image))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(cfg.dropout, name="drop")(x)
    outputs = {**age_outputs(x, cfg), **_classification_outputs(x, x)}
    return _model(image, outputs, "resnet50"), note


def build_model(cfg: ModelConfig) -> tuple[keras.Model, str | None]:
    """Build any architecture by name. Returns (model, note) where note is a message for the user or None."""
    from core import reference_builders  # it builds on this module's heads and preprocessing
    builders = {"custom_cnn": build_custom_cnn, "multitask_cnn": build_multitask_cnn,
                "residual_cnn": build_residual_cnn}
    cfg.validate()
    if cfg.arch == "resnet50":
        return build_resnet50(cfg)
    if cfg.arch in reference_builders.BUILDERS:
        return reference_builders.BUILDERS[cfg.arch](cfg)
    return builders[cfg.arch](cfg), None


def backbone_layer(model: keras.Model) -> keras.Layer | None:
    """The nested ResNet-50 backbone, if any (frozen for the first epochs of fine-tuning)."""
    try:
        return model.get_layer("resnet50_backbone")
    except ValueError:
        return None


def model_space(model: keras.Model):
    """The label space (core/label_spaces.py) a built or loaded model's heads speak, or None."""
    from core.label_spaces import space_of_outputs
    return space_of_outputs({name: tuple(t.shape) for name, t in zip(model.output_names, model.outputs, strict=True)})
