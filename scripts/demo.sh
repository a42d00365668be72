#!/usr/bin/env bash
# The main job on the bundled data, end to end:
#   inspect -> extract every layer -> train an SAE on the last layer -> analyse its features against
#   cell types and gene sets (with the PCA baseline) -> train SpikGPT with NK held out -> annotate ->
#   evaluate the Unknown-cell rejection.
#
#   bash scripts/demo.sh                        # bundled immune cells, committed tiny checkpoint
#   MODEL=~/models/scGPT_human bash scripts/demo.sh   # a released scGPT checkpoint folder
#
# The committed checkpoint (tests/fixtures/scgpt/tiny) is written by the official scGPT code with
# random weights: it exercises every step, but its features carry no learned biology. Use a released
# checkpoint (see README) for real results. Environment: MODEL, OUT (default demo-out; must not
# exist), EPOCHS (SAE epochs, default 10), THREADS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-tests/fixtures/scgpt/tiny}
OUT=${OUT:-demo-out}
EPOCHS=${EPOCHS:-10}
DATA=data/immune1000.h5ad
KEY=cell_type_annotations
THREADS_OPT=()
if [ -n "${THREADS:-}" ]; then THREADS_OPT=(--threads "$THREADS"); fi

if [ -e "$OUT" ]; then
  echo "demo: $OUT already exists; remove it or set OUT=another/folder" >&2
  exit 1
fi
nlayers=$(sed -n 's/.*"nlayers"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$MODEL/args.json" | head -n1)
if [ -z "$nlayers" ]; then
  echo "demo: cannot read nlayers from $MODEL/args.json" >&2
  exit 1
fi
LAYER=$((nlayers - 1))

cargo build --locked --bins
bin=target/debug
run() { echo "+ $*" >&2; "$@"; }

run $bin/scsae inspect "$DATA" --label-key "$KEY"
run $bin/scsae extract "${THREADS_OPT[@]}" --model "$MODEL" --data "$DATA" --layers all --tokens \
  --out "$OUT/activations"
run $bin/scsae train "${THREADS_OPT[@]}" --activations "$OUT/activations" --layer "$LAYER" --lambda 3 \
  --epochs "$EPOCHS" --out "$OUT/sae"
run $bin/scsae analyze "${THREADS_OPT[@]}" --sae "$OUT/sae" --activations "$OUT/activations" \
  --layer "$LAYER" --data "$DATA" --label-key "$KEY" --genesets genesets/ --out "$OUT/analysis"
run $bin/spikgpt train "${THREADS_OPT[@]}" --embeddings "$OUT/activations" --data "$DATA" \
  --label-key "$KEY" --hold-out NK --tokens 8 --width 64 --heads 4 --epochs 30 --lr 0.05 \
  --out "$OUT/spikgpt"
# an SAE on the annotator's own input (the CLS cell embeddings) and what its features mean
run $bin/scsae train "${THREADS_OPT[@]}" --activations "$OUT/activations" --layer cls --level cells \
  --features 256 --lambda 3 --epochs 100 --batch-size 128 --lr 0.001 --out "$OUT/sae_cls"
run $bin/scsae analyze "${THREADS_OPT[@]}" --sae "$OUT/sae_cls" --activations "$OUT/activations" \
  --layer cls --data "$DATA" --label-key "$KEY" --genesets genesets/ --out "$OUT/analysis_cls"
# annotate, and explain every call through the SAE features (attribution, ablation check, reports)
run $bin/spikgpt annotate "${THREADS_OPT[@]}" --model "$OUT/spikgpt" --embeddings "$OUT/activations" \
  --sae "$OUT/sae_cls" --analysis "$OUT/analysis_cls" --out "$OUT/predictions.csv"
run $bin/spikgpt evaluate --predictions "$OUT/predictions.csv" --data "$DATA" --label-key "$KEY" \
  --held-out NK
echo "demo: results in $OUT/ (analysis report: $OUT/analysis/report.md;" \
  "explanations: $OUT/predictions_features.csv, $OUT/predictions_class_drivers.csv)" >&2
