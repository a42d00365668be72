#!/usr/bin/env bash
# Peak memory (max RSS) and wall time of `scsae analyze` at atlas sizes, on synthetic inputs
# (scripts/bench/make_atlas_inputs.py: 14 types, 200 genes, 64-dim embeddings; a TopK SAE, k = 32 of
# 2048 features, trained on 20,000 of the cells). analyze encodes the cells a chunk at a time into
# column-sparse codes, computes the exact AUROC from them, attributes genes from sums, tests the
# gene sets and fits the PCA baseline; memory should grow with the inputs and the non-zero codes
# (8 bytes each), not with cells x features.
#
#   bash scripts/bench/atlas_memory.sh                 # 1e5 and 1e6 cells
#   SIZES="1e4 1e5" bash scripts/bench/atlas_memory.sh
#
# Environment: SIZES (default "1e5 1e6"), WORK (inputs and outputs, default target/atlas-bench; inputs
# are reused), PYTHON (with numpy, scipy, pandas, anndata; default python3), BIN (folder of a built
# scsae; default: `cargo build --bins` then target/debug), PCA=none leaves out the PCA baseline
# (fitted on the 64-dim embeddings by the covariance solver; its scores, cells x 50, are kept column-sparse), BENCH=1 also runs the `atlas` group of
# benches/auroc.rs (AUROC alone) at each size under /usr/bin/time, STORE=1 reads the embeddings from an
# extraction folder (written once by scripts/bench/matrix_to_store.py; analyze then reads it a block of
# cells at a time) instead of the matrix file, GENES (default 200) sets the genes of the synthetic
# data (inputs then live in WORK/N_gGENES), READ=whole|by-rows|auto passes `--read-expression` (how the
# expression of data.h5ad is read; default auto). Needs GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZES=${SIZES:-"1e5 1e6"}
WORK=${WORK:-target/atlas-bench}
PYTHON=${PYTHON:-python3}
if [ -z "${BIN:-}" ]; then
  cargo build --locked --bins
  BIN=target/debug
fi
bench_bin=
if [ "${BENCH:-0}" = 1 ]; then
  bench_bin=$(cargo bench --locked --bench auroc --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*auroc[^"]*\)".*/\1/p' | tail -n1)
fi

results=()
for size in $SIZES; do
  n=$($PYTHON -c "print(int(float('$size')))")
  genes=${GENES:-200}
  dir=$WORK/$n
  [ "$genes" = 200 ] || dir=${dir}_g$genes
  if [ ! -e "$dir/sets.gmt" ]; then
    $PYTHON scripts/bench/make_atlas_inputs.py "$dir" "$n" "$genes"
  fi
  if [ ! -e "$dir/sae/cfg.json" ]; then
    rm -rf "$dir/sae"
    "$BIN/scsae" train --activations "$dir/emb.safetensors" --layer cls --arch topk --k 32 \
      --features 2048 --epochs 1 --max-inputs 20000 --quiet --out "$dir/sae"
  fi
  out="$dir/analysis_${READ:-auto}"
  rm -rf "$out"
  pca_opt=()
  if [ "${PCA:-auto}" = none ]; then pca_opt=(--pca-source none); fi
  acts="$dir/emb.safetensors"
  if [ "${STORE:-0}" = 1 ]; then
    [ -e "$dir/emb_store/manifest.json" ] ||
      $PYTHON scripts/bench/matrix_to_store.py "$dir/emb.safetensors" "$dir/emb_store"
    acts="$dir/emb_store"
  fi
  /usr/bin/time -f "%e %M" -o "$dir/analyze.time" "$BIN/scsae" analyze --sae "$dir/sae" \
    --activations "$acts" --layer cls --data "$dir/data.h5ad" --label-key cell_type \
    --genesets "$dir/sets.gmt" "${pca_opt[@]}" --read-expression "${READ:-auto}" --out "$out"
  read -r wall kb < "$dir/analyze.time"
  line="analyze (PCA baseline: ${PCA:-auto}; activations: $(basename "$acts"); expression read ${READ:-auto}) $n cells x $genes genes: ${wall} s, peak RSS $((kb / 1024)) MB"
  if [ -n "$bench_bin" ]; then
    SCSAE_ATLAS_CELLS=$n /usr/bin/time -f "%e %M" -o "$dir/bench.time" "$bench_bin" --bench atlas \
      > "$dir/bench.txt"
    read -r bwall bkb < "$dir/bench.time"
    per=$(sed -n 's/.*time: *\[[^ ]* [^ ]* \([^ ]* [^ ]*\) .*/\1/p' "$dir/bench.txt" | head -n1)
    line="$line; AUROC bench: $per per table (median), process peak RSS $((bkb / 1024)) MB, ${bwall} s in all"
  fi
  results+=("$line")
done
printf '%s\n' "${results[@]}"
