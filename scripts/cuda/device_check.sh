#!/usr/bin/env bash
# The GPU check of the CUDA build, in one command (< 8 minutes on one H200):
#
#   bash scripts/cuda/device_check.sh [RESULTS_DIR]        # results under $OUT if set, else RESULTS_DIR
#
# Needs: the binaries from scripts/cuda/build.sh, device/bin or device/pack (carry `device/pack`),
# the repository's committed fixtures and data/, python3 with numpy, safetensors and h5py (torch for
# the PyTorch anchors, optional). No network, no Rust toolchain.
#
#  1. bad input: an absent CUDA ordinal and --dtype bf16 on the CPU each give one line, exit != 0;
#  2. parity GPU vs CPU of every stored tensor (each block's pooled output, the input embeddings,
#     CLS; per-token outputs of every block for the tiny model), f32 max |diff| <= 1e-3 asserted,
#     bf16 reported: the committed tiny checkpoint (tests/fixtures/scgpt/tiny) on the 1000 cells of
#     data/immune1000.h5ad, and a full-size random checkpoint (12 x 512, 60,697-token vocabulary,
#     written here by make_full_checkpoint.py) on the first 64 cells;
#  3. throughput, each with wall time, peak RSS and peak GPU memory (nvidia-smi): full-size
#     extraction cells/s (f32, bf16, f32 with batch 256), SAE training tokens/s (the paper recipe:
#     50,000 layer-11 tokens, M = 2048, L1, 40 epochs; and TopK k = 32), SpikGPT training and
#     annotation cells/s (tests/fixtures/spikgpt/immune1000_pca50.safetensors);
#  4. anchors, the same work in PyTorch on the same device: scripts/sae/bench_torch.py,
#     scripts/spikgpt/bench_torch.py, and scripts/scgpt/bench_torch.py (official scGPT 0.2.4) when
#     `scgpt` and `anndata` import (scripts/cuda/fetch_wheels.sh puts them in .whl/; carry .whl).
#
# Exit status 1 when any f32 parity check or bad-input check fails (the summary says which).
#
# Env: DEVICE=cuda (default) | cpu: a dry run of the whole script on the CPU (the "GPU" runs then use
#      --device cpu too; the bad-input check expects --device cuda to fail), for machines with no GPU.
#      BIN (default device/bin, else device/pack unpacked), PY (python3), WORK (scratch, default a new /tmp folder), FULL_CELLS (1000),
#      PARITY_CELLS (64), SAE_EPOCHS (40), SAE_TOKENS (50000), TORCH_STEPS (30),
#      SPK_ARGS ("--epochs 10": the paper model, width 512, 300 tokens, T = 4),
#      SPK_TORCH_ARGS ("--width 512 --heads 8 --tokens 300 --accuracy": the same model, 10 epochs),
#      SKIP_CPU_FULL=1 skips the full-size CPU reference (no full-size parity), STEP_TIMEOUT (150 s:
#      any one measured command is stopped after it, and counted as failed, so the whole check ends).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
DEVICE="${DEVICE:-cuda}"
BIN="${BIN:-}"
PY="${PY:-python3}"
RES="${OUT:-${1:-$repo/device/check-out}}"
WORK="${WORK:-$(mktemp -d /tmp/scsae-device-check.XXXXXX)}"
FULL_CELLS="${FULL_CELLS:-1000}"
PARITY_CELLS="${PARITY_CELLS:-64}"
SAE_EPOCHS="${SAE_EPOCHS:-40}"
SAE_TOKENS="${SAE_TOKENS:-50000}"
SPK_ARGS="${SPK_ARGS:---epochs 10}"
SPK_TORCH_ARGS="${SPK_TORCH_ARGS:---width 512 --heads 8 --tokens 300 --accuracy}"
TORCH_STEPS="${TORCH_STEPS:-30}"
STEP_TIMEOUT="${STEP_TIMEOUT:-150}"
TOL=1e-3
mkdir -p "$RES" "$WORK"
LOG="$RES/log.txt"
J="$WORK/results.jsonl"
: >"$J"
exec > >(tee -a "$LOG") 2>&1
t_start=$(date +%s)
failures=()
say() { echo "== $(( $(date +%s) - t_start ))s: $*"; }
fail() { failures+=("$1"); echo "FAIL: $1"; }

# --- libraries: the CUDA runtime libraries of the Python environment (torch's nvidia-* wheels),
# then a system toolkit; on a dry run also the build's wheels and its libcuda stub.
libdirs="$("$PY" - <<'PY' 2>/dev/null
import glob, importlib.util, os
dirs = []
spec = importlib.util.find_spec("nvidia")
for p in (spec.submodule_search_locations if spec else []):
    dirs += sorted(glob.glob(os.path.join(p, "cu*", "lib"))) + sorted(glob.glob(os.path.join(p, "*", "lib")))
print(":".join(dict.fromkeys(d for d in dirs if os.path.isdir(d))))
PY
)"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -d "$d" ]] && libdirs="${libdirs:+$libdirs:}$d"
done
if [[ "$DEVICE" == cpu ]]; then
  for d in "$repo"/.cuda-env/lib/python3*/site-packages/nvidia/cu13/lib; do
    [[ -d "$d/stubs" ]] && libdirs="$d/stubs:$d${libdirs:+:$libdirs}"
  done
