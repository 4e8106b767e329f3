"""The machinery of a run, built once and handed to every sink: the connector to the Import API.

:class:`ImportAPIConnector` owns the client, the dispatcher and the STATE ledger, the table
registry, the place of each record in the input, the batches still filling, the counters,
and a ticker thread that writes STATE promptly and logs progress. Its lifecycle is one
:class:`Phase`. Sinks hand it data points; the target hands it STATE messages and tells it
when the input ends or the run must stop. It knows nothing of the SDK's sinks.

Dependencies run one way: target -> sinks -> connector -> client, dispatch, batches, stats,
settings. Nothing here imports the target or the sinks.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import errno
import os
import sys
import threading
import time
import typing as t

from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import serialize_json

from target_rjmetrics.batches import OpenBatches
from target_rjmetrics.client import RJMetricsClient
from target_rjmetrics.dispatch import Dispatcher, StateLedger
from target_rjmetrics.exceptions import (
    RJMetricsAPIError,
    RJMetricsAuthError,
    RJMetricsError,
    RJMetricsInputError,
    RJMetricsOutputError,
    RJMetricsRequestTooLargeError,
    RJMetricsRetriesExhausted,
    RJMetricsUnexpectedAnswerError,
)
from target_rjmetrics.points import record_place, table_name
from target_rjmetrics.stats import LoadStats

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Hashable, Sequence

    from target_rjmetrics.batches import Batch
    from target_rjmetrics.settings import Settings

#: After SIGTERM/SIGINT, requests already in flight get at most this long to finish.
STOP_GRACE_SECONDS = 10.0
#: Seconds between two progress lines on stderr.
PROGRESS_SECONDS = 5.0


class Phase(enum.Enum):
    """Where a run is."""

    NEW = "new"  #: built; nothing started, nothing sent
    RUNNING = "running"  #: the client, the dispatcher and the ticker are up; input is read
    STOPPING = "stopping"  #: a failure or a signal: nothing new goes out, requests in flight settle
    CLOSED = "closed"  #: everything let go; the summary is logged


class TableRegistry:
    """Which stream loads into which table, refusing what the API or the stream maps make ambiguous."""

    def __init__(self, prefix: str) -> None:
        """Create the registry.

        Args:
            prefix: The ``table_prefix`` setting.
        """
        self._prefix = prefix
        self._owners: dict[str, tuple[str, tuple[str, ...]]] = {}  # table -> (stream, key properties)
        self._alias_sources: dict[str, str] = {}  # stream after stream maps -> input stream

    def table_for(self, stream: str) -> str:
        """Return the table a stream loads into.

        Args:
            stream: The stream (after stream maps).

        Returns:
            The table name.
        """
        return table_name(stream, self._prefix)

    def claim(self, stream: str, key_properties: Sequence[str]) -> str:
        """Map a stream to its table.

        Args:
            stream: The stream (after stream maps).
            key_properties: Its key properties.

        Returns:
            The table name.

        Raises:
            RJMetricsInputError: The name is empty after sanitising, another stream already
                loads into that table, or the stream's key properties changed mid-run.
        """
        table = self.table_for(stream)
        if not table:
            msg = f"Stream '{stream}' maps to an empty table name. Set `table_prefix` or rename the stream."
            raise RJMetricsInputError(msg)
        keys = tuple(key_properties)
        owner = self._owners.get(table)
        if owner is not None and owner[0] != stream:
            msg = (
                f"Streams '{owner[0]}' and '{stream}' both map to table '{table}' (characters outside "
                "[A-Za-z0-9_] become '_'). Rename one with `stream_maps` (`__alias__`)."
            )
            raise RJMetricsInputError(msg)
        if owner is not None and owner[1] != keys:
            msg = (
                f"Stream '{stream}' (table '{table}') changed its key properties from {list(owner[1])} "
                f"to {list(keys)} mid-run; rows of one table must share their keys. Send one key set per run."
            )
            raise RJMetricsInputError(msg)
        self._owners[table] = (stream, keys)
        return table

    def claim_alias(self, alias: str, source: str) -> None:
        """Refuse two input streams that stream maps send to one output stream (one table).

        Args:
            alias: The stream after stream maps.
            source: The input stream it comes from.

        Raises:
            RJMetricsInputError: Another input stream already became ``alias``.
        """
        first = self._alias_sources.setdefault(alias, source)
        if first != source:
            msg = (
                f"Streams '{first}' and '{source}' both become stream '{alias}' through `stream_maps`, "
                f"so both would load into table '{self.table_for(alias)}'. Give each its own `__alias__`."
            )
            raise RJMetricsInputError(msg)


class InputCursor:
    """The place of each record in the input: its sequence number and its position in its stream."""

    def __init__(self) -> None:
        """Start before the first record."""
        self.records_read = 0
        self.seq = 0
        self.position = 0
        self._positions: dict[str, int] = {}

    def next_record(self, stream: str) -> tuple[int, int]:
        """Count a record of ``stream``.

        Args:
            stream: Its stream (as read, before stream maps).

        Returns:
            Its sequence number in the input (from 0) and its position in its stream (from 1).
        """
        self.position = self._positions[stream] = self._positions.get(stream, 0) + 1
        self.seq = self.records_read
        self.records_read += 1
        return self.seq, self.position

    def where(self, stream: str, tables: TableRegistry) -> str:
        """Name the current record of ``stream`` for error messages.

        Args:
            stream: Its stream.
            tables: Gives its table.

        Returns:
            The stream, table and position.
        """
        return record_place(stream, tables.table_for(stream), self.position)


class StateWriter:
    """Writes STATE lines to standard output; a write that fails becomes the run's failure.

    The write may fail on a sending thread, where an exception would be lost: the failure is
    handed to ``on_failure`` (the dispatcher), so the main thread stops the run and exits non-zero.
    """

    def __init__(self, on_failure: Callable[[BaseException], None]) -> None:
        """Create the writer.

        Args:
            on_failure: Told of a write that failed.
        """
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self.failure: RJMetricsOutputError | None = None

    def write(self, line: str) -> None:
        """Write one STATE line and flush it.

        Args:
            line: The serialized state, with its newline.

        Raises:
            RJMetricsOutputError: Standard output cannot be written (now or before).
        """
        with self._lock:
            if self.failure is not None:
                raise self.failure
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except OSError as exc:
                raise self._failed(exc) from None

    def _failed(self, exc: OSError) -> RJMetricsOutputError:
        reason = {
            errno.EPIPE: "broken pipe: whatever reads the target's output stopped reading",
            errno.ENOSPC: "no space left on the device standard output writes to",
        }.get(exc.errno or 0, exc.strerror or type(exc).__name__)
        self.failure = RJMetricsOutputError(
            f"Cannot write STATE to standard output ({reason}). Records sent so far were accepted, but "
            "no STATE after them could be recorded: keep the target's output readable (a file with "
            "room, or a reader that reads to the end) and rerun from the last STATE that was saved."
        )
        # Nothing more can reach stdout; keep interpreter shutdown from tripping on it again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        self._on_failure(self.failure)
        return self.failure


class ImportAPIConnector:
    """Everything of a run that outlives a sink: sending, STATE, tables, counters, the ticker."""

    def __init__(self, settings: Settings, logger: logging.Logger) -> None:
        """Create the connector; nothing is started or sent until :meth:`start`.

        Args:
            settings: The run's settings.
            logger: The target's logger.
        """
        self.settings = settings
        self._max_request_bytes = settings.max_request_bytes
        self.logger = logger
        self.phase = Phase.NEW
        self.tables = TableRegistry(settings.table_prefix)
        self.cursor = InputCursor()
        self.stats = LoadStats()
        # Held while a message is turned into points, and by the ticker to seal from its thread.
        self.input_lock = threading.RLock()
        self.flush_due = False  # a STATE waits: seal the open batches at the next record
        self.on_failure: Callable[[], None] = lambda: None  # the target wakes its main thread
        self.client: RJMetricsClient | None = None
        self.dispatcher: Dispatcher | None = None
        self.ledger: StateLedger | None = None
        self.batches: OpenBatches | None = None
        self._ticker: _Ticker | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Build the client and the dispatcher, check the credentials, start the ticker.

        Raises:
            RJMetricsAuthError: The API refused the client id and key.
        """
        if self.phase is not Phase.NEW:
            return
        settings = self.settings
        self.client = RJMetricsClient(
            client_id=settings.client_id,
            api_key=settings.api_key,
            base_url=settings.base_url,
            timeout=settings.request_timeout,
            max_retry_seconds=settings.max_retry_seconds,
            logger=self.logger,
            dry_run_file=settings.dry_run_file,
            on_try=self.stats.try_done,
        )
        # A dry run writes its requests one at a time, so the file lists them in input order.
        concurrency = 1 if settings.dry_run_file else settings.max_concurrent_requests
        self.dispatcher = Dispatcher(
            send=self._send,
            max_concurrent=concurrency,
            max_queued=2 * concurrency,
            on_landed=self._landed,
            max_points=settings.points_per_request,
            max_bytes=settings.max_request_bytes,
        )
        self.ledger = StateLedger(self.dispatcher, StateWriter(self.dispatcher.fail).write)
        self.batches = OpenBatches(
            max_points=settings.points_per_request,
            max_bytes=settings.max_request_bytes,
            register=self.dispatcher.register,
            submit=self.dispatcher.submit,
        )
        self.phase = Phase.RUNNING
        if settings.dry_run_file:
            self.logger.info("Dry run: request bodies go to %s; nothing is sent.", settings.dry_run_file)
        elif settings.authenticate_on_start:
            try:
                self.client.authenticate()
            except RJMetricsAuthError as exc:
                msg = (
                    f"{exc}. Check `client_id` and `api_key`, and that `sandbox`/`api_url` name the "
                    "host the key belongs to; nothing was read or sent."
                )
                raise RJMetricsAuthError(msg, status=exc.status, reasons=exc.reasons) from None
            self.logger.info("Authenticated as %s.", self.client.describe())
        self._ticker = _Ticker(self)
        self._ticker.start()

    @property
    def failure(self) -> BaseException | None:
        """The failure that stops the run, if sending has failed."""
        return self.dispatcher.failure if self.dispatcher is not None else None

    def finish_input(self) -> None:
        """The input ended: send what is left, wait for it to land, write the last STATE.

        Raises:
            BaseException: The failure that stopped sending.
        """
        self.start()
        with self.input_lock:
            self.seal_all()
        dispatcher, ledger = t.cast("Dispatcher", self.dispatcher), t.cast("StateLedger", self.ledger)
        dispatcher.wait()
        ledger.emit_ready()
        if dispatcher.failure is not None:
            raise dispatcher.failure
        self._wait_out_late_applies()

    def stop(self, signum: int | None) -> None:
        """Stop after a failure or a signal: nothing new is sent, requests in flight settle.

        Requests in flight get their current try but no further retries. After a failure a
        try may take its whole ``request_timeout``; after a signal at most
        ``STOP_GRACE_SECONDS``, because whoever sent it expects an exit soon.

        Args:
            signum: The signal that stops the run, or None for a failure.
        """
        self.request_stop()
        dispatcher = self.dispatcher
        if dispatcher is None:
            return
        timeout = self.settings.request_timeout
        if signum is not None:
            timeout = min(timeout, STOP_GRACE_SECONDS)
            self.logger.warning(
                "Stopping on signal %d: finishing requests already sent (for up to %.0f s).", signum, timeout
            )
        settled = dispatcher.wait(timeout=timeout + 1)
        t.cast("StateLedger", self.ledger).emit_ready()
        self._warn_about_late_applies(left_in_flight=not settled)

    def request_stop(self) -> None:
        """Send nothing new and retry nothing more (safe from a signal handler)."""
        if self.phase is Phase.RUNNING or self.phase is Phase.NEW:
            self.phase = Phase.STOPPING
        if self.client is not None:
            self.client.cancel_retries()
        if self.dispatcher is not None:
            self.dispatcher.stop()

    def close(self) -> None:
        """Stop the ticker and the sending threads, close connections, log the summary."""
        if self._ticker is not None:
            self._ticker.stop()
        if self.dispatcher is not None:
            self.dispatcher.close()
        if self.client is not None:
            self.client.close()
        self.phase = Phase.CLOSED
        written = self.ledger.written if self.ledger is not None else 0
        self.stats.report()
        self.stats.report_summary()
        for line in self.stats.summary_lines(written):
            self.logger.info("%s", line)

    # -- input --------------------------------------------------------------------------------

    def add_point(  # noqa: PLR0913, PLR0917 (a point and where it came from, on the hot path)
        self, stream: str, table: str, key: Hashable, encoded: bytes, seq: int, position: int
    ) -> None:
        """Add a record's data point to its table's open batch.

        Args:
            stream: The record's stream (after stream maps).
            table: Its table.
            key: The point's key identity.
            encoded: The point.
            seq: The record's sequence number in the input.
            position: Its position in its stream.

        Raises:
            RJMetricsInputError: The point alone is larger than a request may be.
        """
        batches = self.batches
        if batches is None:  # a record before start(): only when embedded without listen()
            self.start()
            batches = t.cast("OpenBatches", self.batches)
        if len(encoded) + 2 > self._max_request_bytes:
            msg = (
                f"{record_place(stream, table, position)}: the data point is {len(encoded):,} bytes encoded, "
                f"over `max_request_bytes` ({self._max_request_bytes:,}). Raise `max_request_bytes` (up to "
                "5 MiB) or drop large fields with `stream_maps`."
            )
            raise RJMetricsInputError(msg)
        batches.add(stream, table, key, encoded, seq, position)

    def add_state(self, value: t.Any, line_number: int | str) -> None:  # noqa: ANN401
        """Take a STATE that arrived after every record read so far; write it once they landed.

        Args:
            value: The state's value (not empty).
            line_number: Its input line, for the error message.

        Raises:
            InvalidInputLine: The value nests too deeply to be written back.
        """
        try:
            line = serialize_json(value) + "\n"
        except RecursionError:
            msg = (
                f"Input line {line_number}: the STATE message nests objects or arrays too deeply to write back; "
                "check the tap's output."
            )
            raise InvalidInputLine(msg) from None
        self.start()
        ledger = t.cast("StateLedger", self.ledger)
        ledger.add(self.cursor.records_read, line)
        ledger.emit_ready()

    def seal(self, table: str) -> None:
        """Send a table's open batch (the SDK drains a sink).

        Args:
            table: The table.
        """
        if self.batches is not None:
            self.batches.seal(table)

    def seal_all(self) -> None:
        """Send every open batch (called with the input lock held)."""
        self.flush_due = False
        if self.batches is not None:
            self.batches.seal_all()

    # -- sending ------------------------------------------------------------------------------

    def _send(self, batch: Batch) -> float | None:
        """Upsert a batch, splitting it in halves whenever the API answers 413.

        Returns:
            The monotonic time until which a try of it that was abandoned may still be
            applied by the API, or None when every try that failed surely changed nothing.

        Raises:
            RJMetricsInputError: A single data point was refused as too large.
            RJMetricsError: The API refused the batch; the message names its input range.
        """
        client = t.cast("RJMetricsClient", self.client)
        stats = self.stats
        pending = [list(batch.points)]
        abandoned: float | None = None
        while pending:
            keys = pending.pop()
            body = batch.body(keys)
            try:
                when = client.push(batch.table, body, on_retry=lambda _reason, _wait: stats.retry(batch.table))
            except RJMetricsRequestTooLargeError as exc:
                if len(keys) == 1:
                    position = batch.point_positions[keys[0]]
                    msg = (
                        f"The API refused a single data point of {len(body):,} bytes as too large (413): "
                        f"{record_place(batch.stream, batch.table, position)}: {exc}. Drop or shorten large "
                        "fields with `stream_maps`, or lower `max_request_bytes`."
                    )
                    raise RJMetricsInputError(msg) from None
                middle = len(keys) // 2
                pending.extend([keys[middle:], keys[:middle]])  # the first half goes first
                continue
            except RJMetricsError as exc:
                raise _with_positions(exc, batch) from None
            if when is not None:
                abandoned = when if abandoned is None else max(abandoned, when)
            stats.request(batch.table)
        if abandoned is None:  # the usual case: every try was answered, nothing may apply late
            return None
        late_apply = self.settings.late_apply_seconds
        return abandoned + late_apply if late_apply > 0 else None

    def _landed(self, batch: Batch) -> None:
        self.stats.landed(batch.table, len(batch.points), batch.duplicates)
        t.cast("StateLedger", self.ledger).emit_ready()

    # -- requests the API may still apply late ------------------------------------------------

    def _late_apply_deadline(self) -> float | None:
        """Monotonic time until which a request this run abandoned may still be applied."""
        abandoned = self.client.last_abandoned_at if self.client is not None else None
        if abandoned is None or self.settings.late_apply_seconds <= 0:
            return None
        return abandoned + self.settings.late_apply_seconds

    def _wait_out_late_applies(self) -> None:
        """Before a normal exit, wait until no abandoned request of this run can still apply.

        Otherwise a run started right after this one could send a newer version of a row
        that this run's abandoned request then overwrites.
        """
        until = self._late_apply_deadline()
        remaining = 0.0 if until is None else until - time.monotonic()
        if remaining <= 0:
            return
        self.logger.warning(
            "A request whose fate is unknown (no answer came, or not the API's) may still be applied by the API "
            "for %.0f s (`late_apply_seconds`); waiting that long before exiting so that no later run is "
            "overwritten by it.",
            remaining,
        )
        time.sleep(remaining)

    def _warn_about_late_applies(self, *, left_in_flight: bool) -> None:
        """After a failure or a stop, say how long to wait before running again."""
        until = self._late_apply_deadline()
        if left_in_flight:
            until = max(until or 0.0, time.monotonic() + self.settings.late_apply_seconds)
        remaining = 0.0 if until is None else until - time.monotonic()
        if remaining > 0:
            wall = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=remaining)
            self.logger.warning(
                "A request whose fate is unknown (no answer came, or not the API's) may still be applied by the "
                "API until %s UTC (`late_apply_seconds`); wait until then before running again, or a newer "
                "version of its rows may be overwritten.",
                wall.strftime("%H:%M:%S"),
            )


