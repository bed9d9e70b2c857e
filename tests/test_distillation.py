"""Distillation: the teachers' averaged reading of the training faces, its blend with the labels, and a student run
that learns from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.crops import load_crops
from core.distillation import DistillationError, blend_targets, one_hot_races, teacher_outputs, teacher_paths
from core.registry import load_model
from core.training import TrainConfig, TrainingError, train


def _images(folder: Path) -> list[str]:
    return sorted(str(path) for path in folder.glob("*.jpg"))


def test_teachers_are_a_comma_separated_list_of_files():
    assert teacher_paths(" a.keras, ,~/b.keras") == [Path("a.keras"), Path("~/b.keras").expanduser()]
    assert teacher_paths("") == []


def test_a_half_weight_blend_keeps_the_labelled_class_on_top():
    labels = one_hot_races({"age": np.array([[30.0], [60.0]]), "gender": np.array([[1.0], [0.0]]),
                            "age_dist": np.eye(4, dtype="float32")[[1, 2]], "race": np.array([0, 3])}, classes=5)
    np.testing.assert_array_equal(labels["race"], np.eye(5)[[0, 3]])
    teachers = {"race": np.array([[0.1, 0.9, 0, 0, 0], [0, 0, 0, 0.2, 0.8]]), "gender": np.array([[0.2], [0.4]]),
                "age_dist": np.full((2, 4), 0.25)}
    blended = blend_targets(labels, teachers, weight=0.5)
    np.testing.assert_allclose(blended["race"][0], [0.55, 0.45, 0, 0, 0])
    np.testing.assert_allclose(blended["gender"], [[0.6], [0.2]])
    np.testing.assert_allclose(blended["age_dist"][0], [0.125, 0.625, 0.125, 0.125])
    assert (blended["race"].argmax(axis=1) == [0, 3]).all()
    np.testing.assert_array_equal(blended["age"], labels["age"])  # years stay the label's
    assert np.allclose(blended["race"].sum(axis=1), 1) and np.allclose(blended["age_dist"].sum(axis=1), 1)
    np.testing.assert_array_equal(blend_targets(labels, teachers, weight=0.0)["race"], labels["race"])


def test_teachers_read_each_face_and_its_mirror_and_are_averaged(synthetic_utkface, tiny_residual_model):
    paths = _images(synthetic_utkface)
    one = teacher_outputs([tiny_residual_model], paths, crops="dataset")
    assert set(one) == {"age_dist", "gender", "race"}
    assert one["race"].shape == (len(paths), 5) and np.allclose(one["race"].sum(axis=1), 1, atol=1e-5)

    model = load_model(tiny_residual_model, allow_anywhere=True)
    images = load_crops(paths, 32, "dataset")[0].astype("float32")
    direct, mirrored = model.predict(images, verbose=0), model.predict(images[:, :, ::-1], verbose=0)
    np.testing.assert_allclose(one["gender"], (direct["gender"] + mirrored["gender"]) / 2, atol=1e-5)
    twice = teacher_outputs([tiny_residual_model, tiny_residual_model], paths, crops="dataset")
    np.testing.assert_allclose(twice["race"], one["race"], atol=1e-6)

    blank = np.zeros_like(images)  # crops the student already cut at the teacher's size are read, not cut again
    given = teacher_outputs([tiny_residual_model], paths, crops="dataset", cut={32: blank})
    np.testing.assert_allclose(given["gender"], model.predict(blank, verbose=0)["gender"], atol=1e-5)
    assert not np.allclose(given["gender"], one["gender"])


def test_a_teacher_without_the_probability_heads_or_file_is_refused(synthetic_utkface, tiny_models, tmp_path):
    paths = _images(synthetic_utkface)
    with pytest.raises(DistillationError, match="no age_dist output"):
        teacher_outputs([tiny_models["custom_cnn"]], paths, crops="dataset")  # a regression age head
    with pytest.raises(DistillationError, match="Cannot learn from missing.keras"):
        teacher_outputs([tmp_path / "missing.keras"], paths, crops="dataset")


def test_a_student_learns_from_its_teachers_and_is_validated_on_labels(synthetic_utkface, tiny_residual_model,
                                                                       tmp_path):
    cfg = TrainConfig.tiny("custom_cnn", data_dir=str(synthetic_utkface), out_dir=str(tmp_path), batch_size=8,
                           limit=0, crops="dataset", teachers=str(tiny_residual_model), teacher_weight=0.3,
                           model_overrides={"age_head": "distribution"})
    progress = train(cfg)
    assert progress.status == "finished"
    assert any("Learning from 1 teacher model (residual_cnn.keras), at weight 0.3" in note
               for note in progress.metrics["notes"])
    epoch = progress.history[-1]
    assert 0 <= epoch["val_race_accuracy"] <= 1 and np.isfinite(epoch["loss"])


def test_teachers_need_a_student_with_the_same_probability_heads():
    with pytest.raises(TrainingError, match="distribution age head only"):
        TrainConfig(teachers="a.keras").validate()  # the default regression age head
    with pytest.raises(TrainingError, match="between 0 and 1"):
        TrainConfig.tiny(teacher_weight=1.5, model_overrides={"age_head": "distribution"}).validate()
