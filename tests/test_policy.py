"""What a public session may ask of the server (core.policy): a fixed sample of rows to evaluate, small training
jobs on the bundled sample only, and the memory and CPU caps of the training child."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pandas as pd
import pytest

from core import access, policy, settings
from tests.support import PROJECT_ROOT

ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:tmp|etc|proc|work|home|root|var)\b")


@pytest.fixture(autouse=True)
def _no_mode_set(monkeypatch):
    for name in ("FACE_MODE", "FACE_DATA_DIR", "FACE_DATASET_ROOTS"):
        monkeypatch.delenv(name, raising=False)


def test_public_evaluations_score_a_fixed_sample(monkeypatch):
    monkeypatch.setattr(policy, "PUBLIC_MAX_EVAL_ROWS", 10)
    table = pd.DataFrame({"path": [f"{i}.jpg" for i in range(25)]})
    rows, note = policy.evaluation_rows(table, access.public_profile())
    again, _ = policy.evaluation_rows(table, access.public_profile())
    assert len(rows) == 10 and rows.equals(again) and "10 of the 25" in note
    assert policy.evaluation_rows(table, access.WORKBENCH_PROFILE) == (table, None)


# --------------------------------------------------------------------------------------------- training

def _request(**changes) -> dict:
    request = {"dataset": "utkface", "data_dir": str(settings.SAMPLE_DIR), "epochs": 3, "batch_size": 16,
               "init_from": "", "split_file": "", "out_dir": "", "model": {"arch": "custom_cnn", "img_size": 48}}
    for key, value in changes.items():
        if key.startswith("model_"):
            request["model"][key.removeprefix("model_")] = value
        else:
            request[key] = value
    return request


def test_public_training_accepts_a_small_job_on_the_sample():
    assert policy.check_training_request(_request(), access.public_profile()) == []
    assert policy.check_training_request(_request(data_dir=""), access.public_profile()) == []


@pytest.mark.parametrize(("changes", "words"), [
    ({"data_dir": "/etc"}, "bundled sample only"),
    ({"dataset": "fairface"}, "UTKFace kind"),
    ({"model_img_size": 224}, "Image size is at most 64 px"),
    ({"epochs": 500}, "Epochs is at most 5"),
    ({"batch_size": 128}, "Batch size is at most 32"),
    ({"model_arch": "resnet50"}, "Architectures on this server"),
    ({"init_from": "/tmp/someone/model.keras"}, "own models and runs"),
    ({"split_file": "/etc/passwd"}, "own models and runs"),
    ({"teachers": f"{settings.MODELS_DIR}/face_insight_v1.keras, /tmp/other.keras"}, "own models and runs"),
    ({"out_dir": "/tmp/elsewhere"}, "runs folder only"),
])
def test_public_training_refuses_what_a_shared_server_cannot_afford(changes, words):
    problems = policy.check_training_request(_request(**changes), access.public_profile())
    assert len(problems) == 1 and words in problems[0]
    assert not ABSOLUTE_PATH.search(problems[0])
    assert policy.check_training_request(_request(**changes), access.WORKBENCH_PROFILE) == []


def test_the_policy_reads_a_train_config_too():
    from core.config import TrainConfig
    cfg = TrainConfig.from_dict(_request(epochs=50, model_img_size=32))
    assert policy.check_training_request(cfg, access.public_profile()) == ["Epochs is at most 5 on this server."]
    shipped = str(settings.MODELS_DIR / "face_insight_v1.keras")
    assert policy.check_training_request(TrainConfig.from_dict(_request(init_from=shipped)),
                                         access.public_profile()) == []


# ------------------------------------------------------------------------------------ the training child

def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120)


def test_child_limits_cap_memory():
    result = _child("from core.policy import apply_child_limits\n"
                    "assert apply_child_limits(memory_bytes=600 * 1024 ** 2, cpu_seconds=None)\n"
                    "small = bytearray(50 * 1024 ** 2)\n"
                    "try:\n    bytearray(1024 ** 3)\nexcept MemoryError:\n    print('refused')\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "refused"


def test_child_limits_cap_cpu_time():
    import signal

    start = time.monotonic()
    result = _child("from core.policy import apply_child_limits\n"
                    "apply_child_limits(memory_bytes=None, cpu_seconds=1)\n"
                    "while True:\n    pass\n")
    assert result.returncode == -signal.SIGXCPU
    assert time.monotonic() - start < 30


def test_child_limits_only_go_down():
    result = _child("import resource\nfrom core.policy import apply_child_limits\n"
                    "resource.setrlimit(resource.RLIMIT_CPU, (50, 60))\n"
                    "apply_child_limits(memory_bytes=None, cpu_seconds=3600)\n"
                    "print(resource.getrlimit(resource.RLIMIT_CPU))\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "(50, 60)"
