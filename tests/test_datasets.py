"""The dataset layer on real files: UTKFace's odd names, Adience's irregular fold rows, FairFace's published format,
one schema for all three, caching, and the errors a user can cause."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from core import datasets, labels
from core.datasets import COLUMNS, DatasetError, detect_kind, load_dataset, parse_utkface_name

FIXTURES = Path(__file__).parent / "fixtures"
FAIRFACE_FIXTURE = FIXTURES / "fairface"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample" / "utkface"

ODD_UTK_NAMES = {  # name -> (age, gender, race), from shared/data/utkface/SOURCE.md
    "24_0_1_20170116220224657 .jpg.chip.jpg": (24, 0, 1),  # space before .jpg
    "55_0_0_20170116232725357jpg.chip.jpg": (55, 0, 0),  # no dot before jpg
    "14_0_0_2017011022340900.jpg.chip.jpg": (14, 0, 0),  # 16-digit stamp
    "28_1_2_201701161846515488.jpg.chip.jpg": (28, 1, 2),  # 18-digit stamps
    "38_0_1_201701162330572788.jpg.chip.jpg": (38, 0, 1),
}
MISSING_FIELD_NAMES = (
    "39_1_20170116174525125.jpg.chip.jpg",
    "61_1_20170109142408075.jpg.chip.jpg",
    "61_1_20170109150557335.jpg.chip.jpg",
)


def _jpeg(path: Path, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (120, 90, 60)).save(path)
    return path


# ---------------------------------------------------------------------------------------------- UTKFace

@pytest.mark.parametrize(("name", "labels"), ODD_UTK_NAMES.items())
def test_odd_but_labelled_names_parse(name, labels):
    assert parse_utkface_name(name) == labels


@pytest.mark.parametrize(("name", "reason"), [
    (MISSING_FIELD_NAMES[0], "race missing"),
    ("IMG_0001.jpg", "does not follow"),
    ("130_0_0_20170116220224657.jpg.chip.jpg", "outside 0–116"),
    ("30_2_0_20170116220224657.jpg.chip.jpg", "gender code 2"),
    ("30_0_5_20170116220224657.jpg.chip.jpg", "race code 5"),
])
def test_unusable_names_say_why(name, reason):
    assert reason in parse_utkface_name(name)


def test_real_odd_files_load_and_missing_fields_are_reported(shared_dir, tmp_path):
    source = shared_dir / "data" / "utkface"
    for name in (*ODD_UTK_NAMES, *MISSING_FIELD_NAMES):
        shutil.copy(source / name, tmp_path / name)
    (tmp_path / "notes.md").write_text("notes beside the images are not problems")
    (tmp_path / "labels.json").write_text("{}")

    dataset = load_dataset("utkface", tmp_path)

    by_name = {Path(p).name: row for p, row in zip(dataset.table["path"], dataset.table.itertuples(), strict=True)}
    assert set(by_name) == set(ODD_UTK_NAMES)
    for name, (age, gender, race) in ODD_UTK_NAMES.items():
        row = by_name[name]
        assert (row.age, row.gender, row.race, row.race_label) == (age, gender, race, labels.RACES[race])
        assert row.age_group == labels.decade_label(age)
    problems = dict(dataset.problems)
    assert set(problems) == {*MISSING_FIELD_NAMES, "labels.json"}
    assert all("race missing" in problems[name] for name in MISSING_FIELD_NAMES)
    assert problems["labels.json"] == "not an image file"


def test_full_utkface_folder_matches_its_source_notes(shared_dir):
    dataset = load_dataset(None, shared_dir / "data" / "utkface")

    assert dataset.kind == "utkface"
    assert len(dataset.table) == 21_702
    assert sorted(name for name, _ in dataset.problems) == sorted(MISSING_FIELD_NAMES)
    table = dataset.table
    assert table["race"].value_counts().sort_index().tolist() == [9226, 4145, 3145, 3639, 1547]
    assert table["gender"].value_counts().sort_index().tolist() == [11345, 10357]
    decades = table["age_group"].value_counts().reindex(labels.DECADES).tolist()
    assert decades == [2803, 1402, 6724, 4153, 2055, 2105, 1204, 640, 459, 129, 28]
    assert table["path"].is_unique


def test_scan_is_cached_until_the_folder_changes(tmp_path, monkeypatch):
    for name in ("20_0_0_20170101000000001.jpg.chip.jpg", "30_1_2_20170101000000002.jpg.chip.jpg"):
        _jpeg(tmp_path / name)
    calls = []
    real_loader = datasets._LOADERS["utkface"]
    monkeypatch.setitem(datasets._LOADERS, "utkface", lambda folder: calls.append(folder) or real_loader(folder))
    datasets._load_cached.cache_clear()

    first = load_dataset("utkface", tmp_path)
    again = load_dataset(None, str(tmp_path))
    assert again is first and len(calls) == 1

    _jpeg(tmp_path / "40_1_3_20170101000000003.jpg.chip.jpg")
    grown = load_dataset("utkface", tmp_path)
    assert grown is not first and len(grown.table) == 3 and len(calls) == 2
    assert grown.signature != first.signature

    (tmp_path / "20_0_0_20170101000000001.jpg.chip.jpg").unlink()
    assert len(load_dataset("utkface", tmp_path).table) == 2


def test_full_folder_second_call_is_the_cached_object(shared_dir):
    folder = shared_dir / "data" / "utkface"
    assert load_dataset(None, folder) is load_dataset("utkface", folder)


# ---------------------------------------------------------------------------------------------- Adience

def _first_real_row(shared_dir: Path, predicate) -> tuple[list[str], list[str]]:
    """Header and the first row of the real fold files that satisfies `predicate(row_dict)`."""
    for fold in sorted((shared_dir / "data" / "adience").glob("fold_*_data.txt")):
        with fold.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, delimiter="\t")
            header = next(reader)
            for cells in reader:
                if predicate(dict(zip(header, cells, strict=False))):
                    return header, cells
    raise AssertionError("no such row in the fold files")


def _image_for(folder: Path, cells: dict) -> Path:
    face = f"coarse_tilt_aligned_face.{cells['face_id']}.{cells['original_image']}"
    return folder / "faces" / cells["user_id"] / face


@pytest.fixture
def adience_rows(shared_dir, tmp_path):
    """A fold file made of real rows with irregular cells, images for all but the last, no final newline."""
    wanted = {
        "none": lambda r: r["age"] == "None",
        "13": lambda r: r["age"] == "13",
        "35": lambda r: r["age"] == "35",
        "3": lambda r: r["age"] == "3",
        "(38, 42)": lambda r: r["age"] == "(38, 42)",
        "(38, 48)": lambda r: r["age"] == "(38, 48)",
        "(8, 23)": lambda r: r["age"] == "(8, 23)",
        "u": lambda r: r["gender"] == "u" and r["age"] == "(0, 2)",
        "empty": lambda r: r["gender"] == "" and r["age"] == "(8, 12)",
        "missing image": lambda r: r["age"] == "(48, 53)" and r["gender"] == "f",
    }
    rows = {}
    for label, predicate in wanted.items():
        header, cells = _first_real_row(shared_dir, predicate)
        rows[label] = dict(zip(header, cells, strict=False))
    lines = ["\t".join(header)] + ["\t".join(row[column] for column in header) for row in rows.values()]
    (tmp_path / "fold_0_data.txt").write_text("\n".join(lines), encoding="utf-8")  # no final newline, as upstream
    for label, row in rows.items():
        if label != "missing image":
            _jpeg(_image_for(tmp_path, row))
    return tmp_path, rows


def test_adience_real_irregular_rows(adience_rows):
    folder, rows = adience_rows
    dataset = load_dataset(None, folder)
    assert dataset.kind == "adience"

    table = dataset.table.set_index(dataset.table["path"].map(lambda p: Path(p).name))
    def row(label):
        return table.loc[_image_for(folder, rows[label]).name]

    assert (row("13")["age_group"], row("13")["age"]) == ("(8, 12)", 13.0)
    assert (row("35")["age_group"], row("35")["age"]) == ("(25, 32)", 35.0)
    assert (row("3")["age_group"], row("3")["age"]) == ("(0, 2)", 3.0)
    assert row("(38, 42)")["age_group"] == "(38, 43)" and pd.isna(row("(38, 42)")["age"])
    assert pd.isna(row("u")["gender"]) and pd.isna(row("empty")["gender"])
    genders = {"m": 0, "f": 1}
    assert row("13")["gender"] == genders[rows["13"]["gender"]]
    assert table["race"].isna().all() and table["race_label"].isna().all()
    assert len(table) == 6

    problems = dict(dataset.problems)
    line_of = {label: f"fold_0_data.txt:{i}" for i, label in enumerate(rows, start=2)}
    assert set(problems) == {line_of[k] for k in ("none", "(38, 48)", "(8, 23)", "missing image")}
    assert "not a group or a number" in problems[line_of["none"]]
    assert "spans more than one group" in problems[line_of["(38, 48)"]]
    assert "spans more than one group" in problems[line_of["(8, 23)"]]
    assert "not found" in problems[line_of["missing image"]]  # the last line, read despite no final newline


def test_full_adience_subset(shared_dir):
    dataset = load_dataset(None, shared_dir / "data" / "adience")

    table = dataset.table
    assert dataset.kind == "adience" and len(table) == 19
    assert (table["age_group"] == "(25, 32)").all()
    assert table["gender"].value_counts().to_dict() == {0: 11, 1: 8}
    assert len(dataset.problems) == 4_484 + 3_730 - 19  # every other fold row lacks its image or a usable age
    problems = dict(dataset.problems)
    assert "not a group or a number" in problems["fold_0_data.txt:4485"]  # last line, no trailing newline
    assert "fold_1_data.txt:3731" in problems


def test_adience_image_added_in_a_user_folder_invalidates_the_cache(adience_rows):
    folder, rows = adience_rows
    before = load_dataset("adience", folder)
    _jpeg(_image_for(folder, rows["missing image"]))
    after = load_dataset("adience", folder)
    assert len(after.table) == len(before.table) + 1


# --------------------------------------------------------------------------------------------- FairFace

def test_fairface_fixture_in_published_format():
    dataset = load_dataset(None, FAIRFACE_FIXTURE)
    table = dataset.table

    assert dataset.kind == "fairface" and len(table) == 13
    assert set(table["age_group"]) == set(labels.FAIRFACE_BINS)
    assert set(table["race_label"]) == set(labels.FAIRFACE_RACE_TO_CODE)
    assert table["age"].isna().all()
    for label, code in zip(table["race_label"], table["race"], strict=True):
        assert labels.FAIRFACE_RACE_TO_CODE[label] == code
    first = table[table["path"].str.endswith("train/4.jpg")].iloc[0]
    assert (first["age_group"], first["gender"], first["race"], first["race_label"]) == ("20-29", 1, 2, "East Asian")
    assert Path(first["path"]).is_file()

    problems = dict(dataset.problems)
    assert set(problems) == {f"fairface_label_train.csv:{n}" for n in (11, 12, 13, 14)}
    assert "age bin '70-79'" in problems["fairface_label_train.csv:11"]
    assert "race 'Hispanic'" in problems["fairface_label_train.csv:12"]
    assert "gender 'Other'" in problems["fairface_label_train.csv:13"]
    assert "'train/13.jpg' not found" in problems["fairface_label_train.csv:14"]


def test_fairface_needs_its_label_files(tmp_path):
    _jpeg(tmp_path / "train" / "1.jpg")
    with pytest.raises(DatasetError, match="No FairFace label files"):
        load_dataset("fairface", tmp_path)


# ---------------------------------------------------------------------------------------- one schema

def _tiny_adience(folder: Path) -> Path:
    header = "user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\tfiducial_yaw_angle\tfiducial_score"
    rows = ["u1\ta.jpg\t1\t(25, 32)\tf\t0\t0\t1\t1\t0\t0\t1", "u1\tb.jpg\t2\t13\tm\t0\t0\t1\t1\t0\t0\t1"]
    (folder / "fold_0_data.txt").write_text("\n".join([header, *rows]))
    _jpeg(folder / "faces" / "u1" / "coarse_tilt_aligned_face.1.a.jpg")
    _jpeg(folder / "faces" / "u1" / "coarse_tilt_aligned_face.2.b.jpg")
    return folder


def test_all_loaders_share_one_schema(tmp_path):
    tables = {
        "utkface": load_dataset(None, SAMPLE_DIR).table,
        "adience": load_dataset(None, _tiny_adience(tmp_path)).table,
        "fairface": load_dataset(None, FAIRFACE_FIXTURE).table,
    }
    reference = tables["utkface"].dtypes
    for kind, table in tables.items():
        assert list(table.columns) == COLUMNS, kind
        assert table.dtypes.equals(reference), (kind, table.dtypes)
        assert (table["source"] == kind).all()
    assert str(reference["age"]) == "Float64" and str(reference["gender"]) == "Int64"
    assert str(reference["race"]) == "Int64" and str(reference["path"]) == "string"
    empty = datasets._frame([], "utkface")
    assert empty.dtypes.equals(reference)


def test_detect_kind(tmp_path):
    assert detect_kind(FAIRFACE_FIXTURE) == "fairface"
    assert detect_kind(SAMPLE_DIR) == "utkface"
    _jpeg(tmp_path / "20_0_0_20170101000000001.jpg.chip.jpg")
    assert detect_kind(tmp_path) == "utkface"
    _tiny_adience(tmp_path)  # label files appear: the cached guess must not survive the change
    assert detect_kind(tmp_path) == "adience"


# --------------------------------------------------------------------------------------- user errors

def test_errors_the_user_can_cause(tmp_path):
    with pytest.raises(DatasetError, match="Folder not found"):
        load_dataset(None, tmp_path / "nope")
    file = _jpeg(tmp_path / "x.jpg")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        load_dataset(None, file)
    with pytest.raises(DatasetError, match="No folder given"):
        load_dataset(None, "  ")
    with pytest.raises(DatasetError, match="Unknown dataset kind 'celeba'"):
        load_dataset("celeba", SAMPLE_DIR)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="No UTKFace images in .*empty"):
        load_dataset(None, empty)


def test_wrong_kind_for_the_folder(tmp_path):
    with pytest.raises(DatasetError, match="No Adience fold files"):
        load_dataset("adience", SAMPLE_DIR)
    with pytest.raises(DatasetError, match="No usable UTKFace images .*not an image file"):
        load_dataset("utkface", FAIRFACE_FIXTURE)
    photos = tmp_path / "photos"
    for name in ("IMG_1.jpg", "IMG_2.jpg"):
        _jpeg(photos / name)
    with pytest.raises(DatasetError, match=r"all 2 entries were skipped \(first: IMG_1.jpg"):
        load_dataset(None, photos)


def test_unreadable_folder_is_a_dataset_error(tmp_path, monkeypatch):
    # Tests may run as root, where chmod cannot make a folder unreadable: fail the listing instead.
    def deny(folder):
        raise PermissionError(13, "Permission denied", str(folder))
    monkeypatch.setattr(datasets, "_image_names", deny)
    datasets._load_cached.cache_clear()
    _jpeg(tmp_path / "20_0_0_20170101000000001.jpg.chip.jpg")
    with pytest.raises(DatasetError, match="Cannot read .*Permission denied"):
        load_dataset("utkface", tmp_path)


# -------------------------------------------------------------------------------- the public allowlist

REFUSED = "reads only the datasets it offers"


@pytest.fixture
def public(monkeypatch, tmp_path):
    """The public profile with the sample and one operator folder (an empty one) as its dataset roots."""
    from core import access
    for name in ("FACE_MODE", "FACE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    offered = tmp_path / "offered"
    offered.mkdir()
    monkeypatch.setenv("FACE_DATASET_ROOTS", str(offered))
    return access.public_profile()


def test_a_public_profile_reads_its_roots_only(public, tmp_path, monkeypatch):
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "credentials.env").write_text("TOKEN=hunter2")
    (tmp_path / "etc_link").symlink_to("/etc")
    assert len(load_dataset(None, SAMPLE_DIR, public).table) == 300

    def no_listing(*args, **kwargs):
        raise AssertionError("a refused folder was looked into")
    monkeypatch.setattr(datasets.os, "scandir", no_listing)
    monkeypatch.setattr(datasets.Path, "exists", no_listing)
    for folder in ("/etc", "/proc/self", planted, tmp_path / "etc_link", f"{SAMPLE_DIR}/..", "/no/such/folder",
                   "~root", SAMPLE_DIR / "1_0_0_20161219140623097.jpg.chip.jpg"):
        with pytest.raises(DatasetError, match=REFUSED) as refused:
            load_dataset(None, folder, public)
        assert str(folder) not in str(refused.value) and "credentials" not in str(refused.value)


def test_the_allowlist_holds_for_callers_that_pass_no_profile(public):
    """A page binds its session's profile; code it calls (evaluation.load_rows, the training engine…) reads it."""
    import threading

    from core import access
    outcome = {}

    def public_session():
        access.bind_profile(public)
        try:
            load_dataset(None, "/etc")
        except DatasetError as error:
            outcome["error"] = str(error)

    thread = threading.Thread(target=public_session)
    thread.start()
    thread.join()
    assert REFUSED in outcome["error"]
    assert len(load_dataset(None, FAIRFACE_FIXTURE).table) == 13  # this thread: the workbench, any folder


