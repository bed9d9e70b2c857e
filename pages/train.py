"""Train: pick data, architecture and hyperparameters; train in a worker process; watch live curves.

The page never imports TensorFlow (core/jobs.py runs training in a child process, core/workers.py probes the device
in one), so it paints at once and its 1 s progress fragment costs the training nothing.

A public server (core/policy.py) trains small jobs on its bundled sample only, in a child with memory and CPU
caps; a visitor sees and stops only the job and the runs of their own session, and old public runs are deleted
beyond a quota (core/public_runs.py)."""

from __future__ import annotations

import streamlit as st

from core import access, charts, distribute, jobs, policy, public_runs, runs, settings, workers
from core.config import TrainConfig
from core.datasets import KIND_LABEL, KINDS, kind_title
from core.errors import UserError
from core.metrics import PER_TASK
from core.model_config import AGE_HEADS, AGE_LOSSES, ARCHITECTURE_NOTES, ARCHITECTURES
from core.recipes import architectures_help
from core.registry import all_models
from core.reports import for_display
from pages.common import (
    folder_box,
    keep,
    owned_runs,
    session_owner,
    start_page,
    visible_models,
)

KEY_KIND, KEY_FOLDER, KEY_ARCH = "train.kind", "train.folder", "train.arch"
KEY_IMG_SIZE, KEY_EPOCHS, KEY_BATCH, KEY_LR = "train.img_size", "train.epochs", "train.batch_size", "train.lr"
KEY_AGE_LOSS, KEY_AGE_HEAD, KEY_AUGMENT = "train.age_loss", "train.age_head", "train.augment"
KEY_WEIGHTS = {"age": "train.age_weight", "gender": "train.gender_weight", "race": "train.race_weight"}
KEY_LIMIT, KEY_FREEZE, KEY_FORM, KEY_START = "train.limit", "train.freeze_epochs", "train.form", "train.start"
KEY_STOP, KEY_RUN, KEY_LIVE_CHART, KEY_RUN_CHART = "train.stop", "train.run", "train.live_chart", "train.run_chart"
KEY_START_FROM = "train.start_from"
KEY_MANAGE_RUN, KEY_NEW_NAME, KEY_RENAME = "train.manage_run", "train.new_name", "train.rename"
KEY_CONFIRM_DELETE, KEY_DELETE, KEY_RUN_NOTICE = "train.confirm_delete", "train.delete", "train.run_notice"
FRESH = "random weights"
POLL_SECONDS = 1.0
IMG_SIZES = (32, 48, 64, 96, 128, 160, 224)
BATCH_SIZES = (8, 16, 32, 64, 128)
# One test score per task, labelled as the Evaluate page labels it: "Test age MAE (years)", …
TEST_METRICS = {key: f"Test {label[0].lower()}{label[1:]}" for key in PER_TASK
                for label in [charts.EVAL_METRIC_LABELS[key]]}
BACKGROUND_NOTE = ("Training runs in the background: switching pages does not stop it, and one job runs per server "
                   "at a time.")
BUSY_NOTE = "A training job is running on this server: you can start yours when it has finished."


def draw_environment(environment: tuple[str, str | None]) -> None:
    device, resnet_note = environment
    st.caption(f"Training device: **{device}**. {BACKGROUND_NOTE}")
    if resnet_note:
        st.info(resnet_note)


@st.fragment(run_every=POLL_SECONDS)
def environment_pending() -> None:
    """Until the device probe (a TensorFlow child process, once per server) answers; then the page redraws."""
    if workers.training_environment() is not None:
        st.rerun()
    st.caption(f"Training device: checking… {BACKGROUND_NOTE}")


def widget_choices() -> tuple[tuple, tuple, int, tuple]:
    """(architectures, image sizes, most epochs, batch sizes) the form offers: in public within `limits`."""
    if not profile.public:
        return ARCHITECTURES, IMG_SIZES, 500, BATCH_SIZES
    return (tuple(a for a in ARCHITECTURES if a in limits.architectures),
            tuple(size for size in IMG_SIZES if size <= limits.max_img_size), limits.max_epochs,
            tuple(size for size in BATCH_SIZES if size <= limits.max_batch_size))


