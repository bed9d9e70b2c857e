"""Process memory settings, applied once by `core/__init__.py`.

The web server serves every session from its own thread, and glibc gives each thread that allocates its own
malloc arena (up to 8 per core), each keeping freed memory for reuse: resident memory then grows with the number of
sessions that ever ran, not with what they hold. Two arenas (this app's work is mostly native code that releases the
GIL: LiteRT, MediaPipe, Pillow) keep that growth flat. The same effect as starting Python with
MALLOC_ARENA_MAX=2, which a user's own setting of that variable overrides.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number for the arena cap (malloc.h)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads created from now on; False where there is no glibc or the user set
    MALLOC_ARENA_MAX themselves."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
