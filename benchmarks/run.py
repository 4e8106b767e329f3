"""Throughput of target-rjmetrics against the alternatives a user has, in one run.

Run on purpose from the repository root (not part of the test suite)::

    .venv/bin/python -m benchmarks.run                 # sizes 60k and 300k, ~20 minutes on 2 cores
    .venv/bin/python -m benchmarks.run --quick         # sizes 20k and 60k, short caps, ~6 minutes
    .venv/bin/python -m benchmarks.run --profile 100k  # target-rjmetrics once under cProfile

It generates deterministic Singer input once per size (``benchmarks/inputs.py``, cached in a
temporary directory), starts the local Import API as a subprocess (its own process, so it does
not share a GIL with what it measures) in sandbox mode, and runs every contestant
(``benchmarks/measure.py``) as a subprocess of ``benchmarks/launcher.py`` reading the same file
on standard input:

- A: the docs' ``sync_user`` loop, one POST per record (``baselines/docs_loop.py``);
- B: sequential requests of 100, as the official clients send them (``baselines/official_client.py``);
- C: a do-nothing Singer SDK target, the floor of any SDK target (``baselines/null_target.py``);
- F1: the target's work done by a plain script on one connection (``baselines/floor.py``);
- F2: the same with 4 and with 16 sending threads and no key ordering;
- D: target-rjmetrics with its defaults, and with ``max_concurrent_requests`` 1, 4 and 16;

each at 0 ms and at 50 ms of server latency (set with ``PUT /_local/faults``). Wall time,
CPU seconds and peak RSS come from ``os.wait4`` on each child. Slow contestants are measured
on a prefix of the input sized to fit ``--max-seconds`` and marked so, except where a goal
compares them. Two scenarios more:

- per-request: ``baselines/push_loop.py`` sends one 100-point body 2,000 times through
  ``RJMetricsClient.push()``, a ``requests.Session`` and ``http.client``, and times its CPU;
- adaptive: at 50 ms against a server that answers 429 beyond 6 requests in flight, the target
  with ``adaptive_concurrency`` (ceiling 32) against the target with 6 fixed, interleaved.

Every figure is printed beside the baselines measured in the same run (``benchmarks/report.py``),
and the goals of issue 18 (and those of issue 5 it left standing) as PASS/FAIL lines; nothing
here is a test.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.inputs import describe_input, input_file, prefix_file
from benchmarks.measure import (
    ADAPTIVE,
    CONTESTANTS,
    FIXED_AT_LIMIT,
    PY,
    THROTTLED_SERVER,
    Contestant,
    Launcher,
    PushLoop,
    Result,
    check_landed,
    measure,
    measure_push_loop,
    plan,
    start_server,
    target_config_file,
)
from benchmarks.report import (
    adaptive_lines,
    goals_issue5,
    goals_issue18,
    human,
    machine_info,
    parse_size,
    push_loop_lines,
    steady_rate,
    table,
    whole_runs,
)

LATENCIES_MS = (0, 50)
#: Start-up runs per contestant (the median is kept).
STARTUP_RUNS = 7
#: Sizes measured by default and with --quick (issue 18 names 300k at 0 ms and 60k at 50 ms).
SIZES = [60_000, 300_000]
QUICK_SIZES = [20_000, 60_000]
#: The scenarios besides the contestants, by the name --only knows them by.
PER_REQUEST, ADAPTIVE_SCENARIO = "per-request", "adaptive"
#: Per-request scenario: the ways of sending (push_loop.py --way), as the table labels them.
PUSH_WAYS = {
    "client": "RJMetricsClient.push()",
    "session": "requests.Session().post",
    "http.client": "http.client (raw)",
}
PUSH_REQUESTS, PUSH_WARM_UP = 2000, 200
#: Per-request scenario: interleaved rounds (default, --quick).
PUSH_ROUNDS, PUSH_ROUNDS_QUICK = 5, 3
#: Adaptive scenario: records per run (default, --quick) and interleaved runs of each setup.
ADAPTIVE_RECORDS, ADAPTIVE_RECORDS_QUICK, ADAPTIVE_ROUNDS = 60_000, 30_000, 3
_UTC = datetime.timezone.utc


def profile(launcher: Launcher, size: int, cache: Path, workdir: Path, top: int) -> int:
    """Run the target once under cProfile on ``size`` records and print its top functions."""
    full = input_file(cache, size)
    out = workdir / f"target-rjmetrics-{size}.pstats"
    server = start_server(workdir, sandbox=True)
    try:
        cmd = [
            PY,
            "-m",
            "cProfile",
            "-o",
            str(out),
            "-m",
            "target_rjmetrics",
            "--config",
            str(target_config_file(server, workdir, None)),
        ]
        code, wall, cpu, rss = launcher.run(cmd, full, workdir / "profile.stdout", workdir / "profile.stderr", 3600)
    finally:
        server.stop()
    print(
        f"target-rjmetrics (defaults) on {size:,} records, sandbox server at 0 ms, under cProfile: "
        f"exit {code}, {wall:.1f} s wall, {cpu:.1f} s CPU, {rss:.0f} MiB peak RSS"
    )
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [parse_size(x) for x in s.split(",")],
        default=None,
        help="input sizes in records, comma separated (default 60k,300k; --quick 20k,60k)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes and short caps (~6 minutes)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="about how long one measurement may take; slower contestants are measured "
        "on a prefix of the input (default 40, --quick 6)",
    )
    names = ",".join([*(c.name for c in CONTESTANTS), PER_REQUEST, ADAPTIVE_SCENARIO])
    parser.add_argument(
        "--only", default=None, help=f"contestants and scenarios to run, comma separated from {names} (default all)"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the correctness pass")
    parser.add_argument(
        "--profile",
        type=parse_size,
        metavar="SIZE",
        default=None,
        help="instead of the table: run target-rjmetrics once under cProfile on SIZE records "
        "and print the top functions by cumulative and by total time",
    )
    parser.add_argument("--top", type=int, default=25, help="functions listed by --profile (default 25)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "target-rjmetrics-bench",
        help="where generated input is kept between runs",
    )
    return parser


def _chosen(parser: argparse.ArgumentParser, only: str | None) -> tuple[list[Contestant], set[str]]:
    """The contestants and the scenarios (``per-request``, ``adaptive``) to run."""
    scenarios = {PER_REQUEST, ADAPTIVE_SCENARIO}
    if only is None:
        return list(CONTESTANTS), scenarios
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(wanted) - {c.name for c in CONTESTANTS} - scenarios)
    if unknown:
        parser.error(f"--only: unknown contestants or scenarios {', '.join(unknown)}")
    return [c for c in CONTESTANTS if c.name in wanted], scenarios & set(wanted)


def _startups(
    launcher: Launcher, chosen: list[Contestant], workdir: Path, full: Path, size: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Each contestant's start-up (SCHEMAs and one record) at 0 ms: median wall and CPU seconds.

    The runs are interleaved (every contestant once, then again), so a change in the machine's
    load during the measurement falls on all of them alike.
    """
    server = start_server(workdir, sandbox=True)
    runs: dict[str, list[Result]] = {c.name: [] for c in chosen}
    try:
        server.set_faults(latency_ms=0)
        for _ in range(STARTUP_RUNS):
            for contestant in chosen:
                runs[contestant.name].append(measure(launcher, contestant, server, workdir, full, size, 1, 0, 120.0))
    finally:
        server.stop()
    print(
        f"start-up (0 ms, SCHEMAs and one record; imports, authenticate, one request, exit; median of "
        f"{STARTUP_RUNS} interleaved runs):",
        flush=True,
    )
    startup: dict[str, float] = {}
    startup_cpu: dict[str, float] = {}
    for contestant in chosen:
        mine = runs[contestant.name]
        failed = [r for r in mine if not r.ok]
        wall = statistics.median(r.wall for r in mine)
        cpu = statistics.median(r.cpu for r in mine)
        rss = statistics.median(r.rss_mib for r in mine)
        startup[contestant.name] = wall if not failed else 0.0
        startup_cpu[contestant.name] = cpu if not failed else 0.0
        print(
            f"  {contestant.label:<30} {wall:5.2f} s wall {cpu:5.2f} s CPU {rss:4.0f} MiB"
            + ("" if not failed else "  FAILED: " + "; ".join(failed[0].problems)),
            flush=True,
        )
    print()
    return startup, startup_cpu


