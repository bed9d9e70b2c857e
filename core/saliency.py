"""Saliency maps: which pixels of a face crop drive one head's prediction, computed with tf-keras-vis.

Methods: vanilla Saliency and SmoothGrad (input gradients), Grad-CAM, Grad-CAM++ and Score-CAM (a convolutional
feature map, weighted by gradients or by how the head scores the image masked by each channel). Every map is
returned at the model's input size, normalised to [0, 1].

What is explained, per head: `age` — the predicted age in years; `gender` — the logit of the predicted gender
(its sign flipped for "male"), `race` — the logit of one class (the predicted one unless chosen). Logits rather
than probabilities, because a saturated sigmoid/softmax has vanishing gradients: the sigmoid/softmax output
layers are switched to linear with tf-keras-vis' ReplaceToLinear, on a private copy of the output layer so the
caller's model keeps predicting probabilities.

Our models output a dict; tf-keras-vis wants one score per model output, so each head is explained on a
single-output "view" model (core/saliency_views.py, which also places CAM taps inside nested backbones). Score-CAM
applies a softmax to the model output before scoring, which turns any one-unit output (age, gender) into a constant
1: its view ends in a two-logit adapter whose softmax carries the head's value.

TensorFlow, Keras and tf-keras-vis are imported lazily, inside the Explainer's methods: the Streamlit server imports
this module for its constants and errors and never imports TensorFlow; the Explainer itself runs in the saliency
worker process (core/workers.py). The figures are drawn by core/saliency_figures.py, the face to explain is cut by
core/saliency_faces.py.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from core.errors import UserError
from core.labels import RACES
from core.saliency_views import feature_maps, flattened_view, is_rectified, linear_view, map_side

METHODS = ("saliency", "smoothgrad", "gradcam", "gradcam++", "scorecam")
METHOD_LABELS = {"saliency": "Saliency", "smoothgrad": "SmoothGrad", "gradcam": "Grad-CAM",
                 "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM"}
CAM_METHODS = ("gradcam", "gradcam++", "scorecam")
HEADS = ("age", "gender", "race")  # a UTKFace-space model's; a group-head model has age_group for age (heads_for)
ALL_HEADS = ("age", "age_group", "gender", "race")

MIN_CAM_SIDE = 4  # a coarser feature map (ResNet-50's last stage below 128 px) says little more than "the face"
SMOOTH_SAMPLES = 20  # SmoothGrad's usual setting: enough noisy copies for a stable average
SMOOTH_NOISE = 0.2  # noise sigma as a fraction of the crop's value range (the tf-keras-vis default)
SCORECAM_MAX_N = 32  # Faster Score-CAM: only the channels with the most varied activations; None = all
AGE_LOGIT_SCALE = 4.0  # Score-CAM adapter: age/4 keeps exp(-logit) inside float32 for any age up to ~300


class SaliencyError(UserError):
    """A saliency request that cannot be served (unknown head/method/layer, unusable model); says why."""


@dataclass(frozen=True)
class SaliencyMap:
    method: str
    head: str
    target: str  # what the map explains, e.g. "34.2 y", "female (92%)", "Asian (71%)"
    heatmap: np.ndarray  # (size, size) float32 in [0, 1]
    seconds: float
    layer: str | None = None  # the feature map used by CAM methods

    @property
    def label(self) -> str:
        return METHOD_LABELS[self.method]

    def as_row(self) -> dict:
        return {"head": self.head, "method": self.label, "explains": self.target, "layer": self.layer or "input",
                "seconds": round(self.seconds, 3)}

    @property
    def empty(self) -> bool:
        """True when nothing stands out: typically a CAM whose positive part is zero everywhere (no region raises
        the score at that layer)."""
        return float(self.heatmap.max()) <= 0.0


def heads_for(space) -> tuple[str, ...]:
    """The heads a model of this label space (core/label_spaces.py) has, to explain: its age, gender, its race."""
    return ("age" if space.age_in_years else "age_group", "gender", *(("race",) if space.races else ()))


def race_index(race_class: int | str | None, races: tuple[str, ...] = RACES) -> int | None:
    """A race class given as index or name (case-insensitive) → index; None stays None."""
    if race_class is None or isinstance(race_class, (int, np.integer)):
        if race_class is not None and not 0 <= int(race_class) < len(races):
            raise SaliencyError(f"Race class {race_class} is out of range 0..{len(races) - 1}.")
        return None if race_class is None else int(race_class)
    names = {name.lower(): i for i, name in enumerate(races)}
    if race_class.lower() not in names:
        raise SaliencyError(f"Unknown race class {race_class!r}; choose one of {', '.join(races)}.")
    return names[race_class.lower()]


def normalise(heatmap: np.ndarray) -> np.ndarray:
    """Finite, float32, rescaled to [0, 1]; a flat map becomes all zeros (nothing stands out)."""
    heatmap = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(heatmap.min()), float(heatmap.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return np.zeros_like(heatmap)
    return (heatmap - low) / (high - low)


def as_crop(image, size: int) -> np.ndarray:
    """Any RGB crop (array or PIL image, any size) as a (size, size, 3) uint8 array, as the model sees it."""
    from PIL import Image
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise SaliencyError(f"Expected an RGB image, got an array of shape {array.shape}.")
    array = np.clip(array[..., :3], 0, 255).astype(np.uint8)
    if array.shape[:2] != (size, size):
        array = np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return array


# ------------------------------------------------------------------------------------------ the explainer

class Explainer:
    """Saliency maps for one loaded model (used read-only). Keep one per model (the page caches it): the view
    models it builds per head and layer are kept. Calls are serialised by a lock: Keras graph building is not
    thread-safe."""

    def __init__(self, model):
        from core.predict import KerasPredictor
        from core.registry import ModelError
        try:
            self._predictor = KerasPredictor(model, flip_tta=False)  # the maps explain one plain forward pass
        except ModelError as error:  # outputs of no label space
            raise SaliencyError(str(error)) from error
        self.space = self._predictor.space
        self.heads = heads_for(self.space)
        self.model = model
        self.img_size = int(model.input_shape[1])
        self._lock = threading.RLock()
        self._built: dict[tuple, object] = {}  # views per (kind, head, layer): graph building is the slow part

    def _memo(self, key: tuple, build):
        with self._lock:
            if key not in self._built:
                self._built[key] = build()
            return self._built[key]

    # ---- predictions and targets

    def predict(self, crop):
        """The single-pass prediction (no flip averaging) that the maps explain."""
        return self._predictor.predict(as_crop(crop, self.img_size)[None])[0]

    def target(self, head: str, prediction, race_class: int | str | None = None) -> tuple[int, str]:
        """(class index or sign, label) of what a map for `head` explains, given the prediction."""
        self._check_head(head)
        if head == "age":
            return 0, f"{prediction.age:.1f} y"
        if head == "gender":
            female = prediction.female_prob >= 0.5
            return (1 if female else -1), f"{prediction.gender} ({prediction.gender_prob:.0%})"
        if head == "age_group":  # the predicted group, as race explains the predicted race
            groups = self.space.age_groups
            index = groups.index(prediction.age_group)
            return index, f"{groups[index]} ({prediction.age_group_probs[groups[index]]:.0%})"
        races = self.space.races
        index = race_index(race_class, races)
        index = races.index(prediction.race) if index is None else index
        return index, f"{races[index]} ({prediction.race_probs[races[index]]:.0%})"

    def _check_head(self, head: str) -> None:
        if head not in self.heads:
            raise SaliencyError(f"Unknown head {head!r} for this model; choose one of {', '.join(self.heads)}.")

    # ---- layers

    def cam_layers(self, heads: Iterable[str] | None = None) -> list[str]:
        """Rectified feature maps upstream of every given head, input side first: the choices for a CAM layer."""
        per_head = [[layer.name for layer, _ in feature_maps(self._view(head)) if is_rectified(layer)]
                    for head in (self.heads if heads is None else heads)]
        return [name for name in per_head[0] if all(name in names for names in per_head[1:])] if per_head else []

    def default_layer(self, head: str) -> str:
        """The deepest rectified feature map of at least MIN_CAM_SIDE² cells on the head's own path. Deepest,
        because Grad-CAM's class-discriminative signal lives there; on its own path, so multitask_cnn's heads
        each use their branch; not too coarse, so the map still localises."""
        maps = [layer for layer, _ in feature_maps(self._view(head)) if is_rectified(layer)]
        if not maps:
            raise SaliencyError(f"The {head} head has no convolutional feature map to compute a CAM on.")
        fine = [layer for layer in maps if map_side(layer) >= MIN_CAM_SIDE]
        return (fine[-1] if fine else max(maps, key=map_side)).name

    # ---- maps

    def explain(self, crop, head: str, method: str, race_class: int | str | None = None, layer: str | None = None,
                max_n: int | None = SCORECAM_MAX_N, prediction=None, seed: int = 0) -> SaliencyMap:
        """One map for one head and method. `layer` overrides the CAM layer, `max_n` the Score-CAM channel count
        (None or 0: every channel, the original Score-CAM)."""
        self._check_head(head)
        if method not in METHODS:
            raise SaliencyError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
        crop = as_crop(crop, self.img_size)
        prediction = self.predict(crop) if prediction is None else prediction
        index, label = self.target(head, prediction, race_class)
        x = crop[None].astype(np.float32)
        with self._lock:
            start = time.perf_counter()
            if method in CAM_METHODS:
                layer = layer or self.default_layer(head)
                heatmap = self._cam(method, x, head, index, layer, max_n)
            else:
                layer = None
                heatmap = self._input_gradients(method, x, head, index, seed)
            seconds = time.perf_counter() - start
        return SaliencyMap(method, head, label, _at_size(normalise(heatmap), self.img_size), seconds, layer)

    # ---- internals

    def _view(self, head: str):
        return self._memo(("view", head), lambda: linear_view(self.model, head))

    def _cam_view(self, head: str, layer_name: str):
        """(view model, tap layer) with the feature map `layer_name` reachable as a top-level layer's output."""
        return self._memo(("cam", head, layer_name), lambda: self._build_cam_view(head, layer_name))

    def _build_cam_view(self, head: str, layer_name: str):
        view = self._view(head)
        found = [(layer, owner) for layer, owner in feature_maps(view) if layer.name == layer_name]
        if not found:
            choices = ", ".join(self.cam_layers([head])[-6:])
            raise SaliencyError(f"No feature map named {layer_name!r} leads to the {head} output; "
                                f"deep ones are: {choices}.")
        layer, owner = found[0]
        return (view, layer) if owner is None else flattened_view(view, owner, layer)

    def _scorecam_view(self, head: str, layer_name: str):
        return self._memo(("scorecam", head, layer_name), lambda: self._build_scorecam_view(head, layer_name))

    def _build_scorecam_view(self, head: str, layer_name: str):
        import keras
        view, tap = self._cam_view(head, layer_name)
        out = view.outputs[0]
        zeros = keras.ops.zeros_like(out[:, :1])
        logits = {"age": lambda: keras.ops.concatenate([out / AGE_LOGIT_SCALE, zeros], axis=-1),
                  "gender": lambda: keras.ops.concatenate([zeros, out], axis=-1),
                  "race": lambda: out, "age_group": lambda: out}[head]()
        model = keras.Model(view.inputs, [logits], name=f"{head}_scorecam_view")
        # Score-CAM calls model.predict, whose progress bar would land in the server log once per map.
        model.predict = functools.partial(model.predict, verbose=0)
        return model, tap

    def _input_gradients(self, method: str, x: np.ndarray, head: str, index: int, seed: int) -> np.ndarray:
        from tf_keras_vis.saliency import Saliency
        saliency = Saliency(self._view(head))
        score = _gradient_score(head, index)
        if method == "saliency":
            return saliency(score, x)[0]
        # SmoothGrad as tf-keras-vis computes it (mean |gradient| over noisy copies, max over colour channels),
        # but all copies in one batched call: its own loop makes one eager call per copy, which took 2-3.4× the
        # CPU time (residual_cnn at 96 and 128 px, custom_cnn at 128 px).
        rng = np.random.default_rng(seed)
        sigma = SMOOTH_NOISE * float(x.max() - x.min())
        noisy = (x + rng.normal(0.0, sigma, (SMOOTH_SAMPLES, *x.shape[1:]))).astype(np.float32)
        grads = saliency(score, noisy, keepdims=True, normalize_map=False)
        return np.asarray(grads).mean(axis=0).max(axis=-1)

    def _cam(self, method: str, x: np.ndarray, head: str, index: int, layer_name: str, max_n) -> np.ndarray:
        if method == "scorecam":
            from tf_keras_vis.scorecam import Scorecam
            model, tap = self._scorecam_view(head, layer_name)
            channels = int(tap.output.shape[-1])
            n = min(max_n, channels) if max_n else None
            cam = Scorecam(model)(_scorecam_score(head, index), x, penultimate_layer=tap,
                                  seek_penultimate_conv_layer=False, max_N=n, batch_size=16)
            return np.asarray(cam)[0]
        from tf_keras_vis.gradcam import Gradcam, GradcamPlusPlus
        view, tap = self._cam_view(head, layer_name)
        kind = Gradcam if method == "gradcam" else GradcamPlusPlus
        cam = kind(view)(_gradient_score(head, index), x, penultimate_layer=tap, seek_penultimate_conv_layer=False)
        return np.asarray(cam)[0]


# ---------------------------------------------------------------------------------------------- scores

def _gradient_score(head: str, index: int):
    """Score on the linear view's output: the age, the signed gender logit, or one race logit."""
    if head in ("race", "age_group"):  # one class's logit
        return lambda output: output[:, index]
    sign = float(index) if head == "gender" else 1.0
    return lambda output: sign * output[:, 0]


def _scorecam_score(head: str, index: int):
    """Score on softmax(adapter logits), as Score-CAM hands it over: the age recovered exactly from the two
    logits, or the probability of the target class."""
    import tensorflow as tf
    if head == "age":
        return lambda q: AGE_LOGIT_SCALE * (tf.math.log(q[:, 0]) - tf.math.log(q[:, 1]))
    column = (1 if index > 0 else 0) if head == "gender" else index  # race, age_group: the target class
    return lambda q: q[:, column]


def _at_size(heatmap: np.ndarray, size: int) -> np.ndarray:
    """The map at the input size (tf-keras-vis already returns it so; a guard for odd layer geometries)."""
    if heatmap.shape == (size, size):
        return heatmap
    from PIL import Image
    resized = Image.fromarray(heatmap.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR)
    return normalise(np.asarray(resized))
