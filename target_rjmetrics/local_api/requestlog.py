"""The in-memory request log: one entry per API request, for people and tests.

Entry fields (all JSON-serialisable): ``seq`` (arrival order), ``arrived`` and ``completed``
(``time.time()``; ``completed`` is taken after the SQLite commit, just before the answer is
written), ``method``, ``path`` (never the query string, which carries the API key),
``client_id``, ``table``, ``points``, ``body_bytes``, ``status`` (0 for a dropped
connection), ``in_flight`` (requests in flight including this one at arrival), ``fault``
(``None`` or the name of the fault that produced the answer), ``delay_ms`` (injected latency),
``sandbox``, and ``key_values`` when the server logs point keys.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

DEFAULT_MAX_ENTRIES = 1_000_000


class RequestLog:
    """Bounded, thread-safe log of request entries (oldest dropped beyond ``max_entries``).

    Args:
        max_entries: How many entries to keep.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        """Create an empty log."""
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)

    def append(self, entry: dict[str, Any]) -> None:
        """Add a finished entry (it must not be changed afterwards)."""
        with self._lock:
            self._entries.append(entry)

    def entries(self, since: int | None = None) -> list[dict[str, Any]]:
        """Return copies of the entries ordered by ``seq``.

        Args:
            since: Only entries with ``seq`` greater than this.

        Returns:
            The entries of finished requests (requests still in flight are not listed yet).
        """
        with self._lock:
            snapshot = list(self._entries)
        if since is not None:
            snapshot = [e for e in snapshot if e["seq"] > since]
        snapshot.sort(key=lambda e: e["seq"])
        return [dict(e) for e in snapshot]

    def clear(self) -> int:
        """Empty the log and return how many entries it held."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count
