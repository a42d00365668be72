#!/usr/bin/env bash
# Build the CUDA binaries (`--features cuda`) on a machine WITHOUT a GPU or a CUDA install.
#
# nvcc, the CUDA headers and the CUDA libraries come from NVIDIA's Python wheels (CUDA 13.0, the
# version the GPU machines run: driver 580.x = CUDA 13.0, nvcc 13.0 there). The GPU kernels are
# compiled to PTX for compute capability 9.0 (Hopper: H100/H200) and JIT-loaded by the driver; a
# PTX newer than the driver understands would fail to load, which is why the toolkit is pinned to
# 13.0 and not the newest 13.x.
#
# The link needs libcuda.so (the driver), which no wheel ships: a stub with every driver-API symbol
# (each returns CUDA_ERROR_NO_DEVICE) is generated from cudarc's bindings and used for the link
# only; at run time the real driver's libcuda.so.1 is loaded. Loaded on a machine without a GPU
# (LD_LIBRARY_PATH including the stub folder), the binary runs on the CPU and `--device cuda`
# fails cleanly, which is what scripts/cuda/device_check.sh DEVICE=cpu uses.
#
# Usage: bash scripts/cuda/build.sh
# Env:   CUDA_ENV      venv holding the wheels     (default: <repo>/.cuda-env, git-ignored)
#        CARGO_TARGET_DIR                           (default: <repo>/target-cuda, git-ignored)
#        CUDA_COMPUTE_CAP                           (default: 90)
#        CARGO_BUILD_JOBS, NICE (default 10)
# Output (git-ignored): device/bin/{scsae,spikgpt,BUILD_INFO} (stripped) and
#         device/pack/{scsae-cuda-bins.tar.xz,BUILD_INFO}, what travels to a GPU machine
#         (`carry: ["device/pack", ".whl"]` with the device tool; then scripts/cuda/device_check.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

CUDA_ENV="${CUDA_ENV:-$repo/.cuda-env}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target-cuda}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
NICE="${NICE:-10}"

# Exact versions, tested together (CUDA 13.0 update 2 toolkit components).
WHEELS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.1.0.3
  nvidia-curand==10.4.0.35
)

# 1. The Python environment with the toolkit wheels (reused when the pins are already installed).
stamp="$CUDA_ENV/.scsae-wheels"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "${WHEELS[*]}" ]]; then
  echo "== creating $CUDA_ENV with ${WHEELS[*]}"
  python3 -m venv "$CUDA_ENV"
  "$CUDA_ENV/bin/python" -m pip install -q --disable-pip-version-check "${WHEELS[@]}"
  echo "${WHEELS[*]}" >"$stamp"
fi
CU="$("$CUDA_ENV/bin/python" - <<'PY'
import os, nvidia
for p in nvidia.__path__:
    d = os.path.join(p, "cu13")
    if os.path.isfile(os.path.join(d, "bin", "nvcc")):
        print(d)
        break
PY
)"
[[ -n "$CU" ]] || { echo "error: nvcc not found in $CUDA_ENV (nvidia/cu13/bin/nvcc)" >&2; exit 1; }

# 2. Link names the wheels lack: libX.so -> libX.so.N, and the libcuda.so stub, in lib/stubs
#    (a place cudarc's build script searches under $CUDA_ROOT, like a real toolkit's stubs).
stubs="$CU/lib/stubs"
mkdir -p "$stubs"
for lib in cudart cublas cublasLt curand nvrtc; do
  so="$(cd "$CU/lib" && ls "lib$lib.so."* | grep -E "^lib$lib\.so\.[0-9]+$" | head -1)"
  [[ -n "$so" ]] || { echo "error: lib$lib.so.* missing in $CU/lib" >&2; exit 1; }
  ln -sf "../$so" "$stubs/lib$lib.so"
done
cudarc_src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10 2>/dev/null | head -1 || true)"
if [[ -z "$cudarc_src" ]]; then
  cargo fetch --locked >/dev/null
  cudarc_src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10 | head -1)"
fi
if [[ ! -f "$stubs/libcuda.so.1" || "$here/build.sh" -nt "$stubs/libcuda.so.1" ]]; then
  # CUresult 100 = CUDA_ERROR_NO_DEVICE
  grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc_src/src/driver/sys/mod.rs" \
    | sed 's/^pub unsafe fn //' | sort -u \
    | awk '{print "int " $1 "(void) { return 100; }"}' >"$stubs/libcuda_stub.c"
  cc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so.1" "$stubs/libcuda_stub.c"
  ln -sf libcuda.so.1 "$stubs/libcuda.so"
fi

# 3. The build.
export PATH="$CU/bin:$PATH"
export CUDA_ROOT="$CU" CUDA_PATH="$CU" CUDA_HOME="$CU" CUDA_TOOLKIT_ROOT_DIR="$CU"
export NVCC="$CU/bin/nvcc"
export CPATH="$CU/include${CPATH:+:$CPATH}"
export LIBRARY_PATH="$stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CUDARC_CUDA_VERSION=13000
nvcc_version="$(nvcc --version | grep -o 'release [0-9.]*, V[0-9.]*')"
echo "== nvcc: $nvcc_version; compute capability $CUDA_COMPUTE_CAP; target dir $CARGO_TARGET_DIR"
start=$(date +%s)
nice -n "$NICE" cargo build --locked --profile device --features cuda --bins
secs=$(( $(date +%s) - start ))

# 4. Stripped copies (device/bin, for this machine), and both in one solid xz archive to carry to the
#    GPU machine (device/pack: ~15 MB instead of 2 x 88 MB; most of each binary is the same candle
#    kernels, which a 192 MiB window finds twice). device_check.sh unpacks it with Python's tarfile.
mkdir -p "$repo/device/bin" "$repo/device/pack"
for b in scsae spikgpt; do
  cp "$CARGO_TARGET_DIR/device/$b" "$repo/device/bin/$b"
  strip "$repo/device/bin/$b" 2>/dev/null || true
done
pack="$repo/device/pack/scsae-cuda-bins.tar.xz"
echo "== packing $pack"
tar -C "$repo/device/bin" -cf - scsae spikgpt | nice -n "$NICE" xz -T1 -6 --lzma2=preset=6,dict=192MiB >"$pack.tmp"
mv "$pack.tmp" "$pack"
{
  echo "built: $(date -u +%FT%TZ) on $(uname -m), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "cargo build --locked --profile device --features cuda --bins: ${secs}s (this run)"
  echo "nvcc: $nvcc_version; CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP; wheels: ${WHEELS[*]}"
  for b in scsae spikgpt; do echo "$b: $(stat -c %s "$repo/device/bin/$b") bytes (stripped)"; done
  echo "$(basename "$pack"): $(stat -c %s "$pack") bytes"
  echo "needs at run time: $(readelf -d "$repo/device/bin/scsae" | grep -o 'NEEDED.*' | grep -o '\[.*\]' | tr -d '[]' | tr '\n' ' ')"
} | tee "$repo/device/bin/BUILD_INFO"
cp "$repo/device/bin/BUILD_INFO" "$repo/device/pack/BUILD_INFO"
