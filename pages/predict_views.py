"""The Predict page's pieces (not a page: the router never lists it): where photos come from (uploads, zips,
camera, examples), one photo's analysis with the session's memory of it, and the results drawn with their
downloads. Logic lives in core (core/uploads.py, core/results.py); these functions draw and return."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import streamlit as st

from core import access, charts, images, predict, results, settings, slots, uploads
from core.faces import DetectorError
from core.images import EXTENSIONS, ImageError
from core.predict import Analysis, FaceResult

KEY_FILES, KEY_CAMERA, KEY_EXAMPLE = "predict.files", "predict.camera", "predict.example"
KEY_WHOLE_IMAGE = "predict.whole_image"  # one per upload: f"{KEY_WHOLE_IMAGE}.{index}"
KEY_REMEMBERED = "predict.remembered"  # this session's analyses by photo content (core/results.py)
KEY_DOWNLOAD = "predict.download"
CROP_PX = 128


def examples() -> dict[str, Path]:
    """Example photo label ("Two friends") → its file in data/examples (made from the sample)."""
    return {path.stem.replace("_", " ").capitalize(): path for path in sorted(settings.EXAMPLES_DIR.glob("*.jpg"))}


def photos_ui(upload_tab, camera_tab) -> list[tuple[str, bytes]]:
    """(name, bytes) of every photo uploaded (zips opened), the example chosen, then the camera's shot."""
    limit_mb = st.get_option("server.maxUploadSize")
    files = upload_tab.file_uploader("Photos", type=[*EXTENSIONS, "zip"], accept_multiple_files=True, key=KEY_FILES)
    upload_tab.caption(f"JPEG, PNG, WebP, BMP or HEIC, or a zip of them: up to {limit_mb} MB per file (the browser "
                       f"refuses a bigger one) and {images.MAX_FILES_PER_UPLOAD} photos at a time.")
    shown = examples()
    example = upload_tab.pills("Or try an example", list(shown), key=KEY_EXAMPLE)
    photos, notes = uploads.expand([(file.name, file.getvalue()) for file in files or []])
    if example in shown:
        photos.append((shown[example].name, shown[example].read_bytes()))
    photos, note = images.limit_uploads(photos)
    for text in [*notes, *([note] if note else [])]:
        upload_tab.info(text)
    shot = camera_tab.camera_input("Camera", key=KEY_CAMERA)
    return photos + ([("camera photo", shot.getvalue())] if shot else [])


def _remembered() -> OrderedDict:
    return st.session_state.setdefault(KEY_REMEMBERED, OrderedDict())


def _analysed(name: str, data: bytes, predictor, entry, tiles: str | None, whole_image: bool):
    """(analysis, its key) from this session's memory, else made now (with a spinner, holding a photo slot)."""
    key = results.photo_key(data, str(entry.path), entry.version, tiles, whole_image)
    if (known := results.recall(_remembered(), key, data)) is not None:
        return known, key
    with st.spinner(f"Analysing {name}…"), slots.photo_analysis_slot():
        analysis = predict.analyze_bytes(data, predictor, tiles=tiles, whole_image=whole_image)
    analysis = results.shrink(analysis)
    results.remember(_remembered(), key, analysis)
    return analysis, key


def analyze(index: int, name: str, data: bytes, predictor, entry, small_faces: bool, profile):
    """(analysis or None, what went wrong, the analysis's key) for one photo; a file that is no usable photo gets
    its message shown (a warning when the server is busy) and None."""
    try:
        analysis, key = _analysed(name, data, predictor, entry, "always" if small_faces else None, False)
        if analysis.faces:
            return analysis, "", key
        # Face crops never get here (analyze_bytes takes them whole): this is a photo, so guessing is the user's call
        st.info(f"No face found in **{name}**. If the photo is already a face crop, the whole image can be used.")
        if st.toggle("Treat the whole image as one face", key=f"{KEY_WHOLE_IMAGE}.{index}"):
            whole, whole_key = _analysed(name, data, predictor, entry, None, True)
            return whole, "", whole_key
        return None, "no face found", key
    except slots.Busy as busy:
        st.warning(f"**{name}**: {busy}")
        return None, str(busy), ""
    except (ImageError, DetectorError) as error:
        message = access.public_text(str(error), profile)
        st.error(f"**{name}**: {message}")
        return None, message, ""


def draw_face(index: int, result: FaceResult) -> None:
    p = result.prediction
    crop_col, text_col, gender_col, race_col = st.columns([1, 1.3, 2, 3])
    crop_col.image(result.crop, caption="as the model saw it", width=CROP_PX)
    text_col.markdown(f"#### Face {result.number}\n**{p.age_text}**\n\n"  # in the model's own label space
                      f"{p.gender} ({p.gender_prob:.0%})  \n{p.race_text}")
    if result.face.score is not None:
        text_col.caption(f"detector score {result.face.score:.2f}")
    gender_col.plotly_chart(charts.predict_gender_bars(p.female_prob), key=f"predict.gender.{index}.{result.number}")
    draw_space_bars(race_col, index, result)


def draw_space_bars(column, index: int, result: FaceResult) -> None:
    """The race bars, and a group-head model's age-group bars: whatever the model's label space has."""
    p = result.prediction
    if p.age_group_probs:
        column.plotly_chart(charts.predict_age_group_bars(p.age_group_probs),
                            key=f"predict.age_group.{index}.{result.number}")
    if p.race_probs:
        column.plotly_chart(charts.predict_race_bars(p.race_probs), key=f"predict.race.{index}.{result.number}")


# Encoding a 1600 px annotated photo as PNG takes 0.2–0.6 s: once per photo, not on every rerun. Keyed by the
# photo's analysis key (its content hash), so only the same photo's session finds it; kept for minutes only.
@st.cache_data(show_spinner=False, max_entries=8, ttl=300)
def _annotated_png(key: str, _analysis: Analysis) -> bytes:
    return results.annotated_png(_analysis)


def draw_analysis(index: int, name: str, analysis: Analysis, key: str) -> None:
    st.subheader(name)
    count = len(analysis.faces)
    what = "the whole image, as one face" if analysis.whole_image else f"{count} face{'s' * (count != 1)} found"
    if analysis.note:
        st.caption(f"The whole image was {analysis.note}.")
    st.image(analysis.annotated(), caption=f"{analysis.full_size[0]}×{analysis.full_size[1]} · {what}")
    st.download_button("Annotated photo (PNG)", _annotated_png(key, analysis), f"{Path(name).stem}_faces.png",
                       "image/png", key=f"{KEY_DOWNLOAD}.png.{index}", on_click="ignore")
    for result in analysis.faces:
        draw_face(index, result)


def draw_summary(outcomes: list[tuple[str, Analysis | None, str]]) -> None:
    """For several photos: one table of them all, and every face's results to download."""
    found = [(name, analysis) for name, analysis, _ in outcomes if analysis is not None]
    if len(outcomes) > 1:
        st.dataframe(results.summary_table(outcomes), hide_index=True, key=f"{KEY_DOWNLOAD}.summary")
    if found:
        csv_col, json_col, _ = st.columns([1, 1, 3])
        csv_col.download_button("All results (CSV)", results.results_csv(found), "faces.csv", "text/csv",
                                key=f"{KEY_DOWNLOAD}.csv", on_click="ignore")
        json_col.download_button("All results (JSON)", results.results_json(found), "faces.json",
                                 "application/json", key=f"{KEY_DOWNLOAD}.json", on_click="ignore")
