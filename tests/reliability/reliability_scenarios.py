"""Scenarios of the reliability campaign, shared by ``tests/reliability`` and ``benchmarks/reliability.py``.

A scenario loads a :class:`Workload` (several streams whose keys are updated many times,
with a STATE ``{"records": n}`` after every few records, ``n`` being how many records came
before it) into a local Import API while something attacks the target: injected faults,
kills, a server that dies, a permanent refusal. It returns a :class:`Result` holding the
figures the benchmark table prints, computed independently of the target:

- the expected tables are "the last version of each key, in input order", from the input;
- each STATE the target wrote is checked against the server's request log: every record
  before it must be covered by a request that had completed (201) before the STATE was read.

Every record carries ``seq``, its place in the input, so versions of a key are told apart in
the final rows. The request log only shows key values, so the STATE check counts, per key, the
accepted requests holding that key: requests holding one key never overlap (the target sends
them in input order), so the k-th of them carries the k-th batch of that key's versions. A
STATE after record ``n`` needs the batch holding the last version before ``n``; there are at
most ``later`` batches after it (``later`` = versions after it that this run sent), so at least
``R - later`` of the key's ``R`` accepted requests must have completed. That bound is exact when
versions of a key fall in separate batches, and never wrongly accuses the target.
"""

from __future__ import annotations

import bisect
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_TESTS = _HERE.parent
if str(_TESTS) not in sys.path:  # the benchmark script imports this module from outside pytest
    sys.path.insert(0, str(_TESTS))

from target_support import TARGET_BIN, clean_env  # noqa: E402

from target_rjmetrics.local_api import DEMO_CLIENT_ID, Faults, LocalImportAPI  # noqa: E402

LOCAL_API_BIN = Path(sys.executable).with_name("rjmetrics-local-api")
#: A distinctive API key: if any of it shows up in output, it leaked. '/', '+' and '=' make
#: its URL-encoded form differ from the raw one, so both must be redacted.
SECRET_KEY = "rjm/S3CRET+7f9c2e=do-not-leak"
#: Fragments of the key that must not appear either (raw and percent-encoded).
SECRET_FRAGMENTS = ("S3CRET", "7f9c2e", "do-not-leak")
TRANSIENT = frozenset({0, 429}) | frozenset(range(500, 600))


def sanitise(stream: str) -> str:
    """The documented stream -> table rule (README), computed independently of the target."""
    return re.sub(r"[^A-Za-z0-9_]", "_", stream)


# -- input -------------------------------------------------------------------------------


