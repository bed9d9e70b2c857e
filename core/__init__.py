"""Face Insight Studio core: data, models, training, inference and analysis. Never imports streamlit."""

from core import memory, tfenv

# Before anything can import TensorFlow: its CPU settings are read once, at its import (see core/tfenv.py).
tfenv.configure()
memory.tune_malloc()  # before the server's session threads allocate (see core/memory.py)
