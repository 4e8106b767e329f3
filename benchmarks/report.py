"""What the benchmark prints: the machine, the tables of figures, and the goals as PASS/FAIL lines."""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import statistics
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from benchmarks.measure import ADAPTIVE, ADAPTIVE_CEILING, FIXED_AT_LIMIT, REPO, THROTTLED_SERVER, PushLoop, Result

_UTC = datetime.timezone.utc
#: "Memory flat" (issue 5): peak RSS at the largest size over the smallest, at most.
MEMORY_GROWTH_MAX = 1.25
#: Start-up of D (defaults) over C's (the do-nothing SDK target), at most (issue 18).
STARTUP_RATIO_MAX = 1.1
#: CPU microseconds of one ``RJMetricsClient.push()`` of 100 points, at most (issue 18).
REQUEST_CPU_US_MAX = 300.0
#: 0 ms: CPU per record of D (defaults) over F1's, at most (issue 18), at this size.
CPU_PER_RECORD_RATIO_MAX = 1.1
CPU_PER_RECORD_SIZE = 300_000
#: Adaptive concurrency (issue 18): records/s over the fixed limit's, at least; share of POSTs
#: answered 429, at most.
ADAPTIVE_RATE_MIN = 0.9
ADAPTIVE_THROTTLED_MAX = 0.05
# Ratios this large are shown without decimals.
_WHOLE_RATIOS_FROM = 100


@dataclass(frozen=True)
class RateGoal:
    """Contestant ``a``'s records/s over ``b``'s at a latency is at least ``goal``, at ``size`` records."""

    label: str
    a: str
    b: str
    latency_ms: float
    goal: float
    size: int


#: Issue 18's throughput goals, each at the size the issue names.
ISSUE18_RATE_GOALS = (
    RateGoal("0 ms, D(default) vs B (the official clients' way)", "D", "B", 0, 1.5, 300_000),
    RateGoal("50 ms, D(16 in flight) vs F2(16 threads)", "D16", "F2x16", 50, 1.2, 300_000),
    RateGoal("50 ms, D(4 in flight) vs B (sequential; 4x is the limit)", "D4", "B", 50, 3.9, 60_000),
)


def goal_size(wanted: int, sizes: list[int]) -> int:
    """The measured size a goal is judged at: the one it names, else the nearest (ties: the larger)."""
    return min(sorted(sizes, reverse=True), key=lambda size: abs(math.log(size / wanted)))


def whole_runs(sizes: list[int]) -> set[tuple[str, float, int]]:
    """(contestant, latency, size) that issue 18's goals compare: measured on the whole input."""
    runs = set()
    for goal in ISSUE18_RATE_GOALS:
        size = goal_size(goal.size, sizes)
        runs |= {(goal.a, goal.latency_ms, size), (goal.b, goal.latency_ms, size)}
    size = goal_size(CPU_PER_RECORD_SIZE, sizes)
    return runs | {("D", 0, size), ("F1", 0, size)}


def _at(size: int, wanted: int) -> str:
    """Where a goal was judged, and the issue's size when that was not measured."""
    return human(size) if size == wanted else f"{human(size)} (the issue's size, {human(wanted)}, not measured)"