def _push_loops(launcher: Launcher, workdir: Path, rounds: int) -> dict[str, list[PushLoop]]:
    """CPU per request of each way of sending, in interleaved rounds, against a sandbox server at 0 ms."""
    print(
        f"CPU per request (baselines/push_loop.py: one body of 100 points sent {PUSH_WARM_UP:,} times untimed, "
        f"then {PUSH_REQUESTS:,} times timed, one at a time on one connection; sandbox server at 0 ms; "
        f"{rounds} interleaved rounds):",
        flush=True,
    )
    loops: dict[str, list[PushLoop]] = {way: [] for way in PUSH_WAYS}
    server = start_server(workdir, sandbox=True)
    try:
        server.set_faults(latency_ms=0)
        for _ in range(rounds):
            for way in PUSH_WAYS:
                loops[way].append(measure_push_loop(launcher, server, workdir, way, PUSH_REQUESTS, PUSH_WARM_UP))
    finally:
        server.stop()
    for line in push_loop_lines(loops, PUSH_WAYS):
        print(line, flush=True)
    print()
    return loops


def _adaptive(launcher: Launcher, workdir: Path, files: dict[int, Path], records: int) -> list[Result]:
    """The target with adaptive concurrency and with a fixed limit, interleaved, against a throttling server."""
    size = min((s for s in files if s >= records), default=max(files))
    records = min(records, size)
    source = files[size] if records == size else prefix_file(files[size], records)
    settings = ", ".join(f"{k} {v}" for k, v in THROTTLED_SERVER.items())
    print(
        f"adaptive concurrency (sandbox server with {settings}: 429 beyond that many in flight, set with "
        f"PUT /_local/faults; {human(records)} records; {ADAPTIVE_ROUNDS} interleaved rounds):",
        flush=True,
    )
    runs: list[Result] = []
    server = start_server(workdir, sandbox=True)
    try:
        server.set_faults(**THROTTLED_SERVER)
        for _ in range(ADAPTIVE_ROUNDS):
            for contestant in (ADAPTIVE, FIXED_AT_LIMIT):
                latency = float(THROTTLED_SERVER["latency_ms"])
                runs.append(measure(launcher, contestant, server, workdir, source, records, records, latency, 600))
                print(adaptive_lines(runs[-1:])[0], flush=True)
    finally:
        server.stop()
    print()
    return runs


