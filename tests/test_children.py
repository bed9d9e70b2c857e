"""Child processes (core.children): a flag shared with them, how one ended in words, and one-off calls that return
values or name how they failed."""

from __future__ import annotations

import os
import signal

import pytest

from core.children import SharedFlag, WorkerError, exit_reason, run_in_child


def test_a_shared_flag_waits_until_set():
    flag = SharedFlag()
    assert not flag.is_set() and flag.wait(0.05) is False
    flag.set()
    assert flag.is_set() and flag.wait(0) is True
    flag.clear()
    assert not flag.is_set()


def test_how_a_child_ended_in_words():
    assert exit_reason(None) == "still running" and exit_reason(3) == "exit code 3"
    assert exit_reason(-signal.SIGSEGV) == "SIGSEGV, a native crash in TensorFlow"
    assert exit_reason(-signal.SIGTERM) == "SIGTERM, terminated"
    assert exit_reason(-signal.SIGXCPU) == "SIGXCPU, the CPU time limit"


def _die(sig: int) -> None:
    """Run in a child: it kills itself (by its own pid), as the kernel's OOM killer would."""
    os.kill(os.getpid(), sig)


def test_one_off_calls_return_values_and_name_failures():
    assert run_in_child(os.getpid) != os.getpid()  # it ran elsewhere
    with pytest.raises(WorkerError, match="ValueError"):
        run_in_child(int, "not a number")
    with pytest.raises(WorkerError, match=r"stopped unexpectedly \(SIGKILL, killed, perhaps out of memory\)"):
        run_in_child(_die, signal.SIGKILL)
    assert exit_reason(-signal.SIGABRT) == "SIGABRT, a native crash in TensorFlow" and exit_reason(3) == "exit code 3"
