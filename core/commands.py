"""The command line's commands, each an `add_<name>(sub)` that declares its options and a `cmd_<name>(args)` that
runs it with the functions the pages use. A command raises a UserError for anything the user can fix; `main()`
(core/__main__.py) prints it. Defaults come from the code (configs and constants) and `--help` shows them."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.config import TrainConfig
from core.crops import CROP_MODES
from core.datasets import KINDS
from core.errors import UserError
from core.metrics import ANY_RUN_METRICS
from core.registry import DEFAULT_MODEL_NAME, ModelError, default_model
from core.runs import Run
from core.train_options import add_train_options, with_kind_of_folder

DEFAULTS = TrainConfig()  # the crop path and seed that evaluation shares with training


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help ends with its live default, except where there is none worth showing (a flag, "")."""

    def _get_help_string(self, action):
        if action.default in (None, "", []) or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def _parser(sub, name: str, summary: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=summary, formatter_class=DefaultsHelp)


def model_path(given, alternatives: str = "") -> Path:
    """The model file a command uses: the one given, else the shipped model. ModelError when there is none or
    the file is missing. The user names this file on their own command line, so it may live anywhere."""
    path = given or getattr(default_model(), "path", None)
    if not path:
        raise ModelError("No shipped model yet: models/ has no model. Pass --model PATH (a .keras file, e.g. "
                         f"runs/<run>/model.keras){alternatives}.")
    if not Path(path).is_file():
        raise ModelError(f"Model file not found: {path}")
    return Path(path)


def lite_predictor(path: Path, flip_tta: bool = True, one_view: bool = False):
    """The LiteRT Predictor the app would use for a model: a .tflite as given, or the float32 export beside a
    .keras (written first, in this process, when missing or older than the .keras). `one_view`: each face cut
    once, instead of the app's shifted cuts averaged (core.alignment.VIEWS)."""
    from core.alignment import ONE_VIEW, VIEWS
    from core.export import ensure_tflite
    from core.predict import Predictor
    return Predictor(path if path.suffix == ".tflite" else ensure_tflite(path, in_process=True), flip_tta=flip_tta,
                     views=ONE_VIEW if one_view else VIEWS)


def _add_tta_options(p) -> None:
    p.add_argument("--no-flip", action="store_true", help="skip flip test-time augmentation")
    p.add_argument("--one-view", action="store_true",
                   help="cut each face once instead of averaging five slightly shifted cuts, as the app does")


# ---------------------------------------------------------------------------------------------- train

def add_train(sub) -> None:
    p = _parser(sub, "train", "train a model and write a run folder (or k runs with --folds K)")
    add_train_options(p, kind_from_folder=True)
    p.add_argument("--folds", type=int, default=0,
                   help="k-fold cross-validation: K runs, each testing on its held-out fold; prints mean ± std")
    # Distributed training (core/distribute.py): cluster options, not settings of the run, so not in TrainConfig.
    p.add_argument("--workers", help="host:port of every worker, comma-separated, the same on each (worker 0 is the "
                                     "chief); sets TF_CONFIG for MultiWorkerMirroredStrategy")
    p.add_argument("--worker-index", type=int, help="with --workers: which of them this process is")


def cmd_train(args) -> int:
    from core import distribute
    from core.console import ProgressPrinter, run_in_background
    cfg, printer, started = with_kind_of_folder(args), ProgressPrinter(), time.time()
    if args.workers:  # before TensorFlow starts: the strategy reads TF_CONFIG once
        distribute.use_workers(distribute.parse_workers(args.workers), args.worker_index)
    from core.crossval import cross_validate
    from core.training import Progress, train
    if args.folds:
        result = run_in_background(lambda: cross_validate(
            cfg, args.folds, on_fold=lambda i, p: printer.watch(p, f"fold {i + 1}/{args.folds} ")), printer)
        print(f"{result['completed']}/{result['folds']} folds {result['status']} in {time.time() - started:.0f} s; "
              "test metrics, mean ± std (sample) across folds:")
        for key, stats in result["summary"].items():
            print(f"  {key:<16} {stats['mean']:.4f} ± {stats['std']:.4f}  (n={stats['n']})")
        print(result["run_dir"])
        return 0
    progress = Progress(epochs=cfg.epochs)
    printer.watch(progress)
    result = run_in_background(lambda: train(cfg, progress), printer)
    test = result.metrics.get("test", {})
    print(f"{result.status} on {result.device}; {len(result.history)} epochs in {time.time() - started:.0f} s; test: "
          + (", ".join(f"{k}={test[k]:.4f}" for k in ANY_RUN_METRICS if test.get(k) is not None) or "not scored"),
          file=sys.stderr)
    if result.distribution.get("chief", True):  # another worker's folder was scratch, deleted
        print(result.run_dir)
    return 0


