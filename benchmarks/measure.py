"""The contestants, and how one is measured: a child of the launcher, reading a file, against a server.

Wall time, CPU seconds and peak RSS come from ``os.wait4`` on each contestant (through
``benchmarks/launcher.py``); the server's CPU from ``/proc``; what landed, and how many POSTs
were answered 429, from the server's request log (and, in the correctness pass, from its rows).
The CPU of one request comes from ``baselines/push_loop.py``, which times its own loop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import typing as t
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

from benchmarks.inputs import STREAMS, count_records, expected_revs, last_state, prefix_file
from target_rjmetrics.local_api import DEMO_API_KEY
from tests.support.config import DEFAULTS, target_config, write_config
from tests.support.servers import CLK_TCK, ServerProcess
from tests.support.targets import clean_env

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from benchmarks.launcher import Job

REPO = Path(__file__).resolve().parent.parent
BASELINES = Path(__file__).resolve().parent / "baselines"
PY = sys.executable
CLIENT_ID = 1
MIN_PREFIX = 200


def start_server(workdir: Path, *, sandbox: bool) -> ServerProcess:
    """``rjmetrics-local-api serve`` in its own process (``--sandbox``, or ``--in-memory``)."""
    flag = "--sandbox" if sandbox else "--in-memory"
    return ServerProcess(workdir, flag, stderr_file=workdir / "server.stderr").start(timeout=30)


# --------------------------------------------------------------------------------------
# Contestants


@dataclass(frozen=True)
class Contestant:
    """One way of loading the input, run as its own process."""

    name: str
    label: str
    command: Callable[[ServerProcess, Path], list[str]]
    #: Highest rate (records/s) it could reach at a latency, to size a first prefix; None: no cap.
    model_rate: Callable[[float], float | None]
    #: Sends HTTP (C does not, so its 0 ms run stands for 50 ms too).
    http: bool = True
    #: Always measured on the whole input at 0 ms (the C, F1 and memory goals need full runs).
    full_at_0ms: bool = False
    #: Sends exactly one point per record (A, B, F); D merges repeated keys within a request.
    one_point_per_record: bool = False
    writes_state: bool = False
    #: Keeps each key's versions in order, so the correctness pass expects every key's last version.
    keeps_key_order: bool = True


def _baseline_cmd(script: str, *extra: str) -> Callable[[ServerProcess, Path], list[str]]:
    def command(server: ServerProcess, _workdir: Path) -> list[str]:
        return [
            PY,
            str(BASELINES / script),
            "--base-url",
            server.base_url,
            "--client-id",
            str(CLIENT_ID),
            "--api-key",
            DEMO_API_KEY,
            *extra,
        ]

    return command


def _null_cmd(_server: ServerProcess, workdir: Path) -> list[str]:
    return [PY, str(BASELINES / "null_target.py"), "--config", str(write_config({}, workdir / "null-config.json"))]


def target_config_file(
    server: ServerProcess, workdir: Path, concurrency: int | None, *, adaptive: bool = False
) -> Path:
    """The target's config file: its defaults, with ``max_concurrent_requests`` when given.

    With ``adaptive``, ``adaptive_concurrency`` is on and ``concurrency`` is its ceiling.
    """
    config = target_config(
        server, DEFAULTS, max_concurrent_requests=concurrency, adaptive_concurrency=True if adaptive else None
    )
    name = f"target-config-{concurrency or 'default'}{'-adaptive' if adaptive else ''}.json"
    return write_config(config, workdir / name)


def _target_cmd(concurrency: int | None, *, adaptive: bool = False) -> Callable[[ServerProcess, Path], list[str]]:
    def command(server: ServerProcess, workdir: Path) -> list[str]:
        config = target_config_file(server, workdir, concurrency, adaptive=adaptive)
        return [PY, "-m", "target_rjmetrics", "--config", str(config)]

    return command


def _per_request(points: int, in_flight: int) -> Callable[[float], float | None]:
    def rate(latency_ms: float) -> float | None:
        if latency_ms <= 0:
            return 200.0 if points == 1 else None  # A: a new connection per request, ~5 ms
        return points * in_flight * 1000.0 / latency_ms

    return rate


CONTESTANTS = [
    Contestant(
        "A", "A docs loop, 1/request", _baseline_cmd("docs_loop.py"), _per_request(1, 1), one_point_per_record=True
    ),
    Contestant(
        "B",
        "B official client, 100 seq.",
        _baseline_cmd("official_client.py"),
        _per_request(100, 1),
        one_point_per_record=True,
    ),
    Contestant("C", "C null SDK target", _null_cmd, lambda _ms: None, http=False, full_at_0ms=True),
    Contestant(
        "F1",
        "F1 plain script, 1 conn.",
        _baseline_cmd("floor.py"),
        _per_request(100, 1),
        full_at_0ms=True,
        one_point_per_record=True,
    ),
    Contestant(
        "F2x4",
        "F2 plain, 4 threads",
        _baseline_cmd("floor.py", "--threads", "4"),
        _per_request(100, 4),
        one_point_per_record=True,
        keeps_key_order=False,
    ),
    Contestant(
        "F2x16",
        "F2 plain, 16 threads",
        _baseline_cmd("floor.py", "--threads", "16"),
        _per_request(100, 16),
        one_point_per_record=True,
        keeps_key_order=False,
    ),
    Contestant(
        "D", "D target-rjmetrics default", _target_cmd(None), _per_request(100, 4), full_at_0ms=True, writes_state=True
    ),
    Contestant("D1", "D max_concurrent_requests=1", _target_cmd(1), _per_request(100, 1), writes_state=True),
    Contestant("D4", "D max_concurrent_requests=4", _target_cmd(4), _per_request(100, 4), writes_state=True),
    Contestant("D16", "D max_concurrent_requests=16", _target_cmd(16), _per_request(100, 16), writes_state=True),
]

#: The adaptive-concurrency scenario (issue 18), against a server that answers 429 beyond
#: ``THROTTLED_SERVER["max_in_flight"]`` requests in flight: the target with that many fixed, and
#: with ``adaptive_concurrency`` under a ceiling of ``ADAPTIVE_CEILING``.
ADAPTIVE_CEILING = 32
THROTTLED_SERVER = {"latency_ms": 50, "max_in_flight": 6, "retry_after": 0}
FIXED_AT_LIMIT = Contestant(
    "D6",
    f"D max_concurrent_requests={THROTTLED_SERVER['max_in_flight']}",
    _target_cmd(THROTTLED_SERVER["max_in_flight"]),
    _per_request(100, THROTTLED_SERVER["max_in_flight"]),
    writes_state=True,
)
ADAPTIVE = Contestant(
    "DA",
    f"D adaptive, ceiling {ADAPTIVE_CEILING}",
    _target_cmd(ADAPTIVE_CEILING, adaptive=True),
    _per_request(100, THROTTLED_SERVER["max_in_flight"]),
    writes_state=True,
)


# --------------------------------------------------------------------------------------
# Running a contestant


class Launcher:
    """``benchmarks/launcher.py`` as a child: runs each contestant, reports what ``os.wait4`` said."""

    def __init__(self) -> None:
        """Start the launcher (while this process is still small; see launcher.py)."""
        self.proc = subprocess.Popen(
            [PY, "-S", "-m", "benchmarks.launcher"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lock = threading.Lock()

    def run(
        self, cmd: list[str], stdin_path: Path, stdout_path: Path, stderr_path: Path, hard_timeout: float
    ) -> tuple[int, float, float, float]:
        """Run ``cmd`` on a file; return (exit code, wall s, user+sys CPU s, peak RSS MiB)."""
        job: Job = {
            "cmd": cmd,
            "cwd": str(REPO),
            "env": clean_env(),
            "stdin": str(stdin_path),
            "stdout": str(stdout_path),
            "stderr": str(stderr_path),
            "timeout": hard_timeout,
        }
        stdin, stdout = self.proc.stdin, self.proc.stdout
        if stdin is None or stdout is None:
            msg = "the launcher has no pipes"
            raise RuntimeError(msg)
        with self.lock:
            stdin.write(json.dumps(job) + "\n")
            stdin.flush()
            answer = stdout.readline()
        if not answer:
            msg = "the launcher process died"
            raise RuntimeError(msg)
        code, wall, cpu, rss = json.loads(answer)
        return int(code), float(wall), float(cpu), float(rss)

    def close(self) -> None:
        """End the launcher."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = sum(fields[3:5])  # idle and iowait (the 4th and 5th fields, iowait absent on old kernels)
    return (sum(fields[:8]) - idle) / CLK_TCK


