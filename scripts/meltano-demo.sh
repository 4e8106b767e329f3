#!/usr/bin/env bash
# The Meltano demo against a throwaway local Import API, checking what landed after each step:
#  1. `meltano run tap-jsonl target-rjmetrics tap-jsonl--orders target-rjmetrics` (5 users and
#     5 orders), with the seconds settings given as fractions through environment variables;
#  2. incremental runs: `meltano run tap-spreadsheets target-rjmetrics` twice. The first loads
#     signups-1.csv (5 rows); then signups-2.csv arrives and the second run resumes from the
#     state Meltano stored: it skips the file it has read and sends only the 3 new rows.
# Meltano 4 gets its own virtualenv, .venv-meltano; the demo uses a Meltano system database of its
# own (so it starts from no state) and removes it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONDONTWRITEBYTECODE  # as scripts/test.sh: let each plugin's first start cache its bytecode
scripts/setup-venv.sh
scripts/setup-venv.sh --meltano
meltano=.venv-meltano/bin/meltano
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "meltano-demo: $*" >&2; exit 1; }

.venv/bin/rjmetrics-local-api serve --port 0 --data-dir "$work/data" --ready-file "$work/ready" &
server_pid=$!
for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || fail "the local Import API did not start"
base="http://127.0.0.1:$(head -n 1 "$work/ready")"

# rows TABLE: rows stored in TABLE. points: data points the server accepted since the last call
# (it clears the server's request log).
rows() { .venv/bin/rjmetrics-local-api tables --data-dir "$work/data" | awk -v t="$1" '$2 == t {print $3}'; }
points() {
  .venv/bin/python - "$base" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
log = json.load(urllib.request.urlopen(f"{base}/_local/requests"))
print(sum(e["points"] or 0 for e in log if e["method"] == "POST" and e["status"] == 201))
urllib.request.urlopen(urllib.request.Request(f"{base}/_local/requests", method="DELETE")).read()
PY
}

export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
export MELTANO_DATABASE_URI="sqlite:///$work/meltano.db"
export TARGET_RJMETRICS_API_URL="$base/v2"
# Fractions of a second from the environment: Meltano passes them as text ("0.5"), which the
# target accepts for its seconds settings.
export TARGET_RJMETRICS_REQUEST_TIMEOUT=30.5
export TARGET_RJMETRICS_MAX_RETRY_SECONDS=120.5
export TARGET_RJMETRICS_STATE_FLUSH_SECONDS=0.5

$meltano install
echo "==> The configuration Meltano hands to target-rjmetrics (the key redacted here):"
$meltano invoke --dump=config target-rjmetrics | sed 's/"api_key": ".*"/"api_key": "***"/' | tee "$work/config.json"
grep -q '"state_flush_seconds": "0.5"' "$work/config.json" || fail "state_flush_seconds did not reach the target"

echo "==> meltano run tap-jsonl target-rjmetrics tap-jsonl--orders target-rjmetrics"
$meltano run --full-refresh tap-jsonl target-rjmetrics tap-jsonl--orders target-rjmetrics
[ "$(rows users)" = 5 ] && [ "$(rows orders)" = 5 ] || fail "expected 5 users and 5 orders"
points > /dev/null

echo "==> Incremental, first run: output/signups/ holds signups-1.csv"
rm -rf output/signups && mkdir -p output/signups
cp examples/data/signups-1.csv output/signups/
$meltano run tap-spreadsheets target-rjmetrics
sent=$(points)
[ "$sent" = 5 ] && [ "$(rows signups)" = 5 ] || fail "first incremental run: sent $sent points, expected 5"
echo "==> State Meltano stored after the first run:"
$meltano state get dev:tap-spreadsheets-to-target-rjmetrics

echo "==> Incremental, second run: signups-2.csv arrived; the run resumes from that state"
cp examples/data/signups-2.csv output/signups/
$meltano run tap-spreadsheets target-rjmetrics
sent=$(points)
[ "$sent" = 3 ] || fail "second incremental run sent $sent points, expected only the 3 new rows"
[ "$(rows signups)" = 8 ] || fail "expected 8 signups after the second run, found $(rows signups)"
rm -rf output/signups

echo "==> Rows that landed:"
.venv/bin/rjmetrics-local-api tables --data-dir "$work/data"
.venv/bin/rjmetrics-local-api dump signups --data-dir "$work/data" --format csv
echo "meltano-demo: OK (5 users, 5 orders; signups: 5 rows, then only the 3 new ones on the resumed run)"
