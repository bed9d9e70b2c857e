"""One way to cut a face out of an image, for training, evaluation and prediction alike.

A user's photo reaches the model through MediaPipe detection → keypoint alignment (`core.alignment.align_crop`). A
model trained and scored on the datasets' own crops meets a slightly different face in the app (framing, scale,
tilt), and what Evaluate reports is then not what a selfie gets. So dataset images go through the same detector
and aligner as uploads; the dataset's own crop is only the fallback where the detector finds nothing, and that is
counted.

Dataset images that are already tight face crops (UTKFace's aligned & cropped 200×200) often defeat BlazeFace:
the face fills the frame. Padding the image with a border before detecting puts the face back in the range the
detector was trained on; the keypoints are mapped back into the original image, so `align_crop` cuts the same
square it would cut from a photo (outside the image is black, as in UTKFace's own crops).

Detection results (keypoints, found or not) are cached per image list in the cache folder: running both BlazeFace
models costs a few milliseconds per image, once.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from core.alignment import View, align_crop, align_views, center_crop, shifted, whole_image_face
from core.faces import Face, FaceDetector, shared_detector
from core.pipeline import cached_array, load_images

CROP_MODES = ("app", "dataset")  # the app's detect + align path, or the dataset's own crop resized
CROP_LIKE_MAX_SIDE = 1024  # a face crop is a small image…
CROP_LIKE_ASPECT = (0.7, 1.45)  # …roughly square (UTKFace 1:1, FairFace 1:1, Adience's aligned faces ~1:1.2)
CROP_PAD = 0.35  # border added on every side, as a fraction of the long side, to re-detect a frame-filling face
_CACHE_VERSION = 2  # bump when detection or padding changes: older caches are then ignored


@dataclass(frozen=True)
class CropChoice:
    """How one image became the model's input: a detected face, or the image taken as a face crop."""
    face: Face
    detected: bool

    @property
    def note(self) -> str:
        return "detected face" if self.detected else "taken as a face crop (no face detected)"


def looks_like_face_crop(size: tuple[int, int]) -> bool:
    """Small and square-ish: a dataset crop or a cropped selfie, not a scene."""
    width, height = size
    return max(width, height) <= CROP_LIKE_MAX_SIDE and CROP_LIKE_ASPECT[0] <= width / height <= CROP_LIKE_ASPECT[1]


def detect_padded(image: Image.Image, detector: FaceDetector) -> list[Face]:
    """Faces of a tight crop, found on a copy with a black border and mapped back to the image's own pixels."""
    pad = round(CROP_PAD * max(image.size))
    canvas = Image.new("RGB", (image.width + 2 * pad, image.height + 2 * pad), (0, 0, 0))
    canvas.paste(image.convert("RGB"), (pad, pad))
    return [_shifted(face, -pad, -pad) for face in detector.detect(canvas, "never")]


def central_face(faces: list[Face], size: tuple[int, int]) -> Face | None:
    """The face a dataset crop is about: the one nearest the centre, larger faces winning near-ties."""
    if not faces:
        return None
    cx, cy = size[0] / 2, size[1] / 2

    def cost(face: Face) -> float:
        fx, fy = face.center
        return ((fx - cx) ** 2 + (fy - cy) ** 2) ** 0.5 / max(size) - max(face.box[2:]) / max(size)
    return min(faces, key=cost)


def choose_face(image: Image.Image, detector: FaceDetector | None = None) -> CropChoice | None:
    """The face of a labelled dataset image (or a single-face upload): detected, re-detected with a border when it
    fills the frame, else — for an image that looks like a face crop — the image itself. None when neither."""
    detector = detector or shared_detector()
    face = central_face(detector.detect(image, "never"), image.size)
    if face is None and looks_like_face_crop(image.size):
        face = central_face(detect_padded(image, detector), image.size)
    if face is not None:
        return CropChoice(face, True)
    if looks_like_face_crop(image.size):
        return CropChoice(whole_image_face(image.size), False)
    return None


def cut(image: Image.Image, choice: CropChoice | None, size: int) -> np.ndarray:
    """The model input for a chosen face; the centred square when there is no choice at all."""
    if choice is None or not choice.face.keypoints:
        return center_crop(image, size)
    return align_crop(image, choice.face, size)


# ----------------------------------------------------------------------------------------- datasets

@dataclass(frozen=True)
class Detections:
    """Per image of a list: the chosen face's 6 keypoints (NaN where none was detected), in each image's own
    pixels. float64, as detection gives them: a cut from the cache equals the upload path's cut exactly."""
    keypoints: np.ndarray  # (n, 6, 2)

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.keypoints[:, 0, 0])

    @property
    def found_fraction(self) -> float:
        return float(self.found.mean()) if len(self.keypoints) else 0.0


