"""From a dataset table to batches: seeded stratified splits, decoded-image caching and tf.data input.

Images are decoded and resized once (a thread pool, Pillow releases the GIL) and kept as one uint8 array,
cached on disk by content of the file list and size: a 21,702-image UTKFace epoch then never touches JPEG
decoding again, and the pipeline never starves the model.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core import settings
from core.atomic import atomic_save_npy
from core.datasets import AGE_BINS, stratum

SPLITS = ("train", "val", "test")


def split_table(table: pd.DataFrame, fractions=(0.7, 0.15, 0.15), seed: int = 42) -> pd.Series:
    """Assign each row to 'train' / 'val' / 'test', stratified by age decade × gender × race. Within every
    stratum the shares follow `fractions`; a stratum too small to split stays in train. Same seed, same split."""
    if abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"Split fractions must sum to 1, got {fractions}.")
    rng = np.random.default_rng(seed)
    assignment = pd.Series("train", index=table.index, dtype="object")
    for _, index in sorted(table.groupby(stratum(table)).groups.items()):
        index = rng.permutation(np.asarray(index))
        n_val, n_test = int(round(len(index) * fractions[1])), int(round(len(index) * fractions[2]))
        assignment.loc[index[:n_test]] = "test"
        assignment.loc[index[n_test:n_test + n_val]] = "val"
    return assignment


def kfold_assignment(table: pd.DataFrame, k: int, seed: int = 42) -> pd.Series:
    """Fold number 0..k-1 per row, stratified the same way as `split_table`."""
    if k < 2:
        raise ValueError("k-fold needs k ≥ 2.")
    rng = np.random.default_rng(seed)
    folds = pd.Series(0, index=table.index, dtype=int)
    offset = 0
    for _, index in sorted(table.groupby(stratum(table)).groups.items()):
        index = rng.permutation(np.asarray(index))
        # continue the round-robin across strata so small strata do not all land in fold 0
        folds.loc[index] = (np.arange(len(index)) + offset) % k
        offset += len(index)
    return folds


# ------------------------------------------------------------------------------------------------ images

def decode_resize(path: str, size: int) -> np.ndarray:
    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at reduced scale when possible, much faster
        return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def _cache_file(paths: list[str], size: int) -> Path:
    digest = hashlib.sha1(("\n".join(paths) + f"|{size}").encode()).hexdigest()[:16]
    return settings.cache_dir() / f"images-{size}px-{len(paths)}-{digest}.npy"


def load_images(paths: list[str], size: int, use_cache: bool = True) -> np.ndarray:
    """All images as one (n, size, size, 3) uint8 array, decoded in parallel and cached on disk."""
    paths = [str(p) for p in paths]
    cache = _cache_file(paths, size)
    if use_cache and cache.is_file():
        try:
            images = np.load(cache, mmap_mode=None)
            if images.shape == (len(paths), size, size, 3):
                return images
        except (OSError, ValueError):
            pass  # a damaged cache is only a slower start: rebuild it
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        images = np.stack(list(pool.map(lambda p: decode_resize(p, size), paths))) if paths else \
            np.zeros((0, size, size, 3), np.uint8)
    if use_cache and len(paths) >= 256:  # tiny sets decode faster than a cache round-trip
        atomic_save_npy(cache, images)
    return images


# --------------------------------------------------------------------------------------------- targets

def age_distribution(ages: np.ndarray, sigma: float) -> np.ndarray:
    """Label-distribution target: a discretised Gaussian over whole years around each true age."""
    bins = np.arange(AGE_BINS, dtype=np.float32)
    dist = np.exp(-0.5 * ((bins[None, :] - ages[:, None]) / sigma) ** 2)
    return (dist / dist.sum(axis=1, keepdims=True)).astype(np.float32)


def targets_and_weights(table: pd.DataFrame, age_head: str, sigma: float = 2.0,
                        race_class_weights: np.ndarray | None = None) -> tuple[dict, dict]:
    """Targets per output and per-output sample weights; a missing label gets weight 0, so a head never
    trains on rows that lack its label (Adience has no race, FairFace no age in years)."""
    age = table["age"].to_numpy(dtype="float32", na_value=np.nan)
    gender = table["gender"].to_numpy(dtype="float32", na_value=np.nan)
    race = table["race"].to_numpy(dtype="float32", na_value=np.nan)
    has_age, has_gender, has_race = ~np.isnan(age), ~np.isnan(gender), ~np.isnan(race)
    age_filled = np.nan_to_num(age).clip(0, AGE_BINS - 1)
    race_int = np.nan_to_num(race).astype("int32")
    race_weight = has_race.astype("float32")
    if race_class_weights is not None:
        race_weight = race_weight * race_class_weights[race_int]
    y = {"age": age_filled[:, None], "gender": np.nan_to_num(gender)[:, None], "race": race_int}
    w = {"age": has_age.astype("float32"), "gender": has_gender.astype("float32"), "race": race_weight}
    if age_head == "distribution":
        y["age_dist"] = age_distribution(age_filled, sigma)
        w["age_dist"] = w["age"]
    return y, w


def balanced_class_weights(race: np.ndarray, classes: int = 5) -> np.ndarray:
    """n / (classes · count) per class, the usual 'balanced' weighting; absent classes get weight 1."""
    counts = np.bincount(race.astype(int), minlength=classes).astype("float64")
    weights = np.where(counts > 0, counts.sum() / (classes * np.maximum(counts, 1)), 1.0)
    return weights.astype("float32")


# ------------------------------------------------------------------------------------------------ tf.data

def augmenter(seed: int = 0):
    """Mild, face-preserving augmentation: mirror, small rotation/zoom/shift, lighting. Keras preprocessing
    layers run inside tf.data here, never inside the saved model."""
    import keras
    from keras import layers
    return keras.Sequential([
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(0.03, fill_mode="reflect", seed=seed + 1),
        layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed + 2),
        layers.RandomTranslation(0.05, 0.05, fill_mode="reflect", seed=seed + 3),
        layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 4),
        layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 5),
    ], name="augment")


def make_dataset(images: np.ndarray, targets: dict, weights: dict, batch_size: int, training: bool,
                 augment: bool = True, seed: int = 42):
    """Batches of (images, targets, sample weights). Training batches are shuffled and augmented."""
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((images, targets, weights))
    if training:
        ds = ds.shuffle(min(len(images), 20_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and augment:
        aug = augmenter(seed)
        ds = ds.map(lambda x, y, w: (tf.cast(aug(tf.cast(x, tf.float32), training=True), tf.float32), y, w),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
