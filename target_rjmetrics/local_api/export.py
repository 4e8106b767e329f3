"""Rendering of stored points as JSON, JSON lines or CSV (shared by HTTP and the CLI)."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

FORMATS = ("json", "jsonl", "csv")


def to_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    """Return one JSON object per line."""
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def to_csv(rows: list[dict[str, Any]]) -> str:
    """Return CSV with a header of every field, in the order fields first appear.

    Strings are written as they are, null as an empty cell, anything else as JSON
    (``true``, ``3.5``, ``{"a":1}``).
    """
    columns: dict[str, None] = {}
    for row in rows:
        for name in row:
            columns.setdefault(name, None)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(columns))
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in columns])
    return out.getvalue()


def render(rows: list[dict[str, Any]], fmt: str) -> tuple[str, str]:
    """Render rows in ``fmt`` and return ``(text, content type)``.

    Raises:
        ValueError: ``fmt`` is not one of ``FORMATS``.
    """
    if fmt == "json":
        return json.dumps(rows), "application/json"
    if fmt == "jsonl":
        return to_jsonl(rows), "application/x-ndjson"
    if fmt == "csv":
        return to_csv(rows), "text/csv; charset=utf-8"
    msg = f"format must be one of {', '.join(FORMATS)}"
    raise ValueError(msg)
