"""Process memory settings, applied once by `core/__init__.py`.

The web server serves every session from its own thread, and glibc gives each thread that allocates its own
malloc arena (up to 8 per core), each keeping freed memory for reuse: resident memory then grows with the number of
sessions that ever ran, not with what they hold. Two arenas (this app's work is mostly native code that releases the
GIL: LiteRT, MediaPipe, Pillow) keep that growth flat. The same effect as starting Python with
MALLOC_ARENA_MAX=2, which a user's own setting of that variable overrides.

Second, big blocks go back to the system when freed. glibc serves a block above its mmap threshold with its own
mapping, but raises the threshold to the size of every such block freed (up to 32 MB): after the first decoded
photo (1600×1200 RGB is 5.8 MB) every later one lands in an arena, where a freed block in the middle stays resident.
A fixed 1 MB threshold (MALLOC_MMAP_THRESHOLD_ overrides it) keeps per-photo buffers out of the arenas.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

MALLOC_ARENAS = 2
MMAP_THRESHOLD_BYTES = 1 << 20
# glibc's mallopt parameter numbers (malloc.h)
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3


@functools.cache  # find_library runs `ldconfig -p`: once per process, not once per setting
def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


def _mallopt(parameter: int, value: int, user_variable: str) -> bool:
    """One mallopt setting; False where there is no glibc (musl, macOS: nothing to tune) or the user set the
    matching environment variable themselves."""
    if user_variable in os.environ or (libc := _libc()) is None:
        return False
    return bool(libc.mallopt(parameter, value))


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads created from now on."""
    return _mallopt(_M_ARENA_MAX, arenas, "MALLOC_ARENA_MAX")


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve blocks from `threshold` bytes up with their own mapping, returned to the system when freed."""
    return _mallopt(_M_MMAP_THRESHOLD, threshold, "MALLOC_MMAP_THRESHOLD_")


def tune_malloc() -> None:
    limit_malloc_arenas()
    fix_mmap_threshold()