fi
export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# --- the binaries: BIN, else device/bin, else unpacked from device/pack/scsae-cuda-bins.tar.xz
if [[ -z "$BIN" ]]; then
  if [[ -x "$repo/device/bin/scsae" ]]; then
    BIN="$repo/device/bin"
  elif [[ -f "$repo/device/pack/scsae-cuda-bins.tar.xz" ]]; then
    BIN="$WORK/bin"
    mkdir -p "$BIN"
    "$PY" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" \
      "$repo/device/pack/scsae-cuda-bins.tar.xz" "$BIN" || { echo "error: cannot unpack device/pack"; exit 2; }
    cp "$repo/device/pack/BUILD_INFO" "$BIN/" 2>/dev/null
  else
    echo "error: no binaries: build them with scripts/cuda/build.sh (device/bin, device/pack)"; exit 2
  fi
fi
for b in scsae spikgpt; do
  [[ -x "$BIN/$b" ]] || { echo "error: $BIN/$b missing: build it with scripts/cuda/build.sh"; exit 2; }
  missing="$(ldd "$BIN/$b" | grep 'not found' || true)"
  [[ -z "$missing" ]] || { echo "error: $BIN/$b: libraries not found: $(echo $missing)"; exit 2; }
done
S="$BIN/scsae"
K="$BIN/spikgpt"

say "machine"
echo "device mode: $DEVICE; results: $RES; scratch: $WORK"
cat "$BIN/BUILD_INFO" 2>/dev/null
"$S" --version
ldd "$S" | grep -E 'cuda|cublas|curand|nvrtc|cudart' | sed 's/^\s*/  /'
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>/dev/null || echo "(no nvidia-smi)"
nproc
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>/dev/null || echo "(no torch)"
gpu=()
[[ "$DEVICE" == cuda ]] && gpu=(--gpu)
m() { "$PY" "$here/measure.py" --timeout "$STEP_TIMEOUT" --json-out "$J" "${gpu[@]}" --label "$@"; }
absent="cuda:7"
[[ "$DEVICE" == cpu ]] && absent="cuda"

# --- 1. bad input on the new paths
say "1. bad input: --device $absent (absent), --dtype bf16 on the CPU"
bad() { # label, args...
  local label="$1"; shift
  "$S" extract --model tests/fixtures/scgpt/tiny --data data/immune1000.h5ad --first-cells 4 \
    --out "$WORK/bad_$label" "$@" >"$WORK/bad_$label.out" 2>"$WORK/bad_$label.err"
  local rc=$? lines
  lines=$(grep -c . "$WORK/bad_$label.err")
  echo "  $label: exit $rc, stderr ($lines line): $(cat "$WORK/bad_$label.err")"
  if [[ $rc -eq 0 || $lines -ne 1 ]] || grep -q panicked "$WORK/bad_$label.err"; then
    fail "bad input $label: exit $rc, $lines stderr lines"
  fi
  echo "{\"label\": \"bad_$label\", \"rc\": $rc, \"stderr_lines\": $lines}" >>"$J"
}
bad absent_device --device "$absent"
bad bf16_on_cpu --device cpu --dtype bf16

