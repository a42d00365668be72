"""Reference values for reading AnnData 0.7 files (categorical columns stored as integer codes
with their categories in `obs/__categories/<col>`), read with Python anndata.

Run from the repository root (needs numpy, scipy, anndata) after
scripts/data/make_anndata07_subsets.py, which cuts the committed files from ../shared/data:
    python scripts/data/make_anndata07_fixture.py
Writes tests/fixtures/data/anndata07.json, one entry per file: shape, first/last cell ids, first
gene symbols, obs and var columns with their dtypes, the label columns' per-cell values at both
ends and value counts, the number of non-zero values, per-cell totals of the first cells, per-gene
sums of the first genes (float64, over all cells), and a few whole rows as (gene index, value)
pairs. Deterministic: same files and anndata version, same bytes. tests/reference/data_h5ad.rs
compares the Rust reader against it.
"""
import importlib.metadata
import json
import os
import sys

import anndata
import numpy as np
import scipy.sparse as sp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(ROOT, "tests", "fixtures", "data")
OUT = os.path.join(ROOT, "tests", "fixtures", "data", "anndata07.json")

N_IDS = 20  # cell ids / label values kept at each end, gene symbols kept from the start
N_SUMS = 50  # cells with totals, genes with sums
SAMPLE_ROWS = [0, 7]
CHUNK = 1024  # rows per block when reducing a dense X


def reduce_x(X):
    """Per-cell totals, per-gene sums (float64) and the count of non-zero values, blockwise."""
    n, m = X.shape
    row_sums = np.zeros(n, dtype=np.float64)
    col_sums = np.zeros(m, dtype=np.float64)
    nonzero = 0
    for a in range(0, n, CHUNK):
        block = X[a : a + CHUNK]
        if sp.issparse(block):
            block = sp.csr_matrix(block).astype(np.float64)
            row_sums[a : a + block.shape[0]] = np.asarray(block.sum(axis=1)).ravel()
            col_sums += np.asarray(block.sum(axis=0)).ravel()
            nonzero += int(np.count_nonzero(block.data))
        else:
            block = np.asarray(block, dtype=np.float64)
            row_sums[a : a + block.shape[0]] = block.sum(axis=1)
            col_sums += block.sum(axis=0)
            nonzero += int(np.count_nonzero(block))
    return row_sums, col_sums, nonzero


def sparse_row(X, i):
    row = X[i]
    row = row.toarray() if sp.issparse(row) else np.asarray(row)
    row = row.ravel()
    idx = np.flatnonzero(row)
    return [[int(j), float(row[j])] for j in idx]


def column_values(series):
    """Per-cell values as anndata gives them: strings, None for missing."""
    return [None if (isinstance(v, float) and np.isnan(v)) else str(v) for v in series.tolist()]


def describe(name, label_keys):
    path = os.path.join(SHARED, name)
    ad = anndata.read_h5ad(path)
    X = ad.X
    row_sums, col_sums, nonzero = reduce_x(X)
    labels = {}
    for key in label_keys:
        col = ad.obs[key]
        vals = column_values(col)
        counts = col.value_counts(dropna=True)
        labels[key] = {
            "dtype": str(col.dtype),
            "categories": [str(c) for c in col.cat.categories],
            "n_missing": int(col.isna().sum()),
            "counts": {str(k): int(v) for k, v in counts.items()},
            "first": vals[:N_IDS],
            "last": vals[-N_IDS:],
        }
    numeric = {}
    for c in ad.obs.columns:
        if ad.obs[c].dtype.kind in "iuf":
            numeric[c] = [float(v) for v in ad.obs[c].to_numpy()[:N_IDS]]
    var_columns = {}
    for c in ad.var.columns:
        var_columns[c] = column_values(ad.var[c])[:N_IDS]
    return {
        "file": name,
        "n_obs": int(ad.n_obs),
        "n_vars": int(ad.n_vars),
        "x_dense": not sp.issparse(X),
        "obs_names_first": list(map(str, ad.obs_names[:N_IDS])),
        "obs_names_last": list(map(str, ad.obs_names[-N_IDS:])),
        "var_names_first": list(map(str, ad.var_names[:N_IDS])),
        "obs_columns": list(map(str, ad.obs.columns)),
        "obs_dtypes": {str(c): str(ad.obs[c].dtype) for c in ad.obs.columns},
        "obs_numeric_first": numeric,
        "var_columns": list(map(str, ad.var.columns)),
        "var_values_first": var_columns,
        "labels": labels,
        "nonzero": nonzero,
        "cell_totals_first": row_sums[:N_SUMS].tolist(),
        "gene_sums_first": col_sums[:N_SUMS].tolist(),
        "sample_rows": {str(i): sparse_row(X, i) for i in SAMPLE_ROWS},
    }


def main():
    cases = [
        ("pbmc3k_10x_v1_300.h5ad", ["celltype"]),
        ("kang2018_ifnb_400.h5ad", ["cell_type", "condition"]),
    ]
    out = {
        "anndata_version": importlib.metadata.version("anndata"),
        "files": {name: describe(name, keys) for name, keys in cases},
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    for name, d in out["files"].items():
        print(name, d["n_obs"], d["n_vars"], d["nonzero"], file=sys.stderr)
    print(OUT, os.path.getsize(OUT), "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
