"""The RJMetrics target: settings, wiring, and the rules for writing STATE."""

from __future__ import annotations

import _thread
import contextlib
import datetime
import decimal
import difflib
import errno
import json
import logging
import os
import signal
import sys
import threading
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, SingerSDKError
from singer_sdk.helpers._batch import BatchConfig
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities
from singer_sdk.mapper import RemoveRecordTransform
from singer_sdk.plugin_base import JSONSchemaValidator, _ConfigInput
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import serialize_json
from singer_sdk.target_base import Target

from target_rjmetrics.batch_files import read_batch
from target_rjmetrics.client import (
    MAX_POINTS_PER_REQUEST,
    MAX_REQUEST_BYTES,
    PRODUCTION_URL,
    SANDBOX_URL,
    CaptureClient,
    RJMetricsClient,
)
from target_rjmetrics.dispatch import Dispatcher, StateLedger
from target_rjmetrics.exceptions import (
    RJMetricsAuthError,
    RJMetricsError,
    RJMetricsInputError,
    RJMetricsOutputError,
)
from target_rjmetrics.reader import RJMetricsReader
from target_rjmetrics.sinks import RemovedStreamSink, RJMetricsSink, record_place, send_batch, table_name

if t.TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import PurePath
    from types import FrameType

    import click
    import jsonschema
    from singer_sdk.sinks import Sink

    from target_rjmetrics.dispatch import Batch

DEFAULT_REQUEST_BYTES = 4 * 1024 * 1024
TABLE_PREFIX_PATTERN = r"^[A-Za-z0-9_]*$"
#: Seconds an abandoned request may still be applied by the API (no source bounds it; see
#: "Late application" in the API contract). Gateways give up on a request after about 60 s.
DEFAULT_LATE_APPLY_SECONDS = 120
#: After SIGTERM/SIGINT, requests already in flight get at most this long to finish.
STOP_GRACE_SECONDS = 10.0
#: Seconds between two progress lines on stderr.
PROGRESS_SECONDS = 5.0

#: What SDK 0.54 reads as true in a boolean setting variable; it reads any other text as false.
_ENV_TRUE = ("true", "1", "yes", "on")
_ENV_FALSE = ("false", "0", "no", "off", "")
_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a JSON array",
    "null": "null",
}
_BOUND_WORDS = {
    "minimum": "at least",
    "maximum": "at most",
    "exclusiveMinimum": "more than",
    "exclusiveMaximum": "less than",
}
#: Why a rule is what it is, added to the error that names it.
_RULE_NOTES = {
    ("max_points_per_request", "maximum"): "the API's limit",
    ("max_request_bytes", "maximum"): "the API's limit, 5 MiB",
    ("table_prefix", "pattern"): "letters, digits and underscores only",
}
#: Settings that choose the host, and words of names that look like they meant to.
_HOST_SETTINGS = ("api_url", "sandbox")
_HOST_WORDS = ("url", "host", "sandbox", "endpoint", "server")
_CONFIG_EXAMPLE = '{"client_id": 12345, "api_key": "..."}'


def read_config_file(path: str) -> dict[str, t.Any]:
    """Read one ``--config`` file of settings.

    Args:
        path: The file.

    Returns:
        Its settings.

    Raises:
        ConfigValidationError: The file is missing, unreadable, not JSON, or not a JSON
            object; the message names the file and, for a JSON error, the line and column
            (never the file's text, which holds the API key).
    """
    where = f"Cannot read the config file '{path}'"
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"), parse_float=decimal.Decimal)  # as the SDK does
    except FileNotFoundError:
        msg = f"{where}: it does not exist."
    except UnicodeDecodeError as exc:
        msg = f"{where}: it is not UTF-8 text (byte {exc.start + 1})."
    except json.JSONDecodeError as exc:  # its msg says what the parser expected, never what it found
        if exc.doc.strip():
            msg = f"{where}: it is not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})."
        else:
            msg = f"{where}: it is empty; it should hold a JSON object of settings such as {_CONFIG_EXAMPLE}."
    except OSError as exc:
        msg = f"{where}: {exc.strerror or type(exc).__name__}."
    else:
        if type(value) is dict:
            return value
        msg = f"{where}: it holds {_json_type_name(value)}, not an object of settings such as {_CONFIG_EXAMPLE}."
    raise ConfigValidationError(msg, errors=[msg])


