"""Saliency maps (core.saliency): every architecture and head, correctness on a toy model that only sees one half
of the image, layer choice and overrides, and `python -m core saliency`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core import saliency, settings
from core.__main__ import main
from core.labels import RACES
from core.models import IN_HOUSE_ARCHITECTURES as ARCHITECTURES
from core.models import ModelConfig, build_model
from core.saliency import CAM_METHODS, HEADS, METHODS, Explainer, SaliencyError
from tests.support import noise_crop

FAST_SCORECAM = 8  # Score-CAM channels in tests: the method is the same, the model runs 8 times instead of 32


@pytest.fixture(scope="module")
def explainers(tiny_models) -> dict[str, Explainer]:
    from core.registry import load_model
    return {arch: Explainer(load_model(path, allow_anywhere=True)) for arch, path in tiny_models.items()}


def toy_model(seen: str, size: int = 32):
    """Outputs computed from one half of the image only: the other half is cropped away and zero-padded back
    before the first convolution, so it cannot reach any output. Positive head weights make every target's
    evidence positive, so Grad-CAM's ReLU keeps it."""
    import keras
    from keras import layers
    half = size // 2
    keep = ((0, 0), (0, half)) if seen == "left" else ((0, 0), (half, 0))
    image = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(image)
    x = layers.ZeroPadding2D(keep)(layers.Cropping2D(keep)(x))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv",
                      kernel_initializer=keras.initializers.RandomNormal(seed=1))(x)
    x = layers.GlobalAveragePooling2D()(x)
    positive = keras.initializers.Constant(0.5)
    outputs = {"age": layers.Dense(1, kernel_initializer=positive, name="age")(x),
               "gender": layers.Dense(1, activation="sigmoid", kernel_initializer=positive, name="gender")(x),
               "race": layers.Dense(5, activation="softmax", kernel_initializer=positive, name="race")(x)}
    return keras.Model(image, outputs)


def mass_fraction(heatmap: np.ndarray, seen: str) -> float:
    half = heatmap.shape[1] // 2
    part = heatmap[:, :half] if seen == "left" else heatmap[:, half:]
    return float(part.sum() / heatmap.sum())


# ------------------------------------------------------------------------------------------ every model

@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_gets_a_map_for_every_head_and_method(explainers, arch):
    explainer = explainers[arch]
    crop = noise_crop()
    for head in HEADS:
        for method in METHODS:
            result = explainer.explain(crop, head, method, max_n=FAST_SCORECAM)
            heatmap = result.heatmap
            where = f"{arch}/{head}/{method}"
            assert heatmap.shape == (32, 32) and heatmap.dtype == np.float32, where
            assert np.isfinite(heatmap).all() and heatmap.min() >= 0 and heatmap.max() <= 1, where
            if method in CAM_METHODS:
                assert result.layer == explainer.default_layer(head), where
                # An untrained network may have no positive evidence at all: then the map is honestly blank.
                assert heatmap.std() > 0.01 or result.empty, where
            else:
                assert result.layer is None and heatmap.std() > 0.01 and heatmap.max() == 1.0, where
            assert result.seconds > 0


def test_default_layers_follow_each_architecture(explainers):
    assert explainers["custom_cnn"].default_layer("age") == "conv3"
    for head in HEADS:  # each multitask head is explained on its own branch, not the shared trunk
        assert explainers["multitask_cnn"].default_layer(head).startswith(f"{head}_branch")
    # At 32 px the last stage is 2×2 (too coarse), so the stage before it is used.
    assert explainers["residual_cnn"].default_layer("race") == "stage3_block2_out"
    assert explainers["resnet50"].default_layer("gender") == "conv3_block4_out"  # inside the nested backbone


def test_deepest_stage_is_used_when_it_is_fine_enough():
    model, _ = build_model(ModelConfig.tiny("residual_cnn", img_size=64))
    assert Explainer(model).default_layer("age") == "stage4_block2_out"  # 4×4 at 64 px


