"""What happened to each table: counters, the progress line and the summary.

Counters are updated from the reading thread (records read, merged) and from the sending
threads (requests, retries, records landed), so every update and every read holds one
lock. Neither the progress line nor the summary ever shows a record value or the key.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class TableStats:
    """What happened to one table.

    Attributes:
        read: Records read for it.
        landed: Records whose data point (or a later version of it) the API accepted.
        requests: Requests the API accepted.
        retries: Tries that failed and were retried.
        duplicates: Records merged into a later version of their key in one request.
        nonfinite: NaN or infinite values sent as null.
        first_read: Monotonic time of its first record.
        last_landed: Monotonic time its last accepted request came back.
    """

    read: int = 0
    landed: int = 0
    requests: int = 0
    retries: int = 0
    duplicates: int = 0
    nonfinite: int = 0
    first_read: float = 0.0
    last_landed: float = 0.0


class LoadStats:
    """The counters of every table of a run."""

    def __init__(self) -> None:
        """Start with no table."""
        self._lock = threading.Lock()
        self._tables: dict[str, TableStats] = {}
        self._started = time.monotonic()
        self.retries = 0

    def table(self, table: str) -> TableStats:
        """Return the counters of a table, created on first use.

        Args:
            table: The table.

        Returns:
            Its counters (update them through this object's methods).
        """
        with self._lock:
            stats = self._tables.get(table)
            if stats is None:
                stats = self._tables[table] = TableStats(first_read=time.monotonic())
            return stats

    def read(self, stats: TableStats, *, merged: bool) -> None:
        """Count a record read (and merged into a later version of its key, if so).

        Args:
            stats: Its table's counters.
            merged: It replaced an earlier version of its key in the open batch.
        """
        with self._lock:
            stats.read += 1
            if merged:
                stats.duplicates += 1

    def nonfinite(self, stats: TableStats) -> None:
        """Count a NaN or infinite value sent as null.

        Args:
            stats: Its table's counters.
        """
        with self._lock:
            stats.nonfinite += 1

    def request(self, table: str) -> None:
        """Count a request the API accepted.

        Args:
            table: Its table.
        """
        stats = self.table(table)
        with self._lock:
            stats.requests += 1

    def retry(self, table: str) -> None:
        """Count a try that is retried.

        Args:
            table: Its table.
        """
        stats = self.table(table)
        with self._lock:
            stats.retries += 1
            self.retries += 1

    def landed(self, table: str, records: int) -> None:
        """Count records whose batch landed.

        Args:
            table: Their table.
            records: How many (points plus the versions merged into them).
        """
        stats = self.table(table)
        with self._lock:
            stats.landed += records
            stats.last_landed = time.monotonic()

    def progress_line(self, in_flight: int) -> str:
        """The progress line: records landed/read per table, requests in flight, retries, rate.

        Args:
            in_flight: Requests in flight now.

        Returns:
            One line.
        """
        with self._lock:
            parts = [f"{table} {s.landed:,}/{s.read:,}" for table, s in sorted(self._tables.items())]
            landed = sum(s.landed for s in self._tables.values())
            retries = self.retries
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return (
            f"Progress: landed/read {', '.join(parts) or '(no records yet)'} | in flight {in_flight} | "
            f"retries {retries} | {landed / elapsed:.0f} records/s landed"
        )

    def summary_lines(self, states_written: int) -> list[str]:
        """The summary: one line per table, then one of totals (Meltano prefixes each line it relays).

        Args:
            states_written: STATE messages written.

        Returns:
            The lines, empty when no table had a record.
        """
        with self._lock:
            rows = sorted((table, TableStats(**vars(s))) for table, s in self._tables.items())
        if not rows:
            return []
        lines = []
        for table, s in rows:
            seconds = max(0.0, (s.last_landed or s.first_read) - s.first_read)
            lines.append(
                f"Load summary: table {table}: records {s.landed:,}, requests {s.requests:,}, "
                f"retries {s.retries:,}, merged {s.duplicates:,}, seconds {seconds:.1f}"
            )
        totals = (
            f"Load summary: {_count(len(rows), 'table')}, {_count(sum(s.landed for _, s in rows), 'record')}, "
            f"{_count(states_written, 'STATE message')} written."
        )
        nonfinite = sum(s.nonfinite for _, s in rows)
        if nonfinite:
            totals += f" {nonfinite:,} NaN or infinite values were sent as null."
        lines.append(totals)
        return lines


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
