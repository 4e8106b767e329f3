#!/usr/bin/env bash
# The README's test command and CI's: installs .venv exactly as uv.lock pins it (with the test
# tools), then runs the whole suite in parallel with pytest-xdist and prints the 15 slowest tests.
# Most tests wait on processes and sockets rather than compute, so the workers outnumber the
# cores (TEST_WORKERS, default 6). Tests that share an expensive fixture (one build, one Meltano
# project) run on one worker (--dist loadgroup and their xdist_group marks).
# Every test starts its own local Import API servers on free loopback ports.
# Extra arguments go to pytest and come last, so they can override these:
#   scripts/test.sh -k state -x      scripts/test.sh -m "not slow"      scripts/test.sh -n 0 (serial)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh --dev
# Let Python cache bytecode for this run (in __pycache__/, which git ignores): where
# PYTHONDONTWRITEBYTECODE is set, every worker would rewrite every test module's asserts again,
# and every process the tests start would compile what it imports again.
unset PYTHONDONTWRITEBYTECODE
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-6}" --dist loadgroup --durations=15 "$@"
