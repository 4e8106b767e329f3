"""Key order: which points may go out now, as a state machine without threads or clock reads.

The rules that make "an older version never overwrites a newer one" and "no STATE runs ahead"
hold by construction live here, and only here. :class:`KeyOrder` takes events (a table's batch
*opened*, a batch *sealed*, a batch *taken* to be sent, *landed*, *failed*, the time *now*) and
answers what may be sent; the sending threads (:mod:`target_rjmetrics.sending`) only feed it
events under one lock. The words are the glossary's (CONTRIBUTING.md).

NB: the invariants, each checked by the state-machine test (tests/unit/test_keyorder.py):

- an order key of a table is **busy** from the moment a batch holding it is sealed until that
  batch landed and, if a try of it had no answer, its **late apply** window has passed (the
  batch is in its late-apply window); no two batches holding one order key are ever in flight together;
- a point whose order key is busy, or has points waiting, waits in that order key's **slot**,
  a queue in input order holding at most one point per key: a newer version of a key in the slot
  replaces the older one (**merged**) and goes to the back of the queue, behind the versions of
  other keys it may alias;
- when an order key is no longer busy, the point at the head of its slot is **released**: it
  takes the place of the points that the next sealed batch of its table gives to slots, or a
  sending thread with nothing else to send takes released points as a request of their own;
- every point not landed holds its record's place in the input (its ``seq``): the lowest such
  place, and that of every batch still filling, bounds the STATE that may be written.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import typing as t

from target_rjmetrics.batches import Batch, Point

if t.TYPE_CHECKING:
    from collections.abc import Hashable, Iterator

#: An order key of a table.
Slot = tuple[str, "Hashable"]


class _Places:
    """The input places (sequence numbers) not landed, counted, with the lowest at hand."""

    def __init__(self) -> None:
        self._count: dict[int, int] = {}
        self._heap: list[int] = []

    def add(self, seq: int) -> None:
        count = self._count.get(seq, 0)
        if count == 0:
            heapq.heappush(self._heap, seq)
        self._count[seq] = count + 1

    def remove(self, seq: int) -> None:
        count = self._count[seq] - 1
        if count:
            self._count[seq] = count
        else:
            del self._count[seq]

    def lowest(self) -> float:
        heap, count = self._heap, self._count
        while heap and heap[0] not in count:
            heapq.heappop(heap)
        return heap[0] if heap else math.inf

    def __len__(self) -> int:
        return len(self._count)


class KeyOrder:
    """What may be sent, decided from events alone (see the module's docstring for the rules).

    Args:
        max_points: Most points in a request.
        max_bytes: Most bytes in a request body.
    """

    def __init__(self, *, max_points: int, max_bytes: int) -> None:
        self._max_points = max_points
        self._max_bytes = max_bytes
        self._places = _Places()  # points sealed, not landed; and the first record of each open batch
        self._open: dict[str, int] = {}  # table -> the seq of its open batch's first record
        self._streams: dict[str, str] = {}  # table -> its stream, for the batches of released points
        self._owner: dict[Slot, Batch] = {}  # busy order keys -> the batch holding them
        self._slots: dict[Slot, list[Point]] = {}  # order keys with points waiting, oldest first
        self._released: dict[str, list[tuple[int, int, Hashable]]] = {}  # table -> heap of (seq, n, order)
        self._tiebreak = itertools.count()
        self._ready: collections.deque[Batch] = collections.deque()
        self._windows: dict[Batch, float] = {}  # landed batches in their late-apply window: until
        self.in_flight = 0  # batches taken, not yet landed or failed
        self.sealed = 0  # batches sealed (ready or in flight), not yet landed or failed
        self.halted = False  # a failure or a stop: nothing more is taken

    # -- events -------------------------------------------------------------------------------

    def open(self, table: str, seq: int) -> None:
        """A table's batch got its first record (``seq``): it is not landed from now on."""
        self._open[table] = seq
        self._places.add(seq)

    def seal(self, batch: Batch) -> None:
        """A table's open batch is full or must go: points of busy order keys go to their slots.

        The batch takes released points of its table in their place, then owns its order keys
        and is ready to be taken. A batch left with no point is dropped (its records wait).
        """
        table = batch.table
        self._streams[table] = batch.stream
        first = self._open.pop(table, None)
        if first is not None:
            self._places.remove(first)
        owner, slots, places = self._owner, self._slots, self._places
        for order, point in list(batch.points.items()):
            slot = (table, order)
            if slot in owner or slot in slots:
                batch.remove(order)
                self._wait(slot, point)
            else:
                places.add(point.seq)
        if table in self._released:
            self._refill(batch)
        if batch.points:
            self._own(batch)
            self._ready.append(batch)

    def take(self, now: float) -> Batch | None:
        """A batch for a sending thread: a sealed one, or else released points as a request of their own."""
        self.tick(now)
        if self.halted:
            return None
        batch: Batch | None
        if self._ready:
            batch = self._ready.popleft()
        else:
            batch = self._released_batch()
            if batch is None:
                return None
            self._own(batch)
        self.in_flight += 1
        return batch

    def landed(self, batch: Batch, now: float, late_apply_until: float | None = None) -> None:
        """The API accepted every point of a batch taken earlier.

        With ``late_apply_until`` (a try of it got no answer, so the API may still apply it until
        then), its order keys stay busy until that time: its late-apply window.
        """
        self.in_flight -= 1
        self.sealed -= 1
        for point in batch.points.values():
            self._places.remove(point.seq)
        if late_apply_until is not None and late_apply_until > now:
            self._windows[batch] = late_apply_until
        else:
            self._free(batch)

    def failed(self, batch: Batch) -> None:
        """A batch taken earlier failed: the run stops, nothing more is taken (its records stay unlanded)."""
        del batch
        self.in_flight -= 1
        self.sealed -= 1
        self.halted = True

    def halt(self) -> None:
        """The run stops: nothing more is taken."""
        self.halted = True

    def tick(self, now: float) -> None:
        """Free the order keys of landed batches whose late-apply window has passed."""
        if self._windows:
            for batch in [b for b, until in self._windows.items() if until <= now]:
                del self._windows[batch]
                self._free(batch)

    # -- questions ----------------------------------------------------------------------------

    def lowest_unlanded(self) -> float:
        """The input place of the oldest record not landed (infinity when every record landed)."""
        return self._places.lowest()

    def next_wake(self) -> float | None:
        """When the earliest late-apply window ends (None when no batch is in one)."""
        return min(self._windows.values(), default=None)

    @property
    def waiting(self) -> int:
        """Points waiting in slots (released ones included)."""
        return sum(len(points) for points in self._slots.values())

    @property
    def ready(self) -> bool:
        """Whether a sending thread would be given a batch now."""
        return not self.halted and (bool(self._ready) or bool(self._released))

    @property
    def settled(self) -> bool:
        """Whether nothing is left to send or in flight (keys in a late-apply window aside)."""
        return self.sealed == 0 and not self._slots

    def busy(self, table: str, order: Hashable) -> bool:
        """Whether an order key of a table is held by a batch sealed or in flight, or in its late-apply window."""
        return (table, order) in self._owner

    # -- the rules ----------------------------------------------------------------------------

    def _wait(self, slot: Slot, point: Point) -> None:
        """Put a point in its order key's slot (a newer version of a key moves to the back)."""
        queue = self._slots.get(slot)
        if queue is None:
            queue = self._slots[slot] = []
        head = queue[0] if queue else None
        for index, older in enumerate(queue):
            if older.key == point.key:
                del queue[index]
                point.absorb(older)  # the older one's place in the input is already counted
                break
        else:
            self._places.add(point.seq)
        queue.append(point)
        if slot not in self._owner and queue[0] is not head:
            self._release(slot, queue[0])

    def _release(self, slot: Slot, point: Point) -> None:
        table, order = slot
        heapq.heappush(self._released.setdefault(table, []), (point.seq, next(self._tiebreak), order))

    def _released_points(self, table: str) -> Iterator[tuple[Slot, Point]]:
        """The released points of a table, oldest first, each checked as still released."""
        heap = self._released.get(table)
        while heap:
            seq, _, order = heap[0]
            slot = (table, order)
            queue = self._slots.get(slot)
            if queue is None or slot in self._owner or queue[0].seq != seq:
                heapq.heappop(heap)  # taken, merged or moved since: not released any more
                continue
            yield slot, queue[0]
        self._released.pop(table, None)

    def _take_released(self, slot: Slot) -> Point:
        queue = self._slots[slot]
        point = queue.pop(0)
        heapq.heappop(self._released[slot[0]])
        if not queue:
            del self._slots[slot]
        return point

    def _refill(self, batch: Batch) -> None:
        """Fill ``batch`` with released points of its table, oldest first, while they fit."""
        for slot, point in self._released_points(batch.table):
            if not batch.fits(len(point.encoded), self._max_points, self._max_bytes):
                return
            batch.add(self._take_released(slot))

    def _released_batch(self) -> Batch | None:
        """Released points of the table that has the oldest, as a request of their own."""
        while self._released:
            oldest = None
            for table in list(self._released):
                head = next(self._released_points(table), None)
                if head is not None and (oldest is None or head[1].seq < oldest[1].seq):
                    oldest = (table, head[1])
            if oldest is None:
                return None
            batch = Batch(self._streams.get(oldest[0], oldest[0]), oldest[0])
            self._refill(batch)
            if batch.points:
                return batch
        return None

    def _own(self, batch: Batch) -> None:
        table = batch.table
        for order in batch.points:
            self._owner[(table, order)] = batch
        self.sealed += 1

    def _free(self, batch: Batch) -> None:
        """The batch's order keys are no longer busy: the head of each one's slot is released."""
        table = batch.table
        for order in batch.points:
            slot = (table, order)
            if self._owner.get(slot) is batch:
                del self._owner[slot]
                queue = self._slots.get(slot)
                if queue:
                    self._release(slot, queue[0])
