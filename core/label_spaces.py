"""The label space a model speaks, and the explicit mappings between spaces.

A label space is what a dataset labels and what a model trained in it outputs:
- UTKFace: age in years (output `age`, plus `age_dist` for a distribution head), gender, race-5.
- FairFace: age as 9 groups (output `age_group`, a softmax), gender, race-7.
- Adience: age as 8 groups (`age_group`), gender, no race head.
The vocabularies are core/labels.py's. A model carries its space in its outputs' names and widths
(`space_of_outputs`), which the Keras model, its `.tflite` export and a LiteRT interpreter all show, so nothing
beside the model file can disagree with it and the server never needs TensorFlow to know it.

Scoring a model on another dataset maps one space onto the other, and every mapping has a name that reports
print: predicted years → a dataset's groups; race-7 → race-5, where FairFace's classes nest in UTKFace's; no race
figure at all where one side has no race.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.labels import (
    ADIENCE_GROUPS,
    ADIENCE_LABELS,
    FAIRFACE_BINS,
    FAIRFACE_RACE_TO_CODE,
    FAIRFACE_RACES,
    GENDERS,
    RACES,
    age_to_group,
)


@dataclass(frozen=True)
class LabelSpace:
    name: str  # also the dataset kind whose labels it is (core.datasets.KINDS)
    title: str
    age_groups: tuple[str, ...] | None  # None: age in years
    races: tuple[str, ...] | None  # None: no race head
    # Each group's age in years, for the one approximate mapping (groups of one space onto another's).
    group_years: tuple[float, ...] = ()
    genders: tuple[str, ...] = GENDERS

    @property
    def age_in_years(self) -> bool:
        return self.age_groups is None

    @property
    def age_output(self) -> str:
        return "age" if self.age_in_years else "age_group"

    def output_widths(self) -> dict[str, int]:
        """Each head's output name and width (age in years is one unit; `age_dist` is the age head's option)."""
        widths = {self.age_output: 1 if self.age_in_years else len(self.age_groups), "gender": 1}
        if self.races is not None:
            widths["race"] = len(self.races)
        return widths

    def describe(self) -> str:
        """One line for a page or the CLI: what this space's heads predict."""
        age = "age in years" if self.age_in_years else f"age in {len(self.age_groups)} groups"
        race = f"race ({len(self.races)} groups)" if self.races else "no race"
        return f"{self.title} labels: {age}, gender, {race}"


def _bin_years(label: str) -> float:
    low, _, high = label.partition("-")
    return 75.0 if label.startswith("more") else (float(low) + float(high)) / 2


UTKFACE = LabelSpace("utkface", "UTKFace", None, RACES)
FAIRFACE = LabelSpace("fairface", "FairFace", FAIRFACE_BINS, FAIRFACE_RACES,
                      tuple(_bin_years(b) for b in FAIRFACE_BINS))
ADIENCE = LabelSpace("adience", "Adience", ADIENCE_LABELS, None, tuple((lo + hi) / 2 for lo, hi in ADIENCE_GROUPS))
SPACES: dict[str, LabelSpace] = {space.name: space for space in (UTKFACE, FAIRFACE, ADIENCE)}


def space_of_outputs(widths: Mapping[str, int | Sequence[int]]) -> LabelSpace | None:
    """The space whose heads these are ({output name: width, or its shape}), or None when no space has them."""
    width = {name: int(w[-1]) if isinstance(w, Sequence) else int(w) for name, w in widths.items()}
    for space in SPACES.values():
        expected = space.output_widths()
        if all(width.get(name) == units for name, units in expected.items()) and (
                space.races is not None or "race" not in width):
            return space
    return None


# ------------------------------------------------------------------------------------------------ targets

MISSING = -1  # a class index for a row that lacks the label


def true_age_groups(table: pd.DataFrame, space: LabelSpace) -> np.ndarray:
    """Each row's age-group index in `space` (MISSING where unknown): its age in years when known (UTKFace, Adience's
    bare integers), mapped the way predictions are, else its own group label when it is one of the space's."""
    index = {label: i for i, label in enumerate(space.age_groups)}
    years = table["age"].to_numpy(dtype="float64", na_value=np.nan)
    from_years = [index[g] for g in age_to_group(np.nan_to_num(years), space.name)]
    from_label = table["age_group"].map(lambda g: index.get(g, MISSING) if isinstance(g, str) else MISSING)
    return np.where(np.isnan(years), from_label.to_numpy(dtype=int), np.asarray(from_years, dtype=int))


def true_races(table: pd.DataFrame, space: LabelSpace) -> np.ndarray:
    """Each row's race index in `space` (MISSING where unknown). Race-7 labels only come from FairFace rows:
    UTKFace's "White" or "Indian" is a wider class than FairFace's of the same name (it also holds Middle Eastern
    and Latino faces), so a name match across datasets would be wrong."""
    if space.races is None:
        return np.full(len(table), MISSING, dtype=int)
    if space.races == RACES:  # the loaders keep race-5 codes for every dataset (FairFace's nested)
        return table["race"].fillna(MISSING).to_numpy(dtype=int)
    index = {label: i for i, label in enumerate(space.races)}
    from_fairface = table["source"].eq("fairface").fillna(False).to_numpy(dtype=bool)
    labels = table["race_label"].map(lambda r: index.get(r, MISSING) if isinstance(r, str) else MISSING)
    return np.where(from_fairface, labels.to_numpy(dtype=int), MISSING)


