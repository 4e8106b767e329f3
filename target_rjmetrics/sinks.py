"""Per-stream work: table naming, record -> data point, and batching.

A sink turns each record into an Import API data point (``keys`` plus the record's
fields, with values the API surely accepts), encodes it once, and gathers points in
a :class:`~target_rjmetrics.dispatch.Batch` until the batch reaches
``max_points_per_request`` or ``max_request_bytes``; then the batch is handed to the
dispatcher. It knows nothing of HTTP.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import math
import re
import typing as t

import fastjsonschema
import jsonschema
import msgspec
from singer_sdk.exceptions import InvalidJSONSchema, InvalidRecord, MissingKeyPropertiesError
from singer_sdk.helpers._compat import date_fromisoformat, datetime_fromisoformat, time_fromisoformat
from singer_sdk.helpers._typing import get_datelike_property_type, handle_invalid_timestamp_in_record
from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum
from singer_sdk.sinks import BatchSink
from singer_sdk.sinks.core import BaseJSONSchemaValidator
from singer_sdk.singerlib.json import serialize_json

from target_rjmetrics.dispatch import Batch
from target_rjmetrics.exceptions import (
    RJMetricsAPIError,
    RJMetricsError,
    RJMetricsInputError,
    RJMetricsRequestTooLargeError,
    RJMetricsRetriesExhausted,
    RJMetricsUnexpectedAnswerError,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from target_rjmetrics.client import CaptureClient, RJMetricsClient
    from target_rjmetrics.target import TargetRJMetrics

#: The Import API's own control field: the list of key fields of a data point.
KEYS_FIELD = "keys"
#: A record field literally named ``keys`` is sent under this name instead.
RENAMED_KEYS_FIELD = "keys_"
#: Most bytes of encoded points held in open batches across all streams. Over it, the open
#: batch holding the oldest record is sent as it is, so memory stays bounded however many
#: streams are open at once (sealed batches are bounded by the dispatcher's back-pressure).
OPEN_BATCHES_MAX_BYTES = 32 * 1024 * 1024
#: Key field of streams without key properties when ``keyless_streams`` is ``hash``.
RECORD_HASH_FIELD = "_record_hash"

# Decimals at or beyond 1e308 overflow the doubles that JSON readers parse numbers into.
_DOUBLE_MAX_EXPONENT = 308

_UNSAFE_TABLE_CHARS = re.compile(r"[^A-Za-z0-9_]")
VALID_TABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def table_name(stream_name: str, prefix: str = "") -> str:
    """Map a stream name to an Import API table name.

    Every character outside ``[A-Za-z0-9_]`` becomes ``_``; the prefix is put in front.

    Args:
        stream_name: The Singer stream name.
        prefix: The ``table_prefix`` setting.

    Returns:
        The table name (may be empty when both inputs are).
    """
    return prefix + _UNSAFE_TABLE_CHARS.sub("_", stream_name)


def record_place(stream: str, table: str, position: int) -> str:
    """Name a record's place in the input for error messages, e.g. ``stream 'users' (table 'users'), record #3``."""
    return f"stream '{stream}' (table '{table}'), record #{position}"