# ------------------------------------------------------------------------------------------- evaluate

def add_evaluate(sub) -> None:
    from core.evaluation import MIN_GROUP_SIZE
    p = _parser(sub, "evaluate", "score a model on a labelled folder: metrics overall and per group")
    p.add_argument("--data", default="", help="dataset folder (default: the run's folder, $FACE_DATA_DIR or the "
                                              "bundled sample)")
    p.add_argument("--dataset", choices=KINDS, help="dataset kind (default: detected from the folder)")
    p.add_argument("--model", default="", help=".keras file, or its .tflite export (default: the run's model, else "
                                               "the shipped model)")
    p.add_argument("--run", default="", help="a training run folder: its model, data and split.csv")
    p.add_argument("--split-file", default="", help="a run's split.csv, to score only some rows")
    p.add_argument("--split", default="", help="which split of the split file (default: test)")
    p.add_argument("--limit", type=int, default=0, help="score a seeded sample of N images (0: all)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of that sample")
    p.add_argument("--min-group", type=int, default=MIN_GROUP_SIZE,
                   help="groups smaller than this are flagged, not compared")
    _add_tta_options(p)
    p.add_argument("--crops", choices=CROP_MODES, default=DEFAULTS.crops,
                   help="app: each face detected and aligned as an upload is (what users get); dataset: the "
                        "dataset's own crops resized")
    p.add_argument("--predictions", default="", help="also write per-image predictions to this CSV")
    p.add_argument("--json", action="store_true", help="print the full report as one JSON line")


