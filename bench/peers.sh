#!/usr/bin/env bash
# The client against the peers with the provider out of the way (issue 14): an anvil chain of
# BLOCKS x TXS value transfers is recorded once and served from memory (examples/recorded.rs),
# then fetched side by side, RUNS times each, by
#   - blockstreamer backfill: blocks + transactions, and with receipts (its default); and blocks +
#     transactions without each block's JSON kept for /rpc (`raw_json = false`: cryo's rows),
#   - cryo 0.3.2: blocks + transactions, default columns (gas_used/success need receipts) and
#     without receipts (exclude_columns=['gas_used','success']),
#   - ethereum-etl 2.4.2: export_blocks_and_transactions.
#
#   BLOCKS=2000 bash bench/peers.sh   # needs: cargo build --release --examples; anvil (ANVIL_BIN);
#                                     # optional venvs CRYO_PY / ETL_BIN (see BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
BLOCKS=${BLOCKS:-2000}
TXS=${TXS:-20}
RUNS=${RUNS:-3}
PORT=${PORT:-18656}
FREE_PORT=${FREE_PORT:-18657}
. bench/common.sh
WORK=$(mktemp -d)
trap 'kill $ANVIL_PID $FREE_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
FREE_PID=
ANVIL_PID=

RECORDING=${RECORDING:-}
if [ -z "$RECORDING" ] || [ ! -s "$RECORDING" ]; then
  RECORDING=${RECORDING:-$WORK/chain.jsonl}
  "$ANVIL_BIN" --host 127.0.0.1 --port "$PORT" --silent --accounts 40 --gas-limit 100000000 --max-persisted-states 0 &
  ANVIL_PID=$!
  ANVIL="http://127.0.0.1:$PORT"
  for _ in $(seq 50); do curl -sf -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "$ANVIL" >/dev/null && break; sleep 0.1; done
  "$T/examples/bench" fill --url "$ANVIL" --blocks "$BLOCKS" --txs "$TXS"
  "$T/examples/recorded" record --url "$ANVIL" --to "$BLOCKS" --out "$RECORDING"
  kill $ANVIL_PID; ANVIL_PID=
fi
HEAD=$(( $(wc -l <"$RECORDING") - 2 ))
"$T/examples/recorded" serve --file "$RECORDING" --port "$FREE_PORT" >"$WORK/free.log" 2>&1 &
FREE_PID=$!
URL="http://127.0.0.1:$FREE_PORT"
for _ in $(seq 600); do grep -q serving "$WORK/free.log" && break; sleep 0.1; done

printf '[index]\nreceipts = false\n' >"$WORK/blocks.toml"
printf '[index]\nreceipts = false\nraw_json = false\n' >"$WORK/rows.toml"
printf '[index]\nreceipts = true\n' >"$WORK/receipts.toml"

timed() { # name, command...
  local name=$1; shift
  local before; before=$(cpu_of "$FREE_PID")
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" >"$WORK/out" 2>&1 || { echo "$name FAILED"; tail -5 "$WORK/out"; return 0; }
  read -r wall user sys rss <"$WORK/time"
  local server; server=$(awk -v a="$before" -v b="$(cpu_of "$FREE_PID")" 'BEGIN { printf "%.2f", b - a }')
  echo "$name|$wall|$user|$sys|$rss|$server" | sed 's/ #[0-9]*|/|/' >>"$WORK/results"
  awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v sc="$server" -v b="$((HEAD+1))" 'BEGIN {
    printf "%-44s wall %6.2f s  cpu %5.2f s  peak RSS %4.0f MiB  %7.0f blocks/s  server cpu %5.2f s\n", n, w, u+s, r/1024, b/w, sc }'
}

echo "chain: $((HEAD+1)) blocks x $TXS transactions, recorded from anvil, served from memory"
for run in $(seq "$RUNS"); do
  rm -f "$WORK"/*.db*
  timed "blockstreamer blocks + transactions #$run" \
    "$BIN" backfill --config "$WORK/blocks.toml" --rpc "$URL" --from 0 --to "$HEAD" --db "$WORK/b$run.db"
  timed "blockstreamer blocks + txs, no kept JSON #$run" \
    "$BIN" backfill --config "$WORK/rows.toml" --rpc "$URL" --from 0 --to "$HEAD" --db "$WORK/n$run.db"
  timed "blockstreamer blocks + txs + receipts #$run" \
    "$BIN" backfill --config "$WORK/receipts.toml" --rpc "$URL" --from 0 --to "$HEAD" --db "$WORK/r$run.db"
  if [ -x "$CRYO_PY" ]; then
    rm -rf "$WORK/c"*
    timed "cryo blocks + transactions, no receipts #$run" "$CRYO_PY" -c "import cryo; cryo.freeze(['blocks','transactions'], rpc='$URL', blocks=['0:$((HEAD+1))'], exclude_columns=['gas_used','success'], output_dir='$WORK/cn$run', no_verbose=True)"
    timed "cryo blocks + transactions, default #$run" "$CRYO_PY" -c "import cryo; cryo.freeze(['blocks','transactions'], rpc='$URL', blocks=['0:$((HEAD+1))'], output_dir='$WORK/cd$run', no_verbose=True)"
  fi
  if [ -x "$ETL_BIN" ] && [ -z "${SKIP_ETL:-}" ]; then
    timed "ethereum-etl blocks and transactions 8x50 #$run" "$ETL_BIN" export_blocks_and_transactions \
      --start-block 0 --end-block "$HEAD" --provider-uri "$URL" --blocks-output "$WORK/e$run-blocks.csv" \
      --transactions-output "$WORK/e$run-tx.csv" --max-workers 8 --batch-size 50
  fi
done
sqlite3 "$WORK/r$RUNS.db" "SELECT 'stored ' || (SELECT count(*) FROM blocks) || ' blocks, ' || (SELECT count(*) FROM transactions) || ' transactions, ' || (SELECT count(*) FROM receipts) || ' receipts'"

echo
echo "medians over runs:"
sort -t'|' -k1,1 "$WORK/results" | gawk -F'|' '
  function med(a, n) { asort(a); return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
  function flush() { if (name == "") return; mw = med(w, k); mc = med(c, k); ms = med(sv, k); asort(r); mr = r[k];
    printf "%-44s n=%d  wall %6.2f s  cpu %5.2f s  max RSS %4.0f MiB  server cpu %5.2f s\n", name, k, mw, mc, mr/1024, ms;
    delete w; delete c; delete r; delete sv; k = 0 }
  { if ($1 != name) { flush(); name = $1 } k++; w[k] = $2; c[k] = $3 + $4; r[k] = $5; sv[k] = $6 }
  END { flush() }'
