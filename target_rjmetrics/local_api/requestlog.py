"""The in-memory request log: one entry per API request, for people and tests.

Entry fields (all JSON-serialisable): ``seq`` (arrival order), ``arrived`` and ``completed``
(``time.time()``; ``completed`` is taken after the SQLite commit, just before the answer is
written), ``method``, ``path`` (never the query string, which carries the API key),
``client_id``, ``table``, ``points``, ``body_bytes``, ``status`` (0 for a dropped
connection), ``in_flight`` (requests in flight including this one at arrival), ``fault``
(``None`` or the name of the fault that produced the answer), ``delay_ms`` (injected latency),
``sandbox``, and ``key_values`` when the server logs point keys. A ghost's entry also has
``ghost_due`` and ``ghost_applied`` (see the faults module).

The log is bounded twice: by entry count and by the memory its entries take (estimated when
an entry is added, see ``entry_bytes``); the oldest entries go first.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import Any

DEFAULT_MAX_ENTRIES = 1_000_000
#: About 70,000 entries of a typical upsert, or 6,000 with the key values of 100 points each.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def entry_bytes(entry: dict[str, Any]) -> int:
    """Estimate the memory an entry holds: ``sys.getsizeof`` of it and of every value in it.

    Key names are not counted (they are shared by every entry); nor is the sharing of small
    ints, so the estimate errs high. Entries are flat apart from ``key_values`` (a list of
    lists of scalars), which is walked two levels deep without recursion (it is the hot path).
    """
    getsizeof = sys.getsizeof
    size = getsizeof(entry)
    for value in entry.values():
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
        max_bytes: How many bytes of memory entries may take (``entry_bytes``); an entry
            larger than this on its own is not kept.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """Create an empty log."""
        for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                msg = f"{name} of the request log must be a non-negative integer, got {value!r}"
                raise ValueError(msg)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: deque[tuple[dict[str, Any], int]] = deque()
        self._bytes = 0

    def append(self, entry: dict[str, Any]) -> None:
        """Add a finished entry (only ``set_field`` may change it afterwards)."""
        size = entry_bytes(entry)
        with self._lock:
            self._entries.append((entry, size))
            self._bytes += size
            while self._entries and (
                len(self._entries) > self.max_entries or self._bytes > self.max_bytes
            ):
                _, dropped = self._entries.popleft()
                self._bytes -= dropped

    def set_field(self, entry: dict[str, Any], name: str, value: Any) -> None:
        """Change one field of an entry, logged or not yet (thread-safe against readers)."""
        with self._lock:
            entry[name] = value

    @property
    def bytes(self) -> int:
        """Estimated bytes of the entries held, as measured when each was added."""
        with self._lock:
            return self._bytes

    def entries(self, since: int | None = None) -> list[dict[str, Any]]:
        """Return copies of the entries ordered by ``seq``.

        Args:
            since: Only entries with ``seq`` greater than this.

        Returns:
            The entries of finished requests (requests still in flight are not listed yet).
        """
        with self._lock:
            snapshot = [dict(e) for e, _ in self._entries if since is None or e["seq"] > since]
        snapshot.sort(key=lambda e: e["seq"])
        return snapshot

    def clear(self) -> int:
        """Empty the log and return how many entries it held."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            self._bytes = 0
            return count