def _measure_all(
    launcher: Launcher,
    chosen: list[Contestant],
    workdir: Path,
    files: dict[int, Path],
    sizes: list[int],
    max_seconds: float,
    startup: dict[str, float],
) -> list[Result]:
    results: list[Result] = []
    history: dict[tuple[str, float], float] = {}
    whole = whole_runs(sizes)
    server = start_server(workdir, sandbox=True)
    try:
        for size in sizes:
            for latency in LATENCIES_MS:
                server.set_faults(latency_ms=latency)
                for contestant in chosen:
                    if not contestant.http and latency != LATENCIES_MS[0]:
                        zero = next(
                            (
                                r
                                for r in results
                                if r.contestant is contestant and r.size == size and r.latency_ms == LATENCIES_MS[0]
                            ),
                            None,
                        )
                        if zero is not None:
                            results.append(Result(**{**zero.__dict__, "latency_ms": latency, "reused_from_0ms": True}))
                            continue
                    must = (contestant.name, latency, size) in whole
                    begin = startup.get(contestant.name, 0.0)
                    records = plan(contestant, latency, size, max_seconds, history, begin, whole=must)
                    hard = (
                        3600.0 if records == size and (must or contestant.full_at_0ms) else max(120.0, 6 * max_seconds)
                    )
                    print(
                        f"  {contestant.label:<30} {latency:>3g} ms {human(size):>5} "
                        f"{'all' if records == size else f'prefix {records:,}':<16}",
                        end="",
                        flush=True,
                    )
                    r = measure(launcher, contestant, server, workdir, files[size], size, records, latency, hard)
                    results.append(r)
                    if r.ok and r.wall > 0:
                        history[(contestant.name, latency)] = steady_rate(r, startup) or r.rate
                    status = f"{r.rate:>10,.0f} records/s" if r.ok else "FAILED: " + "; ".join(r.problems)
                    print(f" {r.wall:6.1f} s {status}", flush=True)
    finally:
        server.stop()
    return results


def _legend() -> None:
    print("\nrecords/s: input records (or the prefix measured) over the child's wall time, start-up included;")
    print("  (steady): the same without the contestant's start-up time measured above (verdicts use records/s);")
    print("  a run counts only if it exited 0 and the server accepted its points (D: the final STATE too).")
    print("CPU s / RSS: user+sys seconds and peak RSS of the contestant process (os.wait4); us/rec and us/req:")
    print("  its CPU microseconds beyond start-up (the start-up run's CPU taken off) per input record and per")
    print("  request sent; srv CPU: the server's CPU seconds during the run; others: cores used by other")
    print("  processes on the machine during the run (shared machine: above ~0.2 the row is noisy).")
    print("D default is max_concurrent_requests=4, so 'D default' and 'D ...=4' are the same setup twice;")
    print("  their difference shows the run-to-run noise. A and B send values as the tap wrote them")
    print("  (no date-time conversion, floats for long decimals) and ignore STATE; F1 and F2 do the target's")
    print("  work per record (validation, date-times, nested JSON, encoding) and ignore STATE; F2 keeps no")
    print("  key order.")


