"""CPU per request: one fixed body POSTed N times, through the target's client or a baseline.

Three ways of sending the same 100-point body to ``table/bench_points/data``, one at a time on
one connection, 201 expected:

- ``client``: ``target_rjmetrics.client.RJMetricsClient.push()`` (the target's path for every
  request: its transport, watchdog, retries and answer checks);
- ``session``: a plain ``requests.Session().post`` loop (what most Python senders do);
- ``http.client``: a raw ``http.client.HTTPConnection`` loop (the least Python can do).

Start-up (imports, the first connection) is left out: ``--warm-up`` requests go first, then
``time.process_time()`` (every thread of the process, so the client's watchdog too) and the
wall clock are read around ``--requests`` more. Prints one JSON line: ``{"way", "requests",
"cpu_s", "wall_s", "body_bytes"}``. Exit code 1 if any request was not answered 201.

    python benchmarks/baselines/push_loop.py --way client --base-url URL --client-id 1 --api-key KEY
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
import typing as t
from http import HTTPStatus
from urllib.parse import quote, urlsplit

WAYS = ("client", "session", "http.client")
TABLE = "bench_points"
POINTS = 100
TIMEOUT_S = 60
_HEADERS = {"Content-Type": "application/json"}


def body() -> bytes:
    """The fixed body: 100 data points shaped like the benchmark's orders (~30 KiB)."""
    points = [
        {
            "keys": ["id"],
            "id": i,
            "user_id": 1000 + i % 37,
            "status": ("new", "paid", "shipped", "returned")[i % 4],
            "amount": f"{i * 7.31:.2f}",
            "currency": "EUR",
            "created_at": f"2024-03-{1 + i % 28:02d} 12:{i % 60:02d}:00",
            "note": "x" * (40 + i % 50),
            "lines": json.dumps([{"sku": f"SKU-{i}-{j}", "qty": j + 1} for j in range(2)]),
        }
        for i in range(POINTS)
    ]
    return json.dumps(points).encode()


def _client_sender(base_url: str, client_id: int, api_key: str) -> t.Callable[[bytes], None]:
    from target_rjmetrics.client import RJMetricsClient  # noqa: PLC0415 (only this way pays for it)

    client = RJMetricsClient(client_id=client_id, api_key=api_key, base_url=base_url)

    def send(data: bytes) -> None:
        client.push(TABLE, data)  # raises unless answered 201

    return send


def _session_sender(base_url: str, client_id: int, api_key: str) -> t.Callable[[bytes], None]:
    import requests  # noqa: PLC0415 (only this way pays for it)

    session = requests.Session()
    url = f"{base_url}/client/{client_id}/table/{TABLE}/data"
    params = {"apikey": api_key}

    def send(data: bytes) -> None:
        status = session.post(url, params=params, data=data, headers=_HEADERS, timeout=TIMEOUT_S).status_code
        if status != HTTPStatus.CREATED:
            msg = f"answered {status}"
            raise RuntimeError(msg)

    return send


def _raw_sender(base_url: str, client_id: int, api_key: str) -> t.Callable[[bytes], None]:
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.hostname is None:
        msg = "the http.client way speaks plain HTTP to a local server only"
        raise ValueError(msg)
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=TIMEOUT_S)
    path = f"{parts.path}/client/{client_id}/table/{TABLE}/data?apikey={quote(api_key, safe='')}"

    def send(data: bytes) -> None:
        connection.request("POST", path, data, _HEADERS)
        answer = connection.getresponse()
        answer.read()
        if answer.status != HTTPStatus.CREATED:
            msg = f"answered {answer.status}"
            raise RuntimeError(msg)

    return send


def main() -> int:
    """Send the body ``--warm-up`` + ``--requests`` times; print the timed part as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--way", choices=WAYS, required=True)
    parser.add_argument("--base-url", required=True, help="Import API base URL ending in /v2")
    parser.add_argument("--client-id", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests (default 2000)")
    parser.add_argument("--warm-up", type=int, default=200, help="untimed requests first (default 200)")
    args = parser.parse_args()

    makers = {"client": _client_sender, "session": _session_sender, "http.client": _raw_sender}
    send = makers[args.way](args.base_url, args.client_id, args.api_key)
    data = body()
    try:
        for _ in range(args.warm_up):
            send(data)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.requests):
            send(data)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    except Exception as exc:  # noqa: BLE001 (any failure ends the measurement, said on stderr)
        print(f"{args.way}: {exc}", file=sys.stderr)
        return 1
    result = {"way": args.way, "requests": args.requests, "cpu_s": cpu, "wall_s": wall, "body_bytes": len(data)}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
