"""Reading input lines: what each bad line is called, whatever msgspec version reads it.

msgspec 0.22 raises ``UnicodeDecodeError`` for a line that is not UTF-8 and 0.23 raises
``msgspec.DecodeError``; the package allows both, so both are read right. Only the installed
version is real here; the other is played by a decoder that fails as that version fails.
"""

from __future__ import annotations

import typing as t

import msgspec
import pytest
from singer_sdk.contrib.msgspec import decoder as real_decoder
from singer_sdk.singerlib.exceptions import InvalidInputLine

from target_rjmetrics import reader as reader_module
from target_rjmetrics.reader import RJMetricsReader


class _OtherVersion:
    """Decodes as msgspec does, but fails on bytes that are not UTF-8 as a given version fails."""

    def __init__(self, error: t.Callable[[bytes], Exception]) -> None:
        self._error = error

    def decode(self, line: str | bytes) -> t.Any:
        if isinstance(line, bytes):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                raise self._error(line) from None
        return real_decoder.decode(line)


DECODERS: dict[str, t.Any] = {
    "installed msgspec": real_decoder,
    "msgspec 0.22": _OtherVersion(lambda line: UnicodeDecodeError("utf-8", line, 0, 1, "invalid start byte")),
    "msgspec 0.23": _OtherVersion(lambda _line: msgspec.DecodeError("Input data was truncated or not UTF-8")),
}


def _at(line: bytes, bad: bytes) -> str:
    """The words naming the character where ``bad`` starts in ``line``, counted from 1."""
    return f"not valid UTF-8 (an invalid byte at character {len(line[: line.index(bad)].decode()) + 1})"


BAD_ASCII = b'{"type": "RECORD", "stream": "s", "record": {"name": "bad \xff byte"}}\n'
BAD_AFTER_UNICODE = b'{"type": "RECORD", "stream": "caf\xc3\xa9", "record": {"n": "\xe9"}}\n'
LINES: list[tuple[bytes, str | None]] = [
    (b'{"type": "STATE", "value": {"a": 1}}\n', None),
    (b'{"type": "RECORD", "stream": "s", "record": {"name": "caf\xc3\xa9"}}\n', None),
    (b'{"type": "RECORD", "stream": "s", "record": {"x": NaN}}\n', None),
    (BAD_ASCII, _at(BAD_ASCII, b"\xff")),
    (BAD_AFTER_UNICODE, _at(BAD_AFTER_UNICODE, b'\xe9"')),
    (b'{"type": "RECORD", "stream": \n', "is not valid JSON"),
    (b"[1, 2]\n", "is JSON but not an object"),
    (b"[" * 100_000 + b"]" * 100_000 + b"\n", "nests objects or arrays too deeply"),
]


@pytest.mark.parametrize("version", list(DECODERS))
@pytest.mark.parametrize(("line", "error"), LINES)
def test_each_bad_line_is_named_by_what_is_wrong(
    version: str, line: bytes, error: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "decoder", DECODERS[version])
    reader = RJMetricsReader()
    reader.line_number = 1
    if error is None:
        assert type(reader.deserialize_json(line)) is dict
        return
    with pytest.raises(InvalidInputLine) as raised:
        reader.deserialize_json(line)
    assert error in str(raised.value), str(raised.value)
    assert str(raised.value).startswith("Input line 2 ")
    assert "byte" not in error or "\xff" not in str(raised.value)
