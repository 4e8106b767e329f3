"""Concurrent sending that keeps key order, and the ledger that makes STATE honest.

Every record that is read gets a sequence number (its place in the input). Records are
gathered into :class:`~target_rjmetrics.batches.Batch` objects, one per future request. A
batch is *registered* with the :class:`Dispatcher` as soon as it holds its first record, so at
every moment the dispatcher knows the lowest sequence number that has not yet landed. A STATE
that arrived after ``n`` records may be written once that number is ``>= n``.

NB: two requests that hold the same key of a table are never in flight together, so an older
version of a data point can never overwrite a newer one, whatever the latencies and retries.
A key is *busy* from the moment a batch holding it is submitted until that batch has landed.
When a batch is submitted, its points whose key is busy go to the key's *slot* (one point per
busy key: a later version replaces the one waiting there, counted as merged), and the rest go
out at once: a request never waits for another as a whole. When a key is released, the point
waiting in its slot joins its table's *released* points: the next batch of that table submitted
takes them in place of the points it gave to slots (so requests stay full), and a sending thread
with nothing else to send takes them as a request of their own. A released point whose key comes
again in a batch being submitted is merged into that newer version. When
a try of a batch was abandoned without an answer (and so may still be applied late), its keys
stay busy until that late apply can no longer happen (``late_apply_seconds`` after the try
was abandoned). Memory stays bounded: slots hold at most one point per key in flight.
"""

from __future__ import annotations

import collections
import math
import threading
import time
import typing as t

from target_rjmetrics.batches import Batch

if t.TYPE_CHECKING:
    from collections.abc import Callable, Hashable

#: A key of a table, as the dispatcher tracks it.
_Slot = tuple[str, "Hashable"]


class DispatcherStopped(Exception):  # noqa: N818
    """The dispatcher was stopped: it takes no more batches."""


