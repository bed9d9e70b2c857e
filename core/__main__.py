"""Command line: `python -m core train|evaluate|predict|saliency|export …` — the same functions the pages use."""

from __future__ import annotations

import argparse
import sys
import threading
import time

from core.crops import CROP_MODES
from core.model_config import ARCHITECTURES, ModelConfig


def _add_train(sub) -> None:
    # Defaults live in TrainConfig / ModelConfig, once: an option left out keeps the config's default.
    p = sub.add_parser("train", help="train a model and write a run folder (or k runs with --folds K)")
    p.add_argument("--arch", choices=ARCHITECTURES, help="architecture (default: custom_cnn)")
    p.add_argument("--data", help="dataset folder (default: $FACE_DATA_DIR or the bundled sample)")
    p.add_argument("--dataset", choices=("utkface", "adience", "fairface"), help="dataset kind (default: utkface)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--img-size", type=int, help="input size in pixels (default: 128)")
    p.add_argument("--width", type=int, help="base filter count (multitask_cnn, residual_cnn)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--age-head", choices=("regression", "distribution"))
    p.add_argument("--age-loss", choices=("mae", "mse", "huber"), help="regression head loss (default: mse)")
    p.add_argument("--age-weight", type=float, help="age loss weight (default: 0.1)")
    p.add_argument("--gender-weight", type=float)
    p.add_argument("--race-weight", type=float)
    p.add_argument("--schedule", choices=("cosine", "plateau"))
    p.add_argument("--split", type=_fractions, help="train,val,test fractions (default: 0.7,0.15,0.15)")
    p.add_argument("--no-augment", action="store_true", default=None)
    p.add_argument("--crops", choices=CROP_MODES, help="app: faces detected and aligned as uploads are (default); "
                                                        "dataset: the dataset's own crops")
    p.add_argument("--race-class-weights", action="store_true", default=None, help="balance races in the loss")
    p.add_argument("--gender-class-weights", action="store_true", default=None, help="balance genders in the loss")
    p.add_argument("--freeze-backbone-epochs", type=int, help="resnet50: epochs with a frozen backbone first")
    p.add_argument("--no-imagenet", action="store_true", default=None, help="resnet50: start from random weights")
    p.add_argument("--limit", type=int, help="use a seeded sample of N images")
    p.add_argument("--split-file", help="reuse a run's split.csv instead of --split (continue that run honestly)")
    p.add_argument("--early-stopping-patience", type=int, help="epochs without validation gain before stopping")
    p.add_argument("--init-from", help="a .keras model of the same architecture to start from (warm restart)")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="runs folder (default: $FACE_RUNS_DIR or ./runs)")
    p.add_argument("--folds", type=int, default=0,
                   help="k-fold cross-validation: K runs, each testing on its held-out fold; prints mean ± std")
    # Distributed training (core/distribute.py): cluster options, not settings of the run, so not in TrainConfig.
    p.add_argument("--workers", help="host:port of every worker, comma-separated, the same on each (worker 0 is the "
                                     "chief); sets TF_CONFIG for MultiWorkerMirroredStrategy")
    p.add_argument("--worker-index", type=int, help="with --workers: which of them this process is")
    p.add_argument("--fixed-lr", action="store_true", default=None,
                   help="keep --lr on several replicas (default: scaled with the global batch, linear scaling rule)")


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated fractions, got {text!r}")
    return values


_MODEL_OPTIONS = ("arch", "img_size", "width", "age_head")
_RENAMED_OPTIONS = {"data": "data_dir", "lr": "learning_rate", "out": "out_dir"}


def _train_config(args):
    """TrainConfig from the options given on the command line; the rest keep the config's defaults."""
    from core.training import TrainConfig
    given = {k: v for k, v in vars(args).items()
             if v is not None and k not in ("command", "folds", "workers", "worker_index")}
    model = {k: given.pop(k) for k in _MODEL_OPTIONS if k in given}
    if given.pop("no_imagenet", False):
        model["imagenet"] = False
    if given.pop("no_augment", False):
        given["augment"] = False
    if given.pop("fixed_lr", False):
        given["scale_learning_rate"] = False
    return TrainConfig(model=ModelConfig(**model), **{_RENAMED_OPTIONS.get(k, k): v for k, v in given.items()})


