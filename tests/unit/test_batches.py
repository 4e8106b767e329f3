"""Batches own their bytes: the JSON array framing, merging by key, splitting, and the open-batch budget."""

from __future__ import annotations

import json
import typing as t

from target_rjmetrics.batches import Batch, OpenBatches, array_bytes


def test_body_bytes_are_the_json_arrays_size_whatever_is_added_replaced_or_split() -> None:
    batch = Batch(stream="s", table="t", first_seq=0, first_position=1)
    points = {i: json.dumps({"keys": ["id"], "id": i, "pad": "x" * i}).encode() for i in range(1, 8)}
    for i, encoded in points.items():
        batch.add(i, encoded, i, i - 1)
        assert batch.body_bytes == len(batch.body())
    assert batch.replace(3, b'{"keys":["id"],"id":3}', 9, max_bytes=10_000)
    assert batch.body_bytes == len(batch.body()) and batch.duplicates == 1
    moved = batch.split_off({1, 3, 5})
    for part in (batch, moved):
        assert part.body_bytes == len(part.body()) == array_bytes(len(p) for p in part.points.values())
        assert json.loads(part.body())  # a valid JSON array
    assert sorted(t.cast("list[int]", list(moved.points))) == [1, 3, 5] and sorted(
        t.cast("list[int]", list(batch.points))
    ) == [2, 4, 6, 7]
    assert (moved.first_seq, batch.first_seq) == (0, 1)  # each part's own first record
    assert (moved.first_position, moved.last_position) == (1, 9)
    assert moved.duplicates == 0 and batch.duplicates == 1  # merged records stay with the rest


def test_a_point_fits_by_count_and_by_bytes() -> None:
    batch = Batch(stream="s", table="t", first_seq=0, first_position=1)
    batch.add(1, b"x" * 10, 1, 0)  # body: [xxxxxxxxxx] = 12 bytes
    assert batch.fits(10, max_points=2, max_bytes=23)  # 12 + 1 comma + 10
    assert not batch.fits(11, max_points=2, max_bytes=23)
    assert not batch.fits(1, max_points=1, max_bytes=1000)
    assert not batch.replace(1, b"y" * 30, 2, max_bytes=20)  # a later version that does not fit
    assert batch.points[1] == b"x" * 10


def _open_batches(max_points: int, max_bytes: int, max_open_bytes: int) -> tuple[OpenBatches, list[Batch]]:
    sealed: list[Batch] = []

    def submit(batch: Batch) -> None:
        sealed.append(batch)

    return OpenBatches(
        max_points=max_points,
        max_bytes=max_bytes,
        register=lambda _b: None,
        submit=submit,
        max_open_bytes=max_open_bytes,
    ), sealed


def test_a_full_batch_is_sealed_and_a_repeated_key_merges() -> None:
    batches, sealed = _open_batches(max_points=3, max_bytes=1000, max_open_bytes=10_000)
    merged = [batches.add("s", "t", key, b'{"v":1}', seq, seq + 1) for seq, key in enumerate([1, 2, 1, 3, 4])]
    assert merged == [False, False, True, False, False]
    assert [sorted(t.cast("list[int]", list(b.points))) for b in sealed] == [[1, 2, 3]]
    batches.seal_all()
    assert [sorted(t.cast("list[int]", list(b.points))) for b in sealed] == [[1, 2, 3], [4]]
    assert batches.open_bytes == 0


def test_open_batches_of_many_tables_stay_within_their_byte_budget() -> None:
    batches, sealed = _open_batches(max_points=100, max_bytes=100_000, max_open_bytes=1_000)
    point = b"x" * 98  # 100 bytes as a one-point array
    for seq in range(50):
        batches.add("s", f"t{seq % 25}", seq, point, seq, seq + 1)
        assert batches.open_bytes <= 1_000
    # The oldest open batch went first each time the budget was passed.
    assert [b.first_seq for b in sealed] == sorted(b.first_seq for b in sealed)
    batches.seal_all()
    assert sum(len(b.points) for b in sealed) == 50  # nothing lost on the way