# --- 2. parity
ext() { # label device dtype model cells extra...
  local label="$1" dev="$2" dt="$3" model="$4" cells="$5"; shift 5
  m "$label" -- "$S" --device "$dev" --dtype "$dt" extract --model "$model" --data data/immune1000.h5ad \
    --first-cells "$cells" --out "$WORK/$label" --json --layers embeddings,all "$@"
}
cmp() { # label a b [--tol]
  local label="$1" a="$2" b="$3"; shift 3
  "$PY" "$here/compare_stores.py" "$WORK/$a" "$WORK/$b" --label "$label" --json-out "$J" "$@" \
    || { [[ $# -gt 0 ]] && fail "parity $label"; }
}
say "2a. parity, tiny checkpoint, 1000 cells, every layer per cell and per token"
ext tiny_cpu cpu f32 tests/fixtures/scgpt/tiny 1000 --tokens || fail "extract tiny_cpu"
ext tiny_dev_f32 "$DEVICE" f32 tests/fixtures/scgpt/tiny 1000 --tokens || fail "extract tiny_dev_f32"
cmp tiny_f32 tiny_cpu tiny_dev_f32 --tol "$TOL"
if [[ "$DEVICE" == cuda ]]; then
  ext tiny_dev_bf16 cuda bf16 tests/fixtures/scgpt/tiny 1000 --tokens || fail "extract tiny_dev_bf16"
  cmp tiny_bf16 tiny_cpu tiny_dev_bf16
fi

say "2b. full-size random checkpoint"
"$PY" "$here/make_full_checkpoint.py" --data data/immune1000.h5ad --out "$WORK/full" || fail "make_full_checkpoint"
if [[ "${SKIP_CPU_FULL:-0}" != 1 ]]; then
  say "2c. parity, full size, first $PARITY_CELLS cells, every layer pooled + CLS"
  ext full_cpu cpu f32 "$WORK/full" "$PARITY_CELLS" || fail "extract full_cpu"
  ext full_dev_f32 "$DEVICE" f32 "$WORK/full" "$PARITY_CELLS" || fail "extract full_dev_f32"
  cmp full_f32 full_cpu full_dev_f32 --tol "$TOL"
  if [[ "$DEVICE" == cuda ]]; then
    ext full_dev_bf16 cuda bf16 "$WORK/full" "$PARITY_CELLS" || fail "extract full_dev_bf16"
    cmp full_bf16 full_cpu full_dev_bf16
  fi
fi

# --- 3. throughput
say "3a. extraction throughput, full size, $FULL_CELLS cells"
ext thr_f32 "$DEVICE" f32 "$WORK/full" "$FULL_CELLS" || fail "extract thr_f32"
if [[ "$DEVICE" == cuda ]]; then
  ext thr_bf16 cuda bf16 "$WORK/full" "$FULL_CELLS" || fail "extract thr_bf16"
fi
ext thr_f32_b256 "$DEVICE" f32 "$WORK/full" "$FULL_CELLS" --batch-size 256 --max-batch-tokens 262144 \
  || fail "extract thr_f32_b256"

say "3b. SAE training: $SAE_TOKENS layer-11 tokens, M = 2048, $SAE_EPOCHS epochs"
m sae_tokens_extract -- "$S" --device "$DEVICE" extract --model "$WORK/full" --data data/immune1000.h5ad \
  --first-cells "$FULL_CELLS" --layers 11 --tokens --max-tokens "$SAE_TOKENS" --out "$WORK/tok" --json \
  || fail "extract tokens"
m sae_train_l1 -- "$S" --device "$DEVICE" train --activations "$WORK/tok" --layer 11 --level tokens \
  --features 2048 --epochs "$SAE_EPOCHS" --max-inputs "$SAE_TOKENS" --out "$WORK/sae_l1" --quiet || fail "sae train l1"
m sae_train_topk -- "$S" --device "$DEVICE" train --activations "$WORK/tok" --layer 11 --level tokens \
  --arch topk --k 32 --features 2048 --epochs "$SAE_EPOCHS" --max-inputs "$SAE_TOKENS" --out "$WORK/sae_topk" --quiet \
  || fail "sae train topk"

say "3c. SpikGPT training ($SPK_ARGS) and annotation, 1000 immune cells"
SPK_IN=tests/fixtures/spikgpt/immune1000_pca50.safetensors
m spk_train -- "$K" --device "$DEVICE" train --embeddings "$SPK_IN" --data data/immune1000.h5ad \
  --label-key cell_type_annotations $SPK_ARGS --out "$WORK/spk" || fail "spikgpt train"
m spk_annotate -- "$K" --device "$DEVICE" annotate --model "$WORK/spk" --embeddings "$SPK_IN" \
  --out "$WORK/spk_ann.csv" || fail "spikgpt annotate"

# --- 4. PyTorch anchors on the same device (not counted as failures)
say "4. PyTorch anchors"
if "$PY" -c "import torch" 2>/dev/null; then
  tdev="$DEVICE"
  m torch_sae -- "$PY" scripts/sae/bench_torch.py --device "$tdev" --threads "$(nproc)" --steps "$TORCH_STEPS" \
    || echo "  (SAE anchor failed)"
  cat "$WORK/torch_sae.stdout"
  m torch_spk -- "$PY" scripts/spikgpt/bench_torch.py --device "$tdev" --threads "$(nproc)" $SPK_TORCH_ARGS \
    || echo "  (SpikGPT anchor failed)"
  cat "$WORK/torch_spk.stdout"
  if [[ -d .whl ]] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
      && export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  if "$PY" -c "import anndata, importlib.util as u; assert u.find_spec('scgpt')" 2>/dev/null; then
    m torch_scgpt -- "$PY" scripts/scgpt/bench_torch.py --device "$tdev" --threads "$(nproc)" --cells "$FULL_CELLS" \
      2>"$WORK/torch_scgpt.err" || { echo "  (scGPT anchor failed)"; tail -3 "$WORK/torch_scgpt.err"; }
    cat "$WORK/torch_scgpt.stdout"
  else
    echo "  official scGPT anchor skipped: scgpt/anndata not importable (run scripts/cuda/fetch_wheels.sh, carry .whl)"
  fi
else
  echo "  skipped: no torch"
fi

# --- summary
say "summary"
cp "$J" "$RES/results.jsonl"
"$PY" "$here/summarize.py" --results "$J" --work "$WORK" --device "$DEVICE" --full-cells "$FULL_CELLS" \
  --sae-tokens "$SAE_TOKENS" --sae-epochs "$SAE_EPOCHS" | tee "$RES/summary.txt"
say "done in $(( $(date +%s) - t_start )) s"
if [[ ${#failures[@]} -gt 0 ]]; then
  echo "FAILED: ${failures[*]}"
  exit 1
fi
echo "PASSED: every f32 parity and bad-input check"