class ValueFreeValidator(BaseJSONSchemaValidator):
    """JSON Schema validation whose errors name the record, field and rule, never the value.

    The schema is checked once with ``jsonschema`` (so an invalid SCHEMA is refused with a
    clear message) and compiled to Python code with ``fastjsonschema``, which validates a
    record many times faster than the SDK's default validator. Formats are not checked, as
    with the SDK's default.

    A record that breaks the schema raises ``RJMetricsInputError``, not the SDK's
    ``InvalidRecord``: SDK 0.54.9 logs every ``InvalidRecord`` with its traceback as "Record
    validation failed" (``Sink._validate_and_parse``) before re-raising it, so the user read
    the error twice. The run stops either way, as ``fail_on_record_validation_exception``
    (true) asks.
    """

    def __init__(self, schema: dict[str, t.Any], *, where: Callable[[], str]) -> None:
        """Check and compile the schema.

        Args:
            schema: The stream's JSON Schema.
            where: Names the record being validated (stream, table, position).

        Raises:
            InvalidJSONSchema: The schema itself is not valid JSON Schema.
        """
        super().__init__(schema)
        self._where = where
        validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        try:
            validator_class.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            msg = f"the SCHEMA is not valid JSON Schema at {where}: rule '{exc.validator}' is broken"
            raise InvalidJSONSchema(msg) from None
        try:
            self._compiled: t.Callable[[t.Any], t.Any] | None = compile_validator(schema)
        except fastjsonschema.JsonSchemaDefinitionException:
            self._compiled = None  # a schema fastjsonschema cannot compile: use jsonschema
        self._slow = validator_class(schema, format_checker=jsonschema.FormatChecker(formats=()))

    def validate(self, record: dict[str, t.Any]) -> None:
        """Raise an error naming the record, the field and the rule it breaks.

        Args:
            record: The record to check.

        Raises:
            RJMetricsInputError: The record does not match the schema.
        """
        if self._compiled is not None:
            try:
                self._compiled(record)
            except fastjsonschema.JsonSchemaValueException as exc:
                field = ".".join(str(p) for p in exc.path[1:]) or "(the record)"
                raise self._error(_rule_broken(field, str(exc.rule), exc.rule_definition)) from None
            return
        error = next(iter(self._slow.iter_errors(record)), None)
        if error is not None:
            field = ".".join(str(p) for p in error.absolute_path) or "(the record)"
            raise self._error(_rule_broken(field, str(error.validator), error.validator_value))

    def _error(self, broken: str) -> RJMetricsInputError:
        msg = (
            f"Cannot load {self._where()}: {broken}. Fix the tap's records or their schema, or set "
            "`validate_records` to false to load records unchecked."
        )
        return RJMetricsInputError(msg)


#: Above this many top-level properties a schema is compiled property by property (see below).
WIDE_SCHEMA_PROPERTIES = 200
#: Root keywords that a property-by-property validator checks itself (the others only annotate).
_WIDE_ROOT_RULES = frozenset({"type", "properties", "required", "additionalProperties"})
_ANNOTATIONS = frozenset({"$schema", "$id", "id", "title", "description", "$comment", "examples", "default"})


def compile_validator(schema: dict[str, t.Any]) -> t.Callable[[t.Any], t.Any]:
    """Compile a stream's schema into a function that raises ``JsonSchemaValueException``.

    ``fastjsonschema`` writes one Python function for the whole schema, whose compilation
    costs time and memory in proportion to the schema's size (a 10,000-property schema took
    ~9 s and ~380 MiB). A wide schema whose root only lists properties (no ``$ref``,
    combinators or pattern rules) is compiled property by property instead, each distinct
    property schema once, so a wide table of similar columns costs a few small compiles.

    Args:
        schema: A valid JSON Schema (checked by the caller).

    Returns:
        A validator raising ``fastjsonschema.JsonSchemaValueException`` like a compiled schema.
    """
    properties = schema.get("properties")
    if (
        not isinstance(properties, dict)
        or len(properties) <= WIDE_SCHEMA_PROPERTIES
        or not set(schema) <= _WIDE_ROOT_RULES | _ANNOTATIONS
        or "$ref" in json.dumps(schema)
        or not all(isinstance(p, dict) for p in properties.values())
    ):
        return t.cast("t.Callable[[t.Any], t.Any]", fastjsonschema.compile(schema, use_formats=False))
    return _WideValidator(schema)


