"""Evaluate: score one or more models on a labelled folder, overall and per group, side by side. One evaluation
runs at a time per server; a public server offers its own datasets in a list and scores at most a fixed sample of
rows (core/slots.py, core/policy.py)."""

from collections import OrderedDict

import pandas as pd
import streamlit as st

from core import access, charts, evaluation, housekeeping, policy, settings, slots
from core.browse import thumbnail_jpeg
from core.datasets import AUTO_KIND, KIND_LABEL, KINDS, kind_title
from core.reports import (
    comparison_table,
    for_display,
    gaps_table,
    group_table,
    metrics_long,
    skew_table,
    worst_errors,
)
from pages.common import enter_through_router, model_picker, model_version, predictor_for, session_profile, user_errors

enter_through_router()
housekeeping.startup_once()
profile = session_profile()

KEY_MODELS = "evaluate.models"
KEY_KIND = "evaluate.kind"
KEY_FOLDER = "evaluate.folder"
KEY_DATASET = "evaluate.dataset"  # the public profile's dataset list, in place of the folder box
KEY_ROWS = "evaluate.rows"
KEY_CROPS = "evaluate.crops"
KEY_RUN = "evaluate.run"
KEY_DETAIL = "evaluate.detail"
KEY_DIMENSION = "evaluate.dimension"
KEY_METRIC = "evaluate.metric"
ALL_ROWS = "All images in the folder"
# How each face is cut before the model sees it: as the app cuts an upload (what users get), or the dataset's crop.
CROP_CHOICES = {"app": "As the app cuts uploads (detect + align)", "dataset": "The dataset's own crops",
                "both": "Both, side by side"}
MAX_STORED = 16  # (model version, data) results kept in memory for every session


@st.cache_resource
def _store() -> OrderedDict:
    # A shared store rather than st.cache_data: the progress bar must update while predicting, which a cached
    # function cannot replay. Keys hold the model's mtime and a fingerprint of the rows, so nothing goes stale.
    return OrderedDict()


def data_ui(entries) -> tuple[str | None, str, object, tuple[str, ...]]:
    left, middle, right = st.columns([1, 3, 2])
    kind = left.selectbox(KIND_LABEL, [AUTO_KIND, *KINDS], key=KEY_KIND, format_func=kind_title)
    if profile.public:
        choices = access.dataset_choices(profile)
        label = middle.selectbox("Dataset", list(choices), key=KEY_DATASET, help="The datasets this server offers.")
        folder = str(choices[label]) if label is not None else ""
    else:
        folder = middle.text_input("Dataset folder", value=str(settings.SAMPLE_DIR), key=KEY_FOLDER)
    # A model's own test split first: scoring a model on the images it trained on flatters it.
    splits = {f"Test split of {e.name}": e.split_file for e in entries if e.split_file} | {ALL_ROWS: None}
    rows = right.selectbox("Images to score", list(splits), key=KEY_ROWS)
    crops = st.radio("Faces", list(CROP_CHOICES), format_func=CROP_CHOICES.get, horizontal=True, key=KEY_CROPS,
                     help="The app finds and aligns each face the way it does for an upload; the dataset's own "
                          "crops are what most papers report. Both shows the gap between them.")
    modes = ("app", "dataset") if crops == "both" else (crops,)
    return (None if kind == AUTO_KIND else kind), folder, splits[rows], modes


def results_for(entry, kind: str, table: pd.DataFrame, crops: str, predict: bool):
    """(predictions, report) from the store, predicting first when asked; None when not stored and not asked."""
    key = (str(entry.path), model_version(entry.path), kind, evaluation.table_fingerprint(table), crops)
    store = _store()
    if key not in store and predict:
        bar = st.progress(0.0, text=f"Predicting with {entry.name} ({crops} crops)…")
        frame = evaluation.predict_table(predictor_for(entry), table, crops=crops, on_progress=lambda done, total:
                                         bar.progress(done / total, text=f"{entry.name}: {done}/{total} images"))
        store[key] = frame, evaluation.evaluate_frame(frame, kind)
        bar.empty()
        while len(store) > MAX_STORED:
            store.popitem(last=False)
    return store.get(key)


def report_name(entry, crops: str, modes: tuple[str, ...]) -> str:
    return entry.label if len(modes) == 1 else f"{entry.label} · {crops} crops"


def score(entries, kind: str, table: pd.DataFrame, modes: tuple[str, ...], clicked: bool) -> dict:
    """Each (model, crop mode)'s (predictions, report), or None where not stored yet. Predicting holds the
    server's one evaluation slot (Busy when another session has it); the cache is cut back to its cap after."""
    pairs = [(entry, crops) for entry in entries for crops in modes]
    stored = {report_name(e, c, modes): results_for(e, kind, table, c, False) for e, c in pairs}
    if not clicked or all(result is not None for result in stored.values()):
        return stored
    with slots.evaluation_slot():
        results = {report_name(e, c, modes): results_for(e, kind, table, c, True) for e, c in pairs}
        housekeeping.evict_cache(settings.cache_max_bytes())
    return results


