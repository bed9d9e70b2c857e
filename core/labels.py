"""The label vocabularies of every dataset and the age groupings they use.

UTKFace's 5 race codes and 2 genders are what the models predict; Adience's 8 age groups and FairFace's 9 age bins
and 7 races are what those datasets label. `AGE_SCHEMES` maps a predicted age onto each dataset's own groups, which
is how a UTKFace model is scored on Adience or FairFace (core/evaluation.py).
"""

from __future__ import annotations

import re

import numpy as np

RACES = ("White", "Black", "Asian", "Indian", "Others")  # UTKFace's 5 codes, in code order
GENDERS = ("male", "female")
AGE_BINS = 117  # whole years 0..116, the UTKFace range: the age distribution head has one bin per year

ADIENCE_GROUPS = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))
FAIRFACE_BINS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
# The usual cross-dataset mapping of FairFace's 7 races onto UTKFace's 5 (FORMAT.md).
FAIRFACE_RACE_TO_CODE = {
    "White": 0, "Black": 1, "East Asian": 2, "Southeast Asian": 2, "Indian": 3,
    "Latino_Hispanic": 4, "Middle Eastern": 4,
}
FAIRFACE_RACES = tuple(FAIRFACE_RACE_TO_CODE)  # FairFace's own 7, in its documented order


def decade_label(age: float) -> str:
    """'0-9', '10-19', …, '100+' — the age groups used for stratification and fairness reports."""
    decade = min(int(age) // 10, 10)
    return "100+" if decade == 10 else f"{decade * 10}-{decade * 10 + 9}"


DECADES = tuple(decade_label(a) for a in range(0, 101, 10))


# ------------------------------------------------------------------------------------------------ Adience

def _adience_bounds() -> list[tuple[float, float, str]]:
    """Each official group widened to the middle of the gaps around it (ties go to the younger group), so a
    bare integer such as 13 or 35 lands in exactly one group."""
    bounds = []
    for i, (low, high) in enumerate(ADIENCE_GROUPS):
        lower = -1.0 if i == 0 else (ADIENCE_GROUPS[i - 1][1] + low) / 2
        upper = 200.0 if i == len(ADIENCE_GROUPS) - 1 else (high + ADIENCE_GROUPS[i + 1][0]) / 2
        bounds.append((lower, upper, f"({low}, {high})"))
    return bounds


_ADIENCE_BOUNDS = _adience_bounds()
_ADIENCE_RANGE = re.compile(r"^\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
ADIENCE_LABELS = tuple(label for _, _, label in _ADIENCE_BOUNDS)


def adience_group(value: str) -> tuple[str, float | None] | str:
    """(group label, age in years or None) for an Adience age cell, or why it fits no group."""
    value = value.strip()
    if value.isdigit():
        age = float(value)
        for lower, upper, label in _ADIENCE_BOUNDS:
            if lower < age <= upper:
                return label, age
    match = _ADIENCE_RANGE.match(value)
    if match:
        low, high = int(match.group(1)), int(match.group(2))
        for lower, upper, label in _ADIENCE_BOUNDS:
            if lower < low and high <= upper:
                return label, None
        return f"age range {value} spans more than one group"
    return f"age {value!r} is not a group or a number"


# ---------------------------------------------------------------------------------- predicted age → group

def _fairface_bin(year: int) -> str:
    if year < 3:
        return "0-2"
    if year < 10:
        return "3-9"
    if year >= 70:
        return "more than 70"
    return f"{year // 10 * 10}-{year // 10 * 10 + 9}"


_YEARS = range(AGE_BINS)
# (group labels in age order, the group of each whole year). Adience goes through adience_group itself so the
# widened bounds of the loader and of scoring can never drift apart.
AGE_SCHEMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "decade": (DECADES, tuple(decade_label(y) for y in _YEARS)),
    "adience": (ADIENCE_LABELS, tuple(adience_group(str(y))[0] for y in _YEARS)),
    "fairface": (FAIRFACE_BINS, tuple(_fairface_bin(y) for y in _YEARS)),
}
SCHEME_FOR_KIND = {"utkface": "decade", "adience": "adience", "fairface": "fairface"}


def age_to_group(ages, scheme: str) -> np.ndarray:
    """Group labels for predicted ages. Labels are whole years, so a prediction is rounded to the nearest year
    first (a predicted 2.9 means 'about 3')."""
    _, by_year = AGE_SCHEMES[scheme]
    ages = np.nan_to_num(np.asarray(ages, dtype="float64"), nan=0.0)
    years = np.clip(np.floor(ages + 0.5), 0, AGE_BINS - 1).astype(int)
    return np.asarray(by_year, dtype=object)[years]
