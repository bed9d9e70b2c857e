"""The face a saliency map explains: the first face of an upload, or one of the Predict page's last photos, cut
exactly as the Predict page cuts it (so a map explains what the model saw there).
"""

from __future__ import annotations

import numpy as np

from core.faces import DetectorError
from core.predict import analyze_bytes


def face_crop_from_bytes(data: bytes, predictor) -> tuple[np.ndarray, str | None]:
    """The first face of an uploaded photo, detected and aligned exactly as on the Predict page, and a note for
    the user when it was not a plain detection (no face found, or the detector unavailable: the image is then
    taken as an already-cropped face). Raises core.images.ImageError for a file that is not a usable image."""
    try:
        analysis = analyze_bytes(data, predictor)
    except DetectorError as error:
        analysis, note = analyze_bytes(data, predictor, whole_image=True), f"{error} The whole image was used."
    else:
        note = None
        if not analysis.faces:
            analysis = analyze_bytes(data, predictor, whole_image=True)
        if analysis.whole_image:  # no face found (a face-crop-like upload is taken whole by analyze_bytes itself)
            note = "No face was detected: the image is taken as an already-cropped face."
        elif len(analysis.faces) > 1:
            note = f"{len(analysis.faces)} faces found: explaining face 1 (the leftmost)."
    return analysis.faces[0].crop, note


def face_crops(value) -> list[np.ndarray]:
    """The face crops in what the Predict page keeps of its last photos: Analyses, FaceResults or bare crops,
    alone or in a list, in order. Anything else contributes nothing."""
    if value is None:
        return []
    if hasattr(value, "faces"):
        return face_crops(list(value.faces))
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 4):
        return [crop for item in value for crop in face_crops(item)]
    crop = np.asarray(getattr(value, "crop", value))
    return [crop] if crop.ndim == 3 and crop.shape[-1] == 3 else []
