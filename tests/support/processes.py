"""A child process watched from threads: its output stamped as it comes, its memory, its CPU.

Standard library only: ``benchmarks/launcher.py`` runs every benchmark contestant through
:class:`ChildProcess` and must stay a small process (see there).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import typing as t
from pathlib import Path

if t.TYPE_CHECKING:
    import io

#: ``stdin="pipe"``: the caller writes standard input with :meth:`ChildProcess.write`.
PIPE: t.Final = "pipe"
_CHUNK = 65536
_POLL_S = 0.02


class ChildProcess:
    """A command run as a child process, watched by daemon threads until it is reaped.

    Args:
        command: The program and its arguments.
        stdin: Bytes written by a feeding thread then closed; a file to read; ``"pipe"`` for
            :meth:`write`; or ``None`` for nothing (``/dev/null``).
        stdout_file: Where standard output goes; ``None`` reads it line by line, each line
            stamped with ``time.time()`` when read (after the child wrote it).
        stderr_file: Where standard error goes; ``None`` collects it (:attr:`stderr`).
        env: The environment (``None``: this process's).
        cwd: The working directory.
        watch_memory: Poll ``VmHWM`` of ``/proc/<pid>/status`` into :attr:`peak_rss_kib` while the
            child runs (``ru_maxrss`` of a child forked from a large process starts from that
            process's high-water mark, so :attr:`max_rss_kib` is exact only from a small parent).
        stdout_lines_max: Stop reading standard output after this many lines and close the
            pipe, as ``| head -n N`` does (the reader goes away).

    After :meth:`wait`: :attr:`exit_code` (``-N`` for a signal), :attr:`wall` (seconds from start
    to exit), :attr:`cpu_seconds` (user + system, from ``os.wait4``), :attr:`max_rss_kib`.
    """

    def __init__(
        self,
        command: t.Sequence[str | os.PathLike[str]],
        *,
        stdin: bytes | Path | t.Literal["pipe"] | None = None,
        stdout_file: Path | None = None,
        stderr_file: Path | None = None,
        env: t.Mapping[str, str] | None = None,
        cwd: Path | None = None,
        watch_memory: bool = True,
        stdout_lines_max: int | None = None,
    ) -> None:
        """Start the command."""
        self._files: list[t.IO[bytes]] = []
        stdin_arg: t.Any = subprocess.DEVNULL
        if isinstance(stdin, Path):
            stdin_arg = self._open(stdin, "rb")
        elif stdin is not None:
            stdin_arg = subprocess.PIPE  # bytes to feed, or "pipe"
        stdout_arg = self._open(stdout_file, "wb") if stdout_file is not None else subprocess.PIPE
        stderr_arg = self._open(stderr_file, "wb") if stderr_file is not None else subprocess.PIPE
        self.stdout_lines: list[tuple[float, bytes]] = []
        self._stderr: list[bytes] = []
        self._lock = threading.Lock()
        self.exit_code: int | None = None
        self.ended: float | None = None
        self.wall: float | None = None
        self.cpu_seconds: float | None = None
        self.max_rss_kib = 0
        self.peak_rss_kib = 0
        self._reaped = threading.Event()
        self._stdout_lines_max = stdout_lines_max
        self.started = time.time()
        self._began = time.perf_counter()
        self.proc = subprocess.Popen(
            [os.fspath(part) for part in command],
            stdin=stdin_arg,
            stdout=stdout_arg,
            stderr=stderr_arg,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        self.pid = self.proc.pid
        self.name = Path(os.fspath(command[0])).name
        for handle in self._files:
            handle.close()  # the child holds its own copies
        self._threads: list[threading.Thread] = []
        if watch_memory:
            self._thread(self._watch_memory)
        if stdout_file is None:
            self._thread(self._read_stdout)
        if stderr_file is None:
            self._thread(self._read_stderr)
        if isinstance(stdin, bytes):
            self._thread(self._feed, stdin)

    def _open(self, path: Path, mode: str) -> t.IO[bytes]:
        handle = t.cast("t.IO[bytes]", path.open(mode))  # closed once the child has it
        self._files.append(handle)
        return handle

    def _thread(self, target: t.Callable[..., None], *args: t.Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    # -- the watching threads ---------------------------------------------------------------

    def _watch_memory(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self._reaped.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))
            except (OSError, ValueError, IndexError):
                return  # gone (or no /proc)
            self._reaped.wait(_POLL_S)

    def _feed(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            view = memoryview(data)
            for start in range(0, len(view), _CHUNK):
                self.proc.stdin.write(view[start : start + _CHUNK])
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the child stopped reading (killed or failed)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            stamp = time.time()
            with self._lock:
                self.stdout_lines.append((stamp, line))
            self.on_stdout_line(stamp, line)
            if self._stdout_lines_max is not None and len(self.stdout_lines) >= self._stdout_lines_max:
                self.proc.stdout.close()  # the reader goes away
                return

    def on_stdout_line(self, stamp: float, line: bytes) -> None:
        """Called from the reading thread for each line of standard output (for subclasses)."""

    def _read_stderr(self) -> None:
        stream = t.cast("io.BufferedReader", self.proc.stderr)
        for chunk in iter(lambda: stream.read1(_CHUNK), b""):
            with self._lock:
                self._stderr.append(chunk)

    # -- what the child wrote -----------------------------------------------------------------

    @property
    def stdout(self) -> str:
        """Standard output read so far (when not sent to a file)."""
        with self._lock:
            return b"".join(line for _, line in self.stdout_lines).decode(errors="replace")

    @property
    def stderr(self) -> str:
        """Standard error read so far (when not sent to a file)."""
        with self._lock:
            return b"".join(self._stderr).decode(errors="replace")

    def write(self, data: bytes) -> None:
        """Write to standard input (``stdin="pipe"``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        """End standard input (``stdin="pipe"``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    # -- life and death -----------------------------------------------------------------------

    def running(self) -> bool:
        """Tell whether the child is still alive, without reaping it."""
        if self._reaped.is_set():
            return False
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False  # reaped meanwhile by wait()

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` unless the child has been reaped (its pid may belong to another)."""
        if not self._reaped.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        """Wait for the exit and for the output to be read; return the exit code.

        Raises:
            TimeoutError: The child outlived ``timeout`` seconds; it was killed (and reaped).
        """
        if self.exit_code is not None:
            return self.exit_code
        timed_out = threading.Event()

        def kill() -> None:
            if not self._reaped.is_set():
                timed_out.set()
                self.send_signal(signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(self.pid, 0)
        finally:
            self._reaped.set()
            timer.cancel()
        self.wall = time.perf_counter() - self._began
        self.ended = time.time()
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        self.max_rss_kib = usage.ru_maxrss
        self.exit_code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.exit_code  # reaped here, so Popen must not wait for it again
        for thread in self._threads:
            thread.join(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):  # a stdin the child left unread
                    stream.close()
        if timed_out.is_set():
            msg = f"{self.name} did not finish within {timeout:g} s (killed)"
            raise TimeoutError(msg)
        return self.exit_code

    def kill(self) -> None:
        """Make sure the child is gone (killed if needed, and reaped)."""
        if self.exit_code is None:
            self.send_signal(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                self.wait(10)