class _ProgressPrinter:
    """A one-line progress bar on stderr, redrawn when it changes, plus one summary line per finished epoch
    and any note (e.g. ResNet-50 without ImageNet weights) as soon as it appears."""

    def __init__(self):
        self.progress, self.label = None, ""
        self.epochs_shown = self.notes_shown = 0
        self.drawn, self.line_open = "", False  # the last bar text, and whether the cursor sits on it
        self.distribution_shown = False

    def watch(self, progress, label: str = "") -> None:
        self.draw()
        self.end_line()
        self.progress, self.label = progress, label
        self.epochs_shown = self.notes_shown = 0

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop_event.set()

    def draw(self) -> None:
        if self.progress is None:
            return
        s = self.progress.snapshot()
        if s["distribution"] and not self.distribution_shown:
            from core.distribute import describe
            self.print_line(describe(s["distribution"]))
            self.distribution_shown = True
        for note in s["notes"][self.notes_shown:]:
            self.print_line(f"note: {note}")
        self.notes_shown = len(s["notes"])
        for row in s["history"][self.epochs_shown:]:
            self.print_line(self._epoch_summary(row, s["epochs"]))
        self.epochs_shown = len(s["history"])
        if s["status"] == "failed":
            return  # the caller prints the error once, as "error: …"
        line = self._bar(s) if s["batch_log"] and not self.progress.done else f"{self.label}{s['message']}"
        if line != self.drawn:
            print(f"\r{line:<100}", end="", file=sys.stderr, flush=True)
            self.drawn, self.line_open = line, True

    def _bar(self, s: dict) -> str:
        # Only once a batch was logged: before that there is no loss to show (it used to print "loss nan").
        last = s["batch_log"][-1]
        frac = s["batch"] / max(1, s["batches_per_epoch"])
        return (f"{self.label}epoch {s['epoch']}/{s['epochs']} [{'#' * int(frac * 30):<30}] "
                f"{s['batch']}/{s['batches_per_epoch']} loss {last['loss']:.3f}"
                + (f" age MAE {last['age_mae']:.2f}" if "age_mae" in last else ""))

    def _epoch_summary(self, row: dict, epochs: int) -> str:
        shown = [("loss", "loss", 3), ("val_loss", "val loss", 3), ("val_age_mae", "val age MAE", 2),
                 ("val_gender_accuracy", "val gender acc", 3), ("val_race_accuracy", "val race acc", 3)]
        parts = [f"{label} {row[key]:.{digits}f}" for key, label, digits in shown if key in row]
        return f"{self.label}epoch {int(row['epoch'])}/{epochs}: " + ", ".join(parts)

    def print_line(self, text: str) -> None:
        self.end_line()
        print(text, file=sys.stderr, flush=True)

    def end_line(self) -> None:
        if self.line_open:
            print(file=sys.stderr, flush=True)
            self.line_open = False


def _run_in_background(work, printer: _ProgressPrinter):
    """Run `work()` in a thread while the main thread draws progress. Ctrl-C asks training to stop after the
    current batch (the run folder is still completed, status "stopped"); a second Ctrl-C aborts."""
    outcome = {}

    def target():
        try:
            outcome["result"] = work()
        except BaseException as error:  # handed to the main thread, which re-raises it
            outcome["error"] = error

    worker = threading.Thread(target=target, name="cli-training", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.5)
            printer.draw()
    except KeyboardInterrupt:
        printer.stop()
        printer.print_line("stopping after the current batch… (Ctrl-C again to abort)")
        while worker.is_alive():
            worker.join(0.5)
            printer.draw()
    printer.draw()
    printer.end_line()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def cmd_train(args) -> int:
    from core import distribute
    from core.training import HEADLINE_METRICS, Progress, TrainingError, cross_validate, train
    cfg = _train_config(args)
    printer = _ProgressPrinter()
    started = time.time()
    try:
        if args.workers:  # before TensorFlow starts: the strategy reads TF_CONFIG once
            distribute.use_workers(distribute.parse_workers(args.workers), args.worker_index)
        if args.folds:
            work = lambda: cross_validate(
                cfg, args.folds, on_fold=lambda i, p: printer.watch(p, f"fold {i + 1}/{args.folds} "))
            result = _run_in_background(work, printer)
        else:
            progress = Progress(epochs=cfg.epochs)
            printer.watch(progress)
            result = _run_in_background(lambda: train(cfg, progress), printer)
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.folds:
        print(f"{result['completed']}/{result['folds']} folds {result['status']} in {time.time() - started:.0f} s; "
              "test metrics, mean ± std (sample) across folds:")
        for key, stats in result["summary"].items():
            print(f"  {key:<16} {stats['mean']:.4f} ± {stats['std']:.4f}  (n={stats['n']})")
        print(result["run_dir"])
        return 0
    test = result.metrics.get("test", {})
    print(f"{result.status} on {result.device}; {len(result.history)} epochs in {time.time() - started:.0f} s; test: "
          + (", ".join(f"{k}={test[k]:.4f}" for k in HEADLINE_METRICS if test.get(k) is not None) or "not scored"),
          file=sys.stderr)
    if result.distribution.get("chief", True):  # another worker's folder was scratch, deleted
        print(result.run_dir)
    return 0