def describe_arch(arch: str) -> str:
    """An architecture with its one line (core/model_config.py), as the picker lists it."""
    return f"{arch} — {ARCHITECTURE_NOTES[arch]}" if arch in ARCHITECTURE_NOTES else arch


def _nearest(options: tuple, value):
    return value if value in options else min(options, key=lambda option: abs(option - value))


def training_form():
    """The user's training request as a TrainConfig, or None until Start is pressed. Defaults: TrainConfig."""
    d, m, t = TrainConfig(), {}, {}  # defaults; ModelConfig and TrainConfig fields chosen here
    archs, img_sizes, most_epochs, batch_sizes = widget_choices()
    with st.form(KEY_FORM, border=False):
        if profile.public:  # no folder box: a public server trains on its bundled sample only
            t["dataset"], t["data_dir"] = "utkface", str(settings.SAMPLE_DIR)
            st.caption(f"Dataset: {access.SAMPLE_LABEL}. This public server trains small models on it: at most "
                       f"{limits.max_img_size} px, {limits.max_epochs} epochs and batches of {limits.max_batch_size}.")
        else:
            kind_col, folder_col = st.columns([1, 4])
            t["dataset"] = kind_col.selectbox(KIND_LABEL, KINDS, key=KEY_KIND, format_func=kind_title)
            t["data_dir"] = folder_box(folder_col, "Dataset folder", KEY_FOLDER, str(settings.data_dir()))
        c = st.columns(5)
        m["arch"] = c[0].selectbox("Architecture", archs, key=KEY_ARCH, format_func=describe_arch,
                                    help=architectures_help(archs))
        m["img_size"] = c[1].select_slider("Image size (px)", img_sizes, _nearest(img_sizes, d.model.img_size),
                                           key=KEY_IMG_SIZE)
        t["epochs"] = c[2].number_input("Epochs", 1, most_epochs, min(d.epochs, most_epochs), key=KEY_EPOCHS)
        t["batch_size"] = c[3].select_slider("Batch size", batch_sizes, _nearest(batch_sizes, d.batch_size),
                                             key=KEY_BATCH)
        t["learning_rate"] = c[4].number_input("Learning rate", 1e-5, 1.0, d.learning_rate, 1e-4, "%.5f", key=KEY_LR)
        c = st.columns(5)
        t["age_loss"] = c[0].selectbox("Age loss", AGE_LOSSES, AGE_LOSSES.index(d.age_loss), key=KEY_AGE_LOSS)
        m["age_head"] = c[1].selectbox("Age head", AGE_HEADS, key=KEY_AGE_HEAD)
        for col, head in zip(c[2:], KEY_WEIGHTS, strict=True):
            field = f"{head}_weight"
            t[field] = col.number_input(f"{head.capitalize()} loss weight", 0.0, 10.0, getattr(d, field), 0.05,
                                        key=KEY_WEIGHTS[head])
        c = st.columns(4)
        t["augment"] = c[0].checkbox("Augmentation", d.augment, key=KEY_AUGMENT)
        t["limit"] = c[1].number_input("Use at most N images (0 = all)", 0, None, d.limit, key=KEY_LIMIT)
        t["freeze_backbone_epochs"] = c[2].number_input("Frozen-backbone epochs (ResNet-50)", 0, 99, key=KEY_FREEZE)
        starts = {FRESH: None} | {e.label: e for e in visible_models(all_models()[0], profile, owner) if e.model_config}
        if st.session_state.get(KEY_START_FROM) not in starts:  # a kept choice whose run was renamed or deleted
            st.session_state.pop(KEY_START_FROM, None)
        start = c[3].selectbox("Start from", list(starts), key=KEY_START_FROM,
                               help="Continue a model's training, or fine-tune it on other data: its architecture, "
                                    "size and age head replace the choices above, and its images keep their split.")
        started = st.form_submit_button("Start training", type="primary", key=KEY_START)
    if started and (entry := starts[start]) is not None:
        m.update(entry.model_config)
        t.update(init_from=str(entry.path), split_file=str(entry.split_file or ""))
    return TrainConfig.from_dict({**t, "model": m}) if started else None


