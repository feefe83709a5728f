#!/usr/bin/env bash
# /rpc throughput side by side (BENCHMARKS.md §9): the same calls with wrk (2 threads × 32
# connections) sent to anvil directly, to a bare jsonrpsee proxy in front of it
# (examples/rpc_proxy.rs), and to blockstreamer's /rpc following that anvil, while a block of
# TXS log-emitting transactions is mined every second (so ingest runs throughout).
#
#   ANVIL_BIN=… bash bench/rpc/side_by_side.sh        # BLOCKS=2000 TXS=20 SECS=10 ROUNDS=2
set -euo pipefail
cd "$(dirname "$0")/../.."
BLOCKS=${BLOCKS:-2000} TXS=${TXS:-20} SECS=${SECS:-10} ROUNDS=${ROUNDS:-2}
ANVIL=${ANVIL_BIN:-anvil}
TARGET=${CARGO_TARGET_DIR:-target}/release
. bench/procs.sh

cargo build --release --quiet --bin blockstreamer --example rpc_proxy --example bench_logs
PA=$(port); PP=$(port); PB=$(port)
"$ANVIL" --host 127.0.0.1 --port "$PA" --silent --max-persisted-states 0 --gas-limit 100000000 & PIDS+=($!)
sleep 1
read -r TOKEN _ < <("$TARGET/examples/bench_logs" fill --url "http://127.0.0.1:$PA" --blocks "$BLOCKS" --txs "$TXS")
"$TARGET/examples/rpc_proxy" "127.0.0.1:$PP" "http://127.0.0.1:$PA" 2>/dev/null & PIDS+=($!)
"$TARGET/blockstreamer" run --rpc "http://127.0.0.1:$PA" --from-block 0 --db "$WORK/bs.db" \
  --listen "127.0.0.1:$PB" >"$WORK/run.log" 2>&1 & PIDS+=($!)
until [ "$(rpc "http://127.0.0.1:$PB/rpc" eth_blockNumber '[]' | python3 -c 'import sys,json; print(int(json.load(sys.stdin).get("result","0x0"),16))' 2>/dev/null || echo 0)" -ge "$BLOCKS" ]; do sleep 1; done
# Ingest keeps running: a block of TXS transactions a second, for the whole measurement.
( while true; do "$TARGET/examples/bench_logs" fill --url "http://127.0.0.1:$PA" --blocks 1 --txs "$TXS" >/dev/null 2>&1 || true; sleep 1; done ) & PIDS+=($!)
export MAX_BLOCK=$BLOCKS ADDRESS=$TOKEN
echo "chain: $BLOCKS blocks x $TXS txs, logs of $TOKEN; wrk -t2 -c32 -d${SECS}s; ingest running"
for round in $(seq "$ROUNDS"); do
  for script in block logs; do
    for target in "anvil http://127.0.0.1:$PA" "proxy http://127.0.0.1:$PP" "blockstreamer http://127.0.0.1:$PB/rpc"; do
      set -- $target
      out=$(wrk -t2 -c32 -d"${SECS}s" --latency -s "bench/rpc/$script.lua" "$2")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
      p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
      errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
      printf 'round %s  %-6s %-14s %10s req/s  p50 %8s  p99 %8s  %s\n' "$round" "$script" "$1" "$rps" "$p50" "$p99" "$errs"
    done
  done
done
stored=$(rpc "http://127.0.0.1:$PB/rpc" eth_blockNumber '[]')
echo "stored head after: $stored (anvil: $(rpc "http://127.0.0.1:$PA" eth_blockNumber '[]'))"
