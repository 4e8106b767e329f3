"""The fence around the Meltano Singer SDK: every private name of it this package touches.

SDK 0.54 leaves no public hook for some of what a loader that keeps its promises needs. Each
private name used anywhere in the package is listed in :data:`PRIVATE_NAMES` with what we rely
on and the SDK change that would let it go; ``tests/unit/test_sdk_fence.py`` checks that each
still exists with the shape we rely on, so an SDK release that moves one fails a named test
instead of a run. Private names are imported from here, or listed here when they are methods or
attributes we override or read.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from singer_sdk.helpers._batch import BatchConfig, StorageTarget
from singer_sdk.helpers._compat import date_fromisoformat, datetime_fromisoformat, time_fromisoformat
from singer_sdk.helpers._typing import get_datelike_property_type, handle_invalid_timestamp_in_record
from singer_sdk.plugin_base import _ConfigInput as ConfigInput

__all__ = [
    "PRIVATE_NAMES",
    "BatchConfig",
    "ConfigInput",
    "PrivateName",
    "StorageTarget",
    "date_fromisoformat",
    "datetime_fromisoformat",
    "get_datelike_property_type",
    "handle_invalid_timestamp_in_record",
    "time_fromisoformat",
]


@dataclass(frozen=True)
class PrivateName:
    """A private name of the SDK that this package uses.

    Attributes:
        owner: Where it lives: a module, or ``module:Class``.
        name: The name.
        kind: ``function``, ``class``, ``method`` (overridden or called), ``attribute`` (read or
            written on an instance), or ``final`` (a ``@final`` method we override anyway).
        why: What we rely on it for.
        until: The SDK change that would let it go.
        params: For a method or function we override or call: the parameters we rely on.
    """

    owner: str
    name: str
    kind: t.Literal["function", "class", "method", "attribute", "final"]
    why: str
    until: str
    params: tuple[str, ...] | None = None


PRIVATE_NAMES: tuple[PrivateName, ...] = (
    PrivateName(
        "singer_sdk.plugin_base", "_ConfigInput", "class",
        "what ``cb_config`` returns: the config files read and whether to read the environment",
        "a public type for the --config callback",
    ),
    PrivateName(
        "singer_sdk.plugin_base:PluginBase", "_validate_config", "method",
        "words each settings error by setting and rule, never with its value; warns of unknown names",
        "validation errors that never quote values (the SDK quotes the API key's)",
        ("self", "raise_errors"),
    ),
    PrivateName(
        "singer_sdk.plugin_base:PluginBase", "_config", "attribute",
        "numbers read from setting variables replace the text the SDK left",
        "number settings read from the environment as numbers",
    ),
    PrivateName(
        "singer_sdk.plugin_base:PluginBase", "_env_var_prefix", "attribute",
        "names the variable of a setting in errors",
        "a public prefix",
    ),
    PrivateName(
        "singer_sdk.plugin_base:PluginBase", "_handle_termination", "method",
        "SIGTERM/SIGINT only ask the run to stop; the run settles and exits 128+N",
        "a public hook for signals",
        ("self", "signum", "frame"),
    ),
    PrivateName(
        "singer_sdk.plugin_base:BaseSingerReader", "listen", "final",
        "checks the credentials before the first line and settles the run whatever ends it",
        "a hook before the first line is read and one around the whole run",
        ("self", "file_input"),
    ),
    PrivateName(
        "singer_sdk.plugin_base:BaseSingerReader", "_assert_line_requires", "method",
        "a message missing a field is refused naming the line and the field",
        "public message checks",
        ("self", "message_dict", "requires"),
    ),
    PrivateName(
        "singer_sdk.target_base:Target", "_process_record_message", "method",
        "a record's place in the input, errors naming it, the fast path for plain streams",
        "a per-record hook that keeps the input position",
        ("self", "message_dict"),
    ),
    PrivateName(
        "singer_sdk.target_base:Target", "_process_schema_message", "method",
        "SCHEMA fields checked before the SDK reads them; stream maps' aliases claimed",
        "SCHEMA messages validated by the SDK",
        ("self", "message_dict"),
    ),
    PrivateName(
        "singer_sdk.target_base:Target", "_process_state_message", "method",
        "STATE is written only once every record before it landed",
        "a hook for STATE that the SDK would otherwise write at once",
        ("self", "message_dict"),
    ),
    PrivateName(
        "singer_sdk.target_base:Target", "_process_batch_message", "method",
        "BATCH files read row by row as RECORD messages (validation, maps, positions)",
        "BATCH rows processed like RECORD messages",
        ("self", "message_dict"),
    ),
    PrivateName(
        "singer_sdk.target_base:Target", "_process_activate_version_message", "method",
        "ACTIVATE_VERSION ignored with a warning (the API cannot delete)",
        "a capability flag that makes the SDK ignore it",
        ("self", "message_dict"),
    ),
    PrivateName(
        "singer_sdk.target_base:Target", "_handle_max_record_age", "method",
        "the fast path drains sinks as the SDK does every few minutes",
        "the fast path's bookkeeping done by the SDK",
        ("self",),
    ),
    PrivateName(
        "singer_sdk.target_base:Target", "_sinks_active", "attribute",
        "``get_sink`` makes sinks with the run (``add_sink`` is final)",
        "``create_sink`` (SDK 0.55), a hook that can pass the run",
    ),
    PrivateName(
        "singer_sdk.target_base:Target", "_sinks_to_clear", "attribute",
        "a sink replaced by a new SCHEMA is drained as the SDK would",
        "``create_sink`` (SDK 0.55)",
    ),
    PrivateName(
        "singer_sdk.sinks.core:Sink", "_parse_timestamps_in_record", "method",
        "date-likes checked once per field list and turned straight into the API's text",
        "a public per-record hook for date-times",
        ("self", "record", "schema", "treatment"),
    ),
    PrivateName(
        "singer_sdk.sinks.core:Sink", "_warned_missing_fields", "attribute",
        "a field without schema is warned of once, as the SDK does",
        "the same, public",
    ),
    PrivateName(
        "singer_sdk.sinks.core:Sink", "_key_properties", "attribute",
        "a missing key property is named before the SDK's own check",
        "the same, public",
    ),
    PrivateName(
        "singer_sdk.sinks.core:Sink", "_validator", "attribute",
        "the fast path validates with the sink's validator",
        "a public validator",
    ),
    PrivateName(
        "singer_sdk.sinks.core:Sink", "_batch_records_read", "attribute",
        "the fast path counts records as ``tally_record_read`` does (drains skip empty sinks)",
        "a public counter",
    ),
    PrivateName(
        "singer_sdk.sinks.core:Sink", "_total_records_read", "attribute",
        "the fast path counts records as ``tally_record_read`` does",
        "a public counter",
    ),
    PrivateName(
        "singer_sdk.helpers._typing", "get_datelike_property_type", "function",
        "which fields of a schema hold date-times, dates and times",
        "a public schema helper",
        ("property_schema",),
    ),
    PrivateName(
        "singer_sdk.helpers._typing", "handle_invalid_timestamp_in_record", "function",
        "a value that is not ISO 8601 is treated by the SDK's setting",
        "a public helper",
    ),
    PrivateName(
        "singer_sdk.helpers._compat", "datetime_fromisoformat", "function",
        "every ISO 8601 form read on Python 3.10 as on 3.11+",
        "Python 3.10 no longer supported (its fromisoformat is narrower)",
    ),
    PrivateName(
        "singer_sdk.helpers._compat", "date_fromisoformat", "function",
        "the same, for dates",
        "Python 3.10 no longer supported",
    ),
    PrivateName(
        "singer_sdk.helpers._compat", "time_fromisoformat", "function",
        "the same, for times",
        "Python 3.10 no longer supported",
    ),
    PrivateName(
        "singer_sdk.helpers._batch", "BatchConfig", "class",
        "the storage ``batch_config`` names, for BATCH files",
        "a public batch configuration",
    ),
    PrivateName(
        "singer_sdk.helpers._batch", "StorageTarget", "class",
        "opens BATCH files where the tap's URLs say",
        "a public batch storage",
    ),
)  # fmt: skip