def _json_type_name(value: object) -> str:
    if value is None:
        return "null"
    for cls, name in (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a number"),
        (decimal.Decimal, "a number"),
        (str, "a string"),
        (dict, "a JSON object"),
        (list, "a JSON array"),
    ):
        if isinstance(value, cls):
            return name
    return type(value).__name__


def _schema_types(prop: Mapping[str, t.Any]) -> set[str]:
    kind = prop.get("type")
    return {kind} if isinstance(kind, str) else set(kind or ())


def _number_text(value: t.Any) -> str:  # noqa: ANN401
    return f"{value:,}" if type(value) is int else str(value)


def _setting_problems(error: jsonschema.ValidationError, sources: Mapping[str, str]) -> list[str]:
    """Say which setting breaks which rule, never its value (which may be the API key).

    Args:
        error: A JSON Schema error of the settings.
        sources: Setting -> the environment variable it was read from.

    Returns:
        One sentence per broken rule (several for several missing settings).
    """
    path = [str(p) for p in error.absolute_path]
    rule = str(error.validator)
    expected = error.validator_value
    if rule == "required":
        given = error.instance if isinstance(error.instance, dict) else {}
        return [f"`{'.'.join([*path, name])}` is required" for name in expected if name not in given]
    setting = ".".join(path) or "the settings"
    if rule == "type":
        wanted = [expected] if isinstance(expected, str) else [w for w in expected if w != "null"]
        text = f"must be {' or '.join(_TYPE_WORDS.get(w, w) for w in wanted)} (got {_json_type_name(error.instance)})"
    elif rule in _BOUND_WORDS:
        text = f"must be {_BOUND_WORDS[rule]} {_number_text(expected)}"
    elif rule == "enum":
        text = "must be one of " + ", ".join(f"'{v}'" for v in expected)
    elif rule == "pattern" and _is_seconds(error.schema):
        text = "must be a plain number of seconds, such as 30 or \"0.5\""
    elif rule == "pattern" and expected == TABLE_PREFIX_PATTERN:
        text = "must hold only letters, digits and underscores"
    elif rule == "pattern":
        text = f"must match {expected}"
    elif rule in {"minLength", "maxLength"}:
        text = f"must be {'at least' if rule == 'minLength' else 'at most'} {expected} characters long"
    else:
        text = f"breaks the rule '{rule}' of its schema (`target-rjmetrics --about` shows it)"
    note = _RULE_NOTES.get((setting, rule))
    if note:
        text += f" ({note})"
    source = sources.get(path[0]) if path else None
    if source:
        text += f", as set by {source}"
    return [f"`{setting}` {text}"]


def _is_seconds(schema: t.Any) -> bool:  # noqa: ANN401
    """Tell a seconds setting (see ``seconds_type``) by its schema."""
    kinds = schema.get("type") if isinstance(schema, dict) else None
    return isinstance(kinds, list) and "string" in kinds and "number" in kinds


def _env_setting_problems(
    properties: Mapping[str, t.Any], prefix: str, environ: Mapping[str, str]
) -> tuple[list[str], dict[str, int | decimal.Decimal]]:
    """Check the setting variables that SDK 0.54 reads loosely, or not at all.

    The SDK turns an integer or JSON variable with a conversion whose error quotes the value,
    reads any text but true/1/yes/on in a boolean as false, and passes a number on as text,
    which then fails validation.

    Args:
        properties: The settings schema's properties.
        prefix: ``TARGET_RJMETRICS_``.
        environ: The environment.

    Returns:
        The problems, each naming its setting and variable, and the numbers read from
        number settings.
    """
    problems: list[str] = []
    numbers: dict[str, int | decimal.Decimal] = {}
    for name, prop in properties.items():
        variable = prefix + name.upper().replace("-", "_")
        raw = environ.get(variable)
        if raw is None:
            continue
        types = _schema_types(prop)
        if "integer" in types:
            try:
                int(raw)
            except ValueError:
                problems.append(f"`{name}` must be an integer ({variable} is not one)")
        elif "boolean" in types:
            if raw.strip().lower() not in _ENV_TRUE + _ENV_FALSE:
                problems.append(f"`{name}` must be true or false ({variable} is neither)")
        elif "number" in types:
            try:
                number = decimal.Decimal(raw.strip())
            except decimal.InvalidOperation:
                number = decimal.Decimal("NaN")
            if not number.is_finite():
                problems.append(f"`{name}` must be a number ({variable} is not one)")
            else:
                numbers[name] = int(number) if number == number.to_integral_value() else number
        elif types & {"object", "array"}:
            try:
                json.loads(raw)
            except ValueError:
                kind = "object" if "object" in types else "array"
                problems.append(f"`{name}` must be {_TYPE_WORDS[kind]} ({variable} is not valid JSON)")
    return problems, numbers


