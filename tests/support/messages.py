"""Singer messages: builders for tests, and a reader of Singer text."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

Message = dict[str, t.Any]


def schema(stream: str, properties: dict[str, t.Any], keys: list[str] | None = None) -> Message:
    """A SCHEMA message (``keys`` are its key properties, none by default)."""
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": properties},
        "key_properties": keys if keys is not None else [],
    }


def record(stream: str, **values: t.Any) -> Message:
    """A RECORD message."""
    return {"type": "RECORD", "stream": stream, "record": values}


def state(value: t.Any) -> Message:
    """A STATE message."""
    return {"type": "STATE", "value": value}


def lines(messages: t.Iterable[Message | str]) -> str:
    """Singer input text: messages as JSON lines (strings are taken as raw lines)."""
    return "".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages)


def read_messages(source: str | Path) -> t.Iterator[Message]:
    """The messages of Singer text, or of a Singer file (blank lines skipped)."""
    if isinstance(source, Path):
        with source.open(encoding="utf-8") as handle:
            yield from (json.loads(line) for line in handle if line.strip())
    else:
        yield from (json.loads(line) for line in source.splitlines() if line.strip())


USERS_SCHEMA = schema(
    "users",
    {
        "id": {"type": "integer"},
        "email": {"type": "string"},
        "acquisition_source": {"type": ["string", "null"]},
        "status": {"type": ["string", "null"]},
        "created_at": {"type": ["string", "null"], "format": "date-time"},
    },
    ["id"],
)


def users(n: int, *, stream: str = "users", version: str = "v1", start: int = 1) -> list[Message]:
    """``n`` user records with ids from ``start``."""
    return [
        record(stream, id=i, email=f"user{i}@example.com", acquisition_source="PPC", status=version)
        for i in range(start, start + n)
    ]
