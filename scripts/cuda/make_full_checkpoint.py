#!/usr/bin/env python3
"""Write a full-size (scGPT_human: 12 blocks, d = 512, 8 heads, d_hid 512) random-weight scGPT
checkpoint folder in the released layout, with numpy and safetensors only (no scGPT code, no torch):
the same tensors, names (flash-attn `Wqkv`), shapes and uniform ranges as
`scsae::scgpt::checkpoint::write_random_checkpoint` (benches/extract.rs), but numpy's random numbers.

Vocabulary: the data file's genes (var index, sorted, unique), padded with FILLER<k> to 60,694 genes,
then <pad>, <cls>, <eoc>: the real vocabulary's size, so the embedding table is full size too.

    python3 scripts/cuda/make_full_checkpoint.py --data data/immune1000.h5ad --out /tmp/full
"""
import argparse
import json
import os

import h5py
import numpy as np
from safetensors.numpy import save_file

ARGS = {
    "embsize": 512, "nheads": 8, "d_hid": 512, "nlayers": 12, "n_layers_cls": 3, "dropout": 0.2,
    "pad_token": "<pad>", "pad_value": -2.0, "n_bins": 51, "input_emb_style": "continuous",
    "input_style": "binned", "max_seq_len": 1200,
}


def var_names(path):
    with h5py.File(path, "r") as f:
        var = f["var"]
        key = var.attrs.get("_index", "_index")
        if isinstance(key, bytes):
            key = key.decode()
        names = var[key][()]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--genes", type=int, default=60_694)
    a = ap.parse_args()

    genes = sorted(set(var_names(a.data)))
    k = 0
    while len(genes) < a.genes:
        genes.append(f"FILLER{k}")
        k += 1
    vocab = {g: i for i, g in enumerate(genes)}
    for s in ["<pad>", "<cls>", "<eoc>"]:
        vocab[s] = len(vocab)
    v, d, h = len(vocab), ARGS["embsize"], ARGS["d_hid"]
    rng = np.random.default_rng(a.seed)
    t = {}

    def uniform(name, shape, scale, base=0.0):
        t[name] = (base + rng.uniform(-scale, scale, size=shape)).astype(np.float32)

    lin = lambda fan_in: (1.0 / fan_in) ** 0.5
    uniform("encoder.embedding.weight", (v, d), 0.1)
    for p in ["encoder.enc_norm", "value_encoder.norm"]:
        uniform(f"{p}.weight", (d,), 0.1, 1.0)
        uniform(f"{p}.bias", (d,), 0.1)
    uniform("value_encoder.linear1.weight", (d, 1), 1.0)
    uniform("value_encoder.linear1.bias", (d,), 1.0)
    uniform("value_encoder.linear2.weight", (d, d), lin(d))
    uniform("value_encoder.linear2.bias", (d,), lin(d))
    for l in range(ARGS["nlayers"]):
        p = f"transformer_encoder.layers.{l}"
        uniform(f"{p}.self_attn.Wqkv.weight", (3 * d, d), lin(d))
        uniform(f"{p}.self_attn.Wqkv.bias", (3 * d,), 0.02)
        uniform(f"{p}.self_attn.out_proj.weight", (d, d), lin(d))
        uniform(f"{p}.self_attn.out_proj.bias", (d,), 0.02)
        uniform(f"{p}.linear1.weight", (h, d), lin(d))
        uniform(f"{p}.linear1.bias", (h,), lin(d))
        uniform(f"{p}.linear2.weight", (d, h), lin(h))
        uniform(f"{p}.linear2.bias", (d,), lin(h))
        for n in ["norm1", "norm2"]:
            uniform(f"{p}.{n}.weight", (d,), 0.1, 1.0)
            uniform(f"{p}.{n}.bias", (d,), 0.1)
    os.makedirs(a.out, exist_ok=True)
    save_file(t, os.path.join(a.out, "model.safetensors"))
    with open(os.path.join(a.out, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(a.out, "args.json"), "w") as f:
        json.dump(ARGS, f, indent=1)
    n = sum(x.size for x in t.values())
    print(f"{a.out}: {len(t)} tensors, {n:,} parameters, vocabulary {v:,}")


if __name__ == "__main__":
    main()