def test_explaining_leaves_the_callers_model_unchanged(explainers):
    model = explainers["custom_cnn"].model
    crop = noise_crop(seed=3)[None].astype(np.float32)
    before = {k: np.asarray(v) for k, v in model(crop).items()}
    for method in ("saliency", "gradcam", "scorecam"):
        explainers["custom_cnn"].explain(crop[0], "race", method, max_n=FAST_SCORECAM)
    after = {k: np.asarray(v) for k, v in model(crop).items()}
    assert 0 < after["gender"][0, 0] < 1 and abs(after["race"].sum() - 1) < 1e-5  # still probabilities
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


# ------------------------------------------------------------------------------------------ correctness

@pytest.mark.parametrize("seen", ["left", "right"])
@pytest.mark.parametrize("method", METHODS)
def test_maps_put_their_mass_on_the_half_the_output_sees(seen, method):
    explainer = Explainer(toy_model(seen))
    for head in HEADS:
        result = explainer.explain(noise_crop(seed=7), head, method, max_n=FAST_SCORECAM)
        assert explainer.default_layer(head) == "conv" or method not in CAM_METHODS
        assert mass_fraction(result.heatmap, seen) > 0.85, f"{method}/{head}: {mass_fraction(result.heatmap, seen)}"


# ---------------------------------------------------------------------------------------------- targets

def test_race_map_explains_the_predicted_class_unless_one_is_chosen(explainers):
    explainer, crop = explainers["residual_cnn"], noise_crop(seed=1)
    prediction = explainer.predict(crop)
    predicted = explainer.explain(crop, "race", "saliency")
    assert predicted.target.startswith(prediction.race)
    other = next(race for race in RACES if race != prediction.race)
    chosen = explainer.explain(crop, "race", "saliency", race_class=other.lower())
    assert chosen.target.startswith(other)
    assert not np.allclose(predicted.heatmap, chosen.heatmap)
    assert explainer.explain(crop, "race", "saliency", race_class=RACES.index(other)).target == chosen.target


def test_gender_map_names_the_predicted_gender(explainers):
    explainer, crop = explainers["custom_cnn"], noise_crop(seed=2)
    prediction = explainer.predict(crop)
    assert explainer.explain(crop, "gender", "gradcam").target.startswith(prediction.gender)


def test_age_target_is_the_predicted_age(explainers):
    explainer, crop = explainers["residual_cnn"], noise_crop(seed=4)
    assert explainer.explain(crop, "age", "saliency").target == f"{explainer.predict(crop).age:.1f} y"


# ----------------------------------------------------------------------------------------------- layers

def test_a_layer_inside_the_resnet50_backbone_can_be_chosen(explainers):
    result = explainers["resnet50"].explain(noise_crop(), "age", "gradcam++", layer="conv2_block3_out")
    assert result.layer == "conv2_block3_out" and result.heatmap.shape == (32, 32)
    assert np.isfinite(result.heatmap).all()


@pytest.mark.parametrize(("arch", "head", "layer", "message"), [
    ("resnet50", "age", "no_such_layer", "No feature map named"),
    ("resnet50", "age", "conv4_block6_3_conv", "cannot be isolated"),  # an Add needs the block's shortcut too
    ("multitask_cnn", "race", "gender_branch1_relu", "No feature map named"),  # another head's branch
])
def test_unusable_layers_are_refused_with_a_reason(explainers, arch, head, layer, message):
    with pytest.raises(SaliencyError, match=message):
        explainers[arch].explain(noise_crop(), head, "gradcam", layer=layer)


