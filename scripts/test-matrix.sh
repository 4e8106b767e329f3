#!/usr/bin/env bash
# The test matrix CI runs: every Python version the package declares (its classifiers, as
# `target-rjmetrics --about` reports them) that this machine has, each in a virtualenv of its own
# installed exactly as uv.lock pins it (one universal lock for every declared Python).
#  - .venv's Python (3.11 here): the whole suite, through the README's test command scripts/test.sh;
#  - every other declared version: the smoke tier (`pytest -m smoke`: the tests marked smoke,
#    what differs between Python versions), in .venv-py3.X.
# A declared version found neither in ~/.pyenv/versions nor on PATH (python3.X) is reported as
# skipped. Every version runs even when an earlier one fails; the exit code is 1 if any failed.
# Usage: scripts/test-matrix.sh [--smoke-only] [PYTEST ARGS...]
#   --smoke-only leaves out the whole-suite run; other arguments go to every pytest run.
set -uo pipefail
cd "$(dirname "$0")/.."
unset PYTHONDONTWRITEBYTECODE  # as scripts/test.sh: cache bytecode for the test runs
smoke_only=0
if [ "${1:-}" = "--smoke-only" ]; then smoke_only=1; shift; fi

results=()
failed=0
record() { results+=("$1"); }

if [ "$smoke_only" = 0 ]; then
  echo "==> The whole suite: scripts/test.sh (the README's test command)"
  start=$SECONDS
  if bash scripts/test.sh "$@"; then status=passed; else status=FAILED; failed=1; fi
  record "$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])') whole suite (.venv): $status in $((SECONDS - start))s"
else
  scripts/setup-venv.sh --dev || exit 1  # --about below needs .venv
fi

default=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
declared=$(.venv/bin/target-rjmetrics --about --format json \
  | .venv/bin/python -c 'import json, sys; print(" ".join(json.load(sys.stdin)["supported_python_versions"]))')
[ -n "$declared" ] || { echo "test-matrix: --about declares no Python version" >&2; exit 1; }

# find_python 3.X: the newest 3.X interpreter of pyenv, else python3.X on PATH.
find_python() {
  local candidate
  candidate=$(ls -d "$HOME"/.pyenv/versions/"$1".*/bin/python 2>/dev/null | sort -V | tail -n 1)
  [ -n "$candidate" ] || candidate=$(command -v "python$1" || true)
  [ -n "$candidate" ] && [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$1" ] \
    && echo "$candidate"
}

for version in $declared; do
  [ "$version" = "$default" ] && continue
  python=$(find_python "$version") || python=""
  if [ -z "$python" ]; then
    echo "==> Python $version: not on this machine, skipped"
    record "$version smoke: skipped (no interpreter)"
    continue
  fi
  venv=".venv-py$version"
  echo "==> Python $version ($python): the smoke tier in $venv"
  start=$SECONDS
  if PYTHON=$python PROJECT_VENV=$venv scripts/setup-venv.sh --dev \
    && "$venv/bin/python" -m pytest -q -p no:cacheprovider -m smoke -n "${TEST_WORKERS:-6}" --dist loadgroup "$@"; then
    status=passed
  else
    status=FAILED
    failed=1
  fi
  record "$version smoke ($venv): $status in $((SECONDS - start))s"
done

echo "==> Test matrix:"
printf '    %s\n' "${results[@]}"
exit "$failed"