# ------------------------------------------------------------------------------------------- evaluate

def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score a model on a labelled folder: metrics overall and per group")
    p.add_argument("--data", default="", help="dataset folder (default: the run's folder, $FACE_DATA_DIR or the "
                                              "bundled sample)")
    p.add_argument("--dataset", choices=("utkface", "adience", "fairface"), default=None,
                   help="dataset kind (default: detected from the folder)")
    p.add_argument("--model", default="", help=".keras file, or its .tflite export (default: the run's model, else "
                                               "the shipped model)")
    p.add_argument("--run", default="", help="a training run folder: its model, data and split.csv")
    p.add_argument("--split-file", default="", help="a run's split.csv, to score only some rows")
    p.add_argument("--split", default="", help="which split of the split file (default: test)")
    p.add_argument("--limit", type=int, default=0, help="score a seeded sample of N images")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--min-group", type=int, default=30, help="groups smaller than this are flagged, not compared")
    p.add_argument("--no-flip", action="store_true", help="skip flip test-time augmentation")
    p.add_argument("--crops", choices=CROP_MODES, default="app",
                   help="app: each face detected and aligned as an upload is (what users get; default); dataset: "
                        "the dataset's own crops resized")
    p.add_argument("--predictions", default="", help="also write per-image predictions to this CSV")
    p.add_argument("--json", action="store_true", help="print the full report as one JSON line")


