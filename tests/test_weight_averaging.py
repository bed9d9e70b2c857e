"""Weight averaging (core/weight_averaging.py): choosing epochs, the mean of weights, batch-norm statistics measured
again, and a run's kept epochs averaged into a new run folder that the rest of the app takes like any run."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from core import runs, weight_averaging
from core.__main__ import main
from core.commands import _epoch_list
from core.registry import load_model
from core.training import TrainConfig, train
from core.weight_averaging import AveragingError, average_run, choose_epochs, mean_weights, refresh_batch_norm


@pytest.fixture(scope="module")
def run_with_epochs(synthetic_utkface, tmp_path_factory) -> Path:
    """A tiny three-epoch residual run (it has batch norm) that kept every epoch's model."""
    out = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig.tiny("residual_cnn", data_dir=str(synthetic_utkface), out_dir=str(out), batch_size=8, limit=0,
                           epochs=3, keep_epochs=True, model_overrides={"age_head": "distribution"})
    return Path(train(cfg).run_dir)


def test_a_run_with_keep_epochs_keeps_every_epochs_model(run_with_epochs):
    assert weight_averaging.kept_epochs(run_with_epochs) == [1, 2, 3]
    epoch_1 = load_model(runs.Run(run_with_epochs).epoch_model_file(1), allow_anywhere=True)
    epoch_3 = load_model(runs.Run(run_with_epochs).epoch_model_file(3), allow_anywhere=True)
    assert not all(np.array_equal(a, b) for a, b in zip(epoch_1.get_weights(), epoch_3.get_weights(), strict=True))


def test_the_default_epochs_are_the_second_half_and_at_least_two():
    assert choose_epochs([1, 2, 3, 4, 5, 6], None) == (4, 5, 6)
    assert choose_epochs([1, 2, 3], None) == (2, 3)
    assert choose_epochs([1, 2], None) == (1, 2)
    assert choose_epochs([1, 2, 3, 4], [4, 2, 2]) == (2, 4)


@pytest.mark.parametrize(("available", "asked", "message"), [
    ([], None, "--keep-epochs"), ([1, 2, 3], [2, 5], "Epoch 5 was not kept; this run kept epochs 1, 2, 3"),
    ([1], None, "at least two"), ([1, 2], [2], "at least two")])
def test_epochs_that_cannot_be_averaged_are_refused_with_the_reason(available, asked, message):
    with pytest.raises(AveragingError, match=message):
        choose_epochs(available, asked)


def test_mean_weights_is_the_element_wise_mean_and_refuses_other_architectures():
    a = [np.array([1.0, 2.0], "float32"), np.array([[0.0]], "float32")]
    b = [np.array([3.0, 6.0], "float32"), np.array([[1.0]], "float32")]
    mean = mean_weights([a, b])
    assert np.allclose(mean[0], [2.0, 4.0]) and np.allclose(mean[1], [[0.5]]) and mean[0].dtype == np.float32
    with pytest.raises(AveragingError, match="different architectures"):
        mean_weights([a, [np.zeros(3, "float32"), np.zeros((1, 1), "float32")]])


def test_batch_norm_statistics_become_the_mean_over_the_images_and_the_momentum_is_restored():
    inputs = keras.Input((4, 4, 3))
    norm = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(norm(inputs)))
    images = np.random.default_rng(0).integers(0, 256, (40, 4, 4, 3)).astype("uint8")
    assert refresh_batch_norm(model, images, batch_size=8) == 1
    pixels = images.astype("float64").reshape(-1, 3)
    assert np.allclose(norm.moving_mean.numpy(), pixels.mean(axis=0), rtol=1e-4)
    # the mean of the five batches' own (biased) variances
    batch_variances = [images[i:i + 8].astype("float64").reshape(-1, 3).var(axis=0) for i in range(0, 40, 8)]
    assert np.allclose(norm.moving_variance.numpy(), np.mean(batch_variances, axis=0), rtol=1e-3)
    assert norm.momentum == 0.99