class _WideValidator:
    """Validates a record against a wide, flat schema one field at a time (see ``compile_validator``)."""

    def __init__(self, schema: dict[str, t.Any]) -> None:
        by_text: dict[str, t.Callable[[t.Any], t.Any]] = {}

        def compiled(sub: dict[str, t.Any]) -> t.Callable[[t.Any], t.Any]:
            text = json.dumps(sub, sort_keys=True)
            if text not in by_text:
                by_text[text] = fastjsonschema.compile(sub, use_formats=False)
            return by_text[text]

        self._schema = schema
        self._fields = {name: compiled(sub) for name, sub in schema["properties"].items()}
        root_type = schema.get("type", "object")
        self._type_ok = root_type == "object" or (isinstance(root_type, list) and "object" in root_type)
        self._required = [name for name in schema.get("required", []) if isinstance(name, str)]
        extra = schema.get("additionalProperties", True)
        self._extra: t.Callable[[t.Any], t.Any] | bool = compiled(extra) if isinstance(extra, dict) else bool(extra)

    def __call__(self, record: dict[str, t.Any]) -> None:
        if not self._type_ok:
            raise fastjsonschema.JsonSchemaValueException("", None, "data", self._schema, "type")
        for name in self._required:
            if name not in record:
                raise fastjsonschema.JsonSchemaValueException("", None, "data", self._schema, "required")
        fields = self._fields
        for name, value in record.items():
            check = fields.get(name)
            if check is None:
                if self._extra is True:
                    continue
                if self._extra is False:
                    raise fastjsonschema.JsonSchemaValueException(
                        "", None, f"data.{name}", self._schema, "additionalProperties"
                    )
                check = self._extra
            try:
                check(value)
            except fastjsonschema.JsonSchemaValueException as exc:
                inner = (exc.name or "data")[len("data"):]
                raise fastjsonschema.JsonSchemaValueException(
                    "", None, f"data.{name}{inner}", exc.definition, exc.rule
                ) from None


def _rule_broken(field: str, rule: str, expected: t.Any) -> str:  # noqa: ANN401
    if rule in {"type", "format", "enum", "const", "required", "minimum", "maximum", "maxLength", "minLength"}:
        return f"field '{field}' does not satisfy {rule}={expected!r}"
    return f"field '{field}' does not satisfy the schema rule '{rule}'"


class RemovedStreamSink(BatchSink):
    """The sink of a stream that stream maps remove (``__NULL__``): it never gets a record.

    The SDK makes a sink for every stream of a SCHEMA, removed or not; this one claims no
    table and has no keys to check.
    """

    def get_validator(self) -> None:
        """No record reaches this sink, so none is validated.

        Returns:
            None.
        """
        return

    def process_batch(self, context: dict) -> None:
        """Nothing to send.

        Args:
            context: Unused.
        """


