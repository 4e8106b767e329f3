#!/usr/bin/env bash
# Upstream drift, by name: installs the newest versions that pyproject.toml's ranges allow (no
# uv.lock, none of its lock-only constraints) into a throwaway virtualenv, lists every version
# that differs from uv.lock, and runs the unit and smoke tiers and the bad-input corpus, whose
# reading is up to msgspec (`pytest -m "unit or smoke or reader"`).
# A failure here names the test a new release breaks, while development, CI and the quickstart
# stay on the locked versions that work; fix the code or bound the range, then scripts/lock.sh.
# CI runs it as an informational step: it prints the result, and CI does not fail on it.
# The exit code is pytest's (0 when the newest versions pass).
# Usage: scripts/test-latest.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONDONTWRITEBYTECODE  # as scripts/test.sh: cache bytecode for the test runs
uv=scripts/uv.sh
python=$(command -v "${PYTHON:-python3}")
venv=$(mktemp -d "${TMPDIR:-/tmp}/target-rjmetrics-latest.XXXXXX")
trap 'rm -rf "$venv"' EXIT

echo "==> The newest versions pyproject.toml allows, into a throwaway virtualenv ($venv)"
$uv venv --quiet --python "$python" "$venv"
mkdir -p .tools
(
  exec 9> .tools/checkout-build.lock  # the editable install builds the checkout in place
  if command -v flock > /dev/null; then flock 9; fi
  # --no-config: pyproject.toml's [tool.uv] (the lock-only constraints) is left out on purpose.
  $uv pip install --quiet --no-config --refresh --python "$venv/bin/python" -e ".[test]"
)

echo "==> Versions that differ from uv.lock:"
$uv pip freeze --quiet --python "$venv/bin/python" --exclude-editable > "$venv/freeze.txt"
"$venv/bin/python" - "$venv/freeze.txt" <<'PY'
import re
import sys
from pathlib import Path

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

lock = Path("uv.lock").read_text(encoding="utf-8")
locked = {}
for name, version in re.findall(r'^\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', lock, re.MULTILINE):
    locked.setdefault(norm(name), set()).add(version)
changed = []
for line in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines():
    name, _, version = line.partition("==")
    was = locked.get(norm(name), set())
    if version not in was:
        changed.append(f"    {norm(name)}: {' or '.join(sorted(was)) or 'not in uv.lock'} -> {version}")
print("\n".join(changed) if changed else "    none")
PY

echo "==> The unit and smoke tiers and the bad-input corpus on those versions"
status=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider -m "unit or smoke or reader" -n "${TEST_WORKERS:-6}" --dist loadgroup "$@" \
  || status=$?
if [ "$status" = 0 ]; then
  echo "test-latest: the newest versions the ranges allow pass the unit and smoke tiers and the bad-input corpus"
else
  echo "test-latest: FAILED on the newest versions the ranges allow (the failing tests are named above)"
fi
exit "$status"
