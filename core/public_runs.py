"""Runs started by public visitors: each is marked with its owner when its folder is made, only that session may
watch or stop its job and list its runs, and the oldest finished ones are deleted beyond a quota.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from core.access import Profile
from core.atomic import atomic_write_text, read_json_object
from core.housekeeping import run_in_progress

log = logging.getLogger(__name__)


def can_control_job(profile: Profile, job_owner: str | None, session_owner: str | None) -> bool:
    """Whether a session may stop (and watch) a job: in the workbench always; in public only the session that
    started it."""
    return not profile.public or (job_owner is not None and job_owner == session_owner)


def visible_runs(run_names, profile: Profile, owned: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The runs a session may list: all in the workbench; in public only those its own jobs wrote."""
    return [name for name in run_names if not profile.public or name in owned]


def may_manage_run(profile: Profile, run_dir: str | Path, session_owner: str | None) -> bool:
    """Whether a session may rename or delete a run: in the workbench any; in public only its own public runs
    (never the operator's, never another visitor's)."""
    return not profile.public or (session_owner is not None and run_owner(run_dir) == session_owner)


PUBLIC_RUN_MARKER = "public.json"  # written into a run folder started by a public session


def mark_public_run(run_dir: str | Path, owner: str) -> None:
    """Label a run as a public visitor's: enforce_runs_quota may delete it, and only `owner` sees it."""
    atomic_write_text(Path(run_dir) / PUBLIC_RUN_MARKER, json.dumps({"owner": owner}) + "\n")


def run_owner(run_dir: str | Path) -> str | None:
    marker = read_json_object(Path(run_dir) / PUBLIC_RUN_MARKER)
    return None if marker is None else str(marker.get("owner"))


def enforce_runs_quota(runs_dir: str | Path, max_runs: int) -> list[Path]:
    """Delete the oldest public runs (marked by `mark_public_run`) until at most `max_runs` remain; runs still in
    progress are kept and so is every run not marked public. Call with `limits.max_runs - 1` before starting a
    public job. Returns the folders deleted."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    public = sorted((run for run in runs_dir.iterdir() if run.is_dir() and not run.is_symlink()
                     and (run / PUBLIC_RUN_MARKER).is_file()), key=_age_key)
    deleted = []
    for run in public:
        if len(public) - len(deleted) <= max(max_runs, 0):
            break
        if run_in_progress(run):
            continue
        shutil.rmtree(run, ignore_errors=True)
        log.info("Runs quota: deleted public run %s", run.name)
        deleted.append(run)
    return deleted


def _age_key(run: Path) -> tuple[float, str]:
    try:
        return (run / PUBLIC_RUN_MARKER).stat().st_mtime, run.name
    except OSError:
        return 0.0, run.name
