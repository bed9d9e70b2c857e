"""Weight averaging: one model whose weights are the mean of the models a run passed through late in training.

Stochastic weight averaging (Izmailov et al., 2018): a run continued at a constant learning rate wanders around a
wide low-loss region, and the mean of the epochs' weights lies nearer its centre than any one epoch, so it
usually generalises better. An ensemble's gain at one model's size and speed, which matters for a shipped model
with a size budget. A run trained with `keep_epochs` has the models (`<run>/epochs/epoch-NN.keras`).

Batch-norm running statistics are not weights in this sense: the mean of several models' running means is not the
running mean of the averaged model, whose activations differ. They are measured again on training images.

Every figure here is on the validation split: which epochs to average is a choice, so the test split stays for
the model card (`python -m core ship`) and is not scored here. The result is a new run folder (config, split file,
model, metrics), so evaluate, ship and the pages take it like any run."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import settings
from core.alignment import VIEWS
from core.errors import UserError
from core.runs import Run, new_run_dir

BATCH_NORM_IMAGES = 4096  # training images the batch-norm statistics are measured on (~20 s on two cores at 96 px)
_EPOCH_FILE = re.compile(r"epoch-(\d+)\.keras")


class AveragingError(UserError):
    """Weights that cannot be averaged as asked (no kept epochs, other architectures…); the message says why."""


@dataclass(frozen=True)
class AveragedRun:
    run_dir: Path
    epochs: tuple[int, ...]
    validation: dict[str, dict]  # "epoch-NN", "best" (the source run's model.keras) and "average" → val metrics


def kept_epochs(run_dir: str | Path) -> list[int]:
    """The epochs whose models a run kept, in order."""
    folder = Run(run_dir).epochs_dir
    found = (_EPOCH_FILE.fullmatch(path.name) for path in folder.glob("epoch-*.keras")) if folder.is_dir() else ()
    return sorted(int(match.group(1)) for match in found if match)


def _run_keeping(model_path: Path) -> Run | None:
    """The run a model file is a kept epoch of (None: it is not one)."""
    return Run(model_path.parent.parent) if model_path.parent.name == Run.epochs_dir.file_name else None


def epoch_span(epochs: Sequence[int], dash: str = "-", separator: str = ",") -> str:
    """Epochs as a command line or a sentence takes them: "1-8" when they follow on, else "1,3,5"."""
    if list(epochs) == list(range(epochs[0], epochs[-1] + 1)):
        return f"{epochs[0]}{dash}{epochs[-1]}"
    return separator.join(map(str, epochs))


def average_command(averaged_from: dict) -> str:
    """The `python -m core average` command that made an averaged run, with run folders written as runs/<run>."""
    also = [f"runs/{name.replace('/', f'/{Run.epochs_dir.file_name}/')}.keras" if "/" in name else name
            for name in averaged_from.get("also", [])]
    return (f"python -m core average --run runs/<run> --epochs {epoch_span(averaged_from['epochs'])}"
            + (f" --with {' '.join(also)}" if also else ""))


def choose_epochs(available: Sequence[int], asked: Sequence[int] | None) -> tuple[int, ...]:
    """The epochs to average: those asked for (each must be kept), or by default the second half of the run
    (after it has left its starting point), at least two."""
    if not available:
        raise AveragingError("This run kept no epoch models: train it with --keep-epochs (keep_epochs) to average "
                             "its epochs.")
    chosen = tuple(sorted(set(asked))) if asked else tuple(available[min(len(available) // 2, len(available) - 2):])
    missing = [epoch for epoch in chosen if epoch not in available]
    if missing:
        raise AveragingError(f"Epoch {missing[0]} was not kept; this run kept epochs "
                             f"{', '.join(map(str, available))}.")
    if len(chosen) < 2:
        raise AveragingError("Averaging needs at least two epochs.")
    return chosen


def mean_weights(weight_lists: Sequence[list[np.ndarray]]) -> list[np.ndarray]:
    """The element-wise mean of several models' weight lists (`model.get_weights()`), which must match in shape."""
    shapes = [tuple(w.shape for w in weights) for weights in weight_lists]
    if any(shape != shapes[0] for shape in shapes):
        raise AveragingError("These models have different architectures: only models of one architecture (epochs "
                             "of one run, or runs started from one model) can be averaged.")
    return [np.mean(np.stack(group), axis=0).astype(group[0].dtype) for group in zip(*weight_lists, strict=True)]


def _batch_norm_layers(model) -> list:
    import keras
    found = []
    for layer in model.layers:  # a backbone is a layer with layers of its own
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(_batch_norm_layers(layer))
    return found


