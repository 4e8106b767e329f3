"""The in-memory request log: one entry per API request, for people and tests.

An entry is a frozen :class:`RequestLogEntry`. While its request is being handled the server
fills a mutable :class:`PendingEntry` as it learns things (the table from the path, the points
once the body is parsed, the injected latency, the answer); :meth:`PendingEntry.finish` freezes
it when the answer is decided. One field may change after that: a ghost's ``ghost_applied``,
which the log keeps beside the entry (:meth:`RequestLog.ghost_applied`) and merges into the
entries it returns.

Entry fields (``/_local/requests`` shows them as JSON, in this order): ``seq`` (arrival order),
``arrived`` and ``completed`` (``time.time()``; ``completed`` is taken after the SQLite commit,
just before the answer is written), ``method``, ``path`` (never the query string, which carries
the API key), ``client_id``, ``table``, ``points``, ``body_bytes``, ``status`` (0 for a dropped
connection), ``in_flight`` (requests in flight including this one at arrival), ``fault``
(``None`` or the name of the fault that produced the answer), ``delay_ms`` (injected latency),
``sandbox``, ``key_values`` when the server logs point keys, and, for a ghost only,
``ghost_due`` and ``ghost_applied`` (see the faults module). ``key_values`` shows each number as
the client wrote it (:meth:`RequestLogEntry.to_json`); in Python it holds the values
:func:`json.loads` reads from that text, and ``key_values_json`` the text itself.

The log is bounded twice: by entry count and by the memory its entries take (estimated when
an entry is added, see :func:`entry_bytes`); the oldest entries go first.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from target_rjmetrics.local_api import jsontext

DEFAULT_MAX_ENTRIES = 1_000_000
# The ints CPython keeps one object of (shared by every entry, so not counted).
_SHARED_INTS = range(-5, 257)
#: About 145,000 entries of a typical upsert, or 4,800 with the key values of 100 points each.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RequestLogEntry:
    """One API request as the server saw it (see the module docstring for each field).

    ``key_values`` is ``None`` when the server does not log point keys or the body could not
    be parsed (and an item is ``None`` for a point without valid keys); ``ghost_due`` and
    ``ghost_applied`` are ``None`` unless the request is a ghost (``ghost_applied`` stays
    ``None`` while the ghost is pending, and for ever if the server stopped first).
    ``key_values`` lists are shared with the log: read them, never change them.

    ``key_values`` holds plain Python values (``json.loads`` of the text: a number with a
    fraction or exponent is a ``float``); ``key_values_json`` is the JSON text of the same
    lists with each number as the client wrote it, as the server logged it (``None`` in an entry
    built another way, e.g. by :meth:`from_dict`).
    """

    seq: int
    arrived: float
    completed: float
    method: str
    path: str
    client_id: int | None
    table: str | None
    points: int | None
    body_bytes: int
    status: int
    in_flight: int
    fault: str | None
    delay_ms: float
    sandbox: bool
    key_values: list[list[Any] | None] | None = None
    ghost_due: float | None = None
    ghost_applied: float | None = None
    key_values_json: str | None = None

    @property
    def is_ghost(self) -> bool:
        """Whether the request's points are (or were to be) stored late."""
        return self.ghost_due is not None

    def to_dict(self, *, with_key_values: bool) -> dict[str, Any]:
        """The entry as ``/_local/requests`` shows it."""
        data = {name: getattr(self, name) for name in _JSON_FIELDS}
        if with_key_values:
            data["key_values"] = self.key_values
        if self.ghost_due is not None:
            data["ghost_due"] = self.ghost_due
            data["ghost_applied"] = self.ghost_applied
        return data

    def to_json(self, *, with_key_values: bool) -> str:
        """The entry as ``/_local/requests`` writes it: :meth:`to_dict` as JSON, each key value's number exact."""
        data: dict[str, Any] = self.to_dict(with_key_values=with_key_values)
        if with_key_values and self.key_values_json is not None:
            data["key_values"] = jsontext.loads(self.key_values_json)
        return jsontext.dumps(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestLogEntry:
        """Read an entry from its JSON form (``/_local/requests`` of a server in another process)."""
        fields: dict[str, Any] = {name: data[name] for name in _JSON_FIELDS}
        fields.update((name, data.get(name)) for name in _OPTIONAL_FIELDS)
        return cls(**fields)


_OPTIONAL_FIELDS = ("key_values", "ghost_due", "ghost_applied")
_FIELDS = tuple(f.name for f in dataclasses.fields(RequestLogEntry))
# key_values_json is not a field of the JSON form: it is the exact text of its key_values.
_JSON_FIELDS = tuple(name for name in _FIELDS if name not in {*_OPTIONAL_FIELDS, "key_values_json"})


@dataclass(slots=True)
class PendingEntry:
    """The entry of a request being handled: filled in as the server learns things, then frozen."""

    seq: int
    arrived: float
    method: str
    path: str
    in_flight: int
    sandbox: bool
    client_id: int | None = None
    table: str | None = None
    points: int | None = None
    body_bytes: int = 0
    delay_ms: float = 0.0
    key_values_json: str | None = None
    ghost_due: float | None = None

    def finish(self, status: int, fault: str | None, completed: float) -> RequestLogEntry:
        """Freeze the entry with its answer (``status`` 0: none was sent)."""
        key_values_json = self.key_values_json
        return RequestLogEntry(
            seq=self.seq,
            arrived=self.arrived,
            completed=completed,
            method=self.method,
            path=self.path,
            client_id=self.client_id,
            table=self.table,
            points=self.points,
            body_bytes=self.body_bytes,
            status=status,
            in_flight=self.in_flight,
            fault=fault,
            delay_ms=self.delay_ms,
            sandbox=self.sandbox,
            key_values=json.loads(key_values_json) if key_values_json is not None else None,
            ghost_due=self.ghost_due,
            key_values_json=key_values_json,
        )


def entry_bytes(entry: RequestLogEntry) -> int:
    """Estimate the memory an entry holds: ``sys.getsizeof`` of it and of every value it owns.

    ``None``, booleans and small ints are shared by every entry, so they are not counted; the
    values inside ``key_values`` are all counted, so the estimate errs high. Entries are flat
    apart from ``key_values`` (a list of lists of scalars), which is walked two levels deep
    without recursion (it is the hot path).
    """
    getsizeof = sys.getsizeof
    size = getsizeof(entry)
    for name in _FIELDS:
        value = getattr(entry, name)
        if value is None or value is True or value is False or (type(value) is int and value in _SHARED_INTS):
            continue
        size += getsizeof(value)
        if type(value) is list:
            for item in value:
                size += getsizeof(item)
                if type(item) is list:
                    size += sum(map(getsizeof, item))
    return size


class RequestLog:
    """Bounded, thread-safe log of request entries (oldest dropped beyond either bound).

    Args:
        max_entries: How many entries to keep.
        max_bytes: How many bytes of memory entries may take (:func:`entry_bytes`); an entry
            larger than this on its own is not kept.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                msg = f"{name} of the request log must be a non-negative integer, got {value!r}"
                raise ValueError(msg)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: deque[tuple[RequestLogEntry, int]] = deque()
        self._bytes = 0
        # seq -> time its points were applied (None: pending), for every ghost whose entry is
        # logged or still being handled; dropped with its entry.
        self._ghosts: dict[int, float | None] = {}

    def append(self, entry: RequestLogEntry) -> None:
        """Add a finished entry."""
        size = entry_bytes(entry)
        with self._lock:
            self._entries.append((entry, size))
            self._bytes += size
            while self._entries and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
                dropped, dropped_size = self._entries.popleft()
                self._bytes -= dropped_size
                self._ghosts.pop(dropped.seq, None)

    def expect_ghost(self, seq: int) -> None:
        """Note that request ``seq`` is a ghost whose points will be applied later."""
        with self._lock:
            self._ghosts[seq] = None

    def ghost_applied(self, seq: int, when: float) -> None:
        """Record when ghost ``seq``'s points were applied (nothing if its entry is gone)."""
        with self._lock:
            if seq in self._ghosts:
                self._ghosts[seq] = when

    @property
    def bytes(self) -> int:
        """Estimated bytes of the entries held, as measured when each was added."""
        with self._lock:
            return self._bytes

    def entries(self, since: int | None = None) -> list[RequestLogEntry]:
        """Return the entries ordered by ``seq``."""
        with self._lock:
            snapshot = [e for e, _ in self._entries if since is None or e.seq > since]
            applied = {seq: when for seq, when in self._ghosts.items() if when is not None}
        if applied:
            snapshot = [
                dataclasses.replace(e, ghost_applied=applied[e.seq]) if e.seq in applied else e for e in snapshot
            ]
        snapshot.sort(key=lambda e: e.seq)
        return snapshot

    def clear(self) -> int:
        """Empty the log and return how many entries it held."""
        with self._lock:
            count = len(self._entries)
            for entry, _ in self._entries:
                self._ghosts.pop(entry.seq, None)
            self._entries.clear()
            self._bytes = 0
            return count
