"""Faces cut by the frame edge (core/edges.py): recall on group selfies before and after the edge windows, false
faces on face-free backgrounds, and what the windows cost per photo. Prints figures, asserts nothing.

    nice -n 19 python tests/benchmarks/bench_edges.py [--scenes 12] [--runs 7] [--no-padding]

Photos: the two test selfies (tests/photos `edge_selfie`: 7 people, a close-up, one face half behind it, two cut
by the edges) and `--scenes` random photos with three faces 30–50 % outside the left, right and bottom edges,
built from the bundled sample. Each is detected as the Upload path sees it: a JPEG decoded at draft size
(core/predict.py DRAFT_SIDE, 800 px long side for these), and at the full 1600 px. A face counts as found when a
box matches its visible part (IoU ≥ 0.4). Backgrounds: face-free colour fields (4/5 landscape), each as an
upload and at full size.
Crop error: a cut face's crop square against the same face's when the frame is widened so that it is whole.
Added ms: the median, over photos × runs, of detect with edges minus detect without, timed in turns.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from core import edges  # noqa: E402
from core.faces import FaceDetector  # noqa: E402
from core.images import load_photo  # noqa: E402
from core.predict import DRAFT_SIDE  # noqa: E402
from core.settings import SAMPLE_DIR  # noqa: E402
from tests.photos import background, cut_scenes, edge_faces, edge_selfie, encode, matched, selfie  # noqa: E402


def adult_pool() -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted(SAMPLE_DIR.glob("*.jpg"))
            if 18 <= int(p.name.split("_")[0]) <= 65]


def photo_sets(scenes: int, pool: list[Image.Image]) -> dict[str, list[tuple[Image.Image, list, list[int]]]]:
    """name → [(image, places, indices of the faces cut by an edge)]."""
    faces = edge_faces(SAMPLE_DIR)
    selfies = [(*edge_selfie(faces[:7]), [2, 3]), (*edge_selfie(faces[7:], portrait=True), [2, 3])]
    return {"edge selfies": selfies, "cut scenes": [(*s, [0, 1, 2]) for s in cut_scenes(pool, scenes, seed=1)]}


def upload_view(image: Image.Image) -> Image.Image:
    return load_photo(encode(image), draft_side=DRAFT_SIDE).image


def recall(detector: FaceDetector, photos, use_edges: bool, upload: bool) -> tuple[int, int, int, int]:
    """(faces found, faces placed, cut faces found, cut faces placed)."""
    found = placed = cut_found = cut_placed = 0
    for image, places, cut in photos:
        view = upload_view(image) if upload else image
        scale = image.width / view.width
        boxes = [f.scaled(scale).pixel_box(image.size) for f in detector.detect(view, edges=use_edges)]
        hits = matched(boxes, places, image.size)
        found, placed = found + sum(hits), placed + len(hits)
        cut_found, cut_placed = cut_found + sum(hits[i] for i in cut), cut_placed + len(cut)
    return found, placed, cut_found, cut_placed


def false_faces(detector: FaceDetector, backgrounds: list[Image.Image], use_edges: bool) -> int:
    """Faces found on face-free backgrounds, as uploads (draft size) and at full size."""
    return sum(len(detector.detect(view, edges=use_edges)) for b in backgrounds for view in (b, upload_view(b)))


def crop_error(detector: FaceDetector, pool: list[Image.Image], count: int, margin: int = 400) -> tuple[float, ...]:
    """How far a cut face's crop square (core/alignment.py crop_geometry) is from the one the same face gets when
    the frame is widened so that it is whole: median centre error (fraction of the side), median |side ratio − 1|,
    and how many cut faces were compared."""
    from core.alignment import crop_geometry
    shifts, sides = [], []
    for (image, places), (wide, wide_places) in zip(cut_scenes(pool, count, 1), cut_scenes(pool, count, 1, margin),
                                                    strict=True):
        found, whole = detector.detect(image, edges=True), detector.detect(wide)
        for place, wide_place in zip(places, wide_places, strict=True):
            cut = [f for f in found if matched([f.pixel_box(image.size)], [place], image.size)[0]]
            ref = [f for f in whole if matched([f.pixel_box(wide.size)], [wide_place], wide.size)[0]]
            if cut and ref:
                x0, y0, s0, _ = crop_geometry(ref[0])
                x1, y1, s1, _ = crop_geometry(cut[0])
                shifts.append(np.hypot(x1 + margin - x0, y1 + margin - y0) / s0)
                sides.append(abs(s1 / s0 - 1))
    return float(np.median(shifts)), float(np.median(sides)), len(shifts)


def passes_per_photo(detector: FaceDetector, views: list[Image.Image], use_edges: bool) -> float:
    """Detector passes (one model on one image or window) per photo: the cost, whatever the machine's load."""
    real, count = detector._run, [0]

    def counting(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)
    detector._run = counting
    try:
        for view in views:
            detector.detect(view, edges=use_edges)
    finally:
        del detector._run
    return count[0] / len(views)


