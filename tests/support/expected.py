"""What should land, computed from the input without the target (the README's rules)."""

from __future__ import annotations

import json
import re
import typing as t

if t.TYPE_CHECKING:
    from tests.support.messages import Message

Key = tuple[t.Any, ...] | str


def sanitise(stream: str) -> str:
    """The documented stream -> table rule (README): every character outside ``[A-Za-z0-9_]`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", stream)


def key_of(record: t.Mapping[str, t.Any], key_properties: t.Sequence[str]) -> Key:
    """A record's key: its key properties' values, or the whole record for a keyless stream."""
    if key_properties:
        return tuple(record[k] for k in key_properties)
    return json.dumps(record, sort_keys=True)


def last_versions_by_id(messages: t.Iterable[Message], stream: str) -> dict[t.Any, dict[str, t.Any]]:
    """The last version of each key of a stream whose key is one field, by that field's value."""
    versions: dict[t.Any, dict[str, t.Any]] = {}
    for key, record in last_versions(messages).get(stream, {}).items():
        assert isinstance(key, tuple) and len(key) == 1, f"stream {stream!r} is not keyed by one field"
        versions[key[0]] = record
    return versions


def last_versions(messages: t.Iterable[Message]) -> dict[str, dict[Key, dict[str, t.Any]]]:
    """Per stream, the last version of each key in input order (SCHEMA messages give the keys).

    Returns:
        ``{stream: {key: record}}``, keys in the order they first appeared. A stream is listed
        once it has a record.
    """
    key_properties: dict[str, t.Sequence[str]] = {}
    streams: dict[str, dict[Key, dict[str, t.Any]]] = {}
    for message in messages:
        if message.get("type") == "SCHEMA":
            key_properties[message["stream"]] = message.get("key_properties") or []
        elif message.get("type") == "RECORD":
            stream, record = message["stream"], message["record"]
            streams.setdefault(stream, {})[key_of(record, key_properties[stream])] = record
    return streams
