"""Views of a loaded dataset table for browsing it: display names and their order, age-group bounds, filters,
pages, captions and thumbnails. They serve the Explore page (and the sample picker of the Saliency page) but hold
no UI code; the tables themselves come from core/datasets.py.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import pandas as pd

from core.datasets import load_dataset
from core.labels import AGE_BINS, GENDERS, RACES

UNKNOWN = "unknown"
GENDER_NAMES = (*GENDERS, UNKNOWN)
MAX_AGE = AGE_BINS - 1


def gender_names(table: pd.DataFrame) -> pd.Series:
    """'male' / 'female' / 'unknown' per row (Adience has unknown genders)."""
    return table["gender"].map({0: GENDERS[0], 1: GENDERS[1]}).fillna(UNKNOWN).astype("string")


def race_names(table: pd.DataFrame) -> pd.Series:
    """The dataset's own race label per row (FairFace keeps its 7 groups), 'unknown' where there is none."""
    return table["race_label"].fillna(UNKNOWN).astype("string")


def race_order(names) -> list[str]:
    """UTKFace's order first, then any other labels alphabetically, 'unknown' last."""
    def key(name: str):
        return (name == UNKNOWN, RACES.index(name) if name in RACES else len(RACES), name)
    return sorted(set(names), key=key)


def age_group_bounds(label: str) -> tuple[float, float]:
    """Youngest and oldest age a group label covers: '20-29', '100+', 'more than 70', '(25, 32)'."""
    numbers = [float(n) for n in re.findall(r"\d+", label or "")]
    if not numbers:
        return math.nan, math.nan
    return numbers[0], numbers[1] if len(numbers) > 1 else float(MAX_AGE)


def age_group_order(labels) -> list[str]:
    """Group labels sorted by age, whatever the dataset's labelling scheme."""
    return sorted(set(labels), key=lambda label: (*age_group_bounds(label), label))


def _age_span(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    # Where the age in years is unknown (FairFace, most of Adience), the row's group gives the range it lies in.
    bounds = {label: age_group_bounds(label) for label in table["age_group"].dropna().unique()}
    low = table["age_group"].map({k: v[0] for k, v in bounds.items()}).astype("Float64")
    high = table["age_group"].map({k: v[1] for k, v in bounds.items()}).astype("Float64")
    return table["age"].fillna(low), table["age"].fillna(high)


def filter_table(table: pd.DataFrame, age_range: tuple[float, float] | None = None, genders=None,
                 races=None) -> pd.DataFrame:
    """Rows whose age (or age group) overlaps `age_range` and whose gender / race name is among those given.
    None or empty means no filter on that field. Names as in gender_names / race_names."""
    keep = pd.Series(True, index=table.index)
    if age_range is not None:
        low, high = _age_span(table)
        keep &= ((high >= age_range[0]) & (low <= age_range[1])).fillna(False).astype(bool)
    if genders:
        keep &= gender_names(table).isin(list(genders)).astype(bool)
    if races:
        keep &= race_names(table).isin(list(races)).astype(bool)
    return table[keep]


# The grid's orders, by their names on the page. Ties keep the file-name order, so a page is the same every time.
SORTS = ("file name", "age", "gender", "race")


def sort_table(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """The rows in one of SORTS: by file name; by age (youngest first; a row with only an age group by its
    youngest age); by gender or race name (race in race_order, 'unknown' last), each then by age."""
    if by not in SORTS:
        raise ValueError(f"Unknown order {by!r}: one of {', '.join(SORTS)}.")
    names = table["path"].map(lambda path: Path(path).name)
    table = table.iloc[names.argsort(kind="stable")]
    if by == "file name":
        return table
    youngest = _age_span(table)[0].astype("float64").fillna(math.inf)
    keys = [youngest]
    if by == "gender":
        keys.insert(0, gender_names(table).map({name: i for i, name in enumerate(GENDER_NAMES)}))
    elif by == "race":
        races = race_names(table)
        keys.insert(0, races.map({name: i for i, name in enumerate(race_order(races))}))
    order = pd.DataFrame({f"k{i}": key.to_numpy() for i, key in enumerate(keys)}).sort_values(
        [f"k{i}" for i in range(len(keys))], kind="stable").index
    return table.iloc[order]


def face_details(row: pd.Series) -> str:
    """Every label of one face, for its enlarged view: age (or age group), gender, race and file name."""
    age = f"{int(row['age'])} years" if pd.notna(row["age"]) else f"age group {row['age_group']}"
    frame = row.to_frame().T
    gender, race = gender_names(frame).iloc[0], race_names(frame).iloc[0]
    return f"**{age}** · {gender} · {race}  \n`{Path(row['path']).name}`"


def page_count(rows: int, per_page: int) -> int:
    return max(1, math.ceil(rows / per_page))


def page_of(table: pd.DataFrame, page: int, per_page: int) -> pd.DataFrame:
    """Rows of the 1-based `page`; a page past either end is clamped, so a stale page number still shows rows."""
    page = min(max(int(page), 1), page_count(len(table), per_page))
    return table.iloc[(page - 1) * per_page: page * per_page]


def short_labels(table: pd.DataFrame) -> list[str]:
    """One caption per row: age in years when known (else the group), gender, race."""
    ages = [f"{int(a)} y" if pd.notna(a) else str(g) for a, g in zip(table["age"], table["age_group"], strict=True)]
    return [" · ".join(parts) for parts in zip(ages, gender_names(table), race_names(table), strict=True)]


def thumbnail_jpeg(path: str | Path, size: int = 100) -> bytes:
    """A small JPEG preview. An unreadable or corrupt file gives a grey square: one bad file among thousands must
    not blank a whole page of previews."""
    from PIL import Image, UnidentifiedImageError

    buffer = io.BytesIO()
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # JPEG: decode at reduced scale, several times faster
            image = image.convert("RGB")
            image.thumbnail((size, size))
            image.save(buffer, format="JPEG", quality=85)
    except (OSError, UnidentifiedImageError, ValueError):
        buffer = io.BytesIO()
        Image.new("RGB", (size, size), (200, 200, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def sample_faces(folder) -> dict[str, str]:
    """path → "34 y · Asian · female — file name" for every face of a UTKFace folder (the bundled sample)."""
    table = load_dataset("utkface", folder).table
    ages = table["age"].round().astype("Int64").astype("string").fillna("?")
    labels = ages + " y · " + race_names(table) + " · " + gender_names(table)
    return {str(path): f"{label} — {Path(path).name}" for path, label in zip(table["path"], labels, strict=True)}
