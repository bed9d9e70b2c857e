"""TFLite export of a Face Insight model, and running the exported file on face crops to compare it with Keras.

The model's inference call is exported as a SavedModel (Keras' ExportArchive) with a dynamic batch
(`[None, size, size, 3]` float pixels 0–255, the same input as the Keras model: preprocessing is inside it) and
converted with builtin TFLite ops only, so the file runs on the plain LiteRT/TFLite runtime without the Flex
(TensorFlow ops) delegate. Outputs keep their names (`age`, `gender`, `race`, and `age_dist` for distribution
heads) in the file's default signature.

Quantisation:
- None: float32 weights, predictions equal to Keras up to float rounding.
- "float16": weights stored as float16 (half the size), computed in float32.
- "int8": weights and activations int8 (about a quarter of the size), calibrated on representative face crops;
  input and output stay float so callers need no scales.

The app predicts with the float32 file beside each `.keras` (`ensure_tflite`): the web server runs it with LiteRT
and never imports TensorFlow (see core/predict.py), so a missing or outdated file is exported by a child process.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import settings
from core.datasets import IMAGE_SUFFIXES
from core.registry import ModelError

QUANTIZATIONS = (None, "float16", "int8")
OUTPUT_NAMES = ("age", "age_dist", "gender", "race")  # the order tf.nest flattens our output dict in
REPRESENTATIVE_COUNT = 100  # calibration crops for int8: the TFLite guide's usual 100-500; more barely helps here
# A child's TensorFlow import and conversion take ~15 s on 2 idle cores (the shipped model), a minute or two on a
# machine that is training; past this the child is killed, so a hung export cannot hold a page forever.
EXPORT_TIMEOUT_S = 600


class ExportError(ModelError):
    """An export that cannot be done as asked (bad option, no calibration images, converter failure). A ModelError:
    a model that cannot be prepared for inference cannot be used, and the pages and CLI already say so."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    size_bytes: int
    quantize: str | None
    outputs: tuple[str, ...]
    seconds: float

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6


def default_out_path(model_path: str | Path, quantize: str | None = None) -> Path:
    """Beside the model: `name.tflite`, or `name.float16.tflite` / `name.int8.tflite`."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + (f".{quantize}" if quantize else "") + ".tflite")


def tflite_is_current(keras_path: str | Path) -> bool:
    """Whether the float32 `.tflite` beside a `.keras` exists and is not older than it (a retrained or re-shipped
    model replaces the .keras; its old .tflite would predict with the old weights)."""
    keras_path, tflite = Path(keras_path), default_out_path(keras_path)
    try:
        tflite_mtime = tflite.stat().st_mtime_ns
    except OSError:
        return False
    try:
        return tflite_mtime >= keras_path.stat().st_mtime_ns
    except OSError:
        return True  # no .keras to be older than: the .tflite is all there is


_export_locks: dict[Path, threading.Lock] = {}
_export_locks_guard = threading.Lock()


def ensure_tflite(keras_path: str | Path, in_process: bool = False, timeout: float = EXPORT_TIMEOUT_S) -> Path:
    """The float32 `.tflite` beside a `.keras` (`name.tflite`), exported first when missing or older than it.

    By default the export runs in a child process (`python -m core export`), so the caller never imports
    TensorFlow: the web server must not (4 s and ~500 MB, and Streamlit then clears the Keras session after every
    script run). The CLI, which has TensorFlow at hand anyway, passes `in_process=True`. Raises ExportError (a
    ModelError) with the child's own last error line on failure."""
    keras_path = Path(keras_path)
    tflite = default_out_path(keras_path)
    with _lock_for(tflite):  # two sessions opening one new model export it once
        if tflite_is_current(keras_path):
            return tflite
        if not keras_path.is_file():
            raise ModelError(f"Model file not found: {keras_path}")
        if in_process:
            export_tflite(keras_path, tflite)
        else:
            _export_in_child(keras_path, tflite, timeout)
        _not_older_than(tflite, keras_path)
    return tflite


