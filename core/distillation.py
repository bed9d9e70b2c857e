"""Knowledge distillation: one model learns from the averaged outputs of several (an ensemble it could not ship).

An ensemble of models reads faces better than any one of them, but costs their summed size and time in the app.
Training a single model on a blend of the labels and the ensemble's outputs (soft targets) carries part of that
gain into one model's size: the teachers' probabilities say how ambiguous each face is (a 30-year-old who looks 25,
a child whose gender is a guess), which a hard label cannot.

The teachers read each training face the way the app reads one (its aligned crop and the mirror image, outputs
averaged), once, before training; the student then sees augmented copies of those faces against fixed targets.
Rows that lack a label keep weight 0 in training (core/pipeline.py), whatever the teachers say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from core.crops import load_crops
from core.errors import UserError

SOFT_HEADS = ("age_dist", "gender", "race")  # the probability heads; `age` (years) keeps the label
CHUNK = 2048  # faces per teacher call: a float32 copy of 2,048 crops at 112 px is 300 MB


class DistillationError(UserError):
    """Teachers that cannot teach this student (missing file, other heads); the message says why."""


def teacher_paths(teachers: str) -> list[Path]:
    """The comma-separated .keras files of a TrainConfig's `teachers`."""
    return [Path(part.strip()).expanduser() for part in teachers.split(",") if part.strip()]


def teacher_outputs(paths: Sequence[Path], image_paths: list[str], crops: str = "app",
                    on_progress: Callable[[str], None] = lambda message: None,
                    cut: Mapping[int, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The teachers' probability heads on these images, each model at its own input size, flip-averaged, then
    averaged over the teachers. `cut`: these images already cut, by size (the student's own crops), so a teacher
    of that size does not cut them again (a new crop cache for the training rows alone)."""
    from core.alignment import ONE_VIEW
    from core.predict import KerasPredictor
    from core.registry import ModelError, load_model
    summed: dict[str, np.ndarray] = {}
    for number, path in enumerate(paths, start=1):
        on_progress(f"Teacher {number}/{len(paths)} ({path.name}) reads {len(image_paths)} training faces…")
        try:
            model = load_model(path, allow_anywhere=True)  # named by whoever trains, as --init-from is
        except ModelError as error:
            raise DistillationError(f"Cannot learn from {path.name}: {error}") from error
        missing = [head for head in SOFT_HEADS if head not in model.output_names]
        if missing:
            raise DistillationError(f"Cannot learn from {path.name}: it has no {', '.join(missing)} output "
                                    "(teachers need a distribution age head, gender and race).")
        size = int(model.input_shape[1])
        images = cut[size] if cut and size in cut else load_crops(image_paths, size, crops)[0]
        predictor = KerasPredictor(model, views=ONE_VIEW)
        outputs = [predictor.raw_outputs(images[start:start + CHUNK]) for start in range(0, len(images), CHUNK)]
        for head in SOFT_HEADS:
            values = np.concatenate([chunk[head] for chunk in outputs]).astype("float32")
            summed[head] = summed.get(head, 0) + values
    return {head: values / len(paths) for head, values in summed.items()}


def one_hot_races(targets: dict, classes: int) -> dict:
    """Race targets as probability rows (what categorical cross-entropy takes), for a student's validation split
    and as the label half of its training blend."""
    races = np.asarray(targets["race"], dtype="int64").reshape(-1)
    return {**targets, "race": np.eye(classes, dtype="float32")[races]}


def blend_targets(targets: dict, teacher: dict[str, np.ndarray], weight: float) -> dict:
    """(1 − weight) × label + weight × teachers, head by head (labels from core.pipeline.targets_and_weights, race
    already one-hot). At weight ≤ 0.5 the labelled class stays the most likely one, so accuracy on these targets is
    accuracy on the labels."""
    blended = dict(targets)
    for head in SOFT_HEADS:
        label = np.asarray(targets[head], dtype="float32")
        blended[head] = (1 - weight) * label + weight * np.asarray(teacher[head], dtype="float32").reshape(label.shape)
    return blended
