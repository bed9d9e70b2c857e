"""Finding faces in a photo (MediaPipe BlazeFace): boxes and keypoints, which core/alignment.py cuts out the way the
training faces were cut.

Detection. BlazeFace sees the whole photo shrunk to 128 px (short-range model) or 192 px (full-range model), so
what it finds depends on a face's size relative to the photo. Measured on UTKFace faces pasted into 1600×1200
scenes (`tests/benchmarks/bench_predict.py --detection`): the short-range model alone finds faces from ~15% of
the long side up to frame-filling close-ups; the full-range model finds about half of the faces at 5–8% and
nearly all from 10%, but misses some close-ups; the full-range model on a 2×2 grid of overlapping tiles reaches
~3%. So a photo gets all three passes, merged by de-duplication (18 of 20 faces found at 3%, all from 4% up).
Short-range boxes win the merge, as their keypoints are the more precise and the crop was calibrated on them;
other finds are re-detected by the short-range model in a window around them for the same reason. Each model
alone raises false alarms on textured backgrounds (the short-range model 26 on 40 face-free backgrounds, at
scores up to ~0.66), rarely both at one place: a face is kept when both models saw it, or when one saw it with a
score of at least 0.7 (1 false alarm on the same 40). The tiles are skipped for close-ups (a face spanning a
quarter of the photo's short side): four more passes, for faces several times smaller than the subject;
`tiles="always"` searches them too. Faces cut by the frame edge need windows reaching past it: core/edges.py.
Alignment, the other half of cutting a face out, is in core/alignment.py.
"""

from __future__ import annotations

import atexit
import math
import threading
import weakref
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from core import edges as frame_edges
from core import settings
from core.errors import UserError

SHORT_RANGE_MODEL = "face_detection_short_range.tflite"
FULL_RANGE_MODEL = "face_detection_full_range_sparse.tflite"
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")  # the subject's right
MIN_SCORE = 0.5  # MediaPipe's default: a first filter only, see CONFIDENT_SCORE
CONFIDENT_SCORE = 0.7  # a face seen by one model only must score this (none of ~300 false alarms measured did)

TILE_FRACTION = 0.6  # 2×2 tiles of 60% of each side overlap by 20%: any face under 20% fits whole in one
TILE_MIN_SIDE = 480  # below this, tiles would be smaller than the detector's own 192 px input: nothing to gain
CLOSE_UP_FRACTION = 0.25  # a face this large (of the short side) makes the photo a close-up: no tiles
REFINE_WINDOW = 2.5  # re-detection window, in face sizes: puts the face at 40%, the short-range sweet spot
_PASS_PRIORITY = {"short": 0, "full": 1, "tile": 2, "edge": 3}
_MODEL_OF = {"short": "short", "full": "full", "tile": "full", "edge": "short"}
TILE_POLICIES = ("auto", "always", "never")


