#!/usr/bin/env bash
# Restart to ready (issue 3): a file with 10,001 blocks from anvil; start `run`, time until
# /readyz answers 200; then three rounds of kill -9 + 50 blocks mined while down + restart.
# Usage: ANVIL_BIN=/path/to/anvil bash bench/restart.sh
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN="$PWD/target/release/blockstreamer"
ANVIL="${ANVIL_BIN:-.ci/tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil}"
WORK="$(mktemp -d)"
"$ANVIL" --port 18545 --silent --max-persisted-states 0 >/dev/null 2>&1 &
ANVIL_PID=$!
trap 'kill $ANVIL_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
sleep 1.5
rpc() { curl -s -X POST -H 'content-type: application/json' -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}" http://127.0.0.1:18545 >/dev/null; }
rpc anvil_mine '["0x2710"]'
"$BIN" backfill --from 0 --to 10000 --rpc http://127.0.0.1:18545 --db "$WORK/r.db" 2>&1 | tail -1
wait_ready() {
  local start=$1
  until [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18090/readyz)" = "200" ]; do sleep 0.01; done
  python3 -c "print(round($(date +%s.%N) - $start, 3))"
}
start=$(date +%s.%N)
"$BIN" run --rpc http://127.0.0.1:18545 --db "$WORK/r.db" --listen 127.0.0.1:18090 >/dev/null 2>&1 &
P=$!
echo "clean start with 10,001 blocks: ready after $(wait_ready "$start") s"
for round in 1 2 3; do
  sleep 1
  kill -9 $P; wait $P 2>/dev/null || true
  rpc anvil_mine '["0x32"]'
  start=$(date +%s.%N)
  "$BIN" run --rpc http://127.0.0.1:18545 --db "$WORK/r.db" --listen 127.0.0.1:18090 >/dev/null 2>&1 &
  P=$!
  echo "kill -9 round $round (+50 blocks while down, quick_check on open): ready after $(wait_ready "$start") s"
done
kill $P; wait $P 2>/dev/null || true
