"""Read scsae outputs from Python (numpy, pandas, safetensors; anndata only to join with a data set).

    import sys; sys.path.insert(0, "scripts/python")
    from scsae_read import read_cells, read_tokens, read_table, read_sae, sae_encode

    ids, cls = read_cells("acts/", "cls")        # rows in INPUT order (the parts are in batch order)
    ids, l11 = read_cells("acts/", "11")
    tok = read_tokens("acts/", "11")              # dict: cell_index, gene_id, position, x
    pred = read_table("annotation/predictions.csv")   # cell_id always str, counts int64
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


def read_table(path):
    """A CSV or Parquet table written by scsae. In CSV, `cell_id` / `row_id` are read as text (ids
    such as barcodes or numbers must not become integers), so they join to `adata.obs_names`."""
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"cell_id": str, "row_id": str}, keep_default_na=False,
                       na_values=[""])


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