@dataclass
class Result:
    """One measurement of one contestant."""

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
    #: POSTs answered 429 (counted in ``refused`` too).
    throttled: int = 0
    problems: list[str] = field(default_factory=list)
    reused_from_0ms: bool = False

    @property
    def ok(self) -> bool:
        """Whether the run counts: it exited 0 and the server accepted its points."""
        return not self.problems

    @property
    def rate(self) -> float:
        """Records per second, start-up included."""
        return self.records / self.wall if self.wall else 0.0

    @property
    def prefix(self) -> bool:
        """Whether it was measured on a prefix of the input."""
        return self.records < self.size


def measure(
    launcher: Launcher,
    contestant: Contestant,
    server: ServerProcess,
    workdir: Path,
    full: Path,
    size: int,
    records: int,
    latency_ms: float,
    hard_timeout: float,
) -> Result:
    """Run ``contestant`` on the first ``records`` of ``full`` against ``server`` and check what it sent."""
    source = full if records >= size else prefix_file(full, records)
    result = Result(contestant, latency_ms, size, min(records, size))
    server.clear_request_log()
    out = workdir / f"{contestant.name}-{latency_ms:g}ms-{size}.stdout"
    err = out.with_suffix(".stderr")
    server_cpu = server.cpu_seconds()
    busy = _busy_seconds()
    own = time.process_time()
    code, wall, cpu, rss = launcher.run(contestant.command(server, workdir), source, out, err, hard_timeout)
    result.wall, result.cpu, result.rss_mib, result.exit_code = wall, cpu, rss, code
    result.server_cpu = server.cpu_seconds() - server_cpu
    others = (_busy_seconds() - busy) - cpu - result.server_cpu - (time.process_time() - own)
    result.others_cores = max(0.0, others / wall) if wall else 0.0
    if code != 0:
        tail = err.read_text(errors="replace").strip().splitlines()[-3:]
        result.problems.append(f"exit code {code}: " + " | ".join(tail))
    if contestant.http:
        for entry in server.request_log():
            if entry.method != "POST":
                continue
            result.requests += 1
            if entry.status == HTTPStatus.CREATED:
                result.points += entry.points or 0
            else:
                result.refused += 1
                result.throttled += entry.status == HTTPStatus.TOO_MANY_REQUESTS
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