def representative_images(folder: str | Path, size: int, count: int = REPRESENTATIVE_COUNT,
                          seed: int = 0) -> np.ndarray:
    """Up to `count` images of a folder (a seeded draw), decoded and resized to (size, size, 3) uint8, the way
    the training pipeline reads dataset images."""
    from core.pipeline import decode_resize
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"Calibration folder {folder} does not exist.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ExportError(f"No images in {folder} to calibrate the int8 model with.")
    chosen = np.random.default_rng(seed).choice(len(files), size=min(count, len(files)), replace=False)
    images = []
    for index in sorted(chosen):
        try:
            images.append(decode_resize(str(files[index]), size))
        except OSError:
            continue  # an unreadable file among many just calibrates on one image fewer
    if not images:
        raise ExportError(f"None of the images drawn from {folder} could be decoded.")
    return np.stack(images)


def export_tflite(model_path: str | Path, out_path: str | Path, quantize: str | None = None,
                  representative_images: np.ndarray | None = None) -> ExportResult:
    """Convert a `.keras` model to a `.tflite` file (written atomically). `representative_images` — uint8 or
    float crops of any size, resized here to the model input — are required for int8."""
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"Unknown quantisation {quantize!r}; choose float16 or int8 (or none).")
    if quantize == "int8" and (representative_images is None or len(representative_images) == 0):
        raise ExportError("int8 quantisation needs representative images to calibrate activations: pass a folder "
                          "of face images (e.g. the bundled sample).")
    import tensorflow as tf

    from core.atomic import atomic_write_bytes
    from core.registry import load_model
    started = time.perf_counter()
    model = load_model(model_path, allow_anywhere=True)  # a developer tool: the user names the file
    size = int(model.input_shape[1])
    with tempfile.TemporaryDirectory() as saved_model:
        _write_saved_model(model, size, saved_model)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            crops = _resized(representative_images, size)
            converter.representative_dataset = lambda: ([crop[None]] for crop in crops)
        try:
            flatbuffer = converter.convert()
        except Exception as error:  # the converter raises assorted internal errors; the message is what matters
            raise ExportError(f"TFLite conversion failed: {type(error).__name__}: {error}") from error
    atomic_write_bytes(out_path, flatbuffer)
    outputs = tuple(_signature_runner(_interpreter(flatbuffer)).get_output_details())
    return ExportResult(Path(out_path), len(flatbuffer), quantize, tuple(_names(outputs)),
                        time.perf_counter() - started)


def run_tflite(tflite: str | Path | bytes, crops: np.ndarray) -> dict[str, np.ndarray]:
    """The exported model's outputs, by name, for a (n, size, size, 3) batch of crops (uint8 or float 0–255).
    Crops of another size are resized to the file's input size."""
    interpreter = _interpreter(Path(tflite).read_bytes() if not isinstance(tflite, bytes) else tflite)
    runner = _signature_runner(interpreter)
    (input_name, detail), = runner.get_input_details().items()
    size = int(detail["shape"][1])
    outputs = runner(**{input_name: _resized(np.asarray(crops), size)})
    names = _names(tuple(outputs))
    return {names[i]: np.asarray(outputs[key]) for i, key in enumerate(outputs)}


def compare(model, tflite: str | Path | bytes, crops: np.ndarray) -> dict[str, float]:
    """Largest absolute difference per output between the Keras model and the TFLite file on the same crops
    (age in years, probabilities in 0–1)."""
    crops = _resized(np.asarray(crops), int(model.input_shape[1]))
    keras_out = {k: np.asarray(v) for k, v in model(crops, training=False).items()}
    lite_out = run_tflite(tflite, crops)
    return {name: float(np.max(np.abs(keras_out[name] - lite_out[name]))) for name in keras_out if name in lite_out}


