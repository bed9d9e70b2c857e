"""TensorFlow's CPU configuration, set in one place before TensorFlow's first import in any process.

`core/__init__.py` calls `configure()`, so every process that reaches TensorFlow through `core` (the training and
saliency workers, the CLI, tests, benchmarks) gets it first; TensorFlow reads these variables once, at import.

Why: TensorFlow 2.21's oneDNN kernels for AVX-512 (BF16/VNNI, e.g. AMD EPYC) crash natively in
`conv2d_backprop_filter` (SIGABRT/SIGSEGV: input gradients of small residual CNNs, warm-restart fits). Capping
oneDNN at AVX2 avoids that code path and keeps oneDNN's fast convolutions; measured by
`tests/benchmarks/bench_tfenv.py` against oneDNN off and the default (see the README's benchmark table).
A user's own setting of either variable wins: we only fill in what is unset.
"""

from __future__ import annotations

import os

SAFE_DEFAULTS = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # below AVX-512: the crashing kernels are never dispatched
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
        if name in environ or (name == "ONEDNN_MAX_CPU_ISA" and user_chose_onednn):
            continue
        environ[name] = value
        applied[name] = value
    return applied
