"""Command line: `python -m core train|evaluate|predict|saliency|export …` — the same functions the pages use."""

from __future__ import annotations

import argparse
import sys
import threading
import time

from core.models import ARCHITECTURES, ModelConfig


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model and write a run folder")
    p.add_argument("--arch", choices=ARCHITECTURES, default="custom_cnn")
    p.add_argument("--data", default="", help="dataset folder (default: $FACE_DATA_DIR or the bundled sample)")
    p.add_argument("--dataset", default="utkface", choices=("utkface", "adience", "fairface"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--width", type=int, default=32, help="base filter count (multitask_cnn, residual_cnn)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--age-head", choices=("regression", "distribution"), default="regression")
    p.add_argument("--age-loss", choices=("mae", "mse", "huber"), default="mae")
    p.add_argument("--age-weight", type=float, default=0.1)
    p.add_argument("--schedule", choices=("cosine", "plateau"), default="cosine")
    p.add_argument("--split", default="0.7,0.15,0.15", help="train,val,test fractions")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--race-class-weights", action="store_true")
    p.add_argument("--freeze-backbone-epochs", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="use a seeded sample of N images")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default="", help="runs folder (default: ./runs)")


def _train_config(args) -> TrainConfig:  # noqa: F821 - imported lazily, TensorFlow is slow to import
    from core.training import TrainConfig
    model = ModelConfig(arch=args.arch, img_size=args.img_size, width=args.width, age_head=args.age_head)
    return TrainConfig(
        model=model, dataset=args.dataset, data_dir=args.data, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, age_loss=args.age_loss, age_weight=args.age_weight, schedule=args.schedule,
        split=tuple(float(f) for f in args.split.split(",")), augment=not args.no_augment,
        race_class_weights=args.race_class_weights, freeze_backbone_epochs=args.freeze_backbone_epochs,
        limit=args.limit, seed=args.seed, out_dir=args.out)


def _print_progress(progress, done: threading.Event) -> None:
    """A one-line progress bar on stderr, redrawn twice a second until training ends."""
    while not done.wait(0.5):
        s = progress.snapshot()
        if not s["batches_per_epoch"]:
            continue
        frac = s["batch"] / s["batches_per_epoch"]
        bar = "#" * int(frac * 30)
        last = s["batch_log"][-1] if s["batch_log"] else {}
        print(f"\repoch {s['epoch']}/{s['epochs']} [{bar:<30}] loss {last.get('loss', float('nan')):.3f} "
              f"age MAE {last.get('age_mae', float('nan')):.2f}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def cmd_train(args) -> int:
    from core.training import Progress, TrainingError, train
    cfg = _train_config(args)
    progress = Progress(epochs=cfg.epochs)
    done = threading.Event()
    printer = threading.Thread(target=_print_progress, args=(progress, done), daemon=True)
    printer.start()
    started = time.time()
    try:
        train(cfg, progress)
    except TrainingError as error:
        done.set()
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        done.set()
        printer.join()
    for note in progress.notes:
        print(f"note: {note}", file=sys.stderr)
    test = progress.metrics.get("test", {})
    print(f"device {progress.device}; {len(progress.history)} epochs in {time.time() - started:.0f} s; test: "
          + ", ".join(f"{k}={test[k]:.4f}" for k in ("age_mae", "gender_accuracy", "race_accuracy")
                      if test.get(k) is not None), file=sys.stderr)
    print(progress.run_dir)
    return 0


# ------------------------------------------------------------------------------------------- evaluate

def _add_evaluate(sub) -> None:
    sub.add_parser("evaluate", help="score a model on a labelled folder (not built yet)")


def cmd_evaluate(args) -> int:
    print("error: evaluate is not built yet", file=sys.stderr)
    return 2


# -------------------------------------------------------------------------------------------- predict

def _add_predict(sub) -> None:
    sub.add_parser("predict", help="find faces and predict age, gender and race (not built yet)")


def cmd_predict(args) -> int:
    print("error: predict is not built yet", file=sys.stderr)
    return 2


# ------------------------------------------------------------------------------------------- saliency

def _add_saliency(sub) -> None:
    sub.add_parser("saliency", help="explain one prediction as a saliency map PNG (not built yet)")


def cmd_saliency(args) -> int:
    print("error: saliency is not built yet", file=sys.stderr)
    return 2


# --------------------------------------------------------------------------------------------- export

def _add_export(sub) -> None:
    sub.add_parser("export", help="export a model to TFLite (not built yet)")


def cmd_export(args) -> int:
    print("error: export is not built yet", file=sys.stderr)
    return 2


# ----------------------------------------------------------------------------------------------- main

COMMANDS = {
    "train": (_add_train, cmd_train),
    "evaluate": (_add_evaluate, cmd_evaluate),
    "predict": (_add_predict, cmd_predict),
    "saliency": (_add_saliency, cmd_saliency),
    "export": (_add_export, cmd_export),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser, _ in COMMANDS.values():
        add_parser(sub)
    args = parser.parse_args(argv)
    return COMMANDS[args.command][1](args)


if __name__ == "__main__":
    sys.exit(main())