def test_metrics(test: dict) -> dict[str, str]:
    """TEST_METRICS, with age-group accuracy in place of age MAE for a model whose age head is groups, and without
    race for a label space that has none (Adience's)."""
    shown = TEST_METRICS
    if "age_group_accuracy" in test and "age_mae" not in test:
        shown = {("age_group_accuracy" if key == "age_mae" else key):
                 ("Test age-group accuracy" if key == "age_mae" else label) for key, label in TEST_METRICS.items()}
    return {key: label for key, label in shown.items() if key != "race_accuracy" or "race_accuracy" in test}


def draw_progress(job) -> None:
    """Status, Stop, notes and the curves; for a finished job its test metrics and run folder."""
    s = job.progress.snapshot()
    if s["distribution"]:  # known once the job's TensorFlow has started
        st.caption(distribute.describe(s["distribution"]))
    for note in s["notes"]:
        st.info(access.public_text(note, profile))
    if s["status"] == "failed":
        st.error(access.public_text(f"Training failed: {s['error'] or s['message']}", profile))
    elif not job.progress.done:
        bar, stop = st.columns([5, 1])
        stopping = job.progress.stop_event.is_set()
        if stop.button("Stopping…" if stopping else "Stop", key=KEY_STOP, disabled=stopping):
            job.stop()
            st.toast("Stopping after the current batch…")
        bar.progress(job.progress.fraction, job.progress.status_line())  # after Stop: says "Stopping…" at once
    else:
        st.success(access.public_text(s["message"], profile))
        test = s["metrics"].get("test", {})
        shown = test_metrics(test)
        for col, (key, label) in zip(st.columns(len(shown)), shown.items(), strict=True):
            col.metric(label, "—" if test.get(key) is None else f"{test[key]:.3f}")
    if s["batch_log"] or s["history"]:
        st.plotly_chart(charts.training_curves(s["batch_log"], s["history"]), key=KEY_LIVE_CHART)


@st.fragment(run_every=POLL_SECONDS)
def live_progress(job) -> None:
    if job.progress.done:
        st.rerun()  # the whole page redraws the final state, and this polling fragment is no longer drawn
    draw_progress(job)


@st.fragment(run_every=POLL_SECONDS)
def busy_notice(job) -> None:
    """Another session's job: that the server is busy, not its settings, curves or controls."""
    if job.progress.done:
        st.rerun()
    st.info(BUSY_NOTE)


def job_ui(job) -> None:
    if not public_runs.can_control_job(profile, job.owner, owner):
        if not job.progress.done:
            busy_notice(job)
        return  # someone else's finished job is none of this session's business
    st.subheader(f"Current job: {job.cfg.model.arch}, {job.cfg.model.img_size} px")
    if job.progress.done:
        draw_progress(job)
    else:
        live_progress(job)


def start(cfg: TrainConfig) -> None:
    """Start the requested job when this profile allows it; messages for every refusal."""
    if problems := policy.check_training_request(cfg, profile):
        st.error("This request cannot run on this server: " + " ".join(problems))
        return
    current = jobs.current_job()
    if current is not None and current.running:  # checked again by start_job; here so no quota runs for nothing
        st.warning(BUSY_NOTE if not public_runs.can_control_job(profile, current.owner, owner) else
                   "A training job is already running on this server: stop it or wait for it to finish.")
        return
    try:
        if profile.public:
            public_runs.enforce_runs_quota(settings.runs_dir(), limits.max_runs - 1)
        if not jobs.start_job(cfg, owner if profile.public else None, limits if profile.public else None)[1]:
            st.warning("A training job is already running on this server: stop it or wait for it to finish.")
    except UserError as error:  # a setting that cannot work, or the training process would not start
        st.error(access.public_text(str(error), profile))


