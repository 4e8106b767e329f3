"""The SDK sinks: one per stream, turning each record into a data point handed to the run.

A sink checks its stream once (``setup``: its table, its keys), validates each record with
messages that never carry values, maps it to a data point with a
:class:`~target_rjmetrics.points.PointMapper` and hands it to
the run (:class:`~target_rjmetrics.run.LoadRun`), which batches and sends. It knows
nothing of HTTP or of batching.
"""

from __future__ import annotations

import typing as t

from singer_sdk import metrics
from singer_sdk.exceptions import InvalidRecord, MissingKeyPropertiesError
from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.sinks import BatchSink

from target_rjmetrics.exceptions import RJMetricsInputError
from target_rjmetrics.points import (
    RECORD_HASH_FIELD,
    PointMapper,
    datelike_fields,
    datelike_text,
    record_place,
)
from target_rjmetrics.sdk import handle_invalid_timestamp_in_record
from target_rjmetrics.validation import ValueFreeValidator

if t.TYPE_CHECKING:
    from singer_sdk.mapper import StreamMap
    from singer_sdk.sinks.core import BaseJSONSchemaValidator
    from singer_sdk.target_base import Target

    from target_rjmetrics.run import LoadRun


#: The context of every record: batches are the run's, not the SDK's.
_NO_CONTEXT: dict[str, t.Any] = {}
#: Record metadata fields the SDK removes from records (``Sink._remove_sdc_metadata_from_record``):
#: a record holding one takes the SDK's path.
SDC_FIELDS = frozenset(
    {
        "_sdc_extracted_at",
        "_sdc_received_at",
        "_sdc_batched_at",
        "_sdc_deleted_at",
        "_sdc_sequence",
        "_sdc_table_version",
        "_sdc_sync_started_at",
    }
)