def added_ms(detector: FaceDetector, views: list[Image.Image], runs: int) -> tuple[float, float, float]:
    """(median ms without edges, median ms with, median of the per-photo difference)."""
    without, with_edges = [], []
    for _ in range(runs):
        for view in views:
            for flag, times in ((False, without), (True, with_edges)):
                start = time.perf_counter()
                detector.detect(view, edges=flag)
                times.append((time.perf_counter() - start) * 1000)
    return (float(np.median(without)), float(np.median(with_edges)),
            float(np.median(np.subtract(with_edges, without))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=12, help="random cut-face photos")
    parser.add_argument("--runs", type=int, default=7, help="timing rounds over the upload-size photos")
    parser.add_argument("--backgrounds", type=int, default=50, help="face-free backgrounds (4/5 landscape)")
    parser.add_argument("--no-padding", action="store_true", help="skip the padding-mode comparison")
    args = parser.parse_args()
    detector = FaceDetector()
    pool = adult_pool()
    sets = photo_sets(args.scenes, pool)
    backgrounds = ([background((1600, 1200), 500 + s) for s in range(args.backgrounds * 4 // 5)]
                   + [background((1200, 1600), 900 + s) for s in range(args.backgrounds // 5)])
    print(f"load average {os.getloadavg()[0]:.1f}; faces found / placed (IoU ≥ 0.4), before → after edge windows")
    for name, photos in sets.items():
        for upload in (True, False):
            before, after = (recall(detector, photos, flag, upload) for flag in (False, True))
            where = f"upload ({DRAFT_SIDE} px)" if upload else "full 1600 px"
            print(f"{name}, {where}: all faces {before[0]}/{before[1]} → {after[0]}/{after[1]}; "
                  f"cut by the edge {before[2]}/{before[3]} → {after[2]}/{after[3]}")
    shift, side, compared = crop_error(detector, pool, args.scenes)
    print(f"crop square of {compared} cut faces vs the same faces whole: centre off by {shift:.1%} of the side, "
          f"side off by {side:.1%} (medians)")
    print(f"false faces on {len(backgrounds)} face-free backgrounds, at upload and full size: "
          f"{false_faces(detector, backgrounds, False)}"
          f" → {false_faces(detector, backgrounds, True)}")
    views = [upload_view(image) for photos in sets.values() for image, _, _ in photos]
    one_face = [upload_view(selfie(face)[0]) for face in edge_faces(SAMPLE_DIR)[:4]]
    for label, chosen in (("these photos", views), ("a one-face 1600×1200 selfie", one_face)):
        base, edged, added = added_ms(detector, chosen, args.runs)
        before, after = passes_per_photo(detector, chosen, False), passes_per_photo(detector, chosen, True)
        print(f"detect, {label} at upload size: {base:.1f} ms → {edged:.1f} ms, added {added:.1f} ms (median); "
              f"detector passes {before:.1f} → {after:.1f}")
    print(f"({len(edges.edge_windows(800, 600))} edge windows at 800×600; the other added passes are re-detections)")
    if not args.no_padding:
        everything, default_padding = [p for photos in sets.values() for p in photos], edges.PADDING
        for mode in ("edge", "constant", "reflect"):
            edges.PADDING = mode
            r = recall(detector, everything, True, True)
            shift, side, _ = crop_error(detector, pool, args.scenes)
            print(f"padding {mode:8s}: cut faces {r[2]}/{r[3]}, all faces {r[0]}/{r[1]} (upload size); "
                  f"false faces {false_faces(detector, backgrounds, True)}; crop centre off {shift:.1%}, "
                  f"side {side:.1%}")
        edges.PADDING = default_padding
    detector.close()


if __name__ == "__main__":
    main()