# ----------------------------------------------------------------------------------------------- mappings

@dataclass(frozen=True)
class Comparison:
    """How one head of a model is scored on a dataset: the space both are compared in and the mapping's name.
    `space` None: there is nothing to compare (no labels, or no head)."""
    task: str
    space: LabelSpace | None
    mapping: str


def age_comparison(model: LabelSpace, data: LabelSpace) -> Comparison:
    """Age is compared in the data's groups when it has them, else in the model's (UTKFace's years mapped)."""
    if model.age_in_years and data.age_in_years:
        return Comparison("age", None, "years (no groups)")
    if model.age_in_years:
        return Comparison("age", data, f"predicted years → {data.title} age groups")
    if data.age_in_years:
        return Comparison("age", model, f"true years → {model.title} age groups")
    if model.name == data.name:
        return Comparison("age", model, f"{model.title} age groups (its own)")
    return Comparison("age", data, f"{model.title} groups as years (their middles, approximate) → "
                                   f"{data.title} age groups")


def race_comparison(model: LabelSpace, data: LabelSpace) -> Comparison:
    if model.races is None:
        return Comparison("race", None, f"no race figure: {model.title} models have no race head")
    if data.races is None:
        return Comparison("race", None, f"no race figure: {data.title} has no race labels")
    if model.races == data.races:
        return Comparison("race", model, f"{model.title} races (its own)")
    # FairFace's 7 nest in UTKFace's 5; the 5 cannot be split into the 7, so the comparison is always in the 5.
    nest = "race-7 → race-5 (East and Southeast Asian → Asian; Latino_Hispanic and Middle Eastern → Others)"
    side = "predicted" if model.races == FAIRFACE_RACES else "true"
    return Comparison("race", UTKFACE, f"{side} {nest}")


def predicted_years(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The age in years a model's outputs say. A distribution head's is the median of its distribution (each
    whole-year bin spread over its year, so the median falls between bins): the estimate that minimises the
    expected absolute error, which is what age MAE scores; on the shipped model's validation split it reads 4.64
    years MAE against its mean's 4.68. A regression head's is its `age` output."""
    if "age_dist" not in outputs:
        return np.asarray(outputs["age"], dtype="float64").reshape(-1)
    dist = np.asarray(outputs["age_dist"], dtype="float64")
    dist = dist / np.maximum(dist.sum(axis=1, keepdims=True), 1e-12)
    cdf = dist.cumsum(axis=1)
    rows = np.arange(len(dist))
    bin_ = np.minimum((cdf < 0.5).sum(axis=1), dist.shape[1] - 1)  # the bin where half the mass is reached
    below = np.where(bin_ > 0, cdf[rows, np.maximum(bin_ - 1, 0)], 0.0)
    return bin_ - 0.5 + (0.5 - below) / np.maximum(dist[rows, bin_], 1e-12)


def years_of_groups(probs: np.ndarray, space: LabelSpace) -> tuple[np.ndarray, np.ndarray]:
    """A group head's age in years, approximately: the probability-weighted middle of its groups, and the spread
    of those middles (how sure it is, in years)."""
    probs, middles = np.asarray(probs, dtype="float64"), np.asarray(space.group_years, dtype="float64")
    age = probs @ middles
    return age, np.sqrt(np.maximum((probs * (middles[None, :] - age[:, None]) ** 2).sum(axis=1), 0))


def predicted_age_groups(outputs: Mapping[str, np.ndarray], model: LabelSpace, target: LabelSpace) -> np.ndarray:
    """Group indices in `target` for a model's outputs: its own group argmax, its years mapped, or (groups of
    another space) the probability-weighted middle of its groups mapped as years."""
    if model.age_in_years:
        years = predicted_years(outputs)
    else:
        probs = np.asarray(outputs["age_group"], dtype="float64")
        if model.name == target.name:
            return probs.argmax(axis=1)
        years = years_of_groups(probs, model)[0]
    index = {label: i for i, label in enumerate(target.age_groups)}
    return np.asarray([index[g] for g in age_to_group(years, target.name)], dtype=int)


def race_probabilities(outputs: Mapping[str, np.ndarray], model: LabelSpace, target: LabelSpace) -> np.ndarray:
    """The race head's probabilities in `target`'s races: as they are, or race-7 summed into the race-5 they nest
    in."""
    probs = np.asarray(outputs["race"], dtype="float64")
    if model.races == target.races:
        return probs
    if model.races == FAIRFACE_RACES and target.races == RACES:
        nested = np.zeros((len(FAIRFACE_RACES), len(RACES)))
        nested[np.arange(len(FAIRFACE_RACES)), [FAIRFACE_RACE_TO_CODE[r] for r in FAIRFACE_RACES]] = 1.0
        return probs @ nested
    raise ValueError(f"{model.title} races cannot be mapped onto {target.title}'s.")
