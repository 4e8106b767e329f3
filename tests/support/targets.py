"""``target-rjmetrics`` as a process (run to the end, or live) and in this process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

from target_rjmetrics.target import TargetRJMetrics
from tests.support.config import write_config
from tests.support.messages import Message, lines
from tests.support.processes import PIPE, ChildProcess

TARGET_BIN = Path(sys.executable).with_name("target-rjmetrics")
#: Environment variables no test inherits: the target's settings and the local server's.
ENV_PREFIXES = ("TARGET_RJMETRICS_", "RJMETRICS_LOCAL_API")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``TARGET_RJMETRICS_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    env.update(extra)
    return env


def parse_states(stdout: str) -> list[t.Any]:
    """The STATE values a target wrote (one JSON value per line)."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@dataclass(frozen=True)
class Run:
    """The outcome of one run of the target."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def states(self) -> list[t.Any]:
        """The STATE values written (standard output must be JSON lines)."""
        return parse_states(self.stdout)

    @property
    def output(self) -> str:
        """Everything the target printed."""
        return self.stdout + self.stderr


class TargetProcess(ChildProcess):
    """``target-rjmetrics`` as a running process, each STATE line stamped when it was read.

    The stamp is taken after the target wrote the line, so a STATE stamped before the data it
    covers had landed proves a lie.

    Args:
        config: Settings written to a config file in ``workdir``; a path is used as it is;
            ``"ENV"`` passes ``--config ENV``; ``None`` passes no ``--config``.
        workdir: Where the config file is written.
        stdin: Input: bytes or text (fed by a thread), a file, or ``"pipe"`` (:data:`PIPE`) for
            :meth:`send`.
        args: More command-line arguments.
        env: The environment (default :func:`clean_env`).
        stdout_lines_max: Stop reading standard output after this many lines (see
            :class:`~tests.support.processes.ChildProcess`).
    """

    def __init__(
        self,
        config: t.Mapping[str, t.Any] | Path | str | None,
        workdir: Path,
        *,
        stdin: bytes | str | Path | None = PIPE,
        args: t.Sequence[str] = (),
        env: t.Mapping[str, str] | None = None,
        stdout_lines_max: int | None = None,
    ) -> None:
        """Start the target."""
        command: list[str | os.PathLike[str]] = [TARGET_BIN]
        if isinstance(config, t.Mapping):
            fd, name = tempfile.mkstemp(prefix="config-", suffix=".json", dir=workdir)
            os.close(fd)
            command += ["--config", write_config(config, Path(name))]
        elif config is not None:
            command += ["--config", config]
        self.states: list[tuple[float, t.Any]] = []
        self._states_lock = threading.Lock()
        data: bytes | Path | t.Literal["pipe"] | None
        if stdin == PIPE:
            data = "pipe"
        elif isinstance(stdin, str):
            data = stdin.encode()
        else:
            data = stdin
        super().__init__(
            [*command, *args],
            stdin=data,
            env=env if env is not None else clean_env(),
            stdout_lines_max=stdout_lines_max,
        )

    def on_stdout_line(self, stamp: float, line: bytes) -> None:
        """Keep each STATE with the time it was read."""
        if line.strip():
            try:
                value = json.loads(line)
            except ValueError:
                value = {"__not_json__": line.decode(errors="replace")}
            with self._states_lock:
                self.states.append((stamp, value))

    def send(self, messages: t.Iterable[Message | str]) -> None:
        """Write messages to the target's standard input (``stdin="pipe"``)."""
        self.write(lines(messages).encode())

    def wait_for_state(self, predicate: t.Callable[[t.Any], bool], timeout: float) -> float | None:
        """Wait until a written STATE satisfies ``predicate``; return when it was read (or None)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._states_lock:
                for stamp, value in self.states:
                    if predicate(value):
                        return stamp
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def close_input(self, timeout: float = 60) -> int:
        """End the input and wait for the exit code."""
        self.close_stdin()
        return self.wait(timeout)

    def finish(self, timeout: float = 60) -> int:
        """Wait for the exit code and for the output to be read."""
        return self.wait(timeout)

    def run(self, timeout: float) -> Run:
        """Wait for the exit and return what the run printed."""
        code = self.wait(timeout)
        return Run(code, self.stdout, self.stderr)


def run_target(
    args: t.Sequence[str] = (),
    *,
    config: t.Mapping[str, t.Any] | Path | str | None = None,
    stdin: str | bytes | Path = "",
    timeout: float = 120,
    env: t.Mapping[str, str] | None = None,
) -> Run:
    """Run ``target-rjmetrics`` as a process to its end (see :class:`TargetProcess` for ``config``)."""
    with tempfile.TemporaryDirectory() as tmp:
        return TargetProcess(config, Path(tmp), stdin=stdin, args=args, env=env).run(timeout)


def run_cli(
    config: t.Mapping[str, t.Any] | Path | str,
    messages: t.Iterable[Message | str] | str,
    *,
    args: t.Sequence[str] = (),
    timeout: float = 120,
    env: t.Mapping[str, str] | None = None,
) -> Run:
    """Run ``target-rjmetrics --config`` as a process, feeding ``messages`` on standard input."""
    text = messages if isinstance(messages, str) else lines(messages)
    return run_target(args, config=config, stdin=text, timeout=timeout, env=env)


def about(fmt: str | None = "json", *args: str) -> str:
    """What ``target-rjmetrics --about [--format FMT]`` prints (it must succeed)."""
    run = run_target(["--about", *(["--format", fmt] if fmt else []), *args], timeout=60)
    assert run.exit_code == 0, run.stderr[-2000:]
    return run.stdout


def run_in_process(config: dict[str, t.Any], messages: t.Iterable[Message | str] | str) -> Run:
    """Run the target in this process; an exception is re-raised after output is captured."""
    text = messages if isinstance(messages, str) else lines(messages)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        target = TargetRJMetrics(config=config, validate_config=True)
        target.listen(io.StringIO(text))
    return Run(0, out.getvalue(), err.getvalue())
