"""Seeded stratified splits, k-fold folds, and the split file: written, read, reused by name and selected from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.datasets import stratum
from core.errors import UserError
from core.splits import (
    SPLITS,
    SplitError,
    fold_split,
    kfold_assignment,
    read_split_file,
    select_split,
    split_counts,
    split_from_file,
    split_table,
    write_split_file,
)


def _table(n: int, seed: int = 0, skewed: bool = True) -> pd.DataFrame:
    """A label table like load_dataset's, without images; skewed so strata differ a lot in size."""
    rng = np.random.default_rng(seed)
    race_p = [0.45, 0.2, 0.15, 0.15, 0.05] if skewed else [0.2] * 5
    table = pd.DataFrame({
        "path": [f"img{i}.jpg" for i in range(n)],
        "age": pd.array(rng.integers(1, 90, n).astype(float), dtype="Float64"),
        "gender": pd.array(rng.integers(0, 2, n), dtype="Int64"),
        "race": pd.array(rng.choice(5, n, p=race_p), dtype="Int64"),
    })
    return table.set_index(pd.Index(rng.permutation(n) + 1000))  # a non-trivial index must be preserved


def test_split_is_disjoint_complete_and_matches_the_fractions():
    table = _table(2000)
    split = split_table(table, (0.7, 0.15, 0.15), seed=1)
    assert split.index.equals(table.index)  # one label per row: disjoint and complete by construction
    assert set(split) == set(SPLITS)
    counts = split.value_counts()
    for name, fraction in zip(SPLITS, (0.7, 0.15, 0.15), strict=True):
        assert abs(counts[name] - fraction * len(table)) <= 1


def test_split_is_stratified_by_decade_gender_and_race():
    table = _table(3000)
    split = split_table(table, (0.7, 0.15, 0.15), seed=2)
    big = 0
    for _, part in split.groupby(stratum(table)):
        counts = part.value_counts()
        for name, fraction in zip(SPLITS, (0.7, 0.15, 0.15), strict=True):
            assert abs(counts.get(name, 0) - fraction * len(part)) <= 2, (len(part), counts.to_dict())
        big += len(part) >= 40
    assert big >= 10  # the check above was meaningful on many sizeable strata


def test_a_saved_split_is_reused_by_file_name_even_after_the_folder_moved(tmp_path):
    table = _table(50)
    split = split_table(table, seed=3)
    saved = pd.DataFrame({"path": "/old/folder/" + table["path"], "split": split})
    saved.iloc[:5].to_csv(tmp_path / "partial.csv", index=False)
    saved.to_csv(tmp_path / "split.csv", index=False)
    reused = split_from_file(table, tmp_path / "split.csv")
    assert reused.index.equals(table.index) and reused.tolist() == split.tolist()
    partial = split_from_file(table, tmp_path / "partial.csv")
    assert partial.notna().sum() == 5 and partial.index.equals(table.index)  # unlisted images: NA, left out
    (tmp_path / "bad.csv").write_text("path,fold\na.jpg,1\n")
    with pytest.raises(SplitError, match="not a split file"):
        split_from_file(table, tmp_path / "bad.csv")
    with pytest.raises(SplitError, match="Cannot read"):
        split_from_file(table, tmp_path / "missing.csv")


def test_split_is_seeded():
    table = _table(500)
    assert split_table(table, seed=7).equals(split_table(table, seed=7))
    assert not split_table(table, seed=7).equals(split_table(table, seed=8))


def test_a_tiny_table_of_singleton_strata_still_gets_validation_and_test_rows():
    table = _table(40, skewed=False)
    assert stratum(table).value_counts().max() <= 3  # nearly every row is alone in its stratum
    counts = split_table(table, (0.7, 0.15, 0.15)).value_counts()
    assert (counts["train"], counts["val"], counts["test"]) == (28, 6, 6)


def test_split_rejects_fractions_that_do_not_add_up():
    with pytest.raises(SplitError, match="sum"):
        split_table(_table(10), (0.7, 0.2, 0.2))


