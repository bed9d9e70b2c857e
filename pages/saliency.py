"""Saliency: which parts of a face drive each prediction (gradients, Grad-CAM, Grad-CAM++, Score-CAM).

The maps are computed by the saliency worker (core/workers.py), a child process that keeps the Keras models
loaded: this page, like the whole server, never imports TensorFlow. Its predictor is used only to cut faces."""

import pandas as pd
import streamlit as st

from core import browse, saliency, saliency_faces, saliency_figures, settings, slots, workers
from core.images import EXTENSIONS
from core.pipeline import decode_resize
from pages.common import (
    KEY_LAST_ANALYSES,
    keep,
    model_picker,
    predictor_for,
    start_page,
    user_errors,
)

KEY_MODEL = "saliency.model"
KEY_SOURCE = "saliency.source"
KEY_SAMPLE = "saliency.sample"
KEY_UPLOAD = "saliency.upload"
KEY_FACE = "saliency.face"
KEY_HEADS = "saliency.heads"
KEY_RACE = "saliency.race"
KEY_METHODS = "saliency.methods"
KEY_ALPHA = "saliency.alpha"
KEY_LAYER = "saliency.layer"
KEY_MAX_N = "saliency.max_n"
KEY_RUN = "saliency.run"
KEY_RESULT = "saliency.result"
KEY_DOWNLOAD = "saliency.download"
SAMPLE, UPLOAD, LAST = "Sample face", "Upload", "Last prediction"
PREDICTED, AUTOMATIC = "predicted class", "automatic"
WORKER_SPINNER = "Loading the model for saliency…"  # the worker's first request starts TensorFlow (seconds)


def image_ui(predictor) -> tuple[object, str] | None:
    """(crop, caption) of the face to explain, or None when there is none yet."""
    sources = [SAMPLE, UPLOAD] + ([LAST] if st.session_state.get(KEY_LAST_ANALYSES) is not None else [])
    source = st.radio("Face", sources, horizontal=True, key=KEY_SOURCE)
    if source == SAMPLE:
        labels = browse.sample_faces(settings.SAMPLE_DIR)
        path = st.selectbox("Sample face (labels from UTKFace)", list(labels), format_func=labels.get, key=KEY_SAMPLE)
        return decode_resize(path, predictor.img_size), f"labelled {labels[path].split(' — ')[0]}"
    if source == UPLOAD:
        upload = st.file_uploader("Photo", type=list(EXTENSIONS), key=KEY_UPLOAD)
        if upload is None:
            return None
        with slots.photo_analysis_slot():  # decoding and detection: one of the server's few photo slots
            crop, note = saliency_faces.face_crop_from_bytes(upload.getvalue(), predictor)
        if note:
            st.info(note)
        return crop, upload.name
    crops = saliency_faces.face_crops(st.session_state[KEY_LAST_ANALYSES])
    number = st.selectbox("Face number", range(1, len(crops) + 1), key=KEY_FACE) if len(crops) > 1 else 1
    return (crops[number - 1], f"face {number} of the Predict page's last photos") if crops else None


def options_ui(model_path: str, space) -> dict:
    """The map settings; the heads and races offered are the model's own (its label space, from its outputs)."""
    left, middle, right = st.columns(3)
    heads = left.multiselect("Heads", saliency.heads_for(space), default=["gender"], key=KEY_HEADS)
    with st.spinner(WORKER_SPINNER):
        layers = workers.cam_layers(model_path, heads)
    race = left.selectbox("Race class to explain", [PREDICTED, *(space.races or ())], key=KEY_RACE,
                          disabled="race" not in heads)
    methods = middle.multiselect("Methods", saliency.METHODS, default=["saliency", "gradcam"], key=KEY_METHODS,
                                 format_func=saliency.METHOD_LABELS.get)
    alpha = right.slider("Heatmap opacity", 0.0, 1.0, saliency_figures.DEFAULT_ALPHA, 0.05, key=KEY_ALPHA)
    with right.expander("CAM settings"):
        layer = st.selectbox("Feature map", [AUTOMATIC, *layers], key=KEY_LAYER,
                             help="Automatic: the deepest one on each head's own path with at least 4×4 cells.")
        max_n = st.number_input("Score-CAM channels (0 = all: slow)", 0, 4096, saliency.SCORECAM_MAX_N, key=KEY_MAX_N)
    return {"heads": heads, "methods": methods, "alpha": alpha, "race_class": None if race == PREDICTED else race,
            "layer": None if layer == AUTOMATIC else layer, "max_n": int(max_n) or None}


def compute(model_path: str, crop, options: dict) -> dict:
    """Every (head, method) map, one worker request each, with a progress bar: Score-CAM runs the model once per
    channel."""
    prediction = workers.predict(model_path, crop)
    pairs = [(head, method) for head in options["heads"] for method in options["methods"]]
    bar, maps = st.progress(0.0), []
    for done, (head, method) in enumerate(pairs):
        bar.progress(done / len(pairs), text=f"{saliency.METHOD_LABELS[method]} for {head} ({done + 1}/{len(pairs)})")
        maps += workers.explain(model_path, crop, [head], [method], options["race_class"], options["layer"],
                                options["max_n"])["maps"]
    bar.empty()
    return {"maps": maps, "prediction": prediction}


def draw(crop, result: dict, alpha: float) -> None:
    png = saliency_figures.figure_png(saliency_figures.figure(crop, result["maps"], result["prediction"], alpha))
    st.image(png, caption=saliency_figures.prediction_text(result["prediction"])
             + " (one pass; Predict averages shifted cuts and mirror images)")
    st.dataframe(pd.DataFrame([m.as_row() for m in result["maps"]]), hide_index=True)
    st.download_button("Download the figure (PNG)", png, file_name="saliency.png", mime="image/png", key=KEY_DOWNLOAD)


# Streamlit runs a page as "__main__"; a test imports it for its keys without running it.
if __name__ == "__main__":
    start_page()
    keep(KEY_HEADS, KEY_METHODS, KEY_RACE, KEY_ALPHA, KEY_MAX_N)  # kept while the face source has no face yet

    st.title("Saliency")
    st.caption("Which pixels drive each prediction. Gradient maps show where a small change moves the score most; "
               "CAMs show which regions the network's features respond to. Neither proves *why* a model decides.")
    entries = model_picker(KEY_MODEL)
    if not entries:
        st.stop()
    with user_errors():
        model_path, mtime = str(entries[0].path), entries[0].version
        predictor = predictor_for(entries[0])  # for its input size and the Predict page's face cutting only
        chosen = image_ui(predictor)
        if chosen is None:
            st.stop()
        crop, caption = chosen
        st.image(crop, caption=caption, width=160)
        options = options_ui(model_path, predictor.space)
        signature = (model_path, mtime, hash(crop.tobytes()),
                     *(str(options[k]) for k in ("heads", "methods", "race_class", "layer", "max_n")))
        if st.button("Explain", type="primary", key=KEY_RUN, disabled=not (options["heads"] and options["methods"])):
            st.session_state[KEY_RESULT] = {"signature": signature, **compute(model_path, crop, options)}
        result = st.session_state.get(KEY_RESULT)
        if result and result["signature"] == signature:
            draw(crop, result, options["alpha"])
        elif options["heads"] and options["methods"]:
            st.info("Press **Explain** to compute the maps.")
