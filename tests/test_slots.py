"""The server's shared slots (core.slots): one evaluation at a time, at most two photo analyses at once, Busy when
one is taken."""

from __future__ import annotations

import threading
import time

import pytest

from core import slots


def test_one_evaluation_at_a_time():
    with slots.evaluation_slot(), pytest.raises(slots.Busy, match="Another evaluation"), slots.evaluation_slot():
        pass
    with pytest.raises(RuntimeError), slots.evaluation_slot():
        raise RuntimeError("an evaluation that fails still frees the slot")
    with slots.evaluation_slot():
        pass


def test_at_most_two_photo_analyses_at_once():
    active, peak, lock = [0], [0], threading.Lock()
    busy = []

    def analyse():
        try:
            with slots.photo_analysis_slot(timeout_s=5):
                with lock:
                    active[0] += 1
                    peak[0] = max(peak[0], active[0])
                time.sleep(0.2)
                with lock:
                    active[0] -= 1
        except slots.Busy:
            busy.append(True)

    threads = [threading.Thread(target=analyse) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == slots.PHOTO_ANALYSES_AT_ONCE == 2 and not busy
    with slots.photo_analysis_slot(), slots.photo_analysis_slot(), pytest.raises(slots.Busy, match="busy"), \
            slots.photo_analysis_slot(timeout_s=0.05):
        pass


def test_seats_are_held_by_use_and_freed_by_silence_or_release():
    now = [0.0]
    seats = slots.Seats(2, lease_s=5.0, clock=lambda: now[0])
    a, b, c = object(), object(), object()
    assert seats.hold(a) and seats.hold(b) and not seats.free_for(c) and not seats.hold(c)
    assert seats.hold(a) and seats.free_for(a)  # a holder keeps its seat
    now[0] = 4.0
    assert seats.hold(a)
    now[0] = 6.0  # b silent for 6 s: its seat is free again; a held it 2 s ago
    assert seats.hold(c) and not seats.hold(b)
    seats.release(a)
    assert seats.hold(b)
