"""Reference values for the h5ad reader tests, read with Python anndata/h5py.

Run from the repository root (needs numpy, scipy, anndata, h5py):
    python scripts/data/make_fixtures.py
Writes tests/fixtures/data/<name>.json for each bundled file and matrix layer: shapes, stored
non-zeros, per-cell and per-gene sums, stored values per cell, a few full rows, cell ids, gene
symbols and obs columns with label counts. tests/reference/data_h5ad.rs compares the Rust reader
against them.
"""
import importlib.metadata
import json
import os
import sys

import anndata
import numpy as np
import scipy.sparse as sp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "data")


def describe(path, layer, label_key):
    ad = anndata.read_h5ad(path)
    if layer == "raw":
        X = ad.raw.X
        genes = list(ad.raw.var_names)
    else:
        X = ad.X
        genes = list(ad.var_names)
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        nnz = int(X.nnz)
        nnz_per_row = np.diff(X.indptr).tolist()
        dense_rows = lambda idx: X[idx].toarray()
        row_sums = np.asarray(X.astype(np.float64).sum(axis=1)).ravel()
        col_sums = np.asarray(X.astype(np.float64).sum(axis=0)).ravel()
    else:
        X = np.asarray(X)
        nnz = int(np.count_nonzero(X))
        nnz_per_row = np.count_nonzero(X, axis=1).tolist()
        dense_rows = lambda idx: X[idx]
        row_sums = X.astype(np.float64).sum(axis=1)
        col_sums = X.astype(np.float64).sum(axis=0)
    n = X.shape[0]
    sample = sorted({0, 1, n // 2, n - 1})
    obs = {}
    for c in ad.obs.columns:
        col = ad.obs[c]
        obs[c] = str(col.dtype)
    labels = ad.obs[label_key].astype(str).value_counts().to_dict()
    return {
        "file": os.path.relpath(path, ROOT),
        "layer": layer,
        "n_cells": int(X.shape[0]),
        "n_genes": int(X.shape[1]),
        "nnz": nnz,
        "nnz_per_cell": nnz_per_row,
        "cell_sums": row_sums.tolist(),
        "gene_sums": col_sums.tolist(),
        "sample_rows": sample,
        "sample_values": [np.asarray(dense_rows(i)).ravel().astype(float).tolist() for i in sample],
        "cell_ids": list(map(str, ad.obs_names)),
        "gene_symbols": list(map(str, genes)),
        "obs_columns": list(ad.obs.columns),
        "obs_dtypes": obs,
        "label_key": label_key,
        "labels": {str(k): int(v) for k, v in labels.items()},
        "label_values_first10": ad.obs[label_key].astype(str).tolist()[:10],
        "anndata_version": importlib.metadata.version("anndata"),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = [
        ("data/immune1000.h5ad", "X", "cell_type_annotations", "immune1000_X"),
        ("data/pbmc68k_reduced.h5ad", "raw", "bulk_labels", "pbmc68k_raw"),
        ("data/pbmc68k_reduced.h5ad", "X", "bulk_labels", "pbmc68k_X"),
    ]
    for rel, layer, key, name in cases:
        d = describe(os.path.join(ROOT, rel), layer, key)
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(d, f)
        print(name, d["n_cells"], d["n_genes"], d["nnz"], file=sys.stderr)


if __name__ == "__main__":
    main()
