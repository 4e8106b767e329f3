#!/usr/bin/env bash
# The project's uv, which installs every environment the project makes from a committed lock
# (uv.lock for the project, requirements/*.txt for the others; scripts/lock.sh refreshes them).
# On first use it installs itself from PyPI with pip, at the version and hashes of
# requirements/uv.txt, into .tools/uv-VERSION (pip's output is shown only if that fails).
# Then it runs `uv ARGS...` with the repository's settings:
#  - no interpreter is ever downloaded: uv uses the Pythons of this machine (PATH, pyenv).
# (Bytecode is not compiled at install, uv's default: that took 4 of the quickstart's seconds,
# and Python caches it on first import; the test scripts let it do so even where
# PYTHONDONTWRITEBYTECODE is set.)
# Usage: scripts/uv.sh ARGS...   e.g. scripts/uv.sh tree --frozen
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^uv==\([^ ]*\).*/\1/p' "$root/requirements/uv.txt")
tools="$root/.tools/uv-$version"
uv="$tools/bin/uv"
if [ ! -x "$uv" ]; then
  mkdir -p "$root/.tools"
  # Scripts that start side by side on a fresh clone install uv once.
  exec 9> "$root/.tools/lock"
  command -v flock > /dev/null && flock 9
  if [ ! -x "$uv" ]; then
    rm -rf "$tools.partial"
    log=$(mktemp)
    if ! "${PYTHON:-python3}" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
      --target "$tools.partial" -r "$root/requirements/uv.txt" > "$log" 2>&1; then
      cat "$log" >&2
      rm -rf "$log" "$tools.partial"
      echo "scripts/uv.sh: could not install uv $version with pip (above)" >&2
      exit 1
    fi
    rm -f "$log"
    mv "$tools.partial" "$tools"
  fi
  exec 9>&-
fi
export UV_PYTHON_DOWNLOADS=never
exec "$uv" "$@"
