"""The RJMetrics target: settings, wiring, and the rules for writing STATE."""

from __future__ import annotations

import _thread
import logging
import signal
import sys
import threading
import time
import typing as t
from dataclasses import dataclass

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, SingerSDKError
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import serialize_json
from singer_sdk.target_base import Target

from target_rjmetrics.client import (
    MAX_POINTS_PER_REQUEST,
    MAX_REQUEST_BYTES,
    PRODUCTION_URL,
    SANDBOX_URL,
    CaptureClient,
    RJMetricsClient,
)
from target_rjmetrics.dispatch import Dispatcher, StateLedger
from target_rjmetrics.exceptions import RJMetricsAuthError, RJMetricsError, RJMetricsInputError
from target_rjmetrics.reader import RJMetricsReader
from target_rjmetrics.sinks import RJMetricsSink, record_place, send_batch, table_name

if t.TYPE_CHECKING:
    from pathlib import PurePath
    from types import FrameType

    from target_rjmetrics.dispatch import Batch

DEFAULT_REQUEST_BYTES = 4 * 1024 * 1024
#: Seconds between two progress lines on stderr.
PROGRESS_SECONDS = 5.0


def seconds_type(*, positive: bool) -> th.CustomType:
    """A number of seconds, as a JSON number or as decimal text such as ``"0.5"``.

    Meltano passes a setting of ``kind: string`` set by an environment variable as text (its
    ``kind: decimal`` fails to serialise a value from the environment, and ``kind: integer``
    refuses ``0.5``), and so does the SDK's ``--config ENV`` for a number. The text must still
    be a plain non-negative decimal (``"1e3"``, ``"-1"``, ``"nan"`` are refused), and positive
    when ``positive``. "string" comes first so that tools that derive a Meltano kind from the
    first type (Meltano Hub's hub-utils) choose ``string``, the kind that works.

    Args:
        positive: Whether zero is refused too.

    Returns:
        The JSON Schema type.
    """
    if positive:
        pattern = r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)$"
        bound: dict[str, float] = {"exclusiveMinimum": 0}
    else:
        pattern = r"^[0-9]+(\.[0-9]+)?$"
        bound = {"minimum": 0}
    return th.CustomType({"type": ["string", "number"], "pattern": pattern, **bound})


class TerminationRequested(BaseException):  # noqa: N818 (a control-flow signal, like KeyboardInterrupt)
    """SIGTERM or SIGINT arrived: stop reading, settle, write the last landed STATE."""

    def __init__(self, signum: int) -> None:
        """Remember which signal.

        Args:
            signum: The signal number.
        """
        super().__init__(f"received signal {signum}")
        self.signum = signum


@dataclass
class TableStats:
    """What happened to one table, for progress lines and the summary."""

    read: int = 0
    landed: int = 0
    requests: int = 0
    retries: int = 0
    duplicates: int = 0
    nonfinite: int = 0
    first_read: float = 0.0
    last_landed: float = 0.0


