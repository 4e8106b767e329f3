#!/usr/bin/env bash
# Runs `meltano run tap-jsonl target-rjmetrics` (and the orders file too) against a local Import
# API, then checks the rows that landed. Meltano gets its own virtualenv, .venv-meltano.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
PYTHON=${PYTHON:-python3}
if [ ! -x .venv-meltano/bin/meltano ]; then
  "$PYTHON" -m venv .venv-meltano
  .venv-meltano/bin/python -m pip install --quiet --disable-pip-version-check "meltano>=4,<5"
fi
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

.venv/bin/rjmetrics-local-api serve --port 0 --data-dir "$work/data" --ready-file "$work/ready" &
server_pid=$!
for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
export TARGET_RJMETRICS_API_URL="http://127.0.0.1:$(head -n 1 "$work/ready")/v2"

export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
.venv-meltano/bin/meltano install
.venv-meltano/bin/meltano run --full-refresh tap-jsonl target-rjmetrics tap-jsonl--orders target-rjmetrics

echo "==> Rows that landed:"
.venv/bin/rjmetrics-local-api tables --data-dir "$work/data" | tee "$work/tables.txt"
grep -Eq '^ *1 +users +5$' "$work/tables.txt" && grep -Eq '^ *1 +orders +5$' "$work/tables.txt" \
  || { echo "meltano-demo: expected 5 users and 5 orders" >&2; exit 1; }
.venv/bin/rjmetrics-local-api dump users --data-dir "$work/data" --format csv