def parse_size(text: str) -> int:
    """A number of records: ``5000``, ``10k``, ``1M``, ``2.5k``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        msg = f"not a size: {text!r} (use e.g. 10k, 1M, 5000)"
        raise argparse.ArgumentTypeError(msg)
    return int(float(match[1]) * {"": 1, "k": 1000, "m": 1_000_000}[match[2].lower()])


def human(n: int) -> str:
    """``10k``, ``1M`` or ``1,234``."""
    for unit, suffix in ((1_000_000, "M"), (1000, "k")):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return f"{n:,}"


def machine_info() -> list[str]:
    """Lines saying when, on what and at which commit the benchmark ran."""
    cpu_model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "target_rjmetrics"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    state = f"{commit}" + (" + uncommitted changes in target_rjmetrics/" if dirty else "")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"date        {datetime.datetime.now(_UTC):%Y-%m-%d %H:%M:%S} UTC",
        (
            f"machine     {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {cpu_model}, "
            f"{platform.system()} {platform.release()}"
        ),
        (
            f"python      {platform.python_implementation()} {platform.python_version()}; "
            f"singer-sdk {metadata.version('singer-sdk')}; requests {metadata.version('requests')}; "
            f"target-rjmetrics {metadata.version('target-rjmetrics')} at {state}"
        ),
        f"load avg    {load} (1/5/15 min) at start",
    ]


def ratio(a: Result, b: Result | None) -> str:
    """``a``'s rate over ``b``'s, or ``-`` when either did not count."""
    if b is None or not b.ok or not a.ok or not b.rate:
        return "-"
    value = a.rate / b.rate
    return f"{value:.0f}x" if value >= _WHOLE_RATIOS_FROM else f"{value:.2f}x"


def steady_rate(r: Result, startup: dict[str, float]) -> float | None:
    """Records per second once started: the run's wall time minus the contestant's start-up."""
    begin = startup.get(r.contestant.name, 0.0)
    if not r.ok or not begin or r.wall - begin < max(0.5, 0.25 * r.wall):
        return None  # start-up is most of the run: the difference would be noise
    return (r.records - 1) / (r.wall - begin)


def _us(value: float | None) -> str:
    return f"{value:,.1f}" if value is not None else "-"


def _per(cpu: float, count: int) -> float | None:
    """Microseconds of ``cpu`` seconds per item (None without items)."""
    return cpu * 1e6 / count if count > 0 else None


def table(results: list[Result], startup: dict[str, float], startup_cpu: dict[str, float]) -> list[str]:
    """The figures, one row per measurement, grouped by latency and size.

    CPU per record and per request leave out the contestant's start-up CPU (imports, the
    first request), which would otherwise dominate small inputs.
    """
    by_key = {(r.contestant.name, r.latency_ms, r.size): r for r in results}
    head = (
        f"{'contestant':<30} {'lat':>5} {'size':>5} {'measured on':<20} {'records/s':>10} {'(steady)':>9} "
        f"{'vs A':>6} {'vs B':>6} {'vs C':>6} {'vs F1':>6} {'CPU s':>7} {'us/rec':>7} {'us/req':>8} "
        f"{'RSS MiB':>8} {'srv CPU':>8} {'others':>6}"
    )
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
        versus = [ratio(r, by_key.get((base, lat, size))) if name != base else "" for base in ("A", "B", "C", "F1")]
        work = max(0.0, r.cpu - startup_cpu.get(name, 0.0))
        per_record, per_request = _per(work, r.records - 1), _per(work, r.requests - 1)
        lines.append(
            f"{r.contestant.label:<30} {lat:>3g}ms {human(size):>5} {measured:<20} {rate:>10} {steady_text:>9} "
            f"{versus[0]:>6} {versus[1]:>6} {versus[2]:>6} {versus[3]:>6} "
            f"{r.cpu:>7.1f} {_us(per_record):>7} {_us(per_request):>8} "
            f"{r.rss_mib:>8.0f} {r.server_cpu if r.contestant.http else 0:>8.1f} {r.others_cores:>6.2f}"
        )
    return lines


def cpu_per_record(r: Result, startup_cpu: dict[str, float]) -> float | None:
    """CPU microseconds per record beyond start-up (the start-up run's CPU taken off)."""
    begin = startup_cpu.get(r.contestant.name)
    if not r.ok or not begin:
        return None
    return _per(max(0.0, r.cpu - begin), r.records - 1)


def push_loop_lines(loops: dict[str, list[PushLoop]], labels: dict[str, str]) -> list[str]:
    """One row per way of sending: the median CPU per request, each run's, wall per request."""
    lines = []
    for way, runs in loops.items():
        good = [run for run in runs if not run.problem]
        if not good:
            lines.append(f"  {labels[way]:<28} FAILED: {runs[0].problem if runs else 'not run'}")
            continue
        cpu = statistics.median(run.cpu_us for run in good)
        wall = statistics.median(run.wall * 1e6 / run.requests for run in good)
        each = ", ".join(f"{run.cpu_us:.0f}" for run in good)
        lines.append(f"  {labels[way]:<28} {cpu:6.0f} us CPU/request (runs: {each}) {wall:7.0f} us wall/request")
    return lines


def adaptive_lines(runs: list[Result]) -> list[str]:
    """One row per run of the adaptive scenario, in the order run."""
    lines = []
    for r in runs:
        share = r.throttled / r.requests if r.requests else 0.0
        status = f"{r.rate:>8,.0f} records/s" if r.ok else "FAILED: " + "; ".join(r.problems)
        lines.append(
            f"  {r.contestant.label:<30} {r.records:>7,} records {r.wall:6.1f} s {status}  "
            f"{r.requests:>5,} POSTs, {r.throttled:>4,} answered 429 ({share:5.1%}), {r.cpu:5.1f} s CPU, "
            f"others {r.others_cores:.2f}"
        )
    return lines


class _Goals:
    """Collects PASS/FAIL lines of goals."""

    def __init__(self, results: list[Result], sizes: list[int], startup: dict[str, float]) -> None:
        self.by_key = {(r.contestant.name, r.latency_ms, r.size): r for r in results}
        self.sizes = sizes
        self.startup = startup
        self.lines: list[str] = []

    def _measured(self, *keys: tuple[str, float, int]) -> list[Result] | None:
        """The runs of ``keys``, or None unless every one was measured and counts."""
        found = [self.by_key.get(key) for key in keys]
        good = [r for r in found if r is not None and r.ok]
        return good if len(good) == len(keys) else None

    def ratio(
        self,
        label: str,
        a: tuple[str, float, int],
        b: tuple[str, float, int],
        goal: float,
        stretch: float | None = None,
    ) -> None:
        both = self._measured(a, b)
        if both is None:
            self.lines.append(f"  n/a   {label}: not measured")
            return
        first, second = both
        value = first.rate / second.rate
        verdict = "PASS" if value >= goal else "FAIL"
        extra = f"; stretch {stretch:g}x: {'PASS' if value >= stretch else 'FAIL'}" if stretch is not None else ""
        steady_a, steady_b = steady_rate(first, self.startup), steady_rate(second, self.startup)
        steady = f"; steady {steady_a / steady_b:,.2f}x" if steady_a and steady_b else ""
        prefix = "; on prefixes" if first.prefix or second.prefix else ""
        self.lines.append(f"  {verdict:<5} {label}: {value:,.2f}x (goal >= {goal:g}x{extra}){steady}{prefix}")

    def rate_goal(self, goal: RateGoal) -> None:
        size = goal_size(goal.size, self.sizes)
        key_a, key_b = (goal.a, goal.latency_ms, size), (goal.b, goal.latency_ms, size)
        self.ratio(f"{_at(size, goal.size)}: {goal.label}", key_a, key_b, goal.goal)

    def cpu_per_record(self, startup_cpu: dict[str, float]) -> None:
        size = goal_size(CPU_PER_RECORD_SIZE, self.sizes)
        label = f"{_at(size, CPU_PER_RECORD_SIZE)}: 0 ms, CPU per record beyond start-up, D(default) vs F1"
        both = self._measured(("D", 0, size), ("F1", 0, size))
        d, f1 = (cpu_per_record(r, startup_cpu) for r in both) if both else (None, None)
        if not d or not f1:
            self.lines.append(f"  n/a   {label}: not measured")
            return
        value = d / f1
        verdict = "PASS" if value <= CPU_PER_RECORD_RATIO_MAX else "FAIL"
        self.lines.append(
            f"  {verdict:<5} {label}: {d:.1f} / {f1:.1f} us = {value:.2f}x (goal <= {CPU_PER_RECORD_RATIO_MAX:g}x)"
        )

    def memory(self) -> None:
        small, large = min(self.sizes), max(self.sizes)
        if small == large:
            self.lines.append("  n/a   peak memory goal: one size only")
            return
        lo, hi = self.by_key.get(("D", 0, small)), self.by_key.get(("D", 0, large))
        if lo and hi and lo.ok and hi.ok and not hi.prefix:
            growth = hi.rss_mib / lo.rss_mib
            verdict = "PASS" if growth <= MEMORY_GROWTH_MAX else "FAIL"
            self.lines.append(
                f"  {verdict:<5} peak RSS of D(default, 0 ms) at {human(large)} vs {human(small)}: "
                f"{hi.rss_mib:.0f} / {lo.rss_mib:.0f} MiB = {growth:.2f}x (goal <= {MEMORY_GROWTH_MAX:g}x)"
            )
        else:
            self.lines.append("  n/a   peak memory goal: D(default) at 0 ms not measured on both full inputs")

    def startup_goal(self) -> None:
        d, c = self.startup.get("D"), self.startup.get("C")
        if not d or not c:
            self.lines.append("  n/a   start-up of D(default) vs C: D and C start-ups not both measured")
            return
        value = d / c
        verdict = "PASS" if value <= STARTUP_RATIO_MAX else "FAIL"
        self.lines.append(
            f"  {verdict:<5} start-up of D(default) vs C (medians of interleaved runs): {d:.2f} / {c:.2f} s "
            f"= {value:.2f}x (goal <= {STARTUP_RATIO_MAX:g}x)"
        )

    def request_cpu(self, loops: dict[str, list[PushLoop]]) -> None:
        label = "CPU per request of RJMetricsClient.push() (100 points, 0 ms)"
        medians = {
            way: statistics.median(run.cpu_us for run in runs if not run.problem)
            for way, runs in loops.items()
            if any(not run.problem for run in runs)
        }
        client = medians.get("client")
        if client is None:
            self.lines.append(f"  n/a   {label}: not measured")
            return
        verdict = "PASS" if client <= REQUEST_CPU_US_MAX else "FAIL"
        beside = "".join(
            f"; {name} {medians[way]:.0f} us (client {client / medians[way]:.2f}x of it)"
            for way, name in (("session", "requests.Session().post"), ("http.client", "http.client"))
            if way in medians
        )
        self.lines.append(f"  {verdict:<5} {label}: {client:.0f} us (goal <= {REQUEST_CPU_US_MAX:g} us){beside}")

    def adaptive(self, runs: list[Result]) -> None:
        adaptive = [r for r in runs if r.contestant is ADAPTIVE]
        fixed = [r for r in runs if r.contestant is FIXED_AT_LIMIT]
        limit = THROTTLED_SERVER["max_in_flight"]
        label = (
            f"{THROTTLED_SERVER['latency_ms']} ms, server takes {limit} in flight (429 beyond), "
            f"D adaptive (ceiling {ADAPTIVE_CEILING}) vs D fixed {limit}"
        )
        if not adaptive or not fixed or not all(r.ok for r in adaptive + fixed):
            self.lines.append(f"  n/a   {label}: not measured (or a run failed)")
            return
        rate_a = statistics.median(r.rate for r in adaptive)
        rate_f = statistics.median(r.rate for r in fixed)
        value = rate_a / rate_f
        verdict = "PASS" if value >= ADAPTIVE_RATE_MIN else "FAIL"
        self.lines.append(
            f"  {verdict:<5} {human(adaptive[0].records)}: {label}: {rate_a:,.0f} / {rate_f:,.0f} records/s = "
            f"{value:.2f}x (goal >= {ADAPTIVE_RATE_MIN:g}x; medians of {len(adaptive)} interleaved runs each)"
        )
        shares = [r.throttled / r.requests for r in adaptive if r.requests]
        share = statistics.median(shares) if shares else 0.0
        fixed_shares = [r.throttled / r.requests for r in fixed if r.requests]
        verdict = "PASS" if share <= ADAPTIVE_THROTTLED_MAX else "FAIL"
        self.lines.append(
            f"  {verdict:<5} {human(adaptive[0].records)}: POSTs of D adaptive answered 429: {share:.1%} "
            f"(goal <= {ADAPTIVE_THROTTLED_MAX:.0%}; median; runs {', '.join(f'{x:.1%}' for x in shares)}; "
            f"D fixed {limit}: {', '.join(f'{x:.1%}' for x in fixed_shares)})"
        )


def goals_issue5(results: list[Result], sizes: list[int], startup: dict[str, float]) -> list[str]:
    """Issue 5's goals that issue 18 left standing: against the docs' loop and the null SDK target; memory.

    Its 50 ms D(4 in flight) vs B (3.5x) gave way to issue 18's 3.9x; every goal of issue 12 gave
    way to issue 18's (see benchmarks/README.md).
    """
    goals = _Goals(results, sizes, startup)
    for size in sizes:
        goals.ratio(f"{human(size)}: 50 ms, D(4 in flight) vs A", ("D4", 50, size), ("A", 50, size), 200)
        goals.ratio(f"{human(size)}: 0 ms sandbox, D(default) vs C", ("D", 0, size), ("C", 0, size), 1.0, 1.5)
    goals.memory()
    return goals.lines


def goals_issue18(
    results: list[Result],
    sizes: list[int],
    startup: dict[str, float],
    startup_cpu: dict[str, float],
    loops: dict[str, list[PushLoop]],
    adaptive: list[Result],
) -> list[str]:
    """Issue 18's goals: CPU per request and per record, throughput, start-up, adaptive concurrency."""
    goals = _Goals(results, sizes, startup)
    goals.request_cpu(loops)
    goals.cpu_per_record(startup_cpu)
    for goal in ISSUE18_RATE_GOALS:
        goals.rate_goal(goal)
    goals.startup_goal()
    goals.adaptive(adaptive)
    return goals.lines