def plan(
    contestant: Contestant,
    latency_ms: float,
    size: int,
    max_seconds: float,
    history: dict[tuple[str, float], float],
    startup: float,
    *,
    whole: bool = False,
) -> int:
    """Records to measure: the whole input, or a prefix expected to take about ``max_seconds``.

    The rate is the contestant's steady rate at this latency on a smaller input of this run,
    else the most its request pattern allows (``model_rate``). ``whole`` (a goal compares this
    run at this size) asks for the whole input.
    """
    if whole or (contestant.full_at_0ms and latency_ms == 0):
        return size
    rate = history.get((contestant.name, latency_ms)) or contestant.model_rate(latency_ms)
    budget = max(max_seconds - startup, max_seconds / 2)
    if rate is None or rate * budget >= size:
        return size
    wanted = max(MIN_PREFIX, int(rate * budget))
    digits = len(str(wanted)) - 2
    return min(size, max(MIN_PREFIX, wanted // 10**digits * 10**digits if digits > 0 else wanted))


# --------------------------------------------------------------------------------------
# CPU of one request


@dataclass
class PushLoop:
    """One run of ``baselines/push_loop.py``: one way of sending, CPU of the timed requests."""

    way: str
    requests: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    problem: str = ""

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per request (start-up and warm-up left out)."""
        return self.cpu * 1e6 / self.requests if self.requests else 0.0


def measure_push_loop(
    launcher: Launcher, server: ServerProcess, workdir: Path, way: str, requests: int, warm_up: int
) -> PushLoop:
    """Run ``baselines/push_loop.py --way WAY`` against ``server``; read what it timed."""
    server.clear_request_log()
    tag = way.replace(".", "-")
    out, err, nothing = workdir / f"push-{tag}.stdout", workdir / f"push-{tag}.stderr", workdir / "empty.stdin"
    nothing.write_bytes(b"")
    cmd = _baseline_cmd("push_loop.py", "--way", way, "--requests", str(requests), "--warm-up", str(warm_up))(
        server, workdir
    )
    code, _, _, _ = launcher.run(cmd, nothing, out, err, 600)
    result = PushLoop(way)
    if code != 0:
        tail = err.read_text(errors="replace").strip().splitlines()[-3:]
        result.problem = f"exit code {code}: " + " | ".join(tail)
        return result
    timed = json.loads(out.read_text())
    result.requests, result.cpu, result.wall = int(timed["requests"]), float(timed["cpu_s"]), float(timed["wall_s"])
    return result


# --------------------------------------------------------------------------------------
# Correctness pass (persisting server): every key's last version landed


def check_landed(launcher: Launcher, contestants: list[Contestant], full: Path, workdir: Path) -> list[str]:
    """Run each contestant against a persisting in-memory server; compare rows with the input.

    A contestant that keeps key order must leave every key at its last version; one that does
    not (F2) must land every key, and the keys left at an older version are reported.
    """
    lines = []
    for contestant in contestants:
        records = 1000 if contestant.name == "A" else count_records(full)
        source = prefix_file(full, records) if contestant.name == "A" else full
        expected = expected_revs(source)
        server = start_server(workdir, sandbox=False)
        try:
            cmd = contestant.command(server, workdir)
            code, wall, _, _ = launcher.run(cmd, source, workdir / "check.stdout", workdir / "check.stderr", 600)
            faults, notes = [], []
            if code != 0:
                faults.append(f"exit code {code}")
            total = stale_total = 0
            for stream, want in expected.items():
                key_names = STREAMS[stream]["key_properties"]
                rows = server.rows(CLIENT_ID, stream) if want else []
                total += len(rows)
                got = {tuple(r[k] for k in key_names): r.get("rev") for r in rows}
                if len(rows) != len(want) or set(got) != set(want):
                    faults.append(f"{stream}: {len(rows)} rows, {len(want)} keys in input")
                stale = sum(1 for k, rev in want.items() if k in got and got[k] != rev)
                stale_total += stale
                if stale and contestant.keeps_key_order:
                    faults.append(f"{stream}: {stale} keys without their last version")
            if stale_total and not contestant.keeps_key_order:
                notes.append(f"{stale_total:,} keys at an older version (no key order)")
        finally:
            server.stop()
        what = "each key at its last version" if contestant.keeps_key_order else "every key landed"
        verdict = "ok" if not faults else "WRONG: " + "; ".join(faults)
        extra = f"; {'; '.join(notes)}" if notes else ""
        lines.append(
            f"  {contestant.label:<30} {records:>9,} records -> {total:,} rows, {what}: {verdict}{extra} ({wall:.1f} s)"
        )
    return lines
