"""Reads Singer messages fast, with errors that say where the input is wrong but never echo it.

The SDK's readers log and raise a malformed line with its whole content, which may hold
record values; this reader names the line number and what is wrong instead.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import queue
import sys
import threading
import typing as t

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, decoder
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json

from target_rjmetrics.lifecycle import POLL_SECONDS

#: Bytes read from the input at a time, and blocks read ahead of the messages being handled.
_READ_BUFFER_BYTES = 1 << 20
_QUEUED_BLOCKS = 4
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def json_type(value: object) -> str:
    """Name the JSON type of a value read from the input (``a number``, ``an object``...)."""
    return _JSON_TYPES.get(type(value), "a number")


def schema_message_problem(message: dict[str, t.Any]) -> str | None:
    """Say what makes a SCHEMA message unusable, in words naming its stream and field, or None.

    The SDK reads these fields as they come: a ``key_properties`` of ``"id"`` is read letter
    by letter, ``"properties": []`` ends in a TypeError, a stream that is not a string in a
    KeyError or a TypeError.
    """
    stream = message["stream"]
    if type(stream) is not str:
        return f"the SCHEMA message's 'stream' is {json_type(stream)}, not a string naming the stream"
    where = f"the SCHEMA of stream '{stream}'"
    schema = message["schema"]
    if type(schema) is not dict:
        return f"{where} has a 'schema' that is {json_type(schema)}, not a JSON Schema object"
    if "properties" not in schema:
        return f"{where} has no 'properties' in its schema (a stream's schema is an object listing its fields)"
    properties = schema["properties"]
    if type(properties) is not dict:
        return f"{where} has 'properties' that is {json_type(properties)}, not an object of field schemas"
    keys = message.get("key_properties")
    if keys is not None and (type(keys) is not list or not all(type(k) is str for k in keys)):
        what = json_type(keys) if type(keys) is not list else "an array holding something other than strings"
        example = f'["{keys}"]' if type(keys) is str else '["id"]'
        return f"{where} has 'key_properties' that is {what}, not an array of field names (such as {example})"
    return None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _blocks_from(fd: int, check: t.Callable[[], None] | None) -> t.Iterator[bytes]:
    """The input's bytes in blocks, read by a thread of its own; ``check`` runs while none comes."""
    blocks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=_QUEUED_BLOCKS)

    def read() -> None:
        try:
            while block := os.read(fd, _READ_BUFFER_BYTES):
                blocks.put(block)
        except BaseException as exc:  # noqa: BLE001 (handed to the reading thread)
            blocks.put(exc)
        else:
            blocks.put(None)

    threading.Thread(target=read, name="rjmetrics-input", daemon=True).start()
    while True:
        try:
            item = blocks.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if check is not None:
                check()
            continue
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _split_lines(blocks: t.Iterable[bytes]) -> t.Iterator[bytes]:
    """The lines (without their newlines) of a stream of blocks."""
    pieces: list[bytes] = []  # the start of a line longer than a block: joined once, not per block
    for block in blocks:
        lines = block.split(b"\n")
        tail = lines.pop()  # after the block's last newline: the start of the next line
        if lines and pieces:
            pieces.append(lines[0])
            lines[0] = b"".join(pieces)
            pieces = []
        yield from lines
        if tail:
            pieces.append(tail)
    if pieces:
        yield b"".join(pieces)


