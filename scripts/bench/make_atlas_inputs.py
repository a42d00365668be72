"""Synthetic atlas-size inputs for scripts/bench/atlas_memory.sh.

    python scripts/bench/make_atlas_inputs.py OUT_DIR N_CELLS [N_GENES]

Writes, for N_CELLS cells of 14 types:
- OUT_DIR/data.h5ad: sparse integer counts (CSR, about 10 % non-zero) of N_GENES genes (default 200),
  obs `cell_type`; every type raises its own block of genes, so features and genes correlate;
- OUT_DIR/emb.safetensors: 64-dimensional float32 cell embeddings (`embeddings`, type-dependent mean
  plus noise), cell ids in the metadata entry `row_ids`, as `scsae::io::matrix` reads them;
- OUT_DIR/sets.gmt: one gene set per type block.
Generated in chunks of 100,000 cells with a fixed seed (same files for the same arguments).
"""
import json
import os
import sys

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "spikgpt"))
from safetensors_np import save  # noqa: E402

out, n = sys.argv[1], int(float(sys.argv[2]))
g = int(sys.argv[3]) if len(sys.argv) > 3 else 200
t, d, chunk = 14, 64, 100_000
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
labels = rng.integers(0, t, n)
centres = rng.normal(size=(t, d)).astype(np.float32)
block = max(1, g // t)

emb = np.empty((n, d), dtype=np.float32)
parts = []
for a in range(0, n, chunk):
    b = min(n, a + chunk)
    lab = labels[a:b]
    emb[a:b] = centres[lab] + rng.normal(scale=0.7, size=(b - a, d)).astype(np.float32)
    rate = np.full((b - a, g), 0.05)
    for k in range(t):
        rows = lab == k
        rate[np.ix_(rows, range(k * block, min(g, (k + 1) * block)))] = 0.6
    on = rng.random((b - a, g)) < rate
    counts = np.where(on, rng.integers(1, 8, (b - a, g)), 0).astype(np.float32)
    parts.append(sp.csr_matrix(counts))
x = sp.vstack(parts, format="csr")
ids = [f"cell{i}" for i in range(n)]
names = np.array([f"type{k:02d}" for k in range(t)])
obs = pd.DataFrame({"cell_type": pd.Categorical(names[labels])}, index=ids)
var = pd.DataFrame(index=[f"G{j}" for j in range(g)])
ad.AnnData(X=x, obs=obs, var=var).write_h5ad(os.path.join(out, "data.h5ad"))
save(os.path.join(out, "emb.safetensors"), {"embeddings": emb}, {"row_ids": json.dumps(ids)})
with open(os.path.join(out, "sets.gmt"), "w") as f:
    for k in range(t):
        genes = [f"G{j}" for j in range(k * block, min(g, (k + 1) * block))]
        f.write("\t".join([f"SET_type{k:02d}", "synthetic"] + genes) + "\n")
print(f"{out}: {n} cells, {g} genes ({x.nnz} non-zeros), 14 types, {d}-dim embeddings")
