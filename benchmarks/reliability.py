"""Reliability campaign at scale: the scenarios of tests/reliability, bigger, with a table of figures.

Run on purpose (not part of the test suite)::

    .venv/bin/python -m benchmarks.reliability            # default scale, bounded to ~15 min on 2 cores
    .venv/bin/python -m benchmarks.reliability --quick    # the test suite's scale, a few minutes

Every scenario loads streams whose keys are updated many times into a local Import API on a
loopback port while something attacks the target (injected faults, late applies of abandoned
requests, trickling answers, kills, a server that dies, a permanent refusal, answers other than
201 and redirects, a STATE reader that goes away, a stop while requests are stuck), then prints
one row: records sent, records that landed (covered by the stored version of their key), whether
the final rows equal the last version of each key in input order, STATE messages emitted, STATE
messages ahead of landed data (must be 0), transient failures retried, and the exit code of the
last run. The scenario code is shared
with the tests (``tests/reliability/scenarios.py``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import typing as t
from functools import partial
from pathlib import Path

from tests.reliability import scenarios as rs


class Campaign:
    """Runs scenarios one after another, printing each outcome as it comes."""

    def __init__(self) -> None:
        """Start with no results."""
        self.results: list[rs.Result] = []
        self.notes: list[str] = []

    def run(self, scenario: t.Callable[[], rs.Result]) -> rs.Result:
        """Run one scenario and record its result."""
        began = time.monotonic()
        return self.record(scenario(), time.monotonic() - began)

    def record(self, result: rs.Result, seconds: float) -> rs.Result:
        """Record a scenario's result and print it."""
        self.results.append(result)
        flag = "ok" if not result.problems else "PROBLEMS"
        print(f"  {result.scenario}: {flag} in {seconds:.1f}s {result.note}", flush=True)
        for problem in result.problems[:5]:
            print(f"    - {problem[:400]}", flush=True)
        if result.note:
            self.notes.append(f"{result.scenario}: {result.note}")
        return result


def _run_all(campaign: Campaign, args: argparse.Namespace, work: Path) -> None:
    if args.quick:
        workload = rs.Workload(n_keys=150, rounds=8, seed=args.seed, state_every=97)
        kills = args.kills or 3
        memory_sizes = (8_000, 40_000)
    else:
        workload = rs.Workload(n_keys=600, rounds=10, seed=args.seed, state_every=250)
        kills = args.kills or 6
        memory_sizes = (20_000, 100_000)
    small = rs.Workload(
        streams=("users", "shop-orders"),
        n_keys=workload.n_keys,
        rounds=6,
        seed=args.seed,
        state_every=workload.state_every // 2,
    )
    print(
        f"workload: {len(workload.streams)} streams x {workload.n_keys} keys x {workload.rounds} rounds = "
        f"{workload.total:,} records, STATE every {workload.state_every}",
        flush=True,
    )
    seed = args.seed
    for kind in rs.FAULT_KINDS:
        campaign.run(partial(rs.fault_scenario, kind, workload, work, seed=seed + 6))
    for sigs in (
        [signal.SIGKILL] * kills,
        [signal.SIGTERM] * kills,
        [signal.SIGKILL, signal.SIGTERM] * (kills // 2),
    ):
        campaign.run(partial(rs.kill_resume_scenario, sigs, workload, work, seed=seed + 10, kill_window=(0.9, 4.0)))
    campaign.run(partial(rs.server_restart_scenario, workload, work, outage=3.0, max_retry_seconds=60))
    campaign.run(partial(rs.server_restart_scenario, workload, work, outage=6.0, max_retry_seconds=2))
    for failing in (400, 401, 404, None):
        campaign.run(partial(rs.permanent_failure_scenario, failing, small, work, fail_after=30))
    for answered in (200, 204, 302, 307):
        campaign.run(partial(rs.unexpected_answer_scenario, answered, small, work, after=30))
    campaign.run(partial(rs.broken_stdout_scenario, small, work))
    campaign.run(partial(rs.sigterm_while_stuck_scenario, small, work))
    peaks = []
    for size in memory_sizes:
        began = time.monotonic()
        peak, result = rs.memory_scenario(size, work, latency_ms=60)
        campaign.record(result, time.monotonic() - began)
        peaks.append(peak)
    if all(peaks):
        campaign.notes.append(
            f"peak memory ratio {memory_sizes[1]:,} vs {memory_sizes[0]:,} records: {peaks[1] / peaks[0]:.2f}"
        )


def main() -> int:
    """Run the campaign and print its table; exit code 1 if any scenario went wrong."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the test suite's scale (a few minutes)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the input order, faults and kill moments")
    parser.add_argument("--kills", type=int, default=None, help="kills per kill/resume scenario")
    args = parser.parse_args()

    campaign = Campaign()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rjm-reliability-") as tmp:
        _run_all(campaign, args, Path(tmp))

    print()
    print(rs.format_table(campaign.results))
    print()
    for note in campaign.notes:
        print(f"note: {note}")
    failed = [r.scenario for r in campaign.results if r.problems or r.ahead]
    print(
        f"\n{len(campaign.results)} scenarios in {time.monotonic() - started:.0f}s; "
        f"{'all as expected' if not failed else 'UNEXPECTED: ' + ', '.join(failed)}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
