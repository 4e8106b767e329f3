"""The key-order core as a state machine: thousands of interleavings, no threads, no clock.

Hypothesis drives :class:`~target_rjmetrics.keyorder.KeyOrder` (fed by the run's own
:class:`~target_rjmetrics.batches.OpenBatches`) through random records, seals, takes, landings,
failures, late applies and the passing of time, against a model of the API that reads keys as
doubles (the pessimistic reading of the contract: ``0.1`` and ``0.1000000000000000055511151231257827``
are one row there). Whatever the order:

- no two batches holding one order key of a table are in flight together;
- no older version of a row lands after a newer one, late applies of abandoned tries included;
- every record before the lowest unlanded place has landed (so STATE never runs ahead);
- when everything has been let land, every key ends at its newest version and nothing waits.
"""

from __future__ import annotations

import decimal
import json
import typing as t

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from target_rjmetrics.batches import Batch, OpenBatches
from target_rjmetrics.keyorder import KeyOrder
from target_rjmetrics.points import key_part
from target_rjmetrics.state import StateLedger

D = decimal.Decimal
#: Key values, with pairs the API may read as one number (equal as doubles) but that are not
#: certainly one key, so they may never be merged: 0.1 / 0.1000000000000000055511151231257827,
#: 12345678901234567.0 / 12345678901234568, 2**53 / 2**53 + 1; and true, never the number 1.
KEY_VALUES: list[t.Any] = [
    1,
    D("1.0"),
    True,
    D("0.1"),
    D("0.1000000000000000055511151231257827"),
    D("12345678901234567.0"),
    12345678901234568,
    2**53,
    2**53 + 1,
    "a",
]
TABLES = ["users", "orders"]


def api_row(key: t.Any) -> t.Any:
    """The row a key names in the model of the API, which reads every number as a double."""
    if isinstance(key, tuple):
        return tuple(api_row(part) for part in key)
    if isinstance(key, (int, decimal.Decimal)) and not isinstance(key, bool):
        return float(key)
    return key


