"""Shipping a training run as the app's default model, with a model card whose numbers come from the same
evaluation code as `python -m core evaluate` (so anyone can reproduce them)."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

from core import settings
from core.atomic import atomic_path, atomic_write_text, read_json_object
from core.config import TrainConfig
from core.distillation import teacher_paths
from core.evaluation import crop_skew, evaluate_frame, load_rows, predict_table
from core.metrics import HEADLINE
from core.registry import DEFAULT_MODEL_NAME, ModelError
from core.reports import to_json
from core.runs import Run
from core.splits import read_split_file, write_split_file
from core.train_options import config_args

# The headline without the age-group scores: on UTKFace, the card's data, those are only decade accuracies.
CARD_METRICS = tuple(key for key in HEADLINE if key not in ("age_group_accuracy", "age_group_one_off"))
LICENSE = ("Trained on UTKFace (Zhang, Song, Qi, CVPR 2017), available for non-commercial research purposes "
           "only; the model inherits that restriction. Images remain the property of their owners.")
LIMITATIONS = [
    "Labels (age, gender, race) were estimated by an algorithm and checked by one annotator: some are wrong, e.g. "
    "an elderly man labelled age 5.",
    "Gender is binary and race has 5 coarse classes ('Others' mixes Hispanic, Latino and Middle Eastern faces): "
    "these categories do not describe how people identify.",
    "Children and people over 70 are few in UTKFace; age errors are largest for the elderly (see by_group).",
    "UTKFace faces are aligned, mostly frontal web photos: expect worse results on profile views, low light, "
    "occlusions, heavy make-up and camera styles unlike the training data.",
    "Not for decisions about people: identification, eligibility, surveillance or any consequential use.",
]


def _headline(report: dict) -> dict:
    return {key: report.get(key) for key in CARD_METRICS}


def card_metrics(report: dict) -> dict:
    """The parts of an evaluation report that go on the card: headline, CS curve, per-group and gaps."""
    return {
        **_headline(report),
        "age_cs": report.get("age_cs"),
        "by_group": {dim: {group: {**_headline(m), "small": m.get("small")} for group, m in groups.items()}
                     for dim, groups in report.get("by_group", {}).items()},
        "gaps": report.get("gaps"),
    }


def train_command(config: dict, data_placeholder: str = "/path/to/UTKFace") -> str:
    """The `python -m core train` command line that reproduces a run's config: an option for every setting that
    differs from its default (core.train_options). No machine paths: the data folder is a placeholder, the model
    and split file a continued run started from are named as shipped (models/<file>), and the runs folder is left
    out (where a run is written does not change it)."""
    cfg = TrainConfig.from_dict(config)
    cfg = dataclasses.replace(cfg, data_dir=data_placeholder, out_dir="", init_from=_as_shipped(cfg.init_from),
                              split_file=_as_shipped(cfg.split_file),
                              teachers=",".join(_as_shipped(str(path)) for path in teacher_paths(cfg.teachers)))
    return shlex.join(["python", "-m", "core", "train", *config_args(cfg)])


def _as_shipped(path: str) -> str:
    return f"models/{Path(path).name}" if path else ""


def _started_from(config: dict) -> dict | None:
    """For a run that continued a shipped model, that model's training block and test headline, read from its
    card before shipping replaces it: the card then tells the whole recipe, stage by stage."""
    if not config.get("init_from"):
        return None
    earlier = read_json_object(Path(config["init_from"]).with_suffix(".json"))
    if earlier is None:
        return {"model": Path(config["init_from"]).name}
    if earlier.get("training", {}).get("config") == config:  # shipped again: that card is this run's own
        return earlier["training"].get("started_from")
    return {"model": Path(config["init_from"]).name, "training": earlier.get("training"),
            "metrics": _headline(earlier.get("metrics", {}))}


def _averaged(averaged_from: dict) -> dict:
    """How a weight-averaged run was made from the training run above it (core/weight_averaging.py)."""
    from core.weight_averaging import average_command
    other_runs = averaged_from.get("also_runs", {})
    return {**{k: v for k, v in averaged_from.items() if k != "also_runs"}, "command": average_command(averaged_from),
            **({"also_train_commands": {name: train_command(config) for name, config in other_runs.items()}}
               if other_runs else {})}


def evaluate_model(model_path: Path, data_dir: str | Path, split_file: Path | None = None,
                   crops: str = "app") -> dict:
    """Evaluate a model exactly as `python -m core evaluate` and the app do (same rows, same preprocessing, view and
    flip TTA, the LiteRT file beside the .keras: exported first when missing or outdated). `crops`: "app" cuts every
    face the way an upload is cut (what users get), "dataset" uses the dataset's own crops."""
    from core.export import ensure_tflite
    from core.predict import Predictor
    kind, table = load_rows("utkface", data_dir, split_file, "test")
    frame = predict_table(Predictor(ensure_tflite(model_path, in_process=True)), table, crops=crops)
    return json.loads(to_json(evaluate_frame(frame, kind)))


def _save_for_inference(source: Path, target: Path) -> None:
    """Re-save without the optimizer state (Adam's two moments per weight would triple the file)."""
    from core.registry import load_model
    with atomic_path(target, suffix=".keras") as tmp:
        load_model(source, allow_anywhere=True).save(tmp)


