#!/usr/bin/env bash
# Refreshes every lock the project installs from, to the newest versions their ranges allow:
#  - uv.lock: the project with its extras (.venv, the smoke virtualenvs, CI), one universal lock
#    for every declared Python (3.10 to 3.13), from pyproject.toml;
#  - requirements/*.txt, compiled from requirements/*.in for the environments that are not the
#    project's: uv itself (with hashes), Meltano 4 (.venv-meltano), the real taps (meltano.yml's
#    pip_url and tests/support/real_taps.py), the build backend (`python -m build` and the
#    editable install: also written into pyproject.toml's [tool.uv] build-constraint-dependencies);
#  - requirements/runtime.txt: the target's own dependencies as uv.lock pins them, as constraints
#    for installs made without uv.lock (the built wheel in tests/test_packaging.py, the loader
#    that Meltano installs from meltano.yml).
# Review the diff, run scripts/test.sh, and commit the locks with the change that needed them.
# Usage: scripts/lock.sh              upgrade everything to the newest allowed versions
#        scripts/lock.sh --no-upgrade only re-resolve what pyproject.toml or a .in file changed
set -euo pipefail
cd "$(dirname "$0")/.."
upgrade=(--upgrade)
if [ "${1:-}" = "--no-upgrade" ]; then upgrade=(); fi
uv=scripts/uv.sh

compile() {  # compile NAME [OPTIONS...]: requirements/NAME.in -> requirements/NAME.txt
  local name=$1
  shift
  echo "==> requirements/$name.txt"
  $uv pip compile --quiet --universal --python-version 3.10 --custom-compile-command scripts/lock.sh \
    "${upgrade[@]}" "$@" "requirements/$name.in" -o "requirements/$name.txt"
}

compile uv --generate-hashes
compile build
# uv's own builds (the editable install of this checkout) take the same setuptools.
setuptools=$(grep -o '^setuptools==[^ ]*' requirements/build.txt)
sed -i.bak "s/^build-constraint-dependencies = .*/build-constraint-dependencies = [\"$setuptools\"]/" pyproject.toml
rm -f pyproject.toml.bak
grep -q "^build-constraint-dependencies = \[\"$setuptools\"\]" pyproject.toml \
  || { echo "lock: pyproject.toml has no build-constraint-dependencies line to update" >&2; exit 1; }
compile meltano
compile tap-jsonl
compile tap-spreadsheets
compile meltanolabs-tap-postgres

echo "==> uv.lock"
$uv lock --quiet "${upgrade[@]}"
echo "==> requirements/runtime.txt"
{
  echo "# The target's runtime dependencies as uv.lock pins them, as constraints (pip's and uv's -c) for"
  echo "# installs made without uv.lock: the built wheel in tests/test_packaging.py and the loader"
  echo "# Meltano installs from meltano.yml. Written by scripts/lock.sh from uv.lock; do not edit."
  $uv export --quiet --frozen --no-emit-project --no-hashes --no-header --no-annotate
} > requirements/runtime.txt

echo "lock: done; the changes:"
git status --short -- uv.lock requirements pyproject.toml