class RJMetricsReader(MsgSpecReader):
    """The SDK's msgspec reader (numbers with a fraction become exact ``Decimal``)."""

    def __init__(self) -> None:
        super().__init__()
        self.line_number = 0

    def deserialize_json(self, line: str | bytes) -> dict[str, t.Any]:
        """Parse one line of input.

        Raises:
            InvalidInputLine: The line is not UTF-8, not JSON, or not a JSON object.
        """
        self.line_number += 1
        try:
            message = decoder.decode(line)
        except (UnicodeEncodeError, UnicodeDecodeError):
            raise InvalidInputLine(self._not_utf8(line)) from None
        except RecursionError:
            msg = (
                f"Input line {self.line_number} nests objects or arrays too deeply to read (about "
                f"{sys.getrecursionlimit():,} levels or more); check the tap's output."
            )
            raise InvalidInputLine(msg) from None
        except msgspec.DecodeError as exc:
            if isinstance(line, bytes) and not _is_utf8(line):  # msgspec 0.23 says so with a DecodeError
                raise InvalidInputLine(self._not_utf8(line)) from None
            # Python taps write NaN and Infinity by default (json.dumps allows them), which
            # msgspec refuses; the standard library reads them.
            try:
                message = deserialize_json(line.decode("utf-8") if isinstance(line, bytes) else line)
            except ValueError:
                msg = f"Input line {self.line_number} is not valid JSON ({exc}); check the tap's output."
                raise InvalidInputLine(msg) from None
        if type(message) is not dict:
            msg = f"Input line {self.line_number} is JSON but not an object, so not a Singer message."
            raise InvalidInputLine(msg)
        return t.cast("dict[str, t.Any]", message)

    def _not_utf8(self, line: str | bytes) -> str:
        """Say where a line that is not UTF-8 breaks (the character, counted from 1)."""
        # Read as text, undecodable bytes became lone surrogates: turn them back into bytes.
        raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
        try:
            raw.decode("utf-8")
            column = "?"
        except UnicodeDecodeError as exc:
            column = str(len(raw[: exc.start].decode("utf-8")) + 1)
        return (
            f"Input line {self.line_number} is not valid UTF-8 (an invalid byte at character {column}); "
            "the Singer spec requires UTF-8: check the tap's output encoding."
        )

    def watch(self, check: t.Callable[[], None]) -> None:
        """Call ``check`` while the input is quiet, at least every tenth of a second.

        ``check`` raises what ends the run (a stop, a failure) and seals batches for a STATE
        that waits; reading never blocks the thread that handles messages longer than that.
        """
        self._check = check

    def process_lines(
        self,
        file_input: t.IO[str] | None,
        callbacks: dict[str, t.Callable[[dict[str, t.Any]], None]],
    ) -> t.Counter[str]:
        """Read every message and hand it to its handler.

        The SDK's loop (``GenericSingerReader.process_lines``), reading bytes when there are
        any: no decoding into text first (msgspec reads UTF-8 itself), and a line that is not
        UTF-8 is named by its number, which the text layer cannot do. Input with a file
        descriptor (a pipe, a file) is read by a thread of its own, in blocks of 1 MiB, so the
        thread handling messages waits for input only in slices (see :meth:`watch`).
        """
        source: t.Any = file_input or self.default_input
        lines: t.Iterable[str | bytes]
        binary = getattr(source, "buffer", source if isinstance(source, (io.RawIOBase, io.BufferedIOBase)) else None)
        try:
            fd = binary.fileno() if binary is not None else None
        except (OSError, ValueError, AttributeError):
            fd = None
        if fd is not None:
            lines = _split_lines(_blocks_from(fd, getattr(self, "_check", None)))
        else:  # text of the program embedding us (a StringIO): nothing to wait for
            reconfigure = getattr(source, "reconfigure", None)
            if reconfigure is not None:
                with contextlib.suppress(Exception):  # a stream that cannot change its error handler
                    reconfigure(errors="surrogateescape")
            lines = source
        stats: dict[str, int] = collections.defaultdict(int)
        deserialize = self.deserialize_json
        for line in lines:
            message = deserialize(line)
            kind = message.get("type")
            if kind is None:
                self.assert_line_requires(message, requires={"type"})  # raises, naming the line
            callback = callbacks.get(str(kind))
            if callback is not None:
                callback(message)
            else:
                self._process_unknown_message(message)
            stats[kind] += 1  # type: ignore[index]
        return collections.Counter(stats)

    def _process_unknown_message(self, message_dict: dict[str, t.Any]) -> None:
        """Refuse a message of a type Singer does not have, naming the line.

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

    def assert_line_requires(self, line_dict: dict[str, t.Any], requires: set[str]) -> None:  # type: ignore[override]
        """Check a message has the fields its type needs, naming the missing ones only.

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
