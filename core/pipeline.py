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


def _stratified_order(table: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Row positions grouped by stratum (age decade × gender × race), shuffled within each stratum."""
    groups = pd.Series(np.arange(len(table))).groupby(stratum(table).to_numpy()).indices
    parts = [rng.permutation(groups[key]) for key in sorted(groups)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=int)


def split_table(table: pd.DataFrame, fractions=(0.7, 0.15, 0.15), seed: int = 42) -> pd.Series:
    """Assign each row to 'train' / 'val' / 'test', stratified by age decade × gender × race. Same seed, same
    split.

    Rows are walked stratum by stratum and each goes to the split furthest behind its quota. Every stratum
    then gets its share to within a row or two, and the totals match `fractions` exactly even when most strata
    hold one or two faces (rounding per stratum would leave a small set with no validation or test rows)."""
    fractions = np.asarray(fractions, dtype=float)
    if len(fractions) != 3 or (fractions < 0).any() or abs(fractions.sum() - 1) > 1e-6:
        raise ValueError(f"Split fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}.")
    order = _stratified_order(table, np.random.default_rng(seed))
    labels = np.empty(len(table), dtype=object)
    counts = np.zeros(3)
    for seen, position in enumerate(order, start=1):
        choice = int(np.argmax(fractions * seen - counts))
        counts[choice] += 1
        labels[position] = SPLITS[choice]
    return pd.Series(labels, index=table.index, dtype="object")


def kfold_assignment(table: pd.DataFrame, k: int, seed: int = 42) -> pd.Series:
    """Fold number 0..k-1 per row, stratified the same way as `split_table`: a round-robin over the rows
    grouped by stratum, so each fold holds every stratum's share to within one row."""
    if k < 2:
        raise ValueError("k-fold needs k ≥ 2.")
    if k > len(table):
        raise ValueError(f"k-fold with k={k} needs at least {k} rows, got {len(table)}.")
    order = _stratified_order(table, np.random.default_rng(seed))
    folds = np.empty(len(table), dtype=int)
    folds[order] = np.arange(len(order)) % k
    return pd.Series(folds, index=table.index, dtype=int)


def fold_split(folds: pd.Series, fold: int, val_fraction: float = 0.15, seed: int = 42,
               table: pd.DataFrame | None = None) -> pd.Series:
    """train / val / test for one cross-validation fold: the fold itself is the test set; a stratified
    `val_fraction` of the rest (when `table` is given, else a seeded random one) watches for overfitting."""
    split = pd.Series("train", index=folds.index, dtype="object")
    split[folds == fold] = "test"
    rest = folds.index[folds != fold]
    if table is not None:
        inner = split_table(table.loc[rest], (1 - val_fraction, val_fraction, 0.0), seed)
        split.loc[rest] = inner.to_numpy()
    else:
        picked = np.random.default_rng(seed).permutation(len(rest))[: int(round(len(rest) * val_fraction))]
        split.loc[rest[picked]] = "val"
    return split


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
                        race_class_weights: np.ndarray | None = None,
                        gender_class_weights: np.ndarray | None = None) -> tuple[dict, dict]:
    """Targets per output and per-output sample weights; a missing label gets weight 0, so a head never
    trains on rows that lack its label (Adience has no race, FairFace no age in years). Class weights, when
    given, multiply that head's weights: Keras' own `class_weight` cannot address one output of several."""
    age = table["age"].to_numpy(dtype="float32", na_value=np.nan)
    gender = table["gender"].to_numpy(dtype="float32", na_value=np.nan)
    race = table["race"].to_numpy(dtype="float32", na_value=np.nan)
    has_age, has_gender, has_race = ~np.isnan(age), ~np.isnan(gender), ~np.isnan(race)
    age_filled = np.nan_to_num(age).clip(0, AGE_BINS - 1)
    race_int = np.nan_to_num(race).astype("int32")
    gender_int = np.nan_to_num(gender).astype("int32")
    race_weight, gender_weight = has_race.astype("float32"), has_gender.astype("float32")
    if race_class_weights is not None:
        race_weight = race_weight * np.asarray(race_class_weights, dtype="float32")[race_int]
    if gender_class_weights is not None:
        gender_weight = gender_weight * np.asarray(gender_class_weights, dtype="float32")[gender_int]
    y = {"age": age_filled[:, None], "gender": gender_int.astype("float32")[:, None], "race": race_int}
    w = {"age": has_age.astype("float32"), "gender": gender_weight, "race": race_weight}
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
    """Batches of (images, targets, sample weights). Training batches are shuffled and augmented.

    The decoded images already sit in memory (`load_images`), so the pipeline shuffles row indices — a full
    permutation per epoch, no shuffle buffer holding a second copy of the images — gathers each batch in one
    op and augments whole batches in parallel with training."""
    import tensorflow as tf
    tensors = tf.nest.map_structure(tf.convert_to_tensor, (images, targets, weights))
    ds = tf.data.Dataset.range(len(images))
    if training:
        ds = ds.shuffle(max(1, len(images)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda rows: tf.nest.map_structure(lambda t: tf.gather(t, rows), tensors),
                num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment:
        aug = augmenter(seed)
        ds = ds.map(lambda x, y, w: (aug(tf.cast(x, tf.float32), training=True), y, w),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
