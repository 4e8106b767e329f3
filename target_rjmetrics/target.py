"""The RJMetrics target: SDK glue. Settings and wiring, the message hooks, signals, the command line.

The machinery of a run lives in :class:`~target_rjmetrics.run.LoadRun`, built once from the
settings and handed to every sink (as the SDK's SQL targets hand theirs their connector). This
class reads messages into it and decides how a run ends. The private parts of the SDK it
overrides or reads are listed, with the reason and the SDK change that would let each go, in
:mod:`target_rjmetrics.sdk`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pathlib
import sys
import typing as t

from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities, TargetCapabilities
from singer_sdk.mapper import RemoveRecordTransform
from singer_sdk.target_base import Target

from target_rjmetrics import redaction
from target_rjmetrics.batch_files import load_batch
from target_rjmetrics.exceptions import (
    RJMetricsError,
    RJMetricsInputError,
    TerminationRequested,
    input_error,
    report,
)
from target_rjmetrics.reader import RJMetricsReader, json_type, schema_message_problem
from target_rjmetrics.run import LoadRun
from target_rjmetrics.sdk import ConfigInput
from target_rjmetrics.settings import (
    CONFIG_SCHEMA,
    Settings,
    env_setting_problems,
    env_var_name,
    read_config_file,
    settings_error,
    validate_config,
)
from target_rjmetrics.sinks import SDC_FIELDS, RemovedStreamSink, RJMetricsSink

if t.TYPE_CHECKING:
    from types import FrameType

    import click
    from singer_sdk.sinks import Sink


#: The fast path checks the SDK's maximum record age (a drain every 5 minutes) every so many records.
_MAX_AGE_CHECK_EVERY = 1000
#: Records between two looks at whether a waiting STATE needs its batches sealed early (a stop is
#: seen at once): a millisecond of records, a small fraction of ``state_flush_seconds``.
_CHECK_EVERY = 32


class TargetRJMetrics(Target):
    """Loads Singer streams into RJMetrics (Adobe Commerce Reporting) through the Import API."""

    name = "target-rjmetrics"
    default_sink_class = RJMetricsSink
    message_reader_class = RJMetricsReader
    # ACTIVATE_VERSION is not advertised: the API cannot delete rows.
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.BATCH,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
        TargetCapabilities.VALIDATE_RECORDS,
    ]
    config_jsonschema = CONFIG_SCHEMA
    #: Load records of plain streams without the SDK's per-record bookkeeping (``RJMetricsSink.load``);
    #: off, every record takes the SDK's path (the tests compare both).
    fast_path = True

    def __init__(self, **kwargs: t.Any) -> None:  # noqa: ANN401
        transport = kwargs.pop("transport", None)
        self._settings_from_env = bool(kwargs.get("parse_env_config"))  # read by _validate_config
        # Before anything is checked or logged: the settings' warnings may quote `api_url`.
        redaction.install()
        _learn_secrets(kwargs.get("config"), os.environ if self._settings_from_env else {})
        try:
            super().__init__(**kwargs)
        except ValueError:
            # SDK 0.54 converts integer and JSON setting variables before validating, and lets
            # the conversion's error (which quotes the value) out: name the variable instead.
            problems = env_setting_problems(self._schema()["properties"], self._env_var_prefix, os.environ)[0]
            if not (self._settings_from_env and problems):
                raise
            raise settings_error(problems) from None
        _learn_secrets(self.config, {})
        self.max_parallelism = 1  # sinks are drained in order; sending is concurrent anyway
        self.run = LoadRun(Settings.from_config(self.config), self.logger, transport=transport)
        self._plain_streams: dict[str, RJMetricsSink] = {}  # input stream -> its sink, for the fast path
        self.message_reader.watch(self.run.check)  # type: ignore[attr-defined]

    # -- settings ---------------------------------------------------------------------

    def _schema(self) -> dict[str, t.Any]:
        """The settings schema with the SDK's own settings."""
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        return schema

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Check the settings, naming each setting and the rule it breaks, never its value.

        Overrides SDK 0.54's private hook (called once settings are merged), which quotes each
        offending value, the API key's too. See :func:`~target_rjmetrics.settings.validate_config`.

        Raises:
            ConfigValidationError: A setting is missing or breaks its rule.
        """
        schema = self._schema()
        warnings, problems = validate_config(self._config, schema, os.environ if self._settings_from_env else None)
        for warning in warnings:
            self.logger.warning("%s", warning)
        if problems and raise_errors:
            raise settings_error(problems, schema)
        if problems:
            self.logger.warning("Invalid settings: %s", "; ".join(problems))
        return problems

    # -- sinks --------------------------------------------------------------------------

    def get_sink_class(self, stream_name: str) -> type[Sink]:
        """Give a stream that stream maps remove (``__NULL__``) a sink that loads nothing.

        SDK 0.54 makes a sink for such a stream too; ours would claim its table, warn or fail
        about its keys, and list it in the summary.
        """
        maps = [m for ms in self.mapper.stream_maps.values() for m in ms if m.stream_alias == stream_name]
        if maps and all(isinstance(m, RemoveRecordTransform) for m in maps):
            return RemovedStreamSink
        return super().get_sink_class(stream_name)

    def get_sink(
        self,
        stream_name: str,
        *,
        record: dict[str, t.Any] | None = None,
        schema: dict[str, t.Any] | None = None,
        key_properties: t.Sequence[str] | None = None,
    ) -> Sink:
        """The stream's sink; a new one when a SCHEMA brings a new schema or key properties.

        A new sink gets the run and checks its stream in ``setup()``: the SDK's ``add_sink`` is
        final and cannot pass the run (its SQL targets add ``add_sqlsink`` for the same reason).
        """
        del record
        if schema is None:
            return self._sinks_active[stream_name]
        existing = self._sinks_active.get(stream_name)
        if existing is not None:
            if existing.original_schema == schema and existing.key_properties == key_properties:
                return existing
            self.logger.info("Schema or key properties for '%s' stream have changed", stream_name)
            self._sinks_to_clear.append(self._sinks_active.pop(stream_name))
        sink_class = t.cast("type[RJMetricsSink]", self.get_sink_class(stream_name=stream_name))
        sink = sink_class(
            target=self, stream_name=stream_name, schema=schema, key_properties=key_properties, run=self.run
        )
        sink.setup()
        self._sinks_active[stream_name] = sink
        return sink

    # -- a run --------------------------------------------------------------------------

    def listen(self, file_input: t.IO[str] | None = None) -> None:  # type: ignore[misc]
        """Check credentials, read all input, and settle what was sent.

        SDK 0.54 offers no hook before the first line is read, so this wraps the SDK's ``listen``
        (which reads every line, then calls ``process_endofpipe``).
        """
        run = self.run
        try:
            run.start()
            super().listen(file_input)
        except BaseException as exc:
            refused = None if isinstance(exc, TerminationRequested) else run.authentication_failure()
            signum = run.stop.signum
            run.stop_run(signum)
            if signum is not None and not isinstance(exc, TerminationRequested):
                # Whatever the stop interrupted (a wait for room to send, a retry), the run
                # ends because of the signal.
                raise TerminationRequested(signum) from None
            if refused is not None and exc is not refused:
                raise refused from None  # the credentials, checked while the input was read
            raise
        finally:
            run.close()

    def process_endofpipe(self) -> None:
        """Send what is left, wait for it to land, and write the last STATE."""
        super().process_endofpipe()  # the SDK drains every sink: their open batches are sealed
        self.run.finish_input()

    # -- messages -----------------------------------------------------------------------

    def _process_record_message(self, message_dict: dict[str, t.Any]) -> None:
        if "stream" not in message_dict or "record" not in message_dict:
            self._assert_line_requires(message_dict, requires={"stream", "record"})  # raises, naming it
        run = self.run
        stream = message_dict["stream"]
        if type(stream) is not str:
            line = getattr(self.message_reader, "line_number", "?")
            msg = (
                f"Input line {line}: the RECORD message's 'stream' is {json_type(stream)}, not a string "
                "naming the stream. Check the tap's output."
            )
            raise RJMetricsInputError(msg)
        cursor = run.cursor
        read = cursor.next_record(stream)
        try:
            record = message_dict["record"]
            if type(record) is not dict:
                msg = f"Cannot load {self._where(stream)}: the record is not a JSON object."
                raise RJMetricsInputError(msg)
            sink = self._plain_streams.get(stream)
            if sink is not None and SDC_FIELDS.isdisjoint(record):
                sink.load(record)
                if read % _MAX_AGE_CHECK_EVERY == 0:
                    self._handle_max_record_age()
            else:
                super()._process_record_message(message_dict)
        except (RJMetricsError, TerminationRequested):
            raise
        except Exception as exc:
            if exc is run.stop.failure:
                raise  # sending failed: not this record's fault
            raise input_error(self._where(stream), exc, self.logger) from None
        # A stop is seen at the next record; the rest (a STATE waiting to be flushed) every few.
        if run.stop.requested or read % _CHECK_EVERY == 0:
            run.check()

    def _process_schema_message(self, message_dict: dict[str, t.Any]) -> None:
        stream = message_dict.get("stream")
        try:
            self._assert_line_requires(message_dict, requires={"stream", "schema"})
            problem = schema_message_problem(message_dict)
            if problem is not None:
                line = getattr(self.message_reader, "line_number", "?")
                msg = f"Input line {line}: {problem}. Check the tap's output."
                raise RJMetricsInputError(msg)
            super()._process_schema_message(message_dict)
            for stream_map in self.mapper.stream_maps[str(stream)]:
                self.run.tables.claim_alias(stream_map.stream_alias, str(stream))
            self._plain_streams.pop(str(stream), None)
            sink = self._sinks_active.get(str(stream))
            if self.fast_path and type(sink) is RJMetricsSink and sink.is_plain(self.mapper.stream_maps):
                self._plain_streams[str(stream)] = sink
        except (RJMetricsError, TerminationRequested):
            raise
        except Exception as exc:  # noqa: BLE001
            raise input_error(f"SCHEMA of stream '{stream}'", exc, self.logger) from None
        self.run.check()

    def _process_state_message(self, message_dict: dict[str, t.Any]) -> None:
        self._assert_line_requires(message_dict, requires={"value"})
        value = message_dict["value"]
        if not value:
            self.logger.debug("Ignoring an empty STATE message.")
            return
        self.run.add_state(value, getattr(self.message_reader, "line_number", "?"))
        self.run.check()

    def _process_batch_message(self, message_dict: dict[str, t.Any]) -> None:
        """Load every record of a BATCH message's files exactly as a RECORD message of its stream.

        The SDK's (0.54) hands whole files to ``Sink.process_batch``, skipping validation, stream
        maps and input positions; see :func:`~target_rjmetrics.batch_files.load_batch`.
        """
        self._assert_line_requires(message_dict, requires={"stream", "encoding", "manifest"})
        load_batch(message_dict, self.run.settings.batch_storage, self._process_record_message)

    def _process_activate_version_message(self, message_dict: dict[str, t.Any]) -> None:
        self.logger.warning(
            "ACTIVATE_VERSION for stream '%s' ignored: the Import API has no delete.",
            message_dict.get("stream"),
        )

    def _where(self, stream: str) -> str:
        return self.run.cursor.where(stream, self.run.tables)

    # -- signals ------------------------------------------------------------------------

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002
        """SIGTERM/SIGINT: ask the run to stop (no lock, no raise: see :mod:`target_rjmetrics.lifecycle`).

        The thread that reads input sees the stop within a tenth of a second, wherever it waits.
        """
        run = getattr(self, "run", None)
        if run is not None:
            run.stop.signal(signum)

    # -- the command line ---------------------------------------------------------------

    @classmethod
    def cb_config(
        cls,
        ctx: click.Context,
        param: click.Option,  # noqa: ARG003
        value: tuple[str, ...],
    ) -> ConfigInput:
        """Read the ``--config`` files; a missing or malformed one is one error line, exit 1.

        The SDK's reader lets a traceback out (46 lines for a JSON typo).
        """
        try:
            config = {k: v for path in value if path != "ENV" for k, v in read_config_file(path).items()}
        except ConfigValidationError as exc:
            cls.logger.error("%s", exc)  # noqa: TRY400 (the message is the whole story)
            ctx.exit(1)
        return ConfigInput(config=config, parse_env="ENV" in value)

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,  # noqa: ANN401
        file_input: t.IO[str] | None = None,
    ) -> None:
        """Run from the command line: clear one-paragraph errors and a non-zero exit on failure."""
        if about:
            super().invoke(about=about, about_format=about_format, config=config, file_input=file_input)
            return
        # Every object the imports made lives until exit: frozen, the garbage collector's full
        # passes (and the one at interpreter exit) stop walking them again, which took ~80 ms
        # of a short run's start-to-exit. Once per process: a program invoking us again keeps
        # its later garbage collectable.
        if gc.get_freeze_count() == 0:
            gc.freeze()
        redaction.log_uncaught_exceptions()
        cls.print_version(print_fn=cls.logger.info)
        # The sending threads wait for the GIL while the main thread turns records into data
        # points; at the default 5 ms switch interval each request lost ~15 ms that way
        # (measured at 50 ms latency with 4 in flight: 13% more throughput at 1 ms).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        config = config or ConfigInput()
        try:
            target = cls(config=config.config, validate_config=True, parse_env_config=config.parse_env)
            target.listen(file_input)
        except (Exception, KeyboardInterrupt, TerminationRequested) as exc:  # noqa: BLE001 (every failure is reported as a sentence)
            sys.exit(report(exc, cls.logger))


def _learn_secrets(config: object, environ: t.Mapping[str, str]) -> None:
    """Tell the scrubber the API key and any password of ``api_url``, wherever they were set."""
    sources: list[t.Any] = []
    if isinstance(config, t.Mapping):
        sources.append(config)
    elif isinstance(config, (str, os.PathLike, list, tuple)):
        for path in [config] if isinstance(config, (str, os.PathLike)) else config:
            with contextlib.suppress(Exception):  # unreadable: the SDK says so, quoting nothing
                sources.append(json.loads(pathlib.Path(path).read_text(encoding="utf-8")))
    sources.append({"api_key": environ.get(env_var_name("api_key")), "api_url": environ.get(env_var_name("api_url"))})
    for source in sources:
        if isinstance(source, t.Mapping):
            redaction.SCRUBBER.learn(api_key=source.get("api_key"), url=source.get("api_url"))
