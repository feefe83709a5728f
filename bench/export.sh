#!/usr/bin/env bash
# Export benchmark (issue "Get the data out"), two parts:
#
#  A. 100,001 blocks x TXS transactions (the simulated chain, backfilled into a fresh file by
#     `examples/bench.rs sim-ingest`): `blockstreamer export` blocks + transactions to Parquet,
#     CSV and JSONL, against the sqlite3 shell writing the same rows (same columns, hashes as
#     0x hex) as CSV — and a plain `SELECT *` CSV dump as the floor.
#  B. ANVIL_BLOCKS x TXS on a local anvil: cryo 0.3.2 (Python API) writing blocks + transactions
#     to Parquet straight from the node (cryo's whole job) vs blockstreamer backfill + export.
#
#   bash bench/export.sh     # needs: release build (done here), sqlite3, anvil (ANVIL_BIN or
#                            # .ci/tools), optional CRYO_PY (see BENCHMARKS.md §1 for the venv)
# Wall time, CPU and peak RSS come from /usr/bin/time around each process; every run starts
# from a cold output directory. Outputs are deleted as soon as they are measured (small disk).
set -euo pipefail
cd "$(dirname "$0")/.."
BLOCKS=${BLOCKS:-100000}
TXS=${TXS:-5}
ANVIL_BLOCKS=${ANVIL_BLOCKS:-10000}
RUNS=${RUNS:-3}
PORT=${PORT:-18745}
URL="http://127.0.0.1:$PORT"
ANVIL_BIN=${ANVIL_BIN:-.ci/tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil}
CRYO_PY=${CRYO_PY:-/opt/bench/cryo/bin/python}
WORK=${WORK:-$(mktemp -d)}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/blockstreamer}
BENCH=${BENCH:-${CARGO_TARGET_DIR:-target}/release/examples/bench}
# Line tables off keeps the release target dir small; SKIP_BUILD=1 with BIN/BENCH set reuses binaries.
[ -n "${SKIP_BUILD:-}" ] || CARGO_INCREMENTAL=0 CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --release --quiet --bins --examples
ANVIL_PID=
trap '[ -n "$ANVIL_PID" ] && kill $ANVIL_PID 2>/dev/null; rm -rf "$WORK"' EXIT

timed() { # rows, name, command...
  local rows=$1 name=$2; shift 2
  rm -rf "$WORK/out"; mkdir -p "$WORK/out"
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" >"$WORK/log" 2>&1 || { echo "$name FAILED"; tail -5 "$WORK/log"; return 0; }
  read -r wall user sys rss <"$WORK/time"
  local bytes; bytes=$(du -sb "$WORK/out" | cut -f1)
  awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v rows="$rows" -v b="$bytes" 'BEGIN {
    printf "%-44s wall %6.2f s  %9.0f rows/s  cpu %5.2f s  peak RSS %4.0f MiB  out %5.0f MiB\n",
      n, w, rows/w, u+s, r/1024, b/1048576 }'
  rm -rf "$WORK/out"
}