class RJMetricsSink(BatchSink):
    """Loads one stream into one Import API table."""

    def __init__(
        self,
        target: TargetRJMetrics,
        stream_name: str,
        schema: dict,
        key_properties: t.Sequence[str] | None,
    ) -> None:
        """Create the sink and check the stream can be loaded at all.

        Args:
            target: The running target.
            stream_name: The stream (after stream maps).
            schema: Its JSON Schema.
            key_properties: Its key properties.
        """
        self._target = target
        super().__init__(target, stream_name, schema, key_properties)
        self.table = target.claim_table(stream_name, self.key_properties)
        self._stats = target.stats_for(self.table)
        self._max_points = target.points_per_request
        self._max_bytes = int(self.config["max_request_bytes"])
        self._open: Batch | None = None
        self._open_bytes = 0  # this sink's share of the target's open_batch_bytes
        properties = self.schema.get("properties", {})
        self._schema_fields = frozenset(properties)
        self._unknown_field_warnings = not self.schema.get("additionalProperties", False)
        self._datelike_fields = [
            (name, kind) for name, prop in properties.items() if (kind := _datelike_type(prop))
        ]
        # Decimals are written as JSON numbers with every digit they have.
        self._encode = msgspec.json.Encoder(decimal_format="number").encode
        self._nonfinite_warned = False
        self._renamed_keys_warned = False

        keys = list(self.key_properties)
        self._hash_key = not keys
        if self._hash_key:
            if self.config.get("keyless_streams", "hash") == "fail":
                msg = (
                    f"Stream '{stream_name}' (table '{self.table}') has no key_properties, and the Import "
                    "API upserts on keys. Add key properties in the tap (or with a stream map's "
                    "`__key_properties__`), or set `keyless_streams` to 'hash'."
                )
                raise RJMetricsInputError(msg)
            self.logger.warning(
                "Stream '%s' has no key properties: each data point is keyed by '%s', a hash of its "
                "content, so identical records land once and changed records land as new rows.",
                stream_name,
                RECORD_HASH_FIELD,
            )
            keys = [RECORD_HASH_FIELD]
        self._record_keys = [RENAMED_KEYS_FIELD if k == KEYS_FIELD else k for k in keys]
        self._key_sources = [
            (name, KEYS_FIELD if name == RENAMED_KEYS_FIELD and KEYS_FIELD in keys else name)
            for name in self._record_keys
        ]

    # -- SDK hooks ------------------------------------------------------------------

    def _parse_timestamps_in_record(
        self,
        record: dict,
        schema: dict,  # noqa: ARG002 (always self.schema, whose lookups are done once below)
        treatment: DatetimeErrorTreatmentEnum,
    ) -> None:
        """Parse date-like strings into date/time objects, as the SDK does, but faster.

        SDK 0.54 has no public hook for this per-record step, and its version looks every
        field up in the schema for every record; this one (one of the two SDK private methods
        this target overrides, with ``TargetRJMetrics._validate_config``) keeps its behaviour
        with the lookups done once per schema, and never puts the offending value in an error.
        """
        if self._unknown_field_warnings:
            unknown = record.keys() - self._schema_fields
            for name in unknown:
                if record[name] is not None and name not in self._warned_missing_fields:
                    self.logger.warning("No schema for record field '%s'", name)
                    self._warned_missing_fields.add(name)
        for name, kind in self._datelike_fields:
            value = record.get(name)
            if value is None or type(value) is not str:
                continue
            try:
                record[name] = _DATELIKE_PARSERS[kind](value)
            except ValueError as exc:
                if treatment == DatetimeErrorTreatmentEnum.ERROR:
                    msg = f"field '{name}' is not a valid ISO 8601 {kind}"
                    raise InvalidRecord(msg, record={}) from None
                record[name] = handle_invalid_timestamp_in_record(
                    record, [name], value, kind, exc, treatment, self.logger
                )

    def preprocess_record(self, record: dict, context: dict) -> dict:  # noqa: ARG002
        """Refuse a record that lacks a key property, naming it (before the SDK's own check).

        Args:
            record: The validated record.
            context: Unused.

        Returns:
            The record, unchanged.

        Raises:
            MissingKeyPropertiesError: A key property is not in the record.
        """
        for name in self._key_properties:
            if name not in record:
                msg = (
                    f"key property '{name}' is missing or null, so the data point cannot be upserted. "
                    "Fix the source, or change the stream's key properties with `stream_maps` "
                    "(`__key_properties__`)."
                )
                raise MissingKeyPropertiesError(msg)
        return record

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        """Validate with messages that never carry record values.

        Returns:
            The validator, or None when ``validate_records`` is off.
        """
        if not self.validate_schema:
            return None
        return ValueFreeValidator(self.schema, where=lambda: self._where(self._target.current_position))

    @property
    def is_full(self) -> bool:
        """Batches are sealed by this sink itself as they fill (see ``process_record``).

        Returns:
            Always False.
        """
        return False

    def process_record(self, record: dict, context: dict) -> None:  # noqa: ARG002
        """Turn a record into an encoded data point and add it to the open batch.

        Args:
            record: The validated record.
            context: Unused; batches are this sink's own.
        """
        target = self._target
        position = target.current_position
        point = self._to_point(record, position)
        key = self._key_of(point, record, position)
        try:
            encoded = self._encode(point)
        except UnicodeEncodeError:  # a lone surrogate: only its \u escape is valid UTF-8
            encoded = serialize_json(point).encode()
        self._add(key, encoded, target.current_seq, position)

    def process_batch(self, context: dict) -> None:  # noqa: ARG002
        """Send what is gathered (called by the SDK's drains: end of input, max age).

        Args:
            context: Unused.
        """
        self.seal()

    def activate_version(self, new_version: int) -> None:  # noqa: ARG002
        """The Import API cannot delete rows, so table versions cannot be activated.

        Args:
            new_version: Ignored.
        """
        self.logger.warning(
            "ACTIVATE_VERSION for stream '%s' ignored: the Import API has no delete.", self.stream_name
        )

    # -- records to points ----------------------------------------------------------

    def _where(self, position: int) -> str:
        return record_place(self.stream_name, self.table, position)

    def _to_point(self, record: dict, position: int) -> dict[str, t.Any]:
        point: dict[str, t.Any] = {KEYS_FIELD: self._record_keys}
        for name, value in record.items():
            if name == KEYS_FIELD:
                name = self._renamed_keys_field(record, position)  # noqa: PLW2901
            cls = type(value)
            if cls is str or cls is int or cls is bool or value is None:
                point[name] = value
            elif cls is decimal.Decimal:
                point[name] = value if _finite_decimal(value) else self._nonfinite(name, position)
            elif cls is float:
                point[name] = value if math.isfinite(value) else self._nonfinite(name, position)
            elif cls is datetime.datetime:
                point[name] = self._datetime_text(value, name, position)
            elif cls is datetime.date:
                point[name] = value.isoformat()
            elif cls is dict or cls is list:
                point[name] = self._encode_text(self._clean_nested(value, name, position))
            elif cls is datetime.time:
                point[name] = value.isoformat()
            else:
                point[name] = str(value)
        if self._hash_key:
            digest = hashlib.sha256(serialize_json(point, sort_keys=True).encode()).hexdigest()
            point[RECORD_HASH_FIELD] = digest
        return point

    def _encode_text(self, value: t.Any) -> str:  # noqa: ANN401
        try:
            return self._encode(value).decode()
        except UnicodeEncodeError:
            return serialize_json(value)

    def _renamed_keys_field(self, record: dict, position: int) -> str:
        if RENAMED_KEYS_FIELD in record:
            msg = (
                f"{self._where(position)}: the record has a field named '{KEYS_FIELD}' (the API's control "
                f"field) and also '{RENAMED_KEYS_FIELD}', where '{KEYS_FIELD}' would be renamed to. Rename "
                "one of them with `stream_maps`."
            )
            raise RJMetricsInputError(msg)
        if not self._renamed_keys_warned:
            self._renamed_keys_warned = True
            self.logger.warning(
                "Stream '%s': field '%s' is the Import API's control field; it is loaded as '%s'.",
                self.stream_name,
                KEYS_FIELD,
                RENAMED_KEYS_FIELD,
            )
        return RENAMED_KEYS_FIELD

    def _nonfinite(self, name: str, position: int) -> t.Any:  # noqa: ANN401 (always None: JSON's stand-in)
        self._stats.nonfinite += 1
        if not self._nonfinite_warned:
            self._nonfinite_warned = True
            self.logger.warning(
                "%s: field '%s' is NaN or infinite, which JSON cannot carry; sent as null "
                "(further cases are counted in the summary).",
                self._where(position),
                name,
            )
        return None

    def _clean_nested(self, value: t.Any, name: str, position: int) -> t.Any:  # noqa: ANN401
        cls = type(value)
        if cls is dict:
            return {k: self._clean_nested(v, name, position) for k, v in value.items()}
        if cls is list:
            return [self._clean_nested(v, name, position) for v in value]
        if (cls is float and not math.isfinite(value)) or (cls is decimal.Decimal and not _finite_decimal(value)):
            self._nonfinite(name, position)
            return None
        if cls is datetime.datetime:
            return self._datetime_text(value, name, position)
        return value

    def _datetime_text(self, value: datetime.datetime, name: str, position: int) -> str:
        try:
            return _format_datetime(value)
        except OverflowError:
            msg = (
                f"{self._where(position)}: field '{name}' is a date-time that falls outside the years "
                "0001-9999 once converted to UTC, which the API's YYYY-MM-DD HH:MM:SS cannot write. Fix "
                "the source, or replace the field with `stream_maps`."
            )
            raise RJMetricsInputError(msg) from None

    def _key_of(self, point: dict[str, t.Any], record: dict, position: int) -> Hashable:
        values = []
        for name, source in self._key_sources:
            value = point.get(name)
            if value is None:
                msg = (
                    f"{self._where(position)}: key property '{source}' is missing or null, so the data "
                    "point cannot be upserted. Fix the source, or change the stream's key properties "
                    "with `stream_maps` (`__key_properties__`)."
                )
                raise RJMetricsInputError(msg)
            if type(record.get(source)) in (dict, list):
                msg = (
                    f"{self._where(position)}: key property '{source}' is an object or array; the Import "
                    "API accepts only scalar key values. Choose scalar key properties with `stream_maps`."
                )
                raise RJMetricsInputError(msg)
            values.append(_key_part(value))
        return values[0] if len(values) == 1 else tuple(values)

    # -- batching -------------------------------------------------------------------

    def _add(self, key: Hashable, encoded: bytes, seq: int, position: int) -> None:
        size = len(encoded)
        if size + 2 > self._max_bytes:
            msg = (
                f"{self._where(position)}: the data point is {size:,} bytes encoded, over "
                f"`max_request_bytes` ({self._max_bytes:,}). Raise `max_request_bytes` (up to 5 MiB) or "
                "drop large fields with `stream_maps`."
            )
            raise RJMetricsInputError(msg)
        self._stats.read += 1
        batch = self._open
        if batch is not None:
            earlier = batch.points.get(key)
            if earlier is not None:
                if batch.body_bytes - len(earlier) + size <= self._max_bytes:
                    # Same key within one request: keep the later version only.
                    batch.points[key] = encoded
                    batch.point_positions[key] = position
                    batch.body_bytes += size - len(earlier)
                    batch.duplicates += 1
                    batch.last_position = position
                    self._stats.duplicates += 1
                    self._account()
                    return
                self.seal()
                batch = None
            elif len(batch.points) >= self._max_points or batch.body_bytes + size + 1 > self._max_bytes:
                self.seal(hold_back=True)
                batch = self._open
                if batch is not None and (
                    len(batch.points) >= self._max_points or batch.body_bytes + size + 1 > self._max_bytes
                ):
                    self.seal()  # what was held back leaves no room: send it as it is
                    batch = None
        if batch is None:
            batch = Batch(stream=self.stream_name, table=self.table, first_seq=seq, first_position=position)
            self._target.dispatcher.register(batch)
            self._open = batch
            batch.body_bytes += size
        else:
            batch.body_bytes += size + 1
        batch.points[key] = encoded
        batch.point_positions[key] = position
        batch.last_position = position
        self._account()

    @property
    def open_first_seq(self) -> int | None:
        """Input sequence number of the oldest record in the open batch, if there is one."""
        return self._open.first_seq if self._open is not None else None

    def _account(self) -> None:
        """Keep the target's total of bytes held in open batches current; seal the oldest if over."""
        current = self._open.body_bytes if self._open is not None else 0
        target = self._target
        target.open_batch_bytes += current - self._open_bytes
        self._open_bytes = current
        if target.open_batch_bytes > OPEN_BATCHES_MAX_BYTES:
            target.seal_oldest_open_batch()

    def seal(self, *, hold_back: bool = False) -> None:
        """Hand the open batch, if any, to the dispatcher.

        Args:
            hold_back: Let the dispatcher keep points whose keys are still on their way
                in this batch, which stays open (see ``Dispatcher.submit``).
        """
        batch = self._open
        if batch is None:
            return
        if not self._target.dispatcher.submit(batch, hold_back=hold_back):
            self._open = None
        current = self._open.body_bytes if self._open is not None else 0
        self._target.open_batch_bytes += current - self._open_bytes
        self._open_bytes = current


