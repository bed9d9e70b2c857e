"""The app's crop path on dataset images: how often the detector finds the face, how much its crop jitters, and
how far the app path's metrics sit from the dataset crops' (the skew). Prints figures, asserts nothing.

    nice -n 19 python tests/benchmarks/bench_crops.py [--data FOLDER] [--split-file F --split val] [--limit N]

Jitter: the same face detected twice, once in its own image and once pasted at another scale and place into a
larger canvas (as in a photo), gives two crop squares; their differences in side (relative), centre (fraction of
the side) and angle are the detector's noise. Training augmentation (core/pipeline.py: zoom ±ZOOM, shift ±SHIFT,
rotation ±ROTATION, uniform) should cover it; the figures say whether it does.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def jitter(paths: list[str], seed: int = 0) -> dict[str, float]:
    """Standard deviations of the crop square between an image and a rescaled, shifted copy of it."""
    import numpy as np
    from PIL import Image

    from core import crops
    from core.alignment import crop_geometry
    from core.faces import shared_detector
    detector, rng = shared_detector(), np.random.default_rng(seed)
    sides, shifts, angles = [], [], []
    for path in paths:
        image = Image.open(path).convert("RGB")
        first = crops.choose_face(image, detector)
        scale = rng.uniform(0.6, 1.4)
        pasted = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        canvas = Image.new("RGB", (3 * pasted.width, 3 * pasted.height), (90, 90, 90))
        offset = rng.integers(0, 2 * pasted.width, 2)
        canvas.paste(pasted, tuple(int(v) for v in offset))
        second = crops.central_face(detector.detect(canvas, "never"), canvas.size)
        if first is None or not first.detected or second is None:
            continue
        x0, y0, s0, a0 = crop_geometry(first.face)
        x1, y1, s1, a1 = crop_geometry(second)
        x1, y1, s1 = (x1 - offset[0]) / scale, (y1 - offset[1]) / scale, s1 / scale
        sides.append(s1 / s0 - 1)
        shifts.append(math.hypot(x1 - x0, y1 - y0) / s0)
        angles.append(a1 - a0)
    return {"pairs": len(sides), "side_std": float(np.std(sides)), "shift_rms": float(np.sqrt(np.mean(
        np.square(shifts)))), "angle_std_deg": float(np.std(angles))}


def augmentation_spread() -> dict[str, float]:
    """Standard deviations of the training augmentation's uniform ranges, for comparison."""
    from core import pipeline
    uniform_std = 1 / math.sqrt(3)
    return {"zoom_std": pipeline.ZOOM * uniform_std, "shift_std": pipeline.SHIFT * uniform_std * math.sqrt(2),
            "rotation_std_deg": math.degrees(pipeline.ROTATION) * uniform_std}


def skew_table(model: str, table, kind: str) -> list[str]:
    from core import evaluation
    from core.export import ensure_tflite
    from core.predict import Predictor
    result = evaluation.evaluate_both_crops(Predictor(ensure_tflite(model, in_process=True)), table, kind)
    lines = ["| path | n | age MAE | gender | race | face detected |", "| --- | --- | --- | --- | --- | --- |"]
    for crops in ("dataset", "app"):
        r = result[crops]
        detected = r.get("face_detected")
        lines.append(f"| {crops} | {r['n']} | {r['age_mae']:.3f} | {r['gender_accuracy']:.2%} | "
                     f"{r['race_accuracy']:.2%} | {'—' if detected is None else f'{detected:.1%}'} |")
    s = result["skew"]
    lines.append(f"| skew (app − dataset) | | {s['age_mae']:+.3f} | {s['gender_accuracy'] * 100:+.2f} pt | "
                 f"{s['race_accuracy'] * 100:+.2f} pt | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="", help="dataset folder (default: ../shared UTKFace, else the sample)")
    parser.add_argument("--model", default=str(ROOT / "models" / "face_insight_v1.keras"))
    parser.add_argument("--split-file", default=str(ROOT / "models" / "face_insight_v1.split.csv"))
    parser.add_argument("--split", default="val", help="which split to score (never tune on test)")
    parser.add_argument("--limit", type=int, default=600, help="images scored (0 = the whole split)")
    parser.add_argument("--jitter-images", type=int, default=150)
    args = parser.parse_args()

    from core import evaluation, settings
    shared = ROOT.parent / "shared" / "data" / "utkface"
    folder = args.data or (shared if shared.is_dir() else settings.SAMPLE_DIR)
    kind, table = evaluation.load_rows("utkface", folder, args.split_file, args.split)
    if args.limit:
        table = table.sample(n=min(args.limit, len(table)), random_state=0).reset_index(drop=True)
    print(f"data: {folder} ({args.split} split, {len(table)} images); load average {os.getloadavg()[0]:.1f}")

    j, a = jitter(table["path"].head(args.jitter_images).tolist()), augmentation_spread()
    print(f"detector jitter over {j['pairs']} re-detections: side std {j['side_std']:.3f}, centre shift rms "
          f"{j['shift_rms']:.3f} of the side, angle std {j['angle_std_deg']:.2f}°")
    print(f"training augmentation spread: zoom std {a['zoom_std']:.3f}, shift std {a['shift_std']:.3f}, "
          f"rotation std {a['rotation_std_deg']:.2f}°")
    for line in skew_table(args.model, table, kind):
        print(line)


if __name__ == "__main__":
    main()