def main() -> int:
    """Run the benchmark; exit code 1 if any run failed."""
    parser = _parser()
    args = parser.parse_args()
    sizes = sorted(set(args.sizes or (QUICK_SIZES if args.quick else SIZES)))
    max_seconds = args.max_seconds or (6.0 if args.quick else 40.0)
    chosen, scenarios = _chosen(parser, args.only)
    args.cache_dir.mkdir(parents=True, exist_ok=True)

    launcher = Launcher()  # now, while this process is small (see benchmarks/launcher.py)
    try:
        with tempfile.TemporaryDirectory(prefix="rjm-bench-") as tmp:
            workdir = Path(tmp)
            if args.profile is not None:
                return profile(launcher, args.profile, args.cache_dir, workdir, args.top)
            return _benchmark(launcher, chosen, scenarios, sizes, max_seconds, args, workdir)
    finally:
        launcher.close()


def _benchmark(
    launcher: Launcher,
    chosen: list[Contestant],
    scenarios: set[str],
    sizes: list[int],
    max_seconds: float,
    args: argparse.Namespace,
    workdir: Path,
) -> int:
    began = time.monotonic()
    print("target-rjmetrics throughput benchmark")
    for line in machine_info():
        print("  " + line)
    print(
        f"  sizes {', '.join(human(s) for s in sizes)}; prefix cap ~{max_seconds:g} s per measurement; "
        "every contestant a subprocess reading the same file on stdin"
    )
    print(
        "  server: rjmetrics-local-api serve --sandbox (a subprocess) for every run; latency 0 ms, then "
        "50 ms set with PUT /_local/faults (sandbox at 50 ms too: it validates like production, and "
        "storing would add the server's SQLite cost to every contestant alike)\n"
    )
    files = {size: input_file(args.cache_dir, size) for size in sizes}
    for size in sizes:
        print(f"  input {human(size)}: {describe_input(files[size])}")
    print()

    if not args.no_check:
        print(
            "correctness pass: persisting in-memory server, 0 ms, "
            f"{human(sizes[0])} input (A on its first 1,000 records)",
            flush=True,
        )
        checked = [c for c in chosen if c.name in ("A", "B", "D", "D16", "F1", "F2x16")]
        for line in check_landed(launcher, checked, files[sizes[0]], workdir):
            print(line, flush=True)
        print()

    startup, startup_cpu = _startups(launcher, chosen, workdir, files[sizes[0]], sizes[0])
    rounds = PUSH_ROUNDS_QUICK if args.quick else PUSH_ROUNDS
    loops = _push_loops(launcher, workdir, rounds) if PER_REQUEST in scenarios else {}
    results = _measure_all(launcher, chosen, workdir, files, sizes, max_seconds, startup)
    adaptive: list[Result] = []
    if ADAPTIVE_SCENARIO in scenarios:
        print()
        adaptive = _adaptive(launcher, workdir, files, ADAPTIVE_RECORDS_QUICK if args.quick else ADAPTIVE_RECORDS)

    print(
        f"\nResults ({datetime.datetime.now(_UTC):%Y-%m-%d %H:%M} UTC, "
        f"total {time.monotonic() - began:.0f} s, load avg at end "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})"
    )
    for line in table(results, startup, startup_cpu):
        print(line)
    _legend()
    for line in _scenario_lines(loops, adaptive):
        print(line)
    print("\nGoals (issue 18; each at the size the issue names when measured):")
    for line in goals_issue18(results, sizes, startup, startup_cpu, loops, adaptive):
        print(line)
    print("\nGoals (issue 5, those issue 18 left standing):")
    for line in goals_issue5(results, sizes, startup):
        print(line)
    failed = [r for r in [*results, *adaptive] if not r.ok]
    for r in failed:
        print(f"  FAILED run {r.contestant.label} {r.latency_ms:g} ms {human(r.size)}: {'; '.join(r.problems)}")
    failed_loops = [run for runs in loops.values() for run in runs if run.problem]
    for run in failed_loops:
        print(f"  FAILED push loop {run.way}: {run.problem}")
    return 1 if failed or failed_loops else 0


def _scenario_lines(loops: dict[str, list[PushLoop]], adaptive: list[Result]) -> list[str]:
    """The per-request and adaptive scenarios' figures, again beside the table."""
    lines = []
    if loops:
        lines.append("\nCPU per request (medians of interleaved runs, start-up and warm-up left out):")
        lines += push_loop_lines(loops, PUSH_WAYS)
    if adaptive:
        lines.append("\nAdaptive concurrency (runs in the order made):")
        lines += adaptive_lines(adaptive)
    return lines


if __name__ == "__main__":
    sys.exit(main())
