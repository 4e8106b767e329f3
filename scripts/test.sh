#!/usr/bin/env bash
# Installs the project with its test dependencies into .venv and runs the whole test suite.
# Every test starts its own local Import API servers on free loopback ports.
# Extra arguments go to pytest, e.g. scripts/test.sh -k state
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh test
exec .venv/bin/python -m pytest "$@"
