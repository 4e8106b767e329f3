#!/usr/bin/env bash
# The code checks CI runs before the tests, with the configuration in pyproject.toml: ruff's
# linter, ruff's formatter (--check: it changes nothing) and mypy (strict), over the package,
# the tests and the benchmarks; and that uv.lock still agrees with pyproject.toml (else run
# scripts/lock.sh). Installs .venv as uv.lock pins it first (scripts/setup-venv.sh --dev: ruff,
# mypy, type stubs, and the test dependencies that mypy reads).
# Every tool runs even when an earlier one fails; the exit code is 1 if any failed.
# Usage: scripts/check.sh [PATH...]   (default: target_rjmetrics tests benchmarks)
#        scripts/check.sh --fix [PATH...]   lets ruff fix what it can and format the files first
set -uo pipefail
cd "$(dirname "$0")/.."
fix=0
if [ "${1:-}" = "--fix" ]; then fix=1; shift; fi
scripts/setup-venv.sh --dev || exit 1
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(target_rjmetrics tests benchmarks)

failed=()
step() {
  local name=$1
  shift
  echo "==> $name: $*"
  "$@" || failed+=("$name")
}
if [ "$fix" = 1 ]; then
  .venv/bin/ruff check --fix --quiet "${paths[@]}"
  .venv/bin/ruff format --quiet "${paths[@]}"
fi
step "ruff check" .venv/bin/ruff check "${paths[@]}"
step "ruff format" .venv/bin/ruff format --check "${paths[@]}"
step "mypy" .venv/bin/mypy "${paths[@]}"
step "lock" scripts/uv.sh lock --check --quiet

if [ ${#failed[@]} -gt 0 ]; then
  echo "check: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "check: ruff check, ruff format, mypy and the lock check passed"
