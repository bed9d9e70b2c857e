"""Public visitors' runs (core.public_runs): only the starting session controls its job and sees its runs, and the
quota deletes the oldest finished public runs only."""

from __future__ import annotations

import os
import time
from pathlib import Path

from core import access, public_runs
from tests.support import write_run


def test_only_the_starting_session_controls_a_public_job():
    public, workbench = access.public_profile(), access.WORKBENCH_PROFILE
    assert public_runs.can_control_job(public, "session-a", "session-a")
    assert not public_runs.can_control_job(public, "session-a", "session-b")
    assert not public_runs.can_control_job(public, None, None)
    assert public_runs.can_control_job(workbench, "session-a", "session-b")
    assert public_runs.visible_runs(["r1", "r2", "r3"], public, {"r2"}) == ["r2"]
    assert public_runs.visible_runs(["r1", "r2"], workbench) == ["r1", "r2"]


def _run(root: Path, name: str, age_s: float, public: bool = True, status: str = "finished") -> Path:
    run = write_run(root, name, config={}, metrics={"status": status})
    if public:
        public_runs.mark_public_run(run, "session-a")
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
        deleted = public_runs.enforce_runs_quota(tmp_path, 3)
    finally:
        lock.close()
    assert deleted == runs[:3]  # the oldest finished public runs; the live one is skipped, not counted out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, live.name, runs[3].name, runs[4].name])
    assert public_runs.run_owner(runs[4]) == "session-a" and public_runs.run_owner(mine) is None
    assert public_runs.enforce_runs_quota(tmp_path / "absent", 3) == []