class TargetRJMetrics(Target):
    """Loads Singer streams into RJMetrics (Adobe Commerce Reporting) through the Import API."""

    name = "target-rjmetrics"
    default_sink_class = RJMetricsSink
    message_reader_class = RJMetricsReader
    # ACTIVATE_VERSION is not advertised: the API cannot delete rows.
    capabilities: t.ClassVar[list] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
        TargetCapabilities.VALIDATE_RECORDS,
    ]

    config_jsonschema = th.PropertiesList(
        th.Property(
            "client_id",
            th.IntegerType(minimum=1),
            required=True,
            title="Client ID",
            description="Your RJMetrics client id, the number in every Import API URL.",
        ),
        th.Property(
            "api_key",
            th.StringType,
            required=True,
            secret=True,
            title="API Key",
            description="The Import API key of that client id; it grants write access, so keep it secret.",
        ),
        th.Property(
            "sandbox",
            th.BooleanType,
            default=False,
            title="Sandbox",
            description=(
                "Send everything to the sandbox host, which validates like production but keeps no data."
            ),
        ),
        th.Property(
            "api_url",
            th.StringType,
            title="API URL",
            description=(
                "Another Import API base URL ending in /v2, such as the local server or a proxy; "
                "it replaces the host that `sandbox` would choose, so set one or the other."
            ),
        ),
        th.Property(
            "table_prefix",
            th.StringType(pattern=r"^[A-Za-z0-9_]*$"),
            default="",
            title="Table Prefix",
            description="Text put in front of every table name; letters, digits and underscores only.",
        ),
        th.Property(
            "max_points_per_request",
            th.IntegerType(minimum=1, maximum=MAX_POINTS_PER_REQUEST),
            default=MAX_POINTS_PER_REQUEST,
            title="Max Points per Request",
            description="Most data points sent in one request; the API allows at most 100.",
        ),
        th.Property(
            "max_request_bytes",
            th.IntegerType(minimum=1024, maximum=MAX_REQUEST_BYTES),
            default=DEFAULT_REQUEST_BYTES,
            title="Max Request Bytes",
            description="Largest request body in bytes; the API refuses bodies over 5 MiB.",
        ),
        th.Property(
            "max_concurrent_requests",
            th.IntegerType(minimum=1, maximum=64),
            default=4,
            title="Max Concurrent Requests",
            description=(
                "Requests in flight at once, across and within streams; points with the same key "
                "are still sent in input order."
            ),
        ),
        th.Property(
            "request_timeout",
            seconds_type(positive=True),
            default=60,
            title="Request Timeout",
            description="Seconds to wait for a connection and for each read of a response before retrying.",
        ),
        th.Property(
            "max_retry_seconds",
            seconds_type(positive=False),
            default=300,
            title="Max Retry Seconds",
            description=(
                "How long to keep retrying a request that meets 429, 5xx, timeouts or dropped "
                "connections before the run fails."
            ),
        ),
        th.Property(
            "keyless_streams",
            th.StringType(allowed_values=["hash", "fail"]),
            default="hash",
            title="Keyless Streams",
            description=(
                "What to do with a stream without key properties: 'hash' keys each point by a hash "
                "of its content (field _record_hash), 'fail' stops the run."
            ),
        ),
        th.Property(
            "state_flush_seconds",
            seconds_type(positive=True),
            default=30,
            title="State Flush Seconds",
            description=(
                "Longest time a STATE waits before the records before it are sent, so it is written "
                "promptly even when input is slow."
            ),
        ),
        th.Property(
            "authenticate_on_start",
            th.BooleanType,
            default=True,
            title="Authenticate on Start",
            description="Check the credentials with the authenticate endpoint before reading any input.",
        ),
        th.Property(
            "dry_run_file",
            th.StringType,
            title="Dry Run File",
            description=(
                "Write each request body as a JSON line to this file instead of sending it; "
                "nothing is sent and the API key is not written."
            ),
        ),
    ).to_dict()

    def __init__(
        self,
        *,
        config: dict | PurePath | str | list[PurePath | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_reader: t.Any = None,  # noqa: ANN401
    ) -> None:
        """Create the target; nothing is sent until input is read.

        Args:
            config: Settings, or paths of JSON files holding them.
            parse_env_config: Also read ``TARGET_RJMETRICS_*`` environment variables.
            validate_config: Check the settings against the schema.
            setup_mapper: Set up stream maps.
            message_reader: A custom Singer message reader.
        """
        super().__init__(
            config=config,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=setup_mapper,
            message_reader=message_reader,
        )
        self.max_parallelism = 1  # sinks are sealed in order; sending is concurrent anyway
        self._check_settings()
        self._tables: dict[str, tuple[str, tuple[str, ...]]] = {}  # table -> (stream, key properties)
        self._stats: dict[str, TableStats] = {}
        self._stats_lock = threading.Lock()
        self._positions: dict[str, int] = {}
        self._alias_sources: dict[str, str] = {}  # output stream -> the input stream it comes from
        self.current_seq = 0
        self.current_position = 0
        self._records_read = 0
        self._retries = 0
        self._input_lock = threading.RLock()
        self._in_message = False
        self._pending_signal: int | None = None
        self._waking_for_failure = False
        self._stopping = False
        self._flush_due = False
        self._stop_ticker = threading.Event()
        self._ticker: threading.Thread | None = None
        self._started = False
        self._started_at = time.monotonic()
        self._client: RJMetricsClient | CaptureClient | None = None
        self._dispatcher: Dispatcher | None = None
        self._ledger: StateLedger | None = None
        self._stdout_lock = threading.Lock()

    # -- settings ---------------------------------------------------------------------

    def _check_settings(self) -> None:
        config = self.config
        if config.get("sandbox") and config.get("api_url"):
            msg = (
                "Both `sandbox` and `api_url` are set: `api_url` replaces the host `sandbox` would choose. "
                "Remove `api_url` to use the sandbox host, or set `sandbox` to false to use `api_url`."
            )
            raise ConfigValidationError(msg, errors=[msg])
        api_url = config.get("api_url")
        if api_url is not None and not str(api_url).startswith(("http://", "https://")):
            msg = f"`api_url` must start with http:// or https:// (got a value of {len(str(api_url))} characters)."
            raise ConfigValidationError(msg, errors=[msg])
        if config.get("load_method") == "overwrite":
            msg = "`load_method` 'overwrite' is not possible: the Import API cannot delete rows. Use 'upsert'."
            raise ConfigValidationError(msg, errors=[msg])

    @property
    def base_url(self) -> str:
        """The Import API base URL chosen by ``api_url`` and ``sandbox``."""
        if self.config.get("api_url"):
            return str(self.config["api_url"]).rstrip("/")
        return SANDBOX_URL if self.config.get("sandbox") else PRODUCTION_URL

    @property
    def points_per_request(self) -> int:
        """Points per request: ``max_points_per_request``, lowered by ``batch_size_rows``."""
        limit = int(self.config.get("max_points_per_request", MAX_POINTS_PER_REQUEST))
        rows = self.config.get("batch_size_rows")
        return min(limit, int(rows)) if rows else limit

    # -- pieces shared with the sinks ---------------------------------------------------

    @property
    def dispatcher(self) -> Dispatcher:
        """The dispatcher, created on first use."""
        self._start()
        assert self._dispatcher is not None  # noqa: S101 (set by _start)
        return self._dispatcher

    def claim_table(self, stream_name: str, key_properties: t.Sequence[str]) -> str:
        """Map a stream to its table, refusing names the API would refuse or that collide.

        Args:
            stream_name: The stream (after stream maps).
            key_properties: Its key properties.

        Returns:
            The table name.

        Raises:
            RJMetricsInputError: The name is empty after sanitising, another stream already
                loads into that table, or the stream's key properties changed mid-run.
        """
        table = self.table_for(stream_name)
        if not table:
            msg = f"Stream '{stream_name}' maps to an empty table name. Set `table_prefix` or rename the stream."
            raise RJMetricsInputError(msg)
        keys = tuple(key_properties)
        owner = self._tables.get(table)
        if owner is not None and owner[0] != stream_name:
            msg = (
                f"Streams '{owner[0]}' and '{stream_name}' both map to table '{table}' (characters outside "
                "[A-Za-z0-9_] become '_'). Rename one with `stream_maps` (`__alias__`)."
            )
            raise RJMetricsInputError(msg)
        if owner is not None and owner[1] != keys:
            msg = (
                f"Stream '{stream_name}' (table '{table}') changed its key properties from {list(owner[1])} "
                f"to {list(keys)} mid-run; rows of one table must share their keys. Send one key set per run."
            )
            raise RJMetricsInputError(msg)
        self._tables[table] = (stream_name, keys)
        return table

    def stats_for(self, table: str) -> TableStats:
        """Return the counters of a table.

        Args:
            table: The table name.

        Returns:
            Its counters.
        """
        with self._stats_lock:
            stats = self._stats.get(table)
            if stats is None:
                stats = self._stats[table] = TableStats(first_read=time.monotonic())
            return stats

    # -- start and stop -------------------------------------------------------------------

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        config = self.config
        dry_run = config.get("dry_run_file")
        if dry_run:
            self._client = CaptureClient(
                path=str(dry_run),
                client_id=int(config["client_id"]),
                base_url=self.base_url,
            )
            self.logger.info("Dry run: request bodies go to %s; nothing is sent.", dry_run)
        else:
            self._client = RJMetricsClient(
                client_id=int(config["client_id"]),
                api_key=str(config["api_key"]),
                base_url=self.base_url,
                timeout=float(config.get("request_timeout", 60)),
                max_retry_seconds=float(config.get("max_retry_seconds", 300)),
                logger=self.logger,
            )
        concurrency = int(config.get("max_concurrent_requests", 4))
        self._dispatcher = Dispatcher(
            send=self._send,
            max_concurrent=concurrency,
            max_queued=2 * concurrency,
            on_landed=self._landed,
        )
        self._ledger = StateLedger(self._dispatcher, self._write_state)
        if config.get("authenticate_on_start", True) and not dry_run:
            try:
                self._client.authenticate()
            except RJMetricsAuthError as exc:
                msg = (
                    f"{exc}. Check `client_id` and `api_key`, and that `sandbox`/`api_url` name the "
                    "host the key belongs to; nothing was read or sent."
                )
                raise RJMetricsAuthError(msg, status=exc.status, reasons=exc.reasons) from None
            self.logger.info("Authenticated as %s.", self._client.describe())
        self._ticker = threading.Thread(target=self._tick, name="rjmetrics-ticker", daemon=True)
        self._ticker.start()

    def listen(self, file_input: t.IO[str] | None = None) -> None:  # type: ignore[misc]
        """Check credentials, read all input, and settle what was sent.

        SDK 0.54 offers no hook before the first line is read, so this wraps the SDK's
        ``listen`` (which reads every line, then calls ``process_endofpipe``).

        Args:
            file_input: Where to read messages; standard input by default.
        """
        try:
            self._start()
            super().listen(file_input)
        except BaseException as exc:
            self._settle_after_stop()
            if self._pending_signal is not None and not isinstance(exc, TerminationRequested):
                # Whatever the stop interrupted (a wait for room to send, a retry), the run
                # ends because of the signal.
                raise TerminationRequested(self._pending_signal) from None
            failure = self._dispatcher.failure if self._dispatcher is not None else None
            if isinstance(exc, KeyboardInterrupt) and failure is not None:
                raise failure from None  # the ticker woke a main thread waiting on a quiet tap
            raise
        finally:
            self._finish()

    def process_endofpipe(self) -> None:
        """Send what is left, wait for it to land, and write the last STATE."""
        with self._input_lock:
            super().process_endofpipe()  # SDK drain: seals every sink's open batch
            self._seal_all()
        dispatcher = self.dispatcher
        dispatcher.wait()
        self._ledger_emit()
        if dispatcher.failure is not None:
            raise dispatcher.failure

    def _settle_after_stop(self) -> None:
        """Let requests already sent finish, then write the last state whose records landed.

        Requests in flight get their current try (bounded by ``request_timeout``) but no
        further retries, so stopping never waits out the whole retry budget.
        """
        self._stopping = True  # the ticker no longer seals batches or wakes this thread
        if self._dispatcher is None:
            return
        self._dispatcher.stop()
        if self._pending_signal is not None:
            self.logger.warning("Stopping on signal %d: finishing requests already sent.", self._pending_signal)
        if self._client is not None:
            self._client.cancel_retries()
        self._dispatcher.wait(timeout=float(self.config.get("request_timeout", 60)) + 5)
        self._ledger_emit()

    def _finish(self) -> None:
        self._stop_ticker.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self._dispatcher is not None:
            self._dispatcher.close()
        if self._client is not None:
            self._client.close()
        self._log_summary()

    # -- message handling -----------------------------------------------------------------

    def _process_record_message(self, message_dict: dict) -> None:
        if "stream" not in message_dict or "record" not in message_dict:
            self._assert_line_requires(message_dict, requires={"stream", "record"})  # raises, naming it
        with self._input_lock:
            self._in_message = True
            stream = str(message_dict["stream"])
            position = self._positions[stream] = self._positions.get(stream, 0) + 1
            self.current_position = position
            self.current_seq = self._records_read
            self._records_read += 1
            try:
                if type(message_dict["record"]) is not dict:
                    msg = f"Cannot load {self._where(stream, position)}: the record is not a JSON object."
                    raise RJMetricsInputError(msg)
                super()._process_record_message(message_dict)
            except (RJMetricsError, TerminationRequested):
                raise
            except Exception as exc:  # noqa: BLE001 (re-raised with its place in the input)
                raise self._input_error(self._where(stream, position), exc) from None
            finally:
                self._in_message = False
            if self._flush_due:
                self._seal_all()
        self._after_message()

    def _process_schema_message(self, message_dict: dict) -> None:
        with self._input_lock:
            self._in_message = True
            stream = message_dict.get("stream")
            try:
                self._assert_line_requires(message_dict, requires={"stream", "schema"})
                if type(message_dict["schema"]) is not dict:
                    msg = f"Cannot load the SCHEMA of stream '{stream}': its 'schema' is not a JSON object."
                    raise RJMetricsInputError(msg)
                if stream in self._sinks_active:
                    # A changed schema makes a new sink: send the old sink's points first,
                    # so that no older point can be sent after a newer one.
                    self._seal_all()
                super()._process_schema_message(message_dict)
                self._claim_aliases(stream)
            except (RJMetricsError, TerminationRequested):
                raise
            except Exception as exc:  # noqa: BLE001
                raise self._input_error(f"SCHEMA of stream '{stream}'", exc) from None
            finally:
                self._in_message = False
        self._after_message()

    def _claim_aliases(self, stream: str | None) -> None:
        """Refuse two input streams that stream maps send to one output stream (one table)."""
        for stream_map in self.mapper.stream_maps[str(stream)]:
            alias = stream_map.stream_alias
            source = self._alias_sources.setdefault(alias, str(stream))
            if source != stream:
                msg = (
                    f"Streams '{source}' and '{stream}' both become stream '{alias}' through "
                    f"`stream_maps`, so both would load into table '{self.table_for(alias)}'. "
                    "Give each its own `__alias__`."
                )
                raise RJMetricsInputError(msg)

    def table_for(self, stream_name: str) -> str:
        """Return the table a stream loads into.

        Args:
            stream_name: The stream (after stream maps).

        Returns:
            The table name.
        """
        return table_name(stream_name, str(self.config.get("table_prefix") or ""))

    def _process_state_message(self, message_dict: dict) -> None:
        self._assert_line_requires(message_dict, requires={"value"})
        value = message_dict["value"]
        if not value:
            self.logger.debug("Ignoring an empty STATE message.")
            return
        ledger = self._ledger_or_start()
        self._in_message = True
        try:
            ledger.add(self._records_read, value)
            ledger.emit_ready()
        finally:
            self._in_message = False
        self._after_message()

    def _process_activate_version_message(self, message_dict: dict) -> None:
        self.logger.warning(
            "ACTIVATE_VERSION for stream '%s' ignored: the Import API has no delete.",
            message_dict.get("stream"),
        )

    def _after_message(self) -> None:
        if self._pending_signal is not None:
            raise TerminationRequested(self._pending_signal)
        dispatcher = self._dispatcher
        if dispatcher is not None and dispatcher.failure is not None:
            raise dispatcher.failure

    def _input_error(self, where: str, exc: Exception) -> Exception:
        """Put the input position in front of an error, keeping the SDK's class where it has one."""
        if isinstance(exc, (SingerSDKError, InvalidInputLine)):
            msg = f"Cannot load {where}: {exc}"
            try:
                return type(exc)(msg)
            except TypeError:  # a class that wants more than a message
                return RJMetricsInputError(msg)
        self.logger.debug("Details of the input error", exc_info=exc)
        return RJMetricsInputError(f"Cannot load {where}: {type(exc).__name__} (run with log level DEBUG for details)")

    def _where(self, stream: str | None, position: int) -> str:
        return record_place(str(stream), self.table_for(str(stream)), position)

    def _ledger_or_start(self) -> StateLedger:
        self._start()
        assert self._ledger is not None  # noqa: S101
        return self._ledger

    def _ledger_emit(self) -> None:
        if self._ledger is not None:
            self._ledger.emit_ready()

    def _seal_all(self) -> None:
        """Send every open batch (called with the input lock held)."""
        self._flush_due = False
        for sink in [*self._sinks_to_clear, *self._sinks_active.values()]:
            if isinstance(sink, RJMetricsSink):
                sink.seal()

    # -- sending --------------------------------------------------------------------------

    def _send(self, batch: Batch) -> None:
        assert self._client is not None  # noqa: S101
        stats = self.stats_for(batch.table)

        def on_request(points: int) -> None:
            with self._stats_lock:
                stats.requests += 1

        def on_retry(_reason: str, _wait: float) -> None:
            with self._stats_lock:
                stats.retries += 1
                self._retries += 1

        send_batch(self._client, batch, on_request, on_retry)

    def _landed(self, batch: Batch) -> None:
        stats = self.stats_for(batch.table)
        with self._stats_lock:
            stats.landed += len(batch.points) + batch.duplicates
            stats.last_landed = time.monotonic()
        self._ledger_emit()

    def _write_state(self, value: dict) -> None:
        line = serialize_json(value) + "\n"
        with self._stdout_lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    # -- the background ticker: prompt STATE and progress lines ------------------------------

    def _tick(self) -> None:
        flush_seconds = float(self.config.get("state_flush_seconds", 30))
        interval = min(0.5, flush_seconds / 8)
        next_progress = time.monotonic() + PROGRESS_SECONDS
        interrupted = False
        while not self._stop_ticker.wait(interval):
            try:
                self._ledger_emit()
                self._flush_for_waiting_state(flush_seconds)
                dispatcher = self._dispatcher
                if dispatcher is not None and dispatcher.failure is not None and not interrupted:
                    interrupted = True
                    self._wake_main_thread()
                if time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + PROGRESS_SECONDS
                    self._log_progress()
            except Exception:  # noqa: BLE001 (the ticker must not die; the main thread reports failures)
                self.logger.debug("Ticker error", exc_info=True)

    def _wake_main_thread(self) -> None:
        """Sending failed while the main thread may be blocked reading a quiet tap: wake it.

        A real SIGINT aimed at the main thread interrupts its blocking read; our handler
        then raises the failure instead of treating it as a termination request.
        """
        if self._in_message or self._stopping:
            return  # the main thread is busy, or already stopping, and sees the failure itself
        self._waking_for_failure = True
        if signal.getsignal(signal.SIGINT) == self._handle_termination:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        else:  # embedded without our handler (e.g. in tests): the flag wakes it at the next line
            _thread.interrupt_main()

    def _flush_for_waiting_state(self, flush_seconds: float) -> None:
        ledger, dispatcher = self._ledger, self._dispatcher
        if ledger is None or dispatcher is None or self._stopping:
            return
        oldest = ledger.oldest_waiting()
        if oldest is None:
            return
        records_before, arrived = oldest
        # Send at half the allowance, leaving the other half for the requests to land.
        if time.monotonic() - arrived < flush_seconds / 2 or dispatcher.lowest_unlanded_seq() >= records_before:
            return
        self._flush_due = True  # the main thread seals at its next record
        if self._input_lock.acquire(timeout=0.05):  # a quiet tap: seal from here
            try:
                if self._flush_due:
                    self._seal_all()
            finally:
                self._input_lock.release()

    # -- people -----------------------------------------------------------------------------

    def _log_progress(self) -> None:
        with self._stats_lock:
            parts = [f"{table} {s.landed:,}/{s.read:,}" for table, s in sorted(self._stats.items())]
            landed = sum(s.landed for s in self._stats.values())
        dispatcher = self._dispatcher
        in_flight = dispatcher.in_flight if dispatcher is not None else 0
        elapsed = max(time.monotonic() - self._started_at, 1e-9)
        self.logger.info(
            "Progress: landed/read %s | in flight %d | retries %d | %.0f records/s landed",
            ", ".join(parts) or "(no records yet)",
            in_flight,
            self._retries,
            landed / elapsed,
        )

    def _log_summary(self) -> None:
        with self._stats_lock:
            rows = sorted(self._stats.items())
        if not rows:
            return
        header = f"{'table':<32} {'records':>10} {'requests':>9} {'retries':>8} {'merged':>8} {'seconds':>8}"
        lines = [header, "-" * len(header)]
        for table, s in rows:
            seconds = max(0.0, (s.last_landed or s.first_read) - s.first_read)
            lines.append(
                f"{table[:32]:<32} {s.landed:>10,} {s.requests:>9,} {s.retries:>8,} {s.duplicates:>8,} {seconds:>8.1f}"
            )
        nonfinite = sum(s.nonfinite for _, s in rows)
        if nonfinite:
            lines.append(f"{nonfinite:,} NaN or infinite values were sent as null.")
        written = self._ledger.written if self._ledger is not None else 0
        lines.append(f"STATE messages written: {written:,}.")
        self.logger.info("Load summary:\n%s", "\n".join(lines))

    # -- signals and the command line ----------------------------------------------------------

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002
        """Stop reading on SIGTERM/SIGINT; the listen loop settles and writes the last state.

        Args:
            signum: The signal.
            frame: Unused.
        """
        if self._waking_for_failure:
            self._waking_for_failure = False
            failure = self._dispatcher.failure if self._dispatcher is not None else None
            if failure is not None and not self._in_message and not self._stopping:
                raise failure
            return  # the message being processed, or the stop under way, sees the failure
        self._pending_signal = signum
        self._stopping = True
        if not self._in_message:
            raise TerminationRequested(signum)
        # Busy with a message, perhaps waiting for room to send while requests retry: stop
        # retrying and stop accepting batches, so it returns soon and sees the signal.
        if self._client is not None:
            self._client.cancel_retries()
        if self._dispatcher is not None:
            self._dispatcher.stop()

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,  # noqa: ANN401
        file_input: t.IO[str] | None = None,
    ) -> None:
        """Run from the command line: clear one-paragraph errors and a non-zero exit on failure.

        Args:
            about: Print the settings and capabilities, then exit.
            about_format: text, json or markdown.
            config: Config file paths, or ENV.
            file_input: A file to read instead of standard input.
        """
        if about:
            super().invoke(about=about, about_format=about_format, config=config, file_input=file_input)
            return
        cls.print_version(print_fn=cls.logger.info)
        from singer_sdk.plugin_base import _ConfigInput  # noqa: PLC0415

        # The sending threads wait for the GIL while the main thread turns records into data
        # points; at the default 5 ms switch interval each request lost ~15 ms that way
        # (measured at 50 ms latency with 4 in flight: 13% more throughput at 1 ms).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))

        config = config or _ConfigInput()
        try:
            target = cls(config=config.config, validate_config=True, parse_env_config=config.parse_env)
            target.listen(file_input)
        except TerminationRequested as exc:
            cls.logger.error("Stopped by signal %d before the input ended; the last STATE written is safe to resume from.", exc.signum)  # noqa: E501
            sys.exit(128 + exc.signum)
        except KeyboardInterrupt:
            cls.logger.error("Interrupted.")
            sys.exit(128 + signal.SIGINT)
        except ConfigValidationError as exc:
            cls.logger.error("Invalid settings: %s", exc)  # noqa: TRY400
            sys.exit(1)
        except RJMetricsError as exc:
            cls.logger.error("%s", exc)  # noqa: TRY400
            sys.exit(1)
        except (SingerSDKError, InvalidInputLine) as exc:
            cls.logger.error("%s: %s", type(exc).__name__, exc)  # noqa: TRY400
            sys.exit(1)
        except Exception as exc:  # a bug of ours or of a library: say so plainly, then show where
            cls.logger.error("Unexpected %s: %s", type(exc).__name__, exc)  # noqa: TRY400
            cls.logger.error("Details follow; please report them.", exc_info=exc)
            sys.exit(1)


logging.getLogger("backoff").propagate = False
