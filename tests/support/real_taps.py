"""Real third-party taps from PyPI, each installed once into its own virtualenv under ``.venv-taps/``.

Taps pin their own singer-sdk versions, so they never share the target's environment. A tap is
installed exactly as ``requirements/<tap>.txt`` pins it (the file meltano.yml's pip_url names too),
by the first test that needs it, under a file lock so that parallel workers install it once.
"""

from __future__ import annotations

import re
import typing as t

from tests.support.locks import REQUIREMENTS, ROOT, exclusive, locked_venv

if t.TYPE_CHECKING:
    from pathlib import Path

TAPS_DIR = ROOT / ".venv-taps"


def tap_executable(package: str, version: str, executable: str | None = None) -> Path:
    """Install ``package==version`` into its own virtualenv (once) and return its executable.

    Args:
        package: The PyPI distribution, e.g. ``tap-jsonl``.
        version: The exact version, which ``requirements/<package>.txt`` must pin.
        executable: The console script, by default the package name.

    Returns:
        The path of the tap's executable.
    """
    requirements = REQUIREMENTS / f"{package}.txt"
    pinned = re.search(rf"^{re.escape(package)}==(\S+)", requirements.read_text(encoding="utf-8"), re.MULTILINE)
    assert pinned and pinned[1] == version, f"{requirements} must pin {package}=={version} (scripts/lock.sh)"
    home = TAPS_DIR / f"{package}-{version}"
    exe = home / "bin" / (executable or package)
    with exclusive(TAPS_DIR / f".{package}-{version}.lock"):
        # Synced every time (a no-op when nothing changed): a refreshed lock reaches the tap too.
        locked_venv(home, requirements)
    assert exe.exists(), f"{package}=={version} did not install {exe.name}"
    return exe
