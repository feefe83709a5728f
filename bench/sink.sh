#!/usr/bin/env bash
# NATS sink benchmark (issue 16, BENCHMARKS.md §10), side by side in one run:
#   1. backfill of the BLOCKS x TXS log-emitting chain (bench_logs fill) from a provider that
#      costs nothing (examples/recorded.rs), with the sink off and on (a fresh stream each run,
#      nats-server -js on loopback): ingest wall, total wall (the backfill waits for the sink),
#      messages and messages/s published;
#   2. at the tip: `run` following anvil while a block of TXS transactions is mined every
#      250 ms, the sink on: each block's commit → JetStream ack (p50/p99/max, from the sink's
#      debug lines).
#
#   ANVIL_BIN=… NATS_SERVER=… bash bench/sink.sh     # BLOCKS=2000 TXS=20 RUNS=3 TIP_SECS=60
set -euo pipefail
cd "$(dirname "$0")/.."
BLOCKS=${BLOCKS:-2000} TXS=${TXS:-20} RUNS=${RUNS:-3} TIP_SECS=${TIP_SECS:-60}
. bench/common.sh
NATS=${NATS_SERVER:-nats-server}
. bench/procs.sh

cargo build --release --quiet --bin blockstreamer --example recorded --example bench_logs --example nats_cost
PA=$(port); PF=$(port); PN=$(port)
"$ANVIL_BIN" --host 127.0.0.1 --port "$PA" --silent --accounts 40 --gas-limit 100000000 --max-persisted-states 0 & PIDS+=($!)
ANVIL="http://127.0.0.1:$PA"
for _ in $(seq 50); do rpc "$ANVIL" eth_chainId '[]' >/dev/null 2>&1 && break; sleep 0.1; done
"$T/examples/bench_logs" fill --url "$ANVIL" --blocks "$BLOCKS" --txs "$TXS" >/dev/null
HEAD=$(( $(rpc "$ANVIL" eth_blockNumber '[]' | sed 's/.*"result":"\(0x[0-9a-f]*\)".*/\1/') ))
"$T/examples/recorded" record --url "$ANVIL" --to "$HEAD" --out "$WORK/chain.jsonl"
"$T/examples/recorded" serve --file "$WORK/chain.jsonl" --port "$PF" >"$WORK/free.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do grep -q serving "$WORK/free.log" && break; sleep 0.1; done
mkdir -p "$WORK/nats"
"$NATS" -js -a 127.0.0.1 -p "$PN" -sd "$WORK/nats" >/dev/null 2>&1 & NATS_PID=$!
PIDS+=($NATS_PID)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PN") 2>/dev/null && break; sleep 0.1; done
echo "chain: $((HEAD + 1)) blocks x $TXS log-emitting txs; provider: recorded (free); nats-server $("$NATS" --version)"

