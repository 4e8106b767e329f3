"""Real third-party taps from PyPI, each installed once into its own virtualenv under ``.venv-taps/``.

Taps pin their own singer-sdk versions, so they never share the target's environment. The
first test that needs a tap installs it (a minute at most); later runs reuse the virtualenv.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TAPS_DIR = ROOT / ".venv-taps"


def tap_executable(package: str, version: str, executable: str | None = None) -> Path:
    """Install ``package==version`` into its own virtualenv (once) and return its executable.

    Args:
        package: The PyPI distribution, e.g. ``tap-jsonl``.
        version: The exact version to install.
        executable: The console script, by default the package name.

    Returns:
        The path of the tap's executable.
    """
    home = TAPS_DIR / f"{package}-{version}"
    exe = home / "bin" / (executable or package)
    if exe.exists():
        return exe
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    subprocess.run(
        [
            str(home / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"{package}=={version}",
        ],
        check=True,
        stdout=sys.stderr,
    )
    assert exe.exists(), f"{package}=={version} did not install {exe.name}"
    return exe
