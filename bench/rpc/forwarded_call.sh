#!/usr/bin/env bash
# Forwarded eth_call's added latency (BENCHMARKS.md §9): the same eth_call with one connection
# (wrk -t1 -c1), straight to anvil and through blockstreamer's /rpc in front of it, alternated.
#
#   ANVIL_BIN=… bash bench/rpc/forwarded_call.sh        # SECS=8 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${SECS:-8} ROUNDS=${ROUNDS:-3}
ANVIL=${ANVIL_BIN:-anvil}
TARGET=${CARGO_TARGET_DIR:-target}/release
. bench/procs.sh
cargo build --release --quiet --bin blockstreamer
PA=$(port); PB=$(port)
"$ANVIL" --host 127.0.0.1 --port "$PA" --silent --max-persisted-states 0 & PIDS+=($!)
sleep 1
"$TARGET/blockstreamer" run --rpc "http://127.0.0.1:$PA" --db "$WORK/bs.db" --listen "127.0.0.1:$PB" >"$WORK/run.log" 2>&1 & PIDS+=($!)
until curl -sf "http://127.0.0.1:$PB/readyz" >/dev/null 2>&1; do sleep 0.2; done
lat() { wrk -t1 -c1 -d"${SECS}s" --latency -s bench/rpc/call.lua "$1" | awk '$1 == "50%" {p50=$2} $1 == "99%" {p99=$2} END {print p50, p99}'; }
for round in $(seq "$ROUNDS"); do
  read -r d50 d99 < <(lat "http://127.0.0.1:$PA")
  read -r b50 b99 < <(lat "http://127.0.0.1:$PB/rpc")
  printf 'round %s  anvil direct p50 %s p99 %s   through /rpc p50 %s p99 %s\n' "$round" "$d50" "$d99" "$b50" "$b99"
done