def litert_interpreter(flatbuffer: bytes, num_threads: int | None = None):
    """A LiteRT interpreter for a TFLite flatbuffer, never TensorFlow's: for processes that must not import it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise ModelError("LiteRT is not installed: `pip install -r requirements.txt` (package ai-edge-litert).") \
            from error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            return Interpreter(model_content=flatbuffer, num_threads=num_threads or os.cpu_count() or 1)
        except ValueError as error:  # not a flatbuffer, or ops this runtime lacks
            raise ModelError(f"Not a usable TFLite model: {error}") from error


def signature_io(interpreter) -> tuple[dict, dict[str, dict]]:
    """(input details, {output name as the model knows it: details}) of a file's default signature. The signature
    runner is dropped before returning: while it lives, the interpreter refuses to resize its input."""
    runner = _signature_runner(interpreter)
    (input_detail,) = runner.get_input_details().values()
    outputs = runner.get_output_details()
    del runner
    return input_detail, dict(zip(_names(tuple(outputs)), outputs.values(), strict=True))


# -------------------------------------------------------------------------------------------- internals

def _lock_for(path: Path) -> threading.Lock:
    with _export_locks_guard:
        return _export_locks.setdefault(path.resolve(), threading.Lock())


def _not_older_than(tflite: Path, keras_path: Path) -> None:
    """A .keras stamped in the future (a copied file, clock skew) would make every fresh export look outdated and
    be exported again on every call: the export takes the .keras's time then."""
    keras_mtime = keras_path.stat().st_mtime_ns
    if tflite.stat().st_mtime_ns < keras_mtime:
        os.utime(tflite, ns=(keras_mtime, keras_mtime))


def _export_in_child(keras_path: Path, tflite: Path, timeout: float) -> None:
    argv = [sys.executable, "-m", "core", "export", "--model", str(keras_path), "--out", str(tflite), "--no-compare"]
    try:
        done = subprocess.run(argv, cwd=settings.PROJECT_ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    except subprocess.TimeoutExpired as error:
        raise ExportError(f"Preparing {keras_path.name} for fast inference took over {timeout:.0f} s and was "
                          "stopped.") from error
    except OSError as error:
        raise ExportError(f"Cannot start the TFLite exporter: {error.strerror or error}.") from error
    if done.returncode != 0 or not tflite.is_file():
        raise ExportError(f"Cannot prepare {keras_path.name} for fast inference: {_last_line(done.stderr)}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1].removeprefix("error: ") if lines else "the exporter stopped without a message."


def _write_saved_model(model, size: int, folder: str) -> None:
    """The model's inference call as a SavedModel with a `serving_default` signature. Keras' ExportArchive is
    the route that carries Keras 3 weights: converting a traced tf.function directly (from_concrete_functions
    with the model as trackable) leaves the weights out of the file and the model predicts NaN."""
    import keras
    import tensorflow as tf
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", functools.partial(model.__call__, training=False),
                         input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])
    archive.write_out(folder, verbose=False)


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ExportError(f"Expected a batch of RGB images (n, h, w, 3), got shape {images.shape}.")
    if images.shape[1:3] != (size, size):
        from PIL import Image
        images = np.stack([np.asarray(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
                                      .resize((size, size), Image.Resampling.BILINEAR)) for img in images])
    return images.astype(np.float32)


def _interpreter(flatbuffer: bytes):
    """LiteRT's interpreter when installed, else TensorFlow's (deprecated in its favour, still shipped in 2.21):
    the export tools run beside TensorFlow anyway."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401 - only whether it is installed
    except ImportError:
        import tensorflow as tf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return tf.lite.Interpreter(model_content=flatbuffer, num_threads=os.cpu_count() or 1)
    return litert_interpreter(flatbuffer)


def _signature_runner(interpreter):
    signatures = interpreter.get_signature_list()
    if not signatures:
        raise ExportError("The TFLite file has no signature: it was not exported by this tool.")
    return interpreter.get_signature_runner(next(iter(signatures)))


def _names(keys: tuple[str, ...]) -> list[str]:
    """Output names as the model knows them. Files from this exporter keep them; a file whose signature only
    says output_0, output_1… lists them in the order tf.nest flattens the output dict (sorted keys)."""
    if set(keys) <= {*OUTPUT_NAMES, "age_group"}:  # age_group: a group-head model's (core/label_spaces.py)
        return list(keys)
    ordered = sorted(keys, key=lambda k: int(k.rsplit("_", 1)[-1]) if k.rsplit("_", 1)[-1].isdigit() else 0)
    expected = [name for name in OUTPUT_NAMES if len(keys) == 4 or name != "age_dist"]
    if len(ordered) != len(expected):
        raise ExportError(f"Cannot name the TFLite outputs {list(keys)}.")
    by_key = dict(zip(ordered, expected, strict=True))
    return [by_key[k] for k in keys]
