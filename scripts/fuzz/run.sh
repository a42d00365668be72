#!/usr/bin/env bash
# Long mutation-fuzzing run of every input parser (tests/reference/fuzz_readers.rs).
#
#   scripts/fuzz/run.sh [SECS] [SEED]          # defaults: 1800 s, seed 7
#   SCSAE_FUZZ_TARGETS=h5ad,tenx scripts/fuzz/run.sh 600 3
#
# Targets: h5ad tenx scgpt matrix gmt labels label_map acts. Each target runs in slices
# (SCSAE_FUZZ_SLICE_SECS, default 120) in a child process limited to SCSAE_FUZZ_MEM_MB (default
# 6144) of address space; a panic, abort (huge allocation), crash or hang (SCSAE_FUZZ_HANG_SECS,
# default 30) is saved to tests/fixtures/fuzz/crashes/<target>/known/ with a .txt describing it.
# Reproduce one input: SCSAE_FUZZ_REPRO=target:seed:iter cargo test --test reference \
#   fuzz_readers::fuzz_repro -- --ignored --nocapture   (writes it to target/fuzz-repro/)
#
# PROFILE=release builds with --release (slow first build); the default test profile is already
# optimised (opt-level 1 for scsae, 3 for dependencies) and keeps debug assertions (overflow checks).
set -euo pipefail
cd "$(dirname "$0")/../.."
export SCSAE_FUZZ_SECS="${1:-${SCSAE_FUZZ_SECS:-1800}}"
export SCSAE_FUZZ_SEED="${2:-${SCSAE_FUZZ_SEED:-7}}"
profile=()
if [[ "${PROFILE:-test}" == release ]]; then profile=(--release); fi
exec nice -n 19 cargo test "${profile[@]}" --test reference fuzz_readers::fuzz_long \
    -- --ignored --nocapture --test-threads 1
