"""core/tfenv.py: TensorFlow's CPU settings are filled in before TensorFlow's first import, and a user's own
choice always wins (see core/tfenv.py for why oneDNN is off)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core import tfenv
from tests.support import PROJECT_ROOT

ONEDNN_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")


def test_fills_every_unset_default_and_returns_what_it_set():
    environ = {"PATH": "/usr/bin"}
    applied = tfenv.configure(environ)
    assert applied == {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    assert environ == {"PATH": "/usr/bin", **applied}


def test_a_second_call_changes_nothing():
    environ = {}
    tfenv.configure(environ)
    before = dict(environ)
    assert tfenv.configure(environ) == {}
    assert environ == before


def test_a_users_isa_cap_wins():
    environ = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    applied = tfenv.configure(environ)
    assert environ["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"
    assert "TF_ENABLE_ONEDNN_OPTS" not in environ  # their cap is their choice of oneDNN: it stays on
    assert applied == {"TF_CPP_MIN_LOG_LEVEL": "2"}  # the rest is still filled in


@pytest.mark.parametrize("value", ["0", "1"])
def test_a_users_onednn_switch_wins(value):
    """oneDNN off (0) or on at its full ISA (1): either is the user's choice, kept as it is."""
    environ = {"TF_ENABLE_ONEDNN_OPTS": value}
    applied = tfenv.configure(environ)
    assert environ["TF_ENABLE_ONEDNN_OPTS"] == value and "TF_ENABLE_ONEDNN_OPTS" not in applied
    assert "ONEDNN_MAX_CPU_ISA" not in environ


def test_a_users_log_level_wins():
    environ = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    applied = tfenv.configure(environ)
    assert environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and "TF_CPP_MIN_LOG_LEVEL" not in applied


def test_without_an_argument_it_configures_this_process(monkeypatch):
    for name in ONEDNN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    applied = tfenv.configure()
    assert applied["TF_ENABLE_ONEDNN_OPTS"] == "0" and os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


def _onednn_after_importing_core(**user) -> str:
    """What a fresh `import core` leaves in TF_ENABLE_ONEDNN_OPTS and ONEDNN_MAX_CPU_ISA, starting from this
    environment without any oneDNN variable (this process has its own, set by core) plus `user`."""
    env = {name: value for name, value in os.environ.items() if name not in ONEDNN_VARIABLES}
    env.update(user, PYTHONPATH=str(PROJECT_ROOT))
    done = subprocess.run(
        [sys.executable, "-c", "import core, os; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(unset)'), "
         "os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)'))"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_importing_core_turns_onednn_off_in_a_fresh_process():
    assert _onednn_after_importing_core() == "0 (unset)"


def test_importing_core_keeps_a_users_setting():
    assert _onednn_after_importing_core(ONEDNN_MAX_CPU_ISA="AVX2") == "(unset) AVX2"
    assert _onednn_after_importing_core(TF_ENABLE_ONEDNN_OPTS="1") == "1 (unset)"