def _digest(paths: list[str]) -> str:
    return hashlib.sha1(("\n".join(paths) + f"|v{_CACHE_VERSION}").encode()).hexdigest()[:16]


def _keypoints_of(path: str, detector: FaceDetector) -> np.ndarray:
    with Image.open(path) as source:
        image = source.convert("RGB")
    choice = choose_face(image, detector)
    if choice is None or not choice.detected:
        return np.full((6, 2), np.nan, np.float64)
    return np.asarray(choice.face.keypoints[:6], np.float64)


def detect_dataset(paths: list[str], use_cache: bool = True, on_progress=None) -> Detections:
    """The app's face choice for every image of a dataset, cached on disk by image list."""
    paths = [str(p) for p in paths]

    def build() -> np.ndarray:
        detector = shared_detector()
        keypoints = np.full((len(paths), 6, 2), np.nan, np.float64)
        for i, path in enumerate(paths):
            keypoints[i] = _keypoints_of(path, detector)
            if on_progress is not None and (i + 1) % 500 == 0:
                on_progress(i + 1, len(paths))
        return keypoints
    return Detections(cached_array(f"faces-{len(paths)}-{_digest(paths)}", (len(paths), 6, 2), build,
                                   use_cache and len(paths) >= 64))


def _app_crop(path: str, keypoints: np.ndarray, size: int, views: tuple[View, ...] | None) -> np.ndarray:
    with Image.open(path) as source:
        image = source.convert("RGB")
    if np.isnan(keypoints[0, 0]):
        face = whole_image_face(image.size)  # no keypoints: align_crop takes the centred square
    else:
        face = Face((0.0, 0.0, float(image.width), float(image.height)), 1.0, tuple(map(tuple, keypoints.tolist())))
    return align_crop(image, face, size) if views is None else align_views(image, face, size, views)


def _views_key(views: tuple[View, ...] | None) -> str:
    return "" if views is None else "-views-" + hashlib.sha1(repr(views).encode()).hexdigest()[:8]


def load_app_crops(paths: list[str], size: int, use_cache: bool = True, on_progress=None,
                   views: tuple[View, ...] | None = None) -> tuple[np.ndarray, Detections]:
    """Every image cut the app's way, (n, size, size, 3) uint8, and the detections it was cut from. With `views`
    (core.alignment.VIEWS), each image cut once per view: (n, views, size, size, 3), as the app predicts."""
    paths = [str(p) for p in paths]
    detections = detect_dataset(paths, use_cache, on_progress)
    shape = (len(paths), size, size, 3) if views is None else (len(paths), len(views), size, size, 3)

    def build() -> np.ndarray:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            crops = list(pool.map(lambda item: _app_crop(item[0], item[1], size, views),
                                  zip(paths, detections.keypoints, strict=True)))
        return np.stack(crops) if crops else np.zeros(shape, np.uint8)
    images = cached_array(f"appcrops-{size}px-{len(paths)}-{_digest(paths)}{_views_key(views)}", shape, build,
                          use_cache and len(paths) >= 256)
    return images, detections


def load_crops(paths: list[str], size: int, mode: str = "app", use_cache: bool = True, on_progress=None,
               views: tuple[View, ...] | None = None) -> tuple[np.ndarray, Detections | None]:
    """Every image as the model's input, (n, size, size, 3) uint8, cut one of the CROP_MODES ways: "app" as an
    upload is cut (with the detections, which say where the dataset crop was the fallback), "dataset" the
    dataset's own crop resized (no detections). Training, evaluation and weight averaging all read faces here.
    With `views`, (n, views, size, size, 3): the app's views are cut from the image, the dataset crop's are that
    crop shifted (it has nothing around it to cut from)."""
    if mode == "dataset":
        images = load_images(paths, size, use_cache)
        return (images if views is None else np.stack([shifted(images, view) for view in views], axis=1)), None
    if mode != "app":
        raise ValueError(f"Unknown crop mode {mode!r}: one of {', '.join(CROP_MODES)}.")
    return load_app_crops(paths, size, use_cache, on_progress, views)


def _shifted(face: Face, dx: float, dy: float) -> Face:
    x, y, w, h = face.box
    return replace(face, box=(x + dx, y + dy, w, h), keypoints=tuple((kx + dx, ky + dy) for kx, ky in face.keypoints))