# The SDK's parsers: the standard library's, made to read every ISO 8601 form on Python 3.10.
_DATELIKE_PARSERS: dict[str, t.Callable[[str], t.Any]] = {
    "date-time": datetime_fromisoformat,
    "date": date_fromisoformat,
    "time": time_fromisoformat,
}


def _datelike_type(prop: t.Any) -> str | None:  # noqa: ANN401
    try:
        return get_datelike_property_type(prop)
    except Exception:  # noqa: BLE001 (a property the SDK cannot type is simply not date-like)
        return None


class _JSONBool:
    """A JSON boolean as one part of a key: never equal to the numbers 1 and 0, unlike ``True``/``False``."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:  # noqa: FBT001
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is _JSONBool and other.value is self.value

    def __hash__(self) -> int:
        return hash((_JSONBool, self.value))

    def __repr__(self) -> str:
        return "true" if self.value else "false"


_JSON_TRUE = _JSONBool(True)  # noqa: FBT003
_JSON_FALSE = _JSONBool(False)  # noqa: FBT003


def _key_part(value: t.Any) -> Hashable:  # noqa: ANN401
    """One key value as the API tells keys apart: equal JSON values of the same JSON type.

    Python's ``True == 1`` would merge points the API keeps apart, so booleans get their own
    type; numbers keep Python's exact equality, under which ``1``, ``1.0`` and ``Decimal("1.0")``
    are one key, as they are one JSON number.
    """
    if type(value) is bool:
        return _JSON_TRUE if value else _JSON_FALSE
    return t.cast("Hashable", value)


def _finite_decimal(value: decimal.Decimal) -> bool:
    """Tell whether a decimal is finite and within a double's range, as JSON readers need."""
    return value.is_finite() and value.adjusted() < _DOUBLE_MAX_EXPONENT