def cmd_evaluate(args) -> int:
    from core import evaluation, settings
    from core.atomic import atomic_write_text
    from core.datasets import DatasetError
    from core.registry import ModelError, default_model

    def progress(done: int, total: int) -> None:
        print(f"\rpredicting {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    try:
        run = evaluation.run_sources(args.run) if args.run else {}
        model_path = args.model or run.get("model") or getattr(default_model(), "path", None)
        if not model_path:
            raise ModelError("No shipped model yet: pass --model PATH or --run RUN_DIR.")
        folder = args.data or run.get("data") or settings.data_dir()
        split_file = args.split_file or run.get("split_file")
        if args.split and not split_file:
            raise evaluation.EvaluationError("--split needs --split-file or --run: a run's split.csv names the rows.")
        kind, table = evaluation.load_rows(args.dataset or run.get("dataset"), folder, split_file, args.split or "test")
        if args.limit:
            table = table.sample(n=min(args.limit, len(table)), random_state=args.seed).reset_index(drop=True)
        predictor = _lite_predictor(model_path, flip_tta=not args.no_flip)
        frame = evaluation.predict_frame(predictor, table, on_progress=progress, crops=args.crops)
    except (DatasetError, ModelError, evaluation.EvaluationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = evaluation.evaluate_frame(frame, kind, min_group=args.min_group)
    report.update(model=str(model_path), data=str(folder),
                  split=(args.split or "test") if split_file else "all", crops=args.crops)
    if args.predictions:
        atomic_write_text(args.predictions, frame.to_csv(index=False))
    print(evaluation.to_json(report) if args.json else evaluation.format_report(report))
    return 0


# -------------------------------------------------------------------------------------------- predict

def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="find every face in photos and predict age, gender and race")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG, PNG, WebP or BMP files")
    p.add_argument("--model", default="", help="a .keras model, or its .tflite export (default: the shipped model)")
    p.add_argument("--json", action="store_true",
                   help='print one JSON array: per image {"image", "faces": [...], "note", "error"}')
    p.add_argument("--whole-image", action="store_true",
                   help="when no face is found in a photo, take the whole image as one already-cropped face (face "
                        "crops are taken whole anyway)")
    p.add_argument("--small-faces", action="store_true", help="search close-ups for small faces too (slower)")
    p.add_argument("--no-flip", action="store_true", help="skip flip test-time augmentation")


def _print_predictions(records: list[dict]) -> None:
    for record in records:
        if record["error"]:
            print(f"{record['image']}: error: {record['error']}")
            continue
        print(f"{record['image']}: {len(record['faces'])} face(s)")
        for number, face in enumerate(record["faces"], start=1):
            race_prob = face["race_probs"][face["race"]]
            print(f"  face {number} at {face['box']}: {face['age']:.0f} ± {face['age_std']:.0f} years, "
                  f"{face['gender']} ({face['gender_prob']:.0%}), {face['race']} ({race_prob:.0%})")


def cmd_predict(args) -> int:
    import json

    from core.faces import DetectorError, FaceDetector
    from core.predict import predict_files
    from core.registry import ModelError, default_model
    try:
        model_path = args.model or getattr(default_model(), "path", None)
        if not model_path:
            raise ModelError("No model yet: the shipped model is missing from models/. Pass --model PATH "
                             "(a .keras file, e.g. runs/<run>/model.keras).")
        predictor = _lite_predictor(model_path, flip_tta=not args.no_flip)
        detector = FaceDetector(tiles="always" if args.small_faces else "auto")
    except (ModelError, DetectorError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with detector:
        records = predict_files(args.images, predictor, detector, whole_image=args.whole_image)
    for record in records:
        if record["note"]:
            print(f"note: {record['image']}: {record['note']}", file=sys.stderr)
        elif not record["error"] and not record["faces"] and not args.whole_image:
            print(f"note: no face found in {record['image']}; --whole-image takes it as one face crop",
                  file=sys.stderr)
    if args.json:
        print(json.dumps(records))
    else:
        _print_predictions(records)
    return 0


def _lite_predictor(model_path, flip_tta: bool = True):
    """The LiteRT Predictor the app would use for a model: a .tflite as given, or the float32 export beside a
    .keras (written first, in this process, when missing or older than the .keras)."""
    from pathlib import Path

    from core.export import ensure_tflite
    from core.predict import Predictor
    from core.registry import ModelError
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"Model file not found: {model_path}")
    # The user names this file on their own command line, so it may live outside models/ and runs/.
    tflite = model_path if model_path.suffix == ".tflite" else ensure_tflite(model_path, in_process=True)
    return Predictor(tflite, flip_tta=flip_tta)


# ------------------------------------------------------------------------------------------- saliency

def _add_saliency(sub) -> None:
    from core.datasets import RACES
    from core.saliency import HEADS, METHODS
    p = sub.add_parser("saliency", help="explain one prediction as a saliency map PNG")
    p.add_argument("image", help="a photo (its first face is explained) or an already-cropped face")
    p.add_argument("--head", choices=HEADS, default="gender")
    p.add_argument("--method", choices=METHODS, default="gradcam")
    p.add_argument("--out", required=True, help="PNG file to write: the face, the overlay and the prediction")
    p.add_argument("--model", default="", help=".keras file (default: the shipped model)")
    p.add_argument("--layer", default="", help="feature map for CAM methods (default: chosen per architecture)")
    p.add_argument("--race-class", choices=RACES, help="race class to explain (default: the predicted one)")
    p.add_argument("--max-n", type=int, default=32, help="Score-CAM channels (0 = all)")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity 0-1")


def cmd_saliency(args) -> int:
    from core import saliency
    from core.atomic import atomic_write_bytes
    from core.faces import DetectorError
    from core.images import ImageError
    from core.registry import ModelError, default_model, load_model
    try:
        model_path = args.model or getattr(default_model(), "path", None)
        if not model_path:
            raise ModelError("No shipped model yet: pass --model PATH.")
        with open(args.image, "rb") as handle:
            data = handle.read()
        # Maps need the Keras model (gradients); finding and cutting the face is the app's LiteRT path.
        # The user names this file on their own command line, so it may live outside models/ and runs/.
        explainer = saliency.Explainer(load_model(model_path, allow_anywhere=True))
        crop, note = saliency.face_crop_from_bytes(data, _lite_predictor(model_path, flip_tta=False))
        prediction = explainer.predict(crop)
        result = explainer.explain(crop, args.head, args.method, args.race_class, args.layer or None,
                                   args.max_n or None, prediction)
        png = saliency.figure_png(saliency.figure(crop, [result], prediction, args.alpha))
    except OSError as error:
        print(f"error: cannot read {args.image}: {error.strerror or error}", file=sys.stderr)
        return 2
    except (ModelError, ImageError, DetectorError, saliency.SaliencyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    atomic_write_bytes(args.out, png)
    if note:
        print(f"note: {note}", file=sys.stderr)
    print(f"{saliency.prediction_text(prediction)}; {result.label} for {args.head}: {result.target}"
          + (f" at {result.layer}" if result.layer else "") + f" in {result.seconds:.2f} s -> {args.out}")
    return 0


# --------------------------------------------------------------------------------------------- export

def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a model to TFLite and compare its predictions with Keras")
    p.add_argument("--model", default="", help=".keras file (default: the shipped model)")
    p.add_argument("--format", choices=("tflite",), default="tflite")
    p.add_argument("--quantize", choices=("float16", "int8"), help="default: none (float32)")
    p.add_argument("--data", default="", help="face images to calibrate int8 and to compare predictions on "
                                              "(default: $FACE_DATA_DIR or the bundled sample)")
    p.add_argument("--out", default="", help="default: beside the model, NAME[.float16|.int8].tflite")
    p.add_argument("--no-compare", action="store_true", help="skip comparing predictions with Keras (the app's own "
                                                              "export of a new model: only the file is needed)")


def cmd_export(args) -> int:
    from core import export, settings
    from core.registry import ModelError, default_model, load_model
    try:
        model_path = args.model or getattr(default_model(), "path", None)
        if not model_path:
            raise ModelError("No shipped model yet: pass --model PATH.")
        folder = args.data or settings.data_dir()
        model, images = None, None  # only int8 calibration and the comparison need them
        if args.quantize == "int8" or not args.no_compare:
            model = load_model(model_path, allow_anywhere=True)
            try:
                images = export.representative_images(folder, int(model.input_shape[1]))
            except export.ExportError:
                if args.quantize == "int8":
                    raise
        out = args.out or export.default_out_path(model_path, args.quantize)
        result = export.export_tflite(model_path, out, args.quantize, images)
        differences = {} if images is None or args.no_compare else export.compare(model, result.path, images[:16])
    except (ModelError, export.ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {result.path} ({result.size_mb:.2f} MB, {args.quantize or 'float32'}) in {result.seconds:.1f} s")
    if differences:
        print(f"largest difference from Keras on {min(16, len(images))} images of {folder}: "
              + ", ".join(f"{name} {value:.4f}" for name, value in differences.items()))
    return 0


# ----------------------------------------------------------------------------------------------- ship

def _add_ship(sub) -> None:
    p = sub.add_parser("ship", help="make a training run the app's default model, with its model card")
    p.add_argument("--run", required=True, help="training run folder (runs/<time>-<arch>)")
    p.add_argument("--data", required=True, help="the UTKFace folder the run was trained on")
    p.add_argument("--name", default="face_insight_v1")
    p.add_argument("--models-dir", default="", help="default: the app's models/ folder")


def cmd_ship(args) -> int:
    from pathlib import Path

    from core.modelcard import ship_run
    if not (Path(args.run) / "model.keras").is_file():
        print(f"error: {args.run} has no model.keras", file=sys.stderr)
        return 2
    card = ship_run(args.run, args.data, args.name, Path(args.models_dir) if args.models_dir else None)
    m = card["metrics"]
    print(f"shipped {card['file']} ({card['file_mb']} MB): test n={m['n']} age MAE {m['age_mae']:.2f}, "
          f"gender {m['gender_accuracy']:.1%}, race {m['race_accuracy']:.1%}")
    return 0


# ----------------------------------------------------------------------------------------------- main

COMMANDS = {
    "train": (_add_train, cmd_train),
    "evaluate": (_add_evaluate, cmd_evaluate),
    "predict": (_add_predict, cmd_predict),
    "saliency": (_add_saliency, cmd_saliency),
    "export": (_add_export, cmd_export),
    "ship": (_add_ship, cmd_ship),
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
