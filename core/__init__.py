"""Face Insight Studio core: data, models, training, inference and analysis. Never imports streamlit."""

from core import tfenv

# Before anything can import TensorFlow: its CPU settings are read once, at its import (see core/tfenv.py).
tfenv.configure()
