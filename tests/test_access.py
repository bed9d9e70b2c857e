"""core/access.py: which profile a session gets, what the public profile may read and show, the shared limits
(one evaluation, two photo analyses), the public training policy and runs quota, and the training child's limits."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from core import access, settings
from tests.conftest import PROJECT_ROOT

SAMPLE = Path(os.path.realpath(settings.SAMPLE_DIR))
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:tmp|etc|proc|work|home|root|var)\b")
EXCEPTION_NAME = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b")


@pytest.fixture(autouse=True)
def _no_mode_set(monkeypatch):
    for name in ("FACE_MODE", "FACE_DATA_DIR", "FACE_DATASET_ROOTS"):
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------------------------------- which profile

@pytest.mark.parametrize(("setting", "mode"), [
    ("public", "public"), ("workbench", "workbench"), (" Workbench ", "workbench"), ("PUBLIC", "public"),
    ("prod", "public"), ("workbnech", "public"),  # a typo never opens the server
])
def test_an_explicit_mode_wins_and_unknown_values_mean_public(setting, mode):
    assert access.resolve_mode(setting, client_ip="203.0.113.7") == mode
    assert access.resolve_mode(setting, client_ip=None) == mode


@pytest.mark.parametrize(("client_ip", "headers"), [
    (None, {}),  # Streamlit reports a browser on 127.0.0.1 / ::1 as None
    ("127.0.0.1", {"Host": "localhost:8501"}),
    ("::1", {"Host": "[::1]:8501"}),
    ("127.0.1.1", {"Host": "127.0.0.1:8501"}),
])
def test_unset_mode_is_workbench_for_the_owner_on_this_machine(client_ip, headers):
    assert access.resolve_mode(None, client_ip, headers) == "workbench"
    assert access.resolve_mode("", client_ip, headers) == "workbench"


@pytest.mark.parametrize(("client_ip", "headers"), [
    ("203.0.113.7", {}),  # another machine
    ("192.168.1.20", {"Host": "192.168.1.5:8501"}),  # the LAN: Streamlit binds every interface by default
    (None, {"X-Forwarded-For": "203.0.113.7"}),  # a reverse proxy on this host: loopback peer, proxy headers
    (None, {"X-Real-IP": "203.0.113.7"}),
    (None, {"Forwarded": "for=203.0.113.7"}),
    (None, {"Host": "faces.example.org"}),  # a proxy that only passes the public Host on
])
def test_unset_mode_is_public_for_everyone_else(client_ip, headers):
    assert access.resolve_mode(None, client_ip, headers) == "public"


class _Secrets(dict):
    """st.secrets stand-in; `broken` raises the way Streamlit does when there is no secrets file."""

    def __init__(self, broken: bool = False, **values):
        super().__init__(**values)
        self.broken = broken

    def get(self, key, default=None):
        if self.broken:
            raise FileNotFoundError("No secrets found")
        return super().get(key, default)


def test_session_profile_reads_the_environment_then_the_secrets(monkeypatch):
    remote = "203.0.113.7"
    assert access.session_profile(_Secrets(FACE_MODE="workbench"), remote).name == "workbench"
    assert access.session_profile(_Secrets(broken=True), remote).public
    assert access.session_profile(_Secrets(broken=True), None).name == "workbench"
    monkeypatch.setenv("FACE_MODE", "public")
    assert access.session_profile(_Secrets(FACE_MODE="workbench"), None).public  # the environment wins


def test_code_outside_a_session_uses_the_environment_and_a_bound_profile_wins(monkeypatch):
    assert access.process_profile().name == "workbench"  # the CLI on its owner's machine
    monkeypatch.setenv("FACE_MODE", "public")
    assert access.process_profile().public
    monkeypatch.delenv("FACE_MODE")
    seen = {}

    def a_session_thread():
        access.bind_profile(access.public_profile())
        seen["inside"] = access.current_profile().public

    thread = threading.Thread(target=a_session_thread)
    thread.start()
    thread.join()
    assert seen["inside"] is True
    assert access.current_profile().name == "workbench"  # another thread's binding never leaks here


# ------------------------------------------------------------------------------------------ dataset roots

def test_allowed_roots_are_the_sample_and_the_operators_folders(monkeypatch, tmp_path):
    first, second = tmp_path / "utk", tmp_path / "fair"
    first.mkdir()
    second.mkdir()
    monkeypatch.setenv("FACE_DATASET_ROOTS", os.pathsep.join([str(first), str(tmp_path / "missing"), str(second),
                                                              str(first)]))
    assert access.allowed_dataset_roots() == (SAMPLE, first.resolve(), second.resolve())
    monkeypatch.setenv("FACE_DATA_DIR", str(second))
    assert access.allowed_dataset_roots() == (SAMPLE, second.resolve(), first.resolve())


def test_public_profile_allows_exactly_its_roots(tmp_path):
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "credentials.env").write_text("TOKEN=x")
    (tmp_path / "etc_link").symlink_to("/etc")
    profile = access.public_profile()
    assert profile.allows_folder(SAMPLE) and profile.allows_folder(f"{SAMPLE}/../{SAMPLE.name}/")
    for folder in ("/etc", "/proc/self", planted, tmp_path / "etc_link", SAMPLE.parent, SAMPLE / "sub", "~root", ""):
        assert not profile.allows_folder(folder), folder
    assert access.WORKBENCH_PROFILE.allows_folder("/etc")


def test_dataset_choices_never_show_a_server_path(monkeypatch, tmp_path):
    for name in ("a/UTKFace", "b/UTKFace", "c/fairface"):
        (tmp_path / name).mkdir(parents=True)
    roots = [tmp_path / n for n in ("a/UTKFace", "b/UTKFace", "c/fairface")]
    monkeypatch.setenv("FACE_DATASET_ROOTS", os.pathsep.join(map(str, roots)))
    choices = access.dataset_choices(access.public_profile())
    assert list(choices) == [access.SAMPLE_LABEL, "a/UTKFace", "b/UTKFace", "fairface"]
    assert list(choices.values()) == [SAMPLE, *(r.resolve() for r in roots)]


# ---------------------------------------------------------------------------------------- what is shown

def test_public_text_drops_server_paths_and_exception_names(monkeypatch, tmp_path):
    monkeypatch.setenv("FACE_RUNS_DIR", str(tmp_path / "runs"))
    profile = access.public_profile()
    raw = (f"Cannot read an image among {SAMPLE}/1_0_0_20170109150557335.jpg.chip.jpg …: PermissionError: "
           f"[Errno 13] Permission denied: '/tmp/pytest-of-root/secret/x.jpg'. Split file {tmp_path}/runs/r1/split.csv "
           "is not a split file (ValueError). See /etc/passwd.")
    shown = access.public_text(raw, profile)
    assert not ABSOLUTE_PATH.search(shown) and not EXCEPTION_NAME.search(shown), shown
    assert "1_0_0_20170109150557335.jpg.chip.jpg" in shown and "runs/r1/split.csv" in shown
    assert "passwd." in shown and "[Errno 13] Permission denied" in shown
    assert access.public_text("age / gender at http://example.org/a/b", profile) == "age / gender at " \
                                                                                     "http://example.org/a/b"
    assert access.public_text(raw, access.WORKBENCH_PROFILE) == raw  # the owner sees everything


def test_shown_paths_are_relative_to_the_dataset_root():
    profile = access.public_profile()
    table = pd.DataFrame({"path": [str(SAMPLE / "1_0_0_x.jpg.chip.jpg"), str(SAMPLE / "sub" / "b.jpg")],
                          "age": [1.0, 2.0]})
    assert access.shown_table(table, profile)["path"].tolist() == ["1_0_0_x.jpg.chip.jpg", "sub/b.jpg"]
    assert access.shown_path(SAMPLE, profile) == access.SAMPLE_LABEL
    assert access.shown_path(settings.MODELS_DIR / "face_insight_v1.keras", profile) == "models/face_insight_v1.keras"
    assert access.shown_table(table, access.WORKBENCH_PROFILE) is table


def test_unexpected_errors_show_a_reference_and_log_the_details(caplog):
    error = KeyError(f"{SAMPLE}/secret/x")
    with caplog.at_level(logging.ERROR, logger="core.access"):
        shown = access.unexpected_error(error, access.public_profile(), "Explore")
    reference = re.search(r"reference ([0-9a-f]{8})", shown).group(1)
    assert not ABSOLUTE_PATH.search(shown) and "KeyError" not in shown and "secret" not in shown
    record = next(r for r in caplog.records if reference in r.getMessage())
    assert record.exc_info and record.exc_info[0] is KeyError  # the traceback is in the log


# ------------------------------------------------------------------------------------------ shared limits

def test_one_evaluation_at_a_time():
    with access.evaluation_slot():
        assert access.evaluation_running()
        with pytest.raises(access.Busy, match="Another evaluation"), access.evaluation_slot():
            pass
    assert not access.evaluation_running()
    with pytest.raises(RuntimeError), access.evaluation_slot():
        raise RuntimeError("an evaluation that fails still frees the slot")
    with access.evaluation_slot():
        pass


def test_public_evaluations_score_a_fixed_sample(monkeypatch):
    monkeypatch.setattr(access, "PUBLIC_MAX_EVAL_ROWS", 10)
    table = pd.DataFrame({"path": [f"{i}.jpg" for i in range(25)]})
    rows, note = access.evaluation_rows(table, access.public_profile())
    again, _ = access.evaluation_rows(table, access.public_profile())
    assert len(rows) == 10 and rows.equals(again) and "10 of the 25" in note
    assert access.evaluation_rows(table, access.WORKBENCH_PROFILE) == (table, None)


def test_at_most_two_photo_analyses_at_once():
    active, peak, lock = [0], [0], threading.Lock()
    busy = []

    def analyse():
        try:
            with access.photo_analysis_slot(timeout_s=5):
                with lock:
                    active[0] += 1
                    peak[0] = max(peak[0], active[0])
                time.sleep(0.2)
                with lock:
                    active[0] -= 1
        except access.Busy:
            busy.append(True)

    threads = [threading.Thread(target=analyse) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == access.PHOTO_ANALYSES_AT_ONCE == 2 and not busy
    with access.photo_analysis_slot(), access.photo_analysis_slot(), pytest.raises(access.Busy, match="busy"), \
            access.photo_analysis_slot(timeout_s=0.05):
        pass


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
    assert access.check_training_request(_request(), access.public_profile()) == []
    assert access.check_training_request(_request(data_dir=""), access.public_profile()) == []


@pytest.mark.parametrize(("changes", "words"), [
    ({"data_dir": "/etc"}, "bundled sample only"),
    ({"dataset": "fairface"}, "UTKFace kind"),
    ({"model_img_size": 224}, "Image size is at most 64 px"),
    ({"epochs": 500}, "Epochs is at most 5"),
    ({"batch_size": 128}, "Batch size is at most 32"),
    ({"model_arch": "resnet50"}, "Architectures on this server"),
    ({"init_from": "/tmp/someone/model.keras"}, "own models and runs"),
    ({"split_file": "/etc/passwd"}, "own models and runs"),
    ({"out_dir": "/tmp/elsewhere"}, "runs folder only"),
])
def test_public_training_refuses_what_a_shared_server_cannot_afford(changes, words):
    problems = access.check_training_request(_request(**changes), access.public_profile())
    assert len(problems) == 1 and words in problems[0]
    assert not ABSOLUTE_PATH.search(problems[0])
    with pytest.raises(access.AccessError, match=words):
        access.require_training_allowed(_request(**changes), access.public_profile())
    assert access.check_training_request(_request(**changes), access.WORKBENCH_PROFILE) == []


def test_the_policy_reads_a_train_config_too():
    try:
        from core.config import TrainConfig
    except ImportError:  # older layout: the config lives in the engine module
        from core.training import TrainConfig
    cfg = TrainConfig.from_dict(_request(epochs=50, model_img_size=32))
    assert access.check_training_request(cfg, access.public_profile()) == ["Epochs is at most 5 on this server."]
    shipped = str(settings.MODELS_DIR / "face_insight_v1.keras")
    assert access.check_training_request(TrainConfig.from_dict(_request(init_from=shipped)),
                                         access.public_profile()) == []


def test_only_the_starting_session_controls_a_public_job():
    public, workbench = access.public_profile(), access.WORKBENCH_PROFILE
    assert access.can_control_job(public, "session-a", "session-a")
    assert not access.can_control_job(public, "session-a", "session-b")
    assert not access.can_control_job(public, None, None)
    assert access.can_control_job(workbench, "session-a", "session-b")
    assert access.visible_runs(["r1", "r2", "r3"], public, {"r2"}) == ["r2"]
    assert access.visible_runs(["r1", "r2"], workbench) == ["r1", "r2"]


def _run(root: Path, name: str, age_s: float, public: bool = True, status: str = "finished") -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "metrics.json").write_text(json.dumps({"status": status}))
    if public:
        access.mark_public_run(run, "session-a")
    stamp = time.time() - age_s
    for path in [*run.iterdir(), run]:
        os.utime(path, (stamp, stamp))
    return run


def test_runs_quota_deletes_the_oldest_public_runs_only(tmp_path):
    runs = [_run(tmp_path, f"2025010{i}-000000-custom_cnn", age_s=10_000 - i * 1000) for i in range(5)]
    mine = _run(tmp_path, "20240101-000000-residual_cnn", age_s=99_999, public=False)
    live = _run(tmp_path, "20200101-000000-custom_cnn", age_s=50_000, status="running")
    from core.housekeeping import hold_run_lock
    lock = hold_run_lock(live)
    try:
        deleted = access.enforce_runs_quota(tmp_path, 3)
    finally:
        lock.close()
    assert deleted == runs[:3]  # the oldest finished public runs; the live one is skipped, not counted out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, live.name, runs[3].name, runs[4].name])
    assert access.run_owner(runs[4]) == "session-a" and access.run_owner(mine) is None
    assert access.enforce_runs_quota(tmp_path / "absent", 3) == []


# ------------------------------------------------------------------------------------ the training child

def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120)


def test_child_limits_cap_memory():
    result = _child("from core.access import apply_child_limits\n"
                    "assert apply_child_limits(memory_bytes=600 * 1024 ** 2, cpu_seconds=None)\n"
                    "small = bytearray(50 * 1024 ** 2)\n"
                    "try:\n    bytearray(1024 ** 3)\nexcept MemoryError:\n    print('refused')\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "refused"


def test_child_limits_cap_cpu_time():
    import signal

    start = time.monotonic()
    result = _child("from core.access import apply_child_limits\n"
                    "apply_child_limits(memory_bytes=None, cpu_seconds=1)\n"
                    "while True:\n    pass\n")
    assert result.returncode == -signal.SIGXCPU
    assert time.monotonic() - start < 30


def test_child_limits_only_go_down():
    result = _child("import resource\nfrom core.access import apply_child_limits\n"
                    "resource.setrlimit(resource.RLIMIT_CPU, (50, 60))\n"
                    "apply_child_limits(memory_bytes=None, cpu_seconds=3600)\n"
                    "print(resource.getrlimit(resource.RLIMIT_CPU))\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "(50, 60)"
