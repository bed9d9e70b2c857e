"""The server's shared slots: one evaluation at a time, and a few photo analyses at once, so that one visitor
cannot take the whole machine. Held with a `with` block; a slot that is taken raises Busy (pages show it as a
warning, not an error).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from core.errors import UserError


class Busy(UserError):
    """A shared resource (the evaluation slot, the photo analysis slots) is taken; the message says so (pages show
    it as a warning: trying again later is all it asks)."""


PHOTO_ANALYSES_AT_ONCE = 2  # decoding and detection peak at a few hundred MB per photo: two bound the server
PHOTO_WAIT_SECONDS = 30.0

_evaluation_lock = threading.Lock()
_photo_slots = threading.BoundedSemaphore(PHOTO_ANALYSES_AT_ONCE)


def take_evaluation_slot() -> Callable[[], None]:
    """Take the server's one evaluation slot, or raise Busy at once (a visitor should not wait minutes); returns
    the function that frees it (a job's thread calls it when it ends)."""
    if not _evaluation_lock.acquire(blocking=False):
        raise Busy("Another evaluation is running on this server: try again when it has finished.")
    return _evaluation_lock.release


@contextlib.contextmanager
def evaluation_slot() -> Iterator[None]:
    """Hold the server's one evaluation slot for a `with` block, or raise Busy at once."""
    release = take_evaluation_slot()
    try:
        yield
    finally:
        release()


@contextlib.contextmanager
def photo_analysis_slot(timeout_s: float = PHOTO_WAIT_SECONDS) -> Iterator[None]:
    """Hold one of the server's PHOTO_ANALYSES_AT_ONCE slots for decoding and analysing one photo; waits up to
    `timeout_s` for one to free, then raises Busy."""
    if not _photo_slots.acquire(timeout=timeout_s):
        raise Busy("The server is busy analysing other photos: try again in a moment.")
    try:
        yield
    finally:
        _photo_slots.release()