def _format_datetime(value: datetime.datetime) -> str:
    """Format as the API's ``YYYY-MM-DD HH:MM:SS`` in UTC (naive values are taken as UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc)
    # isoformat always writes four-digit years (strftime's %Y does not below year 1000).
    return value.isoformat(" ", "seconds")[:19]


def send_batch(
    client: RJMetricsClient | CaptureClient,
    batch: Batch,
    on_request: Callable[[int], None],
    on_retry: Callable[[str, float], None],
) -> float | None:
    """Upsert a batch, splitting it in halves whenever the API answers 413.

    Args:
        client: The API client.
        batch: The batch to send.
        on_request: Called with the number of points of each accepted request.
        on_retry: Called before each retry with (reason, wait seconds).

    Returns:
        The monotonic time the last try of unknown fate was abandoned, or None when every
        try that failed surely changed nothing.

    Raises:
        RJMetricsInputError: A single data point was refused as too large.
        RJMetricsAPIError: The API refused the batch; the message names its input range.
    """
    pending = [list(batch.points)]
    abandoned: float | None = None
    while pending:
        keys = pending.pop()
        body = b"[" + b",".join([batch.points[key] for key in keys]) + b"]"
        try:
            when = client.push(batch.table, body, on_retry=on_retry)
            if when is not None:
                abandoned = when if abandoned is None else max(abandoned, when)
        except RJMetricsRequestTooLargeError as exc:
            if len(keys) == 1:
                position = batch.point_positions[keys[0]]
                msg = (
                    f"The API refused a single data point of {len(body):,} bytes as too large (413): "
                    f"stream '{batch.stream}' (table '{batch.table}'), record #{position}: {exc}. Drop or "
                    "shorten large fields with `stream_maps`, or lower `max_request_bytes`."
                )
                raise RJMetricsInputError(msg) from None
            middle = len(keys) // 2
            pending.extend([keys[middle:], keys[:middle]])  # first half goes first
            continue
        except RJMetricsUnexpectedAnswerError as exc:
            error: RJMetricsError = type(exc)(
                f"Could not send {batch.positions()}: {exc}", status=exc.status, reasons=exc.reasons
            )
            error.abandoned_at = exc.abandoned_at
            raise error from None
        except RJMetricsAPIError as exc:
            hint = (
                " Check `client_id` and `api_key`." if exc.status == 401  # noqa: PLR2004
                else ""
            )
            msg = f"The Import API refused {batch.positions()}: {exc}.{hint}"
            error = type(exc)(msg, status=exc.status, reasons=exc.reasons)
            error.abandoned_at = exc.abandoned_at
            raise error from None
        except RJMetricsRetriesExhausted as exc:
            error = RJMetricsRetriesExhausted(f"Could not send {batch.positions()}: {exc}")
            error.abandoned_at = exc.abandoned_at
            raise error from None
        on_request(len(keys))
    return abandoned
