"""core/access.py: which profile a session gets, and what the public profile may read and show."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

import pandas as pd
import pytest

from core import access, settings

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
    ("::ffff:127.0.0.1", {"Host": "127.0.0.1:8501"}),  # what Streamlit 1.67 on a dual-stack socket reports (seen)
])
def test_unset_mode_is_workbench_for_the_owner_on_this_machine(client_ip, headers):
    assert access.resolve_mode(None, client_ip, headers) == "workbench"
    assert access.resolve_mode("", client_ip, headers) == "workbench"


@pytest.mark.parametrize(("client_ip", "headers"), [
    ("203.0.113.7", {}),  # another machine
    ("192.168.1.20", {"Host": "192.168.1.5:8501"}),  # the LAN: Streamlit binds every interface by default
    ("::ffff:192.168.1.20", {"Host": "192.168.1.5:8501"}),  # the same, through a dual-stack socket
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
