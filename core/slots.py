"""The server's shared slots: one evaluation at a time, a few photo analyses at once and, on a public server, a
few live streams, so that one visitor cannot take the whole machine. Held with a `with` block; a slot that is
taken raises Busy (pages show it as a warning, not an error). Live streams hold `Seats` frame by frame instead:
a stream ends without telling the server.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from core.errors import UserError


class Busy(UserError):
    """A shared resource (the evaluation slot, the photo analysis slots) is taken; the message says so (pages show
    it as a warning: trying again later is all it asks)."""


PHOTO_ANALYSES_AT_ONCE = 2  # decoding and detection peak at a few hundred MB per photo: two bound the server
PHOTO_WAIT_SECONDS = 30.0
LIVE_STREAMS_AT_ONCE = 2  # a stream analyses up to ~10 frames a second: two keep a 2-core server answering pages
LIVE_LEASE_SECONDS = 5.0  # a stream that sent no frame for this long has ended (the component says no goodbye)
LIVE_BUSY = (f"The server is already analysing {LIVE_STREAMS_AT_ONCE} live streams, its most at once: try again "
             "in a minute, or use the **Upload** or **Camera** tab, which always answer.")

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


class Seats:
    """A few seats held by whoever keeps using them: `hold(holder)` takes or keeps one and says whether it has
    one; a seat not held for `lease_s` is free again (a live stream ends without telling the server)."""

    def __init__(self, count: int, lease_s: float, clock: Callable[[], float] = time.monotonic):
        self.count, self.lease_s, self._clock = count, lease_s, clock
        self._lock = threading.Lock()
        self._last_seen: dict[int, float] = {}  # id(holder) → when it last held its seat

    def _expire(self, now: float) -> None:
        self._last_seen = {h: t for h, t in self._last_seen.items() if now - t < self.lease_s}

    def hold(self, holder: object) -> bool:
        """Take or keep a seat for `holder`; False when every seat is someone else's."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            if id(holder) not in self._last_seen and len(self._last_seen) >= self.count:
                return False
            self._last_seen[id(holder)] = now
            return True

    def free_for(self, holder: object) -> bool:
        """Whether `hold(holder)` would succeed now (without taking the seat)."""
        with self._lock:
            self._expire(self._clock())
            return id(holder) in self._last_seen or len(self._last_seen) < self.count

    def release(self, holder: object) -> None:
        with self._lock:
            self._last_seen.pop(id(holder), None)


live_seats = Seats(LIVE_STREAMS_AT_ONCE, LIVE_LEASE_SECONDS)  # used on a public server only
