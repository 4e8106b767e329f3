"""Batches: the encoded data points of one future request, and the batches still filling.

A :class:`Batch` owns its points, the byte size of the JSON array they encode to, and its
splitting (in halves on a 413, or by key when some keys are still on their way); nothing
else counts request bytes. :class:`OpenBatches` keeps the batch still filling for each
table and decides when it is sealed: when the next point does not fit, on demand (a STATE
waiting, the end of input), or when the open batches of all tables together hold more than
``OPEN_BATCHES_MAX_BYTES``.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

if t.TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable

#: Most bytes of encoded points held in open batches across all streams. Over it, the open
#: batch holding the oldest record is sent as it is, so memory stays bounded however many
#: streams are open at once (sealed batches are bounded by the dispatcher's back-pressure).
OPEN_BATCHES_MAX_BYTES = 32 * 1024 * 1024


def array_bytes(sizes: Iterable[int]) -> int:
    """Size of the JSON array of encoded points of these sizes: brackets and commas.

    Args:
        sizes: The encoded size of each point.

    Returns:
        The array's size in bytes.
    """
    count = total = 0
    for size in sizes:
        count += 1
        total += size
    return 2 + total + max(count - 1, 0)


@dataclass(eq=False)
class Batch:
    """Data points bound for one table, to be sent in one request (or split on 413).

    Attributes:
        stream: The Singer stream the points came from.
        table: The Import API table they go to.
        first_seq: Input sequence number of the earliest record in the batch.
        first_position: 1-based position, within its stream, of the first record.
        points: Encoded data points by key identity; a later version replaces the earlier.
        point_positions: Stream position of the record each point came from, by key.
        point_seqs: Sequence number of the first record of each key in the batch (the versions
            merged into its point came after it), so a point taken out of the batch takes its
            place in the input with it.
        body_bytes: Size of the JSON array these points encode to.
        last_position: Position of the last record.
        duplicates: Records merged into a later version of the same key.
        landed: Set by the dispatcher once the API accepted every point.
    """

    stream: str
    table: str
    first_seq: int
    first_position: int
    points: dict[Hashable, bytes] = field(default_factory=dict)
    point_positions: dict[Hashable, int] = field(default_factory=dict)
    point_seqs: dict[Hashable, int] = field(default_factory=dict)
    body_bytes: int = 2
    last_position: int = 0
    duplicates: int = 0
    landed: bool = False

    def fits(self, size: int, max_points: int, max_bytes: int) -> bool:
        """Tell whether one more point of ``size`` bytes fits in the request.

        Args:
            size: The point's encoded size.
            max_points: Most points per request.
            max_bytes: Most bytes per request.

        Returns:
            True when it fits.
        """
        return len(self.points) < max_points and self.body_bytes + size + (1 if self.points else 0) <= max_bytes

    def add(self, key: Hashable, encoded: bytes, position: int, seq: int) -> None:
        """Add the point of a key that the batch does not hold yet.

        Args:
            key: The point's key identity.
            encoded: The point.
            position: Its record's position in its stream.
            seq: Its record's sequence number in the input.
        """
        self.body_bytes += len(encoded) + (1 if self.points else 0)
        self.points[key] = encoded
        self.point_positions[key] = position
        self.point_seqs[key] = seq
        self.last_position = position

    def take(self, key: Hashable, encoded: bytes, position: int, seq: int, first_position: int | None = None) -> None:
        """Add the point of a key the batch does not hold, from anywhere in the input.

        As :meth:`add` (which the per-record path uses, records coming in input order), but the
        batch's first and last positions and first sequence number widen to cover the point.

        Args:
            key: The point's key identity.
            encoded: The point.
            position: Its record's position in its stream.
            seq: Its first record's sequence number in the input.
            first_position: Position of its first record, when earlier versions were merged into it.
        """
        first_position = position if first_position is None else first_position
        last = self.last_position
        self.add(key, encoded, position, seq)
        self.last_position = max(last, position)
        self.first_seq = min(self.first_seq, seq)
        self.first_position = min(self.first_position, first_position)

    def replace(self, key: Hashable, encoded: bytes, position: int, max_bytes: int) -> bool:
        """Replace the point of a key the batch holds with a later version, if it fits.

        Args:
            key: The key identity.
            encoded: The later version.
            position: Its record's position.
            max_bytes: Most bytes per request.

        Returns:
            True when replaced (the earlier version is merged away); False when the later
            version does not fit in its place.
        """
        earlier = self.points[key]
        if self.body_bytes - len(earlier) + len(encoded) > max_bytes:
            return False
        self.body_bytes += len(encoded) - len(earlier)
        self.points[key] = encoded
        self.point_positions[key] = position
        self.last_position = position
        self.duplicates += 1
        return True

    def remove(self, key: Hashable) -> None:
        """Take the point of a key out of the batch (its first record's place goes with it).

        Args:
            key: A key the batch holds.
        """
        encoded = self.points.pop(key)
        del self.point_positions[key]
        del self.point_seqs[key]
        self.body_bytes -= len(encoded) + (1 if self.points else 0)
        if self.points:
            self.first_seq = min(self.point_seqs.values())
            self.first_position = min(self.point_positions.values())

    def body(self, keys: Iterable[Hashable] | None = None) -> bytes:
        """The request body: the JSON array of the points (of ``keys``, in the batch's order).

        Args:
            keys: The keys to send, all by default.

        Returns:
            The body.
        """
        points = self.points
        return b"[" + b",".join([points[key] for key in (points if keys is None else keys)]) + b"]"

    def split_off(self, keys: set[Hashable]) -> Batch:
        """Move the points of ``keys`` into a new batch.

        Each part's first sequence number becomes that of its own first record; the records
        merged in the batch go with the part that keeps the rest.

        Args:
            keys: Keys the batch holds, not all of them.

        Returns:
            The new batch.
        """
        moved = Batch(
            stream=self.stream, table=self.table, first_seq=self.first_seq, first_position=self.first_position
        )
        kept = Batch(stream=self.stream, table=self.table, first_seq=self.first_seq, first_position=self.first_position)
        for key, encoded in self.points.items():
            part = moved if key in keys else kept
            part.points[key] = encoded
            part.point_positions[key] = self.point_positions[key]
            part.point_seqs[key] = self.point_seqs[key]
        self.points, self.point_positions, self.point_seqs = kept.points, kept.point_positions, kept.point_seqs
        for part in (moved, self):
            part.first_seq = min(part.point_seqs.values())
            part.first_position = min(part.point_positions.values())
            part.last_position = max(part.point_positions.values())
            part.body_bytes = array_bytes(len(p) for p in part.points.values())
        return moved

    def positions(self) -> str:
        """Describe the input range of this batch for error messages.

        Returns:
            E.g. ``"records #101-#200 of stream 'users' (table 'users')"``.
        """
        span = (
            f"record #{self.first_position}"
            if self.first_position == self.last_position
            else f"records #{self.first_position}-#{self.last_position}"
        )
        return f"{span} of stream '{self.stream}' (table '{self.table}')"


class OpenBatches:
    """The batch still filling for each table; each is sealed (handed to ``submit``) when full."""

    def __init__(
        self,
        *,
        max_points: int,
        max_bytes: int,
        register: Callable[[Batch], None],
        submit: Callable[[Batch], None],
        max_open_bytes: int = OPEN_BATCHES_MAX_BYTES,
    ) -> None:
        """Create the open batches.

        Args:
            max_points: Most points per request.
            max_bytes: Most bytes per request.
            register: Called with each new batch as it gets its first point.
            submit: Called with each batch sealed.
            max_open_bytes: Most bytes held across all open batches.
        """
        self._max_points = max_points
        self._max_bytes = max_bytes
        self._register = register
        self._submit = submit
        self._max_open_bytes = max_open_bytes
        self._open: dict[str, Batch] = {}
        self.open_bytes = 0

    def add(  # noqa: PLR0913, PLR0917 (a point and where it came from, on the hot path)
        self, stream: str, table: str, key: Hashable, encoded: bytes, seq: int, position: int
    ) -> bool:
        """Add a point to its table's open batch, sealing that batch first if the point does not fit.

        Args:
            stream: The stream of the record.
            table: Its table.
            key: The point's key identity.
            encoded: The point (no larger than a request may be: the caller checks).
            seq: The record's sequence number in the input.
            position: The record's position in its stream.

        Returns:
            True when the point replaced an earlier version of its key in the open batch.
        """
        batch = self._open.get(table)
        if batch is not None:
            if key in batch.points:
                before = batch.body_bytes
                if batch.replace(key, encoded, position, self._max_bytes):
                    self._grew(batch.body_bytes - before)
                    return True
                self.seal(table)
                batch = None
            elif not batch.fits(len(encoded), self._max_points, self._max_bytes):
                self.seal(table)
                batch = None
        if batch is None:
            batch = self._open[table] = Batch(stream=stream, table=table, first_seq=seq, first_position=position)
            self._register(batch)
        before = batch.body_bytes if batch.points else 0  # an empty batch holds nothing yet
        batch.add(key, encoded, position, seq)
        self._grew(batch.body_bytes - before)
        return False

    def _grew(self, change: int) -> None:
        self.open_bytes += change
        if self.open_bytes > self._max_open_bytes:
            self.seal(min(self._open, key=lambda name: self._open[name].first_seq))

    def seal(self, table: str) -> None:
        """Hand a table's open batch, if any, to the dispatcher.

        Args:
            table: The table.
        """
        batch = self._open.pop(table, None)
        if batch is not None:
            self.open_bytes -= batch.body_bytes
            self._submit(batch)

    def seal_all(self) -> None:
        """Hand every open batch to the dispatcher, oldest first."""
        for table in sorted(self._open, key=lambda name: self._open[name].first_seq):
            self.seal(table)

    @property
    def oldest_seq(self) -> float:
        """Sequence number of the oldest record in an open batch (infinity when none is open)."""
        return min((b.first_seq for b in self._open.values()), default=float("inf"))