def test_public_messages_name_no_server_path(public, tmp_path):
    with pytest.raises(DatasetError) as empty:
        load_dataset(None, tmp_path / "offered", public)
    assert str(empty.value) == "No UTKFace images in offered. Is it the right folder and dataset kind?"
    with pytest.raises(DatasetError) as wrong_kind:
        load_dataset("adience", SAMPLE_DIR, public)
    assert "No Adience fold files" in str(wrong_kind.value) and str(SAMPLE_DIR) not in str(wrong_kind.value)


# ------------------------------------------------------------------------------------ Adience's own folds

def test_adience_folds_are_its_fold_files_one_subject_each():
    folder = FIXTURES / "adience"
    table = load_dataset("adience", folder).table
    folds = datasets.adience_folds(folder)
    assert set(table["path"]) == set(folds) and sorted(set(folds.values())) == [0, 1, 2, 3, 4]
    users = table["path"].map(lambda p: Path(p).parent.name)
    assert users.groupby(table["path"].map(folds)).nunique().eq(1).all()  # subject-exclusive


def test_rows_without_a_race_still_get_a_stratum_and_a_split():
    from core.splits import split_table
    table = load_dataset("adience", FIXTURES / "adience").table
    assert datasets.stratum(table).notna().all()
    assert set(split_table(table)) == {"train", "val", "test"}
