"""Settings: the config schema (the only place defaults live) and the frozen ``Settings`` of a run.

The schema is what ``--about`` prints and what the SDK validates; :class:`Settings` is built
once from the validated config and is the only reader of raw config in the package. The
functions here word settings problems and warnings the way a user needs them: the setting,
the rule it breaks and what to do, never its value (one of them is the API key).
"""

from __future__ import annotations

import decimal
import difflib
import json
import typing as t
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from target_rjmetrics.client import (
    MAX_POINTS_PER_REQUEST,
    MAX_REQUEST_BYTES,
    PRODUCTION_URL,
    SANDBOX_URL,
)
from target_rjmetrics.redaction import redact_url
from target_rjmetrics.sdk import BatchConfig, StorageTarget

if t.TYPE_CHECKING:
    from collections.abc import Mapping

#: Prefix of the settings' environment variables (``--config ENV``).
ENV_PREFIX = "TARGET_RJMETRICS_"

#: Default of ``max_request_bytes``: under the API's 5 MiB with room, as its founder's target kept.
DEFAULT_REQUEST_BYTES = 4 * 1024 * 1024
#: ``table_prefix`` may hold what a table name may (the API refuses other characters).
TABLE_PREFIX_PATTERN = r"^[A-Za-z0-9_]*$"
#: Seconds a try of unknown fate may still be applied by the API (no source bounds it; see
#: "Late application" in the API contract). Gateways give up on a request after about 60 s.
DEFAULT_LATE_APPLY_SECONDS = 120

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


def setting_problems(error: jsonschema.ValidationError, sources: Mapping[str, str]) -> list[str]:
    """Say which setting breaks which rule, never its value (which may be the API key)."""
    path = [str(p) for p in error.absolute_path]
    rule = str(error.validator)
    expected: t.Any = error.validator_value
    if rule in {"anyOf", "oneOf"} and error.context:
        return _alternatives_problems(error, sources)
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
        text = 'must be a plain number of seconds, such as 30 or "0.5"'
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


def _alternatives_problems(error: jsonschema.ValidationError, sources: Mapping[str, str]) -> list[str]:
    """Word an ``anyOf``/``oneOf`` error: the one alternative of the kind given, or all of them."""
    kind = _json_kind(error.instance)
    alternatives: t.Any = error.validator_value
    # One alternative of the kind given (an object for an object) says more than all of them.
    fitting = [
        i
        for i, branch in enumerate(alternatives)
        if kind in _branch_kinds(branch) and not (isinstance(branch, dict) and "const" in branch)
    ]
    if len(fitting) == 1:
        inner = [e for e in error.context or [] if e.relative_schema_path and e.relative_schema_path[0] == fitting[0]]
        if inner:
            return setting_problems(jsonschema.exceptions.best_match(inner), sources)
    choices = " or ".join(dict.fromkeys(_branch_words(branch) for branch in alternatives))
    setting = ".".join(str(p) for p in error.absolute_path) or "the settings"
    return [f"`{setting}` must be {choices} (got {_json_type_name(error.instance)})"]


def _json_kind(value: object) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null", int: "integer"}
    return kinds.get(type(value), "number")


def _branch_kinds(branch: t.Any) -> set[str]:  # noqa: ANN401 (a JSON Schema)
    if not isinstance(branch, dict):
        return set()
    if "const" in branch:
        return {_json_kind(branch["const"])}
    kinds = _schema_types(branch)
    return kinds | ({"integer"} if "number" in kinds else set())


def _branch_words(branch: t.Any) -> str:  # noqa: ANN401 (a JSON Schema)
    if isinstance(branch, dict) and "const" in branch:
        return json.dumps(branch["const"])
    kinds = sorted(_branch_kinds(branch) - {"integer"} if "number" in _branch_kinds(branch) else _branch_kinds(branch))
    return " or ".join(_TYPE_WORDS.get(k, k) for k in kinds) or "what its schema allows"


def _is_seconds(schema: t.Any) -> bool:  # noqa: ANN401
    """Tell a seconds setting (see ``seconds_type``) by its schema."""
    kinds = schema.get("type") if isinstance(schema, dict) else None
    return isinstance(kinds, list) and "string" in kinds and "number" in kinds


def env_setting_problems(
    properties: Mapping[str, t.Any], prefix: str, environ: Mapping[str, str]
) -> tuple[list[str], dict[str, int | decimal.Decimal]]:
    """Check the setting variables that SDK 0.54 reads loosely, or not at all.

    The SDK turns an integer or JSON variable with a conversion whose error quotes the value,
    reads any text but true/1/yes/on in a boolean as false, and passes a number on as text,
    which then fails validation.
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


def settings_error(problems: list[str], schema: dict[str, t.Any] | None = None) -> ConfigValidationError:
    """One error listing every settings problem, each a sentence naming its setting."""
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
    """
    if positive:
        pattern = r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)$"
        bound: dict[str, float] = {"exclusiveMinimum": 0}
    else:
        pattern = r"^[0-9]+(\.[0-9]+)?$"
        bound = {"minimum": 0}
    return th.CustomType({"type": ["string", "number"], "pattern": pattern, **bound})


