"""A native crash inside a test (TensorFlow's oneDNN kernels on some CPUs: SIGABRT, SIGSEGV) must fail that test
and nothing else: the README's test command runs every test in a worker process (pyproject.toml's addopts,
pytest-xdist), a worker that dies is reported as a failure of the test it was running and a new one takes over,
and the run still ends with its summary line.

Proved here with the project's own pytest configuration, on a tiny throwaway test file in a temp folder: without
the workers the first os.abort() takes the whole run down (exit -6, no summary) and this test fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

from tests.support import PROJECT_ROOT

CRASHY = textwrap.dedent('''
    import os
    import signal


    def test_aborts():
        os.abort()


    def test_passes():
        assert True


    def test_segfaults():
        os.kill(os.getpid(), signal.SIGSEGV)
''')
TIMEOUT_S = 120  # two fresh workers import only pytest; a few seconds even on a busy machine


def test_a_native_crash_fails_its_test_and_the_run_still_reports(tmp_path):
    (tmp_path / "test_crashy.py").write_text(CRASHY)
    # The child sees the project's configuration and nothing of this run's (xdist worker ids, PYTEST_ADDOPTS).
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(PROJECT_ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
         "-p", "no:cacheprovider", "-q", "-rA", "test_crashy.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    out = done.stdout
    assert done.returncode == 1, f"exit {done.returncode} (a negative code is the signal that ended the run):\n" \
                                 f"{out[-3000:]}\n{done.stderr[-2000:]}"
    summary = out.strip().splitlines()[-1]
    assert re.search(r"\b2 failed, 1 passed\b", summary), summary
    for crashing in ("test_aborts", "test_segfaults"):
        assert re.search(rf"^FAILED test_crashy\.py::{crashing} - worker '\w+' crashed while running", out,
                         flags=re.M), out[-3000:]
    assert re.search(r"^PASSED test_crashy\.py::test_passes$", out, flags=re.M), out[-3000:]