def test_kfold_puts_every_row_in_exactly_one_fold_stratified():
    table = _table(1000)
    folds = kfold_assignment(table, 5, seed=3)
    assert folds.index.equals(table.index) and set(folds) == set(range(5))
    sizes = folds.value_counts()
    assert sizes.max() - sizes.min() <= 1
    for _, part in folds.groupby(stratum(table)):
        per_fold = part.value_counts().reindex(range(5), fill_value=0)
        assert per_fold.max() - per_fold.min() <= 1
    assert folds.equals(kfold_assignment(table, 5, seed=3))
    with pytest.raises(SplitError):
        kfold_assignment(table, 1)


def test_fold_split_tests_on_the_fold_and_validates_on_part_of_the_rest():
    table = _table(300)
    folds = kfold_assignment(table, 3)
    tested = pd.Series(0, index=table.index)
    for fold in range(3):
        split = fold_split(folds, fold, 0.2, table=table)
        assert split[folds == fold].eq("test").all() and not split[folds != fold].eq("test").any()
        val = split.eq("val").sum()
        assert abs(val - 0.2 * (folds != fold).sum()) <= 1
        tested += split.eq("test")
    assert tested.eq(1).all()  # across folds, every row is tested exactly once


# ------------------------------------------------------------------------------------------- split file

def test_a_written_split_file_reads_back_and_its_errors_are_user_errors(tmp_path):
    write_split_file(tmp_path / "split.csv", ["/a/1.jpg", "/a/2.jpg"], pd.Series(["train", "test"], index=[7, 3]))
    assert read_split_file(tmp_path / "split.csv").to_dict("list") == {"path": ["/a/1.jpg", "/a/2.jpg"],
                                                                       "split": ["train", "test"]}
    (tmp_path / "odd.csv").write_text("path,split\na.jpg,holdout\n")
    with pytest.raises(SplitError, match="train, val, test values") as raised:
        read_split_file(tmp_path / "odd.csv")
    assert isinstance(raised.value, UserError)  # pages and the CLI show it as a message


def _labelled(ages) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"/faces/{i}.jpg" for i in range(len(ages))], "age": ages})


def test_select_split_by_path_then_by_name(tmp_path):
    table = _labelled([10, 20, 30])
    split_file = tmp_path / "split.csv"
    pd.DataFrame({"path": table["path"], "split": ["train", "test", "test"]}).to_csv(split_file, index=False)
    assert select_split(table, split_file)["age"].tolist() == [20, 30]
    assert select_split(table, split_file, "train")["age"].tolist() == [10]
    moved = pd.DataFrame({"path": ["/old/place/1.jpg", "/old/place/2.jpg"], "split": ["test", "val"]})
    moved.to_csv(split_file, index=False)
    assert select_split(table, split_file)["age"].tolist() == [20]


def test_select_split_errors_say_why(tmp_path):
    table = _labelled([10])
    with pytest.raises(SplitError, match="Cannot read split file"):
        select_split(table, tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SplitError, match="not a split file"):
        select_split(table, tmp_path / "bad.csv")
    (tmp_path / "split.csv").write_text("path,split\n/elsewhere/9.jpg,test\n/faces/0.jpg,train\n")
    with pytest.raises(SplitError, match="None of the 1 'test' images"):
        select_split(table, tmp_path / "split.csv")
    with pytest.raises(SplitError, match="no 'val' rows"):
        select_split(table, tmp_path / "split.csv", "val")


def test_split_counts_say_how_many_rows_each_split_holds(tmp_path):
    table = pd.DataFrame({"path": [f"/data/{i}.jpg" for i in range(6)]})
    write_split_file(tmp_path / "split.csv", [f"/elsewhere/{i}.jpg" for i in range(5)],
                     ["train", "train", "val", "test", "train"])  # matched by name; 5.jpg is in no split
    assert split_counts(table, tmp_path / "split.csv") == {"train": 3, "val": 1, "test": 1}
