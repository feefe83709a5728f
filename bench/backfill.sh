#!/usr/bin/env bash
# Backfill benchmark (issue: "The spine"): a 2,000-block x 20-tx chain on a local anvil,
# fetched by (a) a bare client (the node's ceiling), (b) blockstreamer with telemetry on and
# off, (c) cryo 0.3.2 (Python API) and (d) ethereum-etl 2.4.2, all against the same anvil.
#
#   bash bench/backfill.sh            # needs: release build, anvil (ANVIL_BIN or .ci/tools),
#                                     # optional venvs CRYO_PY / ETL_BIN for the peers
# Prints one line per run; wall time, CPU seconds and peak RSS come from /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
BLOCKS=${BLOCKS:-2000}
TXS=${TXS:-20}
PORT=${PORT:-18645}
URL="http://127.0.0.1:$PORT"
ANVIL_BIN=${ANVIL_BIN:-.ci/tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil}
CRYO_PY=${CRYO_PY:-/opt/bench/cryo/bin/python}
ETL_BIN=${ETL_BIN:-/opt/bench/etl/bin/ethereumetl}
BIN=${CARGO_TARGET_DIR:-target}/release/blockstreamer
BENCH=${CARGO_TARGET_DIR:-target}/release/examples/bench
WORK=$(mktemp -d)
trap 'kill $ANVIL_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$ANVIL_BIN" --host 127.0.0.1 --port "$PORT" --silent --accounts 40 --gas-limit 100000000 --max-persisted-states 0 &
ANVIL_PID=$!
for _ in $(seq 50); do curl -sf -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "$URL" >/dev/null && break; sleep 0.1; done
"$BENCH" fill --url "$URL" --blocks "$BLOCKS" --txs "$TXS"

# CPU seconds anvil has used so far (utime + stime from /proc), to show the node's share.
node_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$ANVIL_PID/stat"; }

timed() { # name, command...
  local name=$1; shift
  local before; before=$(node_cpu)
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" >"$WORK/out" 2>&1 || { echo "$name FAILED"; tail -5 "$WORK/out"; return 0; }
  read -r wall user sys rss <"$WORK/time"
  local node; node=$(awk -v a="$before" -v b="$(node_cpu)" 'BEGIN { printf "%.2f", b - a }')
  echo "$name|$wall|$user|$sys|$rss|$node" | sed 's/ #[0-9]*|/|/' >>"$WORK/results"
  awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v nc="$node" -v b="$BLOCKS" -v t="$TXS" 'BEGIN {
    printf "%-34s wall %6.2f s  %6.0f blocks/s  %7.0f tx/s  cpu %5.2f s  peak RSS %4.0f MiB  anvil cpu %5.2f s\n",
      n, w, (b+1)/w, b*t/w, u+s, r/1024, nc }'
}

echo "chain: $((BLOCKS+1)) blocks x $TXS txs on anvil $("$ANVIL_BIN" --version | head -1 | awk '{print $3}')"
for c in "1 1" "4 10" "8 20" "16 50"; do
  set -- $c
  "$BENCH" ceiling --url "$URL" --to "$BLOCKS" --concurrency "$1" --batch "$2"
done
# Where the node's time goes: headers and receipts are cheap to serve; full transactions cost
# anvil one sender recovery (secp256k1) each, which is what bounds every client below.
for shape in hashes receipts; do
  "$BENCH" ceiling --url "$URL" --to "$BLOCKS" --concurrency 8 --batch 20 --shape "$shape"
done

printf 'telemetry = false\n' >"$WORK/notel.toml"
# A tuned configuration, as cryo gets one: bigger JSON-RPC batches (a local node takes them).
printf 'batch_size = 50\nconcurrency = 4\n' >"$WORK/b50.toml"
RUNS=${RUNS:-5}
# Interleaved rounds: anvil slows down over its lifetime and the VM's speed drifts, so each
# round measures the ceiling and every tool back to back instead of one tool after another.
for run in $(seq "$RUNS"); do
  timed "node ceiling 8x20 (bare client) #$run" "$BENCH" ceiling --url "$URL" --to "$BLOCKS" --concurrency 8 --batch 20
  timed "node ceiling 16x50 (bare client) #$run" "$BENCH" ceiling --url "$URL" --to "$BLOCKS" --concurrency 16 --batch 50
  timed "blockstreamer (telemetry on) #$run" "$BIN" backfill --rpc "$URL" --from 0 --to "$BLOCKS" --db "$WORK/bs$run.db"
  timed "blockstreamer (telemetry off) #$run" "$BIN" backfill --config "$WORK/notel.toml" --rpc "$URL" --from 0 --to "$BLOCKS" --db "$WORK/bsn$run.db"
  timed "blockstreamer (batch 50 x 4) #$run" "$BIN" backfill --config "$WORK/b50.toml" --rpc "$URL" --from 0 --to "$BLOCKS" --db "$WORK/bsb$run.db"
  if [ -x "$CRYO_PY" ]; then
    timed "cryo default #$run" "$CRYO_PY" -c "import cryo; cryo.freeze(['blocks','transactions'], rpc='$URL', blocks=['0:$((BLOCKS+1))'], output_dir='$WORK/cryo_d$run', no_verbose=True)"
    timed "cryo fastest (128 req, 8 chunks) #$run" "$CRYO_PY" -c "import cryo; cryo.freeze(['blocks','transactions'], rpc='$URL', blocks=['0:$((BLOCKS+1))'], output_dir='$WORK/cryo_f$run', max_concurrent_requests=128, max_concurrent_chunks=8, chunk_size=250, no_verbose=True)"
  fi
done
sqlite3 "$WORK/bs1.db" "SELECT 'stored: ' || count(*) || ' blocks, ' || sum(tx_count) || ' txs, ' || (SELECT count(*) FROM provider_requests) || ' telemetry rows' FROM canonical_blocks"

if [ -x "$ETL_BIN" ]; then
  for run in $(seq 2); do
  timed "ethereum-etl default #$run" "$ETL_BIN" export_blocks_and_transactions --start-block 0 --end-block "$BLOCKS" \
    --provider-uri "$URL" --blocks-output "$WORK/b.csv" --transactions-output "$WORK/t.csv"
  timed "ethereum-etl 8 workers x batch 50 #$run" "$ETL_BIN" export_blocks_and_transactions --start-block 0 --end-block "$BLOCKS" \
    --provider-uri "$URL" --blocks-output "$WORK/b2.csv" --transactions-output "$WORK/t2.csv" --max-workers 8 --batch-size 50
  done
fi

echo
echo "medians over runs:"
sort -t'|' -k1,1 "$WORK/results" | gawk -F'|' -v b="$BLOCKS" -v t="$TXS" '
  function flush() { if (name == "") return; n = asort(w); m = (n % 2) ? w[(n+1)/2] : (w[n/2] + w[n/2+1]) / 2;
    asort(c); mc = (n % 2) ? c[(n+1)/2] : (c[n/2] + c[n/2+1]) / 2; asort(r); mr = r[n];
    asort(a); ma = (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2;
    printf "%-36s n=%d  median wall %6.2f s  %5.0f blocks/s  median cpu %5.2f s  max RSS %4.0f MiB  median anvil cpu %5.2f s\n", name, n, m, (b+1)/m, mc, mr/1024, ma;
    delete w; delete c; delete r; delete a; k = 0 }
  { if ($1 != name) { flush(); name = $1 } k++; w[k] = $2; c[k] = $3 + $4; r[k] = $5; a[k] = $6 }
  END { flush() }' 
