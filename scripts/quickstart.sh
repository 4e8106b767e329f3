#!/usr/bin/env bash
# The quickstart: installs into .venv, starts the local Import API (no account needed), loads
# the Import API docs' users and orders examples with target-rjmetrics, and shows what landed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
DATA_DIR=${DATA_DIR:-.local-api-data}
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> Starting the local Import API (data in $DATA_DIR)"
.venv/bin/rjmetrics-local-api serve --port 0 --data-dir "$DATA_DIR" --ready-file "$work/ready" &
server_pid=$!
for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
port=$(head -n 1 "$work/ready")
cat > "$work/config.json" <<JSON
{"client_id": 1, "api_key": "local-demo-key", "api_url": "http://127.0.0.1:$port/v2"}
JSON

echo "==> Loading examples/users_and_orders.singer.jsonl"
.venv/bin/target-rjmetrics --config "$work/config.json" --input examples/users_and_orders.singer.jsonl > "$work/state.jsonl"
echo "==> STATE written by the target (a tap would resume from the last line):"
cat "$work/state.jsonl"

echo "==> Tables in the local Import API:"
.venv/bin/rjmetrics-local-api tables --data-dir "$DATA_DIR"
for table in users orders; do
  echo "==> Rows of $table:"
  .venv/bin/rjmetrics-local-api dump "$table" --data-dir "$DATA_DIR" --format csv
done