class RJMetricsSink(BatchSink):
    """Loads one stream into one Import API table."""

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict[str, t.Any],
        key_properties: t.Sequence[str] | None,
        *,
        run: LoadRun,
    ) -> None:
        self._run = run
        self.table = run.tables.table_for(stream_name)
        super().__init__(target, stream_name, schema, key_properties)
        properties = self.schema.get("properties", {})
        self._schema_fields = frozenset(properties)
        self._unknown_field_warnings = not self.schema.get("additionalProperties", False)
        self._datelike_fields = datelike_fields(self.schema)
        self._nonfinite_warned = False
        self._renamed_keys_warned = False
        self._point_mapper: PointMapper | None = None

    def setup(self) -> None:
        """Claim the stream's table and check its keys, before any of its records is read.

        Raises:
            RJMetricsInputError: The table is taken or invalid, or the stream has no key
                properties and ``keyless_streams`` is ``fail``.
        """
        run = self._run
        self.table = run.tables.claim(self.stream_name, self.key_properties)
        if not self.key_properties:
            if run.settings.keyless_streams == "fail":
                msg = (
                    f"Stream '{self.stream_name}' (table '{self.table}') has no key_properties, and the Import "
                    "API upserts on keys. Add key properties in the tap (or with a stream map's "
                    "`__key_properties__`), or set `keyless_streams` to 'hash'."
                )
                raise RJMetricsInputError(msg)
            self.logger.warning(
                "Stream '%s' has no key properties: each data point is keyed by '%s', a hash of its "
                "content, so identical records land once and changed records land as new rows.",
                self.stream_name,
                RECORD_HASH_FIELD,
            )
        self._stats = run.stats.table(self.table, self.stream_name)
        self._treatment = self.datetime_error_treatment  # read from the settings once, not per record
        self._point_mapper = PointMapper(
            stream=self.stream_name,
            table=self.table,
            key_properties=self.key_properties,
            on_nonfinite=self._nonfinite,
            on_renamed_keys=self._renamed_keys,
        )

    # -- SDK hooks ------------------------------------------------------------------

    def _parse_timestamps_in_record(
        self,
        record: dict[str, t.Any],
        schema: dict[str, t.Any],  # noqa: ARG002 (always self.schema, whose lookups are done once)
        treatment: DatetimeErrorTreatmentEnum,
    ) -> None:
        """Check date-like strings as the SDK does, turning them straight into the API's text.

        SDK 0.54 has no public hook for this per-record step; its version looks every field up
        in the schema for every record and leaves date/time objects for the sink to format.
        This one warns of fields without a schema as the SDK does, refuses or repairs what is
        not ISO 8601 by the same ``treatment``, never puts the offending value in an error, and
        leaves each date-time as ``YYYY-MM-DD HH:MM:SS`` UTC text (dates and times as ISO).
        """
        if self._unknown_field_warnings and not self._schema_fields.issuperset(record):
            for name in record.keys() - self._schema_fields:
                if record[name] is not None and name not in self._warned_missing_fields:
                    self.logger.warning("No schema for record field '%s'", name)
                    self._warned_missing_fields.add(name)
        for name, kind in self._datelike_fields:
            value = record.get(name)
            if value is None or type(value) is not str:
                continue
            try:
                record[name] = datelike_text(kind, value)
            except OverflowError:
                msg = (
                    f"{record_place(self.stream_name, self.table, self._run.cursor.position)}: field "
                    f"'{name}' is a date-time that falls outside the years 0001-9999 once converted to UTC, "
                    "which the API's YYYY-MM-DD HH:MM:SS cannot write. Fix the source, or replace the field "
                    "with `stream_maps`."
                )
                raise RJMetricsInputError(msg) from None
            except ValueError as exc:
                if treatment == DatetimeErrorTreatmentEnum.ERROR:
                    msg = f"field '{name}' is not a valid ISO 8601 {kind}"
                    raise InvalidRecord(msg, record={}) from None
                record[name] = handle_invalid_timestamp_in_record(
                    record, [name], value, kind, exc, treatment, self.logger
                )

    def preprocess_record(self, record: dict[str, t.Any], context: dict[str, t.Any]) -> dict[str, t.Any]:  # noqa: ARG002
        """Refuse a record that lacks a key property, naming it (before the SDK's own check).

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
        """Validate with messages that never carry record values."""
        if not self.validate_schema:
            return None
        cursor = self._run.cursor
        return ValueFreeValidator(
            self.schema, where=lambda: record_place(self.stream_name, self.table, cursor.position)
        )

    def get_sink_record_counter(self) -> metrics.Counter:
        """The SDK's ``record_count`` would count records as they are read, even those that never land.

        The run counts records when they land instead (see :mod:`target_rjmetrics.stats`).
        """
        return _SilentCounter(metrics.Metric.RECORD_COUNT, {"stream": self.stream_name})

    def get_batch_processing_timer(self) -> metrics.Timer:
        """The SDK's ``batch_processing_time`` would time sealing, not sending (sending is asynchronous).

        Each request's ``http_request_duration`` is logged instead (see :mod:`target_rjmetrics.stats`).
        """
        return _SilentTimer(metrics.Metric.BATCH_PROCESSING_TIME, {"stream": self.stream_name})

    @property
    def is_full(self) -> bool:
        """Batches are sealed by the run as they fill."""
        return False

    def process_record(self, record: dict[str, t.Any], context: dict[str, t.Any]) -> None:  # noqa: ARG002
        """Turn a record into an encoded data point and hand it to the run."""
        cursor = self._run.cursor
        key, encoded = self._point_mapper.to_point(record, cursor.position)  # type: ignore[union-attr]  # set by setup()
        self._run.add_point(self.stream_name, self.table, key, encoded, cursor.seq, cursor.position)
        self._stats.read += 1  # only this thread writes it (readers see an int, old or new)

    def is_plain(self, stream_maps: t.Mapping[str, t.Sequence[StreamMap]]) -> bool:
        """Tell whether this sink's records can skip the SDK's per-record machinery (the fast path).

        Its stream's only stream map is the identity under its own name, nothing is flattened,
        and no record metadata is added.
        """
        maps = stream_maps.get(self.stream_name, [])
        return (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and maps[0].stream_alias == self.stream_name
            and not maps[0].flattening_enabled
            and not self.config.get("add_record_metadata")
        )

    def load(self, record: dict[str, t.Any]) -> None:
        """Load a record of a plain stream, without the SDK's per-record bookkeeping (the fast path).

        The target calls this instead of the SDK's ``Target._process_record_message`` for a
        stream whose only stream map is the identity, without flattening or record metadata
        (see ``TargetRJMetrics.fast_path``). The steps are the SDK's, through the same methods,
        so records, errors and warnings are the same; what is left out serves features such
        streams do not use (stream maps, metadata, contexts, per-record metrics and debug log).
        """
        validator = self._validator
        if validator is not None:
            validator.validate(record)
        self._parse_timestamps_in_record(record, self.schema, self._treatment)
        self.preprocess_record(record, _NO_CONTEXT)
        self._batch_records_read += 1  # as SDK 0.54's tally_record_read (drains skip an empty sink)
        self._total_records_read += 1
        # process_record, inlined: this runs once per record.
        cursor = self._run.cursor
        position = cursor.position
        key, encoded = self._point_mapper.to_point(record, position)  # type: ignore[union-attr]  # set by setup()
        self._run.add_point(self.stream_name, self.table, key, encoded, cursor.seq, position)
        self._stats.read += 1

    def process_batch(self, context: dict[str, t.Any]) -> None:  # noqa: ARG002
        """Send what is gathered (the SDK drains sinks at the end of input and every few minutes)."""
        self._run.seal(self.table)

    # -- what the mapper reports --------------------------------------------------------

    def _nonfinite(self, name: str, position: int) -> None:
        self._run.stats.nonfinite(self._stats)
        if not self._nonfinite_warned:
            self._nonfinite_warned = True
            self.logger.warning(
                "%s: field '%s' is NaN, infinite or beyond what a double can hold (about 1.8e308), which "
                "the API cannot store as a number; sent as null (further cases are counted in the summary).",
                record_place(self.stream_name, self.table, position),
                name,
            )

    def _renamed_keys(self) -> None:
        if not self._renamed_keys_warned:
            self._renamed_keys_warned = True
            self.logger.warning(
                "Stream '%s': field 'keys' is the Import API's control field; it is loaded as 'keys_'.",
                self.stream_name,
            )


class RemovedStreamSink(BatchSink):
    """The sink of a stream that stream maps remove (``__NULL__``): it never gets a record.

    The SDK makes a sink for every stream of a SCHEMA, removed or not; this one claims no
    table and has no keys to check.
    """

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict[str, t.Any],
        key_properties: t.Sequence[str] | None,
        *,
        run: LoadRun,  # noqa: ARG002 (no record reaches it)
    ) -> None:
        super().__init__(target, stream_name, schema, key_properties)

    def get_validator(self) -> None:
        """No record reaches this sink, so none is validated."""
        return

    def process_batch(self, context: dict[str, t.Any]) -> None:
        """Nothing to send."""


class _SilentCounter(metrics.Counter):
    """A counter the SDK may increment, which logs nothing."""

    def increment(self, value: int = 1) -> None:
        """Count nothing."""

    def exit(self) -> None:
        """Log nothing."""


class _SilentTimer(metrics.Timer):
    """A timer the SDK may use, which logs nothing."""

    def __exit__(self, *exc_info: object) -> None:
        """Log nothing."""
