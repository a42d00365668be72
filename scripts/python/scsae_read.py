"""Read scsae outputs from Python (numpy, pandas, safetensors; anndata only to join with a data set).

    import sys; sys.path.insert(0, "scripts/python")
    from scsae_read import read_cells, read_tokens, read_table, read_sae, sae_encode

    ids, cls = read_cells("acts/", "cls")        # rows in INPUT order (the parts are in batch order)
    ids, l11 = read_cells("acts/", "11")
    tok = read_tokens("acts/", "11")              # dict: cell_index, gene_id, position, x
    pred = read_table("annotation/predictions.csv")   # cell_id always str, counts int64
    feats = read_table("analysis/features.csv")   # list columns as lists, CSV = Parquet
    sae = read_sae("sae/")                        # cfg + W_enc, W_dec, b_enc, b_dec, input_mean, input_std
    z = sae_encode(sae, l11)                      # codes on raw activations (z-score applied)

`check_readers.py` runs these on a demo output and compares with the binaries' own output.
"""
import json
import os

import numpy as np
import pandas as pd
from safetensors.numpy import load_file


def _tensor_name(layer):
    return layer if layer in ("cls", "embeddings") else f"layer_{layer}"


def read_cells(store, layer="cls"):
    """(cell ids, [n_cells, d] float32 matrix) of one layer (`"cls"`, `"embeddings"`, `"11"`, ...),
    rows in the input data's order: each part file's `cell_index` says where its rows go."""
    man = json.load(open(os.path.join(store, "manifest.json")))
    if not man["complete"]:
        raise ValueError(f"{store}: extraction incomplete (resume it with scsae extract --resume)")
    ids = json.load(open(os.path.join(store, "cell_ids.json")))
    out = np.full((man["n_cells"], man["d_model"]), np.nan, dtype=np.float32)
    for part in man["cell_parts"]:
        t = load_file(os.path.join(store, part["file"]))
        out[t["cell_index"]] = t[_tensor_name(layer)]
    if np.isnan(out).any():
        raise ValueError(f"{store}: some cells are missing from the part files")
    return ids, out


def read_tokens(store, layer):
    """Per-token activations of one layer (`--tokens` stores): a dict with `cell_index` (input row),
    `gene_id` (vocabulary id), `position` (0 = <cls>) and `x` [t, d], in the parts' order."""
    man = json.load(open(os.path.join(store, "manifest.json")))
    parts = [load_file(os.path.join(store, p["file"])) for p in man["token_parts"]]
    keys = ("cell_index", "gene_id", "position")
    out = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    out["x"] = np.concatenate([p[_tensor_name(layer)] for p in parts])
    return out


# The separator of list-valued cells in CSV (no spaces; an empty cell is an empty list). In Parquet
# the same columns are lists. Keep in step with `STR_LIST_COLUMNS` / `F64_LIST_COLUMNS` in
# src/io/table.rs (check_readers.py checks every Parquet list column is named here).
LIST_SEP = ";"
STR_LIST_COLUMNS = ("top_positive_genes", "top_negative_genes", "enriched_sets", "enriched_sets_sign",
                    "overlap_genes", "top_features")
F64_LIST_COLUMNS = ("top_positive_r", "top_negative_r", "enriched_sets_q", "top_features_auroc")
# Count columns that may have missing values (Parquet int64 with nulls; in CSV an empty cell).
NULLABLE_COUNT_COLUMNS = ("n_correlated_genes", "k")


def split_list(cell, kind=str):
    """One CSV list cell as a Python list: `"A;B"` -> `["A", "B"]`, empty or missing -> `[]`;
    `kind=float` parses the items as numbers."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)) or cell == "":
        return []
    return [kind(x) for x in str(cell).split(LIST_SEP)]


def read_table(path):
    """A CSV or Parquet table written by scsae, the same from either file: ids (`cell_id`, `row_id`)
    are text (barcodes or numbers must not become integers, so they join to `adata.obs_names`);
    counts int64, nullable `Int64` where some are missing (`NULLABLE_COUNT_COLUMNS`); list columns
    (`STR_LIST_COLUMNS`, `F64_LIST_COLUMNS`) are Python lists of str / float (split on `LIST_SEP`
    in CSV); CSV floats parsed exactly (`float_precision="round_trip"`), as stored in Parquet."""
    if path.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        df = t.to_pandas()
        for c, f in zip(t.column_names, t.schema):
            if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
                kind = float if pa.types.is_floating(f.type.value_type) else str
                df[c] = [[] if v is None else [kind(x) for x in v] for v in t.column(c).to_pylist()]
            elif pa.types.is_integer(f.type) and t.column(c).null_count > 0:
                df[c] = pd.array(t.column(c).to_pylist(), dtype="Int64")
        return df
    text = {c: str for c in ("cell_id", "row_id") + STR_LIST_COLUMNS + F64_LIST_COLUMNS}
    df = pd.read_csv(path, dtype=text, keep_default_na=False, na_values=[""], float_precision="round_trip")
    for c in df.columns:
        if c in STR_LIST_COLUMNS:
            df[c] = df[c].map(split_list)
        elif c in F64_LIST_COLUMNS:
            df[c] = df[c].map(lambda v: split_list(v, float))
        elif c in NULLABLE_COUNT_COLUMNS and str(df[c].dtype) != "int64":
            df[c] = df[c].astype("Int64")
    return df


def read_sae(folder):
    """An scsae SAE folder: `cfg.json` plus its tensors (numpy arrays) in one dict."""
    sae = dict(load_file(os.path.join(folder, "sae_weights.safetensors")))
    sae["cfg"] = json.load(open(os.path.join(folder, "cfg.json")))
    return sae


def sae_encode(sae, x):
    """Codes of raw activations `x` [n, d_in]: z-score with the SAE's statistics, then the encoder
    (ReLU; TopK keeps the k largest; BatchTopK is a JumpReLU with `threshold` at inference)."""
    xz = (x - sae.get("input_mean", 0.0)) / sae.get("input_std", 1.0)
    pre = (xz - sae["b_dec"]) @ sae["W_enc"] + sae["b_enc"]
    arch = sae["cfg"]["architecture"]
    z = np.maximum(pre, 0.0)
    if arch == "topk":
        k = sae["cfg"]["activation_fn_kwargs"]["k"]
        drop = np.argsort(-pre, axis=1, kind="stable")[:, k:]
        np.put_along_axis(z, drop, 0.0, axis=1)
    elif arch in ("batchtopk", "jumprelu"):
        z = np.where(pre > sae["threshold"], z, 0.0)
    return z
