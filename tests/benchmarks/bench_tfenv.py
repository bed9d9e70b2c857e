"""TensorFlow's oneDNN settings against each other: training speed, saliency speed, and whether it crashes.
Prints a table, asserts nothing.

Settings (TensorFlow reads them once, at import, so every measurement runs in a fresh process):
  - full ISA: TF_ENABLE_ONEDNN_OPTS=1, TensorFlow's own default made explicit so core/tfenv.py leaves oneDNN
    alone: oneDNN at the CPU's best ISA (AVX-512 with BF16/VNNI on this repository's AMD EPYC machine);
  - AVX2 cap: nothing set, so core/tfenv.py fills in ONEDNN_MAX_CPU_ISA=AVX2 (the project's default);
  - oneDNN off: TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's Eigen kernels).
Measurements, each in its own process per setting:
  - train: img/s of residual_cnn at 96 px, width 32, distribution age head (the shipped model's kind), batch 64,
    one batch in memory repeated (the model's own speed, no input pipeline), `--steps` timed steps after
    `--warmup`; with CPU ms per step (all threads of the process), which competition for the cores barely moves;
  - saliency: wall seconds per map of that model, Saliency and Grad-CAM (head `--head`), median of `--repeats`
    after one warm-up call (which builds the view models, as the app does once); with CPU seconds per map;
  - probe: what crashed the test suite: fresh tiny residual_cnns (32 px, width 8) explained for every head by
    every gradient method, and fitted a few steps from another model's weights (a warm restart). Not timed.
A process that dies on a signal is reported as "crashed (SIGABRT)"; a setting is safe when none of its processes
crashed. Train and saliency repeat `--rounds` times, settings interleaved (the machine's load drifts); the best
round is kept. On a shared CPU read the CPU ms column as much as the wall figures.

    nice -n 10 python tests/benchmarks/bench_tfenv.py [--rounds 2] [--steps 5] [--only avx2,off]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ONEDNN_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")
# name → (label, what the child's environment gets on top of ours minus any oneDNN variable)
SETTINGS = {
    "full": ("full ISA (TF_ENABLE_ONEDNN_OPTS=1)", {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "avx2": ("AVX2 cap (core/tfenv.py default)", {}),
    "off": ("oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
}
STAGES = ("train", "saliency", "probe")
SALIENCY_METHODS = ("saliency", "gradcam")
TIMEOUT_S = 1800


# ------------------------------------------------------------------------------------------ in the child

def _child(stage: str, args) -> dict:
    sys.path.insert(0, str(ROOT))
    import core  # noqa: F401  (core/tfenv.py fills in its defaults before TensorFlow's import, as in the app)

    result = {"isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA", "-"),
              "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "-")}
    return result | {"train": _train, "saliency": _saliency, "probe": _probe}[stage](args)


def _model_config(**overrides):
    from core.model_config import ModelConfig
    return ModelConfig(**{"arch": "residual_cnn", "img_size": 96, "width": 32, "age_head": "distribution",
                          "imagenet": False, **overrides})


def _compiled(model_config):
    import keras

    from core.models import build_model
    from core.training import TrainConfig, _losses
    cfg = TrainConfig(model=model_config)
    model, _ = build_model(cfg.model)
    losses, weights, metrics = _losses(cfg)
    model.compile(keras.optimizers.Adam(1e-3), losses, loss_weights=weights, weighted_metrics=metrics)
    return model


def _batch(n: int, size: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    from core.pipeline import targets_and_weights
    rng = np.random.default_rng(seed)
    labels = pd.DataFrame({"age": pd.array(rng.integers(1, 90, n).astype(float), dtype="Float64"),
                           "gender": pd.array(rng.integers(0, 2, n), dtype="Int64"),
                           "race": pd.array(rng.integers(0, 5, n), dtype="Int64")})
    y, w = targets_and_weights(labels, "distribution")
    return rng.integers(0, 256, (n, size, size, 3)).astype(np.float32), y, w


def _train(args) -> dict:
    import tensorflow as tf
    model = _compiled(_model_config())
    data = tf.data.Dataset.from_tensors(_batch(args.batch_size, 96)).repeat()
    model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0)  # tracing and first allocations
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"img_s": args.steps * args.batch_size / wall, "cpu_ms_step": 1000 * cpu / args.steps}


def _saliency(args) -> dict:
    import numpy as np

    from core.models import build_model
    from core.saliency import Explainer
    model, _ = build_model(_model_config())
    explainer = Explainer(model)
    crop = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    prediction = explainer.predict(crop)
    seconds, cpu_seconds = {}, {}
    for method in SALIENCY_METHODS:
        explainer.explain(crop, args.head, method, prediction=prediction)  # builds the view model
        walls, cpus = [], []
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            explainer.explain(crop, args.head, method, prediction=prediction)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        seconds[method], cpu_seconds[method] = statistics.median(walls), statistics.median(cpus)
    return {"s_per_map": seconds, "cpu_s_per_map": cpu_seconds}


def _probe(args) -> dict:
    import numpy as np

    from core.saliency import HEADS, METHODS, Explainer
    tiny = _model_config(img_size=32, width=8)
    images, y, w = _batch(16, 32, seed=1)
    rng = np.random.default_rng(2)
    calls = 0
    for _ in range(args.probe_models):
        explainer = Explainer(_compiled(tiny))
        for head in HEADS:
            for method in METHODS:
                if method != "scorecam":  # no gradients: not what crashes
                    explainer.explain(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), head, method)
                    calls += 1
        restarted = _compiled(tiny)
        restarted.set_weights(explainer.model.get_weights())
        restarted.fit(images, y, sample_weight=w, batch_size=8, epochs=2, verbose=0)
    return {"probe": f"{calls} maps, {args.probe_models} warm-restart fits"}


# ----------------------------------------------------------------------------------------- in the parent

def _run(setting: str, stage: str, args) -> dict:
    env = {name: value for name, value in os.environ.items() if name not in ONEDNN_VARIABLES}
    env.update(SETTINGS[setting][1], PYTHONPATH=str(ROOT))
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", stage, "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--repeats", str(args.repeats),
            "--head", args.head, "--probe-models", str(args.probe_models)]
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {TIMEOUT_S} s"}
    if done.returncode < 0:
        return {"error": f"crashed ({signal.Signals(-done.returncode).name})", "crashed": True}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"failed (exit {done.returncode}): {tail}"}
    return json.loads(lines[-1])


def _best(results: list[dict], key) -> dict:
    good = [r for r in results if "error" not in r]
    if len(good) < len(results):  # a crash in any round is the figure to show
        return next(r for r in results if "error" in r)
    return min(good, key=key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated settings (default: all of {', '.join(SETTINGS)})")
    parser.add_argument("--rounds", type=int, default=2, help="train and saliency measurements per setting")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9, help="timed maps per method")
    parser.add_argument("--head", default="gender", choices=("age", "gender", "race"))
    parser.add_argument("--probe-models", type=int, default=3, help="tiny models the crash probe explains")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args)), flush=True)
        return

    chosen = args.only.split(",") if args.only else list(SETTINGS)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"oneDNN settings, fresh process per measurement; residual_cnn 96 px width 32 distribution head; "
          f"train batch {args.batch_size}, {args.steps} timed steps after {args.warmup}; saliency head "
          f"{args.head}, median of {args.repeats}; best of {args.rounds} rounds; {os.cpu_count()} CPUs, "
          f"load average {load} at start", flush=True)
    runs = {name: {stage: [] for stage in STAGES} for name in chosen}
    for _ in range(args.rounds):
        for name in chosen:
            for stage in ("train", "saliency"):
                print(f"  {name}: {stage}…", file=sys.stderr, flush=True)
                runs[name][stage].append(_run(name, stage, args))
    for name in chosen:
        print(f"  {name}: probe…", file=sys.stderr, flush=True)
        runs[name]["probe"].append(_run(name, "probe", args))

    header = (f"{'setting':<38}{'ISA cap':>9}{'train img/s':>13}{'CPU ms/step':>13}"
              + "".join(f"{m + ' s/map (CPU)':>22}" for m in SALIENCY_METHODS) + f"{'crash probe':>20}")
    print(header)
    print("-" * len(header))
    safe = {}
    for name in chosen:
        train = _best(runs[name]["train"], key=lambda r: -r["img_s"])
        saliency = _best(runs[name]["saliency"], key=lambda r: sum(r["s_per_map"].values()))
        probe = runs[name]["probe"][0]
        every = [r for stage in STAGES for r in runs[name][stage]]
        isa = next((r["isa_cap"] for r in every if "isa_cap" in r), "?")
        cells = ([train["error"]] if "error" in train else [f"{train['img_s']:.1f}", f"{train['cpu_ms_step']:.0f}"])
        cells += ([saliency["error"]] if "error" in saliency
                  else [f"{saliency['s_per_map'][m]:.3f} ({saliency['cpu_s_per_map'][m]:.2f})"
                        for m in SALIENCY_METHODS])
        row = f"{SETTINGS[name][0]:<38}{isa:>9}"
        row += (f"{cells[0]:>26}" if "error" in train else f"{cells[0]:>13}{cells[1]:>13}")
        row += (f"{cells[-1]:>44}" if "error" in saliency else "".join(f"{c:>22}" for c in cells[-2:]))
        row += f"{probe.get('error', 'ok'):>20}"
        print(row, flush=True)
        if not any(r.get("crashed") for r in every) and "error" not in train and "error" not in saliency:
            safe[name] = (train["img_s"], sum(saliency["s_per_map"].values()))
    print("every round (train img/s, then s/map " + " + ".join(SALIENCY_METHODS) + "):")
    for name in chosen:
        train = [r.get("error") or f"{r['img_s']:.1f}" for r in runs[name]["train"]]
        maps = [r.get("error") or " + ".join(f"{r['s_per_map'][m]:.3f}" for m in SALIENCY_METHODS)
                for r in runs[name]["saliency"]]
        print(f"  {SETTINGS[name][0]}: train {' / '.join(train)}; saliency {' / '.join(maps)}")
    if not safe:
        print("no setting ran without a crash")
        return
    fastest_train = max(safe, key=lambda n: safe[n][0])
    fastest_maps = min(safe, key=lambda n: safe[n][1])
    unsafe = [SETTINGS[n][0] for n in chosen if n not in safe]
    print(f"safe: {', '.join(SETTINGS[n][0] for n in safe)}" + (f"; not safe: {', '.join(unsafe)}" if unsafe else ""))
    if fastest_train == fastest_maps:
        print(f"fastest safe setting: {SETTINGS[fastest_train][0]} (training and saliency)")
    else:
        print(f"fastest safe setting: {SETTINGS[fastest_train][0]} for training, "
              f"{SETTINGS[fastest_maps][0]} for saliency")


if __name__ == "__main__":
    main()
