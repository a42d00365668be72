#!/usr/bin/env python3
"""Check the Python readers (scsae_read.py, shown in the README) on a demo output folder.

    bash scripts/demo.sh                     # writes demo-out/
    python scripts/python/check_readers.py demo-out [--bin target/debug]

1. The activation store read in input order: the SAE's codes computed in numpy from the layer read by
   `read_cells` equal `scsae encode`'s codes row by row, joined by cell id (the Rust reader is independent).
2. Prediction tables: every `cell_id` joins to `obs_names` of the data set (anndata), CSV = Parquet.
3. Count columns are int64 in Parquet; differences of counts cannot wrap.
4. Every table (each `.parquet` with its `.csv` twin) reads the same from both files through
   `read_table`: same columns, ids text, integer columns int64 (nullable Int64 where values are
   missing, the same in CSV), list columns lists (of str / float), every value exactly equal; every Parquet
   integer column is int64, every list column one that `read_table` splits in CSV, and plain
   `pandas.read_parquet` reads every file.
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
from scsae_read import (F64_LIST_COLUMNS, STR_LIST_COLUMNS, read_cells, read_sae,  # noqa: E402
                        read_table, sae_encode)

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
    p = os.path.join(a.out, "analysis/features.parquet")
    if os.path.exists(p):
        for f in (p, p[:-len(".parquet")] + ".csv"):
            df = read_table(f)
            ok = str(df["n_correlated_genes"].dtype) in ("int64", "Int64")
            ok = ok and all(isinstance(v, list) and all(isinstance(g, str) for g in v) for v in df["top_positive_genes"])
            ok = ok and all(isinstance(v, list) and all(isinstance(r, float) for r in v) for v in df["top_positive_r"])
            check(ok, f"analysis/features{os.path.splitext(f)[1]}: n_correlated_genes {df['n_correlated_genes'].dtype}, "
                      "top_positive_genes lists of str, top_positive_r lists of float")
    check_all_tables(a.out, check)
    print(f"{len(fails)} failed")
    sys.exit(1 if fails else 0)


def same_values(x, y):
    """Equal cell by cell, exactly (lists item by item; missing equals missing, NaN equals NaN)."""
    def eq(u, v):
        if isinstance(u, list) or isinstance(v, list):
            return isinstance(u, list) and isinstance(v, list) and len(u) == len(v) and all(map(eq, u, v))
        if pd.isna(u) and pd.isna(v):
            return True
        return bool(u == v)
    return len(x) == len(y) and all(eq(u, v) for u, v in zip(x, y))


def check_all_tables(out, check):
    """Every CSV/Parquet pair under `out`: one schema, the same values through read_table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, lists, bad = 0, set(), []
    for root, _, files in sorted(os.walk(out)):
        for f in sorted(files):
            if not f.endswith(".parquet") or not os.path.exists(os.path.join(root, f[:-8] + ".csv")):
                continue
            n += 1
            pq_path = os.path.join(root, f)
            rel = os.path.relpath(pq_path, out)[:-8]
            schema = pq.read_schema(pq_path)
            try:
                pd.read_parquet(pq_path)  # plain pandas too (it cannot convert lists of string views)
            except Exception as e:  # noqa: BLE001
                bad.append(f"{rel}: pandas.read_parquet fails: {e}")
                continue
            p, c = read_table(pq_path), read_table(pq_path[:-8] + ".csv")
            if list(p.columns) != list(c.columns):
                bad.append(f"{rel}: columns differ")
                continue
            for col, fld in zip(schema.names, schema):
                t = fld.type
                if pa.types.is_integer(t) and t != pa.int64():
                    bad.append(f"{rel}.{col}: Parquet {t}, not int64")
                if pa.types.is_list(t) or pa.types.is_large_list(t):
                    lists.add(col)
                    if col not in STR_LIST_COLUMNS + F64_LIST_COLUMNS:
                        bad.append(f"{rel}.{col}: list column unknown to read_table")
                    if not all(isinstance(v, list) for v in c[col]) or not all(isinstance(v, list) for v in p[col]):
                        bad.append(f"{rel}.{col}: not lists")
                if col in ("cell_id", "row_id") and not (c[col].map(type).eq(str).all() and p[col].map(type).eq(str).all()):
                    bad.append(f"{rel}.{col}: ids not text")
                if pa.types.is_integer(t) and str(c[col].dtype) != str(p[col].dtype):
                    bad.append(f"{rel}.{col}: CSV {c[col].dtype} vs Parquet {p[col].dtype}")
                if not same_values(list(c[col]), list(p[col])):
                    bad.append(f"{rel}.{col}: CSV values differ from Parquet")
    for b in bad:
        print("     " + b)
    check(not bad and n > 0, f"{n} tables: CSV = Parquet through read_table, ids text, integers int64, "
                             f"list columns lists ({', '.join(sorted(lists))})")


if __name__ == "__main__":
    main()