def test_averaging_a_run_writes_a_new_run_scored_on_validation_only(run_with_epochs):
    result = average_run(run_with_epochs, [2, 3])
    assert result.epochs == (2, 3) and result.run_dir.parent == run_with_epochs.parent
    assert set(result.validation) == {"epoch-02", "epoch-03", "best", "average"}
    n_val = json.loads(runs.Run(run_with_epochs).metrics_file.read_text())["n_val"]
    assert all(scores["n"] == n_val for scores in result.validation.values())

    target = runs.Run(result.run_dir)
    config, metrics = target.config(), target.metrics()
    assert config["averaged_from"] == {"run": run_with_epochs.name, "epochs": [2, 3], "batch_norm_images":
                                       metrics["averaged_from"]["batch_norm_images"]}
    assert metrics["status"] == "finished" and metrics["test"] == {}
    assert metrics["best"]["val_age_mae"] == pytest.approx(result.validation["average"]["age_mae"])
    assert target.split_file.read_text() == runs.Run(run_with_epochs).split_file.read_text()
    # every weight but the batch-norm statistics is the mean of the two epochs'
    averaged = load_model(target.model_file, allow_anywhere=True)
    epochs = [load_model(runs.Run(run_with_epochs).epoch_model_file(e), allow_anywhere=True) for e in (2, 3)]
    for name, weight in ((w.path, w) for w in averaged.weights if "moving" not in w.path):
        pair = [next(w for w in model.weights if w.path == name).numpy() for model in epochs]
        assert np.allclose(weight.numpy(), np.mean(pair, axis=0), atol=1e-6), name
    listed = runs.list_runs(run_with_epochs.parent)
    assert target.name in set(listed["run"])
    assert runs.run_summary(config, metrics).endswith(f"validation age MAE {metrics['best']['val_age_mae']:.2f}")


def test_the_average_command_prints_the_validation_table(run_with_epochs, capsys):
    assert main(["average", "--run", str(run_with_epochs), "--epochs", "1-3"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("epoch-01", "epoch-02", "epoch-03", "best", "average"))
    assert Path(out.strip().splitlines()[-1]).name.endswith("residual_cnn-averaged")


def test_the_average_command_says_why_a_run_without_kept_epochs_cannot_be_averaged(run_with_epochs, tmp_path,
                                                                                   capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    runs.Run(plain).write_config(runs.Run(run_with_epochs).config())
    assert main(["average", "--run", str(plain)]) == 2
    assert "--keep-epochs" in capsys.readouterr().err


def test_epoch_lists_take_ranges_and_single_epochs():
    assert _epoch_list("5-7") == [5, 6, 7] and _epoch_list("2,5-6") == [2, 5, 6] and _epoch_list("4") == [4]
    with pytest.raises(Exception, match="like 5-10"):
        _epoch_list("five")


def test_a_shipped_average_says_on_its_card_how_it_was_made(run_with_epochs, synthetic_utkface, tmp_path):
    from core.modelcard import ship_run
    averaged = average_run(run_with_epochs, [1, 3], also=[runs.Run(run_with_epochs).epoch_model_file(2)])
    card = ship_run(averaged.run_dir, synthetic_utkface, name="tiny", models_dir=tmp_path)
    assert "--keep-epochs" in card["training"]["command"]
    made = card["training"]["averaged"]
    assert made["command"] == ("python -m core average --run runs/<run> --epochs 1,3 "
                               f"--with runs/{run_with_epochs.name}/epochs/epoch-02.keras")
    assert made["run"] == run_with_epochs.name and "also_runs" not in made
    # how the models averaged in were trained (here the same run's)
    assert made["also_train_commands"] == {run_with_epochs.name: card["training"]["command"]}
    contiguous = ship_run(average_run(run_with_epochs, [1, 2, 3]).run_dir, synthetic_utkface, name="tiny",
                          models_dir=tmp_path)
    assert contiguous["training"]["averaged"]["command"].endswith("--epochs 1-3")
    assert card["metrics"]["n"] > 0 and (tmp_path / "tiny.tflite").is_file()


def test_models_from_a_continuing_run_are_averaged_in_and_named(run_with_epochs, capsys):
    kept = runs.Run(run_with_epochs).epoch_model_file
    assert main(["average", "--run", str(run_with_epochs), "--epochs", "2-3", "--with", str(kept(1))]) == 0
    out = capsys.readouterr().out
    assert f"{run_with_epochs.name}/epoch-01" in out
    target = runs.Run(out.strip().splitlines()[-1])
    assert target.config()["averaged_from"]["also"] == [f"{run_with_epochs.name}/epoch-01"]
    assert "epochs 2–3, and 1 more model, averaged" in target.metrics()["notes"][0]
    # the same three models as averaging epochs 1–3 of the run: the same weights
    three = load_model(average_run(run_with_epochs, [1, 2, 3]).run_dir / "model.keras", allow_anywhere=True)
    mixed = load_model(target.model_file, allow_anywhere=True)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(three.get_weights(), mixed.get_weights(), strict=True))


def test_with_takes_several_models_and_may_be_repeated():
    import argparse

    from core.commands import add_average
    parser = argparse.ArgumentParser()
    add_average(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["average", "--run", "r", "--with", "a.keras", "b.keras", "--with", "c.keras"])
    assert args.also == ["a.keras", "b.keras", "c.keras"] and args.epochs is None
