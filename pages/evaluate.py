"""Evaluate: score one or more models on a labelled folder, overall and per group, side by side. One evaluation
runs at a time per server; a public server offers its own datasets in a list and scores at most a fixed sample of
rows (core/slots.py, core/policy.py)."""

import time
from collections import OrderedDict

import pandas as pd
import streamlit as st

from core import access, charts, evaluation, housekeeping, policy, settings, splits
from core.browse import thumbnail_jpeg
from core.datasets import AUTO_KIND, KIND_LABEL, KINDS, kind_title
from core.eval_jobs import EvaluationJob, Task
from core.reports import (
    comparison_table,
    for_display,
    gaps_table,
    group_table,
    metrics_long,
    skew_table,
    worst_errors,
)
from pages.common import (
    folder_box,
    keep,
    model_picker,
    predictor_for,
    start_page,
    user_errors,
)

KEY_MODELS = "evaluate.models"
KEY_KIND = "evaluate.kind"
KEY_FOLDER = "evaluate.folder"
KEY_DATASET = "evaluate.dataset"  # the public profile's dataset list, in place of the folder box
KEY_ROWS = "evaluate.rows"
KEY_ROWS_CHOSEN = "evaluate.rows_chosen"  # the user chose the images to score: the page no longer picks
KEY_CROPS = "evaluate.crops"
KEY_RUN = "evaluate.run"
KEY_DETAIL = "evaluate.detail"
KEY_DIMENSION = "evaluate.dimension"
KEY_METRIC = "evaluate.metric"
KEY_TABS = "evaluate.tabs"  # a fixed id: the open tab stays open through reruns, whatever was drawn above it
KEY_JOB, KEY_CANCEL = "evaluate.job", "evaluate.cancel"  # this session's evaluation job (core/eval_jobs.py)
FOLLOW_SECONDS = 0.5
ALL_ROWS = "All images in the folder"
# How each face is cut before the model sees it: as the app cuts an upload (what users get), or the dataset's crop.
CROP_CHOICES = {"app": "As the app cuts uploads (detect + align)", "dataset": "The dataset's own crops",
                "both": "Both, side by side"}
MAX_STORED = 16  # (model version, data) results kept in memory for every session
MAX_DOWNLOADS = 4  # their CSV files, for the latest result sets (a 21k-row predictions file is megabytes)


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
        folder = folder_box(middle, "Dataset folder", KEY_FOLDER, str(settings.SAMPLE_DIR))
    # A model's own test split first: scoring a model on the images it trained on flatters it.
    row_choices = {test_split_label(e): e.split_file for e in entries if e.split_file} | {ALL_ROWS: None}
    if not st.session_state.get(KEY_ROWS_CHOSEN) or st.session_state.get(KEY_ROWS) not in row_choices:
        st.session_state[KEY_ROWS] = next(iter(row_choices))  # the fair default follows the models chosen
    rows = right.selectbox("Images to score", list(row_choices), key=KEY_ROWS,
                           on_change=lambda: st.session_state.update({KEY_ROWS_CHOSEN: True}))
    crops = st.radio("Faces", list(CROP_CHOICES), format_func=CROP_CHOICES.get, horizontal=True, key=KEY_CROPS,
                     help="The app finds and aligns each face the way it does for an upload; the dataset's own "
                          "crops are what most papers report. Both shows the gap between them.")
    modes = ("app", "dataset") if crops == "both" else (crops,)
    return (None if kind == AUTO_KIND else kind), folder, row_choices[rows], modes


def test_split_label(entry) -> str:
    return f"Test split of {entry.name}"


def warn_about_training_rows(entries, table: pd.DataFrame) -> None:
    """Say so when the rows include images a chosen model trained on, with the count: its scores flatter it."""
    for entry in entries:
        if entry.split_file is None:
            continue
        counts = splits.split_counts(table, entry.split_file)
        if counts["train"]:
            st.warning(f"{counts['train']:,} of these {len(table):,} images are in {entry.name}'s training split "
                       f"(and {counts['val']:,} in its validation split): its scores here flatter it. For a fair "
                       f"score pick **{test_split_label(entry)}** under **Images to score**.")


