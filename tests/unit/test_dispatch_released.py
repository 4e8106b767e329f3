"""Released points: a version that waited for its key joins the next request of its table.

One sending thread and requests held until the test lets them land, so each step is certain.
"""

from __future__ import annotations

import threading
import time

from target_rjmetrics.batches import Batch
from target_rjmetrics.dispatch import Dispatcher


class Held:
    """A ``send`` that holds each request until ``land`` lets the oldest one in flight finish."""

    def __init__(self) -> None:
        self.sent: list[dict[object, bytes]] = []
        self._gates: list[threading.Event] = []
        self._lock = threading.Lock()

    def __call__(self, batch: Batch) -> float | None:
        gate = threading.Event()
        with self._lock:
            self.sent.append(dict(batch.points))
            self._gates.append(gate)
        gate.wait(10)
        return None

    def wait_sent(self, count: int) -> None:
        deadline = time.monotonic() + 5
        while len(self.sent) < count and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(self.sent) >= count, f"only {len(self.sent)} requests were sent, expected {count}"

    def land(self) -> None:
        with self._lock:
            gate = next(g for g in self._gates if not g.is_set())
        gate.set()


def _batch(dispatcher: Dispatcher, seq: int, points: dict[int, bytes]) -> Batch:
    batch = Batch(stream="s", table="t", first_seq=seq, first_position=seq + 1)
    for offset, (key, encoded) in enumerate(points.items()):
        batch.add(key, encoded, seq + offset + 1, seq + offset)
    dispatcher.register(batch)
    dispatcher.submit(batch)
    return batch


def _in_slot_then_released(held: Held, dispatcher: Dispatcher) -> None:
    """Key 0 in flight (seq 0), key 1 queued (seq 1), key 0 again (seq 2) waits; then key 0 lands."""
    _batch(dispatcher, 0, {0: b"v1"})
    held.wait_sent(1)
    _batch(dispatcher, 1, {1: b"k1"})
    _batch(dispatcher, 2, {0: b"v2"})
    assert dispatcher.waiting_in_slots == 1
    held.land()  # key 0's first version landed; the queued request (key 1) goes out
    held.wait_sent(2)
    assert dispatcher.waiting_in_slots == 1  # v2 released, not sent: the one thread is busy


def test_a_released_version_is_merged_into_a_newer_one() -> None:
    held = Held()
    dispatcher = Dispatcher(send=held, max_concurrent=1, max_queued=100, max_points=3)
    try:
        _in_slot_then_released(held, dispatcher)
        newer = _batch(dispatcher, 3, {0: b"v3", 3: b"k3"})
        assert dispatcher.waiting_in_slots == 0
        assert newer.points == {0: b"v3", 3: b"k3"} and newer.duplicates == 1
        assert newer.first_seq == 2, "the request must hold the merged version's place in the input"
        assert dispatcher.lowest_unlanded_seq() == 1
        held.land()
        held.wait_sent(3)
        held.land()
        assert dispatcher.wait(5)
        assert held.sent == [{0: b"v1"}, {1: b"k1"}, {0: b"v3", 3: b"k3"}], "v2 went out after all"
    finally:
        dispatcher.close()


def test_a_released_version_fills_the_next_request_and_keeps_its_place() -> None:
    held = Held()
    dispatcher = Dispatcher(send=held, max_concurrent=1, max_queued=100, max_points=3)
    try:
        _in_slot_then_released(held, dispatcher)
        nxt = _batch(dispatcher, 3, {5: b"k5"})
        assert nxt.points == {5: b"k5", 0: b"v2"}, "the released version did not join the next request"
        assert nxt.first_seq == 2 and dispatcher.lowest_unlanded_seq() == 1
        held.land()
        held.wait_sent(3)
        assert dispatcher.lowest_unlanded_seq() == 2, "a STATE could pass the released version before it landed"
        held.land()
        assert dispatcher.wait(5)
        assert held.sent == [{0: b"v1"}, {1: b"k1"}, {5: b"k5", 0: b"v2"}]
    finally:
        dispatcher.close()


def test_a_released_version_goes_alone_when_a_thread_is_idle() -> None:
    held = Held()
    dispatcher = Dispatcher(send=held, max_concurrent=1, max_queued=100, max_points=3)
    try:
        _batch(dispatcher, 0, {0: b"v1"})
        held.wait_sent(1)
        _batch(dispatcher, 1, {0: b"v2"})
        held.land()
        held.wait_sent(2)  # nothing else queued: the released version goes at once
        held.land()
        assert dispatcher.wait(5)
        assert held.sent == [{0: b"v1"}, {0: b"v2"}]
    finally:
        dispatcher.close()
