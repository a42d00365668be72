#!/usr/bin/env bash
# The main job on the bundled data, end to end:
#   inspect -> extract every layer -> train an SAE on the last layer -> analyse its features against
#   cell types and gene sets (with the PCA baseline), and score their concepts on held-out cells ->
#   splice the SAE into scGPT (fidelity) and steer one feature -> train SpikGPT with plasma cells held out
#   (calibrated Unknown rule) -> annotate (explained through SAE features) -> evaluate; NK held out
#   (the hard case); reference -> query across chemistries: PBMC3k (10x v1) -> Kang 2018 (10x v2),
#   with a label map and per-batch metrics.
#
#   bash scripts/demo.sh                        # bundled immune cells, committed tiny checkpoint
#   MODEL=~/models/scGPT_human bash scripts/demo.sh   # a released scGPT checkpoint folder
#
# The committed checkpoint (tests/fixtures/scgpt/vocab60k: the real 60,697-token vocabulary, d = 32,
# 2 layers) is written by the official scGPT code with RANDOM weights: every step runs, but its
# embeddings carry no learned biology (only what a random network keeps of the expression profile).
# Use a released checkpoint (see README) for real results. Environment: MODEL, OUT (default demo-out; must not
# exist), EPOCHS (SAE epochs, default 10), THREADS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-tests/fixtures/scgpt/vocab60k}
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
  --out "$OUT/activations" --write-h5ad "$OUT/immune1000_scgpt.h5ad" --h5ad-layers "$LAYER"
run $bin/scsae train "${THREADS_OPT[@]}" --activations "$OUT/activations" --layer "$LAYER" --lambda 3 \
  --epochs "$EPOCHS" --out "$OUT/sae"
run $bin/scsae analyze "${THREADS_OPT[@]}" --sae "$OUT/sae" --activations "$OUT/activations" \
  --layer "$LAYER" --data "$DATA" --label-key "$KEY" --genesets genesets/ --out "$OUT/analysis"
# concepts chosen on half of each type's cells and scored on the other half (and the PCA baseline)
run $bin/scsae concepts --sae "$OUT/sae" --activations "$OUT/activations" --layer "$LAYER" \
  --data "$DATA" --label-key "$KEY" --out "$OUT/concepts"
# the SAE inside the model: its reconstruction spliced back into scGPT at its layer (masked-expression
# loss recovered, CLS cosine and kNN accuracy against the clean run and zero-ablation), on 200 cells
run $bin/scsae fidelity "${THREADS_OPT[@]}" --sae "$OUT/sae" --model "$MODEL" --data "$DATA" \
  --label-key "$KEY" --first-cells 200 --out "$OUT/fidelity"
# SpikGPT. The committed checkpoint's random weights give CLS embeddings without biology, so the
# annotator is shown on the stand-in embeddings of the same cells (50 principal components of the log
# expression, tests/fixtures/spikgpt/); with a released checkpoint, pass "$OUT/activations" instead.
EMB=tests/fixtures/spikgpt/immune1000_pca50.safetensors
SPIK=(--tokens 8 --width 64 --heads 4 --epochs 30 --lr 0.05)
# plasma cells held out: the calibrated Unknown rule (temperature, leave-one-type-out score, keep 95 %)
run $bin/spikgpt train "${THREADS_OPT[@]}" --embeddings "$EMB" --data "$DATA" --label-key "$KEY" \
  --hold-out plasma "${SPIK[@]}" --out "$OUT/spikgpt"
run $bin/spikgpt annotate "${THREADS_OPT[@]}" --model "$OUT/spikgpt" --embeddings "$EMB" \
  --out "$OUT/annotation/predictions.csv"
run $bin/spikgpt evaluate --predictions "$OUT/annotation/predictions.csv" --data "$DATA" \
  --label-key "$KEY" --held-out plasma --embeddings "$EMB"
# the hard case: NK cells (next to CD8 T cells) held out
run $bin/spikgpt train "${THREADS_OPT[@]}" --embeddings "$EMB" --data "$DATA" --label-key "$KEY" \
  --hold-out NK "${SPIK[@]}" --out "$OUT/spikgpt_nk"

# reference -> query across chemistries and studies: PBMC3k (10x v1) -> Kang 2018 (10x v2, control
# and IFN-beta stimulated cells) with a label map; Kang's activated T cells are the natural Unknown
# case (stand-in embeddings: the reference's PCA with the query projected into it)
run $bin/spikgpt train "${THREADS_OPT[@]}" --embeddings tests/fixtures/spikgpt/pbmc3k_ref_pca50.safetensors \
  --data data/pbmc3k_ref.h5ad --label-key cell_type "${SPIK[@]}" --out "$OUT/spikgpt_pbmc3k"
