"""Floors F1 and F2: the target's work done by a plain script, without the SDK.

Per RECORD line, the same work as target-rjmetrics: decode (msgspec, numbers with a fraction
as exact ``Decimal``), validate against the stream's schema with fastjsonschema, write
date-times (top-level ``format: date-time`` properties) as the API's ``YYYY-MM-DD HH:MM:SS``
in UTC, nested objects and arrays as JSON text, set ``keys``, encode the data point; then POST
each stream's points in arrays of 100 with ``requests``, 201 expected.

- F1 (``--threads 1``, the default): one ``requests.Session``, one request at a time, so each
  key's versions land in input order without any bookkeeping.
- F2 (``--threads N``): N sending threads, each with its own session, fed in input order from
  a bounded queue; no key ordering, so an older version of a key may land after a newer one.

STATE messages are ignored; a stream's last, partial array goes out at the end of input.
Exit code 1 if any request was not answered 201.

    python benchmarks/baselines/floor.py --base-url URL --client-id 1 --api-key KEY [--threads 16] < input.jsonl
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import queue
import sys
import threading
import typing as t
from http import HTTPStatus

import fastjsonschema
import msgspec
import requests

POINTS_PER_REQUEST = 100
TIMEOUT_S = 60
_UTC = datetime.timezone.utc
_HEADERS = {"Content-Type": "application/json"}


class Stream:
    """A stream's schema, compiled, and its points waiting to be sent."""

    def __init__(self, message: dict[str, t.Any], url: str) -> None:
        """Compile the stream's SCHEMA message."""
        schema = message["schema"]
        self.validate = fastjsonschema.compile(schema, use_formats=False)
        properties = schema.get("properties") or {}
        self.datetimes = {name for name, spec in properties.items() if spec.get("format") == "date-time"}
        self.keys = list(message.get("key_properties") or [])
        self.url = url
        self.pending: list[bytes] = []

    def point(self, record: dict[str, t.Any], encode: t.Callable[[t.Any], bytes]) -> dict[str, t.Any]:
        """The data point of a valid record: ``keys``, date-times in UTC, nested values as JSON text."""
        self.validate(record)
        point: dict[str, t.Any] = {"keys": self.keys}
        for name, value in record.items():
            if name in self.datetimes and type(value) is str:
                point[name] = _utc_text(value)
            elif type(value) is dict or type(value) is list:
                point[name] = encode(value).decode()
            else:
                point[name] = value
        return point


class Sender:
    """POSTs request bodies: itself, one at a time (F1), or through ``threads`` sending threads (F2)."""

    def __init__(self, threads: int) -> None:
        """Start the sending threads (none for one)."""
        self.session = requests.Session()
        self.failed = 0
        self._lock = threading.Lock()
        self._work: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=2 * threads)
        self._workers = [threading.Thread(target=self._send_from_queue) for _ in range(threads if threads > 1 else 0)]
        for worker in self._workers:
            worker.start()

    def _post(self, http: requests.Session, url: str, body: bytes) -> None:
        if http.post(url, data=body, headers=_HEADERS, timeout=TIMEOUT_S).status_code != HTTPStatus.CREATED:
            with self._lock:
                self.failed += 1

    def _send_from_queue(self) -> None:
        with requests.Session() as http:
            while (job := self._work.get()) is not None:
                self._post(http, *job)

    def send(self, url: str, body: bytes) -> None:
        """Send one body (or queue it for a sending thread)."""
        if self._workers:
            self._work.put((url, body))
        else:
            self._post(self.session, url, body)

    def close(self) -> None:
        """Wait for every queued body to be sent."""
        for _ in self._workers:
            self._work.put(None)
        for worker in self._workers:
            worker.join()


def _utc_text(value: str) -> str:
    moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(_UTC)
    return moment.isoformat(" ", "seconds")[:19]


def load(lines: t.Iterable[bytes], base_url: str, client_id: int, api_key: str, sender: Sender) -> None:
    """Turn each RECORD into a data point and send each stream's points in arrays of 100."""
    decode = msgspec.json.Decoder(float_hook=decimal.Decimal).decode
    encode = msgspec.json.Encoder(decimal_format="number").encode
    streams: dict[str, Stream] = {}

    def flush(stream: Stream) -> None:
        sender.send(stream.url, b"[" + b",".join(stream.pending) + b"]")
        stream.pending = []

    for line in lines:
        message = decode(line)
        kind = message["type"]
        if kind == "RECORD":
            stream = streams[message["stream"]]
            stream.pending.append(encode(stream.point(message["record"], encode)))
            if len(stream.pending) == POINTS_PER_REQUEST:
                flush(stream)
        elif kind == "SCHEMA":
            url = f"{base_url}/client/{client_id}/table/{message['stream']}/data?apikey={api_key}"
            streams[message["stream"]] = Stream(message, url)
    for stream in streams.values():
        if stream.pending:
            flush(stream)


def main() -> int:
    """Load standard input; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="Import API base URL ending in /v2")
    parser.add_argument("--client-id", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--threads", type=int, default=1, help="sending threads (1: F1, sequential)")
    args = parser.parse_args()

    sender = Sender(args.threads)
    auth = f"{args.base_url}/client/{args.client_id}/authenticate"
    if sender.session.get(auth, params={"apikey": args.api_key}, timeout=TIMEOUT_S).status_code != HTTPStatus.OK:
        print("authentication failed", file=sys.stderr)
        sender.close()
        return 1
    try:
        load(sys.stdin.buffer, args.base_url, args.client_id, args.api_key, sender)
    finally:
        sender.close()
    if sender.failed:
        print(f"{sender.failed} requests were not answered 201", file=sys.stderr)
    return 1 if sender.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