class KeyOrderMachine(RuleBasedStateMachine):
    """Records in, requests out, the API's table per order key checked at every landing."""

    def __init__(self) -> None:
        super().__init__()
        self.core = KeyOrder(max_points=3, max_bytes=10_000)
        self.open = OpenBatches(max_points=3, max_bytes=10_000, on_open=self.core.open, seal=self.core.seal)
        self.now = 0.0
        self.seq = 0
        self.records: list[tuple[str, t.Any, t.Any]] = []  # (table, key, order) by seq
        self.in_flight: list[Batch] = []
        self.landed_upto: dict[tuple[str, t.Any], int] = {}  # (table, key) -> newest version landed
        self.api: dict[tuple[str, t.Any], int] = {}  # (table, order key) -> version stored (doubles reading)
        self.ghosts: list[tuple[float, Batch]] = []  # abandoned tries the API may apply until then
        self.failed = False
        self.ledger = StateLedger(max_bytes=40)  # small: thinning is exercised too
        self.states: list[int] = []  # records before each STATE, in input order
        self.written: list[int] = []

    # -- the API's side -----------------------------------------------------------------------

    def _apply(self, batch: Batch, *, ghost: bool = False) -> None:
        for point in batch.points.values():
            version = json.loads(point.encoded)["seq"]
            row = (batch.table, api_row(point.key))
            stored = self.api.get(row, -1)
            assert version >= stored, f"{'a late apply of ' if ghost else ''}version {version} of {row} after {stored}"
            self.api[row] = version
            if not ghost:
                key = (batch.table, point.key)
                self.landed_upto[key] = max(self.landed_upto.get(key, -1), version)

    # -- rules --------------------------------------------------------------------------------

    @rule(table=st.sampled_from(TABLES), value=st.sampled_from(KEY_VALUES))
    def record(self, table: str, value: t.Any) -> None:
        key = key_part(value)
        encoded = json.dumps({"seq": self.seq}).encode()
        self.records.append((table, key, api_row(key)))
        self.open.add(table, table, key, encoded, self.seq, self.seq + 1)
        self.seq += 1

    @rule()
    def state(self) -> None:
        self.states.append(self.seq)
        self.ledger.add(self.seq, f"{self.seq:05d}", self.now)

    @rule(table=st.sampled_from(TABLES))
    def seal(self, table: str) -> None:
        self.open.seal(table)

    @rule()
    def take(self) -> None:
        batch = self.core.take(self.now)
        if batch is None:
            return
        assert not self.failed, "a batch was taken after a failure"
        rows = {api_row(p.key) for p in batch.points.values()}
        for other in self.in_flight:
            shared = rows & {api_row(p.key) for p in other.points.values()} if other.table == batch.table else set()
            assert not shared, f"rows {shared} of {batch.table} in flight twice"
        self.in_flight.append(batch)

    @precondition(lambda self: self.in_flight)
    @rule(index=st.integers(min_value=0), late=st.sampled_from([None, 0.5, 3.0]))
    def land(self, index: int, late: float | None) -> None:
        batch = self.in_flight.pop(index % len(self.in_flight))
        self._apply(batch)
        until = None if late is None else self.now + late
        if until is not None:
            self.ghosts.append((until, batch))
        self.core.landed(batch, self.now, until)

    @precondition(lambda self: self.in_flight)
    @rule(index=st.integers(min_value=0))
    def fail(self, index: int) -> None:
        batch = self.in_flight.pop(index % len(self.in_flight))
        self.core.failed(batch)
        self.failed = True

    @rule(seconds=st.sampled_from([0.25, 1.0, 4.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        # An abandoned try is applied at the last moment it may be: the worst case.
        for until, batch in [g for g in self.ghosts if g[0] <= self.now]:
            self._apply(batch, ghost=True)
            self.ghosts.remove((until, batch))
        self.core.tick(self.now)

    # -- invariants ---------------------------------------------------------------------------

    def _record_landed(self, seq: int) -> bool:
        table, key, _ = self.records[seq]
        return self.landed_upto.get((table, key), -1) >= seq

    @invariant()
    def no_state_runs_ahead(self) -> None:
        lowest = self.core.lowest_unlanded()
        upto = min(len(self.records), int(lowest) if lowest != float("inf") else len(self.records))
        ahead = [seq for seq in range(upto) if not self._record_landed(seq)]
        assert not ahead, f"records {ahead[:5]} below the lowest unlanded place {lowest} have not landed"

    @invariant()
    def states_come_out_in_order_once_their_records_landed(self) -> None:
        line = self.ledger.ready(self.core.lowest_unlanded())
        if line is None:
            return
        records_before = int(line)
        missing = [seq for seq in range(records_before) if not self._record_landed(seq)]
        assert not missing, f"STATE after {records_before} records ready before records {missing[:5]} landed"
        assert not self.written or records_before > self.written[-1], "a STATE came out of order, or twice"
        assert records_before in self.states
        self.written.append(records_before)

    def teardown(self) -> None:
        if self.failed:
            return
        # Let everything land, with time passing for cooling keys, until nothing is left.
        self.open.seal_all()
        for _ in range(1000):
            self.now += 4.0
            for until, ghost in [g for g in self.ghosts if g[0] <= self.now]:
                self._apply(ghost, ghost=True)
                self.ghosts.remove((until, ghost))
            batch = self.core.take(self.now)
            if batch is not None:
                self._apply(batch)
                self.core.landed(batch, self.now)
            elif self.core.settled and not self.in_flight:
                break
            if self.in_flight:
                late = self.in_flight.pop()
                self._apply(late)
                self.core.landed(late, self.now)
        assert self.core.settled, "points were left waiting"
        assert self.core.lowest_unlanded() == float("inf")
        newest: dict[tuple[str, t.Any], int] = {}
        for seq, (table, key, _) in enumerate(self.records):
            newest[(table, key)] = seq
        assert self.landed_upto == newest, "a key did not end at its newest version"
        self.states_come_out_in_order_once_their_records_landed()
        if self.states:
            assert self.written and self.written[-1] == self.states[-1], "the last STATE was never written"


KeyOrderMachine.TestCase.settings = settings(max_examples=400, stateful_step_count=40, deadline=None)
test_key_order_state_machine = KeyOrderMachine.TestCase


# -- the same rules, step by step, for the cases worth naming ------------------------------------


class Steps:
    """One table's records fed to the core one batch at a time, as the run does."""

    def __init__(self, max_points: int = 3) -> None:
        self.core = KeyOrder(max_points=max_points, max_bytes=10_000)
        self.open = OpenBatches(max_points=max_points, max_bytes=10_000, on_open=self.core.open, seal=self.core.seal)
        self.seq = 0

    def batch(self, *values: t.Any) -> None:
        """Records of these key values (each carrying its own seq), then the batch sealed."""
        for value in values:
            self.open.add("t", "t", key_part(value), json.dumps({"seq": self.seq}).encode(), self.seq, self.seq + 1)
            self.seq += 1
        self.open.seal("t")

    def take(self) -> Batch:
        batch = self.core.take(0.0)
        assert batch is not None, "nothing could be taken"
        return batch

    def versions(self, batch: Batch) -> list[tuple[t.Any, int]]:
        return [(p.key, json.loads(p.encoded)["seq"]) for p in batch.points.values()]


A, B = D("0.1"), D("0.1000000000000000055511151231257827")  # one number as doubles, two keys exactly


def test_a_version_waits_in_its_slot_then_goes_alone_when_nothing_else_is_ready() -> None:
    steps = Steps()
    steps.batch(1)
    first = steps.take()
    steps.batch(1)
    assert steps.core.take(0.0) is None and steps.core.waiting == 1
    steps.core.landed(first, 0.0)
    assert steps.versions(steps.take()) == [(1, 1)]


def test_a_released_version_is_merged_into_a_newer_one_and_keeps_its_place() -> None:
    steps = Steps()
    steps.batch(0)
    first = steps.take()
    steps.batch(0)  # seq 1 waits in the slot
    steps.core.landed(first, 0.0)  # ... and is released
    steps.batch(0, 3)  # a newer version of 0 merges the released one
    batch = steps.take()
    assert sorted(steps.versions(batch)) == [(0, 2), (3, 3)]
    assert batch.first_seq == 1 and batch.merged == 1, "the merged version's place in the input was lost"
    assert steps.core.lowest_unlanded() == 1


def test_a_released_version_fills_the_next_request_of_its_table() -> None:
    steps = Steps()
    steps.batch(0)
    first = steps.take()
    steps.batch(0)  # waits
    steps.core.landed(first, 0.0)
    steps.batch(5)  # the released version joins it
    assert steps.versions(steps.take()) == [(5, 2), (0, 1)]


def test_keys_one_as_doubles_are_never_merged_and_go_in_input_order() -> None:
    steps = Steps()
    steps.batch(A, B)  # aliases never share a request: A is sealed alone, B goes next
    first = steps.take()
    assert steps.versions(first) == [(key_part(A), 0)]
    assert steps.core.take(0.0) is None, "B went out while A, one number with it as a double, was in flight"
    steps.core.landed(first, 0.0)
    assert steps.versions(steps.take()) == [(key_part(B), 1)]


def test_a_newer_version_behind_an_alias_moves_the_alias_to_the_front() -> None:
    steps = Steps()
    steps.batch(A)
    first = steps.take()
    steps.batch(B)  # slot: [B1]
    steps.batch(A)  # slot: [B1, A2]
    steps.core.landed(first, 0.0)  # B1 released
    steps.batch(B)  # B3 merges B1 and goes behind A2: A2 is now at the head, and released
    order = []
    for _ in range(3):
        batch = steps.core.take(0.0)
        if batch is None:
            break
        order += steps.versions(batch)
        steps.core.landed(batch, 0.0)
    assert order == [(key_part(A), 2), (key_part(B), 3)], order
    assert steps.core.settled and steps.core.lowest_unlanded() == float("inf")


def test_keys_stay_busy_until_a_late_apply_can_no_longer_happen() -> None:
    steps = Steps()
    steps.batch(1, 2)
    first = steps.take()
    steps.core.landed(first, now=10.0, late_apply_until=12.0)
    assert steps.core.lowest_unlanded() == float("inf"), "the records landed: STATE may pass them"
    steps.batch(2, 3)
    assert steps.versions(steps.take()) == [(3, 3)], "key 3 is free and goes at once"
    assert steps.core.take(11.9) is None, "key 2 went out while the abandoned try could still apply"
    assert steps.core.next_wake() == 12.0
    assert steps.versions(steps.core.take(12.0) or Batch("t", "t")) == [(2, 2)]


def test_after_a_failure_nothing_more_is_taken_and_the_records_stay_unlanded() -> None:
    steps = Steps()
    steps.batch(1)
    steps.batch(2)
    first = steps.take()
    steps.core.failed(first)
    assert steps.core.take(0.0) is None
    assert steps.core.lowest_unlanded() == 0
