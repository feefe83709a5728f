#!/usr/bin/env bash
# API throughput and latency (issue 4), printed for BENCHMARKS.md §4.
#  1. wrk on /v1/blocks/{n} (random n) and /v1/blocks/latest while the demo ingests (1 s blocks),
#     sampling the head lag from /readyz once a second.
#  2. /v1/providers over 1,000,000 telemetry rows (all in the last hour, and spread over 24 h).
# Needs wrk (Debian package) and python3. Usage: bash bench/api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)"; exit 1; }
cargo build --release --quiet
BIN="$PWD/target/release/blockstreamer"
WORK="$(mktemp -d)"
trap 'pkill -f "$WORK" || true; rm -rf "$WORK"' EXIT
PORT=18080

"$BIN" demo --db "$WORK/bench.db" --block-time-ms 1000 --listen 127.0.0.1:$PORT --run-for 75 >/dev/null 2>&1 &
sleep 5
cat > "$WORK/rand.lua" <<'LUA'
math.randomseed(os.time())
request = function() return wrk.format("GET", "/v1/blocks/" .. math.random(0, 100)) end
LUA
( for _ in $(seq 1 45); do
    curl -s http://127.0.0.1:$PORT/readyz | python3 -c "import sys,json; print(json.load(sys.stdin)['lag_blocks'])"
    sleep 1
  done > "$WORK/lag.txt" ) &
echo "== /v1/blocks/{random 0..100}, wrk -t2 -c32 -d20s"
wrk -t2 -c32 -d20s --latency -s "$WORK/rand.lua" http://127.0.0.1:$PORT | grep -E "Requests/sec|50%|90%|99%|Non-2xx|Socket errors"
echo "== /v1/blocks/latest, wrk -t2 -c32 -d20s"
wrk -t2 -c32 -d20s --latency http://127.0.0.1:$PORT/v1/blocks/latest | grep -E "Requests/sec|50%|90%|99%|Non-2xx|Socket errors"
wait %2 2>/dev/null || true
echo "== head lag (blocks) sampled each second during the load: count value"
sort -n "$WORK/lag.txt" | uniq -c
pkill -f "$WORK/bench.db" || true
sleep 2

python3 - "$WORK" <<'PY'
import random, sqlite3, sys, time, shutil
work = sys.argv[1]
c = sqlite3.connect(f"{work}/bench.db")
now = int(time.time() * 1000)
ids = [r[0] for r in c.execute("SELECT id FROM providers")]
random.seed(1)
outs = ["ok"] * 90 + ["timeout"] * 3 + ["rate_limited"] * 4 + ["http_5xx"] * 3
rows = ((now - random.randrange(3_600_000), random.choice(ids), "eth_getBlockByNumber", random.randrange(1000),
         random.randrange(2000, 400000), random.choice(outs), 1, 20) for _ in range(1_000_000))
c.executemany("INSERT INTO provider_requests (ts_ms, provider_id, method, block_number, latency_us, outcome, attempt, credits) VALUES (?,?,?,?,?,?,?,?)", rows)
c.commit(); c.close()
shutil.copy(f"{work}/bench.db", f"{work}/p1h.db")
c = sqlite3.connect(f"{work}/bench.db")
c.execute("UPDATE provider_requests SET ts_ms = ? - (? - ts_ms) * 24", (now, now)); c.commit(); c.close()
shutil.copy(f"{work}/bench.db", f"{work}/p24h.db")
PY
for db in p1h p24h; do
  start=$(date +%s.%N)
  "$BIN" serve --db "$WORK/$db.db" --listen 127.0.0.1:18081 --run-for 60 >/dev/null 2>&1 &
  until curl -s -o /dev/null http://127.0.0.1:18081/healthz; do sleep 0.2; done
  echo "== $db: open incl. folding 1 M raw rows into rollups: $(python3 -c "print(round($(date +%s.%N) - $start, 2))") s"
  for c in 1 2; do
    echo "-- /v1/providers, wrk -t1 -c$c -d15s"
    wrk -t1 -c$c -d15s --latency http://127.0.0.1:18081/v1/providers | grep -E "Requests/sec|50%|90%|99%|Non-2xx"
  done
  pkill -f "$WORK/$db.db" || true
  sleep 1
done