run $bin/spikgpt annotate "${THREADS_OPT[@]}" --model "$OUT/spikgpt_pbmc3k" \
  --embeddings tests/fixtures/spikgpt/kang_query_pca50.safetensors --out "$OUT/kang/predictions.csv"
run $bin/spikgpt evaluate --predictions "$OUT/kang/predictions.csv" --data data/kang_query.h5ad \
  --label-key cell_type --label-map data/pbmc3k_kang_label_map.csv --batch-key batch

# explaining calls through SAE features, on the scGPT CLS embeddings themselves (the mechanism runs
# end to end; with random weights the features mean nothing biological)
run $bin/spikgpt train "${THREADS_OPT[@]}" --embeddings "$OUT/activations" --data "$DATA" \
  --label-key "$KEY" --hold-out plasma "${SPIK[@]}" --out "$OUT/spikgpt_cls"
# causal steering: the layer SAE's feature with the best cell-type AUROC switched on at every token
# (--clamp 3), and what changes downstream: CLS embeddings, SpikGPT's calls, the expression head
FEATURE=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "best_auroc") c = i; next }
  f == "" || $c + 0 > best { best = $c + 0; f = $2 } END { print f }' "$OUT/analysis/features.csv")
run $bin/scsae steer "${THREADS_OPT[@]}" --sae "$OUT/sae" --model "$MODEL" --data "$DATA" \
  --label-key "$KEY" --first-cells 200 --feature "$FEATURE" --clamp 3 --spikgpt "$OUT/spikgpt_cls" \
  --out "$OUT/steer"
run $bin/scsae train "${THREADS_OPT[@]}" --activations "$OUT/activations" --layer cls --level cells \
  --features 256 --lambda 3 --epochs 100 --batch-size 128 --lr 0.001 --out "$OUT/sae_cls"
run $bin/scsae analyze "${THREADS_OPT[@]}" --sae "$OUT/sae_cls" --activations "$OUT/activations" \
  --layer cls --data "$DATA" --label-key "$KEY" --genesets genesets/ --out "$OUT/analysis_cls"
run $bin/spikgpt annotate "${THREADS_OPT[@]}" --model "$OUT/spikgpt_cls" --embeddings "$OUT/activations" \
  --sae "$OUT/sae_cls" --analysis "$OUT/analysis_cls" --out "$OUT/explained/predictions.csv" \
  --write-h5ad "$OUT/explained/immune1000_spikgpt.h5ad"
# the feature atlas: a static HTML site, a page per feature of the CLS SAE (with its held-out
# concept, the classes whose calls it drives, and its nearest features in the layer SAE); opens from disk
run $bin/scsae concepts --sae "$OUT/sae_cls" --activations "$OUT/activations" --layer cls \
  --data "$DATA" --label-key "$KEY" --out "$OUT/concepts_cls"
run $bin/scsae atlas --sae "$OUT/sae_cls" --activations "$OUT/activations" --layer cls \
  --data "$DATA" --label-key "$KEY" --analysis "$OUT/analysis_cls" --concepts "$OUT/concepts_cls" \
  --explain "$OUT/explained/predictions_class_drivers.csv" --compare-sae "$OUT/sae" --out "$OUT/atlas"
# the SAE's codes of every cell, with its feature table, as AnnData
run $bin/scsae encode --sae "$OUT/sae_cls" --activations "$OUT/activations" --layer cls \
  --analysis "$OUT/analysis_cls" --write-h5ad "$OUT/immune1000_sae_codes.h5ad"
echo "demo: results in $OUT/ (analysis report: $OUT/analysis/report.md; held-out concepts: $OUT/concepts/concepts.json;" \
  "SAE fidelity inside scGPT: $OUT/fidelity/fidelity.json; steering: $OUT/steer/steer.json;" \
  "annotation: $OUT/annotation/evaluation.txt, evaluation_confusion.png, evaluation_map.png and evaluation_rejection_curve.png;" \
  "reference -> query: $OUT/kang/evaluation.txt;" \
  "explanations: $OUT/explained/predictions_features.csv, predictions_class_drivers.csv;" \
  "AnnData: $OUT/immune1000_scgpt.h5ad, $OUT/explained/immune1000_spikgpt.h5ad, $OUT/immune1000_sae_codes.h5ad)" >&2
echo "demo: feature atlas: $OUT/atlas/index.html (browser check: python3 scripts/atlas/check_browser.py $OUT/atlas)" >&2
