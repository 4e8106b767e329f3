#!/usr/bin/env bash
# Creates .venv (Python 3.10+) if it is missing and installs the project into it.
# Usage: scripts/setup-venv.sh [extra]   e.g. "test" installs the test dependencies too.
#        scripts/setup-venv.sh --meltano  creates .venv-meltano with Meltano 4 only (Meltano keeps
#                                         each plugin in a virtualenv of its own under .meltano/).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ "${1:-}" = "--meltano" ]; then
  if [ ! -x .venv-meltano/bin/meltano ]; then
    "$PYTHON" -m venv .venv-meltano
    .venv-meltano/bin/python -m pip install --quiet --disable-pip-version-check "meltano>=4,<5"
  fi
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
spec="."
[ $# -gt 0 ] && spec=".[$1]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