def cmd_evaluate(args) -> int:
    from core import evaluation, reports, settings
    from core.atomic import atomic_write_text

    def progress(done: int, total: int) -> None:
        print(f"\rpredicting {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    run = evaluation.run_sources(args.run) if args.run else {}
    path = model_path(args.model or run.get("model"), " or --run RUN_DIR")
    folder = args.data or run.get("data") or settings.data_dir()
    split_file = args.split_file or run.get("split_file")
    if args.split and not split_file:
        raise evaluation.EvaluationError("--split needs --split-file or --run: a run's split.csv names the rows.")
    kind, table = evaluation.load_rows(args.dataset or run.get("dataset"), folder, split_file, args.split or "test")
    if args.limit:
        table = table.sample(n=min(args.limit, len(table)), random_state=args.seed).reset_index(drop=True)
    predictor = lite_predictor(path, flip_tta=not args.no_flip, one_view=args.one_view)
    frame = evaluation.predict_table(predictor, table, on_progress=progress, crops=args.crops)
    report = evaluation.evaluate_frame(frame, kind, min_group=args.min_group)
    report.update(model=str(path), data=str(folder), split=(args.split or "test") if split_file else "all",
                  crops=args.crops, views=len(predictor.views))
    if args.predictions:
        atomic_write_text(args.predictions, frame.to_csv(index=False))
    print(reports.to_json(report) if args.json else reports.format_report(report))
    return 0


# -------------------------------------------------------------------------------------------- predict

def add_predict(sub) -> None:
    p = _parser(sub, "predict", "find every face in photos and predict age, gender and race")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG, PNG, WebP or BMP files")
    p.add_argument("--model", default="", help="a .keras model, or its .tflite export (default: the shipped model)")
    p.add_argument("--json", action="store_true",
                   help='print one JSON array: per image {"image", "faces": [...], "note", "error"}')
    p.add_argument("--whole-image", action="store_true",
                   help="when no face is found in a photo, take the whole image as one already-cropped face (face "
                        "crops are taken whole anyway)")
    p.add_argument("--small-faces", action="store_true", help="search close-ups for small faces too (slower)")
    _add_tta_options(p)


def _print_predictions(records: list[dict]) -> None:
    for record in records:
        if record["error"]:
            print(f"{record['image']}: error: {record['error']}")
            continue
        print(f"{record['image']}: {len(record['faces'])} face(s)")
        for number, face in enumerate(record["faces"], start=1):
            age = (f"age group {face['age_group']} ({face['age_group_probs'][face['age_group']]:.0%})"
                   if "age_group" in face else f"{face['age']:.0f} ± {face['age_std']:.0f} years")
            race = f", {face['race']} ({face['race_probs'][face['race']]:.0%})" if face["race"] else ", no race head"
            print(f"  face {number} at {face['box']}: {age}, {face['gender']} ({face['gender_prob']:.0%}){race}")


def cmd_predict(args) -> int:
    import json

    from core.faces import FaceDetector
    from core.predict import predict_files
    predictor = lite_predictor(model_path(args.model), flip_tta=not args.no_flip, one_view=args.one_view)
    with FaceDetector(tiles="always" if args.small_faces else "auto") as detector:
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


# ------------------------------------------------------------------------------------------- saliency

def add_saliency(sub) -> None:
    from core.labels import FAIRFACE_RACES, RACES
    from core.saliency import ALL_HEADS, METHODS, SCORECAM_MAX_N
    from core.saliency_figures import DEFAULT_ALPHA
    p = _parser(sub, "saliency", "explain one prediction as a saliency map PNG")
    p.add_argument("image", help="a photo (its first face is explained) or an already-cropped face")
    p.add_argument("--head", choices=ALL_HEADS, default="gender",
                   help="the output to explain (age_group: a FairFace or Adience model's age head)")
    p.add_argument("--method", choices=METHODS, default="gradcam", help="how to compute the map")
    p.add_argument("--out", required=True, help="PNG file to write: the face, the overlay and the prediction")
    p.add_argument("--model", default="", help=".keras file (default: the shipped model)")
    p.add_argument("--layer", default="", help="feature map for CAM methods (default: chosen per architecture)")
    p.add_argument("--race-class", choices=list(dict.fromkeys([*RACES, *FAIRFACE_RACES])),
                   help="race class to explain, of the model's own races (default: the predicted one)")
    p.add_argument("--max-n", type=int, default=SCORECAM_MAX_N, help="Score-CAM channels (0 = all)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="heatmap opacity 0-1")


def cmd_saliency(args) -> int:
    from core import saliency, saliency_faces, saliency_figures
    from core.atomic import atomic_write_bytes
    from core.images import ImageError
    from core.registry import load_model
    path = model_path(args.model)
    try:
        data = Path(args.image).read_bytes()
    except OSError as error:
        raise ImageError(f"cannot read {args.image}: {error.strerror or error}") from error
    # Maps need the Keras model (gradients); finding and cutting the face is the app's LiteRT path.
    explainer = saliency.Explainer(load_model(path, allow_anywhere=True))
    crop, note = saliency_faces.face_crop_from_bytes(data, lite_predictor(path, flip_tta=False))
    prediction = explainer.predict(crop)
    result = explainer.explain(crop, args.head, args.method, args.race_class, args.layer or None, args.max_n or None,
                               prediction)
    figure = saliency_figures.figure(crop, [result], prediction, args.alpha)
    atomic_write_bytes(args.out, saliency_figures.figure_png(figure))
    if note:
        print(f"note: {note}", file=sys.stderr)
    print(f"{saliency_figures.prediction_text(prediction)}; {result.label} for {args.head}: {result.target}"
          + (f" at {result.layer}" if result.layer else "") + f" in {result.seconds:.2f} s -> {args.out}")
    return 0


# --------------------------------------------------------------------------------------------- export

def add_export(sub) -> None:
    from core.export import QUANTIZATIONS
    p = _parser(sub, "export", "export a model to TFLite and compare its predictions with Keras")
    p.add_argument("--model", default="", help=".keras file (default: the shipped model)")
    p.add_argument("--format", choices=("tflite",), default="tflite", help="export format")
    p.add_argument("--quantize", choices=[q for q in QUANTIZATIONS if q], help="default: none (float32)")
    p.add_argument("--data", default="", help="face images to calibrate int8 and to compare predictions on "
                                              "(default: $FACE_DATA_DIR or the bundled sample)")
    p.add_argument("--out", default="", help="default: beside the model, NAME[.float16|.int8].tflite")
    p.add_argument("--no-compare", action="store_true", help="skip comparing predictions with Keras (the app's own "
                                                              "export of a new model: only the file is needed)")


def cmd_export(args) -> int:
    from core import export, settings
    from core.registry import load_model
    path, folder = model_path(args.model), args.data or settings.data_dir()
    model, images = None, None  # only int8 calibration and the comparison need them
    if args.quantize == "int8" or not args.no_compare:
        model = load_model(path, allow_anywhere=True)
        try:
            images = export.representative_images(folder, int(model.input_shape[1]))
        except export.ExportError:
            if args.quantize == "int8":
                raise
    result = export.export_tflite(path, args.out or export.default_out_path(path, args.quantize), args.quantize,
                                  images)
    differences = {} if images is None or args.no_compare else export.compare(model, result.path, images[:16])
    print(f"wrote {result.path} ({result.size_mb:.2f} MB, {args.quantize or 'float32'}) in {result.seconds:.1f} s")
    if differences:
        print(f"largest difference from Keras on {min(16, len(images))} images of {folder}: "
              + ", ".join(f"{name} {value:.4f}" for name, value in differences.items()))
    return 0


# -------------------------------------------------------------------------------------------- average

def _epoch_list(text: str) -> list[int]:
    """"5-10" or "5,7,9" (or both: "2,5-7") → epoch numbers."""
    epochs = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        try:
            epochs.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected epochs like 5-10 or 5,7,9, got {text!r}") from None
    return epochs


def add_average(sub) -> None:
    p = _parser(sub, "average", "average a run's kept epoch models into one (stochastic weight averaging), "
                                "scored on validation; writes a new run folder")
    p.add_argument("--run", required=True, help="a run trained with --keep-epochs")
    p.add_argument("--epochs", type=_epoch_list, default=None,
                   help="which kept epochs, e.g. 5-10 (default: the second half of those kept)")
    p.add_argument("--data", default=None, help="the dataset folder (default: the one the run was trained on)")
    p.add_argument("--with", dest="also", nargs="+", action="extend", default=[], metavar="MODEL",
                   help="more .keras models of the same architecture and split to average in: the kept epochs of a "
                        "run that continued this one, or of a sibling run started from the same model")


def cmd_average(args) -> int:
    from core.weight_averaging import average_run
    result = average_run(args.run, args.epochs, args.data, lambda message: print(message, flush=True), args.also)
    print(f"validation (n={result.validation['average']['n']}): age MAE, gender, race")
    width = max(map(len, result.validation))
    for name, scores in result.validation.items():
        print(f"  {name:<{width}}  {scores['age_mae']:.3f}  {scores['gender_accuracy']:.2%}  "
              f"{scores['race_accuracy']:.2%}")
    print(result.run_dir)
    return 0


# ----------------------------------------------------------------------------------------------- ship

def add_ship(sub) -> None:
    p = _parser(sub, "ship", "make a training run the app's default model, with its model card")
    p.add_argument("--run", default="", help="training run folder (runs/<time>-<arch>)")
    p.add_argument("--remeasure", action="store_true",
                   help="instead of shipping a run: measure the shipped model again on its own test split and "
                        "rewrite its card's numbers (after a change to how the app reads predictions)")
    p.add_argument("--data", required=True, help="the UTKFace folder the run was trained on")
    p.add_argument("--name", default=DEFAULT_MODEL_NAME, help="the shipped files' name in models/")
    p.add_argument("--models-dir", default="", help="default: the app's models/ folder")


def cmd_ship(args) -> int:
    from core.modelcard import remeasure_card, ship_run
    models_dir = Path(args.models_dir) if args.models_dir else None
    if args.remeasure == bool(args.run):
        raise UserError("Give either --run RUN (ship it) or --remeasure (measure the shipped model again).")
    if args.remeasure:
        card = remeasure_card(args.data, args.name, models_dir)
    else:
        if not Run(args.run).model_file.is_file():
            raise ModelError(f"{args.run} has no model.keras")
        card = ship_run(args.run, args.data, args.name, models_dir)
    m = card["metrics"]
    print(f"{'measured' if args.remeasure else 'shipped'} {card['file']} ({card['file_mb']} MB): test n={m['n']} "
          f"age MAE {m['age_mae']:.2f}, gender {m['gender_accuracy']:.1%}, race {m['race_accuracy']:.1%}")
    return 0


COMMANDS = {
    "train": (add_train, cmd_train),
    "evaluate": (add_evaluate, cmd_evaluate),
    "predict": (add_predict, cmd_predict),
    "saliency": (add_saliency, cmd_saliency),
    "export": (add_export, cmd_export),
    "ship": (add_ship, cmd_ship),
    "average": (add_average, cmd_average),
}