@st.fragment
def show_fairness(reports: dict, detail: str) -> None:
    """The per-group tab. A fragment: changing its grouping or metric redraws this tab alone, so the other tabs stay
    current and clickable (a whole-page rerun greys them out and ignores tab clicks until it reaches them)."""
    dimensions = list(reports[detail]["by_group"])
    left, right = st.columns(2)
    dimension = left.radio("Groups", dimensions, horizontal=True, key=KEY_DIMENSION,
                           format_func=lambda d: charts.EVAL_DIMENSION_LABELS.get(d, d).capitalize())
    metric = right.selectbox("Metric", list(charts.EVAL_METRIC_LABELS), key=KEY_METRIC,
                             format_func=charts.EVAL_METRIC_LABELS.get)
    st.plotly_chart(charts.eval_group_bars(reports, dimension, metric), key="evaluate.chart.groups")
    st.caption(f"Faint bars: groups of fewer than {evaluation.MIN_GROUP_SIZE} images, too few to trust (marked "
               "so in the table); the gaps between groups leave them out.")
    gaps = gaps_table(reports, dimension)
    if gaps.empty:  # an empty table would read as a failure; say why there is nothing to compare
        st.caption(f"No gaps to show: fewer than two {charts.EVAL_DIMENSION_LABELS.get(dimension, dimension)} groups "
                   f"have {evaluation.MIN_GROUP_SIZE} images or more here.")
    else:
        st.dataframe(for_display(gaps), hide_index=True)
    st.dataframe(for_display(group_table(reports[detail], dimension)), hide_index=True)


def result_key(entry, kind: str, table: pd.DataFrame, crops: str) -> tuple:
    return str(entry.path), entry.version, kind, evaluation.table_fingerprint(table), crops


@st.cache_resource
def _downloads() -> OrderedDict:
    return OrderedDict()


def download_files(frames: dict, reports: dict, key: tuple) -> tuple[bytes, bytes]:
    """(predictions CSV, metrics CSV), built once per set of results. Bytes, not callables: Streamlit names a
    file by its content, so a button drawn by an earlier run still downloads while the page reruns; a callable
    gets a new id every run and the old button's click failed ("Deferred file … not found")."""
    store = _downloads()
    if key not in store:
        predictions = pd.concat([frame.assign(model=name) for name, frame in frames.items()])
        store[key] = (access.shown_table(predictions, profile).to_csv(index=False).encode(),
                      metrics_long(reports).to_csv(index=False).encode())
        while len(store) > MAX_DOWNLOADS:
            store.popitem(last=False)
    return store[key]


def results_for(entry, kind: str, table: pd.DataFrame, crops: str):
    """(predictions, report) from the store; None when not stored."""
    return _store().get(result_key(entry, kind, table, crops))


def report_name(entry, crops: str, modes: tuple[str, ...]) -> str:
    return entry.label if len(modes) == 1 else f"{entry.label} · {crops} crops"


def follow(job: EvaluationJob) -> None:
    """Draw a job's progress, ETA and Cancel until it ends. A page switch or a rerun ends only this drawing: the
    job goes on in its thread, and the page follows it again on return."""
    box = st.empty()
    with box.container():
        bar = st.progress(job.fraction, job.status_line())
        st.button("Cancel", key=KEY_CANCEL, on_click=job.cancel)
    while job.running:
        time.sleep(FOLLOW_SECONDS)
        bar.progress(job.fraction, job.status_line())
    box.empty()


def collect(job: EvaluationJob) -> None:
    """A job that ended: its results into the shared store (cut back to its cap), or why there are none."""
    st.session_state.pop(KEY_JOB, None)
    if job.status == "cancelled":
        st.info("Evaluation cancelled: nothing was scored.")
    elif job.failure is not None:  # a UserError shows as its message, anything else as a reference id
        raise job.failure
    store = _store()
    store.update(job.results)
    while len(store) > MAX_STORED:
        store.popitem(last=False)
    housekeeping.evict_cache(settings.cache_max_bytes())


