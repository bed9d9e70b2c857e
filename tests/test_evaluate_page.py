"""The Evaluate page driven like a user (AppTest) with two tiny models saved as runs, and its Plotly builders."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core import access, charts, evaluation, policy, settings, slots
from core.datasets import load_dataset
from pages import evaluate as evaluate_page
from tests.support import export_beside, open_app_page, write_run

RUNS = ("20250101-000000-residual_cnn", "20250101-000001-custom_cnn")
LABELS = [f"{name} — UTKFace · 1 epoch · not tested" for name in RUNS]  # how pickers name a run


@pytest.fixture(scope="module")
def tiny_model_files(tmp_path_factory):
    """Two tiny models, each a .keras with its .tflite beside it (what the page predicts with)."""
    from core.models import ModelConfig, build_model
    folder = tmp_path_factory.mktemp("page_models")
    paths = []
    for arch, head in (("residual_cnn", "distribution"), ("custom_cnn", "regression")):
        model, _ = build_model(ModelConfig.tiny(arch, age_head=head))
        model.save(folder / f"{arch}.keras")
        export_beside(folder / f"{arch}.keras")
        paths.append(folder / f"{arch}.keras")
    return paths


@pytest.fixture
def sample_rows():
    return load_dataset("utkface", settings.SAMPLE_DIR).table


@pytest.fixture
def runs(tmp_path, monkeypatch, tiny_model_files, sample_rows):
    """Two finished fake runs in a fresh FACE_RUNS_DIR (the first with a split.csv), no shipped model."""
    root = tmp_path / "runs"
    for name, model in zip(RUNS, tiny_model_files, strict=True):
        write_run(root, name, model, config={"dataset": "utkface", "data_dir": ""}, with_tflite=True)
    splits = ["test" if i % 4 == 0 else "train" for i in range(len(sample_rows))]
    pd.DataFrame({"path": sample_rows["path"], "split": splits}).to_csv(root / RUNS[0] / "split.csv", index=False)
    monkeypatch.setenv("FACE_RUNS_DIR", str(root))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "models")
    st.cache_resource.clear()  # the page's prediction store is process-wide: start every test empty
    return {"test_rows": splits.count("test")}


@pytest.fixture
def predict_calls(monkeypatch):
    """Counts calls to core.evaluation.predict_table (the page's only way to predict) and records progress."""
    calls = []
    real = evaluation.predict_table

    def counting(predictor, table, on_progress=None, **kwargs):
        calls.append({"rows": len(table), "progress": [], "predictor": type(predictor).__name__})
        return real(predictor, table, on_progress=lambda d, t: (calls[-1]["progress"].append(d), on_progress(d, t)),
                    **kwargs)

    monkeypatch.setattr(evaluation, "predict_table", counting)
    return calls


def open_page() -> AppTest:
    return open_app_page("pages/evaluate.py")


def evaluate(at: AppTest, labels=LABELS, rows: str | None = None) -> AppTest:
    at.multiselect(key=evaluate_page.KEY_MODELS).set_value(list(labels)).run()
    if rows is not None:
        at.selectbox(key=evaluate_page.KEY_ROWS).set_value(rows).run()
    at.button(key=evaluate_page.KEY_RUN).click().run()
    assert not at.exception, at.exception
    return at


def comparison(at: AppTest) -> pd.DataFrame:
    """The comparison table with its columns by key again (the page shows their names: core.reports)."""
    from core.metrics import METRIC_NAMES
    from core.reports import COLUMN_NAMES
    return at.dataframe[0].value.rename(columns={name: key for key, name in {**METRIC_NAMES, **COLUMN_NAMES}.items()})


def test_two_models_on_the_bundled_sample(runs, predict_calls, sample_rows):
    at = evaluate(open_page(), rows="All images in the folder")
    assert not at.error
    table = comparison(at)
    assert sorted(table["model"]) == sorted(LABELS)
    assert table["n"].tolist() == [len(sample_rows)] * 2
    assert table["gender_accuracy"].between(0, 1).all() and (table["age_mae"] >= 0).all()
    assert len(at.get("plotly_chart")) >= 10  # headline, CS, scatter, MAE by age, confusions, reliability, groups
    assert len(at.get("image")) == 3  # the worst-errors grids: age, gender, race
    assert len(at.get("download_button")) == 2
    assert [c["rows"] for c in predict_calls] == [len(sample_rows)] * 2
    assert all(c["progress"][-1] == len(sample_rows) for c in predict_calls)  # the progress bar was fed
    assert {c["predictor"] for c in predict_calls} == {"Predictor"}  # LiteRT, not Keras


def test_a_model_that_cannot_be_prepared_shows_an_error_not_a_traceback(runs, predict_calls, tmp_path):
    run = tmp_path / "runs" / RUNS[1]
    (run / "model.tflite").unlink()
    (run / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")  # its export fails (in a child process)
    at = evaluate(open_page(), labels=LABELS[1:])
    assert not predict_calls
    assert any("Cannot prepare model.keras for fast inference" in error.value for error in at.error), at.error


def test_second_visit_does_not_predict_again(runs, predict_calls):
    at = evaluate(open_page())
    assert len(predict_calls) == 2
    at.selectbox(key=evaluate_page.KEY_DETAIL).set_value(LABELS[1]).run()  # any rerun
    assert len(predict_calls) == 2 and len(at.dataframe) == 2  # comparison and group tables: results drawn again

    again = open_page()  # a new session: results come from the shared store, without pressing Evaluate
    again.multiselect(key=evaluate_page.KEY_MODELS).set_value(LABELS).run()
    assert not again.exception and len(predict_calls) == 2
    assert sorted(comparison(again)["model"]) == sorted(LABELS)


def test_a_runs_test_split_scores_only_its_test_rows(runs, predict_calls):
    at = evaluate(open_page(), labels=LABELS[:1], rows=f"Test split of {RUNS[0]}")
    assert comparison(at)["n"].tolist() == [runs["test_rows"]]
    assert predict_calls[-1]["rows"] == runs["test_rows"]


def test_rows_default_to_the_chosen_models_own_test_split(runs, predict_calls):
    """Issue 20 item 1: the default is fair, the model's own test rows, and nothing warns about them."""
    at = open_page()
    at.multiselect(key=evaluate_page.KEY_MODELS).set_value(LABELS[:1]).run()  # the run with a split file
    assert at.selectbox(key=evaluate_page.KEY_ROWS).value == f"Test split of {RUNS[0]}"
    at.button(key=evaluate_page.KEY_RUN).click().run()
    assert comparison(at)["n"].tolist() == [runs["test_rows"]]
    assert not [w for w in at.warning if "training split" in w.value]


def test_rows_that_overlap_a_models_training_split_are_flagged_with_the_count(runs, predict_calls, sample_rows):
    at = open_page()
    at.multiselect(key=evaluate_page.KEY_MODELS).set_value(LABELS[:1]).run()
    at.selectbox(key=evaluate_page.KEY_ROWS).set_value("All images in the folder").run()
    trained = len(sample_rows) - runs["test_rows"]
    warnings = [w.value for w in at.warning if "training split" in w.value]
    assert len(warnings) == 1 and f"{trained} of these {len(sample_rows)} images" in warnings[0], warnings
    assert f"Test split of {RUNS[0]}" in warnings[0]  # and says what to pick instead
    assert "under **Images to score**" in warnings[0]  # by the picker's own name (it said "Rows", its old one)


def test_nothing_is_predicted_before_evaluate_is_pressed(runs, predict_calls, sample_rows):
    at = open_page()
    at.multiselect(key=evaluate_page.KEY_MODELS).set_value(LABELS).run()
    assert not predict_calls
    assert any(f"{runs['test_rows']:,} labelled images ready" in info.value for info in at.info)  # its test split


def test_a_bad_folder_shows_an_error_not_a_traceback(runs, predict_calls):
    at = open_page()
    at.text_input(key=evaluate_page.KEY_FOLDER).set_value("/no/such/folder").run()
    at.button(key=evaluate_page.KEY_RUN).click().run()
    assert not at.exception and not predict_calls
    assert any("Folder not found" in error.value for error in at.error)


def test_without_models_the_page_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "empty_runs"))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "models")
    at = open_page()
    assert any("No model yet" in warning.value for warning in at.warning)