class Dispatcher:
    """Sends sealed batches on a bounded pool of threads, keeping per-key order with slots.

    ``submit`` blocks while ``max_queued`` batches are sealed but not yet landed, which
    is the back-pressure that keeps memory bounded when the API is slow.
    """

    def __init__(  # noqa: PLR0913
        self,
        *,
        send: Callable[[Batch], float | None],
        max_concurrent: int,
        max_queued: int,
        on_landed: Callable[[Batch], None] | None = None,
        max_points: int = 100,
        max_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        """Create a dispatcher.

        Args:
            send: Sends one batch; raises to fail the run. Returns None, or the monotonic
                time until which a try of it that was abandoned may still be applied by
                the API (its keys then stay busy until that time).
            max_concurrent: Requests in flight at once.
            max_queued: Sealed batches not yet landed before ``submit`` blocks.
            on_landed: Called (outside the lock) with each batch that landed, from the
                sending thread.
            max_points: Most points in a request made of released slots.
            max_bytes: Most bytes in such a request.
        """
        self._send = send
        self._on_landed = on_landed
        self._max_queued = max(max_queued, max_concurrent)
        self._max_points = max_points
        self._max_bytes = max_bytes
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # batches landed or failed: for submit and wait
        self._work_ready = threading.Condition(lock)  # a batch is ready: for the sending threads
        self._unlanded: set[Batch] = set()  # registered (open, sealed, or a slot), not landed
        self._sealed_unlanded = 0
        self._running = 0  # handed to the sending threads, not finished
        self._owner: dict[_Slot, Batch] = {}  # busy keys -> the batch that holds them
        self._slots: dict[_Slot, Batch] = {}  # busy keys -> a one-point batch of the next version
        self._released: dict[str, list[Batch]] = {}  # table -> batches of released points, oldest first
        self._released_at: dict[_Slot, Batch] = {}  # released keys -> the batch holding the point
        self._cooling: dict[Batch, float] = {}  # landed batches whose keys wait out late applies
        self._failure: BaseException | None = None
        self._accepting = True
        self._closed = False
        self._ready: collections.deque[Batch] = collections.deque()
        self.in_flight = 0
        # Daemon threads of our own rather than a ThreadPoolExecutor, whose threads the
        # interpreter joins at exit: a request stuck on the network must never keep the
        # process alive once the run has decided to stop.
        self._workers = [
            threading.Thread(target=self._work, name=f"rjmetrics-send-{i}", daemon=True) for i in range(max_concurrent)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def failure(self) -> BaseException | None:
        """The first error a batch raised, if any."""
        return self._failure

    def fail(self, error: BaseException) -> None:
        """Stop sending because of a failure found outside the sending threads.

        Args:
            error: The failure; the first one recorded is the one the run reports.
        """
        with self._cond:
            if self._failure is None:
                self._failure = error
            self._cond.notify_all()

    def register(self, batch: Batch) -> None:
        """Count a new, still open batch as not landed.

        Args:
            batch: A batch that has just received its first record.
        """
        with self._cond:
            self._unlanded.add(batch)

    def lowest_unlanded_seq(self) -> float:
        """Return the lowest sequence number not yet landed (infinity when all landed).

        Returns:
            A sequence number, or ``math.inf``.
        """
        with self._cond:
            return min((b.first_seq for b in self._unlanded), default=math.inf)

    @property
    def waiting_in_slots(self) -> int:
        """Points waiting for their key to be released, or released and not sent yet."""
        with self._cond:
            return len(self._slots) + len(self._released_at)

    def submit(self, batch: Batch) -> None:
        """Seal a registered batch: its points with busy keys go to their slots, the rest go out now.

        Args:
            batch: The batch to send.

        Raises:
            BaseException: The failure of an earlier batch; nothing more is sent.
            DispatcherStopped: The run is stopping.
        """
        with self._cond:
            while self._failure is None and self._accepting and self._sealed_unlanded >= self._max_queued:
                self._cond.wait()
            if self._failure is not None:
                raise self._failure
            if not self._accepting:
                raise DispatcherStopped
            table = batch.table
            if self._released_at:
                self._merge_released(batch)
            owner = self._owner
            busy = {key for key in batch.points if (table, key) in owner}
            if busy:
                waiting = batch.split_off(busy) if len(busy) < len(batch.points) else batch
                if waiting is batch:
                    self._unlanded.discard(batch)  # every point waits: its records live in slots now
                self._to_slots(waiting)
                if waiting is batch:
                    return
            if table in self._released:
                self._refill(batch)
            self._start_owning(batch)

    def _merge_released(self, batch: Batch) -> None:
        """Merge released points whose key ``batch`` holds into its newer versions (lock held)."""
        table = batch.table
        for key in [key for key in batch.points if (table, key) in self._released_at]:
            holder = self._released_at.pop((table, key))
            seq = holder.point_seqs[key]
            batch.duplicates += 1 + self._take_point(holder, key)
            batch.point_seqs[key] = min(batch.point_seqs[key], seq)
            batch.first_seq = min(batch.first_seq, seq)

    def _refill(self, batch: Batch) -> None:
        """Fill ``batch`` up to the limits with its table's released points, oldest first (lock held)."""
        table = batch.table
        queue = self._released[table]
        while queue and len(batch.points) < self._max_points:
            holder = queue[0]
            for key in list(holder.points):
                encoded = holder.points[key]
                if not batch.fits(len(encoded), self._max_points, self._max_bytes):
                    return
                position, seq = holder.point_positions[key], holder.point_seqs[key]
                del self._released_at[(table, key)]
                batch.duplicates += self._take_point(holder, key)
                batch.take(key, encoded, position, seq)
                if not holder.points:
                    break

    def _take_point(self, holder: Batch, key: Hashable) -> int:
        """Remove a released point from the batch holding it; drop that batch once empty (lock held).

        Returns:
            The records merged in the batch, when it was dropped (they go with its last point).
        """
        holder.remove(key)
        if holder.points:
            return 0
        queue = self._released[holder.table]
        queue.remove(holder)
        if not queue:
            del self._released[holder.table]
        self._unlanded.discard(holder)
        return holder.duplicates

    def _release(self, slots: list[Batch]) -> None:
        """Add the points of released slots (of one table) to its released points (lock held)."""
        for slot in sorted(slots, key=lambda s: s.first_seq):
            self._unlanded.discard(slot)
            ((key, encoded),) = slot.points.items()
            queue = self._released.setdefault(slot.table, [])
            current = queue[-1] if queue else None
            if current is None or not current.fits(len(encoded), self._max_points, self._max_bytes):
                current = Batch(
                    stream=slot.stream, table=slot.table, first_seq=slot.first_seq, first_position=slot.first_position
                )
                queue.append(current)
                self._unlanded.add(current)
            current.take(key, encoded, slot.point_positions[key], slot.first_seq, slot.first_position)
            current.duplicates += slot.duplicates
            self._released_at[(slot.table, key)] = current

    def _next_released(self) -> Batch:
        """Take the oldest batch of released points to send as it is (lock held)."""
        table, holder = min(
            ((table, queue[0]) for table, queue in self._released.items()), key=lambda p: p[1].first_seq
        )
        queue = self._released[table]
        queue.pop(0)
        if not queue:
            del self._released[table]
        for key in holder.points:
            del self._released_at[(table, key)]
        return holder

    def _to_slots(self, waiting: Batch) -> None:
        """Put each point of ``waiting`` in its key's slot (called with the lock held)."""
        table = waiting.table
        for key, encoded in waiting.points.items():
            slot_key = (table, key)
            slot = self._slots.get(slot_key)
            position = waiting.point_positions[key]
            if slot is None:
                # The slot holds its records' place in the input, so no STATE passes them early.
                seq = waiting.point_seqs[key]
                slot = Batch(stream=waiting.stream, table=table, first_seq=seq, first_position=position)
                slot.add(key, encoded, position, seq)
                self._slots[slot_key] = slot
                self._unlanded.add(slot)
            else:
                slot.replace(key, encoded, position, max_bytes=math.inf)  # type: ignore[arg-type]
        if waiting.duplicates and slot is not None:  # records merged in a batch whose every point waits
            slot.duplicates += waiting.duplicates

    def _start_owning(self, batch: Batch) -> None:
        """Make ``batch`` the owner of its keys and hand it to a sending thread (lock held)."""
        self._own(batch)
        self._ready.append(batch)
        self._work_ready.notify()  # one sending thread is enough

    def _own(self, batch: Batch) -> None:
        """Make ``batch`` the owner of its keys, counted as sealed and running (lock held)."""
        table = batch.table
        for key in batch.points:
            self._owner[(table, key)] = batch
        self._sealed_unlanded += 1
        self._running += 1

    def _work(self) -> None:
        """A sending thread: take ready batches until the dispatcher is closed."""
        while True:
            with self._cond:
                while not self._ready and not self._closed and not (self._released and self._sending_allowed()):
                    self._work_ready.wait()
                if self._closed:
                    return
                if self._ready:
                    batch = self._ready.popleft()
                else:  # nothing else to send: released points go as a request of their own
                    batch = self._next_released()
                    self._own(batch)
            self._run(batch)

    def _sending_allowed(self) -> bool:
        return self._failure is None and self._accepting

    def _run(self, batch: Batch) -> None:
        with self._cond:
            # Nothing new goes out after a failure or a stop: only requests already sent finish.
            skip = self._failure is not None or not self._accepting
            if not skip:
                self.in_flight += 1
        error: BaseException | None = None
        ghost_until: float | None = None
        if not skip:
            try:
                ghost_until = self._send(batch)
            except BaseException as exc:  # noqa: BLE001 (recorded, re-raised on the main thread)
                error = exc
        with self._cond:
            self._running -= 1
            if not skip:
                self.in_flight -= 1
            if error is not None:
                if self._failure is None:
                    self._failure = error
            elif not skip:
                batch.landed = True
                self._unlanded.discard(batch)
                self._sealed_unlanded -= 1
                delay = None if ghost_until is None else ghost_until - time.monotonic()
                if delay is not None and delay > 0:
                    self._cool(batch, t.cast("float", ghost_until), delay)
                else:
                    self._release_keys(batch)
            self._cond.notify_all()
        if batch.landed and self._on_landed is not None:
            try:
                self._on_landed(batch)
            except BaseException as exc:  # noqa: BLE001 (e.g. STATE could not be written: the run's failure)
                self.fail(exc)

    def _release_keys(self, batch: Batch) -> None:
        """Free the keys of a landed batch; the points waiting in their slots go out (lock held)."""
        self._cooling.pop(batch, None)
        table = batch.table
        released: list[Batch] = []
        for key in batch.points:
            slot_key = (table, key)
            if self._owner.get(slot_key) is batch:
                del self._owner[slot_key]
                slot = self._slots.pop(slot_key, None)
                if slot is not None:
                    released.append(slot)
        if not released or self._failure is not None or not self._accepting:
            for slot in released:  # nothing more is sent: they stay unlanded, as their records
                self._slots[(table, next(iter(slot.points)))] = slot
            return
        self._release(released)
        self._work_ready.notify_all()  # an idle sending thread takes them now

    def _cool(self, batch: Batch, until: float, delay: float) -> None:
        """Keep the keys of a landed batch busy until an abandoned try of it can no longer apply.

        NB: a try whose answer never came (a timeout, a dropped connection, a 502/504) may
        still be applied by the API later, after the retry landed. Its records count as
        landed at once (the retry carried the same versions), but a newer version of any of
        its keys waits in its slot until ``until``, so that late apply cannot overwrite it.
        Called with the lock held.
        """
        self._cooling[batch] = until

        def release() -> None:
            with self._cond:
                if batch in self._cooling:
                    self._release_keys(batch)
                self._cond.notify_all()

        timer = threading.Timer(delay, release)
        timer.daemon = True
        timer.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every sealed batch and every slot has landed, or sending has stopped.

        Args:
            timeout: Seconds to wait at most; None waits as long as it takes.

        Returns:
            True when nothing is left running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._running > 0 or (
                self._failure is None
                and self._accepting
                and (self._sealed_unlanded > 0 or self._slots or self._released)
            ):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self) -> None:
        """Refuse new batches and start no sealed one that is not in flight yet."""
        with self._cond:
            self._accepting = False
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the sending threads once they are idle."""
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._cond.notify_all()
            self._work_ready.notify_all()


class StateLedger:
    """Holds STATE messages until every record that came before them has landed.

    States come out in input order; a state that is superseded before it may be
    written is skipped, and a state equal to the last one written is not repeated.

    NB: the states held are bounded in bytes. Over ``max_bytes``, every other state
    between the oldest and the newest is dropped: writing an older state where a
    dropped one would have been ready is still honest (it covers fewer records), and
    the newest state, written last, is never dropped.
    """

    def __init__(self, dispatcher: Dispatcher, write: Callable[[str], None], *, max_bytes: int = 8 << 20) -> None:
        """Create the ledger.

        Args:
            dispatcher: Knows what has landed.
            write: Writes one serialized state line to stdout.
            max_bytes: Most bytes of pending states held before they are thinned out.
        """
        self._dispatcher = dispatcher
        self._write = write
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._pending: list[tuple[int, str, float]] = []  # (records before it, line, arrived)
        self._pending_bytes = 0
        self._last_written: str | None = None
        self.written = 0
        self.thinned = 0

    def add(self, records_before: int, line: str) -> None:
        """Take a STATE that arrived after ``records_before`` records.

        Args:
            records_before: How many records the input held before this state.
            line: The state's value, serialized as the line to write.
        """
        with self._lock:
            self._pending.append((records_before, line, time.monotonic()))
            self._pending_bytes += len(line)
            while self._pending_bytes > self._max_bytes and len(self._pending) > 2:  # noqa: PLR2004
                kept = [self._pending[0], *self._pending[2:-1:2], self._pending[-1]]
                self.thinned += len(self._pending) - len(kept)
                self._pending = kept
                self._pending_bytes = sum(len(entry[1]) for entry in kept)

    @property
    def pending(self) -> int:
        """How many states are waiting for their records to land."""
        with self._lock:
            return len(self._pending)

    def oldest_waiting(self) -> tuple[int, float] | None:
        """Return (records before it, monotonic arrival time) of the oldest pending state.

        Returns:
            None when no state is waiting.
        """
        with self._lock:
            if not self._pending:
                return None
            records_before, _, arrived = self._pending[0]
            return records_before, arrived

    def emit_ready(self) -> None:
        """Write the newest state whose records have all landed, if it is new."""
        with self._lock:
            if not self._pending:
                return
            landed_below = self._dispatcher.lowest_unlanded_seq()
            ready = 0
            while ready < len(self._pending) and self._pending[ready][0] <= landed_below:
                ready += 1
            if ready == 0:
                return
            line = self._pending[ready - 1][1]
            del self._pending[:ready]
            self._pending_bytes = sum(len(entry[1]) for entry in self._pending)
            if line == self._last_written:
                return
            self._write(line)
            self._last_written = line
            self.written += 1