@dataclass
class Workload:
    """Several streams whose keys are updated many times, in a seeded random order.

    Attributes:
        streams: Stream names (one table each).
        n_keys: Keys per stream.
        rounds: Times each stream's keys are revisited; each round updates a random half
            to all of them, shuffled and interleaved across streams.
        seed: Seed of the order.
        state_every: A STATE follows every this many records (and the last record).
        pad: Bytes of filler per record, to control request sizes.
    """

    streams: tuple[str, ...] = ("users", "shop-orders", "events")
    n_keys: int = 150
    rounds: int = 8
    seed: int = 1
    state_every: int = 97
    pad: int = 40
    _records: list[tuple[str, dict[str, t.Any]]] | None = field(default=None, repr=False, compare=False)

    def records(self) -> list[tuple[str, dict[str, t.Any]]]:
        """All records in input order: ``(stream, record)``; ``record["seq"]`` is the index."""
        if self._records is None:
            rng = random.Random(self.seed)
            out: list[tuple[str, dict[str, t.Any]]] = []
            for rnd in range(self.rounds):
                todo: list[tuple[str, int]] = []
                for stream in self.streams:
                    ids = list(range(1, self.n_keys + 1))
                    rng.shuffle(ids)
                    todo.extend((stream, i) for i in ids[: rng.randint(self.n_keys // 2, self.n_keys)])
                rng.shuffle(todo)
                for stream, i in todo:
                    seq = len(out)
                    pad = (f"{stream}:{i}:{seq}:" * (1 + self.pad // 8))[: self.pad]
                    out.append((stream, {"id": i, "seq": seq, "round": rnd, "pad": pad}))
            self._records = out
        return self._records

    @property
    def total(self) -> int:
        """Number of records."""
        return len(self.records())

    def schemas(self) -> list[dict[str, t.Any]]:
        """One SCHEMA per stream."""
        properties = {
            "id": {"type": "integer"},
            "seq": {"type": "integer"},
            "round": {"type": "integer"},
            "pad": {"type": "string"},
        }
        return [
            {"type": "SCHEMA", "stream": s, "schema": {"type": "object", "properties": properties}, "key_properties": ["id"]}
            for s in self.streams
        ]

    def messages(self, start: int = 0) -> t.Iterator[dict[str, t.Any]]:
        """What a tap resuming from STATE ``{"records": start}`` would send."""
        yield from self.schemas()
        records = self.records()
        for index in range(start, len(records)):
            stream, rec = records[index]
            yield {"type": "RECORD", "stream": stream, "record": rec}
            n = index + 1
            if n % self.state_every == 0 or n == len(records):
                yield {"type": "STATE", "value": {"records": n}}

    def text(self, start: int = 0) -> bytes:
        """The messages as Singer JSON lines."""
        return "".join(json.dumps(m) + "\n" for m in self.messages(start)).encode()

    def expected(self) -> dict[str, dict[int, dict[str, t.Any]]]:
        """Per table, the last version of each key in input order."""
        tables: dict[str, dict[int, dict[str, t.Any]]] = {sanitise(s): {} for s in self.streams}
        for stream, rec in self.records():
            tables[sanitise(stream)][rec["id"]] = rec
        return tables


# -- servers -------------------------------------------------------------------------------


class InProcessServer:
    """A :class:`LocalImportAPI` in this process, behind the small interface scenarios use."""

    def __init__(self, faults: Faults | None = None, credentials: dict[int, str] | None = None) -> None:
        self.api = LocalImportAPI(faults=faults, credentials=credentials, log_point_keys=True).start()

    @property
    def base_url(self) -> str:
        return self.api.base_url

    def entries(self) -> list[dict[str, t.Any]]:
        return self.api.request_log()

    def tables(self) -> dict[str, int]:
        return self.api.tables(DEMO_CLIENT_ID)

    def rows(self, table: str) -> list[dict[str, t.Any]]:
        return self.api.rows(DEMO_CLIENT_ID, table)

    def stop(self) -> None:
        self.api.stop()


class ServerProcess:
    """``rjmetrics-local-api serve`` as a subprocess that can be killed -9 and restarted.

    Its request log lives in the process, so a thread polls it and keeps every entry; before
    a kill the server is first made to fail every request (``error_rate`` 1) and the log is
    read once more, so no accepted request goes unrecorded.
    """

    def __init__(self, workdir: Path, port: int = 0, extra_args: t.Sequence[str] = ()) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="api-", dir=workdir))
        self.data_dir = self.workdir / "data"
        self.port = port
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._entries: list[dict[str, t.Any]] = []
        self._seen: set[tuple[int, int]] = set()
        self._since = 0
        self._lock = threading.Lock()
        self._stop_poll = threading.Event()
        self._poller: threading.Thread | None = None
        self.lives = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2"

    def start(self, timeout: float = 20) -> ServerProcess:
        ready = self.workdir / f"ready-{self.lives}"
        self.proc = subprocess.Popen(
            [str(LOCAL_API_BIN), "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
             "--ready-file", str(ready), "--log-point-keys", "--synchronous", "normal", *self.extra_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=clean_env(),
        )
        deadline = time.monotonic() + timeout
        while not (ready.exists() and ready.read_text().strip()):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                msg = f"local server exited with {self.proc.returncode}: {err[-500:]}"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                msg = "local server did not become ready"
                raise RuntimeError(msg)
            time.sleep(0.02)
        self.port = int(ready.read_text().split()[0])
        self.lives += 1
        self._since = 0
        self._stop_poll.clear()
        self._poller = threading.Thread(target=self._poll_loop, daemon=True)
        self._poller.start()
        return self

    def _http(self, method: str, path: str, body: bytes | None = None) -> t.Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback only)
            return json.loads(resp.read())

    def poll(self) -> None:
        """Read new request-log entries.

        Entries are numbered at arrival but logged at completion, so a request can appear
        after a later-numbered one: each poll re-reads a window below the highest number seen.
        """
        new = self._http("GET", f"/_local/requests?since={max(0, self._since - 500)}")
        with self._lock:
            for entry in new:
                if (self.lives, entry["seq"]) in self._seen:
                    continue
                self._seen.add((self.lives, entry["seq"]))
                entry["life"] = self.lives
                self._entries.append(entry)
                self._since = max(self._since, entry["seq"])

    def _poll_loop(self) -> None:
        while not self._stop_poll.wait(0.1):
            try:
                self.poll()
            except OSError:
                pass

    def set_faults(self, **changes: t.Any) -> None:
        self._http("PUT", "/_local/faults", json.dumps(changes).encode())

    def kill9(self, settle: float = 0.4) -> None:
        """Make every request fail, let accepted ones finish, read the log, then ``kill -9``."""
        assert self.proc is not None
        self.set_faults(error_rate=1.0, error_statuses=[503])
        time.sleep(settle)
        self._stop_poll.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        self.poll()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        self._stop_poll.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.poll()
            except OSError:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def entries(self) -> list[dict[str, t.Any]]:
        with self._lock:
            return list(self._entries)

    def _storage(self) -> LocalImportAPI:
        return LocalImportAPI(data_dir=self.data_dir)  # reads the database file of a stopped server

    def tables(self) -> dict[str, int]:
        return self._storage().tables(DEMO_CLIENT_ID)

    def rows(self, table: str) -> list[dict[str, t.Any]]:
        return self._storage().rows(DEMO_CLIENT_ID, table)


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the target as a process ------------------------------------------------------------------


class TargetProcess:
    """``target-rjmetrics`` fed from a thread, with each STATE line stamped when read.

    Its peak memory is ``VmHWM`` of ``/proc/<pid>/status``, polled while it runs (``ru_maxrss``
    would not do: Linux carries it over from the forked parent, the test process, across exec).
    """

    def __init__(
        self,
        config: dict[str, t.Any],
        data: bytes,
        workdir: Path,
        *,
        args: t.Sequence[str] = (),
        env: dict[str, str] | None = None,
        stdin_file: Path | None = None,
    ) -> None:
        fd, config_path = tempfile.mkstemp(prefix="config-", suffix=".json", dir=workdir)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f)
        self.started = time.time()
        self._stdin_file = open(stdin_file, "rb") if stdin_file is not None else None  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(TARGET_BIN), "--config", config_path, *args],
            stdin=self._stdin_file if self._stdin_file is not None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env or clean_env(),
        )
        self.states: list[tuple[float, t.Any]] = []
        self.stdout_lines: list[bytes] = []
        self._stderr: list[bytes] = []
        self.exit_code: int | None = None
        self.ended: float | None = None
        self.peak_rss_kib = 0
        self._threads = [
            threading.Thread(target=self._watch_memory, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        if self._stdin_file is None:
            self._threads.append(threading.Thread(target=self._feed, args=(data,), daemon=True))
        for thread in self._threads:
            thread.start()

    def _watch_memory(self) -> None:
        status = Path(f"/proc/{self.proc.pid}/status")
        while self.exit_code is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))
            except (OSError, ValueError, IndexError):
                return  # gone (or no /proc)
            time.sleep(0.02)

    def _feed(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            view = memoryview(data)
            for start in range(0, len(view), 65536):
                self.proc.stdin.write(view[start : start + 65536])
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the target stopped reading (killed or failed)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            stamp = time.time()
            self.stdout_lines.append(line)
            if line.strip():
                try:
                    self.states.append((stamp, json.loads(line)))
                except ValueError:
                    self.states.append((stamp, {"__not_json__": line.decode(errors="replace")}))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read(65536), b""):  # type: ignore[union-attr]
            self._stderr.append(chunk)

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    @property
    def stdout(self) -> str:
        return b"".join(self.stdout_lines).decode(errors="replace")

    def running(self) -> bool:
        """Tell whether the process is still alive, without reaping it."""
        if self.exit_code is not None:
            return False
        info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return info is None

    def send_signal(self, signum: int) -> None:
        if self.exit_code is None:
            try:
                os.kill(self.proc.pid, signum)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> int:
        """Wait for the exit (killing the process if it outlives ``timeout``)."""
        if self.exit_code is not None:
            return self.exit_code
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(self.proc.pid, signal.SIGKILL)
                pid, status = os.waitpid(self.proc.pid, 0)
                self._collect(status)
                msg = f"target-rjmetrics did not finish within {timeout:.0f}s (killed)"
                raise TimeoutError(msg)
            time.sleep(0.02)
        self._collect(status)
        return t.cast(int, self.exit_code)

    def _collect(self, status: int) -> None:
        self.ended = time.time()
        self.exit_code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.exit_code
        for thread in self._threads:
            thread.join(timeout=10)
        if self._stdin_file is not None:
            self._stdin_file.close()


