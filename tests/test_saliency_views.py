"""The view models tf-keras-vis explains (core.saliency_views): one head with a linear output on a copy of its
layer, and a feature map inside a nested backbone turned into a top-level tap."""

from __future__ import annotations

import numpy as np
import pytest

from core.saliency import SaliencyError
from core.saliency_views import CAM_TAP, feature_maps, flattened_view, linear_view
from tests.support import noise_crop


@pytest.fixture(scope="module")
def models(tiny_models) -> dict:
    from core.registry import load_model
    return {arch: load_model(tiny_models[arch], allow_anywhere=True) for arch in ("custom_cnn", "resnet50")}


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def test_a_linear_view_gives_the_logits_and_leaves_the_model_predicting_probabilities(models):
    model, x = models["custom_cnn"], noise_crop(seed=3)[None].astype(np.float32)
    before = np.asarray(model(x)["race"])
    logits = np.asarray(linear_view(model, "race")(x))
    np.testing.assert_allclose(_softmax(logits), before, atol=1e-5)
    assert abs(logits.sum() - 1) > 1e-3  # not probabilities
    np.testing.assert_array_equal(np.asarray(model(x)["race"]), before)


def test_a_map_inside_the_backbone_becomes_a_top_level_tap(models):
    view = linear_view(models["resnet50"], "age")
    layer, owner = next((layer, owner) for layer, owner in feature_maps(view) if layer.name == "conv2_block3_out")
    assert owner is not None  # listed in place of the nested backbone
    flat, tap = flattened_view(view, owner, layer)
    x = noise_crop(seed=1)[None].astype(np.float32)
    assert tap.name == CAM_TAP and tap in flat.layers
    np.testing.assert_allclose(np.asarray(flat(x)), np.asarray(view(x)), rtol=1e-4, atol=1e-4)


def test_a_map_that_a_skip_connection_jumps_cannot_be_isolated(models):
    view = linear_view(models["resnet50"], "age")
    layer, owner = next((layer, owner) for layer, owner in feature_maps(view) if layer.name == "conv4_block6_3_conv")
    with pytest.raises(SaliencyError, match="cannot be isolated"):
        flattened_view(view, owner, layer)
