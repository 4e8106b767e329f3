"""Reads the files of a BATCH message (the SDK's batch extension) one record at a time.

A tap with ``batch_config`` writes records to files and sends
``{"type": "BATCH", "stream": S, "encoding": {"format": ..., "compression": ...}, "manifest": [URL, ...]}``
instead of RECORD messages. The target loads each record of those files exactly as a RECORD
message of stream ``S`` would be loaded, so this module only opens the files and yields plain
records, streaming (a file is never held in memory whole). Errors name the stream and the file,
never record content.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import typing as t
import zlib
from urllib.parse import urlparse
from urllib.request import url2pathname

import msgspec
from singer_sdk.contrib.msgspec import decoder
from singer_sdk.exceptions import SingerSDKError
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json

from target_rjmetrics.exceptions import RJMetricsError, RJMetricsInputError
from target_rjmetrics.sdk import StorageTarget

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: JSON Lines files may be plain or gzipped; Parquet compresses inside the file.
JSONL_COMPRESSIONS = frozenset({"none", "gzip"})
#: Parquet files are read in slices of this many rows, so memory stays bounded.
PARQUET_ROWS_PER_SLICE = 1000


def read_batch(
    stream: str,
    encoding: t.Any,  # noqa: ANN401 (checked here: it comes straight from the input)
    manifest: t.Any,  # noqa: ANN401
    storage: StorageTarget | None = None,
) -> Iterator[tuple[str, int, dict[str, t.Any]]]:
    """Yield ``(file URL, row number, record)`` for every record of a BATCH message, in order.

    Raises:
        RJMetricsInputError: The message names an unknown format or compression, a file
            cannot be read, or a row is not a JSON object.
    """
    fmt, compression = _check_encoding(stream, encoding)
    if type(manifest) is not list or not all(type(url) is str for url in manifest):
        msg = f"The BATCH message of stream '{stream}' has a 'manifest' that is not a list of file URLs."
        raise RJMetricsInputError(msg)
    if fmt == "parquet" and not _pyarrow_available():
        msg = (
            f"The BATCH message of stream '{stream}' holds Parquet files, which need pyarrow: install it "
            "beside the target (`pip install pyarrow`), or set the tap's `batch_config` encoding to jsonl."
        )
        raise RJMetricsInputError(msg)
    for url in manifest:
        rows = _parquet_rows if fmt == "parquet" else _jsonl_rows
        yield from rows(stream, url, compression, storage)


def load_batch(
    message: dict[str, t.Any], storage: StorageTarget | None, process_record: Callable[[dict[str, t.Any]], None]
) -> None:
    """Hand every row of a BATCH message's files to ``process_record`` as a RECORD message of its stream.

    An error about a row gets the file and the row appended to its message.

    Raises:
        RJMetricsInputError: A file cannot be read, or a row cannot be loaded.
    """
    stream = str(message["stream"])
    for url, number, record in read_batch(stream, message["encoding"], message["manifest"], storage):
        try:
            process_record({"type": "RECORD", "stream": stream, "record": record})
        except (RJMetricsInputError, InvalidInputLine) as exc:
            raise type(exc)(f"{exc} (row {number} of batch file {url})") from None
        except SingerSDKError as exc:
            if isinstance(exc, RJMetricsError):
                raise
            raise RJMetricsInputError(f"{exc} (row {number} of batch file {url})") from None


def _pyarrow_available() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _check_encoding(stream: str, encoding: t.Any) -> tuple[str, str]:  # noqa: ANN401
    if type(encoding) is not dict:
        msg = f"The BATCH message of stream '{stream}' has no 'encoding' object."
        raise RJMetricsInputError(msg)
    fmt = encoding.get("format")
    compression = encoding.get("compression") or "none"
    if fmt not in {"jsonl", "parquet"}:
        msg = (
            f"The BATCH message of stream '{stream}' uses batch format {_shown(fmt)}; this target reads "
            "'jsonl' and 'parquet'. Set the tap's `batch_config` encoding format to one of them."
        )
        raise RJMetricsInputError(msg)
    if fmt == "jsonl" and compression not in JSONL_COMPRESSIONS:
        msg = (
            f"The BATCH message of stream '{stream}' uses compression {_shown(compression)} for jsonl files; "
            "this target reads 'gzip' and 'none'. Set the tap's `batch_config` encoding compression to one of them."
        )
        raise RJMetricsInputError(msg)
    return str(fmt), str(compression)


def _shown(value: t.Any) -> str:  # noqa: ANN401
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."  # noqa: PLR2004


def _open(url: str, storage: StorageTarget | None) -> t.Any:  # noqa: ANN401
    head, tail = StorageTarget.split_url(url)
    if storage is not None:  # the target's own batch_config storage, as the SDK reads it
        return storage.open(tail, mode="rb")
    parsed = urlparse(url)
    if parsed.scheme in {"", "file"}:
        # Local files are opened directly: the SDK's storage helper creates missing directories.
        return open(url2pathname(parsed.path), "rb")  # noqa: PTH123 (closed by the caller's with)
    return StorageTarget.from_url(head).open(tail, mode="rb")


def _unreadable(stream: str, url: str, exc: BaseException) -> RJMetricsInputError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    msg = (
        f"Cannot read batch file {url} of stream '{stream}': {reason}. The tap wrote the file and "
        "the target must be able to read it at that URL (same machine or shared storage)."
    )
    return RJMetricsInputError(msg)


def _jsonl_rows(
    stream: str, url: str, compression: str, storage: StorageTarget | None
) -> Iterator[tuple[str, int, dict[str, t.Any]]]:
    number = 0
    try:
        with _open(url, storage) as raw:
            lines = gzip.GzipFile(fileobj=raw, mode="rb") if compression == "gzip" else raw
            for line in lines:
                number += 1
                if not line.strip():
                    continue
                yield url, number, _decode_row(stream, url, number, line)
    except RJMetricsInputError:
        raise
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        where = f"line {number + 1} of " if number else ""
        msg = str(_unreadable(stream, url, exc))
        if where:
            msg = msg.replace(f"Cannot read batch file {url}", f"Cannot read {where}batch file {url}", 1)
        raise RJMetricsInputError(msg) from None


def _decode_row(stream: str, url: str, number: int, line: bytes) -> dict[str, t.Any]:
    try:
        record = decoder.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec 0.22 and 0.23 say "not UTF-8" differently
        try:  # Python writes NaN and Infinity, which only the standard library reads
            record = deserialize_json(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            msg = (
                f"Line {number} of batch file {url} of stream '{stream}' is not valid JSON (or not "
                "UTF-8); check the tap's batch output."
            )
            raise RJMetricsInputError(msg) from None
    if type(record) is not dict:
        msg = f"Line {number} of batch file {url} of stream '{stream}' is JSON but not an object, so not a record."
        raise RJMetricsInputError(msg)
    return t.cast("dict[str, t.Any]", record)


def _parquet_rows(
    stream: str,
    url: str,
    compression: str,  # noqa: ARG001 (Parquet files carry their own compression)
    storage: StorageTarget | None,
) -> Iterator[tuple[str, int, dict[str, t.Any]]]:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    number = 0
    try:
        with _open(url, storage) as raw:
            for batch in pq.ParquetFile(raw).iter_batches(batch_size=PARQUET_ROWS_PER_SLICE):
                for row in batch.to_pylist():
                    number += 1
                    yield url, number, {name: _json_value(v) for name, v in row.items()}
    except RJMetricsInputError:
        raise
    except (OSError, EOFError, ValueError, pa.ArrowException) as exc:
        raise _unreadable(stream, url, exc) from None


def _json_value(value: t.Any) -> t.Any:  # noqa: ANN401
    """Turn a Parquet value into what a RECORD message would carry (date-times as ISO 8601 text)."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        # JSON has no bytes; base64 text is what a tap's RECORD message would carry.
        return base64.b64encode(value).decode("ascii")
    return value
