"""Reads Singer messages fast, with errors that say where the input is wrong but never echo it.

The SDK's readers log and raise a malformed line with its whole content, which may hold
record values; this reader names the line number and what is wrong instead.
"""

from __future__ import annotations

import typing as t

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, decoder
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json


class RJMetricsReader(MsgSpecReader):
    """The SDK's msgspec reader (numbers with a fraction become exact ``Decimal``)."""

    def __init__(self) -> None:
        """Start counting lines."""
        super().__init__()
        self.line_number = 0

    def deserialize_json(self, line: str) -> dict:
        """Parse one line of input.

        Args:
            line: A line of input.

        Returns:
            The message.

        Raises:
            InvalidInputLine: The line is not a JSON object.
        """
        self.line_number += 1
        try:
            message = decoder.decode(line)
        except msgspec.DecodeError as exc:
            # Python taps write NaN and Infinity by default (json.dumps allows them), which
            # msgspec refuses; the standard library reads them.
            try:
                message = deserialize_json(line)
            except ValueError:
                msg = f"Input line {self.line_number} is not valid JSON ({exc}); check the tap's output."
                raise InvalidInputLine(msg) from None
        if type(message) is not dict:
            msg = f"Input line {self.line_number} is JSON but not an object, so not a Singer message."
            raise InvalidInputLine(msg)
        return t.cast("dict", message)

    def assert_line_requires(self, line_dict: dict, requires: set[str]) -> None:  # type: ignore[override]
        """Check a message has the fields its type needs, naming the missing ones only.

        Args:
            line_dict: The message.
            requires: Field names it must have.

        Raises:
            InvalidInputLine: A field is missing.
        """
        missing = requires.difference(line_dict)
        if missing:
            kind = line_dict.get("type", "a message")
            msg = (
                f"Input line {self.line_number}: the {kind} message is missing "
                f"{', '.join(repr(m) for m in sorted(missing))}."
            )
            raise InvalidInputLine(msg)
