# Shared by the benchmark scripts that compare against the peers (sourced, from the repo root):
# where the tools are, and the CPU seconds a process has used so far.
ANVIL_BIN=${ANVIL_BIN:-.ci/tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil}
CRYO_PY=${CRYO_PY:-/opt/bench/cryo/bin/python}
ETL_BIN=${ETL_BIN:-/opt/bench/etl/bin/ethereumetl}
T=${CARGO_TARGET_DIR:-target}/release
BIN=$T/blockstreamer

# utime + stime of process $1 (0 when none is given), to show a server's share.
cpu_of() { [ -n "${1:-}" ] && awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" || echo 0; }
