"""Atomic writes (and forgiving reads): write beside the target, flush, then `os.replace`, so a crash
mid-save never leaves a half-written file where a good one was.

`tempfile.mkstemp` creates files readable by the owner only; the result gets the mode a plain `open()` would
have given it (the old file's mode when replacing one, else 0666 minus the umask), so other tools and users
can read runs and caches as before."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

# What atomic_path names its temporary files: "." + target name + "." + mkstemp's 8 random characters + suffix
# (".tmp" unless the writer asked for one: ".keras", ".npy"). A process killed mid-save leaves one behind;
# core.housekeeping recognises them by this pattern (and their age) and removes them.
TEMP_SUFFIXES = (".tmp", ".keras", ".npy")
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}(?:" + "|".join(re.escape(s) for s in TEMP_SUFFIXES) + ")$")


def is_atomic_temp(name: str) -> bool:
    """Whether a file name looks like one of atomic_path's temporary files (alive or left by a crash)."""
    return _TEMP_NAME.match(name) is not None


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any writer thread exists.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _final_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; not every platform can open a directory, which only costs durability."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces the target, on error it is removed.
    `suffix` matters to writers that check the extension (Keras wants `.keras`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, _final_mode(target))
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_save_npy(target: str | Path, array) -> None:
    import numpy as np
    with atomic_path(target, suffix=".npy") as tmp:
        np.save(tmp, array)


def atomic_save_model(model, target: str | Path) -> None:
    with atomic_path(target, suffix=".keras") as tmp:
        model.save(tmp)


def read_json_object(path: Path) -> dict | None:
    """A JSON object file's content, or None when it is missing, unreadable, half-written by a crashed older
    version or not an object: callers treat all of those as "no such file" and say so their own way."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
