"""Targets with masks, decoded images and the tf.data input pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.datasets import load_dataset
from core.pipeline import (
    augment_batch,
    balanced_class_weights,
    load_images,
    make_dataset,
    targets_and_weights,
)


def test_targets_mask_missing_labels_with_zero_weight():
    table = pd.DataFrame({
        "age": pd.array([30.0, None, 60.0], dtype="Float64"),
        "gender": pd.array([1, 0, None], dtype="Int64"),
        "race": pd.array([None, 2, 4], dtype="Int64"),
    })
    y, w = targets_and_weights(table, "distribution", sigma=2.0)
    np.testing.assert_array_equal(w["age"], [1, 0, 1])
    np.testing.assert_array_equal(w["gender"], [1, 1, 0])
    np.testing.assert_array_equal(w["race"], [0, 1, 1])
    np.testing.assert_array_equal(w["age_dist"], w["age"])
    assert np.isfinite(y["age"]).all() and np.isfinite(y["gender"]).all()  # NaN would poison the loss anyway
    np.testing.assert_allclose(y["age_dist"].sum(axis=1), 1.0, rtol=1e-5)
    assert y["age_dist"][2].argmax() == 60


def test_class_weights_multiply_each_heads_mask():
    table = pd.DataFrame({"age": pd.array([20.0] * 4, dtype="Float64"),
                          "gender": pd.array([0, 0, 0, 1], dtype="Int64"),
                          "race": pd.array([0, 0, 1, None], dtype="Int64")})
    gender_weights = balanced_class_weights(np.array([0, 0, 0, 1]), 2)
    np.testing.assert_allclose(gender_weights, [4 / 6, 4 / 2])
    race_weights = balanced_class_weights(np.array([0, 0, 1]), 5)
    _, w = targets_and_weights(table, "regression", race_class_weights=race_weights,
                               gender_class_weights=gender_weights)
    np.testing.assert_allclose(w["gender"], [2 / 3, 2 / 3, 2 / 3, 2])
    np.testing.assert_allclose(w["race"], [race_weights[0], race_weights[0], race_weights[1], 0])
    assert race_weights[1] > race_weights[0]  # the rarer class weighs more


@pytest.fixture(scope="module")
def small_images(synthetic_utkface):
    table = load_dataset("utkface", synthetic_utkface).table
    return table, load_images(table["path"].tolist(), 32)


def test_load_images_decodes_every_file_to_one_uint8_array(small_images):
    table, images = small_images
    assert images.shape == (len(table), 32, 32, 3) and images.dtype == np.uint8
    assert images.std() > 5  # real pixels, not an empty buffer


def _batches(ds) -> list:
    return [tuple(part.numpy() if hasattr(part, "numpy") else {k: v.numpy() for k, v in part.items()}
                  for part in batch) for batch in ds]


def test_validation_batches_are_the_images_in_order_with_targets_and_weights(small_images):
    table, images = small_images
    y, w = targets_and_weights(table, "regression")
    batches = _batches(make_dataset(images, y, w, batch_size=16, training=False))
    assert [len(b[0]) for b in batches] == [16, 16, 16]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), images)
    np.testing.assert_array_equal(np.concatenate([b[1]["age"] for b in batches]), y["age"])
    assert batches[0][2].keys() == {"age", "gender", "race"}


def test_training_batches_are_shuffled_each_epoch_and_augmented(small_images):
    table, images = small_images
    y, w = targets_and_weights(table, "regression")
    y["row"] = np.arange(len(table))  # an extra target that names each row, to find its raw pixels
    ds = make_dataset(images, y, w, batch_size=48, training=True, augment=True, seed=0)
    (x1, y1, _), = _batches(ds)
    (_, y2, _), = _batches(ds)
    assert x1.shape == (48, 32, 32, 3) and x1.dtype == np.float32
    assert ds.element_spec[0].shape.as_list() == [None, 32, 32, 3]  # static size survives augmentation
    assert sorted(y1["row"]) == list(range(48))  # every row once per epoch
    assert not np.array_equal(y1["row"], y2["row"])  # reshuffled for the next epoch
    np.testing.assert_array_equal(y1["age"], y["age"][y1["row"]])  # targets travel with their images
    assert np.abs(x1 - images[y1["row"]].astype(np.float32)).mean() > 3  # augmented, not the raw pixels
    assert x1.min() >= 0 and x1.max() <= 255


def test_training_without_augmentation_gives_the_raw_pixels(small_images):
    table, images = small_images
    y, w = targets_and_weights(table, "regression")
    (x, _, _), = _batches(make_dataset(images, y, w, batch_size=48, training=True, augment=False))
    np.testing.assert_array_equal(np.sort(x.reshape(48, -1).sum(axis=1)), np.sort(images.reshape(48, -1).sum(axis=1)))


def test_training_batches_are_reproducible_from_the_seed(small_images):
    table, images = small_images
    y, w = targets_and_weights(table, "regression")
    first = [_batches(make_dataset(images, y, w, 16, training=True, seed=5)) for _ in range(2)]
    for (x1, y1, _), (x2, y2, _) in zip(*first, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1["age"], y2["age"])


def test_each_workers_shard_holds_its_own_rows_and_together_every_row_once(small_images):
    table, images = small_images
    y, w = targets_and_weights(table, "regression")
    y["row"] = np.arange(len(table))
    shards = [np.concatenate([b[1]["row"] for b in _batches(make_dataset(images, y, w, 8, training=True,
                                                                          seed=index, shard=(3, index)))])
              for index in range(3)]
    assert [len(rows) for rows in shards] == [16, 16, 16]
    assert sorted(np.concatenate(shards)) == list(range(len(table)))  # disjoint, and nothing left out
    np.testing.assert_array_equal(np.sort(shards[1]), np.arange(1, len(table), 3))


def _pixels(n: int = 16, size: int = 24) -> np.ndarray:
    return np.random.default_rng(4).integers(0, 256, (n, size, size, 3)).astype(np.float32)


def test_augmentation_with_no_range_and_no_flip_is_the_identity():
    x = _pixels()
    out = augment_batch(x, np.array([1, 2]), rotation=0, zoom=0, shift=0, brightness=0, contrast=0, flip=False)
    np.testing.assert_allclose(out.numpy(), x, atol=1e-3)


def test_augmentation_mirrors_about_half_the_images_exactly():
    x = _pixels(32)
    out = augment_batch(x, np.array([3, 4]), rotation=0, zoom=0, shift=0, brightness=0, contrast=0).numpy()
    mirrored = [np.allclose(o, xi[:, ::-1], atol=1e-3) for o, xi in zip(out, x, strict=True)]
    unchanged = [np.allclose(o, xi, atol=1e-3) for o, xi in zip(out, x, strict=True)]
    assert all(m != u for m, u in zip(mirrored, unchanged, strict=True))  # each image is one or the other
    assert 6 <= sum(mirrored) <= 26


def test_augmentation_rotates_about_the_centre_within_range_and_keeps_the_pixel_range():
    x = np.zeros((1, 33, 33, 3), np.float32)
    x[0, 16, 16] = 255.0  # a single bright centre pixel stays put under any rotation or zoom about the centre
    out = augment_batch(x, np.array([5, 6]), shift=0, brightness=0, contrast=0, flip=False).numpy()
    assert np.unravel_index(out[0, ..., 0].argmax(), (33, 33)) == (16, 16)
    strong = augment_batch(_pixels(), np.array([7, 8]), rotation=0.19).numpy()
    assert strong.min() >= 0 and strong.max() <= 255 and np.abs(strong - _pixels()).mean() > 5


def test_group_space_targets_are_class_indices_with_masks():
    from pathlib import Path

    from core.label_spaces import ADIENCE, FAIRFACE
    fixtures = Path(__file__).parent / "fixtures"
    table = load_dataset("fairface", fixtures / "fairface").table
    y, w = targets_and_weights(table, "regression", space=FAIRFACE, race_class_weights=np.arange(1, 8))
    assert sorted(y) == ["age_group", "gender", "race"]
    assert [FAIRFACE.age_groups[i] for i in y["age_group"]] == table["age_group"].tolist()
    assert [FAIRFACE.races[i] for i in y["race"]] == table["race_label"].tolist()
    np.testing.assert_array_equal(w["race"], y["race"] + 1)  # each row weighted by its class's weight
    adience = load_dataset("adience", fixtures / "adience").table
    y, w = targets_and_weights(adience, "regression", space=ADIENCE)
    assert sorted(y) == ["age_group", "gender"] and w["age_group"].min() == 1.0
