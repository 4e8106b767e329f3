"""Baseline B: sequential requests of 100 points, as the official client libraries send them.

RJMetrics-py's ``push_data`` (and the other four clients) chunk data into requests of at most
100 points and send them one after another with a bare ``requests.post`` (no session, no
timeout, no retry). This script reads Singer messages from standard input, gathers each
stream's records with ``keys`` set, and pushes a stream's chunk as soon as it holds 100
points (the rest at the end of input), so memory stays flat and later versions of a key
always follow earlier ones. SCHEMA gives the keys, STATE is ignored, values are sent as the
tap wrote them. Exit code 1 if any push was not answered 201.

    python benchmarks/baselines/official_client.py --base-url URL --client-id 1 --api-key KEY < input.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from http import HTTPStatus
from typing import Any

import requests

BATCH_SIZE = 100  # RJMetrics-py Client._BATCH_SIZE


def _authenticate(base_url: str, client_id: int, api_key: str, headers: dict[str, str]) -> bool:
    """``client.authenticate()``."""
    auth = f"{base_url}/client/{client_id}/authenticate?apikey={api_key}"
    return requests.get(auth, headers=headers).status_code == HTTPStatus.OK


def _post(url: str, data: list[dict[str, Any]], headers: dict[str, str]) -> int:
    """``client.push_data()`` of one chunk: a bare ``requests.post``; return the status."""
    return requests.post(url, data=json.dumps(data), headers=headers).status_code


def main() -> int:
    """Load standard input; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="Import API base URL ending in /v2")
    parser.add_argument("--client-id", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()

    headers = {"Content-Type": "application/json"}
    if not _authenticate(args.base_url, args.client_id, args.api_key, headers):
        print("authentication failed", file=sys.stderr)
        return 1

    failed = 0

    def push_data(table: str, data: list[dict[str, Any]]) -> None:
        nonlocal failed
        url = f"{args.base_url}/client/{args.client_id}/table/{table}/data?apikey={args.api_key}"
        failed += _post(url, data, headers) != HTTPStatus.CREATED

    keys: dict[str, list[str]] = {}
    pending: dict[str, list[dict[str, Any]]] = {}
    for line in sys.stdin:
        message = json.loads(line)
        kind = message["type"]
        if kind == "SCHEMA":
            keys[message["stream"]] = list(message.get("key_properties") or [])
        elif kind == "RECORD":
            table = message["stream"]
            point = message["record"]
            point["keys"] = keys[table]
            chunk = pending.setdefault(table, [])
            chunk.append(point)
            if len(chunk) == BATCH_SIZE:
                push_data(table, chunk)
                pending[table] = []
    for table, chunk in pending.items():
        if chunk:
            push_data(table, chunk)
    if failed:
        print(f"{failed} pushes were not answered 201", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
