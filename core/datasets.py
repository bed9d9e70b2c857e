"""One table for every face dataset.

Each loader returns a `Dataset`: a pandas table with the same columns whatever the source, plus the list of
files it skipped and why. Loading never decodes an image: a first scan of 21,705 UTKFace names takes about 0.3 s,
a cached call well under a millisecond. Views of a loaded table for browsing (display names, filters, pages,
captions, thumbnails) are in core/browse.py.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.errors import UserError
from core.labels import FAIRFACE_BINS, FAIRFACE_RACE_TO_CODE, RACES, adience_group, decade_label

COLUMNS = ["path", "age", "age_group", "gender", "race", "race_label", "source"]
KINDS = ("utkface", "adience", "fairface")
KIND_TITLES = {"utkface": "UTKFace", "adience": "Adience", "fairface": "FairFace"}
# The dataset-kind choice, named alike on every page that offers it (Explore, Train, Evaluate)
KIND_LABEL = "Dataset kind"
AUTO_KIND = "Recognise from the files"  # the choice that means None: detect_kind looks at the folder


def kind_title(choice: str) -> str:
    """A kind choice as a page shows it ("UTKFace"; the automatic choice as it is)."""
    return KIND_TITLES.get(choice, choice)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class DatasetError(UserError):
    """A dataset folder the user pointed at cannot be read; the message says why."""


@dataclass(frozen=True)
class Dataset:
    kind: str
    folder: Path
    table: pd.DataFrame
    problems: list[tuple[str, str]] = field(default_factory=list)
    # Folder state the table was read from (see _signature): a cheap, hashable cache key for derived views.
    signature: int = 0

    def problems_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.problems, columns=["file", "problem"])


def _frame(rows: list[dict], source: str) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["age"] = table["age"].astype("Float64")
    table["gender"] = table["gender"].astype("Int64")
    table["race"] = table["race"].astype("Int64")
    table["source"] = source
    # "string" (NA-aware) for every text column, also "source": pandas 3 would give a bare scalar column the "str"
    # dtype, and an empty table object columns, which breaks the one-schema promise.
    for column in ("path", "age_group", "race_label", "source"):
        table[column] = table[column].astype("string")
    return table


# ----------------------------------------------------------------------------------------------- UTKFace

# age_gender_race_timestamp then the chip suffix. The stamp is normally 17 digits, but 16 and 18 occur, and
# the suffix is sometimes mangled (" .jpg.chip.jpg", "jpg.chip.jpg"); all of those still carry good labels.
_UTK_NAME = re.compile(r"^(\d{1,3})_(\d+)_(\d+)_(\d{8,20})\s*\.?jpg\.chip\.jpg$", re.IGNORECASE)
_UTK_MISSING_FIELD = re.compile(r"^(\d{1,3})_(\d+)_(\d{8,20})\s*\.?jpg\.chip\.jpg$", re.IGNORECASE)


def parse_utkface_name(name: str) -> tuple[int, int, int] | str:
    """(age, gender, race) from a UTKFace file name, or a sentence saying why it cannot be trusted."""
    match = _UTK_NAME.match(name)
    if match is None:
        if _UTK_MISSING_FIELD.match(name):
            return "only two label fields before the timestamp (race missing)"
        return "name does not follow age_gender_race_timestamp.jpg.chip.jpg"
    age, gender, race = (int(match.group(i)) for i in (1, 2, 3))
    if not 0 <= age <= 116:
        return f"age {age} outside 0–116"
    if gender not in (0, 1):
        return f"gender code {gender} is not 0 or 1"
    if not 0 <= race <= 4:
        return f"race code {race} is not 0–4"
    return age, gender, race


def _image_names(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_file() and not e.name.startswith("."))


def load_utkface(folder: Path) -> Dataset:
    rows, problems = [], []
    for name in _image_names(folder):
        if not name.lower().endswith(IMAGE_SUFFIXES):
            if not name.lower().endswith((".md", ".txt")):  # notes beside the images are not problems
                problems.append((name, "not an image file"))
            continue
        parsed = parse_utkface_name(name)
        if isinstance(parsed, str):
            problems.append((name, parsed))
            continue
        age, gender, race = parsed
        rows.append({
            "path": str(folder / name), "age": float(age), "age_group": decade_label(age),
            "gender": gender, "race": race, "race_label": RACES[race],
        })
    return Dataset("utkface", folder, _frame(rows, "utkface"), problems)


# ----------------------------------------------------------------------------------------------- Adience

def _label_rows(files: list[Path], delimiter: str = ",") -> Iterator[tuple[str, dict]]:
    """("file:line", row) for every data row of label CSV / TSV files. Undecodable bytes become U+FFFD rather
    than failing the whole file: the row then fails its own checks and is reported."""
    for path in files:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            for line_no, row in enumerate(csv.DictReader(handle, delimiter=delimiter), start=2):
                yield f"{path.name}:{line_no}", row


def _adience_image(folder: Path, row: dict) -> Path | None:
    user, image, face = row["user_id"], row["original_image"], row["face_id"]
    for sub, prefix in (("faces", "coarse_tilt_aligned_face"), ("aligned", "landmark_aligned_face")):
        candidate = folder / sub / user / f"{prefix}.{face}.{image}"
        if candidate.is_file():
            return candidate
    return None


def load_adience(folder: Path) -> Dataset:
    fold_files = sorted(folder.glob("fold_*_data.txt"))
    if not fold_files:
        raise DatasetError(f"No Adience fold files (fold_N_data.txt) in {folder}.")
    return _from_label_rows("adience", folder, fold_files, _adience_row, delimiter="\t")


def _adience_row(folder: Path, row: dict) -> dict | str:
    """A fold-file row as a table row, or what is wrong with it."""
    if not row.get("original_image") or not row.get("user_id"):
        return "row has no image name"
    group = adience_group(row.get("age") or "")
    if isinstance(group, str):
        return group
    path = _adience_image(folder, row)
    if path is None:
        return f"image for {row['user_id']}/{row['original_image']} not found"
    gender = {"m": 0, "f": 1}.get((row.get("gender") or "").strip())
    return {"path": str(path), "age": group[1], "age_group": group[0], "gender": gender, "race": None,
            "race_label": None}


def _from_label_rows(kind: str, folder: Path, files: list[Path], parse, delimiter: str = ",") -> Dataset:
    """The dataset of label files whose rows `parse(folder, row)` turns into table rows or problem strings."""
    rows, problems = [], []
    for where, row in _label_rows(files, delimiter=delimiter):
        parsed = parse(folder, row)
        if isinstance(parsed, str):
            problems.append((where, parsed))
        else:
            rows.append(parsed)
    return Dataset(kind, folder, _frame(rows, kind), problems)


_FOLD_NUMBER = re.compile(r"^fold_(\d+)_data\.txt$")


def adience_folds(folder: Path) -> dict[str, int]:
    """{image path as the table holds it: number N of the fold_N_data.txt that lists it}: Adience's own
    cross-validation folds, which keep each subject in one fold."""
    folder, folds = Path(folder).expanduser().resolve(), {}  # resolved, as load_dataset's table paths are
    for fold_file in sorted(folder.glob("fold_*_data.txt")):
        match = _FOLD_NUMBER.match(fold_file.name)
        if match is None:
            continue
        for _, row in _label_rows([fold_file], delimiter="\t"):
            if row.get("original_image") and row.get("user_id") and (path := _adience_image(folder, row)):
                folds[str(path)] = int(match.group(1))
    return folds


# ---------------------------------------------------------------------------------------------- FairFace

def load_fairface(folder: Path) -> Dataset:
    label_files = sorted(folder.glob("fairface_label_*.csv"))
    if not label_files:
        raise DatasetError(f"No FairFace label files (fairface_label_train.csv / _val.csv) in {folder}.")
    return _from_label_rows("fairface", folder, label_files, _fairface_row)


def _fairface_row(folder: Path, row: dict) -> dict | str:
    """A label-file row as a table row, or what is wrong with it."""
    age_bin, race_label = (row.get("age") or "").strip(), (row.get("race") or "").strip()
    gender = {"Male": 0, "Female": 1}.get((row.get("gender") or "").strip())
    if age_bin not in FAIRFACE_BINS:
        return f"age bin {age_bin!r} is not one of FairFace's 9"
    if race_label not in FAIRFACE_RACE_TO_CODE:
        return f"race {race_label!r} is not one of FairFace's 7"
    if gender is None:
        return f"gender {row.get('gender')!r} is not Male or Female"
    if not row.get("file") or not (folder / row["file"]).is_file():
        return f"image {row.get('file')!r} not found"
    return {"path": str(folder / row["file"]), "age": None, "age_group": age_bin, "gender": gender,
            "race": FAIRFACE_RACE_TO_CODE[race_label], "race_label": race_label}


# ------------------------------------------------------------------------------------------- entry point

_LOADERS = {"utkface": load_utkface, "adience": load_adience, "fairface": load_fairface}


def _entries(folder: Path) -> list[os.DirEntry]:
    # One scandir pass: 21,705 names cost ~10 ms, where each Path.glob costs a full pattern-matched pass.
    with os.scandir(folder) as entries:
        return list(entries)


def _is_adience_label(name: str) -> bool:
    return name.startswith("fold_") and name.endswith("_data.txt")


def _is_fairface_label(name: str) -> bool:
    return name.startswith("fairface_label_") and name.endswith(".csv")


def detect_kind(folder: Path) -> str:
    """Guess the dataset kind from the files a folder holds (label files first, then UTKFace names)."""
    folder = Path(folder)
    return _detect_cached(str(folder.resolve()), folder.stat().st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _detect_cached(folder: str, mtime_ns: int) -> str:
    # Keyed by the folder's mtime, which changes whenever a name is added, removed or renamed: the names are all
    # that detection reads, so an unchanged folder is never listed twice.
    names = [entry.name for entry in _entries(Path(folder))]
    if any(_is_adience_label(name) for name in names):
        return "adience"
    if any(_is_fairface_label(name) for name in names):
        return "fairface"
    return "utkface"


def _signature(folder: Path, kind: str) -> int:
    """Changes when files are added, removed or renamed, or label files edited, so the cache never serves stale
    rows. UTKFace keeps its labels in the names, so the folder's own mtime is enough and a cached call costs one
    stat; Adience and FairFace keep images in sub-folders (faces/<user>/, train/, val/) whose mtimes count too."""
    stamps = [folder.stat().st_mtime_ns]
    if kind != "utkface":
        for entry in _entries(folder):
            if entry.name.endswith((".txt", ".csv")) or entry.is_dir():
                stamps.append(entry.stat().st_mtime_ns)
            if entry.is_dir():
                stamps += [sub.stat().st_mtime_ns for sub in _entries(Path(entry.path)) if sub.is_dir()]
    return hash(tuple(stamps))


@functools.lru_cache(maxsize=16)
def _load_cached(kind: str, folder: str, signature: int) -> Dataset:
    dataset = _LOADERS[kind](Path(folder))
    if dataset.table.empty:  # raised here, not cached: the user may fix the folder and retry
        raise DatasetError(_empty_message(dataset))
    return dataclasses.replace(dataset, signature=signature)


def _empty_message(dataset: Dataset) -> str:
    title, hint = KIND_TITLES[dataset.kind], "Is it the right folder and dataset kind?"
    if not dataset.problems:
        return f"No {title} images in {dataset.folder}. {hint}"
    name, why = dataset.problems[0]
    return (f"No usable {title} images in {dataset.folder}: all {len(dataset.problems):,} entries were skipped "
            f"(first: {name}: {why}). {hint}")


def load_dataset(kind: str | None, folder: str | Path, profile=None) -> Dataset:
    """Load a dataset by kind ('utkface' | 'adience' | 'fairface'; None = detect) from a folder. Cached by folder
    and modification time. Callers must not mutate the returned table. Raises DatasetError, with a message fit
    for the user, for a bad kind, a missing, unreadable or empty folder, or a folder with no usable image.

    `profile` (core.access.Profile; default: the one the running page bound, else the process's) decides which
    folders may be read at all: a public profile only reads its allowed dataset roots, checked here so that no
    caller can skip it, before the folder is even looked at (refusing /etc and /no/such/dir alike tells nothing
    about the server's files), and its messages carry no server paths."""
    from core import access
    profile = profile or access.current_profile()
    try:
        return _load_checked(kind, folder, profile)
    except DatasetError as error:
        raise DatasetError(access.public_text(str(error), profile)) from error


def _load_checked(kind: str | None, folder: str | Path, profile) -> Dataset:
    if kind is not None and kind not in _LOADERS:
        raise DatasetError(f"Unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}.")
    if not str(folder).strip():  # Path("") is the working directory: never scan that by accident
        raise DatasetError("No folder given: enter the path of a dataset folder.")
    if not profile.allows_folder(folder):
        raise DatasetError("This server reads only the datasets it offers: choose one from the list.")
    try:
        folder = Path(str(folder).strip()).expanduser()
    except RuntimeError as error:  # "~someone" for a user this machine does not know
        raise DatasetError(f"Cannot resolve the folder {str(folder).strip()!r}: {error}.") from error
    try:
        if not folder.exists():
            raise DatasetError(f"Folder not found: {folder}")
        if not folder.is_dir():
            raise DatasetError(f"{folder} is a file, not a folder: enter the folder that holds the images.")
        kind = kind or detect_kind(folder)
        return _load_cached(kind, str(folder.resolve()), _signature(folder, kind))
    except OSError as error:  # unreadable folder, or files vanishing mid-scan
        raise DatasetError(f"Cannot read {folder}: {error.strerror or error}.") from error


def stratum(table: pd.DataFrame) -> pd.Series:
    """Age decade × gender × race key used to stratify splits and the bundled sample."""
    decade = (table["age"].fillna(-10) // 10).clip(upper=10).astype(int).astype(str)

    def code(column: str) -> pd.Series:  # a missing label is a stratum of its own: pandas 3 keeps NA through
        return table[column].fillna(-1).astype(int).astype(str)  # astype(str), and an NA key drops the row
    return decade + "_" + code("gender") + "_" + code("race")
