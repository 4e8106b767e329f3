#!/usr/bin/env bash
# The project's uv, which installs every environment the project makes from a committed lock
# (uv.lock for the project, requirements/*.txt for the others; scripts/lock.sh refreshes them).
# On first use it installs itself from PyPI with pip, at the version and hashes of
# requirements/uv.txt, into .tools/uv-VERSION (pip's output is shown only if that fails).
# Then it runs `uv ARGS...` with the repository's settings:
#  - no interpreter is ever downloaded: uv uses the Pythons of this machine (PATH, pyenv);
#  - bytecode is compiled at install, as pip does, so processes do not recompile the SDK at
#    every start (PYTHONDONTWRITEBYTECODE machines never cache it otherwise);
#  - the build backend of the editable install comes from requirements/build.txt.
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
export UV_COMPILE_BYTECODE=1
export UV_BUILD_CONSTRAINT="$root/requirements/build.txt"
exec "$uv" "$@"
