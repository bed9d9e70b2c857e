"""Predict: upload photos (or a zip of them), try an example, take one or stream the webcam (the Live tab,
pages/live_camera.py); every face found gets an age (± how unsure), a gender and a race, with the model's
probabilities, and the results can be downloaded. Bounded for a shared server: a few photos per upload and
analysed at once (core/images.py, core/slots.py); the session remembers each photo's results by its content
(core/results.py), so a click elsewhere shows them again without analysing. The pieces: pages/predict_views.py."""

from __future__ import annotations

import streamlit as st

from core import results
from pages import common
from pages.common import KEY_LAST_ANALYSES, model_picker, predictor_for, start_page
from pages.live_camera import tabs_with_live
from pages.predict_views import analyze, draw_analysis, draw_summary, photos_ui

KEY_MODEL = "predict.model"
KEY_SMALL_FACES = "predict.small_faces"


def options_ui():
    """The chosen model's entry (None when there is none) and whether to search close-ups for small faces."""
    model_col, option_col = st.columns([2, 1])
    with model_col:
        entries = model_picker(KEY_MODEL)
    small_faces = option_col.toggle("Search close-ups for small faces too", key=KEY_SMALL_FACES,
                                    help="Group photos are always searched tile by tile; close-ups skip it "
                                         "to stay fast. Turn this on for faces far behind the subject.")
    return (entries[0] if entries else None), small_faces


# Streamlit runs a page as "__main__"; a test imports it for its keys without running it.
if __name__ == "__main__":
    profile = start_page()

    st.title("Predict")
    st.caption("Age, gender and race for every face in your photos. Nothing you upload is stored: photos are "
               "analysed in memory. The model's labels are UTKFace's categories and carry its biases.")
    entry, small_faces = options_ui()
    photos = photos_ui(*tabs_with_live(entry, profile))  # the Live tab streams on its own
    if entry is not None and photos:
        with common.user_errors():
            predictor = predictor_for(entry)
        outcomes = []
        for index, (name, data) in enumerate(photos):
            analysis, problem, key = analyze(index, name, data, predictor, entry, small_faces, profile)
            if analysis is not None:
                draw_analysis(index, name, analysis, key)
            outcomes.append((name, analysis, problem))
        draw_summary(outcomes)
        if analyses := [results.shrink(a, preview=True) for _, a, _ in outcomes if a is not None]:
            st.session_state[KEY_LAST_ANALYSES] = analyses
            st.page_link("pages/saliency.py", label="Explain these faces on the Saliency page", icon="🔥")
