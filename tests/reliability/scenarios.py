"""Scenarios of the reliability campaign, shared by ``tests/reliability`` and ``benchmarks/reliability.py``.

A scenario loads a :class:`Workload` (several streams whose keys are updated many times,
with a STATE ``{"records": n}`` after every few records, ``n`` being how many records came
before it) into a local Import API while something attacks the target: injected faults,
kills, a server that dies, a permanent refusal. It returns a :class:`Result` holding the
figures the benchmark table prints, computed independently of the target
(:mod:`tests.support.checks`):

- the expected tables are "the last version of each key, in input order", from the input;
- each STATE the target wrote is checked against the server's request log: every record
  before it must be covered by a request that had completed (201) before the STATE was read.

Every record carries ``seq``, its place in the input, so versions of a key are told apart in
the final rows.
"""

from __future__ import annotations

import json
import random
import re
import signal
import time
import typing as t
from dataclasses import dataclass, field

from target_rjmetrics.local_api import Faults
from tests.support.checks import (
    RunRecord,
    records_landed,
    retries_in,
    states_ahead,
    table_mismatches,
    target_retries,
    traceback_free_lines,
)
from tests.support.config import SCENARIO_SETTINGS, target_config
from tests.support.expected import last_versions_by_id, sanitise
from tests.support.messages import Message, lines, record, schema, state
from tests.support.servers import ImportAPIView, ServerProcess, free_port, start_local_api
from tests.support.targets import TargetProcess

if t.TYPE_CHECKING:
    from pathlib import Path


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

    def schemas(self) -> list[Message]:
        """One SCHEMA per stream."""
        properties = {
            "id": {"type": "integer"},
            "seq": {"type": "integer"},
            "round": {"type": "integer"},
            "pad": {"type": "string"},
        }
        return [schema(s, properties, ["id"]) for s in self.streams]

    def messages(self, start: int = 0) -> t.Iterator[Message]:
        """What a tap resuming from STATE ``{"records": start}`` would send."""
        yield from self.schemas()
        records = self.records()
        for index in range(start, len(records)):
            stream, rec = records[index]
            yield record(stream, **rec)
            n = index + 1
            if n % self.state_every == 0 or n == len(records):
                yield state({"records": n})

    def text(self, start: int = 0) -> bytes:
        """The messages as Singer JSON lines."""
        return lines(self.messages(start)).encode()

    def expected(self) -> dict[str, dict[int, dict[str, t.Any]]]:
        """Per table, the last version of each key (its ``id``) in input order."""
        return {sanitise(s): last_versions_by_id(self.messages(), s) for s in self.streams}


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


HEADER = [
    "scenario",
    "records sent",
    "records landed",
    "rows correct",
    "STATE emitted",
    "STATE ahead",
    "retries",
    "exit code",
]


