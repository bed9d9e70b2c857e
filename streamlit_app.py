"""Face Insight Studio — router only. Each page lives in pages/ and calls into core/."""

import streamlit as st

from core import housekeeping

st.set_page_config(page_title="Face Insight Studio", page_icon="🧑", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/explore.py", title="Explore", icon="🔎"),
    st.Page("pages/train.py", title="Train", icon="🏋️"),
    st.Page("pages/predict.py", title="Predict", icon="📸"),
    st.Page("pages/saliency.py", title="Saliency", icon="🔥"),
    st.Page("pages/evaluate.py", title="Evaluate", icon="📊"),
]

housekeeping.startup_once()  # once per server: stale temp files, runs a dead process left "running", cache cap
st.navigation(PAGES).run()
