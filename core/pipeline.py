"""From a dataset table to batches: decoded-image caching, targets with masks and tf.data input (the split that
chooses the rows is core/splits.py).

Images are decoded and resized once (a thread pool, Pillow releases the GIL) and kept as one uint8 array,
cached on disk by content of the file list and size: a 21,702-image UTKFace epoch then never touches JPEG
decoding again, and the pipeline never starves the model.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from PIL import Image

from core import settings
from core.atomic import atomic_save_npy
from core.label_spaces import LabelSpace, true_age_groups, true_races
from core.labels import AGE_BINS

# ------------------------------------------------------------------------------------------------ images

def decode_resize(path: str, size: int) -> np.ndarray:
    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at reduced scale when possible, much faster
        return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def cached_array(name: str, shape: tuple[int, ...], build, use_cache: bool = True) -> np.ndarray:
    """`build()`'s array, kept as `<cache dir>/<name>.npy`; a missing, damaged or mis-shaped cache is rebuilt."""
    cache = settings.cache_dir() / f"{name}.npy"
    if use_cache and cache.is_file():
        try:
            array = np.load(cache)
            if array.shape == shape:
                return array
        except (OSError, ValueError):
            pass  # a damaged cache is only a slower start: rebuild it
    array = build()
    if use_cache:
        atomic_save_npy(cache, array)
    return array


def load_images(paths: list[str], size: int, use_cache: bool = True) -> np.ndarray:
    """All images as one (n, size, size, 3) uint8 array, decoded in parallel and cached on disk."""
    paths = [str(p) for p in paths]
    digest = hashlib.sha1(("\n".join(paths) + f"|{size}").encode()).hexdigest()[:16]

    def build() -> np.ndarray:
        if not paths:
            return np.zeros((0, size, size, 3), np.uint8)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            return np.stack(list(pool.map(lambda p: decode_resize(p, size), paths)))
    # tiny sets decode faster than a cache round-trip
    return cached_array(f"images-{size}px-{len(paths)}-{digest}", (len(paths), size, size, 3), build,
                        use_cache and len(paths) >= 256)


# --------------------------------------------------------------------------------------------- targets

def age_distribution(ages: np.ndarray, sigma: float) -> np.ndarray:
    """Label-distribution target: a discretised Gaussian over whole years around each true age."""
    bins = np.arange(AGE_BINS, dtype=np.float32)
    dist = np.exp(-0.5 * ((bins[None, :] - ages[:, None]) / sigma) ** 2)
    return (dist / dist.sum(axis=1, keepdims=True)).astype(np.float32)


def targets_and_weights(table: pd.DataFrame, age_head: str, sigma: float = 2.0,
                        race_class_weights: np.ndarray | None = None,
                        gender_class_weights: np.ndarray | None = None,
                        space: LabelSpace | None = None) -> tuple[dict, dict]:
    """Targets per output and per-output sample weights; a missing label gets weight 0, so a head never
    trains on rows that lack its label (Adience has no race, FairFace no age in years). Class weights, when
    given, multiply that head's weights: Keras' own `class_weight` cannot address one output of several.
    A `space` with age groups (core/label_spaces.py) gets its own heads' targets: `age_group` and its races."""
    if space is not None and not space.age_in_years:
        return _group_targets(table, space, race_class_weights, gender_class_weights)
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


