"""TensorFlow's CPU configuration, set in one place before TensorFlow's first import in any process.

`core/__init__.py` calls `configure()`, so every process that reaches TensorFlow through `core` (the training and
saliency workers, the CLI, tests, benchmarks) gets it first; TensorFlow reads these variables once, at import.

Why: TensorFlow 2.21's oneDNN kernels for AVX-512 (BF16/VNNI, e.g. AMD EPYC) crash natively in
`conv2d_backprop_filter` (SIGABRT/SIGSEGV: input gradients of small residual CNNs, warm-restart fits); capping
oneDNN at AVX512_CORE or AVX512_CORE_VNNI still crashes. Two settings are safe, and
`tests/benchmarks/bench_tfenv.py` measured both on a 2-core EPYC: oneDNN off trains the shipped architecture
24–34 % faster than oneDNN capped at AVX2 (three runs; saliency maps equal within noise), so oneDNN is off.
A user's own setting of either variable wins: we only fill in what is unset.
"""

from __future__ import annotations

import os

SAFE_DEFAULTS = {
    "TF_ENABLE_ONEDNN_OPTS": "0",  # TensorFlow's own kernels: the crashing oneDNN ones are never dispatched
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow's start-up INFO/WARNING chatter hides real messages
}
# Either of these, set by the user, is their choice of oneDNN behaviour: then we set neither.
_USER_ONEDNN_CHOICES = ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")


def configure(environ: dict | None = None) -> dict[str, str]:
    """Fill in the safe defaults that are unset; returns what was set. Call before `import tensorflow`."""
    environ = os.environ if environ is None else environ
    user_chose_onednn = any(name in environ for name in _USER_ONEDNN_CHOICES)
    applied = {}
    for name, value in SAFE_DEFAULTS.items():
        if name in environ or (name == "TF_ENABLE_ONEDNN_OPTS" and user_chose_onednn):
            continue
        environ[name] = value
        applied[name] = value
    return applied