def test_layer_choices_are_shared_by_all_chosen_heads(explainers):
    explainer = explainers["multitask_cnn"]
    common = explainer.cam_layers(["gender", "race"])
    assert "trunk3_relu" in common and not any("branch" in name for name in common)
    assert "gender_branch2_relu" in explainer.cam_layers(["gender"])
    assert explainer.cam_layers(["age"])[-1] == "age_branch2_relu"  # input side first


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"head": "emotion"}, "Unknown head"),
    ({"method": "lime"}, "Unknown method"),
    ({"head": "race", "race_class": 7}, "out of range"),
    ({"head": "race", "race_class": "Martian"}, "Unknown race class"),
])
def test_bad_requests_raise_saliency_error(explainers, kwargs, message):
    request = {"head": "age", "method": "saliency", **kwargs}
    with pytest.raises(SaliencyError, match=message):
        explainers["custom_cnn"].explain(noise_crop(), **request)


def test_a_model_without_our_heads_is_refused():
    import keras
    image = keras.Input((32, 32, 3))
    with pytest.raises(SaliencyError, match=r"its outputs score \(1\) match no label space"):
        Explainer(keras.Model(image, keras.layers.Dense(1, name="score")(keras.layers.Flatten()(image))))


def test_normalise_is_finite_and_blank_for_flat_maps():
    assert not saliency.normalise(np.full((4, 4), 3.0)).any()
    values = saliency.normalise(np.array([[np.nan, 1.0], [2.0, np.inf]]))
    assert np.isfinite(values).all() and values.max() == 1.0 and values.min() == 0.0


# -------------------------------------------------------------------------------------------------- CLI

def test_cli_writes_a_png(tiny_models, tmp_path, capsys):
    image = sorted(settings.SAMPLE_DIR.glob("*.jpg"))[5]
    out = tmp_path / "map.png"
    code = main(["saliency", str(image), "--head", "race", "--method", "gradcam", "--out", str(out),
                 "--model", str(tiny_models["multitask_cnn"]), "--layer", "race_branch1_relu"])
    assert code == 0
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size[0] > 200
    printed = capsys.readouterr().out
    assert "Grad-CAM" in printed and "race_branch1_relu" in printed and str(out) in printed


def test_cli_reports_errors_without_a_traceback(tiny_models, tmp_path, capsys):
    image = sorted(settings.SAMPLE_DIR.glob("*.jpg"))[0]
    out = tmp_path / "map.png"
    assert main(["saliency", str(image), "--method", "gradcam", "--out", str(out),
                 "--model", str(tiny_models["custom_cnn"]), "--layer", "nope"]) == 2
    assert "error: No feature map named 'nope'" in capsys.readouterr().err and not out.exists()
    assert main(["saliency", str(tmp_path / "missing.jpg"), "--out", str(out),
                 "--model", str(tiny_models["custom_cnn"])]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_module_imports_without_tensorflow():
    """The server imports core.saliency for its constants and errors, and the modules that draw the maps and cut the
    face; TensorFlow lives in the saliency worker."""
    import subprocess
    import sys

    from tests.support import PROJECT_ROOT
    code = ("import sys, core.saliency, core.saliency_figures, core.saliency_faces; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf_keras_vis') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


# ------------------------------------------------------------------------------ models of other label spaces

@pytest.mark.parametrize(("arch", "heads"), [("fairface_cnn", ("age_group", "gender", "race")),
                                             ("levi_hassner", ("age_group", "gender"))])
def test_a_group_head_model_explains_its_own_heads(arch, heads):
    model, _ = build_model(ModelConfig.tiny(arch))
    explainer = Explainer(model)
    assert explainer.heads == heads
    crop = noise_crop()
    prediction = explainer.predict(crop)
    for head in heads:
        for method in ("saliency", "gradcam"):
            result = explainer.explain(crop, head, method, prediction=prediction)
            assert result.heatmap.shape == (32, 32) and np.isfinite(result.heatmap).all()
    group = explainer.explain(crop, "age_group", "saliency", prediction=prediction)
    assert group.target.startswith(prediction.age_group)
    with pytest.raises(SaliencyError, match="Unknown head 'age'"):
        explainer.explain(crop, "age", "saliency")
    if "race" in heads:  # a race-7 model explains any of its own seven races by name
        assert explainer.explain(crop, "race", "saliency", "Southeast Asian").target.startswith("Southeast Asian")