# -- checks ---------------------------------------------------------------------------------


@dataclass
class RunRecord:
    """One process of the target within a scenario."""

    start_index: int
    started: float
    states: list[tuple[float, t.Any]]
    exit_code: int
    stderr: str
    stdout: str


def _keys_of(entry: dict[str, t.Any]) -> list[t.Any]:
    return [values[0] for values in entry.get("key_values") or []]


def _without_retries_of_trickles(accepted: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """Drop the retry of each trickled request: the same points, stored twice.

    The counting below assumes one accepted request per batch of a key's versions; a request
    whose answer trickled was stored, then cut off and retried by the target, so its retry
    (the next accepted request with the same points) is the same batch again.
    """
    ordered = sorted(accepted, key=lambda e: e["arrived"])
    dropped: set[int] = set()
    for index, entry in enumerate(ordered):
        if "trickle" not in (entry.get("fault") or ""):
            continue
        for later in ordered[index + 1 :]:
            if id(later) not in dropped and later["table"] == entry["table"] and later["key_values"] == entry["key_values"]:
                dropped.add(id(later))
                break
    return [e for e in ordered if id(e) not in dropped]


def states_ahead(
    runs: list[RunRecord], entries: list[dict[str, t.Any]], workload: Workload
) -> list[str]:
    """Describe every STATE written before the data it covers had landed (empty is good)."""
    problems: list[str] = []
    records = workload.records()
    posts = [e for e in entries if e["method"] == "POST"]
    for index, run in enumerate(runs):
        window_end = runs[index + 1].started if index + 1 < len(runs) else float("inf")
        accepted = _without_retries_of_trickles(
            [e for e in posts if e["status"] == 201 and run.started <= e["arrived"] < window_end]
        )
        completed: dict[tuple[str, t.Any], list[float]] = defaultdict(list)
        for entry in accepted:
            # A trickled answer's points were committed before its first byte went out (see
            # docs/local-api.md), so they landed when it arrived, not when the answer ended.
            landed = entry["arrived"] if "trickle" in (entry.get("fault") or "") else entry["completed"]
            for key in _keys_of(entry):
                completed[(entry["table"], key)].append(landed)
        for times in completed.values():
            times.sort()
        # Positions (indexes into records) of each key's versions within this run's input.
        positions: dict[tuple[str, t.Any], list[int]] = defaultdict(list)
        for pos in range(run.start_index, len(records)):
            stream, rec = records[pos]
            positions[(sanitise(stream), rec["id"])].append(pos)
        for stamp, value in run.states:
            n = value.get("records") if isinstance(value, dict) else None
            if not isinstance(n, int):
                problems.append(f"run {index}: unexpected STATE {value!r}")
                continue
            if n < run.start_index:
                problems.append(f"run {index}: STATE {n} is before the replay start {run.start_index}")
            for slot, pos_list in positions.items():
                cut = bisect.bisect_left(pos_list, n)
                if cut == 0:
                    continue  # no version of this key before the state
                times = completed.get(slot, [])
                # Versions this run may have sent after the last one before the state.
                later = len(pos_list) - cut
                need = max(1, len(times) - later)
                have = bisect.bisect_right(times, stamp)
                if have < need:
                    problems.append(
                        f"run {index}: STATE {{'records': {n}}} read at {stamp:.3f} before key {slot} "
                        f"(version seq {records[pos_list[cut - 1]][1]['seq']}) had landed "
                        f"({have} of >= {need} requests completed)"
                    )
                    break
    return problems


def table_mismatches(server: t.Any, workload: Workload) -> list[str]:
    """Differences between the stored tables and the last version of each key (empty is good)."""
    problems: list[str] = []
    expected = workload.expected()
    tables = server.tables()
    extra = sorted(set(tables) - set(expected))
    if extra:
        problems.append(f"unexpected tables {extra}")
    for table, want in expected.items():
        rows = server.rows(table) if table in tables else []
        got = {row.get("id"): row for row in rows}
        if len(rows) != len(got):
            problems.append(f"{table}: {len(rows) - len(got)} duplicate ids")
        missing = sorted(set(want) - set(got))
        if missing:
            problems.append(f"{table}: {len(missing)} keys missing, e.g. {missing[:5]}")
        wrong = sorted(k for k in set(want) & set(got) if got[k] != want[k])
        if wrong:
            k = wrong[0]
            problems.append(
                f"{table}: {len(wrong)} keys hold another version, e.g. id {k}: seq {got[k].get('seq')} "
                f"instead of {want[k]['seq']}"
            )
        unwanted = sorted(set(got) - set(want), key=str)
        if unwanted:
            problems.append(f"{table}: {len(unwanted)} unexpected keys")
    return problems


def records_landed(server: t.Any, workload: Workload) -> int:
    """Input records whose version (or a later one of their key) is stored."""
    stored: dict[tuple[str, t.Any], int] = {}
    tables = server.tables()
    for table in {sanitise(s) for s in workload.streams}:
        if table in tables:
            for row in server.rows(table):
                seq = row.get("seq")
                stored[(table, row.get("id"))] = seq if isinstance(seq, int) else -1
    return sum(
        1 for stream, rec in workload.records() if stored.get((sanitise(stream), rec["id"]), -1) >= rec["seq"]
    )


def retries_in(entries: list[dict[str, t.Any]]) -> int:
    """API requests answered with a transient failure (each one is retried, or ends the run)."""
    return sum(1 for e in entries if e["status"] in TRANSIENT and e["path"].startswith("/v2/"))


_SUMMARY_ROW = re.compile(
    r"Load summary: table (\S+): records ([\d,]+), requests ([\d,]+), retries ([\d,]+), merged ([\d,]+), "
    r"seconds [\d.]+$"
)


def target_retries(stderr: str) -> int:
    """Retries the target itself counted in its end-of-run summary (0 without a summary).

    The server's log cannot see retries of requests that never reached it (connection refused
    while it was down), so the figures take the larger of the two counts.
    """
    total = 0
    for line in stderr.splitlines():
        match = _SUMMARY_ROW.search(line.strip())
        if match:
            total += int(match.group(4).replace(",", ""))
    return total


def traceback_free_lines(stderr: str) -> list[str]:
    """Lines of stderr that are not part of a Python traceback."""
    out: list[str] = []
    in_tb = False
    for line in stderr.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_tb = True
            continue
        if in_tb:
            if line.startswith((" ", "\t")) or not line.strip() or line.startswith(("During handling", "The above")):
                continue
            in_tb = False  # the exception line closes the traceback
            continue
        out.append(line)
    return out


# -- results ---------------------------------------------------------------------------------


@dataclass
class Result:
    """The figures of one scenario (one row of the benchmark table)."""

    scenario: str
    sent: int
    landed: int
    correct: bool
    states: int
    ahead: int
    retries: int
    exit_code: int | str
    problems: list[str] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    note: str = ""

    def row(self) -> list[str]:
        return [
            self.scenario,
            f"{self.sent:,}",
            f"{self.landed:,}",
            "yes" if self.correct else "NO",
            f"{self.states:,}",
            f"{self.ahead:,}",
            f"{self.retries:,}",
            str(self.exit_code),
        ]

    @property
    def stderr(self) -> str:
        return "\n".join(run.stderr for run in self.runs)

    @property
    def stdout(self) -> str:
        return "\n".join(run.stdout for run in self.runs)


HEADER = ["scenario", "records sent", "records landed", "rows correct", "STATE emitted",
          "STATE ahead", "retries", "exit code"]


def format_table(results: t.Sequence[Result]) -> str:
    """The figures as a plain text table."""
    rows = [HEADER, *[r.row() for r in results]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def target_config(base_url: str, **overrides: t.Any) -> dict[str, t.Any]:
    """Settings for a scenario: the demo client at ``base_url``, several requests in flight."""
    config: dict[str, t.Any] = {
        "client_id": DEMO_CLIENT_ID,
        "api_key": "local-demo-key",
        "api_url": base_url,
        "max_concurrent_requests": 4,
        "max_points_per_request": 40,
        "state_flush_seconds": 2,
        "max_retry_seconds": 60,
        "late_apply_seconds": 2,  # the local server applies nothing late in these scenarios
        "request_timeout": 15,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def _finish(
    name: str, server: t.Any, workload: Workload, runs: list[RunRecord], *, expect_complete: bool = True
) -> Result:
    entries = server.entries()
    ahead = states_ahead(runs, entries, workload)
    mismatches = table_mismatches(server, workload)
    problems = list(ahead)
    if expect_complete:
        problems += mismatches
    return Result(
        scenario=name,
        sent=workload.total,
        landed=records_landed(server, workload),
        correct=not mismatches,
        states=sum(len(r.states) for r in runs),
        ahead=len(ahead),
        retries=max(retries_in(entries), sum(target_retries(r.stderr) for r in runs)),
        exit_code=runs[-1].exit_code if runs else "-",
        problems=problems,
        runs=runs,
    )


def _run_once(config: dict[str, t.Any], workload: Workload, workdir: Path, start: int, timeout: float) -> RunRecord:
    proc = TargetProcess(config, workload.text(start), workdir)
    code = proc.wait(timeout)
    return RunRecord(start, proc.started, proc.states, code, proc.stderr, proc.stdout)


# -- scenarios ---------------------------------------------------------------------------------

#: Fault kinds of the local server, each at a rate that makes it frequent but survivable.
FAULT_KINDS: dict[str, tuple[dict[str, t.Any], dict[str, t.Any]]] = {
    # name: (Faults fields, target setting overrides)
    "500": ({"error_rate": 0.2, "error_statuses": (500,)}, {}),
    "502": ({"error_rate": 0.2, "error_statuses": (502,)}, {}),
    "503": ({"error_rate": 0.2, "error_statuses": (503,)}, {}),
    "504": ({"error_rate": 0.2, "error_statuses": (504,)}, {}),
    "429 Retry-After 1": ({"rate_limit_rate": 0.1, "retry_after": 1}, {}),
    "latency+jitter": ({"latency_ms": 10, "jitter_ms": 90}, {"max_concurrent_requests": 6}),
    "dropped connections": ({"drop_rate": 0.15}, {}),
    "in-flight limit": ({"max_in_flight": 2, "retry_after": 0, "latency_ms": 5, "jitter_ms": 25},
                        {"max_concurrent_requests": 6}),
    "lower body limit": ({"max_body_bytes": 1500}, {}),
    # Hostile networks: a request applied late after the target gave up on it (held without an
    # answer, or answered 504), and answers that trickle in a byte at a time.
    "late apply (held, 1 s timeout)": ({"ghost_delay": 3.0, "ghost_rate": 0.03},
                                       {"request_timeout": 1, "late_apply_seconds": 4}),
    "late apply (answered 504)": ({"ghost_delay": 2.0, "ghost_rate": 0.03, "ghost_answer": 504},
                                  {"late_apply_seconds": 3}),
    "trickled answers": ({"trickle_interval": 1.0, "trickle_rate": 0.02}, {"request_timeout": 2}),
    "mix": ({"error_rate": 0.05, "rate_limit_rate": 0.03, "retry_after": 0, "latency_ms": 5, "jitter_ms": 40,
             "drop_rate": 0.03, "max_in_flight": 3, "max_body_bytes": 4000}, {"max_concurrent_requests": 4}),
}


def fault_scenario(kind: str, workload: Workload, workdir: Path, *, seed: int = 7, timeout: float = 180) -> Result:
    """Load ``workload`` while the server injects one fault kind; check tables and STATE."""
    fault_fields, overrides = FAULT_KINDS[kind]
    server = InProcessServer(Faults(seed=seed, **fault_fields))
    try:
        config = target_config(server.base_url, **overrides)
        run = _run_once(config, workload, workdir, 0, timeout)
        result = _finish(f"faults: {kind}", server, workload, [run])
    finally:
        server.stop()
    if run.exit_code != 0:
        result.problems.append(f"exit code {run.exit_code}: {run.stderr[-1500:]}")
    final = run.states[-1][1] if run.states else None
    if final != {"records": workload.total}:
        result.problems.append(f"last STATE {final!r}, expected {{'records': {workload.total}}}")
    return result


def kill_resume_scenario(
    signals: t.Sequence[int],
    workload: Workload,
    workdir: Path,
    *,
    seed: int = 3,
    faults: Faults | None = None,
    kill_window: tuple[float, float] = (0.9, 2.2),
    timeout: float = 120,
    name: str | None = None,
) -> Result:
    """Kill the target at seeded random moments, resuming each time from its last STATE.

    After each kill the input is replayed from the last STATE the killed process wrote, as a
    tap would; a final run is left to finish. SIGTERM must exit with 143 (or 0 if the run had
    already ended), SIGKILL with -9.
    """
    rng = random.Random(seed)
    server = InProcessServer(faults or Faults(seed=seed, latency_ms=40, jitter_ms=80, error_rate=0.03))
    runs: list[RunRecord] = []
    problems: list[str] = []
    start = 0
    try:
        config = target_config(server.base_url, max_points_per_request=25)
        for signum in [*signals, None]:
            authenticated = sum("authenticate" in e["path"] for e in server.entries())
            proc = TargetProcess(config, workload.text(start), workdir)
            if signum is not None:
                # Count the window from the moment this run is up (it has checked its key), so
                # a slow start-up on a busy machine does not turn the kill into one at import time.
                up_by = time.monotonic() + 30
                while (
                    sum("authenticate" in e["path"] for e in server.entries()) <= authenticated
                    and proc.running()
                    and time.monotonic() < up_by
                ):
                    time.sleep(0.01)
                deadline = time.monotonic() + rng.uniform(*kill_window) - 0.8
                while time.monotonic() < deadline and proc.running():
                    time.sleep(0.01)
                proc.send_signal(signum)
            code = proc.wait(timeout)
            runs.append(RunRecord(start, proc.started, proc.states, code, proc.stderr, proc.stdout))
            # A SIGTERM that lands after the run finished its work (its load summary is out)
            # meets the interpreter's shutdown, which has restored the default handler: -15.
            finished = "Load summary" in proc.stderr
            allowed = (0, 128 + signal.SIGTERM, -signal.SIGTERM) if finished else (0, 128 + signal.SIGTERM)
            if signum == signal.SIGTERM and code not in allowed:
                errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
                problems.append(f"SIGTERM run exited {code} (expected 143): {errors[-3:]}")
            if signum == signal.SIGKILL and code not in (0, -signal.SIGKILL):
                problems.append(f"SIGKILL run exited {code}")
            if signum == signal.SIGTERM and "Traceback" in proc.stderr:
                problems.append("a traceback after SIGTERM")
            if proc.states:
                start = proc.states[-1][1]["records"]
            time.sleep(0.3)  # a tap restarts: requests of a killed run finish meanwhile
        names = "+".join("KILL" if s == signal.SIGKILL else "TERM" for s in signals)
        result = _finish(name or f"kill/resume x{len(signals)} ({names})", server, workload, runs)
    finally:
        server.stop()
    result.problems += problems
    if runs[-1].exit_code != 0:
        result.problems.append(f"final run exited {runs[-1].exit_code}: {runs[-1].stderr[-1500:]}")
    result.note = f"{len(runs)} runs, replayed from {[r.start_index for r in runs]}"
    return result


def server_restart_scenario(
    workload: Workload,
    workdir: Path,
    *,
    outage: float,
    max_retry_seconds: float,
    kill_after: float = 0.3,
    timeout: float = 120,
) -> Result:
    """Kill -9 the local server mid-run and restart it on the same port and data after ``outage``.

    The kill comes ``kill_after`` seconds after the run is up (its key checked): an API that
    cannot be reached at start is another case, which fails at once ("cannot connect").
    With ``max_retry_seconds`` longer than the outage the target must retry through and load
    everything; with a shorter one it must fail clearly (exit 1, "still failing after retrying")
    without a STATE past landed data.
    """
    server = ServerProcess(workdir, port=free_port(), extra_args=["--latency-ms", "30", "--jitter-ms", "40"])
    server.start()
    survives = max_retry_seconds > outage + 5
    try:
        config = target_config(server.base_url, max_retry_seconds=max_retry_seconds, max_points_per_request=25)
        proc = TargetProcess(config, workload.text(0), workdir)
        # Count from the moment the run is up, so a slow start-up on a busy machine does not
        # turn this outage into one at start.
        up_by = time.monotonic() + 30
        while (
            not any(e["status"] == 200 and "authenticate" in e["path"] for e in server.entries())
            and proc.running()
            and time.monotonic() < up_by
        ):
            time.sleep(0.01)
        deadline = time.monotonic() + kill_after
        while time.monotonic() < deadline and proc.running():
            time.sleep(0.01)
        killed_at = time.time()
        server.kill9()
        time.sleep(outage)
        if survives:
            server.start()
        code = proc.wait(timeout)
        runs = [RunRecord(0, proc.started, proc.states, code, proc.stderr, proc.stdout)]
    finally:
        server.stop()
    label = "retried through" if survives else "fails clearly"
    result = _finish(
        f"server kill -9, {outage:g}s outage, retry {max_retry_seconds:g}s ({label})",
        server, workload, runs, expect_complete=survives,
    )
    if proc.ended is not None and proc.ended < killed_at:
        result.problems.append("the target finished before the server was killed: the scenario proved nothing")
    if survives and code != 0:
        result.problems.append(f"exit {code}: {proc.stderr[-1500:]}")
    if not survives:
        if code != 1:
            result.problems.append(f"exit {code}, expected 1")
        if "still failing after retrying" not in proc.stderr:
            result.problems.append(f"no clear retry-exhausted message: {proc.stderr[-1500:]}")
        if "Traceback" in proc.stderr:
            result.problems.append("a traceback was printed")
    return result


def permanent_failure_scenario(
    status: int | None,
    workload: Workload,
    workdir: Path,
    *,
    fail_after: int = 20,
    timeout: float = 120,
) -> Result:
    """After ``fail_after`` accepted requests the server answers ``status`` to everything.

    ``status=None`` means 503 with a short ``max_retry_seconds``: the retry budget runs out.
    """
    fail_status = status or 503
    server = InProcessServer(Faults(seed=5, fail_after=fail_after, fail_status=fail_status))
    try:
        overrides: dict[str, t.Any] = {"max_concurrent_requests": 3}
        if status is None:
            overrides["max_retry_seconds"] = 2
        config = target_config(server.base_url, **overrides)
        run = _run_once(config, workload, workdir, 0, timeout)
        label = f"permanent {status}" if status else "retry budget exhausted (503, 2s)"
        result = _finish(label, server, workload, [run], expect_complete=False)
    finally:
        server.stop()
    if run.exit_code == 0:
        result.problems.append("the run succeeded although the API refused its requests")
    clear = traceback_free_lines(run.stderr)
    pattern = re.compile(r"records? #\d+(-#\d+)? of stream '([^']+)' \(table '([^']+)'\)")
    named = [line for line in clear if pattern.search(line)]
    if not named:
        result.problems.append(f"no message names the stream, table and input positions: {run.stderr[-1500:]}")
    if status is not None and not any(str(status) in line for line in named):
        result.problems.append(f"the message does not give the status {status}")
    if status is None and not any("still failing after retrying" in line for line in clear):
        result.problems.append("the message does not say the retries ran out")
    return result


def memory_scenario(
    n_records: int, workdir: Path, *, latency_ms: float = 60, timeout: float = 300
) -> tuple[int, Result]:
    """Load ``n_records`` records of one shape while every request takes ``latency_ms``.

    Returns the target's peak resident memory (KiB, ``VmHWM``) and the result.
    """
    workload = Workload(streams=("metrics",), n_keys=n_records, rounds=1, seed=2, state_every=1000, pad=200)
    path = workdir / f"input-{n_records}.jsonl"
    path.write_bytes(workload.text(0))
    server = InProcessServer(Faults(seed=1, latency_ms=latency_ms, jitter_ms=latency_ms / 2))
    try:
        config = target_config(server.base_url, max_points_per_request=100, max_concurrent_requests=4)
        proc = TargetProcess(config, b"", workdir, stdin_file=path)
        code = proc.wait(timeout)
        run = RunRecord(0, proc.started, proc.states, code, proc.stderr, proc.stdout)
        result = _finish(f"memory: {n_records:,} records, slow server", server, workload, [run])
    finally:
        server.stop()
        path.unlink(missing_ok=True)
    if code != 0:
        result.problems.append(f"exit {code}: {proc.stderr[-1500:]}")
    result.note = f"peak RSS {proc.peak_rss_kib / 1024:.1f} MiB"
    return proc.peak_rss_kib, result


# -- hostile answers and a hostile environment ---------------------------------------------------


def unexpected_answer_scenario(
    status: int, workload: Workload, workdir: Path, *, after: int = 20, timeout: float = 120
) -> Result:
    """After ``after`` accepted upserts, every upsert is answered ``status`` instead of 201.

    A redirect points at a second local server, which must never be contacted (the key and
    the data go to ``api_url``'s host only). Nothing answered that way counts as landed.
    """
    other = InProcessServer()
    server = InProcessServer(Faults(seed=5, upsert_status=status, upsert_status_skip=after, redirect_url=other.base_url))
    try:
        config = target_config(server.base_url, max_concurrent_requests=3)
        run = _run_once(config, workload, workdir, 0, timeout)
        result = _finish(f"answered {status} instead of 201", server, workload, [run], expect_complete=False)
        contacted = len(other.entries())
    finally:
        server.stop()
        other.stop()
    result.note = f"other host contacted {contacted} times"
    if contacted:
        result.problems.append(f"the redirect's host was contacted {contacted} times")
    if run.exit_code != 1:
        result.problems.append(f"exit {run.exit_code}, expected 1")
    if not any(f"answered {status}" in line and "instead of 201" in line for line in traceback_free_lines(run.stderr)):
        result.problems.append(f"no clear message about the {status}: {run.stderr[-1500:]}")
    return result


def broken_stdout_scenario(workload: Workload, workdir: Path, *, timeout: float = 120) -> Result:
    """Whoever reads the target's STATE lines stops after the first one (``| head -1``)."""
    server = InProcessServer(Faults(seed=3, latency_ms=20))
    try:
        config_path = workdir / "broken-stdout-config.json"
        config_path.write_text(json.dumps(target_config(server.base_url)))
        input_path = workdir / "broken-stdout-input.jsonl"
        input_path.write_bytes(workload.text(0))
        started = time.time()
        with input_path.open("rb") as stdin:
            proc = subprocess.Popen([str(TARGET_BIN), "--config", str(config_path)], stdin=stdin,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
            assert proc.stdout is not None and proc.stderr is not None
            first = proc.stdout.readline()
            stamp = time.time()
            proc.stdout.close()  # the reader goes away
            stderr = proc.stderr.read().decode(errors="replace")
            code = proc.wait(timeout)
        states = [(stamp, json.loads(first))] if first.strip() else []
        run = RunRecord(0, started, states, code, stderr, first.decode())
        result = _finish("STATE reader goes away", server, workload, [run], expect_complete=False)
        unsettled = [e for e in server.entries() if e["method"] == "POST" and e["status"] not in (201, 413)]
    finally:
        server.stop()
    if code != 1:
        result.problems.append(f"exit {code}, expected 1")
    if "Cannot write STATE to standard output (broken pipe" not in stderr:
        result.problems.append(f"no clear broken-pipe message: {stderr[-1500:]}")
    if unsettled:
        result.problems.append(f"{len(unsettled)} requests were left unanswered")
    return result


def sigterm_while_stuck_scenario(workload: Workload, workdir: Path, *, timeout: float = 120) -> Result:
    """SIGTERM while every answer trickles in a byte every 2 s: exit promptly, send nothing new."""
    server = InProcessServer(Faults(seed=3))
    try:
        config = target_config(server.base_url, request_timeout=30)
        proc = TargetProcess(config, workload.text(0), workdir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(proc.states) < 2:
            time.sleep(0.02)
        server.api.set_faults(trickle_interval=2.0)
        time.sleep(1.0)  # requests now in flight trickle
        sent_before = len([e for e in server.entries() if e["method"] == "POST"])
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout)
        took = time.monotonic() - stopped
        time.sleep(0.5)
        sent_after = len([e for e in server.entries() if e["method"] == "POST"])
        run = RunRecord(0, proc.started, proc.states, code, proc.stderr, proc.stdout)
        result = _finish("SIGTERM while answers trickle", server, workload, [run], expect_complete=False)
    finally:
        server.stop()
    result.note = f"exit {took:.1f}s after SIGTERM"
    if code != 128 + signal.SIGTERM:
        result.problems.append(f"exit {code}, expected {128 + signal.SIGTERM}")
    if took > 20:  # noqa: PLR2004 (STOP_GRACE_SECONDS, 10 s, with room)
        result.problems.append(f"the exit took {took:.0f}s after SIGTERM")
    if sent_after > sent_before:
        result.problems.append(f"{sent_after - sent_before} requests were sent after the stop")
    return result