CONFIG_SCHEMA: dict[str, t.Any] = th.PropertiesList(
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
        description=("Send everything to the sandbox host, which validates like production but keeps no data."),
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
        description=(
            "Seconds one try of a request may take, from connecting to the last byte of the answer,"
            " before it is given up and retried."
        ),
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
        description=(
            "Check the credentials with the authenticate endpoint before sending any data (while the "
            "first input is read)."
        ),
    ),
    th.Property(
        "adaptive_concurrency",
        th.BooleanType,
        default=False,
        title="Adaptive Concurrency",
        description=(
            "Find how many requests at once the API sustains: start low, add one while requests "
            "succeed, back off on 429, 503 or growing latency; `max_concurrent_requests` is the ceiling."
        ),
    ),
    th.Property(
        "metrics_per_request",
        th.BooleanType,
        default=False,
        title="Metrics per Request",
        description=(
            "Log an http_request_duration METRIC line for every try of a request; by default tries "
            "are summarised per table every 5 seconds (count, p50, p95, max)."
        ),
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


def default_of(name: str) -> t.Any:  # noqa: ANN401
    """The schema's default of a setting (None for a setting without one)."""
    return CONFIG_SCHEMA["properties"][name].get("default")


@dataclass(frozen=True)
class Settings:
    """What a run needs of its settings, read once from the validated config.

    Attributes:
        client_id: The RJMetrics client id.
        api_key: The Import API key (never shown: not in ``repr``).
        base_url: The API base URL chosen by ``api_url`` and ``sandbox``.
        table_prefix: Put in front of every table name.
        points_per_request: ``max_points_per_request``, lowered by ``batch_size_rows``.
        max_request_bytes: Largest request body.
        max_concurrent_requests: Requests in flight at once.
        request_timeout: Seconds one try may take.
        max_retry_seconds: Seconds to keep retrying transient failures.
        late_apply_seconds: Seconds a try of unknown fate may still be applied (the late-apply window).
        keyless_streams: ``hash`` or ``fail``.
        state_flush_seconds: Longest wait of a STATE for its records to be sent.
        authenticate_on_start: Check the credentials before reading input.
        adaptive_concurrency: Find the concurrency the API sustains, up to ``max_concurrent_requests``.
        metrics_per_request: Log each try's duration metric, not a summary per interval.
        dry_run_file: Write requests there instead of sending them.
        batch_storage: Where BATCH files are opened, when ``batch_config`` names a storage.
    """

    client_id: int
    api_key: str = field(repr=False)
    base_url: str
    table_prefix: str
    points_per_request: int
    max_request_bytes: int
    max_concurrent_requests: int
    request_timeout: float
    max_retry_seconds: float
    late_apply_seconds: float
    keyless_streams: str
    state_flush_seconds: float
    authenticate_on_start: bool
    adaptive_concurrency: bool
    metrics_per_request: bool
    dry_run_file: str | None
    batch_storage: StorageTarget | None

    @classmethod
    def from_config(cls, config: Mapping[str, t.Any]) -> Settings:
        """Read the settings of a run, after the cross-field checks.

        Raises:
            ConfigValidationError: Settings contradict each other (see ``check_settings``).
        """
        check_settings(config)

        def get(name: str) -> t.Any:  # noqa: ANN401
            value = config.get(name)
            return default_of(name) if value is None else value

        limit = int(get("max_points_per_request"))
        rows = config.get("batch_size_rows")
        batch_config = config.get("batch_config")
        return cls(
            client_id=int(config["client_id"]),
            api_key=str(config["api_key"]),
            base_url=base_url(config),
            table_prefix=str(get("table_prefix")),
            points_per_request=min(limit, int(rows)) if rows else limit,
            max_request_bytes=int(get("max_request_bytes")),
            max_concurrent_requests=int(get("max_concurrent_requests")),
            request_timeout=float(get("request_timeout")),
            max_retry_seconds=float(get("max_retry_seconds")),
            late_apply_seconds=float(get("late_apply_seconds")),
            keyless_streams=str(get("keyless_streams")),
            state_flush_seconds=float(get("state_flush_seconds")),
            authenticate_on_start=bool(get("authenticate_on_start")),
            adaptive_concurrency=bool(get("adaptive_concurrency")),
            metrics_per_request=bool(get("metrics_per_request")),
            dry_run_file=str(config["dry_run_file"]) if config.get("dry_run_file") else None,
            batch_storage=BatchConfig.from_dict(batch_config).storage if batch_config else None,
        )


def base_url(config: Mapping[str, t.Any]) -> str:
    """The Import API base URL chosen by ``api_url`` and ``sandbox``."""
    if config.get("api_url"):
        return str(config["api_url"]).rstrip("/")
    return SANDBOX_URL if config.get("sandbox") else PRODUCTION_URL


def check_settings(config: Mapping[str, t.Any]) -> None:
    """Refuse settings that contradict each other or the API.

    Raises:
        ConfigValidationError: ``sandbox`` and ``api_url`` together, an ``api_url`` that is
            not http(s), or ``load_method`` overwrite.
    """
    if config.get("sandbox") and config.get("api_url"):
        msg = (
            "Both `sandbox` and `api_url` are set: `api_url` replaces the host `sandbox` would choose. "
            "Remove `api_url` to use the sandbox host, or set `sandbox` to false to use `api_url`."
        )
        raise ConfigValidationError(msg, errors=[msg])
    api_url = config.get("api_url")
    problem = api_url_problem(str(api_url)) if api_url is not None else None
    if problem is not None:
        msg = f"`api_url` {problem} (got a value of {len(str(api_url))} characters)."
        raise ConfigValidationError(msg, errors=[msg])
    if config.get("api_key") == "":
        msg = "`api_key` is empty: set it to the Import API key of `client_id`."
        raise ConfigValidationError(msg, errors=[msg])
    if config.get("load_method") == "overwrite":
        msg = "`load_method` 'overwrite' is not possible: the Import API cannot delete rows. Use 'upsert'."
        raise ConfigValidationError(msg, errors=[msg])


def api_url_problem(url: str) -> str | None:
    """Say what keeps ``url`` from being an Import API base URL, never quoting it (it may hold a password)."""
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a bracket left open, a port that is no number or out of range
        reason = (
            "its port is not a number from 1 to 65535"
            if "Port" in str(exc)
            else "a '[' of an IPv6 address is not closed"
            if "IPv6" in str(exc)
            else "it is not a valid URL"
        )
        return f"must be a URL such as https://host/v2, but {reason}"
    if not parts.hostname:
        return "must name a host, as in https://host/v2"
    if port == 0:
        return "must be a URL such as https://host/v2, but its port is not a number from 1 to 65535"
    if parts.query or parts.fragment:
        return "must not have a query or fragment: the key goes in the query the target builds"
    return None


def validate_config(
    config: dict[str, t.Any], schema: dict[str, t.Any], environ: Mapping[str, str] | None
) -> tuple[list[str], list[str]]:
    """Check the settings as the SDK would, worded by setting and rule, never with a value.

    Setting variables that SDK 0.54 reads loosely are checked strictly, and the numbers read
    from number variables replace the text the SDK left in ``config``; defaults are filled in
    as the SDK's validator does.
    """
    from singer_sdk.plugin_base import JSONSchemaValidator  # noqa: PLC0415 (the SDK's validator, as it validates)

    properties = schema.get("properties", {})
    warnings = unknown_setting_warnings(config, properties, environ)
    problems: list[str] = []
    sources: dict[str, str] = {}
    if environ is not None:
        problems, numbers = env_setting_problems(properties, ENV_PREFIX, environ)
        for name, number in numbers.items():
            if isinstance(config.get(name), str):  # the SDK left the variable's text
                config[name] = number
        sources = {name: var for name in properties if (var := env_var_name(name)) in environ}
    for error in JSONSchemaValidator(schema).iter_errors(config):  # fills in defaults
        problems.extend(setting_problems(error, sources))
    return warnings, list(dict.fromkeys(problems))


def env_var_name(setting: str) -> str:
    """The environment variable of a setting, e.g. ``TARGET_RJMETRICS_API_KEY``."""
    return ENV_PREFIX + setting.upper().replace("-", "_")


def unknown_setting_warnings(
    config: Mapping[str, t.Any], known: Mapping[str, t.Any], environ: Mapping[str, str] | None
) -> list[str]:
    """One warning per setting name (or setting variable) that no setting has.

    A warning, not an error: orchestrators may pass keys of their own.
    """
    about = "`target-rjmetrics --about` lists every setting."
    warnings = []
    for name in sorted(set(config) - set(known)):
        closest = _closest(name, known)
        hint = f"did you mean `{closest}`?" if closest else about
        warnings.append(f"Unknown setting `{name}` is ignored; {hint}{_destination_note(config, name, closest)}")
    if environ is None:
        return warnings
    variables = {env_var_name(name) for name in known} | {f"{ENV_PREFIX}LOGLEVEL"}
    for variable in sorted(v for v in environ if v.startswith(ENV_PREFIX) and v not in variables):
        name = variable[len(ENV_PREFIX) :]
        closest = _closest(name, known)
        hint = f"did you mean {env_var_name(closest)}?" if closest else about
        warnings.append(
            f"Unknown setting variable {variable} is ignored; {hint}{_destination_note(config, name, closest)}"
        )
    return warnings


def _destination_note(config: Mapping[str, t.Any], name: str, closest: str | None) -> str:
    """Where data goes, for an unknown name that looks like it meant to choose the host."""
    if closest not in _HOST_SETTINGS and not any(word in name.lower() for word in _HOST_WORDS):
        return ""
    url = redact_url(base_url(config))  # never a password of `api_url`
    if config.get("api_url"):
        where = f"the `api_url` host {url}"
    elif config.get("sandbox"):
        where = f"the sandbox host {url}"
    else:
        where = f"the PRODUCTION host {url}"
    dry_run = " (in this dry run, only to `dry_run_file`)" if config.get("dry_run_file") else ""
    return f" As set, data goes to {where}{dry_run}."