def format_table(results: t.Sequence[Result]) -> str:
    """The figures as a plain text table."""
    rows = [HEADER, *[r.row() for r in results]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _finish(
    name: str, server: ImportAPIView, workload: Workload, runs: list[RunRecord], *, expect_complete: bool = True
) -> Result:
    entries = server.request_log()
    ahead = states_ahead(runs, entries, workload.records())
    mismatches = table_mismatches(server, workload.expected())
    problems = list(ahead)
    if expect_complete:
        problems += mismatches
    return Result(
        scenario=name,
        sent=workload.total,
        landed=records_landed(server, workload.records()),
        correct=not mismatches,
        states=sum(len(r.states) for r in runs),
        ahead=len(ahead),
        retries=max(retries_in(entries), sum(target_retries(r.stderr) for r in runs)),
        exit_code=runs[-1].exit_code if runs else "-",
        problems=problems,
        runs=runs,
    )


def _record(proc: TargetProcess, start: int, timeout: float) -> RunRecord:
    """Wait for ``proc`` (started on the input from record ``start``) and record its run."""
    code = proc.wait(timeout)
    return RunRecord(start, proc.started, proc.states, code, proc.stderr, proc.stdout)


def _run_once(config: dict[str, t.Any], workload: Workload, workdir: Path, start: int, timeout: float) -> RunRecord:
    return _record(TargetProcess(config, workdir, stdin=workload.text(start)), start, timeout)


def _run_paced(
    config: dict[str, t.Any], workload: Workload, workdir: Path, timeout: float, *, chunks: int = 6
) -> RunRecord:
    """Run on the whole input, written in ``chunks`` parts, each once the run caught up.

    A part is written once the last STATE of the part before it was written (or 10 s passed).
    Reading never waits for the API, so input written at once is often all read before the
    first STATE is ready, and only the last STATE is written. Letting the run catch up between
    parts makes it write STATEs along the way, so the check that none runs ahead has several to
    test, while each part still loads many requests at once.
    """
    proc = TargetProcess(config, workdir, stdin="pipe")
    text = workload.text(0).splitlines(keepends=True)
    size = -(-len(text) // chunks)
    try:
        for i in range(0, len(text), size):
            part = text[i : i + size]
            proc.write(b"".join(part))
            states = [json.loads(line)["value"] for line in part if b'"STATE"' in line]
            if states and i + size < len(text):
                last: int = states[-1]["records"]

                def caught_up(value: t.Any, last: int = last) -> bool:
                    return isinstance(value, dict) and value.get("records", 0) >= last

                proc.wait_for_state(caught_up, timeout=10)
        proc.close_stdin()
    except BrokenPipeError:
        pass  # the run ended early: its exit code and stderr tell why
    return _record(proc, 0, timeout)


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
    "in-flight limit": (
        {"max_in_flight": 2, "retry_after": 0, "latency_ms": 5, "jitter_ms": 25},
        {"max_concurrent_requests": 6},
    ),
    "lower body limit": ({"max_body_bytes": 1500}, {}),
    # Hostile networks: a request applied late after the target gave up on it (held without an
    # answer, or answered 504), and answers that trickle in a byte at a time.
    "late apply (held, 1 s timeout)": (
        {"ghost_delay": 3.0, "ghost_rate": 0.03},
        {"request_timeout": 1, "late_apply_seconds": 4},
    ),
    "late apply (answered 504)": (
        {"ghost_delay": 2.0, "ghost_rate": 0.03, "ghost_answer": 504},
        {"late_apply_seconds": 3},
    ),
    "trickled answers": ({"trickle_interval": 1.0, "trickle_rate": 0.02}, {"request_timeout": 2}),
    "mix": (
        {
            "error_rate": 0.05,
            "rate_limit_rate": 0.03,
            "retry_after": 0,
            "latency_ms": 5,
            "jitter_ms": 40,
            "drop_rate": 0.03,
            "max_in_flight": 3,
            "max_body_bytes": 4000,
        },
        {"max_concurrent_requests": 4},
    ),
}


def fault_scenario(kind: str, workload: Workload, workdir: Path, *, seed: int = 7, timeout: float = 180) -> Result:
    """Load ``workload`` while the server injects one fault kind; check tables and STATE."""
    fault_fields, overrides = FAULT_KINDS[kind]
    server = start_local_api(faults=Faults(seed=seed, **fault_fields))
    try:
        config = target_config(server, SCENARIO_SETTINGS, **overrides)
        run = _run_paced(config, workload, workdir, timeout)
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
    server = start_local_api(faults=faults or Faults(seed=seed, latency_ms=40, jitter_ms=80, error_rate=0.03))
    runs: list[RunRecord] = []
    problems: list[str] = []
    start = 0
    try:
        config = target_config(server, SCENARIO_SETTINGS, max_points_per_request=25)
        for signum in [*signals, None]:
            authenticated = sum("authenticate" in e.path for e in server.request_log())
            proc = TargetProcess(config, workdir, stdin=workload.text(start))
            if signum is not None:
                # Count the window from the moment this run is up (it has checked its key), so
                # a slow start-up on a busy machine does not turn the kill into one at import time.
                up_by = time.monotonic() + 30
                while (
                    sum("authenticate" in e.path for e in server.request_log()) <= authenticated
                    and proc.running()
                    and time.monotonic() < up_by
                ):
                    time.sleep(0.01)
                deadline = time.monotonic() + rng.uniform(*kill_window) - 0.8
                while time.monotonic() < deadline and proc.running():
                    time.sleep(0.01)
                proc.send_signal(signum)
            runs.append(_record(proc, start, timeout))
            code = runs[-1].exit_code
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
    server = ServerProcess(
        workdir,
        "--log-point-keys",
        "--synchronous",
        "normal",
        "--latency-ms",
        "30",
        "--jitter-ms",
        "40",
        data_dir=workdir / f"data-{time.monotonic_ns()}",
        port=free_port(),
        keep_log=True,
    )
    server.start()
    survives = max_retry_seconds > outage + 5
    try:
        config = target_config(
            server, SCENARIO_SETTINGS, max_retry_seconds=max_retry_seconds, max_points_per_request=25
        )
        proc = TargetProcess(config, workdir, stdin=workload.text(0))
        # Count from the moment the run is up, so a slow start-up on a busy machine does not
        # turn this outage into one at start.
        up_by = time.monotonic() + 30
        while (
            not any(e.status == 200 and "authenticate" in e.path for e in server.request_log())
            and proc.running()
            and time.monotonic() < up_by
        ):
            time.sleep(0.01)
        deadline = time.monotonic() + kill_after
        while time.monotonic() < deadline and proc.running():
            time.sleep(0.01)
        killed_at = time.time()
        server.kill9_after_settling()
        time.sleep(outage)
        if survives:
            server.start()
        runs = [_record(proc, 0, timeout)]
        code = runs[0].exit_code
    finally:
        server.stop()
    label = "retried through" if survives else "fails clearly"
    result = _finish(
        f"server kill -9, {outage:g}s outage, retry {max_retry_seconds:g}s ({label})",
        server,
        workload,
        runs,
        expect_complete=survives,
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
    server = start_local_api(faults=Faults(seed=5, fail_after=fail_after, fail_status=fail_status))
    try:
        overrides: dict[str, t.Any] = {"max_concurrent_requests": 3}
        if status is None:
            overrides["max_retry_seconds"] = 2
        config = target_config(server, SCENARIO_SETTINGS, **overrides)
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
    server = start_local_api(faults=Faults(seed=1, latency_ms=latency_ms, jitter_ms=latency_ms / 2))
    try:
        config = target_config(server, SCENARIO_SETTINGS, max_points_per_request=100, max_concurrent_requests=4)
        proc = TargetProcess(config, workdir, stdin=path)
        run = _record(proc, 0, timeout)
        code = run.exit_code
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
    other = start_local_api()
    server = start_local_api(
        faults=Faults(seed=5, upsert_status=status, upsert_status_skip=after, redirect_url=other.base_url)
    )
    try:
        config = target_config(server, SCENARIO_SETTINGS, max_concurrent_requests=3)
        run = _run_once(config, workload, workdir, 0, timeout)
        result = _finish(f"answered {status} instead of 201", server, workload, [run], expect_complete=False)
        contacted = len(other.request_log())
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
    server = start_local_api(faults=Faults(seed=3, latency_ms=20))
    try:
        input_path = workdir / "broken-stdout-input.jsonl"
        input_path.write_bytes(workload.text(0))
        proc = TargetProcess(target_config(server, SCENARIO_SETTINGS), workdir, stdin=input_path, stdout_lines_max=1)
        run = _record(proc, 0, timeout)
        code, stderr = run.exit_code, run.stderr
        result = _finish("STATE reader goes away", server, workload, [run], expect_complete=False)
        unsettled = [e for e in server.request_log() if e.method == "POST" and e.status not in (201, 413)]
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
    server = start_local_api(faults=Faults(seed=3))
    try:
        config = target_config(server, SCENARIO_SETTINGS, request_timeout=30)
        # The input stays open, as a live tap's does: the run cannot end before the signal.
        proc = TargetProcess(config, workdir)
        proc.write(workload.text(0))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(proc.states) < 2:
            time.sleep(0.02)
        server.set_faults(trickle_interval=2.0)
        time.sleep(1.0)  # requests now in flight trickle
        sent_before = len([e for e in server.request_log() if e.method == "POST"])
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        run = _record(proc, 0, timeout)
        code = run.exit_code
        took = time.monotonic() - stopped
        time.sleep(0.5)
        sent_after = len([e for e in server.request_log() if e.method == "POST"])
        result = _finish("SIGTERM while answers trickle", server, workload, [run], expect_complete=False)
    finally:
        server.stop()
    result.note = f"exit {took:.1f}s after SIGTERM"
    if code != 128 + signal.SIGTERM:
        result.problems.append(f"exit {code}, expected {128 + signal.SIGTERM}")
    if took > 20:
        result.problems.append(f"the exit took {took:.0f}s after SIGTERM")
    if sent_after > sent_before:
        result.problems.append(f"{sent_after - sent_before} requests were sent after the stop")
    return result
