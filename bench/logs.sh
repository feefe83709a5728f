#!/usr/bin/env bash
# Logs benchmark (issue 13, "be a local indexer"): an anvil chain of 2,000 blocks x 20 calls to
# two token-like contracts (2.5 logs per call, ~100,000 logs), fetched side by side by
#   - a bare client (the node's ceiling for the same calls: blocks + receipts; blocks + eth_getLogs),
#   - blockstreamer with receipts and every log, and with one filtered, decoded contract,
#   - cryo 0.3.2 (logs; blocks + transactions + logs),
#   - ethereum-etl 2.4.2 (export_receipts_and_logs),
# first against anvil, then against a provider that costs nothing (examples/recorded.rs: the
# same answers recorded once and served from memory), so the clients, not the node, are measured.
#
#   bash bench/logs.sh     # needs: cargo build --release --examples; anvil (ANVIL_BIN);
#                          # optional venvs CRYO_PY / ETL_BIN (see BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
BLOCKS=${BLOCKS:-2000}
TXS=${TXS:-20}
RUNS=${RUNS:-3}
PORT=${PORT:-18646}
FREE_PORT=${FREE_PORT:-18647}
. bench/common.sh
WORK=$(mktemp -d)
trap 'kill $ANVIL_PID $FREE_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
FREE_PID=

