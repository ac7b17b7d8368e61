#!/usr/bin/env bash
# Side-by-side run: Flower SecAgg+ (the harness beside this script, in its own venv) and
# secagg, same machine, same run, one JSON object per line in $OUT (default
# /tmp/compare_flower.jsonl). Needs the peers' venv: `make peers` (or PEER_PY pointing at a
# python with flwr installed). D and N: D_SPARSE (1e6), D_FULL (1e5), N (100).
set -euo pipefail
cd "$(dirname "$0")/../.."
PEER_PY=${PEER_PY:-.peers-venv/bin/python}
PEERS=${PEERS:-benchmarks/peers}
D_SPARSE=${D_SPARSE:-1000000}
D_FULL=${D_FULL:-100000}
N=${N:-100}
OUT=${OUT:-/tmp/compare_flower.jsonl}
SECAGG=${SECAGG:-.venv/bin/secagg}
if [ ! -x "$PEER_PY" ]; then
    echo "peer environment absent ($PEER_PY): run \`make peers\` or set PEER_PY" >&2
    exit 2
fi
: > "$OUT"
run() { echo "+ $*" >&2; "$@" | tr -d '\n' >> "$OUT"; echo >> "$OUT"; }
export FLWR_TELEMETRY_ENABLED=0
# Client masking and sparse unmasking: D=1e6, N=100, 10% dropout, Flower's default
# neighbourhood (num_shares 2·ceil(log2 N)+1, odd: 15 at N=100) and the same degree for us.
"$PEER_PY" "$PEERS/flower_secaggplus_bench.py" --d "$D_SPARSE" --N "$N" >> "$OUT"
K=$(tail -n 1 "$OUT" | "$PEER_PY" -c 'import json, sys; print(json.load(sys.stdin)["k"])')
run "$SECAGG" bench mask --clients "$N" --dim "$D_SPARSE" --degree "$K" --dropout 0.1 --profile semi-honest --json
run "$SECAGG" bench mask --clients "$N" --dim "$D_SPARSE" --degree "$K" --dropout 0.1 --profile active --json
# Complete graph: D=1e5, N=100, 10% dropout.
"$PEER_PY" "$PEERS/flower_secaggplus_bench.py" --d "$D_FULL" --N "$N" --graph full >> "$OUT"
run "$SECAGG" bench mask --clients "$N" --dim "$D_FULL" --dropout 0.1 --profile semi-honest --json
run "$SECAGG" bench mask --clients "$N" --dim "$D_FULL" --dropout 0.1 --profile active --json
# Raw keystream reference measured in the same run.
run "$SECAGG" bench primitives --json
echo "wrote $OUT" >&2
