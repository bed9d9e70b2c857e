"""Time per saliency map, per method and architecture. Prints a table, asserts nothing.

    nice -n 19 python tests/benchmarks/bench_saliency.py [--size 128] [--repeats 3] [--head gender] [--arch ...]

Goal: ≤ 1 s per map on 2 CPU cores for every method but Score-CAM (which runs the model once per channel: it is
timed at its default max_N=32, Faster Score-CAM). Untrained models at full width stand in for trained ones (the
arithmetic is the same); ResNet-50 has random weights. Each cell is the median of the repeats after one warm-up
call, which builds the per-head view models once (the app keeps them for the life of the server). Figures on a
shared CPU (e.g. beside a training run) are slow: the header prints the load average so they can be read as such.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GOAL_SECONDS = 1.0


def timed(call) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call. CPU time barely changes when other processes
    compete for the cores, so it still means something on a busy machine where wall time does not."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_maps(arch: str, size: int, head: str, repeats: int) -> tuple[dict[str, tuple[float, float]], float, str]:
    """({method: (median wall s, median CPU s)}, first-call wall seconds of the slowest method, CAM layer)."""
    import numpy as np

    from core.models import ModelConfig, build_model
    from core.saliency import METHODS, SCORECAM_MAX_N, Explainer
    model, _ = build_model(ModelConfig(arch=arch, img_size=size, imagenet=False,
                                       age_head="distribution" if arch == "residual_cnn" else "regression"))
    explainer = Explainer(model)
    crop = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    prediction = explainer.predict(crop)
    medians, first = {}, 0.0
    for method in METHODS:
        def explain(method=method):
            return explainer.explain(crop, head, method, max_n=SCORECAM_MAX_N, prediction=prediction)
        first = max(first, timed(explain)[0])
        runs = [timed(explain) for _ in range(repeats)]
        medians[method] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
    return medians, first, explainer.default_layer(head)


def main() -> None:
    from core.models import IN_HOUSE_ARCHITECTURES as ARCHITECTURES  # UTKFace heads: gender explains the same way
    from core.saliency import METHOD_LABELS, METHODS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--head", default="gender", choices=("age", "gender", "race"))
    parser.add_argument("--arch", nargs="*", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    args = parser.parse_args()

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"saliency maps at {args.size} px, head {args.head}, median of {args.repeats} after a warm-up; "
          f"{os.cpu_count()} CPU cores, load average {load}")
    print("each cell: wall seconds (CPU seconds of this process; on an idle 2-core machine wall ≈ CPU/2 to CPU)")
    header = f"{'architecture':<14} {'CAM layer':<20}" + "".join(f"{METHOD_LABELS[m]:>16}" for m in METHODS)
    print(header + f"{'1st call':>10}  goal ≤ {GOAL_SECONDS:.0f} s wall (not Score-CAM)")
    print("-" * (len(header) + 44))
    for arch in args.arch:
        started = time.perf_counter()
        medians, first, layer = time_maps(arch, args.size, args.head, args.repeats)
        slow = [METHOD_LABELS[m] for m, (wall, _) in medians.items() if m != "scorecam" and wall > GOAL_SECONDS]
        print(f"{arch:<14} {layer:<20}" + "".join(f"{wall:>8.2f} ({cpu:5.2f})" for wall, cpu in medians.values())
              + f"{first:>9.2f}s  " + ("met" if not slow else "missed: " + ", ".join(slow))
              + f"  ({time.perf_counter() - started:.0f} s in all)", flush=True)


if __name__ == "__main__":
    main()
