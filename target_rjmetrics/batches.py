"""Points and batches: the data points of one future request, and the batches still filling.

A :class:`Point` is one record's data point with two identities (see the glossary in
CONTRIBUTING.md). Its *key* is exact: two points with equal keys are surely one row, so a newer
version may replace an older one (the older is *merged*). Its *order key* is coarse: equal
whenever the API could read two keys as one row (numbers equal as doubles), so versions with
equal order keys must reach the API in input order, but neither may replace the other.

A :class:`Batch` holds at most one point per order key and owns the byte size of the JSON array
its points encode to. :class:`OpenBatches` keeps the batch still filling for each table and
decides when it is sealed: when the next point does not fit, when the next point's order key is
in the batch under another key, on demand (a STATE waiting, the end of input), or when the open
batches of all tables together hold more than ``OPEN_BATCHES_MAX_BYTES``.
"""

from __future__ import annotations

import typing as t

from target_rjmetrics.points import EXACT_INT, order_key

if t.TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable

#: Most bytes of encoded points held in open batches across all streams. Over it, the open
#: batch holding the oldest record is sealed as it is, so memory stays bounded however many
#: streams are open at once (sealed batches are bounded by the sender's back-pressure).
OPEN_BATCHES_MAX_BYTES = 32 * 1024 * 1024


def array_bytes(sizes: Iterable[int]) -> int:
    """Size of the JSON array of encoded points of these sizes: brackets and commas."""
    count = total = 0
    for size in sizes:
        count += 1
        total += size
    return 2 + total + max(count - 1, 0)


class Point:
    """One data point and where its record came from.

    ``seq`` and ``first_position`` are those of the oldest version it stands for: when a newer
    version replaces an older one, it takes the older one's place in the input, so no STATE
    passes the older record before the newer version lands.
    """

    __slots__ = ("encoded", "first_position", "key", "merged", "order", "position", "seq")

    def __init__(self, key: Hashable, order: Hashable, encoded: bytes, position: int, seq: int) -> None:
        self.key = key
        self.order = order
        self.encoded = encoded
        self.position = position  # in its stream, of the version it carries
        self.first_position = position
        self.seq = seq  # in the input, of the oldest version it stands for
        self.merged = 0  # older versions it replaced

    def absorb(self, older: Point) -> None:
        """Replace ``older`` (same key): take its place in the input and count it as merged."""
        self.seq = older.seq
        self.first_position = older.first_position
        self.merged += older.merged + 1


class Batch:
    """Points bound for one table, to be sent in one request (or split in halves on a 413)."""

    __slots__ = ("body_bytes", "points", "stream", "table")

    def __init__(self, stream: str, table: str) -> None:
        self.stream = stream
        self.table = table
        self.points: dict[Hashable, Point] = {}  # by order key, in the order they are sent
        self.body_bytes = 2

    def fits(self, size: int, max_points: int, max_bytes: int) -> bool:
        """Whether one more point of ``size`` bytes fits in the request."""
        return len(self.points) < max_points and self.body_bytes + size + (1 if self.points else 0) <= max_bytes

    def add(self, point: Point) -> None:
        """Add a point whose order key the batch does not hold."""
        self.body_bytes += len(point.encoded) + (1 if self.points else 0)
        self.points[point.order] = point

    def replace(self, point: Point, max_bytes: int) -> bool:
        """Put a newer version in place of the point with the same key, if it fits."""
        older = self.points[point.order]
        size = self.body_bytes - len(older.encoded) + len(point.encoded)
        if size > max_bytes:
            return False
        point.absorb(older)
        self.body_bytes = size
        self.points[point.order] = point
        return True

    def remove(self, order: Hashable) -> Point:
        """Take the point of an order key out of the batch."""
        point = self.points.pop(order)
        self.body_bytes -= len(point.encoded) + (1 if self.points else 0)
        return point

    def body(self, points: Iterable[Point] | None = None) -> bytes:
        """The request body: the JSON array of the points (or of ``points``)."""
        chosen = self.points.values() if points is None else points
        return b"[" + b",".join([p.encoded for p in chosen]) + b"]"

    @property
    def first_seq(self) -> int:
        """Input sequence number of the oldest record the batch stands for."""
        return min(p.seq for p in self.points.values())

    @property
    def merged(self) -> int:
        """Records merged into a newer version of their key in this batch."""
        return sum(p.merged for p in self.points.values())

    @property
    def records(self) -> int:
        """Records the batch stands for: its points and the versions merged into them."""
        return len(self.points) + self.merged

    def positions(self, points: Iterable[Point] | None = None) -> str:
        """Name the input range of the batch (or of some of its points) for error messages."""
        chosen = list(self.points.values() if points is None else points)
        first = min(p.first_position for p in chosen)
        last = max(p.position for p in chosen)
        span = f"record #{first}" if first == last else f"records #{first}-#{last}"
        return f"{span} of stream '{self.stream}' (table '{self.table}')"