def _class_target(index: np.ndarray, class_weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(class index with missing rows at 0, weight: 0 where missing, else its class weight or 1)."""
    known = index >= 0
    filled = np.where(known, index, 0).astype("int32")
    weight = known.astype("float32")
    if class_weights is not None:
        weight = weight * np.asarray(class_weights, dtype="float32")[filled]
    return filled, weight


def _group_targets(table: pd.DataFrame, space: LabelSpace, race_class_weights, gender_class_weights):
    gender = table["gender"].fillna(-1).to_numpy(dtype="int64")
    groups, group_weight = _class_target(true_age_groups(table, space), None)
    gender_int, gender_weight = _class_target(gender, gender_class_weights)
    y = {"age_group": groups, "gender": gender_int.astype("float32")[:, None]}
    w = {"age_group": group_weight, "gender": gender_weight}
    if space.races is not None:
        y["race"], w["race"] = _class_target(true_races(table, space), race_class_weights)
    return y, w


def balanced_class_weights(race: np.ndarray, classes: int = 5) -> np.ndarray:
    """n / (classes · count) per class, the usual 'balanced' weighting; absent classes get weight 1."""
    counts = np.bincount(race.astype(int), minlength=classes).astype("float64")
    weights = np.where(counts > 0, counts.sum() / (classes * np.maximum(counts, 1)), 1.0)
    return weights.astype("float32")


# ------------------------------------------------------------------------------------------------ tf.data

# Mild, face-preserving augmentation ranges: a face stays a face, and its age, gender and race labels stay true.
ROTATION = 0.19  # radians either way (~11°)
ZOOM = 0.1  # scale 0.9–1.1
SHIFT = 0.05  # of the image size, each axis
BRIGHTNESS = 0.15  # of the 0–255 range
CONTRAST = 0.2  # factor 0.8–1.2 around each image's channel means


def augment_batch(images, seed, rotation: float = ROTATION, zoom: float = ZOOM, shift: float = SHIFT,
                  brightness: float = BRIGHTNESS, contrast: float = CONTRAST, flip: bool = True):
    """Random mirror, rotation, zoom and shift, composed into one affine warp per image (a single bilinear
    resampling: sharper, and a third of the CPU of three Keras layers applied in turn), then brightness and
    contrast. `images`: float32 (n, h, w, 3) in 0–255; `seed`: int64 pair; same seed, same result."""
    import tensorflow as tf
    seeds = tf.random.experimental.stateless_split(seed, 6)

    def uniform(shape, which, limit, centre=0.0):
        return tf.random.stateless_uniform(shape, seeds[which], centre - limit, centre + limit)

    n = tf.shape(images)[0]
    h, w = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
    mirror = tf.random.stateless_uniform([n], seeds[0]) < (0.5 if flip else 0.0)
    angle, scale = uniform([n], 1, rotation), uniform([n], 2, zoom, 1.0)
    dx, dy = tf.unstack(uniform([n, 2], 3, shift) * tf.stack([w, h]), axis=1)
    # The warp maps each output pixel back to its input position: undo the shift, scale and rotation about
    # the centre, then mirror. Rows: x_in = a0·x + a1·y + a2, y_in = b0·x + b1·y + b2.
    cx, cy, cos, sin = (w - 1) / 2, (h - 1) / 2, tf.cos(angle), tf.sin(angle)
    a0, a1, a2 = cos / scale, sin / scale, cx - (cos * (cx + dx) + sin * (cy + dy)) / scale
    b0, b1, b2 = -sin / scale, cos / scale, cy + (sin * (cx + dx) - cos * (cy + dy)) / scale
    sign, offset = tf.where(mirror, -1.0, 1.0), tf.where(mirror, w - 1, 0.0)
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([sign * a0, sign * a1, sign * a2 + offset, b0, b1, b2, zeros, zeros], axis=1)
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")
    # The raw op forgets the static height and width; without them the model's graph is traced for any size.
    images = tf.ensure_shape(warped, images.shape)
    images = images + uniform([n, 1, 1, 1], 4, brightness) * 255.0
    means = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    images = (images - means) * uniform([n, 1, 1, 1], 5, contrast, 1.0) + means
    return tf.clip_by_value(images, 0.0, 255.0)


def make_dataset(images: np.ndarray, targets: dict, weights: dict, batch_size: int, training: bool,
                 augment: bool = True, seed: int = 42, shard: tuple[int, int] = (1, 0)):
    """Batches of (images, targets, sample weights). Training batches are shuffled and augmented.

    The decoded images already sit in memory (`load_images`), so the pipeline shuffles row indices — a full
    permutation per epoch, no shuffle buffer holding a second copy of the images — gathers each batch in one
    op and augments whole batches in parallel with training. Augmentation seeds come from a seeded stream that
    differs every epoch, so runs are reproducible and epochs are not.

    `shard` (count, index): this worker's rows of a cluster, every count-th from index (core/distribute.py), taken
    before anything is gathered or augmented."""
    import tensorflow as tf
    tensors = tf.nest.map_structure(tf.convert_to_tensor, (images, targets, weights))
    ds = tf.data.Dataset.range(len(images))
    if shard[0] > 1:
        ds = ds.shard(*shard)
    if training:
        ds = ds.shuffle(max(1, len(images)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda rows: tf.nest.map_structure(lambda t: tf.gather(t, rows), tensors),
                num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda batch, pair: (augment_batch(tf.cast(batch[0], tf.float32), pair), *batch[1:]),
            num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
