import streamlit as st

st.title("saliency")
st.info("This page is being built.")
