"""The server's TensorFlow work that is not training, in child processes (core/children.py says why):

- `SaliencyWorker` / `cam_layers`, `predict`, `explain`: one warm child per server that keeps the explained models
  loaded (core.saliency.Explainer). Requests are serialised and time out; a child that dies is replaced and the
  call raises `WorkerError` with a message for the user.
- `training_environment()`: the training device and the ResNet-50 ImageNet-weights note, probed once per server in
  the background with a one-off child (`core.children.run_in_child`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

from core import settings
from core.children import KILL_WAIT_S, SPAWN, WorkerError, end_process, exit_reason, run_in_child, wait_for_reply
from core.images import ImageError
from core.registry import ModelError, file_version
from core.saliency import SCORECAM_MAX_N, SaliencyError

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 300.0  # one saliency request: the first also starts TensorFlow and loads the model
PROBE_TIMEOUT_S = 300.0  # the device probe: a TensorFlow import on a busy 2-core machine, and a 3 s network probe
PROBE_NICENESS = 10  # the probe child yields the CPU to the server (and to training) while it imports TensorFlow
PROBE_RETRY_S = 60.0  # a failed probe is tried again after this long
EXPLAINERS_KEPT = 4  # models the saliency worker keeps loaded (least recently used goes first)
CAM_LAYER_LISTS_KEPT = 64  # the server's memo of layer lists (model versions × head choices)


# --------------------------------------------------------------------------------- the training environment

def _probe_environment() -> tuple[str, str | None]:
    """In a child: (training device, why ResNet-50 lacks ImageNet weights | None). At low priority: importing
    TensorFlow takes seconds of CPU, which the server needs for painting the page that asked."""
    os.nice(PROBE_NICENESS)
    from core.models import resnet50_weights_note
    from core.training import device_name
    return device_name(), resnet50_weights_note()


class _Probe:
    """A value computed once per server in a background thread (through `run_in_child`), so a page can paint
    before it is known. A failed probe is retried after PROBE_RETRY_S."""

    def __init__(self, function, fallback):
        self._function, self._fallback = function, fallback
        self._lock = threading.Lock()
        self._value = None
        self._failed_at: float | None = None
        self._thread: threading.Thread | None = None

    def get(self, wait: bool = False, timeout: float = PROBE_TIMEOUT_S):
        with self._lock:
            retry = self._failed_at is not None and time.monotonic() - self._failed_at > PROBE_RETRY_S
            if self._thread is None or (retry and not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name="worker-probe", daemon=True)
                self._thread.start()
            thread = self._thread
        if wait:
            thread.join(timeout)
        return self._value

    def _run(self) -> None:
        try:
            self._value, self._failed_at = run_in_child(self._function, timeout=PROBE_TIMEOUT_S), None
        except WorkerError:
            log.warning("Probe %s failed", self._function.__name__, exc_info=True)
            self._value, self._failed_at = self._fallback, time.monotonic()


_environment = _Probe(_probe_environment, fallback=("unknown (the device check failed)", None))


def training_environment(wait: bool = False) -> tuple[str, str | None] | None:
    """(training device, e.g. "CPU", ResNet-50 ImageNet-weights note or None), probed once per server in a child
    process. Without `wait`, None until the probe has answered (it starts on the first call)."""
    return _environment.get(wait)


# ---------------------------------------------------------------------------------------- the saliency worker

def _saliency_main(connection) -> None:
    """The saliency worker's loop: one request at a time, each answered ("ok", value) or ("error", kind, text)."""
    import keras  # noqa: F401  (started before the first request: the user waits less for it)
    explainers: OrderedDict = OrderedDict()
    while True:
        try:
            operation, args = connection.recv()
        except (EOFError, OSError):  # the server is gone
            return
        try:
            connection.send(("ok", _SALIENCY_HANDLERS[operation](explainers, *args)))
        except (SaliencyError, ModelError, ImageError) as error:
            connection.send(("error", type(error).__name__, str(error)))
        except Exception as error:  # a bug or a library failure: the user gets its text, the log the traceback
            log.exception("Saliency request %s failed", operation)
            connection.send(("error", "internal", f"{type(error).__name__}: {error}"))


def _explainer(explainers: OrderedDict, model_path: str, mtime_ns: int):
    """The Explainer of a model file version, loaded on first use; the least recently used goes beyond
    EXPLAINERS_KEPT (their views are memoised inside, so keeping them is what makes repeat maps fast)."""
    from core.registry import load_model
    from core.saliency import Explainer
    key = (model_path, mtime_ns)
    if key not in explainers:
        explainers[key] = Explainer(load_model(model_path, allow_anywhere=True))  # the server checked the folder
        while len(explainers) > EXPLAINERS_KEPT:
            explainers.popitem(last=False)
    explainers.move_to_end(key)
    return explainers[key]


def _handle_cam_layers(explainers, model_path, mtime_ns, heads):
    return _explainer(explainers, model_path, mtime_ns).cam_layers(heads)


