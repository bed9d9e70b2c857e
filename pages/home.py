"""Home: what the app does, where to start, what data and model it ships with and under which licenses.
Reads only small files (no TensorFlow), so it paints at once."""

from __future__ import annotations

import streamlit as st

from core import settings
from core.registry import default_model
from pages.common import start_page

profile = start_page()

# (page file, label, icon, what it is for): the files must match the router's pages in streamlit_app.py
PAGES = (
    ("pages/explore.py", "Explore", "🔎", "browse a face dataset: label counts, age/gender/race charts, a filterable "
     "image grid, and the files whose labels could not be read."),
    ("pages/train.py", "Train", "🏋️", "train a multi-task model (age, gender, race) on a dataset folder and watch "
     "the learning curves live."),
    ("pages/predict.py", "Predict", "📸", "upload a photo or use the camera: faces are detected and each gets an "
     "age (with its uncertainty), a gender and a race estimate."),
    ("pages/saliency.py", "Saliency", "🔥", "see which parts of a face drove each prediction."),
    ("pages/evaluate.py", "Evaluate", "📊", "measure a model on held-out faces: age error, accuracies, and how they "
     "differ across age groups, genders and races."),
)


def draw_model_note() -> None:
    entry = default_model()
    if entry is None:
        st.info("The shipped model is not in `models/` yet. Until it is, train one on the Train page; "
                "Predict, Saliency and Evaluate use finished training runs too.")
        return
    card = entry.card
    metrics = card.get("metrics", {})
    mae = metrics.get("age_mae") or metrics.get("test", {}).get("age_mae")
    detail = f", test age MAE {mae:.1f} years" if isinstance(mae, int | float) else ""
    st.success(f"Shipped model **{entry.name}** ({card.get('arch', 'unknown architecture')}, "
               f"{entry.img_size or '?'} px{detail}). Its card in `models/{entry.name}.json` says how it was "
               "trained and where it fails.")


st.title("Face Insight Studio")
st.markdown("Estimate **age**, **gender** and **race** from face photos, and look at how well, and how fairly, "
            "a model does it. Data: UTKFace, with loaders for Adience and FairFace.")

for page, label, icon, purpose in PAGES:
    st.page_link(page, label=label, icon=icon)
    st.caption(purpose)

st.subheader("What ships with the app")
if profile.public:
    st.markdown("- A **sample of 300 UTKFace faces** in `data/sample/utkface`, drawn across age decade × gender × "
                "race, so every page works with no download. This is a shared public server: it offers its own "
                "datasets only, trains small models on the sample, and keeps no photo you upload.")
else:
    st.markdown(f"- A **sample of 300 UTKFace faces** in `data/sample/utkface`, drawn across age decade × gender × "
                "race, so every page works with no download. For the full dataset, point the Explore page at your "
                f"copy or set `FACE_DATA_DIR` (now: `{settings.data_dir()}`).")
draw_model_note()

st.subheader("Data licenses, in brief")
st.markdown(
    "- **UTKFace** (Zhang, Song, Qi, CVPR 2017): non-commercial research only; image copyright stays with the "
    "original owners; labels were estimated by an algorithm then checked, so some are wrong.\n"
    "- **Adience** (Eidinger, Enbar, Hassner, IEEE TIFS 2014): Flickr photos under Creative Commons; treat as "
    "non-commercial research only and cite the paper.\n"
    "- **FairFace** (Kärkkäinen & Joo, WACV 2021): CC BY 4.0.\n"
    "- **MediaPipe BlazeFace** face detector: Apache License 2.0.\n\n"
    "Race and gender labels here are coarse categories assigned by annotators, not identities. Use the estimates "
    "to study models, never to make decisions about people."
)
