"""Check a commit message as the project writes them (the pre-commit ``commit-msg`` hook).

A subject of at most 72 characters, then, if there is a body, one blank line before it: the
why goes in the body. Exit 1 with the rule broken.

    python scripts/commit-msg.py .git/COMMIT_EDITMSG
"""

# ruff: noqa: INP001 (a script, not a package)
from __future__ import annotations

import sys
from pathlib import Path

MAX_SUBJECT = 72


def problems(message: str) -> list[str]:
    """What is wrong with a commit message (git's comment lines left out)."""
    lines = [line for line in message.splitlines() if not line.startswith("#")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or not lines[0].strip():
        return ["the subject (first line) is empty"]
    found = []
    if len(lines[0]) > MAX_SUBJECT:
        found.append(f"the subject is {len(lines[0])} characters; at most {MAX_SUBJECT}, the rest in the body")
    if len(lines) > 1 and lines[1].strip():
        found.append("the second line must be blank, between the subject and the body")
    return found


def main() -> int:
    """Check the message file named on the command line."""
    found = problems(Path(sys.argv[1]).read_text(encoding="utf-8"))
    for problem in found:
        sys.stderr.write(f"commit message: {problem}\n")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