# --------------------------------------------------------------------------------------- the figures

def small_reports() -> dict:
    table = load_dataset("utkface", settings.SAMPLE_DIR).table.head(60)
    n = len(table)
    outputs = {"age": (table["age"].to_numpy(dtype=float) + 3).reshape(-1, 1), "gender": [[0.7]] * n,
               "race": [[0.6, 0.1, 0.1, 0.1, 0.1]] * n}
    frame = evaluation.join_predictions(table, outputs)
    return {"a": evaluation.evaluate_frame(frame, min_group=5), "b": evaluation.evaluate_frame(frame, min_group=5)}


def test_group_bars_show_each_model_fade_small_groups_and_name_the_gap():
    reports = small_reports()
    figure = charts.eval_group_bars(reports, "race", "race_accuracy")
    assert [trace.name for trace in figure.data] == ["a", "b"]
    groups = reports["a"]["by_group"]["race"]
    assert list(figure.data[0].x) == list(groups)
    assert list(figure.data[0].marker.opacity) == [0.35 if g["small"] else 1.0 for g in groups.values()]
    gap = reports["a"]["gaps"]["race"]["race_accuracy"]
    assert f"gap {gap['gap']:.3g} ({gap['worst']} vs {gap['best']})" in figure.layout.title.text


def test_confusion_reliability_cs_and_scatter_figures():
    reports = small_reports()
    confusion = reports["a"]["confusion"]["gender"]
    heatmap = charts.eval_confusion(confusion, "Gender").data[0]
    assert [list(row) for row in heatmap.text] == confusion["matrix"]
    assert all(abs(sum(row) - 1) < 1e-9 or sum(row) == 0 for row in heatmap.z)  # rows are shares of the truth
    reliability = charts.eval_reliability(reports, "race")
    assert reliability.data[0].name == "calibrated" and len(reliability.data) == 3
    assert "ECE" in reliability.data[1].name
    cs = charts.eval_cs_curve(reports)
    assert list(cs.data[0].x) == list(range(1, 11))
    frame = evaluation.join_predictions(load_dataset("utkface", settings.SAMPLE_DIR).table.head(5),
                                         {"age": [[30]] * 5, "gender": [[0.5]] * 5, "race": [[0.2] * 5] * 5})
    scatter = charts.eval_age_scatter(frame)
    assert len(scatter.data[0].x) == 5 and scatter.data[1].name == "perfect"


