"""What happened to each table: counters, metrics, the progress line and the summary.

Counters are updated from the reading thread (records read) and from the sending threads
(tries, retries, records landed and merged), so every update and every read holds one lock.
Metrics are the SDK's ``METRIC`` log lines (``singer_sdk.metrics``), which Meltano and the
SDK's structured logging read:

- ``http_request_duration`` (timer), one per try of a request, tagged with its endpoint,
  table, HTTP status (0: no answer) and whether it succeeded;
- ``http_request_count``, ``retry_count``, ``record_count`` and ``merged_record_count``
  (counters) per table, every few seconds and at the end; records count when they *land*
  (the SDK's own ``record_count`` counts records as they are read, even those that never
  land, so it is replaced);
- ``load_summary``, one per table at the end: records, requests, retries, merged, numbers
  sent as null (NaN, infinite, beyond a double's range), seconds.

Neither metrics, nor the progress line, nor the summary ever show a record value or the key.
"""

from __future__ import annotations

import collections
import enum
import os
import threading
import typing as t
from dataclasses import dataclass

from singer_sdk import metrics

from target_rjmetrics.lifecycle import Clock


class LoadMetric(str, enum.Enum):
    """Metrics of this target that the SDK has no name for."""

    MERGED_RECORD_COUNT = "merged_record_count"
    RETRY_COUNT = "retry_count"
    LOAD_SUMMARY = "load_summary"


@dataclass
class TableStats:
    """What happened to one table.

    Attributes:
        stream: The stream that loads into it.
        read: Records read for it.
        landed: Records whose data point (or a later version of it) the API accepted.
        requests: Requests the API accepted.
        retries: Tries that failed and were retried.
        merged: Records merged into a newer version of their key (dropped in its favour).
        nonfinite: Numbers sent as null: NaN, infinities, and numbers no double can hold.
        first_read: Monotonic time of its first record.
        last_landed: Monotonic time its last accepted request came back.
    """

    stream: str = ""
    read: int = 0
    landed: int = 0
    requests: int = 0
    retries: int = 0
    merged: int = 0
    nonfinite: int = 0
    first_read: float = 0.0
    last_landed: float = 0.0


class LoadStats:
    """The counters of every table of a run, and their metrics."""

    def __init__(self, clock: Clock | None = None) -> None:
        """Start with no table.

        Args:
            clock: The run's clock.
        """
        self._clock = clock or Clock()
        self._lock = threading.Lock()
        self._tables: dict[str, TableStats] = {}
        self._started = self._clock.now()
        self._metrics = metrics.get_metrics_logger()
        self._pid = os.getpid()
        self._tries: collections.Counter[tuple[str, str, int]] = collections.Counter()  # (endpoint, table, status)
        self._unreported: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.retries = 0

    def table(self, table: str, stream: str = "") -> TableStats:
        """Return the counters of a table, created on first use.

        Args:
            table: The table.
            stream: The stream that loads into it.

        Returns:
            Its counters (update them through this object's methods).
        """
        with self._lock:
            stats = self._tables.get(table)
            if stats is None:
                stats = self._tables[table] = TableStats(stream=stream, first_read=self._clock.now())
            elif stream and not stats.stream:
                stats.stream = stream
            return stats

    def nonfinite(self, stats: TableStats) -> None:
        """Count a number sent as null (NaN, an infinity, or beyond a double's range).

        Args:
            stats: Its table's counters.
        """
        with self._lock:
            stats.nonfinite += 1

    def try_done(self, endpoint: str, table: str, status: int, seconds: float) -> None:
        """Count one try of a request and log its duration (``http_request_duration``).

        Args:
            endpoint: ``upsert`` or ``authenticate``.
            table: The table of an upsert ("" for authenticate).
            status: The HTTP status of the answer, 0 when none came.
            seconds: How long the try took.
        """
        expected = 201 if endpoint == "upsert" else 200
        tags = {
            "endpoint": endpoint,
            **({"table": table} if table else {}),
            "http_status_code": status,
            "status": "succeeded" if status == expected else "failed",
            "pid": self._pid,
        }
        self._log("timer", metrics.Metric.HTTP_REQUEST_DURATION, seconds, tags)
        with self._lock:
            self._tries[(endpoint, table, status)] += 1
            self._unreported[table]["http_request_count"] += 1

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
            self._unreported[table]["retry_count"] += 1

    def landed(self, table: str, points: int, merged: int) -> None:
        """Count the records of a batch that landed.

        Args:
            table: Their table.
            points: Data points sent.
            merged: Records merged into a later version of their key in the batch.
        """
        stats = self.table(table)
        with self._lock:
            stats.landed += points + merged
            stats.merged += merged
            stats.last_landed = self._clock.now()
            unreported = self._unreported[table]
            unreported["record_count"] += points + merged
            unreported["merged_record_count"] += merged

    def report(self) -> None:
        """Log the counters that grew since the last report (every few seconds and at the end)."""
        names = {
            "record_count": metrics.Metric.RECORD_COUNT,
            "merged_record_count": LoadMetric.MERGED_RECORD_COUNT,
            "http_request_count": metrics.Metric.HTTP_REQUEST_COUNT,
            "retry_count": LoadMetric.RETRY_COUNT,
        }
        with self._lock:
            grown = [
                (table, self._tables[table].stream if table in self._tables else "", dict(counts))
                for table, counts in sorted(self._unreported.items())
                if any(counts.values())
            ]
            self._unreported.clear()
        for table, stream, counts in grown:
            tags = {"endpoint": "upsert", "stream": stream, "table": table} if table else {"endpoint": "authenticate"}
            for name, metric in names.items():
                if counts.get(name):
                    self._log("counter", t.cast("LoadMetric", metric), counts[name], {**tags, "pid": self._pid})

    def report_summary(self) -> None:
        """Log one ``load_summary`` metric per table (a machine-readable summary)."""
        with self._lock:
            rows = sorted((table, TableStats(**vars(s))) for table, s in self._tables.items())
        for table, s in rows:
            seconds = max(0.0, (s.last_landed or s.first_read) - s.first_read)
            tags = {
                "stream": s.stream,
                "table": table,
                "records": s.landed,
                "read": s.read,
                "requests": s.requests,
                "retries": s.retries,
                "merged": s.merged,
                "nonfinite_as_null": s.nonfinite,
                "seconds": round(seconds, 3),
                "pid": self._pid,
            }
            self._log("summary", LoadMetric.LOAD_SUMMARY, s.landed, tags)

    def _log(self, kind: str, metric: metrics.Metric | LoadMetric, value: float, tags: dict[str, t.Any]) -> None:
        # The SDK's Point takes its own Metric names; ours are the same kind of str enum.
        metrics.log(self._metrics, metrics.Point(kind, t.cast("metrics.Metric", metric), value, tags))

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
        elapsed = max(self._clock.now() - self._started, 1e-9)
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
                f"retries {s.retries:,}, merged {s.merged:,}, seconds {seconds:.1f}"
            )
        totals = (
            f"Load summary: {_count(len(rows), 'table')}, {_count(sum(s.landed for _, s in rows), 'record')}, "
            f"{_count(states_written, 'STATE message')} written."
        )
        nonfinite = sum(s.nonfinite for _, s in rows)
        if nonfinite:
            totals += f" {nonfinite:,} numbers that are NaN, infinite or beyond a double's range were sent as null."
        lines.append(totals)
        return lines


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
