"""Parsing and validation of upsert bodies, exactly as the Import API contract states them.

A body is one data point (a JSON object) or an array of 1 to 100 of them. Each point names
its primary-key fields in ``keys``; the point is identified by the values of those fields.
Point indexes in error reasons are 0-based positions in the body (0 for a single object).

A body is read with :mod:`~target_rjmetrics.local_api.jsontext`, so every number keeps the
text the client wrote, and a point is stored as that text. Its key is identified as the
contract's "Key identity" says: values equal as JSON values of the same type, numbers equal as
IEEE doubles (``1``, ``1.0`` and ``1e0`` are one key; ``"1"`` and ``true`` are others).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from target_rjmetrics.local_api import jsontext
from target_rjmetrics.local_api.jsontext import JSONNumber

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

MAX_POINTS_PER_REQUEST = 100
TABLE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_]+")
#: Error responses list at most this many reasons (one per offending point).
MAX_REASONS = 20
# Integers up to this size are doubles exactly; a larger one is identified by the double it reads as.
_INT_EXACT_AS_DOUBLE = 2**53


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _make_compact_encode() -> Callable[[object], str]:
    # JSONEncoder.encode builds a new C encoder on every call, which is most of the cost of
    # encoding a small point; build it once. Falls back where the C accelerator is missing.
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:
        return _ENCODER.encode
    # The C encoder takes its settings positionally: markers, default, encoder, indent, key and
    # item separators, sort_keys, skipkeys, allow_nan.
    sort_keys = skipkeys = allow_nan = False
    c_encode = c_make_encoder(
        None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ":", ",", sort_keys, skipkeys, allow_nan
    )

    def encode(value: object) -> str:
        return "".join(c_encode(value, 0))

    return encode


_compact_encode = _make_compact_encode()


class InvalidUpsertError(ValueError):
    """The body breaks a rule of the contract; ``reasons`` name the offending points."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class DataPoint(NamedTuple):
    """One validated data point.

    Attributes:
        key_json: Canonical JSON of the key values, in ``keys`` order (the storage identity,
            see :func:`key_identity_json`).
        keys_json: JSON of the ``keys`` list, kept as metadata.
        data_json: JSON of the point without its ``keys`` field, each number as it was sent.
    """

    key_json: str
    keys_json: str
    data_json: str


def is_valid_table_name(name: str) -> bool:
    """Return True when ``name`` is alphanumeric plus underscore (and not empty)."""
    return TABLE_NAME_PATTERN.fullmatch(name) is not None


def parse_json(body: bytes) -> jsontext.Document:
    """Parse a request body as strict JSON (no NaN/Infinity, no overflowing floats).

    Raises:
        InvalidUpsertError: The body is not valid JSON.
    """
    try:
        return jsontext.read(body)
    except RecursionError:
        msg = "body is nested too deeply"
        raise InvalidUpsertError([msg]) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        msg = f"body is not valid JSON: {str(exc)[:200]}"
        raise InvalidUpsertError([msg]) from None


def point_count(doc: object) -> int | None:
    """Return how many points a parsed body holds (``None`` if it is neither object nor array)."""
    if isinstance(doc, dict):
        return 1
    if isinstance(doc, list):
        return len(doc)
    return None


def key_values_json(doc: object) -> str:
    """Return the JSON text of each point's key values in body order (``null`` for a point without valid keys).

    Numbers keep the text they were sent with. Used by the request log; never raises.
    """
    points: list[Any] = [doc] if isinstance(doc, dict) else doc if isinstance(doc, list) else []
    out: list[list[Any] | None] = []
    for point in points:
        keys = point.get("keys") if isinstance(point, dict) else None
        if isinstance(keys, list) and keys and all(isinstance(k, str) for k in keys):
            out.append([point.get(k) for k in keys])
        else:
            out.append(None)
    try:
        return jsontext.dumps(out)
    except RecursionError:
        # A key value of an invalid point may be nested too deeply to write: log null for it.
        return "[" + ",".join(_dumps_or_null(values) for values in out) + "]"


def _dumps_or_null(value: object) -> str:
    try:
        return jsontext.dumps(value)
    except RecursionError:
        return "null"


