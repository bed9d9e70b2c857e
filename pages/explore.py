"""Explore: pick a dataset folder, see its counts and label distributions, browse filtered faces, list skipped files.
A public server offers its own datasets in a list instead of a folder box (core/access.py)."""

from __future__ import annotations

import streamlit as st

from core import access, charts, settings
from core.browse import (
    GENDER_NAMES,
    MAX_AGE,
    SORTS,
    face_details,
    filter_table,
    gender_names,
    page_count,
    page_of,
    race_names,
    race_order,
    short_labels,
    sort_table,
    thumbnail_jpeg,
)
from core.datasets import AUTO_KIND, KIND_LABEL, KINDS, kind_title, load_dataset
from pages.common import folder_box, keep, start_page, user_errors

KEY_KIND = "explore.kind"
KEY_FOLDER = "explore.folder"
KEY_DATASET = "explore.dataset"  # the public profile's dataset list, in place of the folder box
KEY_COLOR_BY = "explore.color_by"
KEY_AGE = "explore.age"
KEY_GENDERS = "explore.genders"
KEY_RACES = "explore.races"
KEY_PAGE = "explore.page"
KEY_SORT = "explore.sort"
KEY_ENLARGE = "explore.enlarge"
KEY_ENLARGED = "explore.enlarged"  # the face picked to enlarge, until its dialog has opened
PER_PAGE = 40
THUMB_PX = 100
ENLARGED_PX = 320


def dataset_ui() -> tuple[str | None, str]:
    kind_col, folder_col = st.columns([1, 4])
    kind = kind_col.selectbox(KIND_LABEL, (AUTO_KIND, *KINDS), key=KEY_KIND, format_func=kind_title)
    if profile.public:
        choices = access.dataset_choices(profile)
        if not choices:
            st.error("This server offers no dataset to explore.")
            st.stop()
        label = folder_col.selectbox("Dataset", list(choices), key=KEY_DATASET,
                                     help="This server offers these datasets; its operator can add others.")
        return (None if kind == AUTO_KIND else kind), str(choices[label])
    folder = folder_box(folder_col, "Dataset folder", KEY_FOLDER, str(settings.data_dir()),
                                   help="Defaults to $FACE_DATA_DIR, else the bundled 300-image UTKFace sample.")
    return (None if kind == AUTO_KIND else kind), folder


# Figures, not data: st.cache_resource shares them read-only, where st.cache_data would unpickle each Plotly
# figure (~60 ms apiece) on every rerun. Keyed by folder + signature (its modification state), not by the table.
@st.cache_resource(show_spinner=False, max_entries=16)
def _figures(_dataset, kind: str, folder: str, signature: int, color_by: str) -> list:
    table = _dataset.table
    return [charts.age_histogram(table, color_by), charts.gender_bar(table), charts.race_bar(table),
            charts.age_race_heatmap(table)]


@st.cache_data(show_spinner=False, max_entries=4000)
def _thumbnail(path: str, signature: int) -> bytes:
    return thumbnail_jpeg(path, THUMB_PX)


def draw_counts(dataset) -> None:
    table = dataset.table
    genders = gender_names(table).value_counts()
    counts = {"Images": len(table), "Problems": len(dataset.problems),
              **{name.capitalize(): genders[name] for name in GENDER_NAMES if name in genders}}
    for column, (label, value) in zip(st.columns(len(counts)), counts.items(), strict=True):
        column.metric(label, f"{value:,}")
    races = race_names(table).value_counts()
    for column, race in zip(st.columns(len(races)), race_order(races.index), strict=True):
        column.metric(race, f"{races[race]:,}")


def draw_charts(dataset) -> None:
    color_by = st.radio("Colour the age chart by", charts.COLOR_BY, horizontal=True, key=KEY_COLOR_BY)
    age, gender, race, heatmap = _figures(dataset, dataset.kind, str(dataset.folder), dataset.signature, color_by)
    st.plotly_chart(age)
    left, middle, right = st.columns([1, 1, 2])
    left.plotly_chart(gender)
    middle.plotly_chart(race)
    right.plotly_chart(heatmap)


def filters_ui(table) -> tuple[tuple[int, int] | None, list[str], list[str]]:
    age_col, gender_col, race_col = st.columns(3)
    ages = age_col.slider("Age (years)", 0, MAX_AGE, (0, MAX_AGE), key=KEY_AGE,
                          help="A face labelled with an age range only (FairFace, Adience) is shown when its "
                               "range meets this one.")
    genders = gender_col.multiselect("Gender", GENDER_NAMES, key=KEY_GENDERS, placeholder="All genders")
    races = race_col.multiselect("Race", race_order(race_names(table)), key=KEY_RACES, placeholder="All races")
    return (None if ages == (0, MAX_AGE) else ages), genders, races


def _picked(key: str) -> None:
    """The face just picked: kept for its dialog, and the picker emptied so the same face can be picked again."""
    st.session_state[KEY_ENLARGED] = st.session_state[key]
    st.session_state[key] = None


@st.dialog("Face", width="medium")
def enlarged(row) -> None:
    st.image(thumbnail_jpeg(row["path"], ENLARGED_PX), width=ENLARGED_PX)
    st.markdown(face_details(row))


def draw_grid(rows, signature: int) -> None:
    count_col, sort_col, enlarge_col = st.columns([1, 1, 2])
    count_col.metric("Images matching the filters", f"{len(rows):,}")
    if rows.empty:
        st.info("No image matches these filters.")
        return
    rows = sort_table(rows, sort_col.selectbox("Sort by", SORTS, key=KEY_SORT))
    page = st.pagination(page_count(len(rows), PER_PAGE), key=KEY_PAGE)
    shown = page_of(rows, page, PER_PAGE)
    labels = {f"{i}. {label}": i for i, label in enumerate(short_labels(shown), start=1)}
    enlarge_col.selectbox("Enlarge a face", list(labels), index=None, key=KEY_ENLARGE, on_change=_picked,
                          args=(KEY_ENLARGE,), placeholder="Pick one by its number on this page")
    if (picked := st.session_state.pop(KEY_ENLARGED, None)) in labels:
        enlarged(shown.iloc[labels[picked] - 1])
    st.image([_thumbnail(path, signature) for path in shown["path"]], caption=list(labels), width=THUMB_PX)
    # Built on click, with paths as this profile may show them (public: relative to the dataset folder)
    st.download_button("Download the filtered table (CSV)",
                       lambda: access.shown_table(rows, profile).to_csv(index=False).encode(),
                       file_name="faces_filtered.csv", mime="text/csv")


# Streamlit runs a page as "__main__"; a test imports it for its keys without running it.
if __name__ == "__main__":
    profile = start_page()
    keep(KEY_KIND)

    st.title("Explore a dataset")
    kind, folder = dataset_ui()
    with user_errors("Explore"):
        dataset = load_dataset(kind, folder, profile)
        draw_counts(dataset)
        charts_slot = st.container()  # filled last: the counts and faces show while the figures are built
        st.subheader("Browse faces")
        draw_grid(filter_table(dataset.table, *filters_ui(dataset.table)), dataset.signature)
        with charts_slot:
            draw_charts(dataset)
        with st.expander(f"Skipped files ({len(dataset.problems):,})", expanded=False):
            st.dataframe(dataset.problems_table(), hide_index=True)