def _with_positions(exc: RJMetricsError, batch: Batch) -> RJMetricsError:
    """The same error, its message naming the input range of the batch that failed."""
    error: RJMetricsError
    if isinstance(exc, RJMetricsUnexpectedAnswerError):
        error = type(exc)(f"Could not send {batch.positions()}: {exc}", status=exc.status, reasons=exc.reasons)
    elif isinstance(exc, RJMetricsAPIError):
        hint = " Check `client_id` and `api_key`." if exc.status == 401 else ""  # noqa: PLR2004
        msg = f"The Import API refused {batch.positions()}: {exc}.{hint}"
        error = type(exc)(msg, status=exc.status, reasons=exc.reasons)
    elif isinstance(exc, RJMetricsRetriesExhausted):
        error = RJMetricsRetriesExhausted(f"Could not send {batch.positions()}: {exc}")
    else:
        return exc
    error.abandoned_at = exc.abandoned_at
    return error


class _Ticker:
    """A thread that writes STATE promptly, wakes the main thread on a failure, and logs progress."""

    def __init__(self, connector: ImportAPIConnector) -> None:
        self._connector = connector
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rjmetrics-ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        connector = self._connector
        flush_seconds = connector.settings.state_flush_seconds
        next_progress = time.monotonic() + PROGRESS_SECONDS
        told = False
        while not self._stopped.wait(min(0.5, flush_seconds / 8)):
            try:
                t.cast("StateLedger", connector.ledger).emit_ready()
                self._flush_for_waiting_state(flush_seconds)
                if connector.failure is not None and not told:
                    told = True
                    connector.on_failure()
                if time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + PROGRESS_SECONDS
                    in_flight = connector.dispatcher.in_flight if connector.dispatcher is not None else 0
                    connector.logger.info("%s", connector.stats.progress_line(in_flight))
                    connector.stats.report()
            except Exception:
                connector.logger.debug("Ticker error", exc_info=True)

    def _flush_for_waiting_state(self, flush_seconds: float) -> None:
        """Send the open batches early when a STATE has waited half of ``state_flush_seconds``."""
        connector = self._connector
        ledger, dispatcher = connector.ledger, connector.dispatcher
        if ledger is None or dispatcher is None or connector.phase is not Phase.RUNNING:
            return
        oldest = ledger.oldest_waiting()
        if oldest is None:
            return
        records_before, arrived = oldest
        # Send at half the allowance, leaving the other half for the requests to land.
        if time.monotonic() - arrived < flush_seconds / 2 or dispatcher.lowest_unlanded_seq() >= records_before:
            return
        connector.flush_due = True  # the main thread seals at its next record
        if connector.input_lock.acquire(timeout=0.05):  # a quiet tap: seal from here
            try:
                if connector.flush_due:
                    connector.seal_all()
            finally:
                connector.input_lock.release()