def _key_identity(value: object) -> object:
    """The value a key value is identified by: numbers equal as IEEE doubles are one key value.

    ``1``, ``1.0``, ``1e0`` and ``1.0000000000000000001`` are ``1``; ``-0`` is ``0``;
    ``12345678901234567`` and ``12345678901234568`` are both ``12345678901234568`` (the double
    both read as). An integer beyond the doubles' range (about 1.8e308) keeps its exact value; a
    number with a fraction or exponent that far out is refused when read. Strings and booleans
    are themselves, and stay apart from numbers when encoded (``"1"``, ``true``, ``1``).
    """
    if isinstance(value, str) or value is True or value is False:
        return value
    if isinstance(value, int):
        if -_INT_EXACT_AS_DOUBLE <= value <= _INT_EXACT_AS_DOUBLE:
            return value
        try:
            return int(float(value))
        except OverflowError:
            return value
    number = float(value.text) if isinstance(value, JSONNumber) else value
    if isinstance(number, float):
        return int(number) if number.is_integer() else number
    return value


def key_identity_json(values: Sequence[object]) -> str:
    """Return the canonical JSON of key values (in ``keys`` order) that identifies a stored point.

    Two points are one when this text is equal: their key values are equal, element-wise, as
    JSON values of the same type, numbers as IEEE doubles (see :func:`_key_identity`). It is
    the text earlier releases stored for every key but an integer that is not a double (beyond
    2**53), which they kept exact and the storage's upgrade re-keys.
    """
    return _compact_encode([_key_identity(v) for v in values])


def _point_problem(point: object) -> str | None:
    if not isinstance(point, dict):
        return "is not a JSON object"
    if "keys" not in point:
        return "has no 'keys' field"
    keys = point["keys"]
    if not isinstance(keys, list) or not keys:
        return "'keys' must be a non-empty array of field names"
    if not all(isinstance(name, str) for name in keys):
        return "'keys' must contain only strings"
    return _key_field_problem(point, keys)


def _key_field_problem(point: dict[str, Any], keys: list[str]) -> str | None:
    for name in keys:
        if name not in point:
            return f"key field {name!r} is missing"
        value = point[name]
        if value is None:
            return f"key field {name!r} is null"
        if isinstance(value, (dict, list)):
            return f"key field {name!r} is an object or array"
    return None


def _points_of(doc: object) -> list[Any]:
    """The points of a parsed body, if it is an object or an array of 1 to 100 things."""
    if isinstance(doc, dict):
        return [doc]
    if not isinstance(doc, list):
        raise InvalidUpsertError(["body must be a JSON object or an array of objects"])
    if not doc:
        raise InvalidUpsertError(["body is an empty array; send 1 to 100 data points"])
    if len(doc) > MAX_POINTS_PER_REQUEST:
        msg = (
            f"body holds {len(doc)} data points; an array may hold at most "
            f"{MAX_POINTS_PER_REQUEST} (points {MAX_POINTS_PER_REQUEST} and later are over)"
        )
        raise InvalidUpsertError([msg])
    return doc


def validate_points(body: jsontext.Document) -> list[DataPoint]:
    """Validate a parsed body and return its points, deduplicated with the later point winning.

    A key seen twice (see :func:`key_identity_json`) keeps the position of its first occurrence
    and the content of its last, key values included, so new rows appear in the order their keys
    first appear in the body.

    Raises:
        InvalidUpsertError: Any rule is broken; nothing of the body may be written.
    """
    points = _points_of(body.value)
    reasons: list[str] = []
    for index, point in enumerate(points):
        problem = _point_problem(point)
        if problem is not None:
            reasons.append(f"point {index}: {problem}")
            if len(reasons) >= MAX_REASONS:
                reasons.append("further points not checked")
                break
    if reasons:
        raise InvalidUpsertError(reasons)

    by_key: dict[str, DataPoint] = {}
    keys_json_of: dict[tuple[str, ...], str] = {}  # most points of a body share one keys list
    encode, identity = _compact_encode, _key_identity
    # A body without a number kept as text (nearly every one) is written by the C encoder alone.
    write = jsontext.dumps_exact if body.kept_text else jsontext.dumps
    for index, point in enumerate(points):
        keys = point["keys"]
        keys_tuple = tuple(keys)
        keys_json = keys_json_of.get(keys_tuple)
        if keys_json is None:
            keys_json = keys_json_of[keys_tuple] = encode(keys)
        key_json = encode([identity(point[k]) for k in keys])  # key_identity_json, inlined
        data = {k: v for k, v in point.items() if k != "keys"}
        try:
            data_json = write(data)
        except (RecursionError, ValueError):
            raise InvalidUpsertError([f"point {index}: is nested too deeply to store"]) from None
        by_key[key_json] = DataPoint(key_json, keys_json, data_json)
    return list(by_key.values())
