"""Records to Import API data points: table names, keys, key identity and values the API surely takes.

Pure functions and one small class, :class:`PointMapper`, with no SDK sink in them, so that
tests can call them with tables of cases. The rules (README, "How records are loaded"):

- a table is ``table_prefix`` plus the stream name with every character outside
  ``[A-Za-z0-9_]`` turned into ``_``;
- a point's ``keys`` are the stream's key properties (``_record_hash``, a SHA-256 of the
  point's content, for a keyless stream), a record field named ``keys`` is sent as ``keys_``;
- two key values are one key exactly when the API sees one key: equal JSON values of the same
  JSON type (``1`` and ``1.0`` are one key, ``true`` and ``1`` are not);
- date-times go out as ``YYYY-MM-DD HH:MM:SS`` in UTC, dates as ``YYYY-MM-DD``, for every
  year 0001-9999; numbers keep every digit; NaN, infinities and numbers JSON readers cannot
  hold become null; nested objects and arrays become JSON text.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import math
import re
import typing as t

import msgspec
from singer_sdk.singerlib.json import serialize_json

from target_rjmetrics.exceptions import RJMetricsInputError
from target_rjmetrics.sdk import (
    date_fromisoformat,
    datetime_fromisoformat,
    get_datelike_property_type,
    time_fromisoformat,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Sequence

#: The Import API's own control field: the list of key fields of a data point.
KEYS_FIELD = "keys"
#: A record field literally named ``keys`` is sent under this name instead.
RENAMED_KEYS_FIELD = "keys_"
#: Key field of streams without key properties when ``keyless_streams`` is ``hash``.
RECORD_HASH_FIELD = "_record_hash"

# Numbers beyond the largest double (about 1.8e308) overflow the doubles that JSON readers parse
# numbers into: a decimal from exponent 308 is checked as a reader would round it, an integer of
# 2**1024 - 2**970 or more rounds to infinity.
_DOUBLE_MAX_EXPONENT = 308
_INT_LIMIT = 2**1024 - 2**970
_UNSAFE_TABLE_CHARS = re.compile(r"[^A-Za-z0-9_]")

#: The SDK's parsers: the standard library's, made to read every ISO 8601 form on Python 3.10.
DATELIKE_PARSERS: dict[str, Callable[[str], t.Any]] = {
    "date-time": datetime_fromisoformat,
    "date": date_fromisoformat,
    "time": time_fromisoformat,
}


def table_name(stream_name: str, prefix: str = "") -> str:
    """Map a stream name to an Import API table name."""
    return prefix + _UNSAFE_TABLE_CHARS.sub("_", stream_name)


def record_place(stream: str, table: str, position: int) -> str:
    """Name a record's place in the input for error messages."""
    return f"stream '{stream}' (table '{table}'), record #{position}"


def datelike_fields(schema: dict[str, t.Any]) -> list[tuple[str, str]]:
    """The top-level fields of a schema that hold a date-time, a date or a time."""
    fields = []
    for name, prop in schema.get("properties", {}).items():
        try:
            kind = get_datelike_property_type(prop)
        except Exception:  # noqa: BLE001 (a property the SDK cannot type is simply not date-like)
            kind = None
        if kind:
            fields.append((name, kind))
    return fields


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


def key_part(value: t.Any) -> Hashable:  # noqa: ANN401
    """One key value as the API tells keys apart: equal JSON values of the same JSON type.

    Python's ``True == 1`` would merge points the API keeps apart, so booleans get their own
    type; numbers keep Python's exact equality, under which ``1``, ``1.0`` and
    ``Decimal("1.0")`` are one key, as they are one JSON number.
    """
    if type(value) is bool:
        return _JSON_TRUE if value else _JSON_FALSE
    return t.cast("Hashable", value)


#: Objects and arrays in a value nest at most this deep: deeper is refused the same way on every
#: Python (Python 3.11 ran out of recursion near 500 levels where 3.12 went on), and no reader of
#: real data needs more.
MAX_NESTING = 256
#: Integers up to this size are exact as doubles: such an integer is its own order key.
EXACT_INT = 2**53


def order_key(key: Hashable) -> Hashable:
    """The key as the API might read it: numbers as doubles, each part of a composite key alike.

    The API's documentation does not say how its JSON reader holds numbers; most readers use
    doubles, so ``0.1`` and ``0.1000000000000000055511151231257827``, or ``12345678901234567.0``
    and ``12345678901234568``, may be one row there. Versions whose order keys are equal are
    sent in input order, never at once; only equal keys (:func:`key_part`) may be merged.
    """
    if type(key) is tuple:
        for part in key:
            cls = type(part)
            if cls is not str and not (cls is int and -EXACT_INT <= part <= EXACT_INT):
                return tuple(map(_order_part, key))
        return key  # the usual composite key, of text and integers: its own order key
    return _order_part(key)


