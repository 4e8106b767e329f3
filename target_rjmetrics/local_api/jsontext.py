"""JSON that keeps each number as the client wrote it.

The standard library reads a JSON number as an ``int`` or a ``float``, so what it writes back
is not always what was sent: ``1234567890123456789012345678.1234567891`` comes back as
``1.2345678901234569e+27``, ``-0`` as ``0``, ``1E5`` as ``100000.0``. :func:`read` (and
:func:`loads`) reads a number as an ``int`` or ``float`` only when Python writes that back as the
same text (``42``, ``1.0``, ``0.1``, ``-0.0``: nearly every number a client sends), and as a
:class:`JSONNumber` holding the text otherwise; :func:`dumps` writes each back as it was read.
Strings, ``true``, ``false``, ``null``, objects and arrays are read and written as the standard
library does (strings with ASCII escapes, as everywhere in the local server).

Cost: a value without a ``JSONNumber`` is written by the standard library's C encoder alone; one
with a ``JSONNumber`` by a second C encoder that calls Python for each string. :func:`read` says
whether a document holds one, so the parts of one that does go straight to :func:`dumps_exact`.

Reading is strict in the same ways as the local server has always been: ``NaN`` and
``Infinity`` are refused, and so is a number with a fraction or exponent beyond the range of an
IEEE double (``1e400``); an integer is refused only past the interpreter's limit on integer
digits (4300 by default), as by the standard library's reader.

To get plain Python values (every number an ``int`` or ``float``) read the text with
:func:`json.loads`.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, NamedTuple, NoReturn

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    #: A JSON encoder as ``json.encoder.c_make_encoder`` makes: ``encoder(value, 0)`` gives chunks of text.
    _Encoder = Callable[[object, int], Iterable[str]]


class JSONNumber:
    """A JSON number that Python would not write back as it was sent, kept as its text.

    ``-0``, ``1E5``, ``1.50``, ``1e-400`` or ``0.1000000000000000055511151231257827``: any
    number whose text is not what ``repr()`` of its ``int`` or ``float`` gives.

    Attributes:
        text: The number as it was written.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        """``JSONNumber('1.50')``."""
        return f"JSONNumber({self.text!r})"

    def __eq__(self, other: object) -> bool:
        """Equal to a JSONNumber of the same text."""
        return isinstance(other, JSONNumber) and other.text == self.text

    def __hash__(self) -> int:
        """The hash of the text."""
        return hash(self.text)


def _reject_constant(name: str) -> NoReturn:
    msg = f"{name} is not valid JSON"
    raise ValueError(msg)


class Document(NamedTuple):
    """A parsed JSON document and whether it holds a :class:`JSONNumber`.

    Attributes:
        value: The document: dicts, lists, strs, bools, ``None``, and each number an ``int``
            or ``float`` whose ``repr()`` is its text, or else a :class:`JSONNumber`.
        kept_text: Whether some number is a ``JSONNumber`` (so :func:`dumps_exact` writes its
            parts faster than :func:`dumps`).
    """

    value: object
    kept_text: bool


def read(data: bytes | str) -> Document:
    """Parse strict JSON, keeping each number's text.

    Raises:
        ValueError: The document is not valid JSON (``json.JSONDecodeError``, a
            ``UnicodeDecodeError``), or holds ``NaN``, ``Infinity`` or an out-of-range number.
        RecursionError: The document is nested too deeply.
    """
    kept: list[str] = []  # the texts kept as JSONNumber: whether there are any is read's flag

    def fraction_or_exponent(text: str) -> float | JSONNumber:
        value = float(text)
        if repr(value) == text:
            return value
        if not math.isfinite(value):
            msg = f"number {text[:40]} is out of range"
            raise ValueError(msg)
        kept.append(text)
        return JSONNumber(text)

    def integer(text: str) -> int | JSONNumber:
        # JSON allows no leading zeros nor "+", so every integer but -0 is written back as sent.
        # int() refuses more digits than the interpreter allows, as the standard library's reader does.
        if text == "-0":
            kept.append(text)
            return JSONNumber(text)
        return int(text)

    value = json.loads(data, parse_constant=_reject_constant, parse_float=fraction_or_exponent, parse_int=integer)
    return Document(value, bool(kept))


