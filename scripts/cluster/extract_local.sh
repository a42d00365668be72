#!/usr/bin/env bash
# Sharded extraction on one machine without a scheduler: N shards, P at a time (xargs -P), then the
# merge. Equivalent to the Slurm array in extract_array.sbatch.
#
#   MODEL=scGPT_human DATA=atlas.h5ad OUT_ROOT=acts N=8 P=4 bash scripts/cluster/extract_local.sh
set -euo pipefail
: "${MODEL:?}" "${DATA:?}" "${OUT_ROOT:?}" "${N:?}"
P=${P:-2}
BIN=${BIN:-scsae}
THREADS=${THREADS:-1}
mkdir -p "$OUT_ROOT"
export MODEL DATA OUT_ROOT N BIN THREADS LAYERS EXTRA
seq 0 $((N - 1)) | xargs -P "$P" -I{} bash -c '
  resume=""; [ -e "$OUT_ROOT/shard-{}/manifest.json" ] && resume=--resume
  "$BIN" extract --model "$MODEL" --data "$DATA" --layers "${LAYERS:-all}" ${EXTRA:-} \
    --threads "$THREADS" --shard {}/"$N" --out "$OUT_ROOT/shard-{}" $resume'
"$BIN" merge $(seq -f "$OUT_ROOT/shard-%g" 0 $((N - 1))) --out "$OUT_ROOT/merged"
