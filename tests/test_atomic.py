"""Atomic writes: all or nothing, no temporary files left, ordinary permissions."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from core.atomic import (
    atomic_path,
    atomic_save_model,
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_text,
    read_json_object,
)


def test_write_text_creates_and_replaces_without_leftovers(tmp_path):
    target = tmp_path / "sub" / "config.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["config.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_bytes(target, b"good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half-writ")
        raise RuntimeError("crash mid-save")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_new_files_get_ordinary_permissions_and_replaced_files_keep_theirs(tmp_path):
    target = tmp_path / "history.csv"
    atomic_write_text(target, "a")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's owner-only 0600
    target.chmod(0o640)
    atomic_write_text(target, "b")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_numpy_arrays_and_keras_models_round_trip(tmp_path):
    import keras
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    atomic_save_npy(tmp_path / "cache.npy", array)
    np.testing.assert_array_equal(np.load(tmp_path / "cache.npy"), array)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(inputs))
    atomic_save_model(model, tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.get_layer("out").get_weights()[0], model.get_layer("out").get_weights()[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.npy", "model.keras"]


def test_json_objects_read_back_and_anything_else_reads_as_none(tmp_path):
    atomic_write_text(tmp_path / "ok.json", '{"status": "finished"}')
    (tmp_path / "half.json").write_text('{"status": "fin')
    (tmp_path / "list.json").write_text("[1, 2]")
    assert read_json_object(tmp_path / "ok.json") == {"status": "finished"}
    for name in ("half.json", "list.json", "missing.json"):
        assert read_json_object(tmp_path / name) is None
