"""Runs benchmark contestants for ``benchmarks.run`` and reports what ``os.wait4`` said of each.

Contestants are started by this small process, not by ``benchmarks.run`` itself. On Linux a
child's ``ru_maxrss`` starts from the high-water RSS of the memory image it replaced at exec,
which for a (v)fork of ``benchmarks.run`` is that process's own (over 100 MiB once it has
generated 1M records): every child would report at least that. This launcher imports only
the standard library and :mod:`tests.support.processes` and stays at ~10 MiB, so it is started
once, early, with ``python -S -m benchmarks.launcher`` (no site-packages).

Protocol: one JSON job per line on standard input, ``{"cmd", "cwd", "env", "stdin", "stdout",
"stderr", "timeout"}`` (paths of files); one JSON line per job on standard output,
``[exit code, wall seconds, user+system CPU seconds, peak RSS MiB]``. A contestant that outlives
its timeout is killed (exit code -9).
"""

from __future__ import annotations

import json
import sys
import typing as t
from pathlib import Path

from tests.support.processes import ChildProcess


class Job(t.TypedDict):
    """One contestant run: the command, its working directory and environment, files, timeout."""

    cmd: list[str]
    cwd: str
    env: dict[str, str]
    stdin: str
    stdout: str
    stderr: str
    timeout: float


def run(job: Job) -> tuple[int, float, float, float]:
    """Run one job; return its exit code, wall seconds, CPU seconds and peak RSS in MiB."""
    child = ChildProcess(
        job["cmd"],
        stdin=Path(job["stdin"]),
        stdout_file=Path(job["stdout"]),
        stderr_file=Path(job["stderr"]),
        env=job["env"],
        cwd=Path(job["cwd"]),
        watch_memory=False,
    )
    try:
        code = child.wait(job["timeout"])
    except TimeoutError:
        code = -9  # killed by wait
    return code, child.wall or 0.0, child.cpu_seconds or 0.0, child.max_rss_kib / 1024


def main() -> int:
    """Serve jobs until standard input ends."""
    for line in sys.stdin:
        print(json.dumps(run(t.cast("Job", json.loads(line)))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
