"""Draw the bundled sample: ~300 UTKFace images, stratified by age decade × gender × race, file names unchanged.

    python -m scripts.make_sample /path/to/UTKFace            # writes data/sample/utkface/
    python scripts/make_sample.py /path/to/UTKFace --n 300 --seed 0 --replace

Every non-empty stratum gets one image first (so the sample shows the rare old and "Others" faces too), the rest
is shared out in proportion to stratum size. Same folder, n and seed: same files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a file: make the project's `core` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.atomic import atomic_write_bytes  # noqa: E402
from core.datasets import DatasetError, load_dataset, stratum  # noqa: E402
from core.settings import SAMPLE_DIR  # noqa: E402

DEFAULT_N = 300
DEFAULT_SEED = 0


def allocate(sizes: pd.Series, n: int) -> pd.Series:
    """Images per stratum: one each while n allows, the rest by largest remainder of the proportional share,
    never more than a stratum holds."""
    sizes = sizes[sizes > 0].sort_index()
    if n <= len(sizes):  # too few slots for every stratum: favour the biggest ones
        counts = pd.Series(0, index=sizes.index)
        counts[sizes.sort_values(ascending=False, kind="stable").index[:n]] = 1
        return counts
    counts = pd.Series(1, index=sizes.index)
    while (left := n - counts.sum()) > 0 and (room := sizes - counts).sum() > 0:
        share = room / room.sum() * left
        extra = np.minimum(np.floor(share), room).astype(int)
        if extra.sum() == 0:  # hand out the last few by largest remainder
            order = (share - np.floor(share)).where(room > 0, -1).sort_values(ascending=False, kind="stable")
            extra[order.index[:left]] = 1
        counts += extra
    return counts


def sample_plan(table: pd.DataFrame, n: int = DEFAULT_N, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """The rows to copy, drawn with a seeded generator, sorted by path."""
    keys = stratum(table)
    counts = allocate(keys.value_counts(), n)
    rng = np.random.default_rng(seed)
    chosen = []
    for key, count in counts.items():
        index = np.sort(keys.index[keys == key].to_numpy())
        chosen.extend(rng.choice(index, size=int(count), replace=False))
    return table.loc[chosen].sort_values("path")


def write_sample(source: Path, out: Path, n: int, seed: int, replace: bool) -> pd.DataFrame:
    table = load_dataset("utkface", source).table
    existing = list(out.glob("*.jpg")) if out.is_dir() else []
    if existing and not replace:
        raise DatasetError(f"{out} already holds {len(existing)} images; pass --replace to redraw the sample.")
    for path in existing:
        path.unlink()
    plan = sample_plan(table, n, seed)
    for path in plan["path"]:
        atomic_write_bytes(out / Path(path).name, Path(path).read_bytes())
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder of UTKFace *.jpg.chip.jpg files")
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--n", type=int, default=DEFAULT_N)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--replace", action="store_true", help="delete the images already in --out first")
    args = parser.parse_args(argv)
    try:
        plan = write_sample(args.source, args.out, args.n, args.seed, args.replace)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    size = sum((args.out / Path(p).name).stat().st_size for p in plan["path"])
    print(f"Copied {len(plan)} images from {stratum(plan).nunique()} strata into {args.out} ({size / 1e6:.1f} MB).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
