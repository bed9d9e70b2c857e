"""The reference systems' models, built as their reports describe them, each in its dataset's label space
(core/label_spaces.py): VGG16 transfer (UTKFace: `age` in years, `gender`, `race`), Levi–Hassner (Adience:
`age_group` over 8 groups, `gender`) and the FairFace multi-task CNN (`age_group` over 9, `gender`, `race` over 7).

Like core/models.py's, each is a functional model with named float32 outputs and its preprocessing inside, no Lambda
layers, so it loads with safe_mode=True and its space is read back from its output names and widths. Their training
recipes (optimiser, learning rate, input size…) are core/recipes.py's.
"""

from __future__ import annotations

import keras
from keras import layers, regularizers

from core.label_spaces import SPACES, LabelSpace
from core.model_config import ModelConfig
from core.models import _imagenet_preprocess, _inputs, age_outputs, imagenet_weights_note

VGG16_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_TRAINABLE_TAIL = 3  # the report froze every backbone layer but the last three (block5_conv2, _conv3, _pool)


def group_heads(age_features, gender_features, race_features, space: LabelSpace) -> dict:
    """`age_group` (softmax over the space's groups), `gender` and, where the space has races, `race`."""
    outputs = {
        "age_group": layers.Dense(len(space.age_groups), activation="softmax", dtype="float32",
                                  name="age_group")(age_features),
        "gender": layers.Dense(1, activation="sigmoid", dtype="float32", name="gender")(gender_features),
    }
    if space.races is not None:
        outputs["race"] = layers.Dense(len(space.races), activation="softmax", dtype="float32",
                                       name="race")(race_features)
    return outputs


# ------------------------------------------------------------------------------------------------- VGG16

def _vgg16_backbone(cfg: ModelConfig) -> tuple[keras.Model, bool, str | None]:
    """(backbone, pretrained, note), falling back to random init when the weights cannot be had (as ResNet-50)."""
    def backbone(weights):
        return keras.applications.VGG16(include_top=False, weights=weights,
                                        input_shape=(cfg.img_size, cfg.img_size, 3), name="vgg16_backbone")
    if not cfg.imagenet:
        return backbone(None), False, "VGG16 built without ImageNet weights (random init), as configured."
    note = imagenet_weights_note("VGG16", VGG16_WEIGHTS_FILE)
    if note is None:
        try:
            return backbone("imagenet"), True, None
        except Exception as error:  # blocked or corrupt download: keep going, but say so
            note = (f"ImageNet weights for VGG16 could not be loaded ({type(error).__name__}): it starts from "
                    "random weights, so expect it to need far more data and epochs.")
    return backbone(None), False, note


def _dense(x, units: int, name: str, l2: float):
    return layers.Dense(units, activation="relu", kernel_regularizer=regularizers.L2(l2), name=name)(x)


def build_vgg16(cfg: ModelConfig) -> tuple[keras.Model, str | None]:
    """The coursework's VGG16 transfer model: ImageNet VGG16 without its top, all layers frozen but the last three;
    flatten; a gender branch (Dense 128 → dropout 0.3 → Dense 256 → dropout 0.5, L2, sigmoid) and an age branch
    (Dense 256 → Dense 512, each with batch norm, ReLU and dropout 0.2; a ReLU output, as ages are never negative).
    The report predicted age and gender only: the race head is a copy of the gender branch, so the model speaks
    UTKFace's whole space (train with --race-weight 0 to match the report). A randomly initialised backbone is
    not frozen: frozen random features would teach the heads nothing."""
    image = keras.Input((cfg.img_size, cfg.img_size, 3), name="image")
    backbone, pretrained, note = _vgg16_backbone(cfg)
    if pretrained:
        for layer in backbone.layers[:-VGG16_TRAINABLE_TAIL]:
            layer.trainable = False
    x = layers.Flatten(name="flatten")(backbone(_imagenet_preprocess(image)))

    def class_branch(head: str):
        b = _dense(x, 128, f"{head}_fc1", cfg.l2)
        b = layers.Dropout(0.3, name=f"{head}_drop1")(b)
        b = _dense(b, 256, f"{head}_fc2", cfg.l2)
        return layers.Dropout(0.5, name=f"{head}_drop2")(b)

    a = x
    for i, units in enumerate((256, 512), start=1):
        a = layers.Dense(units, name=f"age_fc{i}")(a)
        a = layers.BatchNormalization(name=f"age_bn{i}")(a)
        a = layers.ReLU(name=f"age_relu{i}")(a)
        a = layers.Dropout(0.2, name=f"age_drop{i}")(a)
    age = (age_outputs(a, cfg) if cfg.age_head == "distribution"
           else {"age": layers.Dense(1, activation="relu", dtype="float32", name="age")(a)})
    outputs = {**age,
               "gender": layers.Dense(1, activation="sigmoid", dtype="float32", name="gender")(class_branch("gender")),
               "race": layers.Dense(5, activation="softmax", dtype="float32", name="race")(class_branch("race"))}
    ordered = {key: outputs[key] for key in ("age", "gender", "race", "age_dist") if key in outputs}
    return keras.Model(image, ordered, name="vgg16"), note


