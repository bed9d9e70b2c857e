"""The bundled sample (data/sample/utkface) and the script that draws it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from core.datasets import DatasetError, load_dataset, stratum
from scripts.make_sample import allocate, main, sample_plan, write_sample

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "data" / "sample" / "utkface"


def test_sample_is_small_labelled_and_unrenamed():
    files = sorted(SAMPLE_DIR.iterdir())
    assert len(files) == 300
    assert sum(f.stat().st_size for f in files) < 4_000_000
    dataset = load_dataset(None, SAMPLE_DIR)
    assert len(dataset.table) == 300 and dataset.problems == []
    for path in files[::25]:
        with Image.open(path) as image:
            assert (image.format, image.size, image.mode) == ("JPEG", (200, 200), "RGB")


def test_sample_readme_carries_the_license():
    text = (ROOT / "data" / "sample" / "README.md").read_text(encoding="utf-8")
    for phrase in ("non-commercial research purposes only", "copyright belongs to the original owners",
                   "CVPR 2017", "some labels are wrong", "python -m scripts.make_sample"):
        assert phrase in text


def test_allocate_gives_every_stratum_one_then_shares_by_size():
    sizes = pd.Series({"a": 1000, "b": 100, "c": 3, "d": 1})
    counts = allocate(sizes, 50)
    assert counts.sum() == 50 and (counts >= 1).all() and (counts <= sizes).all()
    assert counts["a"] > counts["b"] > counts["c"] >= counts["d"] == 1
    assert allocate(sizes, 2).to_dict() == {"a": 1, "b": 1, "c": 0, "d": 0}  # too few slots: biggest strata
    assert allocate(sizes, 5000).equals(sizes.sort_index())  # more slots than images: take everything


def test_plan_is_seeded_and_stratified():
    table = load_dataset(None, SAMPLE_DIR).table
    plan = sample_plan(table, n=120, seed=3)
    assert len(plan) == 120 and plan["path"].is_unique
    assert set(stratum(plan)) == set(stratum(table))
    assert plan["path"].tolist() == sample_plan(table, n=120, seed=3)["path"].tolist()
    assert plan["path"].tolist() != sample_plan(table, n=120, seed=4)["path"].tolist()


def test_bundled_sample_is_what_the_script_draws_from_the_full_folder(shared_dir):
    full = load_dataset("utkface", shared_dir / "data" / "utkface").table
    plan = sample_plan(full)
    assert sorted(Path(p).name for p in plan["path"]) == sorted(p.name for p in SAMPLE_DIR.iterdir())
    assert stratum(plan).nunique() == stratum(full).nunique()  # every non-empty stratum is represented


def test_write_sample_copies_files_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "out"
    plan = write_sample(SAMPLE_DIR, out, n=30, seed=0, replace=False)
    copied = sorted(p.name for p in out.iterdir())
    assert copied == sorted(Path(p).name for p in plan["path"]) and len(copied) == 30
    assert (out / copied[0]).read_bytes() == (SAMPLE_DIR / copied[0]).read_bytes()
    with pytest.raises(DatasetError, match="--replace"):
        write_sample(SAMPLE_DIR, out, n=30, seed=1, replace=False)
    assert main([str(SAMPLE_DIR), "--out", str(out), "--n", "20", "--replace"]) == 0
    assert len(list(out.iterdir())) == 20
    assert main([str(tmp_path / "missing"), "--out", str(out)]) == 2
