"""Saliency maps drawn for people: a heatmap laid over its crop, and the grid of every head and method that the
Saliency page and `python -m core saliency` show. Matplotlib without pyplot, so it is safe in Streamlit's threads;
no TensorFlow (the maps come from the saliency worker).
"""

from __future__ import annotations

import io

import numpy as np

from core.saliency import SaliencyError, SaliencyMap, as_crop

DEFAULT_ALPHA = 0.5  # heatmap opacity: the crop stays recognisable under the colours


def overlay(crop: np.ndarray, heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA, cmap: str = "jet") -> np.ndarray:
    """The heatmap in colour laid over the crop with opacity `alpha` (0: crop only, 1: heatmap only)."""
    from matplotlib import colormaps
    if not 0.0 <= alpha <= 1.0:
        raise SaliencyError(f"Opacity must be between 0 and 1, not {alpha}.")
    crop = as_crop(crop, heatmap.shape[0])
    colours = colormaps[cmap](np.clip(heatmap, 0.0, 1.0))[..., :3] * 255.0
    return np.clip((1.0 - alpha) * crop + alpha * colours, 0, 255).astype(np.uint8)


def prediction_text(prediction) -> str:
    """In the model's own space: years or its most likely age group, and its race if it has a race head."""
    age = f"{prediction.age:.0f} y" if prediction.age_group is None else f"age {prediction.age_group}"
    race = f", {prediction.race} {prediction.race_probs[prediction.race]:.0%}" if prediction.race else ""
    return f"Prediction: {age}, {prediction.gender} {prediction.gender_prob:.0%}{race}"


def figure(crop: np.ndarray, maps: list[SaliencyMap], prediction=None, alpha: float = DEFAULT_ALPHA, cmap: str = "jet"):
    """A grid: one row per head (the crop, then one overlay per method), titled with the prediction. A
    matplotlib Figure built without pyplot, so it is safe in Streamlit's threads."""
    from matplotlib.figure import Figure
    if not maps:
        raise SaliencyError("No saliency maps to draw.")
    heads = list(dict.fromkeys(m.head for m in maps))
    methods = list(dict.fromkeys(m.method for m in maps))
    by_key = {(m.head, m.method): m for m in maps}
    cell = 2.4
    fig = Figure(figsize=(cell * (len(methods) + 1), cell * len(heads) + (0.5 if prediction else 0.1)))
    axes = fig.subplots(len(heads), len(methods) + 1, squeeze=False)
    crop = as_crop(crop, maps[0].heatmap.shape[0])
    for row, head in enumerate(heads):
        first = next(m for m in maps if m.head == head)
        axes[row, 0].imshow(crop)
        axes[row, 0].set_title(f"{head}: {first.target}", fontsize=9)
        for col, method in enumerate(methods, start=1):
            item = by_key.get((head, method))
            if item is not None:
                axes[row, col].imshow(overlay(crop, item.heatmap, alpha, cmap))
                note = "\nblank: no region raises the score" if item.empty else ""
                axes[row, col].set_title(f"{item.label} ({item.seconds:.2f} s){note}", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    if prediction is not None:
        fig.suptitle(prediction_text(prediction), fontsize=11)
    fig.tight_layout()
    return fig


def figure_png(fig, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