def show_worst(frame: pd.DataFrame) -> None:
    st.caption("Start here to find label errors: a face far from its label is often mislabelled, not mispredicted.")
    for task, rows in worst_errors(frame).items():
        st.markdown(f"**{task.capitalize()}** — " + ("largest errors" if task == "age" else "confident mistakes"))
        if rows.empty:
            st.caption("Nothing to show (no labels or no mistakes).")
        else:
            st.image([thumbnail_jpeg(p, 120) for p in rows["path"]], caption=rows["caption"].tolist(), width=120)


st.title("📊 Evaluate")
st.caption("Score models on labelled faces: errors, calibration, and the gaps between race, gender and age groups.")
entries = model_picker(KEY_MODELS, "Models", multiple=True)
kind, folder, split_file, modes = data_ui(entries)
clicked = st.button("Evaluate", type="primary", key=KEY_RUN, disabled=not entries)
if not entries:
    st.stop()
with user_errors("Evaluate"):
    kind, table = evaluation.load_rows(kind, folder, split_file)  # reads the profile bound above
    table, capped = policy.evaluation_rows(table, profile)
    if capped:
        st.caption(capped)
    results = score(entries, kind, table, modes, clicked)
if any(result is None for result in results.values()):
    st.info(f"{len(table):,} labelled images ready. Press **Evaluate** to score {len(entries)} model(s)"
            + (" on both crop paths." if len(modes) > 1 else "."))
    st.stop()

frames = {name: frame for name, (frame, _) in results.items()}
reports = {name: report for name, (_, report) in results.items()}
detail = st.selectbox("Details for", list(reports), key=KEY_DETAIL) if len(reports) > 1 else next(iter(reports))
confusion = reports[detail]["confusion"]
compare, age, classes, fairness, worst, download = st.tabs(
    ["Compare", "Age", "Gender & race", "Fairness", "Worst errors", "Download"])
with compare:
    st.dataframe(for_display(comparison_table(reports)), hide_index=True)
    if len(modes) > 1:
        st.markdown("**Skew: the app's crops minus the dataset's crops** (a positive age MAE or a negative accuracy: "
                    "users get less than the dataset crops report)")
        st.dataframe(for_display(skew_table({e.label: (reports[report_name(e, "app", modes)], reports[report_name(
            e, "dataset", modes)]) for e in entries})), hide_index=True, key="evaluate.skew")
    st.plotly_chart(charts.eval_headline_bars(reports), key="evaluate.chart.headline")
    st.plotly_chart(charts.eval_cs_curve(reports), key="evaluate.chart.cs")
with age:
    st.plotly_chart(charts.eval_age_scatter(frames[detail], f"Predicted vs true age — {detail}"),
                    key="evaluate.chart.scatter")
    st.plotly_chart(charts.eval_group_bars(reports, "age_group", "age_mae"), key="evaluate.chart.mae_by_age")
    if "age_group" in confusion:
        st.plotly_chart(charts.eval_confusion(confusion["age_group"], "Age groups"), key="evaluate.chart.confusion_age")
with classes:
    for task in ("gender", "race"):
        if task in confusion:
            left, right = st.columns(2)
            left.plotly_chart(charts.eval_confusion(confusion[task], f"{task.capitalize()} — {detail}"),
                              key=f"evaluate.chart.confusion_{task}")
            right.plotly_chart(charts.eval_reliability(reports, task), key=f"evaluate.chart.reliability_{task}")
with fairness:
    dimensions = list(reports[detail]["by_group"])
    left, right = st.columns(2)
    dimension = left.radio("Groups", dimensions, horizontal=True, key=KEY_DIMENSION,
                           format_func=lambda d: charts.EVAL_DIMENSION_LABELS.get(d, d).capitalize())
    metric = right.selectbox("Metric", list(charts.EVAL_METRIC_LABELS), key=KEY_METRIC,
                             format_func=charts.EVAL_METRIC_LABELS.get)
    st.plotly_chart(charts.eval_group_bars(reports, dimension, metric), key="evaluate.chart.groups")
    st.caption(f"Faint bars: groups of fewer than {evaluation.MIN_GROUP_SIZE} images, too few to trust (marked "
               "so in the table); the gaps between groups leave them out.")
    st.dataframe(for_display(gaps_table(reports, dimension)), hide_index=True)
    st.dataframe(for_display(group_table(reports[detail], dimension)), hide_index=True)
with worst:
    show_worst(frames[detail])
with download:  # callables: the CSVs are built only when clicked (21k rows take seconds), off the script thread
    st.download_button("Per-image predictions (CSV)", lambda: access.shown_table(pd.concat(
        [frame.assign(model=name) for name, frame in frames.items()]), profile).to_csv(index=False), "predictions.csv",
        "text/csv", key="evaluate.download.predictions", on_click="ignore")
    st.download_button("Metrics (CSV)", lambda: metrics_long(reports).to_csv(index=False), "metrics.csv",
                       "text/csv", key="evaluate.download.metrics", on_click="ignore")