def _handle_predict(explainers, model_path, mtime_ns, crop):
    return _explainer(explainers, model_path, mtime_ns).predict(crop)


def _handle_explain(explainers, model_path, mtime_ns, crop, heads, methods, race_class, layer, max_n):
    explainer = _explainer(explainers, model_path, mtime_ns)
    prediction = explainer.predict(crop)
    maps = [explainer.explain(crop, head, method, race_class, layer, max_n, prediction)
            for head in heads for method in methods]
    return {"maps": maps, "prediction": prediction}


_SALIENCY_HANDLERS = {"cam_layers": _handle_cam_layers, "predict": _handle_predict, "explain": _handle_explain}


class SaliencyWorker:
    """The parent's handle on the saliency child: started on first use, replaced when it dies or hangs."""

    def __init__(self, timeout: float = REQUEST_TIMEOUT_S):
        self.timeout = timeout
        self._lock = threading.Lock()  # one request at a time: the child answers in order
        self._process = None
        self._connection = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    def call(self, operation: str, *args, timeout: float | None = None):
        with self._lock:
            if self._process is not None and not self._process.is_alive():  # died between requests: no one to tell
                log.warning("The saliency worker had stopped (%s): starting a new one",
                            exit_reason(self._process.exitcode))
                self._stop()
            if self._process is None:
                self._start()
            try:
                self._connection.send((operation, args))
                reply = wait_for_reply(self._connection, self._process, timeout or self.timeout)
            except WorkerError:
                self._restart()
                raise WorkerError(f"The saliency worker took longer than {timeout or self.timeout:.0f} s and was "
                                  "stopped; it has been restarted — try again (fewer Score-CAM channels are "
                                  "faster).") from None
            except (BrokenPipeError, OSError):
                reply = None
            if reply is None:
                reason = self._reason_it_stopped()
                self._restart()
                raise WorkerError(f"The saliency worker stopped unexpectedly ({reason}); it has been restarted — "
                                  "try again.")
        return _unwrap(reply)

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _start(self) -> None:
        parent_end, child_end = SPAWN.Pipe()
        self._process = SPAWN.Process(target=_saliency_main, args=(child_end,), name="saliency-worker", daemon=True)
        self._process.start()
        child_end.close()  # the child holds the only other end: its death is end-of-file here
        self._connection = parent_end

    def _stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
        if self._process is not None:
            end_process(self._process)
        self._process = self._connection = None

    def _restart(self) -> None:
        """A fresh child at once: it imports TensorFlow while the user reads the message."""
        self._stop()
        self._start()

    def _reason_it_stopped(self) -> str:
        self._process.join(KILL_WAIT_S)
        return exit_reason(self._process.exitcode).split(",")[0]


def _unwrap(reply):
    """A reply's value, or its error raised as the class the pages already handle."""
    if reply[0] == "ok":
        return reply[1]
    _, kind, text = reply
    known = {"SaliencyError": SaliencyError, "ModelError": ModelError, "ImageError": ImageError}
    raise known.get(kind, WorkerError)(text if kind in known else f"Saliency failed: {text}")


_saliency_worker = SaliencyWorker()
_cam_layer_cache: dict[tuple, list[str]] = {}


def _model_version(model_path: str | Path) -> tuple[str, int]:
    """(path, mtime_ns) of a model the app may load: only models/ and runs/ (a model file can carry code)."""
    path = Path(model_path)
    allowed = [settings.MODELS_DIR.resolve(), settings.runs_dir().resolve()]
    if not any(path.resolve().is_relative_to(root) for root in allowed):
        raise ModelError(f"Refusing to load {path}: models are loaded only from models/ and runs/.")
    return str(path), file_version(path)


def cam_layers(model_path: str | Path, heads) -> list[str]:
    """The CAM feature maps shared by every head in `heads`, input side first (cached per model version)."""
    path, mtime_ns = _model_version(model_path)
    key = (path, mtime_ns, tuple(heads))
    if key not in _cam_layer_cache:
        if len(_cam_layer_cache) >= CAM_LAYER_LISTS_KEPT:
            _cam_layer_cache.clear()
        _cam_layer_cache[key] = _saliency_worker.call("cam_layers", path, mtime_ns, list(heads))
    return list(_cam_layer_cache[key])


def predict(model_path: str | Path, crop):
    """The single-pass prediction (no flip averaging) that saliency maps explain, a core.predict.FacePrediction."""
    return _saliency_worker.call("predict", *_model_version(model_path), crop)


def explain(model_path: str | Path, crop, heads, methods, race_class=None, layer: str | None = None,
            max_n: int | None = SCORECAM_MAX_N) -> dict:
    """{"maps": [SaliencyMap per (head, method), heads outer], "prediction": FacePrediction} for one crop.
    `race_class` (index or name; None: the predicted one), `layer` (None: each head's default) and `max_n`
    (Score-CAM channels; None or 0: all) as in core.saliency.Explainer.explain."""
    return _saliency_worker.call("explain", *_model_version(model_path), crop, list(heads), list(methods),
                                 race_class, layer, max_n)