def runs_ui() -> None:
    st.subheader("Runs")
    listed = runs.list_runs()
    if profile.public and not listed.empty:
        names = public_runs.visible_runs(listed["run"], profile, owned_runs(listed["path"], owner))
        listed = listed[listed["run"].isin(names)].reset_index(drop=True)
    if listed.empty:
        st.caption("No runs of yours yet." if profile.public else f"No runs yet in {settings.runs_dir()}.")
        return
    st.dataframe(for_display(listed.drop(columns="path")), hide_index=True)
    names = dict(zip(listed["run"], listed["name"], strict=True))
    chosen = st.selectbox("Curves of run", listed["run"], key=KEY_RUN, format_func=names.get)
    history = runs.read_history(listed.set_index("run").loc[chosen, "path"])
    if history:
        st.plotly_chart(charts.training_curves([], history), key=KEY_RUN_CHART)
    else:
        st.caption("This run has no finished epoch yet.")
    manage_runs(listed)


def _act_on_run(action: str, paths: dict) -> None:
    """A Rename or Delete click, before the page redraws (so the lists above show the change): on the run chosen
    now (the box may have changed with the click), checked against the session's rights, the outcome kept for the
    page to show."""
    path = paths.get(st.session_state.get(KEY_MANAGE_RUN))
    if path is None or not public_runs.may_manage_run(profile, path, owner):
        st.session_state[KEY_RUN_NOTICE] = ("error", "You can rename or delete only your own runs.")
        return
    try:
        if action == "rename":
            title = runs.rename_run(path, st.session_state.get(KEY_NEW_NAME, ""))
            st.session_state[KEY_RUN_NOTICE] = ("success", f"Renamed to {title!r}.")
        else:
            runs.delete_run(path)
            st.session_state[KEY_CONFIRM_DELETE] = False
            st.session_state[KEY_RUN_NOTICE] = ("success", "Run deleted.")
    except UserError as error:
        st.session_state[KEY_RUN_NOTICE] = ("error", access.public_text(str(error), profile))


def manage_runs(listed) -> None:
    """Rename or delete one of the runs this session may touch (all in the workbench, its own in public)."""
    mine = listed[[public_runs.may_manage_run(profile, path, owner) for path in listed["path"]]]
    if mine.empty:
        return
    with st.expander("Rename or delete a run", expanded=KEY_RUN_NOTICE in st.session_state):
        names = dict(zip(mine["run"], mine["name"], strict=True))
        st.selectbox("Run", list(names), key=KEY_MANAGE_RUN, format_func=names.get)
        paths = dict(zip(mine["run"], mine["path"], strict=True))
        left, middle, right = st.columns([3, 1, 2])
        left.text_input("New name", key=KEY_NEW_NAME, max_chars=runs.MAX_TITLE)
        middle.button("Rename", key=KEY_RENAME, on_click=_act_on_run, args=("rename", paths))
        confirmed = right.checkbox("Delete it for good", key=KEY_CONFIRM_DELETE)
        right.button("Delete", key=KEY_DELETE, disabled=not confirmed, on_click=_act_on_run, args=("delete", paths))
        if (notice := st.session_state.pop(KEY_RUN_NOTICE, None)) is not None:
            getattr(st, notice[0])(notice[1])


# Streamlit runs a page as "__main__"; a test imports it for its keys without running it.
if __name__ == "__main__":
    profile = start_page()
    owner = session_owner()
    keep(KEY_KIND, KEY_ARCH, KEY_IMG_SIZE, KEY_EPOCHS, KEY_BATCH, KEY_LR, KEY_AGE_LOSS, KEY_AGE_HEAD, KEY_AUGMENT,
         *KEY_WEIGHTS.values(), KEY_LIMIT, KEY_FREEZE, KEY_START_FROM)  # the form, as last submitted
    limits = policy.public_training_limits()

    st.title("Train")
    if (environment := workers.training_environment()) is not None:
        draw_environment(environment)
    else:
        environment_pending()
    if (cfg := training_form()) is not None:
        start(cfg)
    if (job := jobs.current_job()) is not None:
        job_ui(job)
    runs_ui()
