"""One face's prediction in its model's label space (core/label_spaces.py), and a batch of model outputs turned into
predictions: age in years (± the model's spread) or a group head's probabilities, gender, and the space's races (none
for Adience). No TensorFlow or LiteRT here: core/predict.py runs the models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.label_spaces import LabelSpace, predicted_years, space_of_outputs, years_of_groups
from core.labels import AGE_BINS, GENDERS
from core.registry import ModelError

HEADS = ("age", "age_group", "gender", "race")  # the outputs a label space is read from (not age_dist)


def age_and_spread(outputs: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted age (`predicted_years`) and, for distribution heads, the distribution's standard deviation (the
    model's own uncertainty)."""
    age = predicted_years(outputs)
    if "age_dist" not in outputs:
        return age, None
    dist = np.asarray(outputs["age_dist"], dtype="float64")
    years = np.arange(AGE_BINS)[None, :]
    mean = (dist * years).sum(axis=1, keepdims=True)
    return age, np.sqrt(np.maximum((dist * (years - mean) ** 2).sum(axis=1), 0))


@dataclass(frozen=True)
class FacePrediction:
    """One face's prediction in its model's label space (core/label_spaces.py). A group-head model (FairFace's,
    Adience's) fills `age_group_probs`, and its `age` ± `age_std` are the probability-weighted middle of its groups
    and their spread, for views that need years; `race_probs` holds the space's races, none for Adience."""
    age: float
    age_std: float  # the model's spread (distribution head) or the flip disagreement (regression head)
    female_prob: float
    race_probs: dict[str, float]
    age_group_probs: dict[str, float] = field(default_factory=dict)

    @property
    def age_group(self) -> str | None:
        return max(self.age_group_probs, key=self.age_group_probs.get) if self.age_group_probs else None

    @property
    def age_text(self) -> str:
        """"31 ± 4 years", or a group model's most likely group: "age 20-29 (64%)"."""
        if self.age_group is None:
            return f"{self.age:.0f} ± {self.age_std:.0f} years"
        return f"age {self.age_group} ({self.age_group_probs[self.age_group]:.0%})"

    @property
    def race_text(self) -> str:
        return f"{self.race} ({self.race_probs[self.race]:.0%})" if self.race else "no race head"

    @property
    def gender(self) -> str:
        return GENDERS[int(self.female_prob >= 0.5)]

    @property
    def gender_prob(self) -> float:
        """Probability of the predicted gender."""
        return self.female_prob if self.female_prob >= 0.5 else 1 - self.female_prob

    @property
    def race(self) -> str | None:
        return max(self.race_probs, key=self.race_probs.get) if self.race_probs else None


def predictions(outputs: dict[str, np.ndarray], space: LabelSpace, flip_tta: bool) -> list[FacePrediction]:
    """A batch of model outputs (flip-averaged; `age_flip` the mirror images' years) as one prediction per face."""
    groups = np.asarray(outputs["age_group"], dtype="float64") if "age_group" in outputs else None
    if groups is not None:
        age, std = years_of_groups(groups, space)
    else:
        age, std = age_and_spread(outputs)
    if std is None:  # regression head: the flip disagreement is the only spread we have
        flipped = outputs.get("age_flip", outputs["age"]).reshape(-1)
        std = np.abs(flipped - age) if flip_tta else np.zeros_like(age)
    female = outputs["gender"].reshape(-1)
    races = outputs.get("race")

    def named(values, names) -> dict[str, float]:
        return {} if values is None else {name: float(v) for name, v in zip(names, values, strict=True)}
    return [
        FacePrediction(float(age[i]), float(std[i]), float(female[i]),
                       named(None if races is None else races[i], space.races or ()),
                       named(None if groups is None else groups[i], space.age_groups or ()))
        for i in range(len(age))
    ]


def space_of_heads(widths: dict[str, int]) -> LabelSpace:
    space = space_of_outputs({name: width for name, width in widths.items() if name in HEADS})
    if space is None:
        shown = ", ".join(f"{name} ({width})" for name, width in widths.items())
        raise ModelError(f"Not a Face Insight model: its outputs {shown} match no label space (UTKFace: age, gender, "
                         "race of 5; FairFace: age_group of 9, gender, race of 7; Adience: age_group of 8, gender).")
    return space
