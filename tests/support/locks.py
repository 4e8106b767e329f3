"""The committed locks and the pinned uv, for tests that make environments of their own.

Every install the tests make uses exact versions: a real tap from ``requirements/<tap>.txt``, the
built wheel with ``requirements/runtime.txt`` (uv.lock's pins) as constraints, ``python -m build``
with the setuptools of ``requirements/build.txt``. ``scripts/lock.sh`` refreshes them all.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import subprocess
import sys
import typing as t
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
#: The target's dependencies as uv.lock pins them (constraints for installs made without uv.lock).
RUNTIME_CONSTRAINTS = REQUIREMENTS / "runtime.txt"
#: The build backend of every build (the isolated environment of `python -m build`).
BUILD_CONSTRAINTS = REQUIREMENTS / "build.txt"
#: Held while something builds this checkout in place (setuptools writes build/ and *.egg-info/
#: into it): Meltano's installs of the loader here, scripts/setup-venv.sh's syncs.
CHECKOUT_BUILDS = ROOT / ".tools" / "checkout-build.lock"


def uv(*args: str | Path, timeout: float = 900) -> None:
    """Run the project's pinned uv (``scripts/uv.sh``, which installs it on first use)."""
    proc = subprocess.run(
        [str(ROOT / "scripts" / "uv.sh"), "--quiet", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"uv {' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def uv_bin_dir() -> Path:
    """The directory of the pinned uv executable (installed first if need be), to put on PATH."""
    uv("--version")
    version = re.search(r"^uv==(\S+)", (REQUIREMENTS / "uv.txt").read_text(encoding="utf-8"), re.MULTILINE)
    assert version, "requirements/uv.txt pins no uv"
    return ROOT / ".tools" / f"uv-{version[1]}" / "bin"


@contextlib.contextmanager
def exclusive(lock_file: Path) -> t.Iterator[None]:
    """Hold an exclusive lock on ``lock_file``: one install at a time across xdist workers and suites."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def locked_venv(home: Path, requirements: Path) -> None:
    """Make the virtualenv ``home`` on this Python holding exactly what ``requirements`` pins."""
    if not (home / "bin" / "python").exists():
        uv("venv", "--python", sys.executable, home)
    uv("pip", "sync", "--python", home / "bin" / "python", requirements)
