"""The worker processes of core/workers.py, for real: the saliency worker explains a tiny model, comes back after its
child is killed, and spares the server TensorFlow; the device probe."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from core import settings, workers
from core.registry import ModelError
from core.saliency import SaliencyError, SaliencyMap
from core.workers import SaliencyWorker, WorkerError
from tests.support import PROJECT_ROOT, noise_crop

TIMEOUT = 600  # seconds: a child's TensorFlow import and first trace on a busy 2-core machine


@pytest.fixture
def model_path(tmp_path, monkeypatch, tiny_models) -> str:
    """The tiny multitask_cnn (each head has its own branch) as a run's model, inside the app's runs folder."""
    runs = tmp_path / "runs"
    (runs / "run").mkdir(parents=True)
    monkeypatch.setenv("FACE_RUNS_DIR", str(runs))
    return str(shutil.copy(tiny_models["multitask_cnn"], runs / "run" / "model.keras"))


def _wait(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_worker_explains_a_tiny_model(model_path):
    layers = workers.cam_layers(model_path, ["gender", "race"])
    assert layers and all(name.endswith("relu") for name in layers)
    result = workers.explain(model_path, noise_crop(), ["gender", "race"], ["saliency", "gradcam"], max_n=8)
    maps = result["maps"]
    assert [(m.head, m.method) for m in maps] == [("gender", "saliency"), ("gender", "gradcam"),
                                                  ("race", "saliency"), ("race", "gradcam")]
    assert all(isinstance(m, SaliencyMap) and m.heatmap.shape == (32, 32) for m in maps)
    assert {m.layer for m in maps if m.method == "gradcam"} == {"gender_branch1_relu", "race_branch1_relu"}
    prediction = workers.predict(model_path, noise_crop())
    assert prediction == result["prediction"] and maps[0].target.startswith(prediction.gender)
    chosen = workers.explain(model_path, noise_crop(), ["race"], ["gradcam"], race_class="Black", layer=layers[0])
    assert chosen["maps"][0].target.startswith("Black") and chosen["maps"][0].layer == layers[0]


def test_the_workers_errors_arrive_as_the_errors_pages_handle(model_path, tmp_path):
    with pytest.raises(SaliencyError, match="Unknown method"):
        workers.explain(model_path, noise_crop(), ["age"], ["no-such-method"])
    with pytest.raises(ModelError, match="only from models/ and runs/"):
        workers.predict(str(tmp_path / "elsewhere.keras"), noise_crop())  # refused in the server, before the worker
    with pytest.raises(ModelError, match="is gone"):
        workers.predict(str(settings.runs_dir() / "run" / "missing.keras"), noise_crop())


@pytest.mark.parametrize(("sig", "name"), [(signal.SIGSEGV, "SIGSEGV"), (signal.SIGKILL, "SIGKILL")])
def test_a_worker_killed_mid_request_is_an_error_message_then_a_fresh_worker(model_path, sig, name):
    worker = SaliencyWorker(timeout=TIMEOUT)
    outcome = {}

    def first_request():  # a new worker's first request imports TensorFlow and loads the model: seconds
        try:
            outcome["value"] = worker.call("cam_layers", model_path, 0, ["age"])
        except WorkerError as error:
            outcome["error"] = error

    try:
        caller = threading.Thread(target=first_request)
        caller.start()
        _wait(lambda: worker.pid is not None, "the worker to start")
        first = worker.pid
        time.sleep(1.0)
        assert caller.is_alive(), "the request ended before the worker could be killed"
        os.kill(first, sig)  # our own child, by its pid
        caller.join(TIMEOUT)
        assert "value" not in outcome
        assert re.search(rf"stopped unexpectedly \({name}\); it has been restarted — try again", str(outcome["error"]))
        assert worker.pid not in (None, first)  # already replaced, warming up
        assert worker.call("cam_layers", model_path, 0, ["age"])  # and serving
        os.kill(worker.pid, signal.SIGKILL)  # killed while idle: the next request just gets a fresh worker
        time.sleep(0.5)
        assert worker.call("cam_layers", model_path, 0, ["age"])
    finally:
        worker.close()
    assert worker.pid is None


def test_a_request_that_outlives_its_timeout_is_stopped(model_path):
    worker = SaliencyWorker(timeout=TIMEOUT)
    try:
        worker.call("cam_layers", model_path, 0, ["age"])  # started and loaded
        with pytest.raises(WorkerError, match="took longer than"):
            worker.call("explain", model_path, 0, noise_crop(), ["race"], ["scorecam"], None, None, None, timeout=0.01)
        assert worker.call("cam_layers", model_path, 0, ["age"])
    finally:
        worker.close()


SERVER_SCRIPT = """
import json, sys
import numpy as np
from core import workers
result = workers.explain(sys.argv[1], np.zeros((32, 32, 3), np.uint8), ["age"], ["gradcam"])
print(json.dumps({"maps": len(result["maps"]), "age": result["prediction"].age,
                  "heavy_modules": sorted(m for m in ("tensorflow", "keras", "tf_keras_vis") if m in sys.modules)}))
"""


def test_a_server_using_the_worker_never_imports_tensorflow(model_path):
    """A fresh interpreter plays the server (this test process has TensorFlow from the fixtures)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SERVER_SCRIPT), model_path], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["maps"] == 1 and np.isfinite(result["age"]) and result["heavy_modules"] == []


def test_the_training_environment_is_probed_once_in_a_child():
    from core.training import device_name  # imports TensorFlow: not at the top
    device, note = workers.training_environment(wait=True)
    assert device == device_name() and (note is None or "ResNet-50" in note)
    assert workers.training_environment() == (device, note)  # cached: no second probe

