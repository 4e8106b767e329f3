"""Properties of the dispatcher and the STATE ledger under random submit, land and fail orders.

A fake ``send`` holds each request until the test lets it land or fail, so Hypothesis chooses
the order in which requests finish. Whatever it chooses:

- two batches of one table that share a key are never in flight together;
- an older version of a key never lands after a newer one, and each key ends at its newest;
- no STATE is written before every record that came before it has landed;
- STATE messages come out in input order, and after a failure nothing new is sent.
"""

from __future__ import annotations

import contextlib
import threading
import time
import typing as t
from dataclasses import dataclass, field

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from target_rjmetrics.batches import Batch
from target_rjmetrics.dispatch import Dispatcher, DispatcherStopped, StateLedger

KEYS = st.integers(min_value=0, max_value=5)
TABLES = st.sampled_from(["a", "b"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), TABLES, st.lists(KEYS, min_size=1, max_size=4, unique=True)),
        st.tuples(st.just("state")),
        st.tuples(st.just("finish"), st.integers(min_value=0, max_value=10), st.booleans()),
    ),
    min_size=1,
    max_size=40,
)


@dataclass
class World:
    """What the test saw: requests in flight, records landed, states written."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: dict[int, Batch] = field(default_factory=dict)
    gates: dict[int, tuple[threading.Event, list[bool]]] = field(default_factory=dict)
    started: list[Batch] = field(default_factory=list)
    landed: dict[tuple[str, int], int] = field(default_factory=dict)  # (table, key) -> newest landed seq
    record_keys: dict[int, tuple[str, int]] = field(default_factory=dict)  # seq -> (table, key)
    written: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    failed: bool = False


def _send(world: World) -> t.Callable[[Batch], float | None]:
    def send(batch: Batch) -> float | None:
        gate = threading.Event()
        outcome: list[bool] = []
        with world.lock:
            if world.failed:
                world.problems.append("a request started after a failure")
            for other in world.in_flight.values():
                if other.table == batch.table and set(other.points) & set(batch.points):
                    world.problems.append(f"batches sharing keys {set(other.points) & set(batch.points)} in flight")
            world.in_flight[id(batch)] = batch
            world.gates[id(batch)] = (gate, outcome)
            world.started.append(batch)
        gate.wait(10)
        with world.lock:
            del world.in_flight[id(batch)]
            if outcome and not outcome[0]:
                world.failed = True
                msg = "refused"
                raise RuntimeError(msg)
            # Each point's position is its record's sequence number + 1 (see the test); a version
            # that landed also covers the older versions of its key merged into it.
            for key, position in batch.point_positions.items():
                slot = (batch.table, t.cast("int", key))
                if world.landed.get(slot, -1) > position - 1:
                    world.problems.append(f"key {slot}: version #{position} landed after a newer one")
                world.landed[slot] = max(world.landed.get(slot, -1), position - 1)
        return None

    return send


def _finish(world: World, dispatcher: Dispatcher, index: int, *, ok: bool) -> None:
    """Let the ``index``-th request in flight (if any) land or fail, and wait for the dispatcher to see it."""
    with world.lock:
        candidates = list(world.in_flight.values())
        if not candidates:
            return
        batch = candidates[index % len(candidates)]
        gate, outcome = world.gates[id(batch)]
        outcome.append(ok)
        gate.set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not batch.landed and dispatcher.failure is None:
        time.sleep(0.001)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS, concurrency=st.integers(min_value=1, max_value=4))
# A version that waits in its key's slot while an older one is in flight, then goes out.
@example(operations=[("batch", "a", [0]), ("batch", "a", [0, 1]), ("state",), ("finish", 0, True)], concurrency=1)
# Three versions of a key in a row: the middle one is merged away in the slot.
@example(operations=[("batch", "a", [0]), ("batch", "a", [0]), ("batch", "a", [0]), ("state",)], concurrency=2)
def test_no_shared_keys_in_flight_no_state_ahead_states_in_order(
    operations: list[tuple[t.Any, ...]], concurrency: int
) -> None:
    world = World()
    ledgers: list[StateLedger] = []  # STATE is written as batches land, as the connector does
    dispatcher = Dispatcher(
        send=_send(world),
        max_concurrent=concurrency,
        max_queued=10_000,
        on_landed=lambda _batch: ledgers[0].emit_ready(),
        max_points=3,
    )
    states: list[int] = []  # records before each STATE, in input order

    def write(line: str) -> None:
        records_before = int(line)
        with world.lock:
            missing = [seq for seq in range(records_before) if world.landed.get(world.record_keys[seq], -1) < seq]
        if missing:
            world.problems.append(f"STATE after {records_before} records written before records {missing[:5]} landed")
        world.written.append(records_before)

    ledger = StateLedger(dispatcher, write)
    ledgers.append(ledger)
    seq = 0
    try:
        for operation in operations:
            if operation[0] == "batch":
                _, table, keys = operation
                batch = Batch(stream=table, table=table, first_seq=seq, first_position=seq + 1)
                for offset, key in enumerate(keys):
                    batch.add(key, b"{}", seq + offset + 1, seq + offset)
                    world.record_keys[seq + offset] = (table, key)
                seq += len(keys)
                dispatcher.register(batch)
                _submit(dispatcher, batch)
            elif operation[0] == "state":
                ledger.add(seq, f"{seq}")
                states.append(seq)
                ledger.emit_ready()
            else:
                _, index, ok = operation
                _finish(world, dispatcher, index, ok=ok)
                ledger.emit_ready()
        while True:  # let everything still in flight land
            with world.lock:
                pending = [world.gates[id(b)] for b in world.in_flight.values()]
            if not pending and dispatcher.wait(timeout=0.05):
                break
            for gate, outcome in pending:
                outcome.append(True)
                gate.set()
            time.sleep(0.001)
        ledger.emit_ready()
    finally:
        dispatcher.close()

    _check(world, dispatcher, states)


def _check(world: World, dispatcher: Dispatcher, states: list[int]) -> None:
    """What the run must have kept to, whatever order requests finished in."""
    assert not world.problems, world.problems[:5]
    if dispatcher.failure is None:
        newest = {slot: seq for seq, slot in sorted(world.record_keys.items())}
        assert world.landed == newest, "a key did not end at its newest version"
    assert world.written == sorted(world.written), "states came out of input order"
    assert set(world.written) <= set(states)
    if dispatcher.failure is None and states:
        assert world.written[-1] == states[-1], "the last state was never written"


def _submit(dispatcher: Dispatcher, batch: Batch) -> None:
    """Submit like the connector; after a failure nothing more is submitted."""
    with contextlib.suppress(RuntimeError, DispatcherStopped):
        dispatcher.submit(batch)
