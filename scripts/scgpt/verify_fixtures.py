#!/usr/bin/env python
"""Independent check of the scGPT parity fixtures (no scGPT code used here).

How to run (from the repository root):

    python scripts/scgpt/verify_fixtures.py [DIR]

DIR defaults to tests/fixtures/scgpt (use the --full OUTDIR of make_fixtures.py
for the full-size set).  make_fixtures.py also calls this after writing.

Re-derives everything in reference.safetensors from the committed inputs with
plain numpy / torch float64 ops written here from the model description
(reference/scgpt.md), NOT from the scGPT code:
  * best_model.pt (Wqkv naming) holds exactly the tensors of model.safetensors;
  * gene_ids: <cls>, then the cell's nonzero in-vocab genes in var order, <pad>;
  * values: pad_value at <cls>/pads; each binned value inside the range the
    quantile/digitize tie rule allows (own linear-quantile implementation);
  * embeddings, every hidden_i and cls: a hand-written float64 forward pass
    (embedding LN + value encoder; post-norm blocks with key-padding-masked
    multi-head attention), compared at non-pad positions;
  * binning.json: every output inside `allowed`, which is re-derived here.
Exits non-zero with a message on any mismatch.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent.parent
SPECIALS = ["<pad>", "<cls>", "<eoc>"]


def linear_quantile_edges(x: np.ndarray, n_bins: int) -> np.ndarray:
    """numpy's default ('linear', Hyndman-Fan 7) quantiles of float32 data at linspace(0,1,n_bins-1)."""
    s = np.sort(np.asarray(x, dtype=np.float32))
    n = len(s)
    edges = []
    for q in np.linspace(0.0, 1.0, n_bins - 1):
        h = q * (n - 1)
        lo = int(np.floor(h))
        hi = min(lo + 1, n - 1)
        g = h - lo
        a, b = s[lo], s[hi]
        # numpy's _lerp: the difference b - a is taken in float32 (the data dtype),
        # the rest in float64; computed from the upper end when g >= 0.5
        diff = float(np.float32(b - a))
        a, b = float(a), float(b)
        e = b - diff * (1 - g) if g >= 0.5 else a + diff * g
        edges.append(e)
    return np.array(edges)


