"""The dispatcher keeps keys of a batch with an abandoned try busy until a late apply can no longer happen."""

from __future__ import annotations

import threading
import time
import typing as t

from target_rjmetrics.batches import Batch
from target_rjmetrics.dispatch import Dispatcher


def _batch(table: str, keys: list[int], seq: int) -> Batch:
    batch = Batch(stream=table, table=table, first_seq=seq, first_position=seq + 1)
    for key in keys:
        batch.add(key, b'{"id":%d}' % key, seq + 1, seq)
    batch.last_position = seq + 1
    return batch


def _sorted_keys(batch: Batch) -> list[int]:
    """The batch's keys (this test's keys are ints), sorted."""
    return sorted(t.cast("list[int]", list(batch.points)))


def test_a_newer_version_of_a_key_waits_until_the_abandoned_try_can_no_longer_apply() -> None:
    started: dict[str, float] = {}
    lock = threading.Lock()
    window = 0.6

    def send(batch: Batch) -> float | None:
        with lock:
            started[batch.stream + str(_sorted_keys(batch))] = time.monotonic()
        # The first batch had a try whose answer never came: it may apply until `window` from now.
        return time.monotonic() + window if _sorted_keys(batch) == [1, 2] else None

    dispatcher = Dispatcher(send=send, max_concurrent=4, max_queued=8)
    try:
        first, newer, other = _batch("t", [1, 2], 0), _batch("t", [2], 2), _batch("t", [3], 3)
        for batch in (first, newer, other):
            dispatcher.register(batch)
        dispatcher.submit(first)
        deadline = time.monotonic() + 5
        while not first.landed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.landed
        landed_at = time.monotonic()
        dispatcher.submit(newer)  # key 2 again: must wait out the window
        dispatcher.submit(other)  # key 3: free to go at once
        assert dispatcher.wait(timeout=5)
        # The records of the first batch count as landed at once (STATE may pass them) ...
        assert dispatcher.lowest_unlanded_seq() == float("inf")
        # ... but the newer version of key 2 went out only after the window had passed.
        assert started["t[2]"] >= started["t[1, 2]"] + window - 0.05
        assert started["t[3]"] < landed_at + window / 2
    finally:
        dispatcher.close()


def test_without_an_abandoned_try_nothing_waits() -> None:
    sent: list[bytes] = []

    def send(batch: Batch) -> float | None:
        sent.append(batch.body())
        return None

    dispatcher = Dispatcher(send=send, max_concurrent=1, max_queued=8)
    try:
        began = time.monotonic()
        for i in range(20):  # twenty versions of key 1, each sent as soon as the key is free
            batch = Batch(stream="t", table="t", first_seq=i, first_position=i + 1)
            batch.add(1, b'{"v":%d}' % i, i + 1, i)
            dispatcher.register(batch)
            dispatcher.submit(batch)
        assert dispatcher.wait(timeout=5)
        assert time.monotonic() - began < 2
        # Versions that found the key busy waited in its slot (later ones replacing them), and
        # the last version went out last.
        assert sent[0] == b'[{"v":0}]' and sent[-1] == b'[{"v":19}]'
        assert dispatcher.lowest_unlanded_seq() == float("inf")
    finally:
        dispatcher.close()
