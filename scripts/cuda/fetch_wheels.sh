#!/usr/bin/env bash
# Download (here, where PyPI is reachable) the wheels the official-scGPT anchor of device_check.sh needs
# on the GPU machine, whose Python has torch, numpy, pandas, scipy, h5py but neither scgpt nor anndata:
# into .whl/ (git-ignored, ~1.1 MB; carry it with `device`). device_check.sh installs them with
# `pip install --no-index --no-deps --target` into its scratch folder.
#   scgpt 0.2.4 (the official code, imported through scripts/scgpt/official.py without its __init__),
#   anndata 0.10.9 (the last one without zarr among its requirements) + array-api-compat, natsort.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl scgpt==0.2.4 anndata==0.10.9 array-api-compat==1.16.0 natsort==8.4.0
ls -la .whl
