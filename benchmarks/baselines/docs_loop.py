"""Baseline A: the Import API docs' ``sync_user`` loop, one POST per record.

What a user without this project writes after reading the docs: authenticate once, then for
each record set ``keys`` and push a one-element list, the way RJMetrics-py's ``push_data``
does it (a bare ``requests.post`` per call, so no connection reuse, no timeout, no retry).
It reads Singer messages from standard input and sends each stream's records to the table
of the same name; SCHEMA gives the keys, STATE is ignored, values are sent as the tap wrote
them. Exit code 1 if any push was not answered 201.

    python benchmarks/baselines/docs_loop.py --base-url URL --client-id 1 --api-key KEY < input.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from http import HTTPStatus

import requests


def main() -> int:
    """Load standard input; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="Import API base URL ending in /v2")
    parser.add_argument("--client-id", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()

    headers = {"Content-Type": "application/json"}
    auth = f"{args.base_url}/client/{args.client_id}/authenticate?apikey={args.api_key}"
    if requests.get(auth, headers=headers).status_code != HTTPStatus.OK:  # client.authenticate()
        print("authentication failed", file=sys.stderr)
        return 1

    keys: dict[str, list[str]] = {}
    failed = 0
    for line in sys.stdin:
        message = json.loads(line)
        kind = message["type"]
        if kind == "SCHEMA":
            keys[message["stream"]] = list(message.get("key_properties") or [])
        elif kind == "RECORD":
            table = message["stream"]
            user = message["record"]
            user["keys"] = keys[table]  # sync_user: user["keys"] = ["id"]
            url = f"{args.base_url}/client/{args.client_id}/table/{table}/data?apikey={args.api_key}"
            response = requests.post(url, data=json.dumps([user]), headers=headers)
            if response.status_code != HTTPStatus.CREATED:
                failed += 1
    if failed:
        print(f"{failed} pushes were not answered 201", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
