"""The face a saliency map explains (core.saliency_faces): an upload's first face cut as on the Predict page, or
taken whole, and the crops in what the Predict page keeps."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core import saliency_faces, settings
from tests.support import noise_crop


@pytest.fixture(scope="module")
def predictor(tiny_models):
    from core.predict import KerasPredictor
    from core.registry import load_model
    return KerasPredictor(load_model(tiny_models["custom_cnn"], allow_anywhere=True))


def test_an_upload_goes_through_face_detection_or_is_taken_whole(predictor):
    sample = sorted(settings.SAMPLE_DIR.glob("*.jpg"))[0].read_bytes()
    crop, note = saliency_faces.face_crop_from_bytes(sample, predictor)
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
    assert note is None or "No face" in note
    buffer = io.BytesIO()
    Image.fromarray(np.full((120, 80, 3), 200, np.uint8)).save(buffer, format="PNG")  # nothing to detect
    crop, note = saliency_faces.face_crop_from_bytes(buffer.getvalue(), predictor)
    assert crop.shape == (32, 32, 3) and "No face was detected" in note


def test_an_upload_that_is_not_an_image_is_an_image_error(predictor):
    from core.images import ImageError
    with pytest.raises(ImageError):
        saliency_faces.face_crop_from_bytes(b"not an image at all", predictor)


def test_face_crops_reads_what_the_predict_page_keeps():
    from types import SimpleNamespace
    crop = noise_crop()
    analysis = SimpleNamespace(faces=[SimpleNamespace(crop=crop), SimpleNamespace(crop=crop[::-1])])
    face_crops = saliency_faces.face_crops
    assert len(face_crops(analysis)) == 2 and len(face_crops([analysis, analysis])) == 4
    assert face_crops([crop])[0] is not None and face_crops(crop[None])[0].shape == crop.shape
    assert face_crops(None) == [] and face_crops("nonsense") == []