# ---- A. 100k blocks from the simulated chain ------------------------------------------------
if [ -z "${SKIP_A:-}" ]; then
DB="$WORK/sim.db"
"$BENCH" sim-ingest --blocks "$BLOCKS" --txs "$TXS" --db "$DB" >/dev/null
NB=$(sqlite3 "$DB" "SELECT count(*) FROM blocks WHERE canonical = 1")
NT=$(sqlite3 "$DB" "SELECT count(*) FROM transactions")
echo "A. $NB blocks, $NT transactions, file $(du -m "$DB" | cut -f1) MiB"
BLOCKS_SQL="SELECT number, '0x'||lower(hex(hash)), '0x'||lower(hex(parent_hash)), timestamp, '0x'||lower(hex(miner)), gas_used, gas_limit, base_fee_per_gas, '0x'||lower(hex(state_root)), '0x'||lower(hex(transactions_root)), '0x'||lower(hex(receipts_root)), size, tx_count, hash_verified, (SELECT name FROM providers p WHERE p.id = b.provider_id), fetched_at_ms, canonical FROM blocks b WHERE canonical = 1 ORDER BY number"
TX_SQL="SELECT b.number, '0x'||lower(hex(b.hash)), t.idx, '0x'||lower(hex(t.hash)), '0x'||lower(hex(t.from_address)), CASE WHEN t.to_address IS NULL THEN NULL ELSE '0x'||lower(hex(t.to_address)) END, t.value, t.nonce, t.gas, t.gas_price, t.max_fee_per_gas, t.max_priority_fee_per_gas, '0x'||lower(hex(t.input)), t.tx_type, b.timestamp, b.canonical FROM blocks b JOIN transactions t ON t.block_id = b.id WHERE b.canonical = 1 ORDER BY b.number, t.idx"
for run in $(seq "$RUNS"); do
  for f in parquet csv jsonl; do
    timed "$NB" "blockstreamer export blocks $f #$run" "$BIN" export blocks --db "$DB" --format $f --out "$WORK/out"
    timed "$NT" "blockstreamer export transactions $f #$run" "$BIN" export transactions --db "$DB" --format $f --out "$WORK/out"
  done
  timed "$NB" "sqlite3 CSV blocks (same columns) #$run" sh -c "sqlite3 -csv -header '$DB' \"$BLOCKS_SQL\" > '$WORK/out/b.csv'"
  timed "$NT" "sqlite3 CSV transactions (same columns) #$run" sh -c "sqlite3 -csv -header '$DB' \"$TX_SQL\" > '$WORK/out/t.csv'"
  timed "$NT" "sqlite3 CSV SELECT * FROM transactions #$run" sh -c "sqlite3 -csv '$DB' 'SELECT * FROM transactions' > '$WORK/out/t.csv'"
done
# One chunk for the whole range: memory does not grow with the file.
timed "$NT" "blockstreamer export transactions parquet, 1 chunk of 100k" "$BIN" export transactions --db "$DB" --format parquet --chunk-size 1000000 --out "$WORK/out"
rm -f "$DB" "$DB-wal" "$DB-shm"
fi

# ---- B. cryo from anvil vs blockstreamer backfill + export ----------------------------------
"$ANVIL_BIN" --host 127.0.0.1 --port "$PORT" --silent --accounts 40 --gas-limit 100000000 --max-persisted-states 0 &
ANVIL_PID=$!
for _ in $(seq 50); do curl -sf -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "$URL" >/dev/null && break; sleep 0.1; done
"$BENCH" fill --url "$URL" --blocks "$ANVIL_BLOCKS" --txs "$TXS"
ADB="$WORK/anvil.db"
/usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$BIN" backfill --rpc "$URL" --from 0 --to "$ANVIL_BLOCKS" --db "$ADB" >/dev/null 2>&1
read -r bw _ _ brss <"$WORK/time"
ANB=$((ANVIL_BLOCKS + 1)); ANT=$(sqlite3 "$ADB" "SELECT count(*) FROM transactions")
echo "B. anvil: $ANB blocks, $ANT transactions; blockstreamer backfill took $bw s (peak RSS $((brss / 1024)) MiB)"
for run in $(seq "$RUNS"); do
  timed "$ANB" "blockstreamer export blocks parquet (anvil) #$run" "$BIN" export blocks --db "$ADB" --out "$WORK/out"
  timed "$ANT" "blockstreamer export transactions parquet (anvil) #$run" "$BIN" export transactions --db "$ADB" --out "$WORK/out"
  if [ -x "$CRYO_PY" ]; then
    timed "$ANT" "cryo blocks+transactions parquet #$run" "$CRYO_PY" -c "import cryo; cryo.freeze(['blocks','transactions'], rpc='$URL', blocks=['0:$ANB'], output_dir='$WORK/out', no_verbose=True)"
  fi
done
