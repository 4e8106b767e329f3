"""Rendering of stored points as JSON, JSON lines or CSV (shared by HTTP and the CLI).

Points come as the JSON text they are stored as, so every number is shown as the client wrote
it: JSON and JSON lines are that text, and a CSV cell holding a number is its text.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any, cast

from target_rjmetrics.local_api import jsontext

if TYPE_CHECKING:
    from collections.abc import Iterable

FORMATS = ("json", "jsonl", "csv")


def to_jsonl(points: Iterable[str]) -> str:
    """Return one JSON object per line."""
    return "".join(point + "\n" for point in points)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):  # a JSONNumber too: its text
        return value
    return jsontext.dumps(value)


def to_csv(points: list[str]) -> str:
    """Return CSV with a header of every field, in the order fields first appear.

    Strings are written as they are, null as an empty cell, anything else as JSON
    (``true``, ``3.50``, ``{"a":1}``), numbers as they were sent.
    """
    rows = [cast("dict[str, Any]", jsontext.loads(point)) for point in points]
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


def render(points: list[str], fmt: str) -> tuple[str, str]:
    """Render points, each the JSON text of an object, in ``fmt`` and return ``(text, content type)``.

    Raises:
        ValueError: ``fmt`` is not one of ``FORMATS``.
    """
    if fmt == "json":
        return "[" + ",".join(points) + "]", "application/json"
    if fmt == "jsonl":
        return to_jsonl(points), "application/x-ndjson"
    if fmt == "csv":
        return to_csv(points), "text/csv; charset=utf-8"
    msg = f"format must be one of {', '.join(FORMATS)}"
    raise ValueError(msg)