"$ANVIL_BIN" --host 127.0.0.1 --port "$PORT" --silent --accounts 40 --gas-limit 100000000 --max-persisted-states 0 &
ANVIL_PID=$!
ANVIL="http://127.0.0.1:$PORT"
for _ in $(seq 50); do curl -sf -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "$ANVIL" >/dev/null && break; sleep 0.1; done
read -r TOKEN_A TOKEN_B < <("$T/examples/bench_logs" fill --url "$ANVIL" --blocks "$BLOCKS" --txs "$TXS")
HEAD=$(( $(curl -s -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}' "$ANVIL" | sed 's/.*"result":"\(0x[0-9a-f]*\)".*/\1/') ))
"$T/examples/recorded" record --url "$ANVIL" --to "$HEAD" --out "$WORK/chain.jsonl"
"$T/examples/recorded" serve --file "$WORK/chain.jsonl" --port "$FREE_PORT" >"$WORK/free.log" 2>&1 &
FREE_PID=$!
FREE="http://127.0.0.1:$FREE_PORT"
for _ in $(seq 100); do grep -q serving "$WORK/free.log" && break; sleep 0.1; done
"$T/examples/bench_logs" verify-cost --file "$WORK/chain.jsonl"

# The filtered, decoded contract: token A's Transfer and Approval, fetched with eth_getLogs.
cat >"$WORK/decoded.toml" <<EOF
[index]
receipts = false
[[index.contracts]]
name = "tok"
address = "$TOKEN_A"
events = ["event Transfer(address indexed from, address indexed to, uint256 value)",
          "event Approval(address indexed owner, address indexed spender, uint256 value)"]
EOF
printf '[index]\nreceipts = true\n' >"$WORK/receipts.toml"

timed() { # name, logs-count command (run after), command...
  local name=$1 count=$2; shift 2
  local before; before=$(cpu_of "$SERVER_PID")
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" >"$WORK/out" 2>&1 || { echo "$name FAILED"; tail -5 "$WORK/out"; return 0; }
  read -r wall user sys rss <"$WORK/time"
  local server; server=$(awk -v a="$before" -v b="$(cpu_of "$SERVER_PID")" 'BEGIN { printf "%.2f", b - a }')
  local logs; logs=$(eval "$count" 2>/dev/null || echo 0)
  echo "$name|$wall|$user|$sys|$rss|$server|$logs" | sed 's/ #[0-9]*|/|/' >>"$WORK/results"
  awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v sc="$server" -v l="$logs" 'BEGIN {
    printf "%-46s wall %6.2f s  cpu %5.2f s  peak RSS %4.0f MiB  logs %6d  %7.0f logs/s  server cpu %5.2f s\n",
      n, w, u+s, r/1024, l, l/w, sc }'
}

ALL_LOGS=$(( BLOCKS * TXS * 5 / 2 ))
A_LOGS=$(( BLOCKS * TXS ))
count_logs() { sqlite3 "$1" "SELECT count(*) FROM logs"; }
count_decoded() { sqlite3 "$1" "SELECT (SELECT count(*) FROM evt_tok_transfer) + (SELECT count(*) FROM evt_tok_approval)"; }

echo "chain: $((HEAD+1)) blocks, $BLOCKS x $TXS calls, $ALL_LOGS logs ($A_LOGS of token A) on anvil $("$ANVIL_BIN" --version | head -1 | awk '{print $3}')"
for side in anvil free; do
  if [ "$side" = anvil ]; then URL=$ANVIL; SERVER_PID=$ANVIL_PID; else URL=$FREE; SERVER_PID=$FREE_PID; fi
  for run in $(seq "$RUNS"); do
    timed "$side: bare client, blocks + receipts 8x20 #$run" "echo $ALL_LOGS" \
      "$T/examples/bench" ceiling --url "$URL" --to "$HEAD" --concurrency 8 --batch 20 --shape full+receipts
    timed "$side: bare client, blocks + eth_getLogs(A) 8x20 #$run" "echo $A_LOGS" \
      "$T/examples/bench" ceiling --url "$URL" --to "$HEAD" --concurrency 8 --batch 20 --shape full+logs --address "$TOKEN_A"
    timed "$side: blockstreamer receipts + all logs #$run" "count_logs $WORK/r$side$run.db" \
      "$BIN" backfill --config "$WORK/receipts.toml" --rpc "$URL" --from 0 --to "$HEAD" --db "$WORK/r$side$run.db"
    timed "$side: blockstreamer token A decoded (getLogs) #$run" "count_decoded $WORK/d$side$run.db" \
      "$BIN" backfill --config "$WORK/decoded.toml" --rpc "$URL" --from 0 --to "$HEAD" --db "$WORK/d$side$run.db"
    if [ -x "$CRYO_PY" ]; then
      timed "$side: cryo logs #$run" "echo $ALL_LOGS" "$CRYO_PY" -c "import cryo; cryo.freeze(['logs'], rpc='$URL', blocks=['0:$((HEAD+1))'], output_dir='$WORK/cl$side$run', no_verbose=True)"
      timed "$side: cryo blocks + transactions + logs #$run" "echo $ALL_LOGS" "$CRYO_PY" -c "import cryo; cryo.freeze(['blocks','transactions','logs'], rpc='$URL', blocks=['0:$((HEAD+1))'], output_dir='$WORK/cb$side$run', no_verbose=True)"
    fi
  done
  if [ -x "$ETL_BIN" ]; then
    # Its receipts-and-logs export takes transaction hashes: listed once, untimed.
    "$ETL_BIN" export_blocks_and_transactions --start-block 0 --end-block "$HEAD" --provider-uri "$URL" \
      --transactions-output "$WORK/tx.csv" --max-workers 8 --batch-size 50 >"$WORK/etl.log" 2>&1 \
      && "$ETL_BIN" extract_csv_column --input "$WORK/tx.csv" --column hash --output "$WORK/hashes.txt" >>"$WORK/etl.log" 2>&1 \
      || { echo "ethereum-etl FAILED"; tail -3 "$WORK/etl.log"; }
    [ -s "$WORK/hashes.txt" ] && timed "$side: ethereum-etl receipts and logs 8x50" "echo \$(( \$(wc -l <$WORK/logs.csv) - 1 ))" \
      "$ETL_BIN" export_receipts_and_logs --transaction-hashes "$WORK/hashes.txt" --provider-uri "$URL" \
      --receipts-output "$WORK/receipts.csv" --logs-output "$WORK/logs.csv" --max-workers 8 --batch-size 50
  fi
done
# Check what was stored: every log, and every decoded event of token A.
sqlite3 "$WORK/ranvil1.db" "SELECT 'receipts run stored ' || (SELECT count(*) FROM logs_view) || ' logs, ' || (SELECT count(*) FROM receipts_view) || ' receipts, receipts root verified in ' || (SELECT count(*) FROM blocks WHERE receipts_verified = 1) || ' blocks'"
sqlite3 "$WORK/danvil1.db" "SELECT 'decoded run stored ' || (SELECT count(*) FROM logs_view) || ' logs, ' || (SELECT count(*) FROM evt_tok_transfer_view) || ' transfers, ' || (SELECT count(*) FROM evt_tok_approval_view) || ' approvals, ' || (SELECT count(*) FROM decode_errors) || ' decode errors'"

echo
echo "medians over runs:"
sort -t'|' -k1,1 "$WORK/results" | gawk -F'|' '
  function med(a, n) { asort(a); return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
  function flush() { if (name == "") return; mw = med(w, k); mc = med(c, k); ms = med(sv, k); asort(r); mr = r[k];
    printf "%-46s n=%d  wall %6.2f s  cpu %5.2f s  max RSS %4.0f MiB  %7.0f logs/s  server cpu %5.2f s\n", name, k, mw, mc, mr/1024, logs/mw, ms;
    delete w; delete c; delete r; delete sv; k = 0 }
  { if ($1 != name) { flush(); name = $1 } k++; w[k] = $2; c[k] = $3 + $4; r[k] = $5; sv[k] = $6; logs = $7 }
  END { flush() }'
