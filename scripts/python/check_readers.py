#!/usr/bin/env python3
"""Check the Python readers (scsae_read.py, shown in the README) on a demo output folder.

    bash scripts/demo.sh                     # writes demo-out/
    python scripts/python/check_readers.py demo-out [--bin target/debug]

1. The activation store read in input order: the SAE's codes computed in numpy from the layer read by
   `read_cells` equal `scsae encode`'s codes row by row, joined by cell id (the Rust reader is independent).
2. Prediction tables: every `cell_id` joins to `obs_names` of the data set (anndata), CSV = Parquet.
3. Count columns are int64 in Parquet; differences of counts cannot wrap.
Needs numpy, pandas, pyarrow, safetensors, anndata. Exits 1 on a failed check.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import anndata
import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(__file__))
from scsae_read import read_cells, read_sae, read_table, sae_encode  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/debug"))
    a = ap.parse_args()
    fails = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            fails.append(what)

    store, sae_dir = os.path.join(a.out, "activations"), os.path.join(a.out, "sae")
    layer = read_sae(sae_dir)["cfg"]["scsae"]["source"]["layer"]
    ids, x = read_cells(store, layer)
    check(ids == json.load(open(os.path.join(store, "cell_ids.json"))), "read_cells ids = cell_ids.json")
    z_py = sae_encode(read_sae(sae_dir), x.astype(np.float64))
    with tempfile.TemporaryDirectory() as t:
        codes = os.path.join(t, "codes.csv")
        subprocess.run([os.path.join(a.bin, "scsae"), "encode", "--sae", sae_dir, "--activations", store,
                        "--out", codes], check=True, stdout=subprocess.DEVNULL)
        rust = read_table(codes).set_index("row_id")
    rust = rust.loc[ids].to_numpy()
    diff = float(np.abs(rust - z_py).max())
    scale = float(np.abs(rust).max())
    check(diff <= 1e-4 * max(scale, 1.0), f"numpy codes from read_cells = scsae encode, joined by id (max |diff| {diff:.2e}, max code {scale:.2f})")

    data = anndata.read_h5ad(os.path.join(ROOT, "data/immune1000.h5ad"), backed="r")
    for table in ["annotation/predictions", "explained/predictions"]:
        csv, pq = os.path.join(a.out, table + ".csv"), os.path.join(a.out, table + ".parquet")
        if not os.path.exists(csv):
            continue
        c, p = read_table(csv), read_table(pq)
        check(c["cell_id"].map(type).eq(str).all() and p["cell_id"].map(type).eq(str).all(), f"{table}: cell_id is text in CSV and Parquet")
        check(c["cell_id"].isin(data.obs_names).all(), f"{table}: every cell_id joins to obs_names ({len(c)} rows)")
        check(c["label"].equals(p["label"]) and list(c["cell_id"]) == list(p["cell_id"]), f"{table}: CSV = Parquet (ids, labels)")
    for table, cols in [("annotation/evaluation_per_class", ["support", "predicted"]),
                        ("analysis/features", ["index", "n_types_above_threshold", "n_enriched_sets"])]:
        p = os.path.join(a.out, table + ".parquet")
        if os.path.exists(p):
            df = pd.read_parquet(p)
            check(all(str(df[c].dtype) == "int64" for c in cols), f"{table}.parquet: {cols} are int64 ({[str(df[c].dtype) for c in cols]})")
    print(f"{len(fails)} failed")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
