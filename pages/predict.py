"""Predict: upload photos, take one or stream the webcam (the Live tab, pages/live_camera.py); every face found gets
an age (± how unsure), a gender and a race, with the model's probabilities. Bounded for a shared server: a few
photos per upload and analysed at once (core/images.py, core/slots.py); the session keeps face crops and previews."""

from __future__ import annotations

import dataclasses

import streamlit as st

from core import access, charts, images, slots
from core.faces import DetectorError
from core.images import EXTENSIONS, ImageError
from core.predict import Analysis, FaceResult, analyze_bytes
from pages import common
from pages.common import KEY_LAST_ANALYSES, enter_through_router, model_picker, predictor_for, session_profile
from pages.live_camera import tabs_with_live

enter_through_router()
profile = session_profile()

KEY_MODEL, KEY_FILES, KEY_CAMERA = "predict.model", "predict.files", "predict.camera"
KEY_SMALL_FACES = "predict.small_faces"
KEY_WHOLE_IMAGE = "predict.whole_image"  # one per upload: f"{KEY_WHOLE_IMAGE}.{index}"
CROP_PX = 128


def options_ui():
    """The chosen model's entry (None when there is none) and whether to search close-ups for small faces."""
    model_col, option_col = st.columns([2, 1])
    with model_col:
        entries = model_picker(KEY_MODEL)
    small_faces = option_col.toggle("Search close-ups for small faces too", key=KEY_SMALL_FACES,
                                    help="Group photos are always searched tile by tile; close-ups skip it "
                                         "to stay fast. Turn this on for faces far behind the subject.")
    return (entries[0] if entries else None), small_faces


def photos_ui(upload_tab, camera_tab) -> list[tuple[str, bytes]]:
    """(name, bytes) of every photo uploaded in the one tab, then the shot taken in the other if any."""
    files = upload_tab.file_uploader("Photos", type=list(EXTENSIONS), accept_multiple_files=True, key=KEY_FILES)
    files, note = images.limit_uploads(files or [])
    if note:
        upload_tab.info(note)
    shot = camera_tab.camera_input("Camera", key=KEY_CAMERA)
    photos = [(file.name, file.getvalue()) for file in files]
    return photos + ([("camera photo", shot.getvalue())] if shot else [])


def analyze(index: int, name: str, data: bytes, predictor, small_faces: bool) -> Analysis | None:
    """Faces and predictions for one photo (holding one of the server's photo slots); None (after an st.error, or
    a warning when the server is busy) for a file that is not a usable photo."""
    try:
        with slots.photo_analysis_slot():
            analysis = analyze_bytes(data, predictor, tiles="always" if small_faces else None)
        if analysis.faces:
            return _shrunk(analysis)
        # Face crops never get here (analyze_bytes takes them whole): this is a photo, so guessing is the user's call
        st.info(f"No face found in **{name}**. If the photo is already a face crop, the whole image can be used.")
        if st.toggle("Treat the whole image as one face", key=f"{KEY_WHOLE_IMAGE}.{index}"):
            with slots.photo_analysis_slot():
                return _shrunk(analyze_bytes(data, predictor, whole_image=True))
    except slots.Busy as busy:
        st.warning(f"**{name}**: {busy}")
    except (ImageError, DetectorError) as error:
        st.error(f"**{name}**: {access.public_text(str(error), profile)}")
    return None


def _shrunk(analysis: Analysis, side: int = images.DISPLAY_MAX_SIDE) -> Analysis:
    """The analysis with its photo cut to `side` (boxes refer to `full_size`); the session keeps a preview."""
    return dataclasses.replace(analysis, image=images.shrink_for_display(analysis.image, side))


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


def draw_analysis(index: int, name: str, analysis: Analysis) -> None:
    st.subheader(name)
    count = len(analysis.faces)
    what = "the whole image, as one face" if analysis.whole_image else f"{count} face{'s' * (count != 1)} found"
    if analysis.note:
        st.caption(f"The whole image was {analysis.note}.")
    st.image(analysis.annotated(), caption=f"{analysis.full_size[0]}×{analysis.full_size[1]} · {what}")
    for result in analysis.faces:
        draw_face(index, result)


st.title("Predict")
st.caption("Age, gender and race for every face in your photos. Nothing you upload is stored: photos are "
           "analysed in memory. The model's labels are UTKFace's categories and carry its biases.")
entry, small_faces = options_ui()
photos = photos_ui(*tabs_with_live(entry, profile))  # the Live tab streams on its own
if entry is not None and photos:
    with common.user_errors():
        predictor = predictor_for(entry)
    analyses = []
    for index, (name, data) in enumerate(photos):
        analysis = analyze(index, name, data, predictor, small_faces)
        if analysis is not None:
            draw_analysis(index, name, analysis)
            analyses.append(_shrunk(analysis, images.SESSION_PREVIEW_SIDE))
    if analyses:
        st.session_state[KEY_LAST_ANALYSES] = analyses
        st.page_link("pages/saliency.py", label="Explain these faces on the Saliency page", icon="🔥")
