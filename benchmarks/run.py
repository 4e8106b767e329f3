"""Throughput of target-rjmetrics against the alternatives a user has, in one run.

Run on purpose from the repository root (not part of the test suite)::

    .venv/bin/python benchmarks/run.py                 # sizes 10k and 1M, ~20 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --quick         # sizes 2k and 20k, short caps, ~3 minutes
    .venv/bin/python benchmarks/run.py --profile 100k  # target-rjmetrics once under cProfile

It generates deterministic Singer input once per size (cached in a temporary directory),
starts the local Import API as a subprocess (its own process, so it does not share a GIL with
what it measures) in sandbox mode, and runs every contestant as a subprocess reading the same
file on standard input:

- A: the docs' ``sync_user`` loop, one POST per record (``baselines/docs_loop.py``);
- B: sequential requests of 100, as the official clients send them (``baselines/official_client.py``);
- C: a do-nothing Singer SDK target, the floor of any SDK target (``baselines/null_target.py``);
- D: target-rjmetrics with its defaults, and with ``max_concurrent_requests`` 1, 4 and 16;

each at 0 ms and at 50 ms of server latency (set with ``PUT /_local/faults``). Wall time,
CPU seconds and peak RSS come from ``os.wait4`` on each child. Slow contestants are measured
on a prefix of the input sized to fit ``--max-seconds`` and marked so. Every figure is
printed beside the baselines measured in the same run; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import pstats
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
BASELINES = Path(__file__).resolve().parent / "baselines"
PY = sys.executable
CLIENT_ID = 1
API_KEY = "local-demo-key"  # the local server's public demo key
LATENCIES_MS = (0, 50)
GENERATOR_VERSION = 1
SEED = 20240605
STATE_EVERY = 1000
MIN_PREFIX = 200
CLK_TCK = os.sysconf("SC_CLK_TCK")

# --------------------------------------------------------------------------------------
# Input


STREAMS: dict[str, dict[str, Any]] = {
    "users": {
        "key_properties": ["id"],
        "schema": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "email": {"type": "string"},
                "name": {"type": ["string", "null"]},
                "acquisition_source": {"type": ["string", "null"]},
                "is_active": {"type": "boolean"},
                "balance": {"type": "number"},
                "lifetime_value": {"type": ["number", "null"]},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": ["string", "null"], "format": "date-time"},
                "address": {
                    "type": ["object", "null"],
                    "properties": {
                        "city": {"type": "string"},
                        "zip": {"type": ["string", "null"]},
                        "country": {"type": "string"},
                    },
                },
                "rev": {"type": "integer"},
            },
        },
    },
    "orders": {
        "key_properties": ["id"],
        "schema": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "user_id": {"type": "integer"},
                "status": {"type": "string"},
                "amount": {"type": "number"},
                "tax": {"type": ["number", "null"]},
                "currency": {"type": "string"},
                "items": {"type": "integer"},
                "gift": {"type": ["boolean", "null"]},
                "note": {"type": ["string", "null"]},
                "ordered_at": {"type": "string", "format": "date-time"},
                "shipped_at": {"type": ["string", "null"], "format": "date-time"},
                "rev": {"type": "integer"},
            },
        },
    },
    "events": {
        "key_properties": ["session_id", "seq"],
        "schema": {
            "type": "object",
            "properties": {
                "session_id": {"type": "string"},
                "seq": {"type": "integer"},
                "user_id": {"type": ["integer", "null"]},
                "type": {"type": "string"},
                "occurred_at": {"type": "string", "format": "date-time"},
                "value": {"type": ["number", "null"]},
                "properties": {
                    "type": "object",
                    "properties": {
                        "page": {"type": "string"},
                        "referrer": {"type": ["string", "null"]},
                        "duration_ms": {"type": "integer"},
                    },
                },
                "rev": {"type": "integer"},
            },
        },
    },
}

_OFFSETS = [("Z", 0), ("+00:00", 0), ("-05:00", -5 * 3600), ("+02:00", 2 * 3600), ("+05:30", 5 * 3600 + 1800)]
_EPOCH_2019 = 1_546_300_800
_UTC = datetime.timezone.utc
_LONG = "__LONG_DECIMAL__"


def _when(rng: random.Random) -> str:
    """A date-time string with an offset, sometimes with fractions of a second."""
    suffix, shift = _OFFSETS[rng.randrange(len(_OFFSETS))]
    moment = datetime.datetime.fromtimestamp(_EPOCH_2019 + rng.randrange(3 * 365 * 86400) + shift, _UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if rng.random() < 0.3:
        text += f".{rng.randrange(1_000_000):06d}"
    return text + suffix


def generate(path: Path, n: int) -> None:
    """Write ``n`` RECORD messages over three streams, with SCHEMAs first and a STATE every 1,000.

    About 20% users (each id updated ~3 times, spread over the file), 45% orders (a third are
    status updates of a recent order) and 35% events (composite key, ~1.5 versions per key).
    Every record carries ``rev``, its key's version number, so a check can see which version landed.
    """
    rng = random.Random(SEED)
    user_pool = max(20, n // 15)
    sessions = max(5, n * 35 // 100 // 75)
    revs: dict[tuple[Any, ...], int] = {}
    orders: list[int] = []
    next_order = 1
    cities = ["Philadelphia", "New York", "Zürich", "São Paulo", "Tokyo", "Berlin", "Austin"]
    sources = ["PPC", "Organic", "Referral", "Email", None]
    statuses = ["pending", "paid", "shipped", "complete", "refunded"]
    kinds = ["page_view", "click", "signup", "purchase", "search"]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for stream, spec in STREAMS.items():
            out.write(json.dumps({"type": "SCHEMA", "stream": stream, **spec}) + "\n")
        for i in range(1, n + 1):
            roll = rng.random()
            if roll < 0.20:
                uid = rng.randrange(1, user_pool + 1)
                rev = revs[("users", uid)] = revs.get(("users", uid), 0) + 1
                record: dict[str, Any] = {
                    "id": uid,
                    "email": f"user{uid}@example.com",
                    "name": None if rng.random() < 0.1 else f"User {uid} Ñame",
                    "acquisition_source": sources[rng.randrange(len(sources))],
                    "is_active": rng.random() < 0.8,
                    "balance": round(rng.uniform(0, 5000), 2),
                    "lifetime_value": _LONG if rng.random() < 0.9 else None,
                    "created_at": _when(rng),
                    "updated_at": _when(rng) if rng.random() < 0.8 else None,
                    "address": None if rng.random() < 0.1 else {
                        "city": cities[rng.randrange(len(cities))],
                        "zip": f"{rng.randrange(100000):05d}" if rng.random() < 0.9 else None,
                        "country": "US",
                    },
                    "rev": rev,
                }
                stream = "users"
            elif roll < 0.65:
                if orders and rng.random() < 0.35:
                    oid = orders[-1 - rng.randrange(min(len(orders), 5000))]
                else:
                    oid = next_order
                    next_order += 1
                    orders.append(oid)
                rev = revs[("orders", oid)] = revs.get(("orders", oid), 0) + 1
                amount = round(rng.uniform(1, 900), 2)
                record = {
                    "id": oid,
                    "user_id": rng.randrange(1, user_pool + 1),
                    "status": statuses[min(rev - 1, len(statuses) - 1)],
                    "amount": amount,
                    "tax": round(amount * 0.0825, 4) if rng.random() < 0.8 else None,
                    "currency": "USD",
                    "items": rng.randrange(1, 12),
                    "gift": None if rng.random() < 0.2 else rng.random() < 0.1,
                    "note": None if rng.random() < 0.7 else "leave at the door, \"please\"",
                    "ordered_at": _when(rng),
                    "shipped_at": _when(rng) if rev > 2 else None,
                    "rev": rev,
                }
                stream = "orders"
            else:
                sid = f"s{rng.randrange(sessions):07d}"
                seq = rng.randrange(75)
                rev = revs[("events", sid, seq)] = revs.get(("events", sid, seq), 0) + 1
                record = {
                    "session_id": sid,
                    "seq": seq,
                    "user_id": None if rng.random() < 0.3 else rng.randrange(1, user_pool + 1),
                    "type": kinds[rng.randrange(len(kinds))],
                    "occurred_at": _when(rng),
                    "value": round(rng.uniform(0, 100), 3) if rng.random() < 0.5 else None,
                    "properties": {
                        "page": f"/p/{rng.randrange(500)}",
                        "referrer": None if rng.random() < 0.5 else "https://example.com/?q=a&b=c",
                        "duration_ms": rng.randrange(60_000),
                    },
                    "rev": rev,
                }
                stream = "events"
            line = json.dumps({"type": "RECORD", "stream": stream, "record": record}, ensure_ascii=False)
            if stream == "users" and record["lifetime_value"] == _LONG:
                # A decimal longer than a float holds, written as the JSON number a tap would send.
                line = line.replace(f'"{_LONG}"', f"{rng.randrange(10**11)}.{rng.randrange(10**9):09d}", 1)
            out.write(line + "\n")
            if i % STATE_EVERY == 0 or i == n:
                state = {"bookmarks": {"orders": {"last_id": next_order - 1}}, "records": i}
                out.write(json.dumps({"type": "STATE", "value": state}) + "\n")
    tmp.replace(path)


def input_file(cache: Path, n: int) -> Path:
    """The cached Singer file of ``n`` records, generated on first use."""
    path = cache / f"singer-v{GENERATOR_VERSION}-{n}.jsonl"
    if not path.exists():
        began = time.monotonic()
        print(f"  generating {n:,} records into {path} ...", flush=True)
        generate(path, n)
        print(f"  generated in {time.monotonic() - began:.1f} s ({path.stat().st_size / 2**20:.1f} MiB)", flush=True)
    return path


def prefix_file(full: Path, records: int) -> Path:
    """The first ``records`` RECORD messages of ``full`` (with the SCHEMAs and STATEs among them)."""
    path = full.with_name(f"{full.stem}-first-{records}.jsonl")
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    seen = 0
    with full.open(encoding="utf-8") as src, tmp.open("w", encoding="utf-8") as out:
        for line in src:
            if seen == records and not line.startswith('{"type": "STATE"'):
                break
            out.write(line)
            if line.startswith('{"type": "RECORD"'):
                seen += 1
    tmp.replace(path)
    return path


def describe_input(path: Path, window: int = 3) -> str:
    """Records, distinct keys, and how often a request of 100 shares a key with the few before it.

    A sender that keeps each key's versions in order (as target-rjmetrics does) cannot send a
    request while an earlier one holding the same key is in flight, so this share bounds how
    much concurrency helps on this input.
    """
    keys = {name: spec["key_properties"] for name, spec in STREAMS.items()}
    seen: dict[str, set[tuple[Any, ...]]] = {name: set() for name in STREAMS}
    current: dict[str, set[tuple[Any, ...]]] = {name: set() for name in STREAMS}
    recent: dict[str, list[set[tuple[Any, ...]]]] = {name: [] for name in STREAMS}
    records = batches = sharing = 0

    def close(stream: str) -> None:
        nonlocal batches, sharing
        batch = current[stream]
        batches += 1
        sharing += any(batch & earlier for earlier in recent[stream])
        recent[stream] = [*recent[stream][-(window - 1):], batch]
        current[stream] = set()

    with path.open(encoding="utf-8") as src:
        for line in src:
            if line.startswith('{"type": "RECORD"'):
                message = json.loads(line)
                stream, record = message["stream"], message["record"]
                key = tuple(record[k] for k in keys[stream])
                records += 1
                seen[stream].add(key)
                current[stream].add(key)
                if len(current[stream]) == 100:
                    close(stream)
    for stream in STREAMS:
        if current[stream]:
            close(stream)
    distinct = sum(len(v) for v in seen.values())
    return (f"{records:,} records, {distinct:,} distinct keys ({records / distinct:.2f} versions per key); "
            f"{sharing / batches:.0%} of requests of 100 share a key with one of the {window} before them "
            "in their stream")


def last_state(path: Path) -> Any:
    """The value of the last STATE message of a Singer file."""
    value = None
    with path.open(encoding="utf-8") as src:
        for line in src:
            if line.startswith('{"type": "STATE"'):
                value = json.loads(line)["value"]
    return value


# --------------------------------------------------------------------------------------
# The local server


class Server:
    """``rjmetrics-local-api serve`` in its own process, on a free port."""

    def __init__(self, workdir: Path, *, sandbox: bool) -> None:
        self.sandbox = sandbox
        ready = workdir / f"ready-{os.getpid()}-{time.monotonic_ns()}"
        args = [PY, "-m", "target_rjmetrics.local_api", "serve", "--port", "0", "--ready-file", str(ready)]
        args += ["--sandbox"] if sandbox else ["--in-memory"]
        self._stderr = (workdir / "server.stderr").open("ab")
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=self._stderr)
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                msg = f"the local server did not start (see {workdir / 'server.stderr'})"
                raise RuntimeError(msg)
            time.sleep(0.02)
        port = int(ready.read_text().split()[0])
        self.root = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.root}/v2"
        self.http = requests.Session()

    def set_latency(self, ms: float) -> None:
        r = self.http.put(f"{self.root}/_local/faults", json={"latency_ms": ms}, timeout=10)
        r.raise_for_status()

    def log(self) -> list[dict[str, Any]]:
        r = self.http.get(f"{self.root}/_local/requests", timeout=60)
        r.raise_for_status()
        return r.json()

    def clear_log(self) -> None:
        self.http.delete(f"{self.root}/_local/requests", timeout=60).raise_for_status()

    def rows(self, table: str) -> list[dict[str, Any]]:
        r = self.http.get(f"{self.root}/_local/tables/{CLIENT_ID}/{table}/rows", params={"format": "json"}, timeout=60)
        r.raise_for_status()
        return r.json()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


# --------------------------------------------------------------------------------------
# Contestants


@dataclass(frozen=True)
class Contestant:
    name: str
    label: str
    command: Callable[[Server, Path], list[str]]
    #: Highest rate (records/s) it could reach at a latency, to size a first prefix; None: no cap.
    model_rate: Callable[[float], float | None]
    #: Sends HTTP (C does not, so its 0 ms run stands for 50 ms too).
    http: bool = True
    #: Always measured on the whole input at 0 ms (the C and memory goals need full runs).
    full_at_0ms: bool = False
    #: Sends exactly one point per record (A, B); D merges repeated keys within a request.
    one_point_per_record: bool = False
    writes_state: bool = False


def _baseline_cmd(script: str) -> Callable[[Server, Path], list[str]]:
    def command(server: Server, _workdir: Path) -> list[str]:
        return [PY, str(BASELINES / script), "--base-url", server.base_url,
                "--client-id", str(CLIENT_ID), "--api-key", API_KEY]
    return command


def _null_cmd(_server: Server, workdir: Path) -> list[str]:
    config = workdir / "null-config.json"
    config.write_text("{}")
    return [PY, str(BASELINES / "null_target.py"), "--config", str(config)]


def target_config(server: Server, workdir: Path, concurrency: int | None) -> Path:
    config: dict[str, Any] = {"client_id": CLIENT_ID, "api_key": API_KEY, "api_url": server.base_url}
    if concurrency is not None:
        config["max_concurrent_requests"] = concurrency
    path = workdir / f"target-config-{concurrency or 'default'}.json"
    path.write_text(json.dumps(config))
    return path


def _target_cmd(concurrency: int | None) -> Callable[[Server, Path], list[str]]:
    def command(server: Server, workdir: Path) -> list[str]:
        return [PY, "-m", "target_rjmetrics", "--config", str(target_config(server, workdir, concurrency))]
    return command


def _per_request(points: int, in_flight: int) -> Callable[[float], float | None]:
    def rate(latency_ms: float) -> float | None:
        if latency_ms <= 0:
            return 200.0 if points == 1 else None  # A: a new connection per request, ~5 ms
        return points * in_flight * 1000.0 / latency_ms
    return rate


CONTESTANTS = [
    Contestant("A", "A docs loop, 1/request", _baseline_cmd("docs_loop.py"), _per_request(1, 1),
               one_point_per_record=True),
    Contestant("B", "B official client, 100 seq.", _baseline_cmd("official_client.py"), _per_request(100, 1),
               one_point_per_record=True),
    Contestant("C", "C null SDK target", _null_cmd, lambda _ms: None, http=False, full_at_0ms=True),
    Contestant("D", "D target-rjmetrics default", _target_cmd(None), _per_request(100, 4),
               full_at_0ms=True, writes_state=True),
    Contestant("D1", "D max_concurrent_requests=1", _target_cmd(1), _per_request(100, 1), writes_state=True),
    Contestant("D4", "D max_concurrent_requests=4", _target_cmd(4), _per_request(100, 4), writes_state=True),
    Contestant("D16", "D max_concurrent_requests=16", _target_cmd(16), _per_request(100, 16), writes_state=True),
]


# --------------------------------------------------------------------------------------
# Measuring


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


@dataclass
class Result:
    contestant: Contestant
    latency_ms: float
    size: int
    records: int
    wall: float = 0.0
    cpu: float = 0.0
    rss_mib: float = 0.0
    server_cpu: float = 0.0
    others_cores: float = 0.0
    exit_code: int = 0
    points: int = 0
    requests: int = 0
    refused: int = 0
    problems: list[str] = field(default_factory=list)
    reused_from_0ms: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def rate(self) -> float:
        return self.records / self.wall if self.wall else 0.0

    @property
    def prefix(self) -> bool:
        return self.records < self.size


# Contestants are started by this small launcher process, not by run.py itself. On Linux a
# child's ru_maxrss starts from the high-water RSS of the memory image it replaced at exec,
# which for a (v)fork of run.py is run.py's own (over 100 MiB once it has generated 1M
# records): every child would report at least that. The launcher stays at ~10 MiB.
_LAUNCHER = r"""
import json, os, signal, subprocess, sys, threading, time
for line in sys.stdin:
    job = json.loads(line)
    with open(job["stdin"], "rb") as fin, open(job["stdout"], "wb") as fout, open(job["stderr"], "wb") as ferr:
        began = time.perf_counter()
        proc = subprocess.Popen(job["cmd"], cwd=job["cwd"], env=job["env"], stdin=fin, stdout=fout, stderr=ferr)
        reaped = threading.Event()
        def kill():
            if not reaped.is_set():
                os.kill(proc.pid, signal.SIGKILL)
        timer = threading.Timer(job["timeout"], kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            reaped.set()
            timer.cancel()
        wall = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    print(json.dumps([proc.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024]), flush=True)
"""


class Launcher:
    """Runs each contestant and reports what ``os.wait4`` said about it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([PY, "-I", "-S", "-c", _LAUNCHER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.lock = threading.Lock()

    def run(self, cmd: list[str], stdin_path: Path, stdout_path: Path, stderr_path: Path,
            hard_timeout: float) -> tuple[int, float, float, float]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_RJMETRICS_")}
        job = {"cmd": cmd, "cwd": str(REPO), "env": env, "stdin": str(stdin_path), "stdout": str(stdout_path),
               "stderr": str(stderr_path), "timeout": hard_timeout}
        with self.lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None  # noqa: S101
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
        if not answer:
            msg = "the launcher process died"
            raise RuntimeError(msg)
        code, wall, cpu, rss = json.loads(answer)
        return int(code), float(wall), float(cpu), float(rss)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


_launcher: Launcher | None = None


def run_child(cmd: list[str], stdin_path: Path, stdout_path: Path, stderr_path: Path,
              hard_timeout: float) -> tuple[int, float, float, float]:
    """Run ``cmd`` on a file; return (exit code, wall s, user+sys CPU s, peak RSS MiB) from wait4."""
    global _launcher  # noqa: PLW0603 (one launcher per run, started while run.py is small)
    if _launcher is None:
        _launcher = Launcher()
    return _launcher.run(cmd, stdin_path, stdout_path, stderr_path, hard_timeout)


def measure(contestant: Contestant, server: Server, workdir: Path, full: Path, size: int,
            records: int, latency_ms: float, hard_timeout: float) -> Result:
    source = full if records >= size else prefix_file(full, records)
    result = Result(contestant, latency_ms, size, min(records, size))
    server.clear_log()
    out = workdir / f"{contestant.name}-{latency_ms:g}ms-{size}.stdout"
    err = out.with_suffix(".stderr")
    server_cpu = server.cpu_seconds()
    busy = _busy_seconds()
    own = time.process_time()
    code, wall, cpu, rss = run_child(contestant.command(server, workdir), source, out, err, hard_timeout)
    result.wall, result.cpu, result.rss_mib, result.exit_code = wall, cpu, rss, code
    result.server_cpu = server.cpu_seconds() - server_cpu
    others = (_busy_seconds() - busy) - cpu - result.server_cpu - (time.process_time() - own)
    result.others_cores = max(0.0, others / wall)
    if code != 0:
        tail = err.read_text(errors="replace").strip().splitlines()[-3:]
        result.problems.append(f"exit code {code}: " + " | ".join(tail))
    if contestant.http:
        for entry in server.log():
            if entry["method"] != "POST":
                continue
            result.requests += 1
            if entry["status"] == 201:
                result.points += entry["points"] or 0
            else:
                result.refused += 1
        if result.points > result.records or result.points == 0:
            result.problems.append(f"{result.points} points accepted for {result.records} records")
        if contestant.one_point_per_record and result.points != result.records:
            result.problems.append(f"{result.points} points accepted for {result.records} records")
    if contestant.writes_state and code == 0:
        lines = out.read_text().strip().splitlines()
        expected = last_state(source)
        if expected is not None and (not lines or json.loads(lines[-1]) != expected):
            result.problems.append("the last STATE written is not the input's last STATE")
    return result


def plan(contestant: Contestant, latency_ms: float, size: int, max_seconds: float,
         history: dict[tuple[str, float], float], startup: float) -> int:
    """Records to measure: the whole input, or a prefix expected to take about ``max_seconds``.

    The rate is the contestant's steady rate at this latency on a smaller input of this run,
    else the most its request pattern allows (``model_rate``).
    """
    if contestant.full_at_0ms and latency_ms == 0:
        return size
    rate = history.get((contestant.name, latency_ms)) or contestant.model_rate(latency_ms)
    budget = max(max_seconds - startup, max_seconds / 2)
    if rate is None or rate * budget >= size:
        return size
    wanted = max(MIN_PREFIX, int(rate * budget))
    digits = len(str(wanted)) - 2
    return min(size, max(MIN_PREFIX, wanted // 10**digits * 10**digits if digits > 0 else wanted))


# --------------------------------------------------------------------------------------
# Correctness pass (persisting server): every key's last version landed


def expected_rows(path: Path) -> dict[str, dict[tuple[Any, ...], int]]:
    keys = {name: spec["key_properties"] for name, spec in STREAMS.items()}
    expected: dict[str, dict[tuple[Any, ...], int]] = {name: {} for name in STREAMS}
    with path.open(encoding="utf-8") as src:
        for line in src:
            if line.startswith('{"type": "RECORD"'):
                message = json.loads(line)
                record = message["record"]
                stream = message["stream"]
                expected[stream][tuple(record[k] for k in keys[stream])] = record["rev"]
    return expected


def check_landed(contestants: list[Contestant], full: Path, workdir: Path) -> list[str]:
    """Run each contestant against a persisting in-memory server; compare rows with the input."""
    lines = []
    for contestant in contestants:
        records = 1000 if contestant.name == "A" else sum(1 for line in full.open() if '"RECORD"' in line[:20])
        source = prefix_file(full, records) if contestant.name == "A" else full
        expected = expected_rows(source)
        server = Server(workdir, sandbox=False)
        try:
            cmd = contestant.command(server, workdir)
            code, wall, _, _ = run_child(cmd, source, workdir / "check.stdout", workdir / "check.stderr", 600)
            faults = []
            if code != 0:
                faults.append(f"exit code {code}")
            total = 0
            for stream, want in expected.items():
                key_names = STREAMS[stream]["key_properties"]
                rows = server.rows(stream) if want else []
                total += len(rows)
                got = {tuple(r[k] for k in key_names): r.get("rev") for r in rows}
                if len(rows) != len(want):
                    faults.append(f"{stream}: {len(rows)} rows, {len(want)} keys in input")
                stale = sum(1 for k, rev in want.items() if got.get(k) != rev)
                if stale:
                    faults.append(f"{stream}: {stale} keys without their last version")
        finally:
            server.stop()
        verdict = "ok" if not faults else "WRONG: " + "; ".join(faults)
        lines.append(f"  {contestant.label:<30} {records:>9,} records -> {total:,} rows, "
                     f"each key at its last version: {verdict} ({wall:.1f} s)")
    return lines


# --------------------------------------------------------------------------------------
# Report


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 10k, 1M, 5000)")
    return int(float(match[1]) * {"": 1, "k": 1000, "m": 1_000_000}[match[2].lower()])


def human(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def machine_info() -> list[str]:
    cpu_model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "target_rjmetrics"], cwd=REPO,
                               capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    state = f"{commit}" + (" + uncommitted changes in target_rjmetrics/" if dirty else "")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"date        {datetime.datetime.now(_UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"machine     {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {cpu_model}, "
        f"{platform.system()} {platform.release()}",
        f"python      {platform.python_implementation()} {platform.python_version()}; "
        f"singer-sdk {metadata.version('singer-sdk')}; requests {metadata.version('requests')}; "
        f"target-rjmetrics {metadata.version('target-rjmetrics')} at {state}",
        f"load avg    {load} (1/5/15 min) at start",
    ]


def ratio(a: Result, b: Result | None) -> str:
    if b is None or not b.ok or not a.ok or not b.rate:
        return "-"
    value = a.rate / b.rate
    return f"{value:.0f}x" if value >= 100 else f"{value:.2f}x"


def steady_rate(r: Result, startup: dict[str, float]) -> float | None:
    """Records per second once started: the run's wall time minus the contestant's start-up."""
    begin = startup.get(r.contestant.name, 0.0)
    if not r.ok or not begin or r.wall - begin < max(0.5, 0.25 * r.wall):
        return None  # start-up is most of the run: the difference would be noise
    return (r.records - 1) / (r.wall - begin)


def table(results: list[Result], startup: dict[str, float]) -> list[str]:
    by_key = {(r.contestant.name, r.latency_ms, r.size): r for r in results}
    head = (f"{'contestant':<30} {'lat':>5} {'size':>5} {'measured on':<20} {'records/s':>10} {'(steady)':>9} "
            f"{'vs A':>6} {'vs B':>6} {'vs C':>6} {'CPU s':>7} {'RSS MiB':>8} {'srv CPU':>8} {'others':>6}")
    lines = [head, "-" * len(head)]
    previous = None
    for r in results:
        group = (r.latency_ms, r.size)
        if previous is not None and group != previous:
            lines.append("")
        previous = group
        name, lat, size = r.contestant.name, r.latency_ms, r.size
        if r.reused_from_0ms:
            measured = "= 0 ms run (no HTTP)"
        elif r.prefix:
            measured = f"prefix {r.records:,}"
        else:
            measured = "all"
        rate = f"{r.rate:,.0f}" if r.ok else "FAILED"
        steady = steady_rate(r, startup)
        steady_text = f"{steady:,.0f}" if steady else "-"
        lines.append(
            f"{r.contestant.label:<30} {lat:>3g}ms {human(size):>5} {measured:<20} {rate:>10} {steady_text:>9} "
            f"{ratio(r, by_key.get(('A', lat, size))) if name != 'A' else '':>6} "
            f"{ratio(r, by_key.get(('B', lat, size))) if name != 'B' else '':>6} "
            f"{ratio(r, by_key.get(('C', lat, size))) if name != 'C' else '':>6} "
            f"{r.cpu:>7.1f} {r.rss_mib:>8.0f} {r.server_cpu if r.contestant.http else 0:>8.1f} "
            f"{r.others_cores:>6.2f}"
        )
    return lines


def goals(results: list[Result], sizes: list[int], startup: dict[str, float]) -> list[str]:
    by_key = {(r.contestant.name, r.latency_ms, r.size): r for r in results}
    lines = []

    def check(label: str, a: Result | None, b: Result | None, target: float, stretch: float | None = None) -> None:
        if a is None or b is None or not a.ok or not b.ok:
            lines.append(f"  n/a   {label}: not measured")
            return
        value = a.rate / b.rate
        verdict = "PASS" if value >= target else "FAIL"
        extra = ""
        if stretch is not None:
            extra = f"; stretch {stretch:g}x: {'PASS' if value >= stretch else 'FAIL'}"
        steady_a, steady_b = steady_rate(a, startup), steady_rate(b, startup)
        steady = f"; steady {steady_a / steady_b:,.2f}x" if steady_a and steady_b else ""
        lines.append(f"  {verdict:<5} {label}: {value:,.2f}x (goal >= {target:g}x{extra}){steady}")

    for size in sizes:
        d4 = by_key.get(("D4", 50, size))
        check(f"{human(size)}: 50 ms, D(4 in flight) vs B", d4, by_key.get(("B", 50, size)), 3.5)
        check(f"{human(size)}: 50 ms, D(4 in flight) vs A", d4, by_key.get(("A", 50, size)), 200)
        check(f"{human(size)}: 0 ms sandbox, D(default) vs C", by_key.get(("D", 0, size)),
              by_key.get(("C", 0, size)), 1.0, 1.5)
    small, large = min(sizes), max(sizes)
    if small != large:
        lo, hi = by_key.get(("D", 0, small)), by_key.get(("D", 0, large))
        if lo and hi and lo.ok and hi.ok and not hi.prefix:
            growth = hi.rss_mib / lo.rss_mib
            verdict = "PASS" if growth <= 1.25 else "FAIL"
            lines.append(f"  {verdict:<5} peak RSS of D(default, 0 ms) at {human(large)} vs {human(small)}: "
                         f"{hi.rss_mib:.0f} / {lo.rss_mib:.0f} MiB = {growth:.2f}x (goal <= 1.25x)")
        else:
            lines.append("  n/a   peak memory goal: D(default) at 0 ms not measured on both full inputs")
    return lines


# --------------------------------------------------------------------------------------
# Profile mode


def profile(size: int, cache: Path, workdir: Path, top: int) -> int:
    full = input_file(cache, size)
    out = workdir / f"target-rjmetrics-{size}.pstats"
    server = Server(workdir, sandbox=True)
    try:
        cmd = [PY, "-m", "cProfile", "-o", str(out), "-m", "target_rjmetrics",
               "--config", str(target_config(server, workdir, None))]
        code, wall, cpu, rss = run_child(cmd, full, workdir / "profile.stdout", workdir / "profile.stderr", 3600)
    finally:
        server.stop()
    print(f"target-rjmetrics (defaults) on {size:,} records, sandbox server at 0 ms, under cProfile: "
          f"exit {code}, {wall:.1f} s wall, {cpu:.1f} s CPU, {rss:.0f} MiB peak RSS")
    if code != 0 or not out.exists():
        print((workdir / "profile.stderr").read_text(errors="replace")[-2000:])
        return 1
    kept = Path(tempfile.gettempdir()) / out.name
    shutil.copy(out, kept)
    print(f"profile kept in {kept} (open with `python -m pstats {kept}` or snakeviz)")
    print("cProfile sees the main thread only: work done in the sending threads shows up as the main")
    print("thread's waits (e.g. on the dispatcher), not as HTTP functions.\n")
    for order in ("cumulative", "tottime"):
        print(f"=== top {top} by {order} ===")
        pstats.Stats(str(out)).strip_dirs().sort_stats(order).print_stats(top)
    return 0


# --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: [parse_size(x) for x in s.split(",")], default=None,
                        help="input sizes in records, comma separated (default 10k,1M; --quick 2k,20k)")
    parser.add_argument("--quick", action="store_true", help="small sizes and short caps (~3 minutes)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="about how long one measurement may take; slower contestants are measured "
                             "on a prefix of the input (default 40, --quick 6)")
    parser.add_argument("--only", default=None,
                        help="contestants to run, comma separated from A,B,C,D,D1,D4,D16 (default all)")
    parser.add_argument("--no-check", action="store_true", help="skip the correctness pass")
    parser.add_argument("--profile", type=parse_size, metavar="SIZE", default=None,
                        help="instead of the table: run target-rjmetrics once under cProfile on SIZE records "
                             "and print the top functions by cumulative and by total time")
    parser.add_argument("--top", type=int, default=25, help="functions listed by --profile (default 25)")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "target-rjmetrics-bench",
                        help="where generated input is kept between runs")
    args = parser.parse_args()

    sizes = sorted(set(args.sizes or ([2_000, 20_000] if args.quick else [10_000, 1_000_000])))
    max_seconds = args.max_seconds or (6.0 if args.quick else 40.0)
    chosen = [c for c in CONTESTANTS if args.only is None or c.name in args.only.split(",")]
    args.cache_dir.mkdir(parents=True, exist_ok=True)

    run_child([PY, "-c", "pass"], Path(os.devnull), Path(os.devnull), Path(os.devnull), 60)  # start the launcher now
    with tempfile.TemporaryDirectory(prefix="rjm-bench-") as tmp:
        workdir = Path(tmp)
        if args.profile is not None:
            return profile(args.profile, args.cache_dir, workdir, args.top)

        began = time.monotonic()
        print("target-rjmetrics throughput benchmark")
        for line in machine_info():
            print("  " + line)
        print(f"  sizes {', '.join(human(s) for s in sizes)}; prefix cap ~{max_seconds:g} s per measurement; "
              "every contestant a subprocess reading the same file on stdin")
        print("  server: rjmetrics-local-api serve --sandbox (a subprocess) for every run; latency 0 ms, then "
              "50 ms set with PUT /_local/faults (sandbox at 50 ms too: it validates like production, and "
              "storing would add the server's SQLite cost to every contestant alike)\n")
        files = {size: input_file(args.cache_dir, size) for size in sizes}
        for size in sizes:
            print(f"  input {human(size)}: {describe_input(files[size])}")
        print()

        if not args.no_check:
            print("correctness pass: persisting in-memory server, 0 ms, "
                  f"{human(sizes[0])} input (A on its first 1,000 records)", flush=True)
            checked = [c for c in chosen if c.name in ("A", "B", "D", "D16")]
            for line in check_landed(checked, files[sizes[0]], workdir):
                print(line, flush=True)
            print()

        results: list[Result] = []
        history: dict[tuple[str, float], float] = {}
        startup: dict[str, float] = {}
        server = Server(workdir, sandbox=True)
        try:
            server.set_latency(0)
            print("start-up (0 ms, SCHEMAs and one record; imports, authenticate, one request, exit):", flush=True)
            for contestant in chosen:
                r = measure(contestant, server, workdir, files[sizes[0]], sizes[0], 1, 0, 120.0)
                startup[contestant.name] = r.wall if r.ok else 0.0
                print(f"  {contestant.label:<30} {r.wall:5.2f} s wall {r.cpu:5.2f} s CPU {r.rss_mib:4.0f} MiB"
                      + ("" if r.ok else "  FAILED: " + "; ".join(r.problems)), flush=True)
            print()
            for size in sizes:
                for latency in LATENCIES_MS:
                    server.set_latency(latency)
                    for contestant in chosen:
                        if not contestant.http and latency != LATENCIES_MS[0]:
                            zero = next((r for r in results if r.contestant is contestant
                                         and r.size == size and r.latency_ms == LATENCIES_MS[0]), None)
                            if zero is not None:
                                copy = Result(**{**zero.__dict__, "latency_ms": latency, "reused_from_0ms": True})
                                results.append(copy)
                                continue
                        records = plan(contestant, latency, size, max_seconds, history,
                                       startup.get(contestant.name, 0.0))
                        hard = 3600.0 if records == size and contestant.full_at_0ms else max(120.0, 6 * max_seconds)
                        print(f"  {contestant.label:<30} {latency:>3g} ms {human(size):>5} "
                              f"{'all' if records == size else f'prefix {records:,}':<16}", end="", flush=True)
                        r = measure(contestant, server, workdir, files[size], size, records, latency, hard)
                        results.append(r)
                        if r.ok and r.wall > 0:
                            history[(contestant.name, latency)] = steady_rate(r, startup) or r.rate
                        status = f"{r.rate:>10,.0f} records/s" if r.ok else "FAILED: " + "; ".join(r.problems)
                        print(f" {r.wall:6.1f} s {status}", flush=True)
        finally:
            server.stop()

        print(f"\nResults ({datetime.datetime.now(_UTC):%Y-%m-%d %H:%M} UTC, "
              f"total {time.monotonic() - began:.0f} s, load avg at end "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
        for line in table(results, startup):
            print(line)
        print("\nrecords/s: input records (or the prefix measured) over the child's wall time, start-up included;")
        print("  (steady): the same without the contestant's start-up time measured above (verdicts use records/s);")
        print("  a run counts only if it exited 0 and the server accepted its points (D: the final STATE too).")
        print("CPU s / RSS: user+sys seconds and peak RSS of the contestant process (os.wait4); srv CPU: the")
        print("  server's CPU seconds during the run; others: cores used by other processes on the machine")
        print("  during the run (shared machine: above ~0.2 the row is noisy).")
        print("D default is max_concurrent_requests=4, so 'D default' and 'D ...=4' are the same setup twice;")
        print("  their difference shows the run-to-run noise. A and B send values as the tap wrote them")
        print("  (no date-time conversion, floats for long decimals) and ignore STATE.")
        print("\nGoals (issue 5):")
        for line in goals(results, sizes, startup):
            print(line)
        failed = [r for r in results if not r.ok]
        for r in failed:
            print(f"  FAILED run {r.contestant.label} {r.latency_ms:g} ms {human(r.size)}: {'; '.join(r.problems)}")
        return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