class OpenBatches:
    """The batch still filling for each table; each is sealed (handed to ``seal``) when full.

    Only the thread that reads input uses it. ``on_open(table, seq)`` is told when a table's
    batch gets its first record (that record is not landed from then on), ``seal`` gets each
    batch sealed.
    """

    def __init__(
        self,
        *,
        max_points: int,
        max_bytes: int,
        on_open: Callable[[str, int], None],
        seal: Callable[[Batch], None],
        max_open_bytes: int = OPEN_BATCHES_MAX_BYTES,
    ) -> None:
        self._max_points = max_points
        self._max_bytes = max_bytes
        self._on_open = on_open
        self._seal = seal
        self._max_open_bytes = max_open_bytes
        self._open: dict[str, Batch] = {}
        self._first_seqs: dict[str, int] = {}
        self.open_bytes = 0

    def add(  # noqa: PLR0913, PLR0917 (a point and where it came from, on the hot path)
        self, stream: str, table: str, key: Hashable, encoded: bytes, seq: int, position: int
    ) -> bool:
        """Add a record's point to its table's open batch, sealing that batch first if needed."""
        cls = type(key)
        order = key if cls is str or (cls is int and -EXACT_INT <= key <= EXACT_INT) else order_key(key)  # type: ignore[operator]
        point = Point(key, order, encoded, position, seq)
        batch = self._open.get(table)
        if batch is not None:
            existing = batch.points.get(order)
            if existing is not None:
                # Same key: merge. Same order key under another key: they must go in input
                # order, in separate requests, so the batch is sealed first.
                if existing.key == key:
                    before = batch.body_bytes
                    if batch.replace(point, self._max_bytes):
                        self._grew(batch.body_bytes - before)
                        return True
                self.seal(table)
                batch = None
            elif not batch.fits(len(encoded), self._max_points, self._max_bytes):
                self.seal(table)
                batch = None
        if batch is None:
            batch = self._open[table] = Batch(stream, table)
            self._first_seqs[table] = seq
            self._on_open(table, seq)
        before = batch.body_bytes if batch.points else 0  # an empty batch holds nothing yet
        batch.add(point)
        self._grew(batch.body_bytes - before)
        return False

    def _grew(self, change: int) -> None:
        self.open_bytes += change
        if self.open_bytes > self._max_open_bytes:
            self.seal(min(self._first_seqs, key=self._first_seqs.__getitem__))

    def seal(self, table: str) -> None:
        """Hand a table's open batch, if any, to ``seal``."""
        batch = self._open.pop(table, None)
        if batch is not None:
            del self._first_seqs[table]
            self.open_bytes -= batch.body_bytes
            self._seal(batch)

    def seal_all(self) -> None:
        """Hand every open batch to ``seal``, oldest first."""
        for table in sorted(self._first_seqs, key=self._first_seqs.__getitem__):
            self.seal(table)

    @property
    def oldest_seq(self) -> float:
        """Sequence number of the oldest record in an open batch (infinity when none is open)."""
        return min(self._first_seqs.values(), default=float("inf"))
