"""core/memory.py: the malloc arena cap is applied on glibc and leaves a user's own setting alone."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from core import memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_arena_cap_is_applied_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert memory.limit_malloc_arenas() is True


def test_a_users_malloc_arena_max_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert memory.limit_malloc_arenas() is False


# Run in a fresh interpreter: in a process that has run other tests, malloc may serve the block from a free chunk
# left in its arena by earlier work (the threshold applies only to new memory), and nothing then leaves the process.
_FREED_BLOCK = """
import ctypes, ctypes.util, sys
from pathlib import Path
def rss_kb():
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0])
if sys.argv[1] == "fixed":  # importing core applies it, as in the server; "default" never imports core
    from core import memory
    assert memory.fix_mmap_threshold() is True
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 6 << 20
libc.free(libc.malloc(size))  # without the fix, this raises glibc's threshold above `size`
block = libc.malloc(size)
ctypes.memset(block, 1, size)
touched = rss_kb()
libc.free(block)
print(touched - rss_kb())
"""


def _kb_returned(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run([sys.executable, "-c", _FREED_BLOCK, mode], cwd=Path(__file__).parents[1], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_a_freed_photo_sized_buffer_goes_back_to_the_system():
    """With the fixed threshold, a 6 MB block freed after another one of its size does not stay resident; without
    it, it does (the case the fix exists for)."""
    assert _kb_returned("fixed") > 5 * 1024  # the 6 MB left the process
    assert _kb_returned("default") < 1024


def test_a_users_mmap_threshold_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert memory.fix_mmap_threshold() is False


def _rss_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])
