"""Predictions in each model's own label space, end to end: a tiny FairFace model exported to TFLite predicts 9 age
groups and 7 races with probabilities through core.predict (LiteRT), an Adience model has no race, and labels,
JSON records and the CLI say so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.__main__ import main
from core.drawing import face_label
from core.face_prediction import FacePrediction, predictions, space_of_heads
from core.label_spaces import ADIENCE, FAIRFACE, UTKFACE
from core.labels import FAIRFACE_BINS, FAIRFACE_RACES
from core.predict import KerasPredictor, Predictor, predict_files
from core.registry import ModelError
from tests.support import export_beside

PHOTO = next((Path(__file__).parents[1] / "data" / "sample" / "utkface").glob("*.jpg"))  # a real face crop


def _tiny(arch: str, folder):
    from core.model_config import ModelConfig
    from core.models import build_model
    model, _ = build_model(ModelConfig.tiny(arch))
    path = folder / f"{arch}.keras"
    model.save(path)
    export_beside(path)
    return path, model


@pytest.fixture(scope="module")
def fairface_model(tmp_path_factory):
    return _tiny("fairface_cnn", tmp_path_factory.mktemp("fairface_model"))


def test_a_fairface_model_predicts_nine_groups_and_seven_races_with_litert(fairface_model):
    path, model = fairface_model
    predictor = Predictor(path.with_suffix(".tflite"))
    assert predictor.space is FAIRFACE and KerasPredictor(model).space is FAIRFACE
    photo = PHOTO
    (record,) = predict_files([str(photo)], predictor, whole_image=True)
    assert record["error"] is None and record["faces"]
    face = record["faces"][0]
    assert list(face["age_group_probs"]) == list(FAIRFACE_BINS) and list(face["race_probs"]) == list(FAIRFACE_RACES)
    assert abs(sum(face["age_group_probs"].values()) - 1) < 1e-3 and abs(sum(face["race_probs"].values()) - 1) < 1e-3
    assert face["age_group"] == max(face["age_group_probs"], key=face["age_group_probs"].get)
    # the same numbers as the Keras model (LiteRT float32, flip-averaged both ways)
    crops = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype("uint8")
    lite, keras_side = predictor.raw_outputs(crops), KerasPredictor(model).raw_outputs(crops)
    np.testing.assert_allclose(lite["age_group"], keras_side["age_group"], atol=1e-4)
    np.testing.assert_allclose(lite["race"], keras_side["race"], atol=1e-4)


def test_the_cli_prints_a_group_models_own_labels(fairface_model, capsys):
    path, _ = fairface_model
    photo = PHOTO
    assert main(["predict", str(photo), "--model", str(path), "--whole-image"]) == 0
    out = capsys.readouterr().out
    assert "age group " in out and any(race in out for race in FAIRFACE_RACES) and "years" not in out
    assert main(["predict", str(photo), "--model", str(path), "--whole-image", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert len(record["faces"][0]["race_probs"]) == 7


def test_an_adience_prediction_has_groups_and_no_race():
    groups = np.eye(8)[[4]] * 0.9 + 0.1 / 8
    (p,) = predictions({"age_group": groups, "gender": np.array([[0.8]])}, ADIENCE, flip_tta=False)
    assert p.age_group == "(25, 32)" and p.race is None and p.race_probs == {}
    assert p.age_text.startswith("age (25, 32) (") and p.race_text == "no race head"
    assert 20 < p.age < 40 and p.age_std > 0  # the group middles' weighted mean and spread, for years-only views
    assert face_label(1, p) == "1: age (25, 32), female 80%"


def test_a_utkface_prediction_reads_as_before():
    p = FacePrediction(31.4, 4.2, 0.2, dict(zip(UTKFACE.races, (0.6, 0.1, 0.1, 0.1, 0.1), strict=True)))
    assert p.age_text == "31 ± 4 years" and p.race_text == "White (60%)"
    assert face_label(2, p) == "2: 31±4 y, male 80%, White"


def test_outputs_of_no_label_space_are_refused_clearly():
    with pytest.raises(ModelError, match="match no label space"):
        space_of_heads({"age_group": 8, "gender": 1, "race": 5})