def _settings_error(problems: list[str], schema: dict | None = None) -> ConfigValidationError:
    msg = "; ".join(problems) + ". `target-rjmetrics --about` lists every setting."
    return ConfigValidationError(msg, errors=problems, schema=schema)


def _closest(name: str, known: t.Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name.lower().replace("-", "_"), list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


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
        PluginCapabilities.BATCH,
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
            th.StringType(pattern=TABLE_PREFIX_PATTERN),
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
            description="Seconds one try of a request may take, from connecting to the last byte of the answer, before it is given up and retried.",
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
            "late_apply_seconds",
            seconds_type(positive=False),
            default=DEFAULT_LATE_APPLY_SECONDS,
            title="Late Apply Seconds",
            description=(
                "How long after the target gives up waiting for an answer (a timeout, a dropped "
                "connection, a 502 or 504) the API may still apply that request; newer versions of "
                "its rows wait that long, so the late request cannot overwrite them."
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
        self._settings_from_env = parse_env_config  # read by _validate_config, called by the SDK's __init__
        try:
            super().__init__(
                config=config,
                parse_env_config=parse_env_config,
                validate_config=validate_config,
                setup_mapper=setup_mapper,
                message_reader=message_reader,
            )
        except ValueError:
            # SDK 0.54 converts integer and JSON setting variables before validating, and lets
            # the conversion's error (which quotes the value) out: name the variable instead.
            problems = self._env_problems()[0] if parse_env_config else []
            if not problems:
                raise
            raise _settings_error(problems) from None
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
        self._output_failure: RJMetricsOutputError | None = None
        self.open_batch_bytes = 0  # encoded bytes held in every sink's open batch (see RJMetricsSink)

    # -- settings ---------------------------------------------------------------------

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Check the settings, naming each setting and the rule it breaks, never its value.

        This overrides a private method of SDK 0.54.9, which the SDK's ``__init__`` calls
        after merging files and variables and before using the settings: the SDK words each
        error with the offending value (the API key's too), and its CLI reports only "Config
        validation failed". The checks are the SDK's, defaults are filled in as the SDK's
        validator does; before them, unknown setting names are warned of, and setting
        variables that the SDK reads loosely are checked (numbers are read).

        Args:
            raise_errors: Raise, naming every problem, instead of warning.

        Returns:
            The problems, one sentence each.

        Raises:
            ConfigValidationError: A setting is missing or breaks its rule.
        """
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        properties = schema.get("properties", {})
        self._warn_unknown_settings(properties)
        problems: list[str] = []
        sources: dict[str, str] = {}
        if self._settings_from_env:
            problems, numbers = self._env_problems()
            for name, number in numbers.items():
                if isinstance(self._config.get(name), str):  # the SDK left the variable's text
                    self._config[name] = number
            sources = {name: var for name in properties if (var := self._env_var_name(name)) in os.environ}
        for error in JSONSchemaValidator(schema).iter_errors(self._config):  # fills in defaults
            problems.extend(_setting_problems(error, sources))
        problems = list(dict.fromkeys(problems))
        if problems and raise_errors:
            raise _settings_error(problems, schema)
        if problems:
            self.logger.warning("Invalid settings: %s", "; ".join(problems))
        return problems

    def _env_var_name(self, setting: str) -> str:
        return self._env_var_prefix + setting.upper().replace("-", "_")

    def _env_problems(self) -> tuple[list[str], dict[str, int | decimal.Decimal]]:
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        return _env_setting_problems(schema.get("properties", {}), self._env_var_prefix, os.environ)

    def _warn_unknown_settings(self, known: Mapping[str, t.Any]) -> None:
        """Warn once per setting name (or setting variable) that no setting has.

        A warning, not an error: orchestrators may pass keys of their own.
        """
        about = "`target-rjmetrics --about` lists every setting."
        for name in sorted(set(self._config) - set(known)):
            closest = _closest(name, known)
            hint = f"did you mean `{closest}`?" if closest else about
            self.logger.warning(
                "Unknown setting `%s` is ignored; %s%s", name, hint, self._destination_note(name, closest)
            )
        if not self._settings_from_env:
            return
        prefix = self._env_var_prefix
        variables = {self._env_var_name(name) for name in known} | {f"{prefix}LOGLEVEL"}
        for variable in sorted(v for v in os.environ if v.startswith(prefix) and v not in variables):
            name = variable[len(prefix) :]
            closest = _closest(name, known)
            hint = f"did you mean {self._env_var_name(closest)}?" if closest else about
            self.logger.warning(
                "Unknown setting variable %s is ignored; %s%s", variable, hint, self._destination_note(name, closest)
            )

    def _destination_note(self, name: str, closest: str | None) -> str:
        """Where data goes, for an unknown name that looks like it meant to choose the host."""
        if closest not in _HOST_SETTINGS and not any(word in name.lower() for word in _HOST_WORDS):
            return ""
        if self.config.get("api_url"):
            where = f"the `api_url` host {self.base_url}"
        elif self.config.get("sandbox"):
            where = f"the sandbox host {self.base_url}"
        else:
            where = f"the PRODUCTION host {self.base_url}"
        dry_run = " (in this dry run, only to `dry_run_file`)" if self.config.get("dry_run_file") else ""
        return f" As set, data goes to {where}{dry_run}."

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

    def get_sink_class(self, stream_name: str) -> type[Sink]:
        """Give a stream that stream maps remove (``__NULL__``) a sink that loads nothing.

        SDK 0.54 makes a sink for such a stream too; ours would claim its table, warn or
        fail about its keys, and list it in the summary.

        Args:
            stream_name: The stream (after stream maps).

        Returns:
            The sink class.
        """
        maps = [m for ms in self.mapper.stream_maps.values() for m in ms if m.stream_alias == stream_name]
        if maps and all(isinstance(m, RemoveRecordTransform) for m in maps):
            return RemovedStreamSink
        return super().get_sink_class(stream_name)

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
        self._wait_out_late_applies(self._late_apply_deadline())

    def _late_apply_deadline(self) -> float | None:
        """Monotonic time until which a request this run abandoned may still be applied."""
        late_apply = float(self.config.get("late_apply_seconds", DEFAULT_LATE_APPLY_SECONDS))
        abandoned = getattr(self._client, "last_abandoned_at", None)
        if abandoned is None or late_apply <= 0:
            return None
        return float(abandoned) + late_apply

    def _wait_out_late_applies(self, until: float | None) -> None:
        """Before a normal exit, wait until no abandoned request of this run can still apply.

        Otherwise a run started right after this one could send a newer version of a row
        that this run's abandoned request then overwrites.
        """
        remaining = 0.0 if until is None else until - time.monotonic()
        if remaining <= 0:
            return
        self.logger.warning(
            "A request whose fate is unknown (no answer came, or not the API's) may still be applied by the API for %.0f s "
            "(`late_apply_seconds`); waiting that long before exiting so that no later run is overwritten by it.",
            remaining,
        )
        time.sleep(remaining)

    def _warn_about_late_applies(self, *, left_in_flight: bool = False) -> None:
        """After a failure or a stop, say how long to wait before running again.

        Args:
            left_in_flight: Requests were still in flight when the run gave up on them.
        """
        until = self._late_apply_deadline()
        if left_in_flight:
            late_apply = float(self.config.get("late_apply_seconds", DEFAULT_LATE_APPLY_SECONDS))
            until = max(until or 0.0, time.monotonic() + late_apply)
        remaining = 0.0 if until is None else until - time.monotonic()
        if remaining > 0:
            wall = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=remaining)
            self.logger.warning(
                "A request whose fate is unknown (no answer came, or not the API's) may still be applied by the API until %s UTC "
                "(`late_apply_seconds`); wait until then before running again, or a newer version of its "
                "rows may be overwritten.",
                wall.strftime("%H:%M:%S"),
            )

    def _settle_after_stop(self) -> None:
        """Let requests already sent finish, then write the last state whose records landed.

        Requests in flight get their current try but no further retries, so stopping never
        waits out the whole retry budget. After a failure a try may take its whole
        ``request_timeout``; after SIGTERM/SIGINT at most ``STOP_GRACE_SECONDS``, because
        whoever sent the signal expects an exit soon (and may send SIGKILL next).
        """
        self._stopping = True  # the ticker no longer seals batches or wakes this thread
        if self._dispatcher is None:
            return
        self._dispatcher.stop()
        timeout = float(self.config.get("request_timeout", 60))
        if self._pending_signal is not None:
            timeout = min(timeout, STOP_GRACE_SECONDS)
            self.logger.warning(
                "Stopping on signal %d: finishing requests already sent (for up to %.0f s).",
                self._pending_signal,
                timeout,
            )
        if self._client is not None:
            self._client.cancel_retries()
        settled = self._dispatcher.wait(timeout=timeout + 1)
        self._ledger_emit()
        self._warn_about_late_applies(left_in_flight=not settled)

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
        try:
            line = serialize_json(value) + "\n"
        except RecursionError:
            msg = (
                f"Input line {getattr(self.message_reader, 'line_number', '?')}: the STATE message nests objects or arrays "
                "too deeply to write back; check the tap's output."
            )
            raise InvalidInputLine(msg) from None
        ledger = self._ledger_or_start()
        self._in_message = True
        try:
            ledger.add(self._records_read, line)
            ledger.emit_ready()
        finally:
            self._in_message = False
        self._after_message()

    def _process_batch_message(self, message_dict: dict) -> None:
        """Load every record of a BATCH message's files exactly as a RECORD message of its stream.

        The SDK's own handling (0.54) reads each file whole and hands the records to
        ``Sink.process_batch`` without validation, stream maps or a place in the input; this
        streams them through the same path as RECORD messages instead, so keys, key order,
        positions, counts and the STATE rules are the same whichever way a tap sends records.
        """
        self._assert_line_requires(message_dict, requires={"stream", "encoding", "manifest"})
        stream = str(message_dict["stream"])
        batch_config = self.config.get("batch_config")
        storage = BatchConfig.from_dict(batch_config).storage if batch_config else None
        for url, number, record in read_batch(stream, message_dict["encoding"], message_dict["manifest"], storage):
            try:
                self._process_record_message({"type": "RECORD", "stream": stream, "record": record})
            except (RJMetricsInputError, InvalidInputLine) as exc:
                raise type(exc)(f"{exc} (row {number} of batch file {url})") from None
            except SingerSDKError as exc:
                if isinstance(exc, RJMetricsError):
                    raise
                raise RJMetricsInputError(f"{exc} (row {number} of batch file {url})") from None

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
        if isinstance(exc, RecursionError):
            msg = (
                f"Cannot load {where}: a field nests objects or arrays too deeply to load (hundreds of "
                "levels). Drop or flatten it with `stream_maps`."
            )
            return RJMetricsInputError(msg)
        self.logger.debug("Details of the input error", exc_info=exc)
        msg = f"Cannot load {where}: {type(exc).__name__} (run with TARGET_RJMETRICS_LOGLEVEL=DEBUG for details)"
        return RJMetricsInputError(msg)

    def _where(self, stream: str | None, position: int) -> str:
        return record_place(str(stream), self.table_for(str(stream)), position)

    def _ledger_or_start(self) -> StateLedger:
        self._start()
        assert self._ledger is not None  # noqa: S101
        return self._ledger

    def _ledger_emit(self) -> None:
        if self._ledger is not None:
            self._ledger.emit_ready()

    def seal_oldest_open_batch(self) -> None:
        """Send the open batch holding the oldest record (open batches hold too many bytes)."""
        open_sinks = [
            sink
            for sink in [*self._sinks_to_clear, *self._sinks_active.values()]
            if isinstance(sink, RJMetricsSink) and sink.open_first_seq is not None
        ]
        if open_sinks:
            min(open_sinks, key=lambda sink: t.cast("int", sink.open_first_seq)).seal()

    def _seal_all(self) -> None:
        """Send every open batch (called with the input lock held)."""
        self._flush_due = False
        for sink in [*self._sinks_to_clear, *self._sinks_active.values()]:
            if isinstance(sink, RJMetricsSink):
                sink.seal()

    # -- sending --------------------------------------------------------------------------

    def _send(self, batch: Batch) -> float | None:
        assert self._client is not None  # noqa: S101
        stats = self.stats_for(batch.table)

        def on_request(points: int) -> None:
            with self._stats_lock:
                stats.requests += 1

        def on_retry(_reason: str, _wait: float) -> None:
            with self._stats_lock:
                stats.retries += 1
                self._retries += 1

        abandoned = send_batch(self._client, batch, on_request, on_retry)
        if abandoned is None:  # the usual case: every try was answered, nothing may apply late
            return None
        late_apply = float(self.config.get("late_apply_seconds", DEFAULT_LATE_APPLY_SECONDS))
        return abandoned + late_apply if late_apply > 0 else None

    def _landed(self, batch: Batch) -> None:
        stats = self.stats_for(batch.table)
        with self._stats_lock:
            stats.landed += len(batch.points) + batch.duplicates
            stats.last_landed = time.monotonic()
        self._ledger_emit()

    def _write_state(self, line: str) -> None:
        with self._stdout_lock:
            if self._output_failure is not None:
                raise self._output_failure
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except OSError as exc:
                raise self._stdout_failed(exc) from None

    def _stdout_failed(self, exc: OSError) -> RJMetricsOutputError:
        """Turn a failed STATE write into the run's failure (called with the stdout lock held).

        The write may fail on a sending thread, where an exception would be lost: the
        dispatcher records it, so the main thread stops the run and exits non-zero.
        """
        reason = {
            errno.EPIPE: "broken pipe: whatever reads the target's output stopped reading",
            errno.ENOSPC: "no space left on the device standard output writes to",
        }.get(exc.errno or 0, exc.strerror or type(exc).__name__)
        self._output_failure = RJMetricsOutputError(
            f"Cannot write STATE to standard output ({reason}). Records sent so far were accepted, but "
            "no STATE after them could be recorded: keep the target's output readable (a file with "
            "room, or a reader that reads to the end) and rerun from the last STATE that was saved."
        )
        # Nothing more can reach stdout; keep interpreter shutdown from tripping on it again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        if self._dispatcher is not None:
            self._dispatcher.fail(self._output_failure)
        return self._output_failure

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
        """Log one line per table, then one of totals: Meltano prefixes each line it relays."""
        with self._stats_lock:
            rows = sorted(self._stats.items())
        if not rows:
            return
        for table, s in rows:
            seconds = max(0.0, (s.last_landed or s.first_read) - s.first_read)
            self.logger.info(
                "Load summary: table %s: records %s, requests %s, retries %s, merged %s, seconds %.1f",
                table,
                f"{s.landed:,}",
                f"{s.requests:,}",
                f"{s.retries:,}",
                f"{s.duplicates:,}",
                seconds,
            )
        written = self._ledger.written if self._ledger is not None else 0
        totals = (
            f"{_count(len(rows), 'table')}, {_count(sum(s.landed for _, s in rows), 'record')}, "
            f"{_count(written, 'STATE message')} written."
        )
        nonfinite = sum(s.nonfinite for _, s in rows)
        if nonfinite:
            totals += f" {nonfinite:,} NaN or infinite values were sent as null."
        self.logger.info("Load summary: %s", totals)

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
    def cb_config(  # type: ignore[override]
        cls,
        ctx: click.Context,
        param: click.Option,  # noqa: ARG003
        value: tuple[str, ...],
    ) -> _ConfigInput:
        """Read the ``--config`` files; a missing or malformed one is one error line, exit 1.

        The SDK's reader lets a traceback out (46 lines for a JSON typo).

        Args:
            ctx: The click context.
            param: The ``--config`` option.
            value: File paths, or ``ENV`` to read ``TARGET_RJMETRICS_*`` variables.

        Returns:
            The merged settings of the files, and whether to read the environment.
        """
        config: dict[str, t.Any] = {}
        parse_env = False
        for path in value:
            if path == "ENV":
                parse_env = True
                continue
            try:
                config |= read_config_file(path)
            except ConfigValidationError as exc:
                cls.logger.error("%s", exc)  # noqa: TRY400 (the message is the whole story)
                ctx.exit(1)
        return _ConfigInput(config=config, parse_env=parse_env)

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
        except InvalidInputLine as exc:
            cls.logger.error("%s", exc)  # noqa: TRY400
            sys.exit(1)
        except SingerSDKError as exc:
            cls.logger.error("%s: %s", type(exc).__name__, exc)  # noqa: TRY400
            sys.exit(1)
        except Exception as exc:  # a bug of ours or of a library: its words could quote values
            cls.logger.error(
                "Stopped by an unexpected %s; the last STATE written is safe to resume from. Run with "
                "TARGET_RJMETRICS_LOGLEVEL=DEBUG to see where it happened.",
                type(exc).__name__,
            )
            cls.logger.debug("Details of the unexpected error", exc_info=exc)
            sys.exit(1)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


logging.getLogger("backoff").propagate = False