def _order_part(part: Hashable) -> Hashable:
    cls = type(part)
    if cls is str or cls is _JSONBool or (cls is int and -EXACT_INT <= part <= EXACT_INT):  # type: ignore[operator]
        return part
    if cls is int or cls is float or cls is decimal.Decimal:
        try:
            return float(part)  # type: ignore[arg-type]
        except OverflowError:  # no double holds it: as one, they would all be infinite
            return math.inf
    return part


def finite_decimal(value: decimal.Decimal) -> bool:
    """Tell whether a decimal is finite and rounds to a finite double, as JSON readers need.

    ``1.7976931348623157e308`` (the largest double, which PostgreSQL taps emit) is one;
    ``1.8e308`` rounds to infinity and is not.
    """
    if not value.is_finite():
        return False
    exponent = value.adjusted()
    if exponent != _DOUBLE_MAX_EXPONENT:
        return exponent < _DOUBLE_MAX_EXPONENT
    return math.isfinite(float(value))  # at the edge: as a JSON reader would round it


def finite_int(value: int) -> bool:
    """Tell whether an integer rounds to a finite double (``|value| < 2**1024 - 2**970``)."""
    return -_INT_LIMIT < value < _INT_LIMIT


def nested_plain(value: t.Any, depth: int = 1) -> bool:  # noqa: ANN401 (an object or an array)
    """Tell whether a nested value can be encoded as it is: nothing to replace, not too deep.

    True when every value in it is a string, a boolean, null, an integer or a decimal that a
    double holds, or such an object or array, at most :data:`MAX_NESTING` levels deep. Checking
    costs about half of rebuilding (:meth:`PointMapper._clean_nested`), which only values that
    need it go through. :meth:`PointMapper.point` applies the same rule inline to each field (a
    call per field would cost 4% of a record); a unit test holds the two equal.
    """
    if depth > MAX_NESTING:
        return False
    for item in value.values() if type(value) is dict else value:
        cls = type(item)
        if cls is str or cls is bool or item is None:
            continue
        if cls is int:
            if -_INT_LIMIT < item < _INT_LIMIT:
                continue
            return False
        if cls is decimal.Decimal:
            if item.is_finite() and item.adjusted() < _DOUBLE_MAX_EXPONENT:
                continue
            return False
        if (cls is dict or cls is list) and nested_plain(item, depth + 1):
            continue
        return False
    return True


def format_datetime(value: datetime.datetime) -> str:
    """Format as the API's ``YYYY-MM-DD HH:MM:SS`` in UTC (naive values are taken as UTC).

    Raises:
        OverflowError: Its UTC time falls outside the years 0001-9999.
    """
    # utctimetuple converts to UTC (a naive value is taken as UTC) and raises OverflowError
    # out of range; %-formatting a tuple is the cheapest way to text (isoformat of an aware
    # value took 2 µs, and strftime's %Y writes years below 1000 with fewer digits).
    return _API_DATETIME % value.utctimetuple()[:6]


