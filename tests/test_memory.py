"""core/memory.py: the malloc arena cap is applied on glibc and leaves a user's own setting alone."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
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


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_a_freed_photo_sized_buffer_goes_back_to_the_system(monkeypatch):
    """With the fixed threshold, a 6 MB block freed after another one of its size does not stay resident."""
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert memory.fix_mmap_threshold() is True
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 6 << 20
    libc.free(libc.malloc(size))  # without the fix, this raises glibc's threshold above `size`
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    touched = _rss_kb()
    libc.free(block)
    assert touched - _rss_kb() > 5 * 1024  # the 6 MB left the process


def test_a_users_mmap_threshold_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert memory.fix_mmap_threshold() is False


def _rss_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])
