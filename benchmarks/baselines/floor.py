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

import fastjsonschema
import msgspec
import requests

POINTS_PER_REQUEST = 100
TIMEOUT_S = 60
_UTC = datetime.timezone.utc


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


def _utc_text(value: str) -> str:
    moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(_UTC)
    return moment.isoformat(" ", "seconds")[:19]


def main() -> int:
    """Load standard input; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="Import API base URL ending in /v2")
    parser.add_argument("--client-id", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--threads", type=int, default=1, help="sending threads (1: F1, sequential)")
    args = parser.parse_args()

    session = requests.Session()
    auth = f"{args.base_url}/client/{args.client_id}/authenticate"
    if session.get(auth, params={"apikey": args.api_key}, timeout=TIMEOUT_S).status_code != 200:  # noqa: PLR2004
        print("authentication failed", file=sys.stderr)
        return 1

    failed = [0]
    failed_lock = threading.Lock()
    headers = {"Content-Type": "application/json"}

    def post(http: requests.Session, url: str, body: bytes) -> None:
        if http.post(url, data=body, headers=headers, timeout=TIMEOUT_S).status_code != 201:  # noqa: PLR2004
            with failed_lock:
                failed[0] += 1

    work: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=2 * args.threads)

    def sender() -> None:
        with requests.Session() as http:
            while (job := work.get()) is not None:
                post(http, *job)

    workers = [threading.Thread(target=sender) for _ in range(args.threads if args.threads > 1 else 0)]
    for worker in workers:
        worker.start()

    def send(stream: Stream) -> None:
        body = b"[" + b",".join(stream.pending) + b"]"
        stream.pending = []
        if workers:
            work.put((stream.url, body))
        else:
            post(session, stream.url, body)

    decode = msgspec.json.Decoder(float_hook=decimal.Decimal).decode
    encode = msgspec.json.Encoder(decimal_format="number").encode
    streams: dict[str, Stream] = {}
    for line in sys.stdin.buffer:
        message = decode(line)
        kind = message["type"]
        if kind == "RECORD":
            stream = streams[message["stream"]]
            record = message["record"]
            stream.validate(record)
            point: dict[str, t.Any] = {"keys": stream.keys}
            for name, value in record.items():
                if name in stream.datetimes and type(value) is str:
                    point[name] = _utc_text(value)
                elif type(value) is dict or type(value) is list:
                    point[name] = encode(value).decode()
                else:
                    point[name] = value
            stream.pending.append(encode(point))
            if len(stream.pending) == POINTS_PER_REQUEST:
                send(stream)
        elif kind == "SCHEMA":
            url = f"{args.base_url}/client/{args.client_id}/table/{message['stream']}/data?apikey={args.api_key}"
            streams[message["stream"]] = Stream(message, url)
    for stream in streams.values():
        if stream.pending:
            send(stream)
    for _ in workers:
        work.put(None)
    for worker in workers:
        worker.join()
    if failed[0]:
        print(f"{failed[0]} requests were not answered 201", file=sys.stderr)
    return 1 if failed[0] else 0


if __name__ == "__main__":
    raise SystemExit(main())
