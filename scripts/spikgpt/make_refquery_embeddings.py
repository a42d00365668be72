"""Stand-in cell embeddings for the reference -> query pair (PBMC3k 10x v1 -> Kang 2018 10x v2).

No pretrained scGPT weights can be obtained on the build machines, and the committed random-weight
checkpoints give embeddings without biology. So the SpikGPT reference -> query test and demo use the
classical reference mapping instead: a PCA fitted on the reference only, with the query projected
into it (as `scanpy.tl.ingest` does), on the genes both files share:

1. counts normalised to 10,000 per cell, log1p (scanpy `normalize_total` + `log1p`);
2. the 2,000 genes of highest variance in the reference (log values);
3. z-scored with the reference's mean and standard deviation, clipped to +-10 (scanpy `scale`);
4. 50 principal components of the reference (full SVD, centred); the query gets the reference's
   loadings.

Writes tests/fixtures/spikgpt/pbmc3k_ref_pca50.safetensors and kang_query_pca50.safetensors: tensor
`embeddings` [cells, 50] float32, cell ids (obs index) in the metadata entry `row_ids`, cells in file
order. Deterministic (no random step).

Run from the repository root:  python scripts/spikgpt/make_refquery_embeddings.py
"""
import json
import os
import sys

import anndata
import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(__file__))
from safetensors_np import save  # noqa: E402

N_HVG = 2000
N_PCS = 50


def lognorm(a, genes):
    x = a[:, genes].X
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    x = x.astype(np.float64)
    total = a.X.sum(axis=1)
    total = np.asarray(total).ravel()
    return np.log1p(x / total[:, None] * 1e4)


def main():
    ref = anndata.read_h5ad("data/pbmc3k_ref.h5ad")
    query = anndata.read_h5ad("data/kang_query.h5ad")
    qset = set(query.var_names)
    shared = [g for g in ref.var_names if g in qset]
    r = lognorm(ref, shared)
    q = lognorm(query, shared)
    var = r.var(axis=0)
    hvg = np.sort(np.argsort(-var, kind="stable")[:N_HVG])
    r, q = r[:, hvg], q[:, hvg]
    mu, sd = r.mean(axis=0), r.std(axis=0)
    sd[sd == 0] = 1.0
    rz = np.clip((r - mu) / sd, -10, 10)
    qz = np.clip((q - mu) / sd, -10, 10)
    centre = rz.mean(axis=0)
    _, _, vt = np.linalg.svd(rz - centre, full_matrices=False)
    # sign convention: largest absolute loading positive (deterministic across LAPACK builds)
    signs = np.sign(vt[np.arange(N_PCS), np.argmax(np.abs(vt[:N_PCS]), axis=1)])
    load = (vt[:N_PCS] * signs[:, None]).T
    out = "tests/fixtures/spikgpt"
    for name, z, a in [("pbmc3k_ref_pca50", rz, ref), ("kang_query_pca50", qz, query)]:
        emb = ((z - centre) @ load).astype(np.float32)
        save(f"{out}/{name}.safetensors", {"embeddings": emb},
             {"row_ids": json.dumps([str(i) for i in a.obs_names])})
        print("wrote", name, emb.shape)
    print("shared genes", len(shared), "hvg", len(hvg))


if __name__ == "__main__":
    main()