# ------------------------------------------------------------------------------------ the public profile

ABSOLUTE = re.compile(r"(?<![\w.])/(?:tmp|etc|proc|work|home|root)\b")


@pytest.fixture
def public(monkeypatch):
    monkeypatch.setenv("FACE_MODE", "public")
    monkeypatch.delenv("FACE_DATA_DIR", raising=False)
    monkeypatch.delenv("FACE_DATASET_ROOTS", raising=False)


def _shown(at: AppTest) -> str:
    kinds = ("markdown", "caption", "error", "warning", "info", "success")
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def test_public_evaluate_offers_a_list_and_caps_the_rows(runs, predict_calls, public, monkeypatch):
    monkeypatch.setattr(policy, "PUBLIC_MAX_EVAL_ROWS", 40)
    at = open_page()
    assert not at.text_input  # no folder box to type a server path into
    assert at.selectbox(key=evaluate_page.KEY_DATASET).options == [access.SAMPLE_LABEL]
    evaluate(at, labels=LABELS[:1], rows="All images in the folder")
    assert comparison(at)["n"].tolist() == [40] and [c["rows"] for c in predict_calls] == [40]
    assert any("fixed sample of 40 of the 300 images" in c.value for c in at.caption)
    assert not ABSOLUTE.search(_shown(at))


