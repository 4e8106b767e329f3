"""How many 100-point pushes per second the local Import API accepts on loopback.

Run on purpose (not part of the test suite)::

    .venv/bin/python -m benchmarks.local_api_throughput [--threads 4] [--seconds 5]

Each scenario starts a fresh server (in-process, or as a ``rjmetrics-local-api serve``
subprocess so the client threads do not share its GIL), then N client threads push
100-point arrays over keep-alive ``requests`` sessions for a fixed time. Persisted scenarios
write to a data directory in a temporary directory and are checked afterwards: every 201
must be a stored row. Figures are printed beside the sandbox baseline of the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import requests

from target_rjmetrics.local_api import DEMO_API_KEY, DEMO_CLIENT_ID, LocalImportAPI
from tests.support.servers import ServerProcess

POINTS_PER_PUSH = 100


@dataclass
class Result:
    """Pushes of one scenario, and the rows stored (None in sandbox mode)."""

    name: str
    pushes: int
    errors: int
    seconds: float
    stored: int | None

    @property
    def pushes_per_s(self) -> float:
        """Accepted pushes per second."""
        return self.pushes / self.seconds

    @property
    def points_per_s(self) -> float:
        """Accepted points per second."""
        return self.pushes * POINTS_PER_PUSH / self.seconds


def _drive(base_url: str, threads: int, seconds: float) -> tuple[int, int, float]:
    """Push from ``threads`` sessions until ``seconds`` pass; return (201s, others, elapsed)."""
    counts = [0] * threads
    errors = [0] * threads
    start = threading.Barrier(threads + 1)
    deadline = [0.0]

    def worker(n: int) -> None:
        url = f"{base_url}/client/1/table/bench/data"
        with requests.Session() as session:
            start.wait()
            i = 0
            while time.monotonic() < deadline[0]:
                # Distinct keys per thread, so every accepted point is a new row.
                base = (n * 10_000_000) + i * POINTS_PER_PUSH
                body = [
                    {
                        "keys": ["id"],
                        "id": base + j,
                        "name": f"user {base + j}",
                        "score": j * 1.5,
                        "created_at": "2019-08-01 14:22:32",
                    }
                    for j in range(POINTS_PER_PUSH)
                ]
                r = session.post(url, params={"apikey": DEMO_API_KEY}, json=body, timeout=30)
                if r.status_code == HTTPStatus.CREATED:
                    counts[n] += 1
                else:
                    errors[n] += 1
                i += 1

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    began = time.monotonic()
    deadline[0] = began + seconds
    start.wait()
    for t in pool:
        t.join()
    return sum(counts), sum(errors), time.monotonic() - began


def in_process(name: str, threads: int, seconds: float, *, sandbox: bool, synchronous: str) -> Result:
    """Drive a server running in this process (sharing its GIL with the client threads)."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = None if sandbox else Path(tmp)
        with LocalImportAPI(data_dir=data_dir, sandbox=sandbox, synchronous=synchronous) as srv:
            pushes, errors, elapsed = _drive(srv.base_url, threads, seconds)
        # A stopped file-backed server reads its database file.
        stored = None if sandbox else sum(srv.tables(DEMO_CLIENT_ID).values())
    return Result(name, pushes, errors, elapsed, stored)


def subprocess_server(name: str, threads: int, seconds: float, *, sandbox: bool, synchronous: str) -> Result:
    """Drive ``rjmetrics-local-api serve`` running as a process of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        flags = ["--synchronous", synchronous, *(["--sandbox"] if sandbox else [])]
        server = ServerProcess(Path(tmp), *flags, data_dir=None if sandbox else Path(tmp) / "d")
        server.start(timeout=30)
        try:
            pushes, errors, elapsed = _drive(server.base_url, threads, seconds)
        finally:
            server.stop()
        stored = None if sandbox else sum(server.tables(DEMO_CLIENT_ID).values())
    return Result(name, pushes, errors, elapsed, stored)


def main() -> int:
    """Run every scenario; exit code 1 if a persisted one stored other than what was accepted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-subprocess", action="store_true", help="skip subprocess scenarios")
    args = parser.parse_args()

    scenarios = [
        ("in-process sandbox", in_process, True, "full"),
        ("in-process persisted, synchronous=full", in_process, False, "full"),
        ("in-process persisted, synchronous=normal", in_process, False, "normal"),
    ]
    if not args.no_subprocess:
        scenarios += [
            ("subprocess sandbox", subprocess_server, True, "full"),
            ("subprocess persisted, synchronous=full", subprocess_server, False, "full"),
            ("subprocess persisted, synchronous=normal", subprocess_server, False, "normal"),
        ]
    print(
        f"{args.threads} client threads, {POINTS_PER_PUSH}-point pushes, {args.seconds:g} s each, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    results: list[Result] = []
    for name, run, sandbox, sync in scenarios:
        result = run(name, args.threads, args.seconds, sandbox=sandbox, synchronous=sync)
        results.append(result)
        baseline = next(r for r in results if r.name.split()[0] == name.split()[0])
        stored = "" if result.stored is None else f", {result.stored} rows stored"
        ok = "" if result.stored in (None, result.pushes * POINTS_PER_PUSH) else "  MISMATCH"
        print(
            f"{name:<42} {result.pushes_per_s:8.0f} pushes/s {result.points_per_s:10.0f} points/s"
            f"  ({result.pushes_per_s / baseline.pushes_per_s:4.2f}x sandbox; "
            f"{result.errors} non-201{stored}){ok}"
        )
    return 0 if all(r.stored in (None, r.pushes * POINTS_PER_PUSH) for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
