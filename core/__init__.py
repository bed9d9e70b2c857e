"""Face Insight Studio core: data, models, training, inference and analysis. Never imports streamlit."""