def test_groups_too_small_for_a_gap_are_said_so_not_shown_as_an_empty_table(runs, predict_calls, public,
                                                                             monkeypatch):
    monkeypatch.setattr(policy, "PUBLIC_MAX_EVAL_ROWS", 40)  # no race group reaches 30 images
    at = evaluate(open_page(), labels=LABELS[:1], rows="All images in the folder")
    assert any("No gaps to show: fewer than two race groups have 30 images" in c.value for c in at.caption)
    assert all(not frame.value.empty for frame in at.dataframe)  # comparison and group tables, no empty gaps one


def test_one_evaluation_at_a_time_per_server(runs, predict_calls, public):
    at = open_page()
    with slots.evaluation_slot():  # another session is evaluating
        evaluate(at, labels=LABELS[:1])
    assert not predict_calls and any("Another evaluation is running" in w.value for w in at.warning)
    evaluate(at, labels=LABELS[:1])  # once it has finished
    assert len(predict_calls) == 1 and not at.warning


def test_evaluating_keeps_the_cache_under_its_cap(runs, predict_calls, monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FACE_CACHE_DIR", str(cache))
    monkeypatch.setenv("FACE_CACHE_MAX_MB", "0.05")  # 52 KB: less than one batch of cached crops
    evaluate(open_page(), labels=LABELS[:1])
    assert len(predict_calls) == 1
    assert sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) <= 0.05 * 1024 ** 2


def test_public_errors_name_no_server_path(runs, predict_calls, public, sample_rows):
    split = settings.runs_dir() / RUNS[0] / "split.csv"
    pd.DataFrame({"path": ["/elsewhere/1_0_0_x.jpg.chip.jpg"], "split": ["test"]}).to_csv(split, index=False)
    at = open_page()
    at.multiselect(key=evaluate_page.KEY_MODELS).set_value(LABELS[:1]).run()
    at.selectbox(key=evaluate_page.KEY_ROWS).set_value(f"Test split of {RUNS[0]}").run()
    message = at.error[0].value
    assert "None of the 1 'test' images" in message and f"runs/{RUNS[0]}/split.csv" in message
    assert not ABSOLUTE.search(message) and str(settings.runs_dir()) not in message


def test_unexpected_errors_show_a_reference_not_internals(runs, public, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError(f"exploded while reading {settings.SAMPLE_DIR}/x.jpg")
    monkeypatch.setattr(evaluation, "predict_table", broken)
    at = evaluate(open_page(), labels=LABELS[:1])
    shown = at.error[0].value
    assert re.search(r"reference [0-9a-f]{8}", shown)
    assert "RuntimeError" not in shown and "exploded" not in shown and not ABSOLUTE.search(shown)


def test_a_fairface_model_is_scored_on_utkface_through_named_mappings(tmp_path, monkeypatch, sample_rows):
    """A FairFace-space model (9 age groups, race-7) on the UTKFace sample: no failure, and the page says how its
    labels were compared with UTKFace's."""
    from core.models import ModelConfig, build_model
    model, _ = build_model(ModelConfig.tiny("fairface_cnn"))
    model.save(tmp_path / "fairface_cnn.keras")
    export_beside(tmp_path / "fairface_cnn.keras")
    name = "20250101-000002-fairface_cnn"
    write_run(tmp_path / "runs", name, tmp_path / "fairface_cnn.keras",
              config={"dataset": "fairface", "data_dir": "", "model": {"arch": "fairface_cnn", "img_size": 32}},
              with_tflite=True)
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(settings, "MODELS_DIR", tmp_path / "models")
    st.cache_resource.clear()
    at = evaluate(open_page(), labels=[f"{name} — FairFace · fairface_cnn · 1 epoch · not tested"],
                  rows="All images in the folder")
    assert not at.error, [e.value for e in at.error]
    captions = " ".join(c.value for c in at.caption)
    assert "race: predicted race-7 → race-5" in captions
    assert "age: FairFace groups as years (their middles, approximate)" in captions
    table = comparison(at)
    assert table["n"].tolist() == [len(sample_rows)] and table["race_accuracy"].between(0, 1).all()
