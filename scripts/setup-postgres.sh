#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries are installed (Debian's postgresql package), for
# tests/test_real_postgres.py, which starts a throwaway server of its own on a free port (as the
# postgres user when run as root). Does nothing when initdb is already there; otherwise installs
# the package with apt-get (root only), quietly. Without it that test skips, saying why.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 || command -v initdb > /dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
  echo "setup-postgres: PostgreSQL is not installed and apt-get cannot install it here; tests/test_real_postgres.py will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq > /dev/null
apt-get install -y -qq --no-install-recommends postgresql > /dev/null
# The package starts a cluster of its own; the tests never use it.
if command -v pg_lsclusters > /dev/null; then
  pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _; do
    pg_ctlcluster "$version" "$cluster" stop 2>/dev/null || true
  done
fi
