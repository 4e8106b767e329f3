"""One run of the target: everything that outlives a sink, built once and handed to every sink.

:class:`LoadRun` holds the input's place (:class:`InputCursor`), the tables
(:class:`TableRegistry`), the batches still filling, the sending threads around the key-order
core, the STATE path, the counters, and the run's one :class:`~target_rjmetrics.lifecycle.Stop`
and :class:`~target_rjmetrics.lifecycle.Clock`. The data path, top to bottom:

    sink -> LoadRun.add_point -> OpenBatches -> Sender.seal -> KeyOrder (slots, released points)
    sending thread: KeyOrder.take -> send_batch -> client -> transport -> KeyOrder.landed
    -> StateLedger.ready -> StateOutput (its own thread) -> standard output

Only the thread that reads input calls :meth:`LoadRun.add_point`, :meth:`LoadRun.add_state`,
:meth:`LoadRun.check` and the lifecycle methods. Nothing here imports the target or the sinks.
"""

from __future__ import annotations

import datetime
import sys
import threading
import typing as t

from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import serialize_json

from target_rjmetrics.batches import OpenBatches
from target_rjmetrics.client import RJMetricsClient
from target_rjmetrics.concurrency import ConcurrencyLimit
from target_rjmetrics.exceptions import RJMetricsAuthError, RJMetricsInputError, TerminationRequested
from target_rjmetrics.keyorder import KeyOrder
from target_rjmetrics.lifecycle import POLL_SECONDS, Clock, Phase, Stop
from target_rjmetrics.points import record_place, table_name
from target_rjmetrics.sending import Sender, send_batch
from target_rjmetrics.state import StateLedger, StateOutput, flush_due, unwritten_error
from target_rjmetrics.stats import LoadStats

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Hashable, Sequence

    from target_rjmetrics.batches import Batch
    from target_rjmetrics.settings import Settings
    from target_rjmetrics.transport import Transport

#: After SIGTERM/SIGINT, requests already in flight get at most this long to finish.
STOP_GRACE_SECONDS = 10.0
#: ...and the last STATE this long to be written, after which the run says it could not be.
OUTPUT_GRACE_SECONDS = 2.0
#: Seconds between two progress lines on stderr.
PROGRESS_SECONDS = 5.0


class TableRegistry:
    """Which stream loads into which table, refusing what the API or the stream maps make ambiguous."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._owners: dict[str, tuple[str, tuple[str, ...]]] = {}  # table -> (stream, key properties)
        self._alias_sources: dict[str, str] = {}  # stream after stream maps -> input stream

    def table_for(self, stream: str) -> str:
        """The table a stream (after stream maps) loads into."""
        return table_name(stream, self._prefix)

    def claim(self, stream: str, key_properties: Sequence[str]) -> str:
        """Map a stream to its table.

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
        self.records_read = 0
        self.seq = 0
        self.position = 0
        self._positions: dict[str, int] = {}

    def next_record(self, stream: str) -> int:
        """Count a record of ``stream`` (its place in ``seq``, its position in its stream in ``position``).

        Returns:
            The records read so far, this one included.
        """
        self.position = self._positions[stream] = self._positions.get(stream, 0) + 1
        self.seq = read = self.records_read
        self.records_read = read = read + 1
        return read

    def where(self, stream: str, tables: TableRegistry) -> str:
        """Name the current record of ``stream`` for error messages."""
        return record_place(stream, tables.table_for(stream), self.position)


