"""Batches own their bytes: the JSON array framing, merging by key, and the open-batch budget."""

from __future__ import annotations

import decimal
import json
import typing as t

from target_rjmetrics.batches import Batch, OpenBatches, Point, array_bytes
from target_rjmetrics.points import key_part, order_key


def _point(key: t.Any, encoded: bytes, seq: int) -> Point:
    return Point(key, order_key(key), encoded, seq + 1, seq)


def test_body_bytes_are_the_json_arrays_size_whatever_is_added_replaced_or_removed() -> None:
    batch = Batch("s", "t")
    points = {i: json.dumps({"keys": ["id"], "id": i, "pad": "x" * i}).encode() for i in range(1, 8)}
    for i, encoded in points.items():
        batch.add(_point(i, encoded, i - 1))
        assert batch.body_bytes == len(batch.body())
    assert batch.replace(_point(3, b'{"keys":["id"],"id":3}', 9), max_bytes=10_000)
    assert batch.body_bytes == len(batch.body()) and batch.merged == 1
    for order in (1, 5):
        batch.remove(order)
        assert batch.body_bytes == len(batch.body()) == array_bytes(len(p.encoded) for p in batch.points.values())
    assert json.loads(batch.body())  # a valid JSON array
    assert batch.first_seq == 1 and batch.records == 6  # 5 points, one of which merged an older version
    assert batch.positions() == "records #2-#10 of stream 's' (table 't')"


def test_a_newer_version_takes_the_older_ones_place_in_the_input() -> None:
    batch = Batch("s", "t")
    batch.add(_point(1, b"v0", 0))
    assert batch.replace(_point(1, b"v5", 5), max_bytes=100)
    (point,) = batch.points.values()
    assert (point.encoded, point.seq, point.first_position, point.position, point.merged) == (b"v5", 0, 1, 6, 1)


def test_a_point_fits_by_count_and_by_bytes() -> None:
    batch = Batch("s", "t")
    batch.add(_point(1, b"x" * 10, 0))  # body: [xxxxxxxxxx] = 12 bytes
    assert batch.fits(10, max_points=2, max_bytes=23)  # 12 + 1 comma + 10
    assert not batch.fits(11, max_points=2, max_bytes=23)
    assert not batch.fits(1, max_points=1, max_bytes=1000)
    assert not batch.replace(_point(1, b"y" * 30, 1), max_bytes=20)  # a later version that does not fit
    assert batch.points[1].encoded == b"x" * 10


def _open_batches(max_points: int, max_bytes: int, max_open_bytes: int) -> tuple[OpenBatches, list[Batch]]:
    sealed: list[Batch] = []
    return OpenBatches(
        max_points=max_points,
        max_bytes=max_bytes,
        on_open=lambda _table, _seq: None,
        seal=sealed.append,
        max_open_bytes=max_open_bytes,
    ), sealed


def _keys(batch: Batch) -> list[t.Any]:
    return sorted(p.key for p in batch.points.values())


def test_a_full_batch_is_sealed_and_a_repeated_key_merges() -> None:
    batches, sealed = _open_batches(max_points=3, max_bytes=1000, max_open_bytes=10_000)
    merged = [batches.add("s", "t", key, b'{"v":1}', seq, seq + 1) for seq, key in enumerate([1, 2, 1, 3, 4])]
    assert merged == [False, False, True, False, False]
    assert [_keys(b) for b in sealed] == [[1, 2, 3]]
    batches.seal_all()
    assert [_keys(b) for b in sealed] == [[1, 2, 3], [4]]
    assert batches.open_bytes == 0


def test_keys_one_as_doubles_never_share_a_request_and_never_merge() -> None:
    batches, sealed = _open_batches(max_points=100, max_bytes=10_000, max_open_bytes=100_000)
    a, b = key_part(decimal.Decimal("0.1")), key_part(decimal.Decimal("0.1000000000000000055511151231257827"))
    assert [batches.add("s", "t", key, b"{}", seq, seq + 1) for seq, key in enumerate([a, 7, b])] == [False] * 3
    batches.seal_all()
    assert [_keys(batch) for batch in sealed] == [[a, 7], [b]], "the second alias must wait for the first"


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
