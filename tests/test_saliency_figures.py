"""Saliency figures (core.saliency_figures): a heatmap over its crop by opacity, and the grid of heads × methods
with its titles, drawn from maps built by hand (no model needed)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core import saliency_figures
from core.labels import RACES
from core.predict import FacePrediction
from core.saliency import SaliencyError, SaliencyMap
from tests.support import noise_crop


def test_overlay_blends_crop_and_colormap_by_opacity():
    from matplotlib import colormaps
    crop = noise_crop()
    heatmap = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    np.testing.assert_array_equal(saliency_figures.overlay(crop, heatmap, alpha=0.0), crop)
    colours = (colormaps["jet"](heatmap)[..., :3] * 255).astype(np.uint8)
    assert np.abs(saliency_figures.overlay(crop, heatmap, alpha=1.0).astype(int) - colours).max() <= 1
    half = saliency_figures.overlay(crop, heatmap, alpha=0.5).astype(int)
    assert np.abs(half - (crop.astype(int) + colours) / 2).max() <= 1
    with pytest.raises(SaliencyError, match="Opacity"):
        saliency_figures.overlay(crop, heatmap, alpha=1.5)


def _map(method: str, head: str, target: str) -> SaliencyMap:
    heatmap = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    return SaliencyMap(method, head, target, heatmap, 0.25, None if method == "saliency" else "conv3")


def test_figure_has_a_row_per_head_and_a_column_per_method():
    crop = noise_crop()
    prediction = FacePrediction(34.2, 3.0, 0.92, {race: 0.71 if race == "Asian" else 0.0725 for race in RACES})
    targets = {"age": "34.2 y", "race": "Asian (71%)"}
    maps = [_map(method, head, targets[head]) for head in ("age", "race") for method in ("saliency", "gradcam")]
    fig = saliency_figures.figure(crop, maps, prediction, alpha=0.4)
    assert len(fig.axes) == 2 * 3
    assert fig._suptitle.get_text() == saliency_figures.prediction_text(prediction) == \
        "Prediction: 34 y, female 92%, Asian 71%"
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "age: 34.2 y" and titles[3] == "race: Asian (71%)"
    assert titles[1] == "Saliency (0.25 s)" and titles[5] == "Grad-CAM (0.25 s)"
    png = saliency_figures.figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(io.BytesIO(png)).size[0] > 300


def test_no_maps_is_an_error():
    with pytest.raises(SaliencyError, match="No saliency maps"):
        saliency_figures.figure(noise_crop(), [])


def test_a_blank_map_is_labelled_as_such():
    blank = SaliencyMap("gradcam", "age", "30.0 y", np.zeros((32, 32), np.float32), 0.1, "conv3")
    fine = SaliencyMap("gradcam", "race", "Asian (50%)", np.eye(32, dtype=np.float32), 0.1, "conv3")
    assert blank.empty and not fine.empty
    titles = [ax.get_title() for ax in saliency_figures.figure(noise_crop(), [blank, fine]).axes]
    assert "blank" in titles[1] and "blank" not in titles[3]
