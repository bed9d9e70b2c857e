"""UI pieces shared by several pages (not a page itself: the router never lists it).

Models are loaded once per server process and file version: `st.cache_resource` keyed by path and mtime, so
every session shares one copy and a retrained run is picked up on its next save. The server predicts with each
model's TFLite file under LiteRT and never imports TensorFlow: a missing or outdated .tflite is exported by a child
process first (core/export.py `ensure_tflite`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import streamlit as st

from core import access, housekeeping, public_runs, slots
from core.errors import UserError
from core.registry import ModelEntry, ModelError, all_models, file_version

# The Predict page's analyses of its last photos (in this session's memory only), offered to Saliency to explain
KEY_LAST_ANALYSES = "predict.last_analysis"
KEY_ROUTED = "router.rerouted"  # this session has already been rerun through the router once
KEY_OWNER = "session.owner"  # this session's id: the owner of the training jobs and runs it starts
KEY_DATA_FOLDER = "session.data_folder"  # the dataset folder last typed on Explore, Train or Evaluate
KEY_KEPT = "session.kept"  # the widget keys whose choices this session keeps across pages (see keep)


def start_page() -> access.Profile:
    """What every page does first: enter through the router, sweep a fresh server's leftovers once (crash
    leftovers, interrupted runs, the cache cap; whichever page a server's first visitor opens), and bind this
    session's profile for the script run (core.access reads it). Returns the profile."""
    enter_through_router()
    housekeeping.startup_once()
    return session_profile()


def session_profile() -> access.Profile:
    """This session's profile (core/access.py), bound for the script run."""
    return access.bind_profile(access.session_profile(st.secrets, st.context.ip_address, st.context.headers))


@contextlib.contextmanager
def user_errors(page: str | None = None) -> Iterator[None]:
    """The one place a page turns an error into what a visitor sees, then stops the script run: a UserError as its
    message (a warning when the server is only busy), in words the session's profile may show. With `page`, any
    other error too, as a reference id for the visitor while its traceback goes to the server log; without, a bug
    keeps Streamlit's own traceback."""
    profile = access.current_profile()
    try:
        yield
    except slots.Busy as busy:
        st.warning(str(busy))
        st.stop()
    except UserError as error:
        st.error(access.public_text(str(error), profile))
        st.stop()
    except Exception as error:
        if page is None:
            raise
        st.error(access.unexpected_error(error, profile, page))
        st.stop()


def session_owner() -> str:
    """This browser session's id, made on its first use: public jobs and runs belong to it."""
    return st.session_state.setdefault(KEY_OWNER, uuid4().hex)


def owned_runs(run_dirs, owner: str) -> set[str]:
    """The names of the runs among `run_dirs` (paths) that `owner`'s public jobs wrote."""
    return {Path(run).name for run in run_dirs if public_runs.run_owner(run) == owner}


def visible_models(entries: list[ModelEntry], profile: access.Profile, owner: str) -> list[ModelEntry]:
    """The models this session may pick: all in the workbench; in public the shipped ones, the operator's own runs
    and this session's public runs, never another visitor's."""
    if not profile.public:
        return list(entries)
    runs = [entry for entry in entries if entry.source == "run"]
    public_names = {entry.name for entry in runs if public_runs.run_owner(entry.path.parent) is not None}
    shown = set(public_runs.visible_runs(public_names, profile, owned_runs([e.path.parent for e in runs], owner)))
    return [entry for entry in entries if entry.source != "run" or entry.name not in public_names
            or entry.name in shown]


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _load_predictor(tflite_path: str, mtime_ns: int):
    from core.predict import Predictor
    return Predictor(tflite_path)


def predictor_for(entry: ModelEntry):
    """A cached LiteRT Predictor for a model entry, its .tflite exported first when needed; raises ModelError
    (ExportError is one) with a readable message, in words the session's profile may show."""
    try:
        return _predictor_for(entry)
    except ModelError as error:
        raise ModelError(access.public_text(str(error), access.current_profile())) from error


def _predictor_for(entry: ModelEntry):
    from core.export import ensure_tflite, tflite_is_current
    if not Path(entry.path).is_file():
        raise ModelError(f"Model file {entry.path} is gone.")
    if tflite_is_current(entry.path):
        tflite = ensure_tflite(entry.path)
    else:
        with st.spinner("Preparing the model for fast inference…"):  # a TensorFlow child process, once per model
            tflite = ensure_tflite(entry.path)
    return _load_predictor(str(tflite), file_version(tflite))


def model_picker(key: str, label: str = "Model", multiple: bool = False) -> list[ModelEntry]:
    """Select box (or multiselect) over shipped models and finished training runs. Returns the chosen entries
    (empty when none exist, after telling the user why)."""
    profile = access.current_profile()
    entries, warnings = all_models()
    entries = visible_models(entries, profile, session_owner())
    for warning in warnings if not profile.public else ():  # in public: about runs a visitor may not see
        st.warning(access.public_text(warning, profile))
    if not entries:
        st.warning("No model yet: the shipped model is missing and no training run has finished. "
                   "Train one on the Train page.")
        return []
    by_label = {entry.label: entry for entry in entries}
    if multiple:
        chosen = st.multiselect(label, list(by_label), default=list(by_label)[:1], key=key)
        return [by_label[name] for name in chosen]
    return [by_label[st.selectbox(label, list(by_label), key=key)]]


def keep(*keys: str) -> None:
    """Keep these widgets' choices for the session, across pages. Streamlit forgets a widget's value once a script
    run does not draw it (another page, or an early st.stop on this one); the router's keep_choices hands each
    kept value back first. Only for widgets whose options do not change under them."""
    st.session_state.setdefault(KEY_KEPT, set()).update(keys)


def keep_choices() -> None:
    """Every kept value set again before a page draws its widgets, which Streamlit then keeps as the session's
    own (its documented way to carry a widget's value across pages). enter_through_router calls it."""
    for key in st.session_state.get(KEY_KEPT, ()):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def folder_box(container, label: str, key: str, default: str, **kwargs) -> str:
    """A page's dataset-folder box, sharing one folder across Explore, Train and Evaluate: arriving on a page, its
    box shows the folder last typed on any of them."""
    if key not in st.session_state and KEY_DATA_FOLDER in st.session_state:
        st.session_state[key] = st.session_state[KEY_DATA_FOLDER]
    folder = container.text_input(label, value=default, key=key, **kwargs)
    st.session_state[KEY_DATA_FOLDER] = folder
    return folder


def enter_through_router() -> None:
    """Call first on every page. When a fresh server's first visitor opens a page's own address (/explore),
    Streamlit runs that file directly in its legacy `pages/` mode: the sidebar lists every file in pages/ (this one
    too) and the router's wide layout and titles are lost, until someone opens the home page. Leave legacy mode
    for the whole server and rerun through the router, which keeps the page that was asked for. Only on a
    session's first run: a later rerun would drop the click that caused it (AppTest re-enters legacy mode on
    every run, where the old behaviour is harmless). Also hands back the choices kept across pages (`keep`)."""
    from streamlit.runtime.pages_manager import PagesManager  # no public switch exists for this
    keep_choices()
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        if not st.session_state.get(KEY_ROUTED):
            st.session_state[KEY_ROUTED] = True
            st.rerun()
