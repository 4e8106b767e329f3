#!/usr/bin/env bash
# Creates .venv (Python 3.10+) if it is missing and installs the project into it.
# Usage: scripts/setup-venv.sh [extra]   e.g. "test" installs the test dependencies too.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
spec="."
[ $# -gt 0 ] && spec=".[$1]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
