#!/usr/bin/env bash
# Makes the project's virtualenvs with the exact versions of its locks, through the pinned uv of
# scripts/uv.sh (scripts/lock.sh refreshes the locks). Quiet unless something fails.
# Usage: scripts/setup-venv.sh           .venv: the target from this checkout (editable) with its
#                                        dependencies as uv.lock pins them; adds, never removes
#                                        (a .venv made for the tests keeps its tools)
#        scripts/setup-venv.sh --dev     .venv exactly as uv.lock pins it with every extra: the
#                                        test and check tools too (scripts/test.sh, scripts/check.sh)
#        scripts/setup-venv.sh --meltano .venv-meltano: Meltano 4 as requirements/meltano.txt pins
#                                        it (Meltano keeps each plugin in a virtualenv of its own
#                                        under .meltano/, from meltano.yml's pip_url)
# PYTHON names the interpreter of a new virtualenv (default: python3 on PATH); PROJECT_VENV another
# directory for the project's virtualenv than .venv (scripts/test-matrix.sh: .venv-py3.X).
set -euo pipefail
cd "$(dirname "$0")/.."
uv=scripts/uv.sh
python=$(command -v "${PYTHON:-python3}")
venv=${PROJECT_VENV:-.venv}
export UV_PROJECT_ENVIRONMENT=$venv
# The interpreter of a new virtualenv; an existing one keeps its own.
new=()
[ -x "$venv/bin/python" ] || new=(--python "$python")

mkdir -p .tools
lock() {  # lock NAME: hold .tools/NAME.lock until this script ends (where flock exists)
  exec 9> ".tools/$1.lock"
  if command -v flock > /dev/null; then flock 9; fi
}

case "${1:-}" in
  --meltano)
    lock meltano  # two suites started side by side in one checkout make it once
    [ -x .venv-meltano/bin/python ] || $uv venv --quiet --python "$python" .venv-meltano
    $uv pip sync --quiet --python .venv-meltano/bin/python requirements/meltano.txt
    ;;
  --dev | test | check)  # test and check: the names of the extras, as this script used to take
    lock checkout-build  # the editable install builds the checkout in place (tests/support/locks.py)
    $uv sync --quiet --locked "${new[@]}" --all-extras
    ;;
  "")
    lock checkout-build
    $uv sync --quiet --locked "${new[@]}" --inexact
    ;;
  *)
    echo "Usage: scripts/setup-venv.sh [--dev | --meltano]" >&2
    exit 2
    ;;
esac
if [ "${1:-}" != --meltano ]; then
  # The editable install leaves the package's bytecode to its first import, which this machine's
  # PYTHONDONTWRITEBYTECODE forbids: every start would compile it again (~40 ms). Compile it now.
  "$venv/bin/python" -m compileall -q target_rjmetrics > /dev/null
fi
