"""Reads Singer messages fast, with errors that say where the input is wrong but never echo it.

The SDK's readers log and raise a malformed line with its whole content, which may hold
record values; this reader names the line number and what is wrong instead.
"""

from __future__ import annotations

import contextlib
import sys
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
        except UnicodeEncodeError as exc:
            # Undecodable bytes arrive as lone surrogates (see ``process_lines``).
            msg = (
                f"Input line {self.line_number} is not valid UTF-8 (an invalid byte at character "
                f"{exc.start + 1}); the Singer spec requires UTF-8: check the tap's output encoding."
            )
            raise InvalidInputLine(msg) from None
        except RecursionError:
            msg = (
                f"Input line {self.line_number} nests objects or arrays too deeply to read (about "
                f"{sys.getrecursionlimit():,} levels or more); check the tap's output."
            )
            raise InvalidInputLine(msg) from None
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

    def process_lines(
        self,
        file_input: t.IO[str] | None,
        callbacks: dict[str, t.Callable[[dict], None]],
    ) -> t.Counter[str]:
        """Read every line, naming the line of any input that is not UTF-8.

        Bytes that are not UTF-8 are read as lone surrogates instead of failing inside the
        text layer, where no line number is known; ``deserialize_json`` then names the line.

        Args:
            file_input: Where to read; standard input by default.
            callbacks: Message type to handler.

        Returns:
            How many messages of each type were read.
        """
        source = file_input or self.default_input
        reconfigure = getattr(source, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):  # a stream that cannot change its error handler
                reconfigure(errors="surrogateescape")
        return super().process_lines(_utf8_checked(source, self), callbacks)

    def _process_unknown_message(self, message_dict: dict) -> None:
        """Refuse a message of a type Singer does not have, naming the line.

        Args:
            message_dict: The message.

        Raises:
            InvalidInputLine: Always.
        """
        kind = repr(message_dict.get("type"))
        kind = kind if len(kind) <= 40 else kind[:37] + "..."  # noqa: PLR2004
        msg = (
            f"Input line {self.line_number} is a message of unknown type {kind}; Singer messages are "
            "SCHEMA, RECORD, STATE, ACTIVATE_VERSION and BATCH. Check the tap's output."
        )
        raise InvalidInputLine(msg)

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


def _utf8_checked(source: t.Iterable[str], reader: RJMetricsReader) -> t.Iterator[str]:
    """Yield the lines of ``source``, turning a decoding failure into an error naming the line."""
    lines = iter(source)
    while True:
        try:
            line = next(lines)
        except StopIteration:
            return
        except UnicodeDecodeError:
            msg = (
                f"Input line {reader.line_number + 1} is not valid UTF-8; the Singer spec requires UTF-8: "
                "check the tap's output encoding."
            )
            raise InvalidInputLine(msg) from None
        yield line