def refresh_batch_norm(model, images: np.ndarray, batch_size: int = 64) -> int:
    """Set every batch-norm layer's running mean and variance to their averages over `images` (uint8 crops),
    as the averaged weights see them. Returns how many layers were refreshed."""
    layers = _batch_norm_layers(model)
    momenta = [layer.momentum for layer in layers]
    try:
        for step, start in enumerate(range(0, len(images), batch_size)):
            for layer in layers:  # moving = moving·m + batch·(1 − m): m = k/(k+1) makes it the mean of k+1 batches
                layer.momentum = step / (step + 1)
            model(images[start:start + batch_size].astype("float32"), training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return len(layers)


def _validation_metrics(model, images: np.ndarray, table: pd.DataFrame) -> dict:
    """The app's reading of a model's outputs (view- and flip-averaged, age as the distribution's median) on these
    rows, `images` cut once per view (core.alignment.VIEWS)."""
    from core.evaluation import join_predictions, scalar_metrics
    from core.predict import KerasPredictor
    return scalar_metrics(join_predictions(table, KerasPredictor(model).raw_outputs(images)))


def _crops(config: dict, paths: list[str], views=None) -> np.ndarray:
    from core.crops import load_crops
    return load_crops(paths, int(config["model"]["img_size"]), config.get("crops", "app"), views=views)[0]


def _model_name(path: Path) -> str:
    """A model's name in the validation table: `<run>/epoch-NN` for a kept epoch (average_command reads it back),
    else its file name."""
    run = _run_keeping(path)
    return f"{run.name}/{path.stem}" if run else path.name


def _configs_of_runs(models: Sequence[Path]) -> dict[str, dict]:
    """The training configs of the runs whose kept epochs are among `models`, by run name: a card can then say how
    every model in an average was trained."""
    runs = {run for run in map(_run_keeping, models) if run is not None}
    return {run.name: config for run in sorted(runs, key=lambda r: r.name) if (config := run.config()) is not None}


def _more(also: Sequence) -> str:
    return f", and {len(also)} more model{'s' * (len(also) > 1)}" if also else ""


def average_run(run_dir: str | Path, epochs: Sequence[int] | None = None, data_dir: str | Path | None = None,
                on_progress: Callable[[str], None] = lambda message: None,
                also: Sequence[str | Path] = ()) -> AveragedRun:
    """Average the kept epochs of a run into a new run folder beside it, with batch-norm statistics measured
    again, and score every epoch used, the run's best model and the average on the validation split. `also`:
    further models of the same architecture to average in, such as the kept epochs of a run that continued this
    one (a longer averaging window) or of a sibling run started from the same model (a "model soup"); they must
    have been trained on this run's split, or its validation figures mean nothing."""
    from core.atomic import atomic_save_model
    from core.evaluation import load_rows
    from core.registry import load_model

    run = Run(Path(run_dir).expanduser())
    config = run.config()
    if config is None:
        raise AveragingError(f"{run.path} is not a readable run folder.")
    chosen = choose_epochs(kept_epochs(run.path), epochs)
    folder = data_dir or config.get("data_dir") or settings.data_dir()  # as training chose it
    kind = config.get("dataset") or None
    _, val_rows = load_rows(kind, folder, run.split_file, "val")
    _, train_rows = load_rows(kind, folder, run.split_file, "train")
    train_rows = train_rows.sample(n=min(BATCH_NORM_IMAGES, len(train_rows)), random_state=0)
    on_progress(f"Cutting {len(val_rows)} validation and {len(train_rows)} training faces…")
    val_images = _crops(config, val_rows["path"].tolist(), VIEWS)  # cut as the app cuts, to be read as it reads
    train_images = _crops(config, train_rows["path"].tolist())

    also = [Path(path) for path in also]
    members = {**{f"epoch-{epoch:02d}": run.epoch_model_file(epoch) for epoch in chosen},
               **{_model_name(path): path for path in also}}
    validation, weights = {}, []
    for name, path in members.items():
        on_progress(f"Scoring {name} on validation…")
        model = load_model(path, allow_anywhere=True)
        validation[name] = _validation_metrics(model, val_images, val_rows)
        weights.append(model.get_weights())
    validation["best"] = _validation_metrics(load_model(run.model_file, allow_anywhere=True), val_images, val_rows)
    on_progress(f"Averaging {len(chosen)} epochs and measuring batch-norm statistics again…")
    model.set_weights(mean_weights(weights))
    refresh_batch_norm(model, train_images)
    validation["average"] = _validation_metrics(model, val_images, val_rows)

    target = Run(new_run_dir(run.path.parent, f"{config['model']['arch']}-averaged"))
    averaged_from = {"run": run.name, "epochs": list(chosen), "batch_norm_images": len(train_images),
                     **({"also": [_model_name(path) for path in also]} if also else {}),
                     **({"also_runs": other_runs} if (other_runs := _configs_of_runs(also)) else {})}
    target.write_config({**config, "averaged_from": averaged_from})
    shutil.copyfile(run.split_file, target.split_file)
    atomic_save_model(model, target.model_file)
    source_metrics = run.metrics() or {}
    average = validation["average"]
    target.write_metrics({
        "status": "finished", "device": source_metrics.get("device"),
        "epochs_run": source_metrics.get("epochs_run"), "seconds": source_metrics.get("seconds"),
        "best": {f"val_{key}": value for key, value in average.items() if isinstance(value, float | int)},
        "test": {}, "averaged_from": averaged_from, "validation": validation,
        "notes": [f"Weights of {run.name}, epochs {epoch_span(chosen, '–', ', ')}{_more(also)}, averaged; "
                  "batch-norm statistics measured again on "
                  f"{len(train_images)} training images.",
                  "The test split was not scored: measure it once, when shipping (python -m core ship)."],
    })
    return AveragedRun(target.path, chosen, validation)
