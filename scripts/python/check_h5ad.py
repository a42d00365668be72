#!/usr/bin/env python3
"""Check `--write-h5ad` of `scsae extract`, `scsae encode` and `spikgpt annotate` with anndata and
scanpy, against the tables the same runs write and against an independent Python reader.

    bash scripts/demo.sh                                  # writes demo-out/ (with the .h5ad files)
    python scripts/python/check_h5ad.py demo-out [--bin target/debug]

1. demo-out/immune1000_scgpt.h5ad (extract): opens in anndata.read_h5ad; X, obs, var, the input's
   obsm keys unchanged; obsm['X_scGPT'] equals the store's CLS rows (scsae_read.read_cells, joined by
   cell id), unit norm as official embed_data; pooled layers equal the store's layer means; scanpy
   runs sc.pp.neighbors on it.
2. demo-out/explained/immune1000_spikgpt.h5ad (annotate --sae): obs spikgpt_* equal the prediction
   table (joined by cell id); obsm['spikgpt_proba'] equals its prob_* columns in uns classes order;
   spikgpt_unknown == (label == Unknown); spikgpt_top_features equal the features table's top features.
3. demo-out/immune1000_sae_codes.h5ad (encode --analysis): obsm['X_sae'] (sparse) equals numpy codes
   of the store's CLS rows (scsae_read.sae_encode); uns['sae']['features'] equals features.parquet.
4. AnnData 0.7 input (tests/fixtures/data/kang2018_ifnb_400.h5ad, categories in __categories): a
   fresh extract --write-h5ad keeps its categorical labels as strings and adds X_scGPT.
5. Bad input: onto the input, onto an existing file, an h5ad whose cells do not match: exit 1, one
   line naming the file, nothing written.
Needs numpy, pandas, pyarrow, safetensors, anndata, scanpy. Exits 1 on a failed check.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(__file__))
from scsae_read import read_cells, read_sae, read_table, sae_encode  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def by_id(ids, mat, order):
    pos = {c: i for i, c in enumerate(ids)}
    return mat[[pos[c] for c in order]]


def check_extract(demo):
    path = os.path.join(demo, "immune1000_scgpt.h5ad")
    a = anndata.read_h5ad(path)
    src = anndata.read_h5ad(os.path.join(ROOT, "data/immune1000.h5ad"))
    check(list(a.obs_names) == list(src.obs_names), "extract: same cells in the same order")
    check((a.X != src.X).nnz == 0 if sp.issparse(a.X) else np.array_equal(a.X, src.X), "extract: X unchanged")
    check(a.obs.equals(src.obs) and a.var.equals(src.var), "extract: obs and var unchanged")
    check(set(src.obsm) < set(a.obsm), f"extract: input obsm kept ({sorted(src.obsm)})")
    ids, cls = read_cells(os.path.join(demo, "activations"), "cls")
    e = a.obsm["X_scGPT"]
    check(e.dtype == np.float32 and e.shape == (a.n_obs, cls.shape[1]), f"extract: X_scGPT {e.shape} float32")
    check(np.array_equal(e, by_id(ids, cls, a.obs_names)), "extract: X_scGPT == store CLS rows by cell id")
    norms = np.linalg.norm(e, axis=1)
    check(np.abs(norms - 1).max() < 1e-5, f"extract: X_scGPT rows unit norm (max |norm-1| {np.abs(norms - 1).max():.1e})")
    for key in [k for k in a.obsm if k.startswith("X_scGPT_layer")]:
        ids_l, m = read_cells(os.path.join(demo, "activations"), key[len("X_scGPT_layer"):])
        check(np.array_equal(a.obsm[key], by_id(ids_l, m, a.obs_names)), f"extract: {key} == store layer means")
    import scanpy as sc
    sc.pp.neighbors(a, use_rep="X_scGPT", n_neighbors=10, random_state=0)
    check("connectivities" in a.obsp, "extract: scanpy sc.pp.neighbors(use_rep='X_scGPT') runs")


def check_annotate(demo):
    path = os.path.join(demo, "explained/immune1000_spikgpt.h5ad")
    a = anndata.read_h5ad(path)
    p = read_table(os.path.join(demo, "explained/predictions.parquet")).set_index("cell_id").loc[a.obs_names]
    check(a.obs["spikgpt_label"].dtype.name == "category", "annotate: spikgpt_label is categorical")
    check((a.obs["spikgpt_label"].astype(str).values == p["label"].values).all(), "annotate: spikgpt_label == table label")
    check((a.obs["spikgpt_best"].astype(str).values == p["best_label"].values).all(), "annotate: spikgpt_best == table best_label")
    check(np.abs(a.obs["spikgpt_confidence"].values - p["confidence"].values).max() < 1e-12, "annotate: spikgpt_confidence == table")
    check(a.obs["spikgpt_unknown"].dtype == bool and (a.obs["spikgpt_unknown"].values == (p["label"] == "Unknown").values).all(),
          "annotate: spikgpt_unknown bool == (label == Unknown)")
    classes = list(a.uns["spikgpt"]["classes"])
    probs = p[[f"prob_{c}" for c in classes]].values
    err = np.abs(a.obsm["spikgpt_proba"] - probs).max()
    check(err < 1e-6, f"annotate: obsm spikgpt_proba == table prob_* in uns classes order (max {err:.1e}, float32)")
    f = read_table(os.path.join(demo, "explained/predictions_features.parquet"))
    first = f.sort_values(["cell_id", "rank"]) if "rank" in f else f
    top = first.groupby("cell_id", sort=False)["feature"].apply(lambda s: ";".join(f"f{int(v)}" for v in s))
    got = a.obs["spikgpt_top_features"]
    same = all(got[c] == top[c] for c in a.obs_names[:200])
    check(same, "annotate: spikgpt_top_features == features table (first 200 cells)")
    check(sp.issparse(a.obsm["spikgpt_attribution"]), "annotate: obsm spikgpt_attribution is sparse")


def check_encode(demo):
    path = os.path.join(demo, "immune1000_sae_codes.h5ad")
    a = anndata.read_h5ad(path)
    z = a.obsm["X_sae"]
    check(sp.issparse(z), "encode: obsm X_sae is a scipy sparse matrix")
    ids, cls = read_cells(os.path.join(demo, "activations"), "cls")
    want = sae_encode(read_sae(os.path.join(demo, "sae_cls")), by_id(ids, cls, a.obs_names))
    err = np.abs(z.toarray() - want).max()
    check(err < 1e-4, f"encode: X_sae == numpy codes of the store's CLS rows (max {err:.1e})")
    feats = a.uns["sae"]["features"]
    ref = read_table(os.path.join(demo, "analysis_cls/features.parquet")).set_index("feature")
    check(list(feats.index) == list(ref.index), "encode: uns features rows == features.parquet")
    check(np.allclose(feats["best_auroc"].values, ref["best_auroc"].values, equal_nan=True), "encode: best_auroc equal")
    check((feats["best_type"].astype(object).fillna("").values == ref["best_type"].fillna("").values).all(), "encode: best_type equal")


def run(bin_dir, args):
    return subprocess.run([os.path.join(bin_dir, args[0])] + args[1:], capture_output=True, text=True)


def check_07_and_bad(bin_dir, demo):
    data = os.path.join(ROOT, "tests/fixtures/data/kang2018_ifnb_400.h5ad")
    model = os.path.join(ROOT, "tests/fixtures/scgpt/vocab60k")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "kang.h5ad")
        r = run(bin_dir, ["scsae", "extract", "--model", model, "--data", data, "--layers", "last",
                          "--out", os.path.join(tmp, "acts"), "--write-h5ad", out])
        check(r.returncode == 0, "0.7 input: extract --write-h5ad runs" + ("" if r.returncode == 0 else ": " + r.stderr))
        if r.returncode == 0:
            a = anndata.read_h5ad(out)
            src = anndata.read_h5ad(data)
            check(a.obs["cell_type"].astype(str).tolist() == src.obs["cell_type"].astype(str).tolist()
                  and not a.obs["cell_type"].astype(str).str.isnumeric().any(),
                  "0.7 input: labels read back as names (" + ", ".join(sorted(set(a.obs["cell_type"].astype(str)))[:3]) + ", ...)")
            check(a.obsm["X_scGPT"].shape == (400, 32), "0.7 input: X_scGPT added")
        inp = os.path.join(ROOT, "data/immune1000.h5ad")
        acts = os.path.join(demo, "activations")
        sae = os.path.join(demo, "sae_cls")
        cases = [
            ("onto the input", ["--data", inp, "--write-h5ad", inp], inp, "input file itself"),
            ("onto an existing file", ["--write-h5ad", os.path.join(demo, "immune1000_sae_codes.h5ad")],
             os.path.join(demo, "immune1000_sae_codes.h5ad"), "already exists"),
            ("cells do not match", ["--data", data, "--write-h5ad", os.path.join(tmp, "x.h5ad")], data, "has no result"),
        ]
        for name, extra, names, expect in cases:
            before = sorted(os.listdir(tmp)), os.path.getmtime(names), os.path.getsize(names)
            r = run(bin_dir, ["scsae", "encode", "--sae", sae, "--activations", acts, "--layer", "cls"] + extra)
            lines = [l for l in r.stderr.splitlines() if l.strip()]
            after = sorted(os.listdir(tmp)), os.path.getmtime(names), os.path.getsize(names)
            check(r.returncode == 1 and len(lines) == 1 and names in lines[0] and expect in lines[0] and before == after,
                  f"bad input ({name}): exit {r.returncode}, {lines[0] if lines else ''!r}, nothing written")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("demo")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/debug"))
    a = ap.parse_args()
    from importlib.metadata import version
    print(f"anndata {version('anndata')}, scanpy {version('scanpy')}")
    check_extract(a.demo)
    check_annotate(a.demo)
    check_encode(a.demo)
    check_07_and_bad(a.bin, a.demo)
    print(f"{len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