def datelike_text(kind: str, value: str) -> str:
    """Turn an ISO 8601 date-time, date or time into the text the API takes.

    Date-times become ``YYYY-MM-DD HH:MM:SS`` in UTC, dates ``YYYY-MM-DD``. A time has no
    documented form at the API (it is text there), so it is checked and sent as the tap wrote
    it: fractions of a second and an offset kept. A date-time already in UTC (``Z``, ``+00:00``
    or no offset) in the usual layout is cut from the text itself once it parsed, the cheapest way.

    Raises:
        ValueError: The text is not ISO 8601 of that kind.
        OverflowError: A date-time falls outside the years 0001-9999 once converted to UTC.
    """
    if kind == "date-time":
        moment = datetime_fromisoformat(value)
        offset = moment.utcoffset()
        if offset:  # shifted to UTC by hand: half the time of utctimetuple(); out of range, OverflowError
            moment -= offset
        elif value[10:11] in _DATE_TIME_SEPARATORS and value[13:14] == ":" == value[16:17]:
            return f"{value[:10]} {value[11:19]}"
        return _API_DATETIME % (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    parsed = DATELIKE_PARSERS[kind](value)
    return value if kind == "time" else str(parsed.isoformat())


_API_DATETIME = "%04d-%02d-%02d %02d:%02d:%02d"
#: Whether a number of each type can be sent as a number (else it becomes null).
_FINITE: dict[type, Callable[[t.Any], bool]] = {int: finite_int, decimal.Decimal: finite_decimal, float: math.isfinite}
#: Values sent as they are read (``bool`` is listed apart: ``type(True)`` is not ``int``); an
#: ``int`` is too, unless no double can hold it.
_PLAIN = frozenset({str, bool, type(None)})
_DATE_TIME_SEPARATORS = ("T", " ")


class PointMapper:
    """Turns the records of one stream into encoded data points of its table.

    Attributes:
        stream: The stream (after stream maps).
        table: Its table.
        keys: The ``keys`` list of every point (``keys`` renamed, or ``_record_hash``).
        hashed: Whether points are keyed by a hash of their content (a keyless stream).
    """

    def __init__(
        self,
        *,
        stream: str,
        table: str,
        key_properties: Sequence[str],
        on_nonfinite: Callable[[str, int], None],
        on_renamed_keys: Callable[[], None],
    ) -> None:
        self.stream = stream
        self.table = table
        self.hashed = not key_properties
        keys = [RECORD_HASH_FIELD] if self.hashed else list(key_properties)
        self.keys = [RENAMED_KEYS_FIELD if k == KEYS_FIELD else k for k in keys]
        # (field in the point, field in the record) of each key property.
        self._key_sources = [
            (name, KEYS_FIELD if name == RENAMED_KEYS_FIELD and KEYS_FIELD in keys else name) for name in self.keys
        ]
        # The one key field of a stream keyed by one field that is not renamed (the usual case).
        self._single_key = self.keys[0] if len(self.keys) == 1 and self.keys[0] == keys[0] else None
        # The key fields of a stream keyed by several fields, none renamed.
        self._key_fields = tuple(keys) if len(keys) > 1 and self.keys == keys else None
        self._on_nonfinite = on_nonfinite
        self._on_renamed_keys = on_renamed_keys
        # Decimals are written as JSON numbers with every digit they have.
        self._encode = msgspec.json.Encoder(decimal_format="number").encode

    def where(self, position: int) -> str:
        """Name a record of this stream for error messages."""
        return record_place(self.stream, self.table, position)

    def to_point(self, record: dict[str, t.Any], position: int) -> tuple[Hashable, bytes]:
        """Map a validated record (date-likes parsed) to its key identity and encoded data point.

        Raises:
            RJMetricsInputError: The record cannot become a data point (a missing, null or
                nested key, fields ``keys`` and ``keys_`` together, a date-time out of range).
        """
        point = self.point(record, position)
        key = self._key_of(point, record, position)
        try:
            return key, self._encode(point)
        except UnicodeEncodeError:  # a lone surrogate: only its \u escape is valid UTF-8
            return key, serialize_json(point).encode()

    def point(self, record: dict[str, t.Any], position: int) -> dict[str, t.Any]:
        """The data point of a record, before encoding."""
        point: dict[str, t.Any] = {KEYS_FIELD: self.keys}
        if KEYS_FIELD in record:  # the API's control field: rebuilt field by field, renamed
            for name, value in record.items():
                if name == KEYS_FIELD:
                    name = self._renamed_keys_field(record, position)  # noqa: PLW2901
                cls = type(value)
                plain = cls in _PLAIN or (cls is int and -_INT_LIMIT < value < _INT_LIMIT)
                point[name] = value if plain else self._value(name, value, position)
        else:
            point.update(record)  # in one step; then only values that are not plain are replaced
            for name, value in record.items():
                cls = type(value)
                if cls in _PLAIN:
                    continue
                if cls is int:
                    if -_INT_LIMIT < value < _INT_LIMIT:
                        continue
                elif cls is decimal.Decimal and value.is_finite() and value.adjusted() < _DOUBLE_MAX_EXPONENT:
                    continue  # the usual decimal: sent with every digit (the edge is left to _value)
                point[name] = self._value(name, value, position)
        if self.hashed:
            point[RECORD_HASH_FIELD] = hashlib.sha256(serialize_json(point, sort_keys=True).encode()).hexdigest()
        return point

    def _value(self, name: str, value: t.Any, position: int) -> t.Any:  # noqa: ANN401
        """A value that is not a string, an integer, a boolean or null, as the API surely takes it."""
        cls = type(value)
        finite = _FINITE.get(cls)
        if finite is not None:
            return value if finite(value) else self._nonfinite(name, position)
        if cls is datetime.datetime:
            return self._datetime_text(value, name, position)
        if cls is datetime.date or cls is datetime.time:
            return value.isoformat()
        if cls is dict or cls is list:
            return self._json_text(value if nested_plain(value) else self._clean_nested(value, name, position))
        return str(value)

    def _json_text(self, value: t.Any) -> str:  # noqa: ANN401
        try:
            return self._encode(value).decode()
        except UnicodeEncodeError:
            return serialize_json(value)

    def _renamed_keys_field(self, record: dict[str, t.Any], position: int) -> str:
        if RENAMED_KEYS_FIELD in record:
            msg = (
                f"{self.where(position)}: the record has a field named '{KEYS_FIELD}' (the API's control "
                f"field) and also '{RENAMED_KEYS_FIELD}', where '{KEYS_FIELD}' would be renamed to. Rename "
                "one of them with `stream_maps`."
            )
            raise RJMetricsInputError(msg)
        self._on_renamed_keys()
        return RENAMED_KEYS_FIELD

    def _nonfinite(self, name: str, position: int) -> None:
        self._on_nonfinite(name, position)

    def _clean_nested(self, value: t.Any, name: str, position: int, depth: int = 1) -> t.Any:  # noqa: ANN401
        cls = type(value)
        if cls is dict or cls is list:
            if depth > MAX_NESTING:
                msg = (
                    f"{self.where(position)}: field '{name}' nests objects or arrays too deeply to load "
                    f"(more than {MAX_NESTING} levels). Drop or flatten it with `stream_maps`."
                )
                raise RJMetricsInputError(msg)
            if cls is dict:
                return {k: self._clean_nested(v, name, position, depth + 1) for k, v in value.items()}
            return [self._clean_nested(v, name, position, depth + 1) for v in value]
        if (
            (cls is float and not math.isfinite(value))
            or (cls is decimal.Decimal and not finite_decimal(value))
            or (cls is int and not finite_int(value))
        ):
            self._nonfinite(name, position)
            return None
        if cls is datetime.datetime:
            return self._datetime_text(value, name, position)
        return value

    def _datetime_text(self, value: datetime.datetime, name: str, position: int) -> str:
        try:
            return format_datetime(value)
        except OverflowError:
            msg = (
                f"{self.where(position)}: field '{name}' is a date-time that falls outside the years "
                "0001-9999 once converted to UTC, which the API's YYYY-MM-DD HH:MM:SS cannot write. Fix "
                "the source, or replace the field with `stream_maps`."
            )
            raise RJMetricsInputError(msg) from None

    def _key_of(self, point: dict[str, t.Any], record: dict[str, t.Any], position: int) -> Hashable:
        if self._single_key is not None:
            value = record.get(self._single_key)
            # The usual key, sent as read: its own identity.
            if type(value) is str or (type(value) is int and -_INT_LIMIT < value < _INT_LIMIT):
                return value
        elif self._key_fields is not None:
            values: tuple[t.Any, ...] = tuple(map(record.get, self._key_fields))
            for value in values:
                cls = type(value)
                if cls is not str and not (cls is int and -_INT_LIMIT < value < _INT_LIMIT):
                    break
            else:
                return values  # the usual composite key, sent as read: its own identity
        parts = []
        for name, source in self._key_sources:
            value = point.get(name)
            if value is None and record.get(source) is not None:
                msg = (
                    f"{self.where(position)}: key property '{source}' is a number no double can hold "
                    "(NaN, infinite, or beyond about 1.8e308), which the API cannot key on. Fix the source, "
                    "or change the stream's key properties with `stream_maps` (`__key_properties__`)."
                )
                raise RJMetricsInputError(msg)
            if value is None:
                msg = (
                    f"{self.where(position)}: key property '{source}' is missing or null, so the data "
                    "point cannot be upserted. Fix the source, or change the stream's key properties "
                    "with `stream_maps` (`__key_properties__`)."
                )
                raise RJMetricsInputError(msg)
            if type(record.get(source)) in (dict, list):
                msg = (
                    f"{self.where(position)}: key property '{source}' is an object or array; the Import "
                    "API accepts only scalar key values. Choose scalar key properties with `stream_maps`."
                )
                raise RJMetricsInputError(msg)
            parts.append(key_part(value))
        return parts[0] if len(parts) == 1 else tuple(parts)
