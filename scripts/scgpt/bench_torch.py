#!/usr/bin/env python
"""Time the OFFICIAL scGPT 0.2.4 PyTorch embedding path on data/immune1000.h5ad.

How to run (from the repository root):

    pip install --no-deps scgpt==0.2.4 safetensors   # once
    python scripts/scgpt/bench_torch.py --threads 2 [--cells 1000]

Model: the scGPT_human architecture (embsize 512, nheads 8, d_hid 512,
nlayers 12, dropout 0.2, pad_value -2, n_bins 51) with random weights
(torch.manual_seed) and the real 60,697-token vocabulary (census vocab + <pad>,
<cls>, <eoc> appended as embed_data does).  Cells: the first --cells rows of
immune1000 X, all 6,120 in-vocabulary genes, max_length 1200, batch size 64.

Timed: the official `get_batch_cell_embeddings` (per-cell tokenisation in a
torch Dataset, DataCollator binning + random sampling + padding in DataLoader
workers, model._encode in eval mode under torch.no_grad, CLS L2 norm).  By
default forward hooks also mean-pool every block's output over the non-pad
tokens of each cell (what `scsae extract` stores per layer); --cls-only
times the bare official call.  Model construction and file reading are not
timed (reported separately).

Prints one JSON object (cells/s, seconds, peak RSS of this process and of the
DataLoader worker processes from resource.getrusage); writes no files.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import official  # noqa: E402

REPO = HERE.parent.parent
ARGS = dict(
    embsize=512, nheads=8, d_hid=512, nlayers=12, n_layers_cls=3, dropout=0.2,
    pad_token="<pad>", pad_value=-2, n_bins=51,
)


class LayerPooler:
    """Forward hooks: per-cell mean of each block's output over non-pad tokens."""

    def __init__(self, model, pad_id: int):
        self.pad_id = pad_id
        self.pooled: list[list[torch.Tensor]] = [[] for _ in model.transformer_encoder.layers]
        self.mask = None
        self.handles = [model.encoder.register_forward_pre_hook(self._ids)]
        for i, layer in enumerate(model.transformer_encoder.layers):
            self.handles.append(layer.register_forward_hook(self._make(i)))

    def _ids(self, _m, args):
        self.mask = args[0].ne(self.pad_id)

    def _make(self, i):
        def hook(_m, _a, out):
            if getattr(out, "is_nested", False):
                means = torch.stack([t.mean(0) for t in out.unbind()])
            else:
                m = self.mask.unsqueeze(-1).to(out.dtype)
                means = (out * m).sum(1) / m.sum(1)
            self.pooled[i].append(means)

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--cells", type=int, default=1000, help="time the first N cells (default all 1000)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--cls-only", action="store_true", help="no per-layer mean pooling hooks")
    ap.add_argument("--data", default=str(REPO / "data/immune1000.h5ad"))
    ap.add_argument("--save-checkpoint", metavar="DIR",
                    help="also write the timed model as a checkpoint folder in the released layout "
                         "(best_model.pt with flash-attn Wqkv names, args.json, vocab.json as shipped), "
                         "so `scsae extract --model DIR` runs the same weights")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    o = official.load()
    import anndata as ad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = ad.read_h5ad(a.data)
    adata = adata[: a.cells].copy()
    census = json.loads(Path(official.census_vocab_path()).read_text())
    vocab = o.GeneVocab.from_dict(census)
    for s in ["<pad>", "<cls>", "<eoc>"]:
        if s not in vocab:
            vocab.append_token(s)
    # embed_data's gene matching, then its call into get_batch_cell_embeddings
    adata.var["id_in_vocab"] = [vocab[g] if g in vocab else -1 for g in adata.var_names]
    adata = adata[:, adata.var["id_in_vocab"] >= 0].copy()
    vocab.set_default_index(vocab["<pad>"])
    gene_ids = np.array(vocab(list(adata.var_names)), dtype=int)

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = o.TransformerModel(
            ntoken=len(vocab), d_model=ARGS["embsize"], nhead=ARGS["nheads"], d_hid=ARGS["d_hid"],
            nlayers=ARGS["nlayers"], nlayers_cls=ARGS["n_layers_cls"], n_cls=1, vocab=vocab,
            dropout=ARGS["dropout"], pad_token=ARGS["pad_token"], pad_value=ARGS["pad_value"],
            do_mvc=True, do_dab=False, use_batch_labels=False, domain_spec_batchnorm=False,
            explicit_zero_prob=False, use_fast_transformer=True, fast_transformer_backend="flash",
            pre_norm=False,
        )
    if a.save_checkpoint:  # the fixtures' writer: released layout, vocab.json as shipped
        import make_fixtures

        args = make_fixtures.released_args(make_fixtures.FULL_ARGS)
        make_fixtures.save_checkpoint(model, census, args, Path(a.save_checkpoint))
    model.to(a.device)
    model.eval()
    setup_s = time.perf_counter() - t0
    pooler = None if a.cls_only else LayerPooler(model, vocab["<pad>"])

    nnz = np.asarray((adata.X != 0).sum(axis=1)).ravel()
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = o.get_batch_cell_embeddings(
            adata, cell_embedding_mode="cls", model=model, vocab=vocab, max_length=1200,
            batch_size=a.batch_size, model_configs=ARGS, gene_ids=gene_ids, use_batch_labels=False,
        )
    if a.device != "cpu":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t1
    assert emb.shape == (adata.n_obs, ARGS["embsize"]) and np.isfinite(emb).all()
    if pooler is not None:
        assert all(sum(len(t) for t in p) == adata.n_obs for p in pooler.pooled)
        pooler.remove()

    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    tokens = np.minimum(nnz + 1, 1200)
    print(json.dumps({
        "implementation": "official scGPT 0.2.4 get_batch_cell_embeddings (PyTorch)",
        "torch": torch.__version__,
        "device": a.device if a.device == "cpu" else torch.cuda.get_device_name(),
        "threads": a.threads,
        "dataloader_workers": min(len(os.sched_getaffinity(0)), a.batch_size),
        "cells": int(adata.n_obs),
        "genes_in_vocab": int(adata.n_vars),
        "mean_tokens_per_cell": float(tokens.mean()),
        "batch_size": a.batch_size,
        "per_layer_mean_pooling": pooler is not None,
        "seconds": round(secs, 3),
        "cells_per_s": round(adata.n_obs / secs, 3),
        "setup_seconds": round(setup_s, 3),
        "peak_rss_mb": round(self_kb / 1024, 1),
        "peak_rss_workers_mb": round(child_kb / 1024, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
