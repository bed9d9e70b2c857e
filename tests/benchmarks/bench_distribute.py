"""Training img/s on one process vs two MultiWorkerMirroredStrategy workers on this machine (127.0.0.1), at the
same global batch. Prints figures, asserts nothing.

Both train the bundled sample (its own crops, 300 images) with core.training.train, each worker in a process of
its own: one process with batches of 2·B, or two workers with batches of B (global 2·B). The figure is training
images per second over the epochs after the first (which traces the graph), validation included, timed at the
chief's epoch ends. On a 2-core machine two workers split the cores one process already uses, and add a gRPC
all-reduce per step: expect no gain here; the strategy pays across machines.

    nice -n 19 python tests/benchmarks/bench_distribute.py [--epochs 4] [--img-size 64] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.config import TrainConfig  # noqa: E402  (no TensorFlow here: it starts in the workers)
from core.distribute import tf_config  # noqa: E402
from core.model_config import ModelConfig  # noqa: E402

# Trains TrainConfig.from_dict(argv[1]); prints the time each epoch ended, then n_train.
DRIVER = '''
import json, sys, time
import core
from core.config import Progress, TrainConfig
from core.training import train

class Timed(Progress):
    def record_epoch(self, row):
        super().record_epoch(row)
        print("epoch-end", time.perf_counter(), flush=True)

cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
progress = train(cfg, Timed(epochs=cfg.epochs))
print("n_train", progress.metrics["n_train"], flush=True)
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def img_per_s(output: str, epochs: int) -> float:
    ends = [float(line.split()[1]) for line in output.splitlines() if line.startswith("epoch-end")]
    n_train = int(next(line.split()[1] for line in output.splitlines() if line.startswith("n_train")))
    if len(ends) != epochs:
        raise RuntimeError(f"expected {epochs} epochs, saw {len(ends)}:\n{output[-2000:]}")
    return n_train * (epochs - 1) / (ends[-1] - ends[0])


def run(cfg: TrainConfig, workers: int, folder: Path) -> float:
    """img/s of `cfg` trained by `workers` processes; the chief's (first) figure."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(workers)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FACE_RUNS_DIR": str(folder / "runs"),
           "FACE_CACHE_DIR": str(folder / "cache")}
    processes = [subprocess.Popen(
        [sys.executable, "-c", DRIVER, json.dumps(cfg.to_dict())], cwd=ROOT, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, env={**env, **({"TF_CONFIG": tf_config(addresses, i)} if workers > 1 else {})})
        for i in range(workers)]
    outputs = [process.communicate()[0] for process in processes]
    if any(process.returncode for process in processes):
        raise RuntimeError(f"a worker failed: exit {[p.returncode for p in processes]}")
    return img_per_s(outputs[0], cfg.epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16, help="per replica, on two workers")
    args = parser.parse_args()
    base = TrainConfig(model=ModelConfig(img_size=args.img_size), data_dir=str(ROOT / "data" / "sample" / "utkface"),
                       crops="dataset", epochs=args.epochs, early_stopping_patience=args.epochs, limit=0)
    with tempfile.TemporaryDirectory() as folder:
        one = run(dataclasses.replace(base, batch_size=2 * args.batch_size), 1, Path(folder) / "one")
        two = run(dataclasses.replace(base, batch_size=args.batch_size), 2, Path(folder) / "two")
    print(f"custom_cnn {args.img_size} px, global batch {2 * args.batch_size}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"train img/s, 1 process: {one:.1f}")
    print(f"train img/s, 2 workers on 127.0.0.1 (MultiWorkerMirroredStrategy): {two:.1f} ({two / one:.2f}×)")


if __name__ == "__main__":
    main()