class DetectorError(UserError):
    """The face detector cannot run (its model files are missing or unreadable); the message says why."""


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in."""
    box: tuple[float, float, float, float]  # x, y, width, height
    score: float | None  # None for a whole image treated as one face
    keypoints: tuple[tuple[float, float], ...] = ()  # KEYPOINT_NAMES order, (x, y) each
    source: str = ""  # which pass found it: short, full, tile, or whole-image

    @property
    def center(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2, y + h / 2

    @property
    def eye_angle(self) -> float:
        """Degrees the eye line is turned from level, clockwise on screen (image y points down)."""
        (x0, y0), (x1, y1) = self.keypoints[0], self.keypoints[1]
        return math.degrees(math.atan2(y1 - y0, x1 - x0))

    def scaled(self, factor: float) -> Face:
        """The same face in an image `factor` times larger."""
        return replace(self, box=tuple(v * factor for v in self.box),
                       keypoints=tuple((x * factor, y * factor) for x, y in self.keypoints))

    def pixel_box(self, image_size: tuple[int, int]) -> list[int]:
        """[x, y, w, h] as whole pixels, clipped to the image."""
        x, y, w, h = self.box
        left, top = max(0, round(x)), max(0, round(y))
        right, bottom = min(image_size[0], round(x + w)), min(image_size[1], round(y + h))
        return [left, top, max(0, right - left), max(0, bottom - top)]


# --------------------------------------------------------------------------------------------- detection

_open_detectors: weakref.WeakSet = weakref.WeakSet()


class FaceDetector:
    """Both BlazeFace models, opened once and reused. MediaPipe task objects are not thread-safe, so every call
    holds a lock; close() (or a `with` block, or interpreter exit) releases the native resources."""

    def __init__(self, model_dir: Path | None = None, min_score: float = MIN_SCORE, tiles: str = "auto"):
        _check_tiles(tiles)
        self.tiles = tiles
        model_dir = Path(model_dir or settings.DETECTOR_DIR)
        self._lock = threading.Lock()
        self._short = _open_task(model_dir / SHORT_RANGE_MODEL, min_score)
        try:
            self._full = _open_task(model_dir / FULL_RANGE_MODEL, min_score)
        except DetectorError:
            self._short.close()
            raise
        self._closed = False
        _open_detectors.add(self)

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._short.close()
                self._full.close()

    def detect(self, image: Image.Image | np.ndarray, tiles: str | None = None, edges: bool = False) -> list[Face]:
        """Every face found, left to right, in the image's pixel coordinates. `tiles` overrides the detector's
        own setting for this call: "auto" (skip for close-ups), "always" or "never". `edges` also searches
        windows past the borders for faces cut by the frame (core/edges.py: uploads, not live frames)."""
        tiles = tiles or self.tiles
        _check_tiles(tiles)
        if isinstance(image, Image.Image) and image.mode != "RGB":
            image = image.convert("RGB")
        pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        with self._lock:
            if self._closed:
                raise DetectorError("The face detector was closed.")
            found = self._run(self._short, pixels, "short") + self._run(self._full, pixels, "full")
            confident = [f for f in found if f.score >= CONFIDENT_SCORE]
            if self._want_tiles(tiles, pixels.shape, confident):
                found += self._tile_pass(pixels)
            if edges and max(pixels.shape[:2]) >= frame_edges.EDGE_MIN_SIDE:
                found += self._edge_pass(pixels, confident)
            faces = []
            for face, duplicates in _deduplicate(found):
                edge_finds = [f for f in duplicates if f.source == "edge"]
                if edge_finds and face.score < CONFIDENT_SCORE:
                    # A face cut by the frame: the photo's passes saw half of it, a window past the border all.
                    face, duplicates = max(edge_finds, key=lambda f: f.score), []
                models = {_MODEL_OF[f.source] for f in (face, *duplicates)}
                if face.source not in ("short", "edge"):  # edge finds are confirmed in their own pass
                    face, confirmed = self._refine(pixels, face)
                    models |= {"short"} if confirmed else set()
                # Each model alone has false alarms on textured backgrounds, rarely both at the same place.
                if len(models) > 1 or face.score >= CONFIDENT_SCORE or face.source == "edge":
                    faces.append(face)
        return sorted((face for face, _ in _deduplicate(faces)), key=lambda f: f.center[0])

    @staticmethod
    def _want_tiles(tiles: str, shape: tuple[int, ...], found: list[Face]) -> bool:
        if tiles != "auto":
            return tiles == "always"
        short_side = min(shape[:2])
        close_up = any(max(f.box[2:]) >= CLOSE_UP_FRACTION * short_side for f in found)
        return max(shape[:2]) >= TILE_MIN_SIDE and not close_up

    def _tile_pass(self, pixels: np.ndarray) -> list[Face]:
        height, width = pixels.shape[:2]
        tile_w, tile_h = round(width * TILE_FRACTION), round(height * TILE_FRACTION)
        faces = []
        for top in (0, height - tile_h):
            for left in (0, width - tile_w):
                tile = np.ascontiguousarray(pixels[top:top + tile_h, left:left + tile_w])
                inner = _inner_edges(left, top, tile_w, tile_h, width, height)
                faces += [f for f in self._run(self._full, tile, "tile", (left, top)) if not _touches(f, inner)]
        return faces

    def _edge_pass(self, pixels: np.ndarray, known: list[Face]) -> list[Face]:
        """Short-range finds in the windows past the borders that the frame cuts, each kept when found again in
        a window centred on it, with one of the two scores confident (see core/edges.py); boxes clipped to the
        photo. Faces `known` with confidence already are not re-detected; a face two windows saw, once."""
        size = (pixels.shape[1], pixels.shape[0])
        windowed = [face for window in frame_edges.edge_windows(*size)
                    for face in self._run(self._short, frame_edges.padded_window(pixels, window), "edge", window[:2])]
        found = []
        for face, _ in _deduplicate(windowed):
            # Not cut by the frame (the whole-photo passes judge it), or a mirror image past the border.
            cut = frame_edges.MIN_VISIBLE <= frame_edges.visible_fraction(face, size) < 1
            if not cut or any(_same_face(face, k) for k in known):
                continue
            again = frame_edges.centred_window(face, REFINE_WINDOW)
            confirm = self._redetect(pixels, face, again, frame_edges.PADDING)
            if confirm is not None and max(confirm.score, face.score) >= CONFIDENT_SCORE:
                best = self._redetect(pixels, face, again, frame_edges.KEYPOINT_PADDING) or confirm
                score = max(best.score, confirm.score, face.score)
                found.append(frame_edges.clipped(replace(best, score=score), size))
        return found

    def _redetect(self, pixels: np.ndarray, face: Face, window, padding: str) -> Face | None:
        seen = self._run(self._short, frame_edges.padded_window(pixels, window, padding), "edge", window[:2])
        return max((f for f in seen if _same_face(f, face)), key=lambda f: f.score, default=None)

    def _refine(self, pixels: np.ndarray, face: Face) -> tuple[Face, bool]:
        """Re-detect a full-range find with the short-range model, whose box and keypoints match the crop
        calibration. Returns the face and whether the short-range model confirmed it (else it is unchanged)."""
        cx, cy = face.center
        half = max(face.box[2:]) * REFINE_WINDOW / 2
        left, top = max(0, round(cx - half)), max(0, round(cy - half))
        right, bottom = min(pixels.shape[1], round(cx + half)), min(pixels.shape[0], round(cy + half))
        window = np.ascontiguousarray(pixels[top:bottom, left:right])
        candidates = [f for f in self._run(self._short, window, face.source, (left, top)) if _same_face(f, face)]
        if not candidates:
            return face, False
        best = max(candidates, key=lambda f: f.score)
        return replace(best, score=max(best.score, face.score)), True

    @staticmethod
    def _run(task, pixels: np.ndarray, source: str, offset: tuple[int, int] = (0, 0)) -> list[Face]:
        mp = import_mediapipe()
        height, width = pixels.shape[:2]
        if min(height, width) < 8:
            return []
        result = task.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels))
        dx, dy = offset
        faces = []
        for detection in result.detections:
            box = detection.bounding_box
            faces.append(Face(
                box=(box.origin_x + dx, box.origin_y + dy, box.width, box.height),
                score=float(detection.categories[0].score),
                keypoints=tuple((k.x * width + dx, k.y * height + dy) for k in detection.keypoints),
                source=source))
        return faces


def import_mediapipe():
    """`import mediapipe` without TensorFlow. MediaPipe Tasks imports `tensorflow.tools.docs` when TensorFlow is
    installed, only for a no-op docs decorator it also has a fallback for: 4 s and ~500 MB in the web server, and
    TensorFlow in a process that must never load it (see core/predict.py). Hiding TensorFlow for that one import
    (a None entry in sys.modules makes `import tensorflow` raise ModuleNotFoundError) takes the fallback; a process
    that already uses TensorFlow is left alone."""
    import sys
    if "mediapipe" in sys.modules or "tensorflow" in sys.modules:
        import mediapipe
        return mediapipe
    sys.modules["tensorflow"] = None
    try:
        import mediapipe
    finally:
        del sys.modules["tensorflow"]
    return mediapipe


def _check_tiles(tiles: str) -> None:
    if tiles not in TILE_POLICIES:
        raise ValueError(f"tiles must be one of {TILE_POLICIES}, not {tiles!r}")


def _open_task(path: Path, min_score: float):
    if not path.is_file():
        raise DetectorError(f"The face detector model {path.name} is missing from {path.parent}.")
    import_mediapipe()
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions
    options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                         min_detection_confidence=min_score)
    try:
        return vision.FaceDetector.create_from_options(options)
    except (RuntimeError, ValueError) as error:
        raise DetectorError(f"Cannot open the face detector model {path.name}: {error}") from error


def _inner_edges(left, top, tile_w, tile_h, width, height) -> tuple[float | None, ...]:
    """The tile's edges that cut through the photo (None where the tile edge is the photo's edge)."""
    return (left if left > 0 else None, top if top > 0 else None,
            left + tile_w if left + tile_w < width else None, top + tile_h if top + tile_h < height else None)


def _touches(face: Face, inner: tuple[float | None, ...]) -> bool:
    """A tile find that reaches a cut edge is likely a face cut in half; the neighbouring tile (or the
    whole-photo passes, for faces too big for the overlap) sees it whole."""
    x, y, w, h = face.box
    slack = 0.05 * max(w, h)
    left, top, right, bottom = inner
    return ((left is not None and x <= left + slack) or (top is not None and y <= top + slack)
            or (right is not None and x + w >= right - slack) or (bottom is not None and y + h >= bottom - slack))


def _same_face(a: Face, b: Face) -> bool:
    """Boxes of one face from two passes: they overlap mostly, measured on the smaller box (a half-face find
    inside a whole face is the same face, where plain IoU would keep both), and are of similar size (a small
    face inside a large false alarm's box is not swallowed by it)."""
    smaller, larger = sorted((a.box[2] * a.box[3], b.box[2] * b.box[3]))
    return smaller > 0 and intersection(a.box, b.box) / smaller > 0.5 and smaller / larger > 0.2


def intersection(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """The area two (x, y, width, height) boxes share; 0 when they do not meet."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return max(0.0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0.0, min(ay + ah, by + bh) - max(ay, by))


def _deduplicate(faces: list[Face]) -> list[tuple[Face, list[Face]]]:
    """Greedy: in pass priority, then score order, each face is kept unless it is the same face as one kept
    before; returns each kept face with the duplicates it absorbed."""
    ordered = sorted(faces, key=lambda f: (_PASS_PRIORITY.get(f.source, 3), -(f.score or 0)))
    kept: list[tuple[Face, list[Face]]] = []
    for face in ordered:
        match = next((group for group in kept if _same_face(face, group[0])), None)
        if match is None:
            kept.append((face, []))
        else:
            match[1].append(face)
    return kept


_shared: FaceDetector | None = None
_shared_lock = threading.Lock()


def shared_detector() -> FaceDetector:
    """One detector per process, opened on first use (MediaPipe and TensorFlow take seconds to import)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared._closed:
            _shared = FaceDetector()
        return _shared


@atexit.register
def _close_all() -> None:
    # Closing at interpreter teardown (MediaPipe's __del__) fails noisily once module globals are gone.
    for detector in list(_open_detectors):
        detector.close()