def score(entries, kind: str, table: pd.DataFrame, modes: tuple[str, ...], clicked: bool) -> dict:
    """Each (model, crop mode)'s (predictions, report), or None where not stored yet. Evaluate starts a job for
    the missing ones (core/eval_jobs.py: it holds the server's one evaluation slot, Busy when another session has
    it); this session's job, running or just ended, is followed and collected first."""
    pairs = [(entry, crops) for entry in entries for crops in modes]
    job = st.session_state.get(KEY_JOB)
    if job is None and clicked and any(results_for(e, kind, table, c) is None for e, c in pairs):
        tasks = [Task(result_key(e, kind, table, c), report_name(e, c, modes), predictor_for(e), c)
                 for e, c in pairs if results_for(e, kind, table, c) is None]
        job = st.session_state[KEY_JOB] = EvaluationJob(tasks, table, kind).start()
    if job is not None:
        follow(job)
        collect(job)
    return {report_name(e, c, modes): results_for(e, kind, table, c) for e, c in pairs}


def show_mappings(reports: dict) -> None:
    """How each model's labels were compared with the dataset's, where they are not the same space."""
    for name, report in reports.items():
        for task, mapping in report.get("mappings", {}).items():
            if "its own" not in mapping and mapping != "years (no groups)":
                st.caption(f"{name}, {task}: {mapping}.")


def show_worst(frame: pd.DataFrame) -> None:
    st.caption("Start here to find label errors: a face far from its label is often mislabelled, not mispredicted.")
    for task, rows in worst_errors(frame).items():
        st.markdown(f"**{task.capitalize()}** — " + ("largest errors" if task == "age" else "confident mistakes"))
        if rows.empty:
            st.caption("Nothing to show (no labels or no mistakes).")
        else:
            st.image([thumbnail_jpeg(p, 120) for p in rows["path"]], caption=rows["caption"].tolist(), width=120)


# Streamlit runs a page as "__main__"; a test imports it for its keys without running it.
if __name__ == "__main__":
    profile = start_page()
    keep(KEY_KIND, KEY_CROPS)

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
        warn_about_training_rows(entries, table)
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
        ["Compare", "Age", "Gender & race", "Fairness", "Worst errors", "Download"], key=KEY_TABS)
    with compare:
        st.dataframe(for_display(comparison_table(reports)), hide_index=True)
        show_mappings(reports)
        if len(modes) > 1:
            st.markdown("**Skew: the app's crops minus the dataset's crops** (a positive age MAE or a negative "
                        "accuracy: users get less than the dataset crops report)")
            st.dataframe(for_display(skew_table({e.label: (reports[report_name(e, "app", modes)], reports[report_name(
                e, "dataset", modes)]) for e in entries})), hide_index=True, key="evaluate.skew")
        st.plotly_chart(charts.eval_headline_bars(reports), key="evaluate.chart.headline")
        st.plotly_chart(charts.eval_cs_curve(reports), key="evaluate.chart.cs")
    with age:
        st.plotly_chart(charts.eval_age_scatter(frames[detail], f"Predicted vs true age — {detail}"),
                        key="evaluate.chart.scatter")
        st.plotly_chart(charts.eval_group_bars(reports, "age_group", "age_mae"), key="evaluate.chart.mae_by_age")
        if "age_group" in confusion:
            st.plotly_chart(charts.eval_confusion(confusion["age_group"], "Age groups"),
                            key="evaluate.chart.confusion_age")
    with classes:
        for task in ("gender", "race"):
            if task in confusion:
                left, right = st.columns(2)
                left.plotly_chart(charts.eval_confusion(confusion[task], f"{task.capitalize()} — {detail}"),
                                  key=f"evaluate.chart.confusion_{task}")
                right.plotly_chart(charts.eval_reliability(reports, task), key=f"evaluate.chart.reliability_{task}")
    with fairness:
        show_fairness(reports, detail)
    with worst:
        show_worst(frames[detail])
    with download:
        files_key = (profile.public, *(result_key(e, kind, table, c) for e in entries for c in modes))
        predictions_csv, metrics_csv = download_files(frames, reports, files_key)
        st.download_button("Per-image predictions (CSV)", predictions_csv, "predictions.csv", "text/csv",
                           key="evaluate.download.predictions", on_click="ignore")
        st.download_button("Metrics (CSV)", metrics_csv, "metrics.csv", "text/csv", key="evaluate.download.metrics",
                           on_click="ignore")
