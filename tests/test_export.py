"""TFLite export (core.export): float32, float16 and int8 files of a tiny model predict like the Keras model,
outputs keep their names, and `python -m core export` writes a file and reports its size; `ensure_tflite` keeps
the app's .tflite beside each .keras current (in a child process for the server); the shipped .tflite predicts
like the shipped .keras."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from core import export, settings
from core.__main__ import main
from core.registry import DEFAULT_MODEL_NAME, ModelError
from tests.support import write_run


@pytest.fixture(scope="module")
def model_path(tiny_models):
    return tiny_models["residual_cnn"]  # the shipped architecture, with a distribution head: four outputs


@pytest.fixture(scope="module")
def keras_model(model_path):
    from core.registry import load_model
    return load_model(model_path, allow_anywhere=True)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return export.representative_images(settings.SAMPLE_DIR, 32, count=24)


@pytest.fixture(scope="module")
def exported(model_path, faces, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("tflite")
    return {quantize: export.export_tflite(model_path, folder / f"{quantize}.tflite", quantize, faces)
            for quantize in export.QUANTIZATIONS}


def test_float32_file_predicts_like_keras(exported, keras_model, faces):
    result = exported[None]
    assert result.path.is_file() and result.path.stat().st_size == result.size_bytes > 0
    assert set(result.outputs) == {"age", "age_dist", "gender", "race"}
    diff = export.compare(keras_model, result.path, faces[:6])
    assert set(diff) == {"age", "age_dist", "gender", "race"}
    assert diff["age"] < 1e-2 and max(diff["gender"], diff["race"], diff["age_dist"]) < 1e-4, diff


def test_float16_file_is_smaller_and_close(exported, keras_model, faces):
    result = exported["float16"]
    assert result.size_bytes < 0.75 * exported[None].size_bytes
    diff = export.compare(keras_model, result.path, faces[:6])
    assert diff["age"] < 1.0 and max(diff["gender"], diff["race"]) < 1e-2, diff


def test_int8_file_is_smallest_and_gives_sane_outputs(exported, keras_model, faces):
    result = exported["int8"]
    assert result.size_bytes < exported["float16"].size_bytes
    outputs = export.run_tflite(result.path, faces[:5])
    assert outputs["age"].shape == (5, 1) and outputs["race"].shape == (5, 5) and outputs["age_dist"].shape == (5, 117)
    assert all(np.isfinite(v).all() for v in outputs.values())
    assert ((outputs["gender"] >= 0) & (outputs["gender"] <= 1)).all()
    np.testing.assert_allclose(outputs["race"].sum(axis=1), 1.0, atol=0.05)
    # Calibrated int8 stays in the neighbourhood of the float model: a loose bound that still catches garbage.
    assert export.compare(keras_model, result.path, faces[:5])["gender"] < 0.2


def test_run_tflite_resizes_crops_and_handles_any_batch(exported, keras_model, faces):
    from PIL import Image
    big = np.stack([np.asarray(Image.fromarray(face).resize((64, 64))) for face in faces[:3]])
    outputs = export.run_tflite(exported[None].path.read_bytes(), big)
    assert outputs["race"].shape == (3, 5)
    assert export.run_tflite(exported[None].path, faces[:1])["age"].shape == (1, 1)


def test_three_output_model_keeps_its_names(tiny_models, tmp_path, faces):
    result = export.export_tflite(tiny_models["custom_cnn"], tmp_path / "m.tflite")
    assert set(result.outputs) == {"age", "gender", "race"}
    assert set(export.run_tflite(result.path, faces[:2])) == {"age", "gender", "race"}


def test_positional_output_names_are_mapped_in_flattening_order():
    assert export._names(("output_2", "output_0", "output_1")) == ["race", "age", "gender"]
    assert export._names(("output_0", "output_1", "output_2", "output_3")) == ["age", "age_dist", "gender", "race"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"quantize": "int4"}, "Unknown quantisation"),
    ({"quantize": "int8"}, "needs representative images"),
])
def test_bad_options_raise_export_error(model_path, tmp_path, kwargs, message):
    with pytest.raises(export.ExportError, match=message):
        export.export_tflite(model_path, tmp_path / "x.tflite", **kwargs)
    assert not (tmp_path / "x.tflite").exists()


def test_representative_images_need_a_folder_of_images(tmp_path):
    with pytest.raises(export.ExportError, match="does not exist"):
        export.representative_images(tmp_path / "missing", 32)
    with pytest.raises(export.ExportError, match="No images"):
        export.representative_images(tmp_path, 32)
    images = export.representative_images(settings.SAMPLE_DIR, 40, count=5)
    assert images.shape == (5, 40, 40, 3) and images.dtype == np.uint8


def test_default_out_path_sits_beside_the_model(tmp_path):
    assert export.default_out_path(tmp_path / "m.keras") == tmp_path / "m.tflite"
    assert export.default_out_path(tmp_path / "m.keras", "int8") == tmp_path / "m.int8.tflite"


def test_cli_exports_and_reports_size_and_agreement(model_path, tmp_path, capsys):
    out = tmp_path / "cli.tflite"
    assert main(["export", "--model", str(model_path), "--format", "tflite", "--quantize", "float16",
                 "--data", str(settings.SAMPLE_DIR), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and f"wrote {out}" in printed and "MB, float16" in printed
    assert "largest difference from Keras on 16 images" in printed and "race" in printed


def test_cli_int8_without_images_is_an_error(model_path, tmp_path, capsys):
    assert main(["export", "--model", str(model_path), "--quantize", "int8", "--data", str(tmp_path),
                 "--out", str(tmp_path / "x.tflite")]) == 2
    assert "error: No images" in capsys.readouterr().err


def test_cli_no_compare_writes_the_file_only(model_path, tmp_path, capsys):
    out = tmp_path / "quiet.tflite"
    assert main(["export", "--model", str(model_path), "--out", str(out), "--no-compare"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "wrote" in printed and "largest difference" not in printed


# -------------------------------------------------------------------------------------------- ensure_tflite

@pytest.fixture
def fresh_model(model_path, tmp_path):
    """A copy of the tiny model with no .tflite beside it yet."""
    return shutil.copy(model_path, tmp_path / "fresh.keras")


def test_ensure_tflite_exports_once_then_only_when_the_model_changes(fresh_model):
    tflite = fresh_model.with_suffix(".tflite")
    assert not export.tflite_is_current(fresh_model)
    assert export.ensure_tflite(fresh_model, in_process=True) == tflite and tflite.is_file()
    assert export.tflite_is_current(fresh_model)
    written = tflite.stat().st_mtime_ns
    export.ensure_tflite(fresh_model, in_process=True)
    assert tflite.stat().st_mtime_ns == written  # current: left alone
    older = fresh_model.stat().st_mtime_ns - 10**9
    os.utime(tflite, ns=(older, older))  # the .keras was replaced since (retrained, re-shipped)
    assert not export.tflite_is_current(fresh_model)
    export.ensure_tflite(fresh_model, in_process=True)
    assert tflite.stat().st_mtime_ns > older and export.tflite_is_current(fresh_model)
    future = written + 3600 * 10**9  # a .keras stamped in the future: exported once, not on every call
    os.utime(fresh_model, ns=(future, future))
    export.ensure_tflite(fresh_model, in_process=True)
    assert export.tflite_is_current(fresh_model)


def test_ensure_tflite_exports_in_a_child_process_by_default(fresh_model, faces):
    tflite = export.ensure_tflite(fresh_model)  # what the server does: its own process never imports TensorFlow
    assert tflite == fresh_model.with_suffix(".tflite")
    assert set(export.run_tflite(tflite, faces[:2])) == {"age", "age_dist", "gender", "race"}


def test_a_failed_child_export_says_why(tmp_path):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(export.ExportError, match="Cannot prepare broken.keras for fast inference: Cannot load"):
        export.ensure_tflite(broken)
    assert not broken.with_suffix(".tflite").exists()
    with pytest.raises(ModelError, match="took over"):  # ExportError is a ModelError: pages already catch it
        export.ensure_tflite(broken, timeout=0.01)
    with pytest.raises(ModelError, match="not found"):
        export.ensure_tflite(tmp_path / "missing.keras")


# -------------------------------------------------------------------------------------------- shipped model

def test_the_shipped_tflite_predicts_like_the_shipped_keras_model():
    """Whatever model is shipped (it may be replaced by a newer one), its .tflite must be its own export."""
    from core.predict import KerasPredictor, Predictor
    from core.registry import load_model
    keras_path = settings.MODELS_DIR / f"{DEFAULT_MODEL_NAME}.keras"
    if not keras_path.is_file():
        pytest.skip("no shipped model")
    tflite = keras_path.with_suffix(".tflite")
    assert export.tflite_is_current(keras_path), (
        f"{tflite.name} is missing or older than {keras_path.name}: re-export it with "
        f"`python -m core export --model models/{keras_path.name}` (`python -m core ship` does it)")
    lite = Predictor(tflite)
    crops = export.representative_images(settings.SAMPLE_DIR, lite.img_size, count=32)
    keras_out = KerasPredictor(load_model(keras_path)).raw_outputs(crops)  # both with flip averaging, as the app
    lite_out = lite.raw_outputs(crops)
    differences = {name: float(np.max(np.abs(lite_out[name] - keras_out[name]))) for name in keras_out}
    # Measured on the shipped model: age 1.5e-5 years, probabilities within 5e-7 (float32 rounding only)
    assert differences["age"] < 1e-3 and differences["age_flip"] < 1e-3, differences
    assert max(differences[name] for name in ("gender", "race", "age_dist")) < 1e-4, differences


def test_shipping_a_run_writes_the_tflite_beside_the_shipped_model(model_path, tmp_path):
    """`python -m core ship` leaves models/<name>.tflite, newer than <name>.keras: the app predicts at once."""

    import pandas as pd

    from core.datasets import load_dataset
    from core.modelcard import ship_run
    from core.training import TrainConfig
    config = TrainConfig.tiny("residual_cnn", model_overrides={"age_head": "distribution"},
                              data_dir=str(settings.SAMPLE_DIR)).to_dict()
    run = write_run(tmp_path / "runs", model=model_path, config=config, metrics=None)
    paths = load_dataset("utkface", settings.SAMPLE_DIR).table["path"].head(40)
    pd.DataFrame({"path": paths, "split": ["test" if i % 2 else "train" for i in range(40)]}).to_csv(
        run / "split.csv", index=False)
    card = ship_run(run, settings.SAMPLE_DIR, name="tiny", models_dir=tmp_path / "models")
    shipped = tmp_path / "models" / "tiny.keras"
    assert card["tflite_file"] == "tiny.tflite" and export.tflite_is_current(shipped)
    assert set(export.run_tflite(shipped.with_suffix(".tflite"), np.zeros((1, 32, 32, 3)))) >= {"age", "race"}
