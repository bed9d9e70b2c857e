"""Fast inference on face crops (LiteRT; test-time averaging over each face's views, core.alignment.VIEWS, and their
mirror images, all in the same call), and the whole path from an uploaded photo's bytes to a prediction per face,
for the Predict and Evaluate pages and `python -m core predict`.

The web server never imports TensorFlow: `import tensorflow` costs ~4 s and ~500 MB, and once `keras` is imported
Streamlit clears the Keras session after every script run (160–200 ms). So `Predictor` runs the model's float32
TFLite export (core/export.py `ensure_tflite`, outputs equal to Keras up to float rounding) with LiteRT: the face
and its mirror image in one call, 3.2 ms p50 for the shipped model on 2 cores against 26.9 ms for a compiled Keras
call. Nothing this module imports at its top reaches TensorFlow; `KerasPredictor` (same interface, for tools that
hold a Keras model anyway, e.g. saliency maps) imports it when built.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.alignment import ONE_VIEW, VIEWS, View, align_views, crop_geometry, whole_image_face
from core.crops import detect_padded, looks_like_face_crop
from core.drawing import annotate
from core.face_prediction import FacePrediction, predictions, space_of_heads
from core.faces import Face, FaceDetector, shared_detector
from core.images import ImageError, Photo, load_photo
from core.label_spaces import LabelSpace
from core.registry import ModelError

# Batches are padded up to one of these sizes, each with its own interpreter allocated once: no re-allocation per
# call, at most 2× padding waste. LiteRT's cost per face is flat from batch 2 to 128 (3.2–3.5 ms at 96 px), so the
# padding is what costs: the multiples of the five views (5, 10, 20) make one to four faces' views fit exactly
# (one face in 8 was 51 ms, in 5 34 ms). Each image of a batch holds ~1.3 MB of activations: bigger buckets would
# only cost memory.
_BATCH_BUCKETS = (1, 2, 4, 5, 8, 10, 16, 20)
FACE_CROP_NOTE = "taken as a face crop (no face detected)"


def _bucket(crops: int) -> int:
    return next(b for b in _BATCH_BUCKETS if b >= crops)


def _batch_size(crops: int, flip_tta: bool) -> int:
    """The model batch for up to the largest bucket of crops: their bucket, twice over with the mirror images."""
    return _bucket(crops) * (2 if flip_tta else 1)


class _BatchPredictor:
    """What both predictors share: batching, view and flip averaging and FacePredictions, over a `_run(batch)`
    that maps a float32 (n, size, size, 3) batch to the model's outputs by name."""

    img_size: int
    flip_tta: bool
    views: tuple[View, ...]  # the cuts of each face that callers give it to average (core.alignment.VIEWS)
    output_names: list[str]
    space: LabelSpace  # the label space its heads speak (core/label_spaces.py)

    def _set_reading(self, flip_tta: bool, views: tuple[View, ...]) -> None:
        """How each face is read: with its mirror image or not, and which cuts (none given: the calibrated one)."""
        self.flip_tta, self.views = flip_tta, tuple(views) or ONE_VIEW

    def raw_outputs(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Model outputs as numpy arrays, for a (n, size, size, 3) uint8/float batch of any n, or (n, views, size,
        size, 3): several cuts of each face (`align_views`), whose outputs are averaged per face."""
        crops = np.asarray(crops, dtype=np.float32)
        n = len(crops)
        if n == 0:
            return {}
        cuts = crops.shape[1] if crops.ndim == 5 else 1
        if crops.shape[-3:] != (self.img_size, self.img_size, 3) or crops.ndim not in (4, 5):
            raise ValueError(f"Expected crops of shape (n, [views,] {self.img_size}, {self.img_size}, 3), got "
                             f"{crops.shape}.")
        crops = crops.reshape(n * cuts, self.img_size, self.img_size, 3)
        step = _BATCH_BUCKETS[-1]
        chunks = [self._call(crops[i:i + step]) for i in range(0, n * cuts, step)]
        joined = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
        if cuts == 1:
            return joined
        return {key: v.reshape(n, cuts, *v.shape[1:]).mean(axis=1) for key, v in joined.items()}

    def _call(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """One model call for up to the largest bucket of crops, their mirror images in the same batch."""
        n = len(crops)
        bucket = _bucket(n)
        batch = np.zeros((_batch_size(n, self.flip_tta), *crops.shape[1:]), np.float32)
        batch[:n] = crops
        if self.flip_tta:
            batch[bucket:bucket + n] = crops[:, :, ::-1, :]
        out = self._run(batch)
        result = {k: np.asarray(v[:n]) for k, v in out.items()}
        if self.flip_tta:
            flipped = {k: np.asarray(v[bucket:bucket + n]) for k, v in out.items()}
            result = {k: (v + flipped[k]) / 2 for k, v in result.items()}
            if "age" in flipped:  # a years head: the flip disagreement is its spread
                result["age_flip"] = flipped["age"]
        return result

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def predict(self, crops: np.ndarray) -> list[FacePrediction]:
        outputs = self.raw_outputs(crops)
        return predictions(outputs, self.space, self.flip_tta) if outputs else []


class Predictor(_BatchPredictor):
    """Thread-safe batched inference on RGB uint8 crops with a model's `.tflite` file (LiteRT, no TensorFlow).

    `Predictor(path)` with the file beside a model (`core.export.ensure_tflite(model.keras)` makes it). Each batch
    size gets its own interpreter on first use, resized and allocated once; a lock per interpreter serialises the
    calls that share it (a LiteRT interpreter is not thread-safe), while different sizes run in parallel."""

    def __init__(self, tflite_path: str | os.PathLike, flip_tta: bool = True, num_threads: int | None = None,
                 views: tuple[View, ...] = VIEWS):
        self.path = Path(tflite_path)
        try:
            self._flatbuffer = self.path.read_bytes()  # one copy, shared by every interpreter
        except OSError as error:
            raise ModelError(f"Cannot read the model file {self.path}: {error.strerror or error}.") from error
        self._set_reading(flip_tta, views)
        self._num_threads = num_threads or os.cpu_count() or 1
        self._interpreters: dict[int, _FixedBatchInterpreter] = {}
        self._interpreters_lock = threading.Lock()
        # Allocated now: the call one face's views make, so a one-face photo needs no other interpreter (memory).
        first = self._interpreter_for(_batch_size(min(len(self.views), _BATCH_BUCKETS[-1]), flip_tta))
        self.img_size, self.output_names = first.img_size, list(first.outputs)
        self.space = space_of_heads(first.widths)  # what its heads speak, read from the file itself

    def _interpreter_for(self, batch_size: int) -> _FixedBatchInterpreter:
        with self._interpreters_lock:
            if batch_size not in self._interpreters:
                self._interpreters[batch_size] = _FixedBatchInterpreter(self._flatbuffer, batch_size,
                                                                        self._num_threads)
            return self._interpreters[batch_size]

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self._interpreter_for(len(batch))(batch)


class _FixedBatchInterpreter:
    """One LiteRT interpreter with the input resized to one batch size and its tensors allocated once."""

    def __init__(self, flatbuffer: bytes, batch_size: int, num_threads: int):
        from core.export import litert_interpreter, signature_io
        self._interpreter = litert_interpreter(flatbuffer, num_threads)
        detail, outputs = signature_io(self._interpreter)
        shape = [int(v) for v in detail["shape"]]
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise ModelError(f"Not a Face Insight model: its input has shape {shape}, not (n, size, size, 3).")
        self.img_size = shape[1]
        self.outputs = {name: int(d["index"]) for name, d in outputs.items()}
        self.widths = {name: int(d["shape"][-1]) for name, d in outputs.items()}
        space_of_heads(self.widths)  # a file whose heads match no label space is refused here
        self._input = int(detail["index"])
        try:
            self._interpreter.resize_tensor_input(self._input, [batch_size, self.img_size, self.img_size, 3],
                                                  strict=True)
            self._interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as error:  # a file exported with a fixed batch size
            raise ModelError(f"This TFLite file cannot take a batch of {batch_size}: {error}") from error
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            self._interpreter.set_tensor(self._input, batch)
            self._interpreter.invoke()
            return {name: self._interpreter.get_tensor(index) for name, index in self.outputs.items()}  # copies


class KerasPredictor(_BatchPredictor):
    """The same interface over a loaded Keras model (one traced `tf.function` per batch size), for processes that
    hold the Keras model anyway: saliency maps explain the very model they predict with. Imports TensorFlow."""

    def __init__(self, model, flip_tta: bool = True, views: tuple[View, ...] = VIEWS):
        import tensorflow as tf
        self.model = model
        self.img_size = int(model.input_shape[1])
        self._set_reading(flip_tta, views)
        self.output_names = list(model.output_names) if hasattr(model, "output_names") else []
        self.space = space_of_heads({name: int(t.shape[-1]) for name, t in zip(self.output_names, model.outputs,
                                                                          strict=True)})
        self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._lock = threading.Lock()  # tf.function tracing is not re-entrant across threads

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            return {k: np.asarray(v) for k, v in self._fn(batch).items()}


# ------------------------------------------------------------------------------------- photo → predictions

DRAFT_SIDE = 800  # JPEGs decode at 1/2, 1/4 or 1/8 scale down to this long side: ~8× less decoding work
DETECT_MAX_SIDE = 1600  # other formats are shrunk to this for detection: BlazeFace sees ≤ 192 px per pass anyway
SHARP_CROP_FACTOR = 1.5  # a crop needs this many source pixels per model pixel, or it is cut from full resolution


@dataclass(frozen=True)
class FaceResult:
    number: int  # 1-based, as drawn on the photo
    face: Face  # in full-resolution pixel coordinates
    crop: np.ndarray  # the aligned face as the model saw it, (size, size, 3) uint8
    prediction: FacePrediction

    def to_dict(self, image_size: tuple[int, int]) -> dict:
        p = self.prediction
        return {
            "box": self.face.pixel_box(image_size),
            "score": None if self.face.score is None else round(self.face.score, 4),
            "age": round(p.age, 2), "age_std": round(p.age_std, 2),
            "gender": p.gender, "gender_prob": round(p.gender_prob, 4),
            "race": p.race, "race_probs": {name: round(v, 4) for name, v in p.race_probs.items()},
            **({"age_group": p.age_group, "age_group_probs": {g: round(v, 4) for g, v in p.age_group_probs.items()}}
               if p.age_group_probs else {}),
        }


@dataclass(frozen=True)
class Analysis:
    image: Image.Image  # upright RGB, possibly a reduced decode: for display
    full_size: tuple[int, int]  # the full-resolution upright size, which boxes refer to
    faces: list[FaceResult]
    whole_image: bool  # True when the image was taken as one already-cropped face
    note: str | None = None  # how the faces were found, when it was not a plain detection: for the user

    @property
    def scale(self) -> float:
        return self.full_size[0] / self.image.width

    def annotated(self) -> Image.Image:
        return annotate(self.image, [r.face.scaled(1 / self.scale) for r in self.faces],
                        [r.prediction for r in self.faces])

    def to_dict(self) -> dict:
        return {"faces": [r.to_dict(self.full_size) for r in self.faces], "note": self.note, "error": None}


def analyze_bytes(data: bytes, predictor: Predictor, detector: FaceDetector | None = None,
                  whole_image: bool = False, tiles: str | None = None) -> Analysis:
    """An uploaded file's bytes → every face with its prediction. Raises ImageError for a bad file.

    All faces of the photo go through the model in one batched call. With `whole_image`, detection is skipped
    and the (centred square of the) image is taken as one face already cropped like the training images.
    `tiles` overrides the detector's small-face search ("always" also searches close-ups; see core.faces).

    An upload that looks like a face crop (small, squarish: core.crops) where no face is found is searched again
    with a border around it (BlazeFace misses faces that fill the frame), and else taken whole, with a note
    saying so: a face crop needs no option. Any other photo without a face gets no faces, never a guess."""
    photo = load_photo(data, draft_side=DRAFT_SIDE)
    if whole_image:
        return _whole_image_analysis(photo, predictor)
    detector = detector or shared_detector()
    faces = _detect(photo.image, detector, tiles)  # in photo.image pixels
    if not faces and looks_like_face_crop(photo.full_size):
        faces = detect_padded(photo.image, detector)
        if not faces:
            return _whole_image_analysis(photo, predictor, FACE_CROP_NOTE)
    source, factor = photo.image, 1.0
    if photo.scale > 1 and any(_needs_full_resolution(f, predictor.img_size) for f in faces):
        source = load_photo(data).image  # small faces in a big JPEG: worth the full decode for sharper crops
        factor = source.width / photo.image.width
    crops = [align_views(source, face.scaled(factor), predictor.img_size, predictor.views) for face in faces]
    full_faces = [face.scaled(photo.scale) for face in faces]
    return Analysis(photo.image, photo.full_size, _results(full_faces, crops, predictor), False)


def _whole_image_analysis(photo: Photo, predictor: Predictor, note: str | None = None) -> Analysis:
    face = whole_image_face(photo.full_size)
    crops = [align_views(photo.image, whole_image_face(photo.image.size), predictor.img_size, predictor.views)]
    return Analysis(photo.image, photo.full_size, _results([face], crops, predictor), True, note)


def _detect(image: Image.Image, detector: FaceDetector, tiles: str | None) -> list[Face]:
    # Uploads also search past the frame's borders for faces it cuts (core/edges.py); live frames do not.
    reduction = math.ceil(max(image.size) / DETECT_MAX_SIDE)
    if reduction <= 1:
        return detector.detect(image, tiles, edges=True)
    small = image.reduce(reduction)
    return [face.scaled(image.width / small.width) for face in detector.detect(small, tiles, edges=True)]


def _needs_full_resolution(face: Face, size: int) -> bool:
    return crop_geometry(face)[2] < SHARP_CROP_FACTOR * size if face.keypoints else False


def _results(faces: list[Face], views: list[np.ndarray], predictor: Predictor) -> list[FaceResult]:
    """Each face's prediction from its views, (views, size, size, 3) each; the first view is the crop shown."""
    if not faces:
        return []
    predictions = predictor.predict(np.stack(views))  # one batched call for every face in the photo
    return [FaceResult(i + 1, face, cuts[0], prediction)
            for i, (face, cuts, prediction) in enumerate(zip(faces, views, predictions, strict=True))]


def predict_files(paths: list[str], predictor: Predictor, detector: FaceDetector | None = None,
                  whole_image: bool = False) -> list[dict]:
    """One record per file, {"image", "faces", "note", "error"}; a bad file gets its message and the others still
    run. With `whole_image`, a file where no face is found is retried as one already-cropped face (a face crop
    is anyway: see analyze_bytes)."""
    records = []
    for path in paths:
        record = {"image": str(path), "faces": [], "note": None, "error": None}
        try:
            data = Path(path).read_bytes()
            analysis = analyze_bytes(data, predictor, detector)
            if not analysis.faces and whole_image:
                analysis = analyze_bytes(data, predictor, detector, whole_image=True)
            record.update(analysis.to_dict())
        except ImageError as error:
            record["error"] = str(error)
        except OSError as error:
            record["error"] = f"Cannot read {path}: {error.strerror or error}."
        records.append(record)
    return records