# A log line's field, from --log-format json output.
field() { python3 -c '
import json, sys
want, key = sys.argv[1], sys.argv[2]
for line in open(sys.argv[3]):
    try: o = json.loads(line)
    except ValueError: continue
    f = o.get("fields", o)
    if f.get("message") == want: print(f.get(key, "")); break
' "$1" "$2" "$3"; }

backfill() { # name, config file or "" → one result line
  local name=$1 cfg=$2 db="$WORK/$1.db"
  rm -f "$db" "$db-wal" "$db-shm"
  local broker_before; broker_before=$(cpu_of "$NATS_PID")
  local args=(--log-format json backfill --from 0 --to "$HEAD" --rpc "http://127.0.0.1:$PF" --db "$db")
  [ -n "$cfg" ] && args+=(--config "$cfg")
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" timeout 600 "$BIN" "${args[@]}" >"$WORK/$name.log" 2>&1 \
    || { echo "$name FAILED"; tail -3 "$WORK/$name.log"; return 0; }
  read -r wall user sys rss <"$WORK/time"
  local broker; broker=$(awk -v a="$broker_before" -v b="$(cpu_of "$NATS_PID")" 'BEGIN { printf "%.2f", b - a }')
  local ingest msgs msecs rate
  ingest=$(field "backfill stored; waiting for the sink" seconds "$WORK/$name.log")
  [ -n "$ingest" ] || ingest=$(field "backfill done" seconds "$WORK/$name.log")
  msgs=$(field "sink caught up" messages "$WORK/$name.log"); msecs=$(field "sink caught up" seconds "$WORK/$name.log")
  rate=$(field "sink caught up" messages_per_sec "$WORK/$name.log")
  printf '%-9s wall %6.2f s  ingest %6s s  cpu %6.2f s  nats-server cpu %5.2f s  RSS %4.0f MiB  messages %7s in %6s s = %6s msg/s\n' \
    "$name" "$wall" "$ingest" "$(awk -v u="$user" -v s="$sys" 'BEGIN{print u+s}')" "$broker" "$((rss / 1024))" "${msgs:--}" "${msecs:--}" "${rate:--}"
}

for run in $(seq "$RUNS"); do
  # A stream (and subjects) of its own per run: a stream's subjects cannot overlap another's.
  printf '[sink.nats]\nurl = "nats://127.0.0.1:%s"\nstream = "bench%s"\nsubject_prefix = "bench%s"\n' "$PN" "$run" "$run" >"$WORK/sink.toml"
  backfill off ""
  backfill on "$WORK/sink.toml"
done

# The broker alone (examples/nats_cost.rs): its CPU per message and per byte, the same way the
# sink publishes (a Nats-Msg-Id each, a window of acks), so the share of the sink runs above that
# nats-server itself needs is known.
broker_cost() { # count, size
  local before; before=$(cpu_of "$NATS_PID")
  "$T/examples/nats_cost" --url "nats://127.0.0.1:$PN" --count "$1" --size "$2" | tr '\n' ' '
  awk -v a="$before" -v b="$(cpu_of "$NATS_PID")" 'BEGIN { printf " nats-server cpu %.2f s\n", b - a }'
}
broker_cost 40000 64
broker_cost 40000 2000
broker_cost 2000 40000

# The tip: commit → ack while anvil gets a block of TXS transactions every 250 ms.
printf '[sink.nats]\nurl = "nats://127.0.0.1:%s"\nstream = "tip"\n' "$PN" >"$WORK/tip.toml"
START=$(( $(rpc "$ANVIL" eth_blockNumber '[]' | sed 's/.*"result":"\(0x[0-9a-f]*\)".*/\1/') ))
RUST_LOG=info,blockstreamer::sink=debug "$BIN" --log-format json run --rpc "$ANVIL" --from-block "$START" \
  --config "$WORK/tip.toml" --db "$WORK/tip.db" --listen 127.0.0.1:0 --run-for "$((TIP_SECS + 5))" >"$WORK/tip.log" 2>&1 & TIP=$!
PIDS+=($TIP)
sleep 2
END=$((SECONDS + TIP_SECS))
while [ $SECONDS -lt $END ]; do
  "$T/examples/bench_logs" fill --url "$ANVIL" --blocks 1 --txs "$TXS" >/dev/null 2>&1 || true
  sleep 0.25
done
wait "$TIP" || true
python3 - "$WORK/tip.log" <<'EOF'
import json, sys
ms = []
for line in open(sys.argv[1]):
    try: o = json.loads(line)
    except ValueError: continue
    f = o.get("fields", o)
    if f.get("message") == "acknowledged" and "commit_to_ack_ms" in f: ms.append(int(f["commit_to_ack_ms"]))
ms.sort()
if not ms: sys.exit("no acknowledged blocks at the tip")
q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]
print(f"tip: {len(ms)} blocks, commit -> JetStream ack p50 {q(0.5)} ms  p99 {q(0.99)} ms  max {ms[-1]} ms")
EOF
