"""What happened to each table: counters, metrics, the progress line and the summary.

Counters are updated from the reading thread (records read) and from the sending threads
(tries, retries, records landed and merged), so every update and every read holds one lock.
Metrics are the SDK's ``METRIC`` log lines (``singer_sdk.metrics``), which Meltano and the
SDK's structured logging read:

- ``http_request_duration`` (timer): by default one per endpoint and table every few seconds
  and at the end, summarising the tries of that interval (its value is their median in seconds;
  its tags give ``count``, ``p50``, ``p95``, ``max`` and the count of each HTTP status, 0 for no
  answer). With ``metrics_per_request`` (or at DEBUG) one line per try instead, as the SDK's
  REST streams log it: a line per request would be most of a run's log and a lock taken on every
  sending thread;
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
import logging
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

    def __init__(self, clock: Clock | None = None, *, per_request: bool = False) -> None:
        self._clock = clock or Clock()
        self._lock = threading.Lock()
        self._tables: dict[str, TableStats] = {}
        self._started = self._clock.now()
        self._metrics = metrics.get_metrics_logger()
        self._pid = os.getpid()
        self._tries: collections.Counter[tuple[str, str, int]] = collections.Counter()  # (endpoint, table, status)
        self._reported_tries: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self._durations: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        self._per_request = per_request or self._metrics.isEnabledFor(logging.DEBUG)
        self._unreported: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.retries = 0

    def table(self, table: str, stream: str = "") -> TableStats:
        """Return the counters of a table, created on first use."""
        with self._lock:
            stats = self._tables.get(table)
            if stats is None:
                stats = self._tables[table] = TableStats(stream=stream, first_read=self._clock.now())
            elif stream and not stats.stream:
                stats.stream = stream
            return stats

    def nonfinite(self, stats: TableStats) -> None:
        """Count a number sent as null (NaN, an infinity, or beyond a double's range)."""
        with self._lock:
            stats.nonfinite += 1

    def try_done(self, endpoint: str, table: str, status: int, seconds: float) -> None:
        """Count one try of a request (its endpoint, table or "", HTTP status or 0, duration)."""
        if self._per_request:
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
            self._durations[(endpoint, table)].append(seconds)
            self._unreported[table]["http_request_count"] += 1

    def request(self, table: str) -> None:
        """Count a request the API accepted."""
        stats = self.table(table)
        with self._lock:
            stats.requests += 1

    def retry(self, table: str) -> None:
        """Count a try that is retried."""
        stats = self.table(table)
        with self._lock:
            stats.retries += 1
            self.retries += 1
            self._unreported[table]["retry_count"] += 1

    def landed(self, table: str, points: int, merged: int) -> None:
        """Count the records of a batch that landed."""
        stats = self.table(table)
        with self._lock:
            stats.landed += points + merged
            stats.merged += merged
            stats.last_landed = self._clock.now()
            unreported = self._unreported[table]
            unreported["record_count"] += points + merged
            unreported["merged_record_count"] += merged

    def report(self) -> None:
        """Log what grew since the last report: counters, and the tries' durations (every few seconds, at the end)."""
        with self._lock:
            durations, self._durations = self._durations, collections.defaultdict(list)
            statuses = self._interval_statuses()
        if not self._per_request:
            for (endpoint, table), seconds in sorted(durations.items()):
                self._log_durations(endpoint, table, sorted(seconds), statuses.get((endpoint, table), {}))
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

    def _interval_statuses(self) -> dict[tuple[str, str], dict[str, int]]:
        """HTTP statuses of the tries since the last report, by (endpoint, table) (lock held)."""
        grown = self._tries - self._reported_tries
        self._reported_tries = collections.Counter(self._tries)
        statuses: dict[tuple[str, str], dict[str, int]] = collections.defaultdict(dict)
        for (endpoint, table, status), count in sorted(grown.items()):
            statuses[(endpoint, table)][str(status)] = count
        return statuses

    def _log_durations(self, endpoint: str, table: str, seconds: list[float], statuses: dict[str, int]) -> None:
        """One ``http_request_duration`` summarising an interval's tries (``seconds`` sorted)."""
        count = len(seconds)
        p50, p95 = round(seconds[(count - 1) // 2], 6), seconds[min(count - 1, int(count * 0.95))]
        tags = {
            "endpoint": endpoint,
            **({"table": table} if table else {}),
            "count": count,
            "p50": p50,
            "p95": round(p95, 6),
            "max": round(seconds[-1], 6),
            "http_status_codes": statuses,
            "pid": self._pid,
        }
        self._log("timer", metrics.Metric.HTTP_REQUEST_DURATION, p50, tags)

    def _log(self, kind: str, metric: metrics.Metric | LoadMetric, value: float, tags: dict[str, t.Any]) -> None:
        # The SDK's Point takes its own Metric names; ours are the same kind of str enum.
        metrics.log(self._metrics, metrics.Point(kind, t.cast("metrics.Metric", metric), value, tags))

    def progress_line(self, in_flight: int) -> str:
        """The progress line: records landed/read per table, requests in flight, retries, rate."""
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
        """The summary: one line per table, then one of totals (Meltano prefixes each line it relays)."""
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
