#!/usr/bin/env bash
# Pipeline ceiling (issue 14): `bench sim-ingest` (the simulated chain over loopback HTTP, backfilled
# into a fresh file: fetch, decode, verify, commit) against the plain-SQLite ceiling for the same
# rows (examples/sqlite_ceiling.rs: prepared inserts in large transactions, nothing else),
# interleaved RUNS times so that the VM's drift hits both alike; medians and their ratio.
#
#   bash bench/pipeline.sh    # needs: cargo build --release --examples
set -euo pipefail
cd "$(dirname "$0")/.."
BLOCKS=${BLOCKS:-20000}
TXS=${TXS:-20}
RUNS=${RUNS:-5}
T=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for run in $(seq "$RUNS"); do
  # The ceiling's rows (blocks and transactions), then the default, which also keeps each
  # block's JSON for /rpc (`[index] raw_json`).
  "$T/examples/bench" sim-ingest --blocks "$BLOCKS" --txs "$TXS" --raw-json false --db "$WORK/si.db" 2>/dev/null | tee -a "$WORK/ingest"
  "$T/examples/bench" sim-ingest --blocks "$BLOCKS" --txs "$TXS" --raw-json true --db "$WORK/si.db" 2>/dev/null | tee -a "$WORK/ingest_json"
  "$T/examples/sqlite_ceiling" --blocks "$BLOCKS" --txs "$TXS" --rounds 1 --db "$WORK/ceil.db" 2>/dev/null | tee -a "$WORK/ceiling"
done
median() { sed -n "s/.*$2.* = \([0-9]*\) blocks\/s$3.*/\1/p" "$1" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2 }'; }
I=$(median "$WORK/ingest" sim-ingest ","); IJ=$(median "$WORK/ingest_json" sim-ingest ","); C=$(median "$WORK/ceiling" "transactions in" ","); CI=$(median "$WORK/ceiling" "rebuilt" " indexed")
awk -v i="$I" -v ij="$IJ" -v c="$C" -v ci="$CI" -v n="$RUNS" 'BEGIN { printf "medians of %d: sim-ingest %d blocks/s (%d keeping each block JSON); plain-SQLite ceiling %d blocks/s loaded (%.2f), %d blocks/s with the hash index rebuilt as a bulk load does (%.2f)\n", n, i, ij, c, i / c, ci, i / ci }'