def loads(data: bytes | str) -> object:
    """Parse strict JSON, keeping each number's text: :func:`read` without the flag.

    Raises:
        ValueError: As :func:`read`.
        RecursionError: As :func:`read`.
    """
    return read(data).value


class _NumberText(str):
    """A number's text on its way through the exact encoder, written without quotes."""

    __slots__ = ()


# What the fast encoder writes for a JSONNumber (a string of one NUL): the sign that the value
# is to be written again by the exact encoder. A real string "\u0000" writes the same and is
# written again too, which costs time, never correctness.
_NEEDS_EXACT = '"\\u0000"'


def _mark(value: object) -> str:
    if not isinstance(value, JSONNumber):
        msg = f"{type(value).__name__} is not JSON serializable"
        raise TypeError(msg)
    return "\0"


def _number_text(value: object) -> str:
    if not isinstance(value, JSONNumber):
        msg = f"{type(value).__name__} is not JSON serializable"
        raise TypeError(msg)
    return _NumberText(value.text)


def _write_string(value: str) -> str:
    # The exact encoder hands every str to this function: a Python call per str, which is why
    # it is used only for values that hold a JSONNumber.
    if value.__class__ is _NumberText:
        return value
    return json.encoder.encode_basestring_ascii(value)


def _python_dumps(value: object) -> str:
    """Encode without the C accelerator (interpreters without it)."""
    if isinstance(value, JSONNumber):
        return value.text
    if isinstance(value, str):
        return json.encoder.encode_basestring_ascii(value)
    if isinstance(value, dict):
        items = (f"{json.encoder.encode_basestring_ascii(str(k))}:{_python_dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_python_dumps(v) for v in value) + "]"
    return json.dumps(value, allow_nan=False)


def _make_encoders() -> tuple[_Encoder, _Encoder]:
    """The fast encoder (a JSONNumber written as a one-NUL string) and the exact one.

    Each is called as ``encoder(value, 0)`` and gives the text in chunks, as the C encoder does.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:
        return _python_chunks, _python_chunks
    # The C encoder takes its settings positionally: markers (None: parsed JSON has no cycles),
    # default, string encoder, indent, key and item separators, sort_keys, skipkeys, allow_nan.
    sort_keys = skipkeys = allow_nan = False
    ascii_strings = json.encoder.encode_basestring_ascii
    fast = c_make_encoder(None, _mark, ascii_strings, None, ":", ",", sort_keys, skipkeys, allow_nan)
    exact = c_make_encoder(None, _number_text, _write_string, None, ":", ",", sort_keys, skipkeys, allow_nan)
    return fast, exact


def _python_chunks(value: object, _level: int) -> list[str]:
    return [_python_dumps(value)]


_fast, _exact = _make_encoders()


def dumps(value: object) -> str:
    """Encode compact JSON in ASCII, each number as it was read (a :class:`JSONNumber` as its text).

    As fast as ``json.dumps`` for a value without a ``JSONNumber``; one with is written twice
    (use :func:`dumps_exact` when it is known to hold one).

    Raises:
        RecursionError: The value is nested too deeply.
        TypeError: The value holds something that is not JSON.
    """
    text = "".join(_fast(value, 0))
    return text if _NEEDS_EXACT not in text else "".join(_exact(value, 0))


def dumps_exact(value: object) -> str:
    """Encode as :func:`dumps` does, in one pass that costs a Python call per string.

    Raises:
        RecursionError: The value is nested too deeply.
        TypeError: The value holds something that is not JSON.
    """
    return "".join(_exact(value, 0))
