"""Training throughput per architecture, and whether the input pipeline keeps up. Prints figures, asserts nothing.

For each architecture (128 px, batch 64 by default, synthetic images, a few steps each):
  - train img/s, in memory: fit on one batch already in memory, repeated: the model's own speed;
  - train img/s, tf.data: fit fed by core.pipeline.make_dataset (shuffle, gather, augmentation, prefetch);
  - fed / in-memory: the goal is ≥ 95 %, i.e. the pipeline is not the bottleneck.
Then the pipeline alone (no model): img/s, and its ratio to each architecture's training-step throughput.

Wall-clock figures mean little on a shared CPU (beside a long training run, a niced process gets a varying
sliver of it), so CPU time of this process is reported too: CPU ms per batch for a training step and for the
pipeline (and for a step fed by it), and the CPU-bound ratio step / (step + pipeline): the share of in-memory
speed left when every core is busy and augmentation cannot hide in idle ones, the worst case on a 2-core machine.

    nice -n 19 python tests/benchmarks/bench_training.py [--steps 3] [--archs custom_cnn,resnet50]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.models import IN_HOUSE_ARCHITECTURES as ARCHITECTURES  # noqa: E402  (UTKFace targets below)
from core.models import ModelConfig, build_model  # noqa: E402
from core.pipeline import make_dataset, targets_and_weights  # noqa: E402
from core.training import TrainConfig, _losses  # noqa: E402


def synthetic(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, dict, dict]:
    rng = np.random.default_rng(seed)
    labels = pd.DataFrame({"age": pd.array(rng.integers(1, 90, n).astype(float), dtype="Float64"),
                           "gender": pd.array(rng.integers(0, 2, n), dtype="Int64"),
                           "race": pd.array(rng.integers(0, 5, n), dtype="Int64")})
    y, w = targets_and_weights(labels, "regression")
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), y, w


class Clock:
    """Wall and process-CPU seconds (all threads: TensorFlow's and tf.data's) of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def fit_clock(model, ds, steps: int) -> Clock:
    with Clock() as clock:
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return clock


def pipeline_clock(images, y, w, batch: int, batches: int) -> Clock:
    ds = make_dataset(images, y, w, batch, training=True, augment=True).repeat()
    iterator = iter(ds)
    next(iterator)  # build and warm the pipeline
    with Clock() as clock:
        for _ in range(batches):
            next(iterator)
    return clock


def bench_arch(arch: str, images, y, w, args) -> tuple[Clock, Clock]:
    """(in-memory, fed) clocks over args.steps training steps."""
    import keras
    import tensorflow as tf
    cfg = TrainConfig(model=ModelConfig(arch=arch, img_size=args.img_size, imagenet=False))
    model, _ = build_model(cfg.model)
    losses, weights, metrics = _losses(cfg)
    model.compile(keras.optimizers.Adam(1e-3), losses, loss_weights=weights, weighted_metrics=metrics)
    first = slice(0, args.batch_size)
    batch = (tf.constant(images[first].astype(np.float32)), {k: v[first] for k, v in y.items()},
             {k: v[first] for k, v in w.items()})
    in_memory = tf.data.Dataset.from_tensors(batch).repeat()
    fed = make_dataset(images, y, w, args.batch_size, training=True, augment=True).repeat()
    fit_clock(model, in_memory, args.warmup)  # tracing and first-step allocation are not throughput
    memory = fit_clock(model, in_memory, args.steps)
    fit_clock(model, fed, args.warmup)
    return memory, fit_clock(model, fed, args.steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default=",".join(ARCHITECTURES))
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    args = parser.parse_args()
    images, y, w = synthetic(8 * args.batch_size, args.img_size)
    from core.training import device_name
    print(f"device {device_name()}; {args.img_size} px, batch {args.batch_size}, {args.steps} timed steps; "
          f"{os.cpu_count()} CPUs")
    pipe = pipeline_clock(images, y, w, args.batch_size, batches=10)
    pipe_cpu_ms = 1000 * pipe.cpu / 10
    print(f"input pipeline alone (shuffle + gather + augmentation): {10 * args.batch_size / pipe.wall:.0f} img/s, "
          f"{pipe_cpu_ms:.0f} CPU ms per batch")
    print(f"{'arch':<15}{'img/s in memory':>16}{'img/s tf.data':>14}{'fed/in-mem':>11}"
          f"{'step CPU ms':>12}{'fed CPU ms':>11}{'CPU-bound fed':>14}{'pipeline/step':>14}")
    for arch in args.archs.split(","):
        memory, fed = bench_arch(arch, images, y, w, args)
        memory_speed, fed_speed = args.steps * args.batch_size / memory.wall, args.steps * args.batch_size / fed.wall
        step_cpu_ms, fed_cpu_ms = 1000 * memory.cpu / args.steps, 1000 * fed.cpu / args.steps
        print(f"{arch:<15}{memory_speed:>16.1f}{fed_speed:>14.1f}{fed_speed / memory_speed:>11.0%}"
              f"{step_cpu_ms:>12.0f}{fed_cpu_ms:>11.0f}{step_cpu_ms / (step_cpu_ms + pipe_cpu_ms):>14.1%}"
              f"{10 * args.batch_size / pipe.wall / memory_speed:>13.1f}×", flush=True)


if __name__ == "__main__":
    main()