def _export_for_the_app(model_path: Path) -> Path:
    """The float32 `.tflite` beside the shipped `.keras`, written after it (so it is never older): the app's server
    predicts with it and would otherwise export it itself on its first prediction."""
    from core.export import default_out_path, export_tflite
    return export_tflite(model_path, default_out_path(model_path)).path


def reading() -> str:
    """How the app turns a face into the card's figures: the views and mirror images averaged (core.alignment)."""
    from core.alignment import VIEW_SHIFT, VIEWS
    return (f"each face cut {len(VIEWS)} ways (the calibrated cut and {len(VIEWS) - 1} shifted by "
            f"{VIEW_SHIFT:.0%} of its side), each with its mirror image: {2 * len(VIEWS)} passes averaged (the "
            "dataset's crops: shifted, black where uncovered)")


def measurements(model_path: Path, data_dir: str | Path, split_file: Path) -> dict:
    """The card's measured sections: the test split through the app's path (what users get: every face found and
    aligned by the detector + align_crop) and through the dataset's crops, their skew, and the bundled sample."""
    test_report = evaluate_model(model_path, data_dir, split_file)
    dataset_crops_report = evaluate_model(model_path, data_dir, split_file, "dataset")
    sample_report = evaluate_model(model_path, settings.SAMPLE_DIR)
    return {
        "metrics": card_metrics(test_report),
        "metrics_dataset_crops": _headline(dataset_crops_report),
        "crop_skew": crop_skew(test_report, dataset_crops_report),
        "face_detected": test_report.get("face_detected"),
        "reading": reading(),
        "sample_metrics": {**_headline(sample_report), "note": "bundled sample; some of these images were in the "
                           "training split, so these numbers are optimistic: they exist to check the card"},
    }


def remeasure_card(data_dir: str | Path, name: str = DEFAULT_MODEL_NAME, models_dir: Path | None = None) -> dict:
    """Measure a shipped model again on its own test split and rewrite the measured sections of its card, the rest
    kept: after a change to how the app reads predictions, so the card says what the app now gives. Returns it."""
    models_dir = Path(models_dir or settings.MODELS_DIR)
    card_file = models_dir / f"{name}.json"
    card = read_json_object(card_file)
    if card is None:
        raise ModelError(f"No model card {card_file} to measure again.")
    card.update(measurements(models_dir / card["file"], data_dir, models_dir / f"{name}.split.csv"))
    atomic_write_text(card_file, json.dumps(card, indent=2))
    return card


def ship_run(run_dir: str | Path, data_dir: str | Path, name: str = DEFAULT_MODEL_NAME,
             models_dir: Path | None = None) -> dict:
    """Copy a run's best model into models/ as `<name>.keras`, with `<name>.tflite` (its float32 export, what the
    app predicts with), `<name>.json` (the card) and `<name>.split.csv` (which UTKFace file went to
    train/val/test, by name). Returns the card."""
    run, models_dir = Run(run_dir), Path(models_dir or settings.MODELS_DIR)
    config = json.loads(run.config_file.read_text(encoding="utf-8"))
    # metrics.json is absent when shipping the best checkpoint of an unfinished run
    run_metrics = json.loads(run.metrics_file.read_text(encoding="utf-8")) if run.metrics_file.is_file() else {}
    started_from = _started_from(config)  # before the old card is replaced
    split = read_split_file(run.split_file)

    measured = measurements(run.model_file, data_dir, run.split_file)
    model_path = models_dir / f"{name}.keras"
    _save_for_inference(run.model_file, model_path)
    tflite = _export_for_the_app(model_path)
    # names only: no machine paths in the repo
    write_split_file(models_dir / f"{name}.split.csv", split["path"].map(lambda p: Path(p).name), split["split"])
    counts = split["split"].value_counts().to_dict()
    card = {
        "name": name,
        "file": model_path.name,
        "file_mb": round(model_path.stat().st_size / 2**20, 2),
        "tflite_file": tflite.name,  # what the app predicts with (float32, LiteRT)
        "arch": config["model"]["arch"],
        "img_size": config["model"]["img_size"],
        "age_head": config["model"]["age_head"],
        "data": {
            "dataset": f"UTKFace aligned & cropped: {len(split)} labelled images",
            "split": "seeded stratified split by age decade × gender × race; file names in "
                     f"{name}.split.csv",
            "n_train": counts.get("train", 0), "n_val": counts.get("val", 0), "n_test": counts.get("test", 0),
            "test_use": "scored once, after training; no choice was made on it",
        },
        "training": {
            "command": train_command(config),
            "ship_command": f"python -m core ship --run runs/<run> --data /path/to/UTKFace --name {name}",
            "device": run_metrics.get("device"), "seconds": run_metrics.get("seconds"),
            "epochs_run": run_metrics.get("epochs_run"), "config": config,
            **({"started_from": started_from} if started_from else {}),
            **({"averaged": _averaged(config["averaged_from"])} if config.get("averaged_from") else {}),
        },
        "evaluate_command": (f"python -m core evaluate --data /path/to/UTKFace --split-file models/{name}.split.csv "
                             f"--split test --model models/{name}.keras --json"),
        "evaluate_dataset_crops_command": "the same with --crops dataset",
        **measured,
        "license": LICENSE,
        "limitations": LIMITATIONS,
    }
    atomic_write_text(models_dir / f"{name}.json", json.dumps(card, indent=2))
    return card
