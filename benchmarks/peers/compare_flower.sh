#!/usr/bin/env bash
# Side-by-side run: Flower SecAgg+ (../shared/peers harness, its own venv) and secagg,
# same machine, same run, one JSON object per line in $OUT (default /tmp/compare_flower.jsonl).
# Needs: PEER_PY pointing at a python with flwr installed (see ../shared/peers/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PEER_PY=${PEER_PY:-/tmp/peers-venv/bin/python}
PEERS=${PEERS:-../shared/peers}
OUT=${OUT:-/tmp/compare_flower.jsonl}
SECAGG=${SECAGG:-.venv/bin/secagg}
: > "$OUT"
run() { echo "+ $*" >&2; "$@" | tr -d '\n' >> "$OUT"; echo >> "$OUT"; }
export FLWR_TELEMETRY_ENABLED=0
# Client masking and sparse unmasking: D=1e6, N=100, 14 neighbours (num_shares 15), 10% dropout.
"$PEER_PY" "$PEERS/flower_secaggplus_bench.py" --d 1000000 --N 100 >> "$OUT"
run "$SECAGG" bench mask --clients 100 --dim 1000000 --degree 14 --dropout 0.1 --profile semi-honest --json
run "$SECAGG" bench mask --clients 100 --dim 1000000 --degree 14 --dropout 0.1 --profile active --json
# Complete graph: D=1e5, N=100, 10% dropout.
"$PEER_PY" "$PEERS/flower_secaggplus_bench.py" --d 100000 --N 100 --graph full >> "$OUT"
run "$SECAGG" bench mask --clients 100 --dim 100000 --dropout 0.1 --profile semi-honest --json
run "$SECAGG" bench mask --clients 100 --dim 100000 --dropout 0.1 --profile active --json
# Raw keystream reference measured in the same run.
run "$SECAGG" bench primitives --json
echo "wrote $OUT" >&2