class LoadRun:
    """One run: input in, requests out in key order, STATE written once its records landed.

    Args:
        settings: The run's settings.
        logger: The target's logger.
        clock: Time and waits (a test may give its own).
        transport: How tries are sent (by default the network, or the dry run).
        stdout: Where STATE lines go (standard output by default).
    """

    def __init__(
        self,
        settings: Settings,
        logger: logging.Logger,
        *,
        clock: Clock | None = None,
        transport: Transport | None = None,
        stdout: t.TextIO | None = None,
    ) -> None:
        self.settings = settings
        self.logger = logger
        self.clock = clock or Clock()
        self.stop = Stop()
        self.phase = Phase.NEW
        self.tables = TableRegistry(settings.table_prefix)
        self.cursor = InputCursor()
        self.stats = LoadStats(self.clock, per_request=settings.metrics_per_request)
        self.client = RJMetricsClient(
            client_id=settings.client_id,
            api_key=settings.api_key,
            base_url=settings.base_url,
            timeout=settings.request_timeout,
            max_retry_seconds=settings.max_retry_seconds,
            logger=logger,
            transport=transport,
            dry_run_file=settings.dry_run_file,
            on_try=self._tried,
            clock=self.clock,
            stop=self.stop,
        )
        # A dry run writes its requests one at a time, so the file lists them in input order.
        threads = 1 if settings.dry_run_file else settings.max_concurrent_requests
        self.ledger = StateLedger()
        self.output = StateOutput(stdout or sys.stdout, on_failure=self.stop.fail)
        self.sender = Sender(
            core=KeyOrder(max_points=settings.points_per_request, max_bytes=settings.max_request_bytes),
            ledger=self.ledger,
            output=self.output,
            send=self._send,
            threads=threads,
            max_sealed=2 * threads,
            clock=self.clock,
            stop=self.stop,
            on_landed=self._landed,
            limit=ConcurrencyLimit(threads, adaptive=settings.adaptive_concurrency),
        )
        self.batches = OpenBatches(
            max_points=settings.points_per_request,
            max_bytes=settings.max_request_bytes,
            on_open=self.sender.open,
            seal=self.sender.seal,
        )
        self._max_request_bytes = settings.max_request_bytes
        self._ticker = _Ticker(self)
        self._authenticated = threading.Event()  # the credentials' check ended
        self._authentication_failure: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the threads and the check of the credentials (once; later calls do nothing).

        The credentials are checked while the first input is read: nothing is sent until the
        API accepted them, and a refusal stops the run before any data point went out.
        """
        if self.phase is not Phase.NEW:
            return
        self.phase = Phase.RUNNING
        self.output.start()
        if self.client.dry_run:
            self.logger.info("Dry run: request bodies go to %s; nothing is sent.", self.settings.dry_run_file)
        elif self.settings.authenticate_on_start:
            self.sender.hold()
            threading.Thread(target=self._authenticate, name="rjmetrics-authenticate", daemon=True).start()
        self.sender.start()
        self._ticker.start()

    def _authenticate(self) -> None:
        try:
            self.client.authenticate()
        except RJMetricsAuthError as exc:
            msg = (
                f"{exc}. Check `client_id` and `api_key`, and that `sandbox`/`api_url` name the "
                "host the key belongs to; nothing was sent."
            )
            self._authentication_failure = RJMetricsAuthError(msg, status=exc.status, reasons=exc.reasons)
        except BaseException as exc:  # noqa: BLE001 (the run's failure, raised on the reading thread)
            self._authentication_failure = exc
        else:
            self.logger.info("Authenticated as %s.", self.client.describe())
            self.sender.release()
        finally:
            if self._authentication_failure is not None:
                self.stop.fail(self._authentication_failure)
            self._authenticated.set()

    def authentication_failure(self) -> BaseException | None:
        """Why the credentials were refused, once their check ended (None: accepted, or not checked).

        A run that fails on its input while the check is under way reports the credentials first:
        they are the more basic mistake. Waits for the check (bounded as every try is), unless a
        signal asks for a stop.
        """
        if self.phase is Phase.NEW or self.client.dry_run or not self.settings.authenticate_on_start:
            return None
        while not self._authenticated.wait(POLL_SECONDS):
            if self.stop.signum is not None:
                return None
        return self._authentication_failure

    def check(self) -> None:
        """Raise what ends the run, if anything does (after each message, and while input is quiet).

        Raises:
            TerminationRequested: A signal asked for a stop.
            BaseException: The failure that stops the run.
        """
        stop = self.stop
        if stop.requested:
            if stop.signum is not None:
                raise TerminationRequested(stop.signum)
            raise t.cast("BaseException", stop.failure)
        oldest = self.ledger.oldest
        if oldest is not None and flush_due(
            oldest, self.batches.oldest_seq, self.clock.now(), self.settings.state_flush_seconds
        ):
            self.seal_all()

    def finish_input(self) -> None:
        """The input ended: send what is left, wait for it to land, write the last STATE.

        Raises:
            BaseException: What stopped the run meanwhile.
        """
        self.start()
        self.seal_all()
        self.sender.settle()
        self.check()
        self.sender.emit()
        if not self.output.flush(self.clock, self.stop):
            self.check()  # a flush fails only once the run's stop is requested (StateOutput's order)
        self._wait_out_late_applies()
        self.check()

    def stop_run(self, signum: int | None) -> None:
        """Stop after a failure or a signal: nothing new is sent, requests in flight settle.

        Requests in flight get their current try but no further retries. After a failure a
        try may take its whole ``request_timeout``; after a signal at most
        ``STOP_GRACE_SECONDS``, because whoever sent it expects an exit soon.
        """
        started = self.phase is not Phase.NEW
        self.phase = Phase.STOPPING
        if signum is not None:
            self.stop.signal(signum)
        self.sender.halt()
        if not started:
            return
        grace = self.settings.request_timeout
        if signum is not None:
            grace = min(grace, STOP_GRACE_SECONDS)
            self.logger.warning(
                "Stopping on signal %d: finishing requests already sent (for up to %.0f s).", signum, grace
            )
        settled = self.sender.settle(timeout=grace + 1, watch_stop=False)
        self.sender.emit()
        if not self.output.flush(self.clock, None, timeout=OUTPUT_GRACE_SECONDS) and self.output.failure is None:
            self.logger.error("%s", unwritten_error())
        self._warn_about_late_applies(left_in_flight=not settled)

    def close(self) -> None:
        """Stop the threads, close connections, log the summary."""
        self._ticker.stop()
        self.sender.close()
        self.client.close()
        self.output.close()
        self.phase = Phase.CLOSED
        self.stats.report()
        self.stats.report_summary()
        for line in self.stats.summary_lines(self.output.written):
            self.logger.info("%s", line)

    # -- input --------------------------------------------------------------------------------

    def add_point(  # noqa: PLR0913, PLR0917 (a point and where it came from, on the hot path)
        self, stream: str, table: str, key: Hashable, encoded: bytes, seq: int, position: int
    ) -> None:
        """Add a record's data point to its table's batch still filling.

        Raises:
            RJMetricsInputError: The point alone is larger than a request may be.
        """
        if len(encoded) + 2 > self._max_request_bytes:
            msg = (
                f"{record_place(stream, table, position)}: the data point is {len(encoded):,} bytes encoded, "
                f"over `max_request_bytes` ({self._max_request_bytes:,}). Raise `max_request_bytes` (up to "
                "5 MiB) or drop large fields with `stream_maps`."
            )
            raise RJMetricsInputError(msg)
        self.batches.add(stream, table, key, encoded, seq, position)

    def add_state(self, value: t.Any, line_number: int | str) -> None:  # noqa: ANN401
        """Take a STATE that arrived after every record read so far; it is written once they landed.

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
        self.sender.add_state(self.cursor.records_read, line)

    def seal(self, table: str) -> None:
        """Send a table's batch still filling (the SDK drains a sink)."""
        self.batches.seal(table)

    def seal_all(self) -> None:
        """Send every batch still filling."""
        self.batches.seal_all()

    # -- sending ------------------------------------------------------------------------------

    def _send(self, batch: Batch) -> float | None:
        return send_batch(self.client, batch, self.stats, late_apply_seconds=self.settings.late_apply_seconds)

    def _tried(self, endpoint: str, table: str, status: int, seconds: float) -> None:
        self.stats.try_done(endpoint, table, status, seconds)
        if endpoint == "upsert":
            self.sender.observe(status, seconds)

    def _landed(self, batch: Batch) -> None:
        self.stats.landed(batch.table, len(batch.points), batch.merged)

    # -- requests the API may still apply late ------------------------------------------------

    def _late_apply_deadline(self) -> float | None:
        """When no try of unknown fate of this run can still be applied (None: there was none)."""
        unknown_fate_at = self.client.last_unknown_fate_at
        if unknown_fate_at is None or self.settings.late_apply_seconds <= 0:
            return None
        return unknown_fate_at + self.settings.late_apply_seconds

    def _wait_out_late_applies(self) -> None:
        """Before a normal exit, wait until no try of unknown fate of this run can still apply.

        Otherwise a run started right after this one could send a newer version of a row that
        this run's try of unknown fate then overwrites.
        """
        until = self._late_apply_deadline()
        remaining = 0.0 if until is None else until - self.clock.now()
        if remaining <= 0:
            return
        self.logger.warning(
            "A request whose fate is unknown (no answer came, or not the API's) may still be applied by the API "
            "for %.0f s (`late_apply_seconds`); waiting that long before exiting so that no later run is "
            "overwritten by it.",
            remaining,
        )
        self.clock.sleep(remaining, self.stop)

    def _warn_about_late_applies(self, *, left_in_flight: bool) -> None:
        """After a failure or a stop, say until when to wait before running again."""
        until = self._late_apply_deadline()
        now = self.clock.now()
        if left_in_flight:
            until = max(until or 0.0, now + self.settings.late_apply_seconds)
        remaining = 0.0 if until is None else until - now
        if remaining > 0:
            wall = self.clock.wall() + datetime.timedelta(seconds=remaining)
            self.logger.warning(
                "A request whose fate is unknown (no answer came, or not the API's) may still be applied by the "
                "API until %s UTC (`late_apply_seconds`); wait until then before running again, or a newer "
                "version of its rows may be overwritten.",
                wall.strftime("%H:%M:%S"),
            )


class _Ticker:
    """A thread that logs progress and the counters' metrics every few seconds."""

    def __init__(self, run: LoadRun) -> None:
        self._run = run
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rjmetrics-ticker", daemon=True)
        self._started = False

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._started:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        run = self._run
        while not self._stopped.wait(PROGRESS_SECONDS):
            try:
                run.logger.info("%s", run.stats.progress_line(run.sender.in_flight))
                run.stats.report()
            except Exception:
                run.logger.debug("Progress line failed", exc_info=True)