# ------------------------------------------------------------------------------------------ Levi–Hassner

def build_levi_hassner(cfg: ModelConfig) -> tuple[keras.Model, None]:
    """Levi & Hassner's age-group CNN (CVPR 2015 workshop), at 227 × 227 in their recipe: Conv 96 7×7 stride 4 →
    max-pool 3×3 stride 2 → norm; Conv 256 5×5 → max-pool → norm; Conv 384 3×3 → max-pool; Dense 512 → dropout 0.5
    → Dense 512 → dropout 0.5 → 8-way softmax; weights N(0, 0.01). Stride 4 is their released Caffe model's (the
    issue's text says 2, which would give a 65k-wide flatten and a 33M-weight first dense layer). Two deviations,
    both forced by Keras: the pools pad "same", which gives exactly Caffe's ceil-mode sizes (56 → 28 → 14 → 7);
    and "norm" is batch normalisation, as Keras has no local response normalisation layer and a custom one would
    have to be registered before every safe-mode load. The paper trained age and gender as two networks of this
    body; here one body carries both heads, one model per run."""
    space = SPACES[cfg.label_space]
    init = keras.initializers.RandomNormal(0.0, 0.01)
    image, x = _inputs(cfg)
    for i, (filters, size, strides) in enumerate(((96, 7, 4), (256, 5, 1), (384, 3, 1)), start=1):
        x = layers.Conv2D(filters, size, strides=strides, padding="valid" if i == 1 else "same", activation="relu",
                          kernel_initializer=init, name=f"conv{i}")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{i}")(x)
        if i < 3:
            x = layers.BatchNormalization(name=f"norm{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = layers.Dense(512, activation="relu", kernel_initializer=init, name=f"fc{i}")(x)
        x = layers.Dropout(0.5, name=f"drop{i}")(x)
    return keras.Model(image, group_heads(x, x, x, space), name="levi_hassner"), None


# ---------------------------------------------------------------------------------------------- FairFace

def build_fairface_cnn(cfg: ModelConfig) -> tuple[keras.Model, None]:
    """The FairFace capstone's multi-task CNN (PyTorch originally): four blocks of conv 3×3 → batch norm → ReLU →
    max-pool, filters doubling from `width`; flatten; a shared dense layer (16 × width units) with dropout 0.5;
    heads for age (9 groups), gender and race (7)."""
    space = SPACES[cfg.label_space]
    image, x = _inputs(cfg)
    for i in range(4):
        x = layers.Conv2D(cfg.width * 2 ** i, 3, padding="same", name=f"block{i + 1}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i + 1}_bn")(x)
        x = layers.ReLU(name=f"block{i + 1}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = _dense(x, 16 * cfg.width, "shared_fc", cfg.l2)
    x = layers.Dropout(0.5, name="shared_drop")(x)
    return keras.Model(image, group_heads(x, x, x, space), name="fairface_cnn"), None


BUILDERS = {"vgg16": build_vgg16, "levi_hassner": build_levi_hassner, "fairface_cnn": build_fairface_cnn}