def allowed_ranges(values, n_bins: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    out = np.zeros((len(v), 2), dtype=np.int64)
    if len(v) == 0 or v.max() == 0:
        return out
    nz = np.flatnonzero(v != 0)
    edges = linear_quantile_edges(v[nz], n_bins)
    for i in nz:
        left = int(np.sum(edges <= v[i]))  # digitize(x, edges): #edges <= x
        right = int(np.sum(edges < v[i]))  # digitize(x, edges, right=True): #edges < x
        out[i] = (left, left) if left == right else (right + 1, left)
    return out


def layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def forward(sd: dict, ids: torch.Tensor, values: torch.Tensor, pad: torch.Tensor, nlayers: int, nheads: int):
    """Hand-written float64 scGPT encoder; returns [embeddings, hidden_0, ...]."""
    p = {k: v.double() for k, v in sd.items()}
    g = layer_norm(p["encoder.embedding.weight"][ids], p["encoder.enc_norm.weight"], p["encoder.enc_norm.bias"])
    x = values.double().clamp(max=512.0).unsqueeze(-1)
    h = torch.relu(x * p["value_encoder.linear1.weight"][:, 0] + p["value_encoder.linear1.bias"])
    h = h @ p["value_encoder.linear2.weight"].T + p["value_encoder.linear2.bias"]
    h = layer_norm(h, p["value_encoder.norm.weight"], p["value_encoder.norm.bias"])
    x = g + h
    outs = [x]
    n, length, d = x.shape
    dh = d // nheads
    for i in range(nlayers):
        pre = f"transformer_encoder.layers.{i}."
        qkv = x @ p[pre + "self_attn.in_proj_weight"].T + p[pre + "self_attn.in_proj_bias"]
        q, k, v = qkv.split(d, dim=-1)
        q = q.view(n, length, nheads, dh).transpose(1, 2)
        k = k.view(n, length, nheads, dh).transpose(1, 2)
        v = v.view(n, length, nheads, dh).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / np.sqrt(dh)
        s = s.masked_fill(pad[:, None, None, :], float("-inf"))
        a = torch.softmax(s, dim=-1) @ v
        a = a.transpose(1, 2).reshape(n, length, d)
        a = a @ p[pre + "self_attn.out_proj.weight"].T + p[pre + "self_attn.out_proj.bias"]
        x = layer_norm(x + a, p[pre + "norm1.weight"], p[pre + "norm1.bias"])
        f = torch.relu(x @ p[pre + "linear1.weight"].T + p[pre + "linear1.bias"])
        f = f @ p[pre + "linear2.weight"].T + p[pre + "linear2.bias"]
        x = layer_norm(x + f, p[pre + "norm2.weight"], p[pre + "norm2.bias"])
        outs.append(x)
    return outs


def fail(msg):
    raise SystemExit(f"verify_fixtures: FAILED: {msg}")


def verify(root: Path) -> dict:
    import anndata as ad
    from safetensors import safe_open
    from safetensors.torch import load_file

    root = Path(root)
    ckpt = root / "tiny"
    args = json.loads((ckpt / "args.json").read_text())
    vocab = json.loads((ckpt / "vocab.json").read_text())
    for s in SPECIALS:
        if s not in vocab:
            vocab[s] = len(vocab)
    if sorted(vocab.values()) != list(range(len(vocab))):
        fail("vocab indices are not consecutive")
    sd = load_file(str(ckpt / "model.safetensors"))
    pt = torch.load(ckpt / "best_model.pt", map_location="cpu", weights_only=True)
    if any("in_proj" in k for k in pt) or not any("Wqkv" in k for k in pt):
        fail("best_model.pt must use Wqkv naming")
    renamed = {k.replace("Wqkv.", "in_proj_"): v for k, v in pt.items()}
    if set(renamed) != set(sd) or any(not torch.equal(renamed[k], sd[k]) for k in sd):
        fail("best_model.pt and model.safetensors differ")
    if not any(k.startswith(("decoder.", "mvc_decoder.", "cls_decoder.")) for k in sd):
        fail("decoder heads missing")
    if sd["encoder.embedding.weight"].shape[0] != len(vocab):
        fail("embedding rows != vocabulary size")

    ref = load_file(str(root / "reference.safetensors"))
    with safe_open(str(root / "reference.safetensors"), "pt") as f:
        meta = f.metadata()
    files = json.loads(meta["files"])
    layers = json.loads(meta["layers"])
    nl = json.loads(meta["nlayers"])
    if nl != args["nlayers"] or json.loads(meta["d_model"]) != args["embsize"]:
        fail("metadata disagrees with args.json")
    n = json.loads(meta["n_cells"])

    # --- tokens and values from the raw data files
    mats = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fname, layer in zip(files, layers):
            a = ad.read_h5ad(REPO / fname)
            if layer == "raw":
                mats.append((list(a.raw.var_names), a.raw.X.tocsr()))
            else:
                mats.append((list(a.var_names), a.X.tocsr()))
    ids = ref["gene_ids"]
    vals = ref["values"]
    pad = ref["padding_mask"].bool()
    pad_id, cls_id = vocab["<pad>"], vocab["<cls>"]
    n_ties = 0
    for c in range(n):
        symbols, x = mats[int(ref["cell_source"][c])]
        row = x[int(ref["cell_row"][c])].toarray().ravel().astype(np.float32)
        genes = [vocab[s] for s, v in zip(symbols, row) if v != 0 and s in vocab]
        raw = np.array([v for s, v in zip(symbols, row) if v != 0 and s in vocab], dtype=np.float32)
        want = [cls_id] + genes
        got = ids[c].tolist()
        if got[: len(want)] != want or any(t != pad_id for t in got[len(want):]):
            fail(f"cell {c}: gene_ids differ from <cls> + nonzero in-vocab genes in var order")
        if pad[c].tolist() != [False] * len(want) + [True] * (len(got) - len(want)):
            fail(f"cell {c}: padding_mask wrong")
        v = vals[c].numpy()
        if v[0] != args["pad_value"] or np.any(v[len(want):] != args["pad_value"]):
            fail(f"cell {c}: pad_value expected at <cls> and pads")
        rng = allowed_ranges(raw, args["n_bins"])
        b = v[1: len(want)]
        if np.any(b != np.round(b)) or np.any(b < rng[:, 0]) or np.any(b > rng[:, 1]):
            fail(f"cell {c}: binned values outside the allowed tie ranges")
        n_ties += int(np.sum(rng[:, 0] != rng[:, 1]))

    # --- hand-written forward pass
    outs = forward(sd, ids, vals, pad, nl, args["nheads"])
    keep = ~pad
    errs = {}
    names = ["embeddings"] + [f"hidden_{i}" for i in range(nl)]
    for name, o in zip(names, outs):
        r = ref[name].double()
        e = (o - r)[keep].abs().max().item()
        scale = r[keep].abs().max().item()
        errs[name] = e
        if e > 2e-4 * max(1.0, scale):
            fail(f"{name}: max |diff| {e:.3g} (scale {scale:.3g})")
        if r[pad].abs().max().item() if pad.any() else 0.0:
            fail(f"{name}: pad positions must be 0")
    last = outs[-1][:, 0, :]
    cls = last / last.norm(dim=-1, keepdim=True)
    errs["cls"] = (cls - ref["cls"].double()).abs().max().item()
    if errs["cls"] > 1e-5:
        fail(f"cls: max |diff| {errs['cls']:.3g}")

    # --- binning.json
    cases = json.loads((root / "binning.json").read_text())
    for case in cases:
        rng = allowed_ranges(np.array(case["input"], dtype=np.float32), case["n_bins"])
        if rng.tolist() != case["allowed"]:
            fail(f"binning case {case['name']!r}: allowed ranges differ")
        out = np.array(case["output"])
        if np.any(out < rng[:, 0]) or np.any(out > rng[:, 1]):
            fail(f"binning case {case['name']!r}: output outside allowed")
        if case["ties"] != bool(np.any(rng[:, 0] != rng[:, 1])):
            fail(f"binning case {case['name']!r}: ties flag wrong")
    # the reference cells' cases carry the official draw stored in `values`
    by_name = {c["name"]: c for c in cases}
    for c in range(n):
        k, r = int(ref["cell_source"][c]), int(ref["cell_row"][c])
        prefix = f"{files[k]} {layers[k]} row {r}: nonzero in-vocab values"
        match = [v for name, v in by_name.items() if name.startswith(prefix)]
        n_tok = int((~pad[c]).sum()) - 1
        if len(match) != 1 or match[0]["output"] != [int(t) for t in vals[c, 1 : 1 + n_tok].tolist()]:
            fail(f"binning case for cell {c} missing or differs from reference values")
    return {
        "verified": str(root),
        "max_abs_err_vs_float64_forward": errs,
        "tied_elements_in_reference_cells": n_ties,
        "binning_cases": len(cases),
    }


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "tests/fixtures/scgpt"
    print(json.dumps(verify(root), indent=1))
