#!/usr/bin/env python
"""Make the scGPT parity fixtures with the OFFICIAL scGPT 0.2.4 code.

How to run (from the repository root):

    pip install --no-deps scgpt==0.2.4 safetensors   # once
    python scripts/scgpt/make_fixtures.py             # tiny, committed
    python scripts/scgpt/make_fixtures.py --full /tmp/scgpt-full
    SCSAE_SCGPT_FULL=/tmp/scgpt-full cargo test --test reference scgpt_parity      # full-size check

Default: writes tests/fixtures/scgpt/{tiny/,reference.safetensors,binning.json}
for a 2-layer d=64 random model over a few hundred genes of the real vocabulary.
`--full OUTDIR` writes the SAME layout under OUTDIR (checkpoint folder also named
`tiny/` so the Rust test reads both identically) for the scGPT_human architecture
(12 layers, d=512, 8 heads, d_hid 512) with the real 60,697-token vocabulary;
its vocab.json is the wheel's census vocabulary as shipped (60,694 genes, no
special tokens: the loader must append <pad>, <cls>, <eoc> -> ids 60694..60696).

Deterministic: same --seed -> same bytes (weights from torch.manual_seed, cell
choice and gene choice from numpy default_rng, binning tie draws from the
DataLoader worker seeded by torch's generator).  See scripts/scgpt/README.md.

The model forward, binning, collator padding, embedding path
(`embed_data` -> `get_batch_cell_embeddings`) and checkpoint loading
(`load_pretrained`, which renames Wqkv -> in_proj_) are the official code,
executed unmodified; activations are recorded with forward hooks only.
After writing, the fixtures are checked independently by verify_fixtures.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import official  # noqa: E402
import verify_fixtures  # noqa: E402

REPO = HERE.parent.parent
FILES = ["data/immune1000.h5ad", "data/pbmc68k_reduced.h5ad"]
LAYERS = ["X", "raw"]
SPECIALS = ["<pad>", "<cls>", "<eoc>"]

TINY_ARGS = dict(embsize=64, nheads=4, d_hid=64, nlayers=2)
FULL_ARGS = dict(embsize=512, nheads=8, d_hid=512, nlayers=12)


def released_args(arch: dict) -> dict:
    """args.json in the released layout (scGPT_human keys) + keys a loader must ignore."""
    args = {
        "data_source": "/scratch/ssd004/datasets/cellxgene/scb_strict/human",
        "save_dir": "/scratch/ssd004/datasets/cellxgene/save/cellxgene_census_human-random",
        "load_model": None,
        "n_hvg": None,
        "valid_size_or_ratio": 0.003,
        "dist_backend": "nccl",
        "grad_accu_steps": 1,
        "pad_token": "<pad>",
        "input_style": "binned",
        "input_emb_style": "continuous",
        "n_bins": 51,
        "max_seq_len": 1200,
        "training_tasks": "both",
        "dist_url": "tcp://gpu183.cluster.local:53833",
        "mask_ratio": [0.25, 0.5, 0.75],
        "trunc_by_sample": True,
        "vocab_path": "/scratch/ssd004/datasets/cellxgene/scFormer/scformer/tokenizer/default_census_vocab.json",
        "rank": 0,
        "batch_size": 32,
        "eval_batch_size": 64,
        "epochs": 6,
        "lr": 0.0001,
        "scheduler_interval": 100,
        "scheduler_factor": 0.99,
        "warmup_ratio_or_step": 10000.0,
        "no_cls": False,
        "no_cce": True,
        "fp16": True,
        "fast_transformer": True,
        "nlayers": arch["nlayers"],
        "nheads": arch["nheads"],
        "embsize": arch["embsize"],
        "d_hid": arch["d_hid"],
        "dropout": 0.2,
        "n_layers_cls": 3,
        "log_interval": 9000,
        "save_interval": 27000,
        "mask_value": -1,
        "pad_value": -2,
        "USE_CLS": False,
        "USE_CCE": False,
        "MVC": True,
        "USE_GENERATIVE_TRAINING": True,
        "world_size": 16,
        "distributed": True,
        "local_rank": 0,
        "gpu": 0,
        "fixture_note": {"made_by": "scripts/scgpt/make_fixtures.py", "random_weights": True},
    }
    return args


# ----------------------------------------------------------------------------- data


def load_datasets():
    """[(symbols, csr float32)] for immune1000 X and pbmc68k raw, read with anndata."""
    import anndata as ad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = ad.read_h5ad(REPO / FILES[0])
        b = ad.read_h5ad(REPO / FILES[1])
    xa = a.X.tocsr().astype(np.float32)
    xb = b.raw.X.tocsr().astype(np.float32)
    return [
        (np.array(a.var_names, dtype=object), xa, np.array(a.obs_names, dtype=object)),
        (np.array(b.raw.var_names, dtype=object), xb, np.array(b.obs_names, dtype=object)),
    ]


def pick_cells(datasets, census: dict, rng) -> list[list[int]]:
    """6 immune cells + 4 pbmc cells, each with <= 1199 nonzero census genes (no sampling)."""
    picks = []
    for (symbols, x, _), n in zip(datasets, (6, 4)):
        in_vocab = np.array([s in census for s in symbols])
        nnz = np.asarray((x[:, in_vocab] != 0).sum(axis=1)).ravel()
        ok = np.flatnonzero((nnz >= 100) & (nnz <= 1199))
        rows = sorted(rng.choice(ok, size=n, replace=False).tolist())
        picks.append(rows)
    return picks


def pick_tiny_genes(datasets, picks, census: dict, rng) -> list[str]:
    """A few hundred real-vocabulary genes, mostly expressed in the chosen cells."""
    expressed = []
    for (symbols, x, _), rows in zip(datasets, picks):
        sub = x[rows]
        nz = np.asarray((sub != 0).sum(axis=0)).ravel()
        expressed.append({s for s, c in zip(symbols, nz) if c > 0 and s in census})
    all_a = {s for s in datasets[0][0] if s in census}
    all_b = {s for s in datasets[1][0] if s in census}
    both = sorted(expressed[0] & expressed[1])
    only_a = sorted(expressed[0] - all_b)
    only_b = sorted(expressed[1] - all_a)
    absent = sorted(set(census) - all_a - all_b)
    chosen = (
        list(rng.choice(both, size=min(170, len(both)), replace=False))
        + list(rng.choice(only_a, size=min(60, len(only_a)), replace=False))
        + list(rng.choice(only_b, size=min(30, len(only_b)), replace=False))
        + list(rng.choice(absent, size=10, replace=False))
    )
    # vocabulary order = real census order (arbitrary w.r.t. either file's var order)
    return sorted(chosen, key=lambda g: census[g])


# ----------------------------------------------------------------------------- safetensors

_ST_DTYPES = {
    torch.float32: "F32",
    torch.int64: "I64",
    torch.uint8: "U8",
}


def write_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    """Byte-deterministic safetensors writer (sorted names, sorted metadata keys).

    The `safetensors` package serialises metadata from a hash map, so its byte
    order changes between runs; the format itself is simple: u64-LE header
    length, JSON header (padded with spaces to 8 bytes), raw little-endian data.
    """
    header = {}
    if metadata:
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        data = t.numpy().tobytes() if t.dtype != torch.uint8 else t.numpy().astype(np.uint8).tobytes()
        header[name] = {
            "dtype": _ST_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- model


def build_model(o, vocab, args: dict) -> torch.nn.Module:
    """TransformerModel constructed exactly as embed_data constructs it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return o.TransformerModel(
            ntoken=len(vocab),
            d_model=args["embsize"],
            nhead=args["nheads"],
            d_hid=args["d_hid"],
            nlayers=args["nlayers"],
            nlayers_cls=args["n_layers_cls"],
            n_cls=1,
            vocab=vocab,
            dropout=args["dropout"],
            pad_token=args["pad_token"],
            pad_value=args["pad_value"],
            do_mvc=True,
            do_dab=False,
            use_batch_labels=False,
            domain_spec_batchnorm=False,
            explicit_zero_prob=False,
            use_fast_transformer=True,
            fast_transformer_backend="flash",
            pre_norm=False,
        )


@torch.no_grad()
def perturb(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Move every parameter away from its trivial init so a bug in any term shows."""
    for name, p in model.named_parameters():
        is_norm = ".norm" in name or "enc_norm" in name or name.split(".")[-2].startswith("norm")
        if is_norm and name.endswith("weight"):
            p.copy_(torch.empty_like(p).uniform_(0.5, 1.6, generator=gen))
        elif is_norm and name.endswith("bias"):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        elif name.endswith("bias"):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        elif name.startswith("value_encoder.linear1"):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.25)
        elif name.startswith("value_encoder.linear2"):
            p.mul_(1.7)
        elif "self_attn.in_proj_weight" in name:
            # sharpen q/k so attention is far from uniform (masking bugs show)
            d = p.shape[1]
            p[: 2 * d].mul_(2.5)
        elif name == "encoder.embedding.weight":
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def save_checkpoint(model, vocab_json: dict, args: dict, outdir: Path) -> dict:
    outdir.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    flash = {k.replace("self_attn.in_proj_", "self_attn.Wqkv."): v for k, v in sd.items()}
    assert sum("Wqkv" in k for k in flash) == 2 * args["nlayers"]
    torch.save(flash, outdir / "best_model.pt")
    write_safetensors(outdir / "model.safetensors", sd, {"format": "pt"})
    (outdir / "args.json").write_text(json.dumps(args, indent=2) + "\n")
    (outdir / "vocab.json").write_text(json.dumps(vocab_json, indent=1) + "\n")
    return sd


# ----------------------------------------------------------------------------- official run


class Recorder:
    """Global forward hooks: record the official run's inputs and every block's output."""

    def __init__(self, o):
        self.o = o
        self.events: list[tuple[str, torch.Tensor]] = []
        self.handles = []

    @staticmethod
    def _dense(t):
        if getattr(t, "is_nested", False):
            return torch.nested.to_padded_tensor(t, 0.0)
        return t

    def __enter__(self):
        mm = self.o.model_mod

        def pre(module, args):
            if isinstance(module, mm.GeneEncoder):
                self.events.append(("gene_ids", args[0].detach().clone()))
            elif isinstance(module, mm.ContinuousValueEncoder):
                self.events.append(("values", args[0].detach().clone()))
            elif isinstance(module, torch.nn.TransformerEncoder):
                self.events.append(("embeddings", args[0].detach().clone()))

        def post(module, args, out):
            if isinstance(module, torch.nn.TransformerEncoderLayer):
                self.events.append(("layer", self._dense(out).detach().clone()))
                self.events.append(("layer_nested", bool(getattr(out, "is_nested", False))))
            elif isinstance(module, torch.nn.TransformerEncoder):
                self.events.append(("encoder_out", self._dense(out).detach().clone()))

        self.handles = [
            torch.nn.modules.module.register_module_forward_pre_hook(pre),
            torch.nn.modules.module.register_module_forward_hook(post),
        ]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def run_official(o, ckpt: Path, symbols, x, rows, seed: int, gene_col="index"):
    """embed_data on the chosen rows (one batch) with hooks; returns per-cell records."""
    import anndata as ad
    import pandas as pd

    sub = x[rows]
    adata = ad.AnnData(
        X=sub,
        obs=pd.DataFrame(index=[str(r) for r in rows]),
        var=pd.DataFrame(index=list(symbols)),
    )
    torch.manual_seed(seed)
    np.random.seed(seed)
    with Recorder(o) as rec, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = o.embed_data(
            adata,
            model_dir=ckpt,
            gene_col=gene_col,
            max_length=1200,
            batch_size=64,
            device="cpu",
            use_fast_transformer=True,
            return_new_adata=False,
        )
    cls = np.asarray(out.obsm["X_scGPT"], dtype=np.float32)
    ev = rec.events
    kinds = [k for k, _ in ev]
    assert kinds.count("gene_ids") == 1, f"expected one batch, got {kinds}"
    get = lambda k: [v for kk, v in ev if kk == k]  # noqa: E731
    rec_ = dict(
        gene_ids=get("gene_ids")[0],
        values=get("values")[0],
        embeddings=get("embeddings")[0],
        layers=get("layer"),
        nested=get("layer_nested"),
        encoder_out=get("encoder_out")[0],
        cls=cls,
    )
    return rec_


# ----------------------------------------------------------------------------- binning cases


def tie_ranges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Inclusive [lo, hi] per element that the official random tie rule can produce."""
    v = np.asarray(values)
    out = np.zeros((len(v), 2), dtype=np.int64)
    if len(v) == 0 or v.max() == 0:
        return out
    nz = v != 0 if v.min() <= 0 else np.ones(len(v), bool)
    bins = np.quantile(v[nz], np.linspace(0, 1, n_bins - 1))
    left = np.digitize(v[nz], bins)
    right = np.digitize(v[nz], bins, right=True)
    lo = np.where(left == right, left, right + 1)
    out[nz, 0] = lo
    out[nz, 1] = left
    return out


def binning_case(o, name, values, n_bins, seed, check_draws=2000, output=None):
    """One case; `output` given = the official collator's draw recorded in the reference run."""
    v = np.asarray(values, dtype=np.float32)
    if output is None:
        np.random.seed(seed)
        output = o.binning(row=v.copy(), n_bins=n_bins)
    allowed = tie_ranges(v, n_bins)
    # the analytic ranges must be exactly what the official rule produces
    lo = np.full(len(v), np.iinfo(np.int64).max)
    hi = np.full(len(v), np.iinfo(np.int64).min)
    np.random.seed(seed + 1)
    for _ in range(check_draws):
        d = np.asarray(o.binning(row=v.copy(), n_bins=n_bins), dtype=np.int64)
        lo, hi = np.minimum(lo, d), np.maximum(hi, d)
    assert np.array_equal(lo, allowed[:, 0]) and np.array_equal(hi, allowed[:, 1]), name
    out_i = np.asarray(output, dtype=np.int64)
    assert np.all((out_i >= allowed[:, 0]) & (out_i <= allowed[:, 1])), name
    return {
        "name": name,
        "input": [float(t) for t in v],
        "input_dtype": "float32",
        "n_bins": int(n_bins),
        "output": [int(t) for t in out_i],
        "ties": bool(np.any(allowed[:, 0] != allowed[:, 1])),
        "allowed": allowed.tolist(),
    }


def binning_cases(o, ref_cells: list[tuple[str, np.ndarray]], seed: int) -> list[dict]:
    cases = [
        binning_case(o, "scgpt.md vector 1", [1, 2, 3, 5, 8, 13, 21, 34, 55, 89], 51, seed),
        binning_case(o, "scgpt.md vector 2 (zeros stay 0)", [0, 1, 0, 4, 2, 0, 9], 51, seed),
        binning_case(o, "scgpt.md vector 3 (n_bins 5)", list(range(1, 9)), 5, seed),
    ]
    expected = [
        [1, 6, 11, 17, 22, 28, 33, 39, 44, 50],
        [0, 1, 0, 33, 17, 0, 50],
        [1, 1, 1, 2, 2, 3, 3, 4],
    ]
    for c, e in zip(cases, expected):
        assert c["output"] == e and not c["ties"], (c, e)
    ties = [
        ("all equal (every edge tied)", [2.5] * 7, 51),
        ("two levels", [1, 1, 1, 1, 1, 2, 2, 2], 51),
        ("log counts with zeros", [0, 0.6931472, 0.6931472, 1.0986123, 0, 0.6931472, 2.0794415, 1.0986123], 51),
        ("ties, n_bins 11", [3, 1, 1, 2, 2, 2, 5, 5, 9, 1, 1], 11),
        ("single nonzero", [0, 0, 4.2, 0], 51),
        ("all zero", [0, 0, 0, 0], 51),
        ("value exactly on a linear-quantile edge", [0.5, 1.5, 2.5, 3.5, 4.5], 5),
    ]
    for i, (name, v, nb) in enumerate(ties):
        cases.append(binning_case(o, name, v, nb, seed + 10 + i))
    for i, (name, v, out) in enumerate(ref_cells):
        cases.append(binning_case(o, name, v, 51, seed + 100 + i, check_draws=600, output=out))
    return cases


# ----------------------------------------------------------------------------- main


def pad_to(t: torch.Tensor, length: int, value) -> torch.Tensor:
    extra = length - t.shape[1]
    if extra == 0:
        return t
    shape = (t.shape[0], extra) + tuple(t.shape[2:])
    return torch.cat([t, torch.full(shape, value, dtype=t.dtype)], dim=1)


def make(out_root: Path, full: bool, seed: int, threads: int = 1) -> None:
    o = official.load()
    # one thread by default: float summation order (hence the bytes) does not depend on the core count
    torch.set_num_threads(threads)
    census = json.loads(Path(official.census_vocab_path()).read_text())
    datasets = load_datasets()
    rng = np.random.default_rng(seed)
    picks = pick_cells(datasets, census, rng)

    arch = FULL_ARGS if full else TINY_ARGS
    args = released_args(arch)
    if full:
        vocab_json = dict(census)  # as shipped: no special tokens
        tokens = sorted(census, key=census.get) + SPECIALS
    else:
        genes = pick_tiny_genes(datasets, picks, census, rng)
        tokens = genes + SPECIALS
        vocab_json = {t: i for i, t in enumerate(tokens)}
    # the vocabulary embed_data builds: file + specials appended if missing
    vocab = o.GeneVocab.from_dict(vocab_json)
    for s in SPECIALS:
        if s not in vocab:
            vocab.append_token(s)
    assert len(vocab) == len(tokens) and all(vocab[t] == i for i, t in enumerate(tokens))

    torch.manual_seed(seed)
    model = build_model(o, vocab, args)
    gen = torch.Generator().manual_seed(seed + 7)
    perturb(model, gen)
    ckpt = out_root / "tiny"
    save_checkpoint(model, vocab_json, args, ckpt)

    # official embedding path, one batch per file, with hooks
    recs = []
    for k, ((symbols, x, _), rows) in enumerate(zip(datasets, picks)):
        recs.append(run_official(o, ckpt, symbols, x, rows, seed + 1000 + k))

    nl = args["nlayers"]
    length = max(r["gene_ids"].shape[1] for r in recs)
    pad_id = vocab["<pad>"]
    gene_ids = torch.cat([pad_to(r["gene_ids"], length, pad_id) for r in recs])
    values = torch.cat([pad_to(r["values"].float(), length, float(args["pad_value"])) for r in recs])
    mask = gene_ids.eq(pad_id)

    def zero_pads(t):
        return t.masked_fill(mask.unsqueeze(-1), 0.0).contiguous()

    tensors = {
        "cell_source": torch.tensor(
            [k for k, rows in enumerate(picks) for _ in rows], dtype=torch.int64
        ),
        "cell_row": torch.tensor([r for rows in picks for r in rows], dtype=torch.int64),
        "gene_ids": gene_ids.to(torch.int64).contiguous(),
        "values": values.contiguous(),
        "padding_mask": mask.to(torch.uint8).contiguous(),
        "embeddings": zero_pads(torch.cat([pad_to(r["embeddings"], length, 0.0) for r in recs])),
    }
    for i in range(nl):
        tensors[f"hidden_{i}"] = zero_pads(torch.cat([pad_to(r["layers"][i], length, 0.0) for r in recs]))
    tensors["cls"] = torch.from_numpy(np.concatenate([r["cls"] for r in recs])).contiguous()
    for r in recs:
        assert len(r["layers"]) == nl
        # the encoder output is the last block's output (no final norm)
        assert torch.equal(r["encoder_out"], r["layers"][-1])
    nested = sorted({n for r in recs for n in r["nested"]})
    meta = {
        "n_cells": json.dumps(int(gene_ids.shape[0])),
        "nlayers": json.dumps(nl),
        "d_model": json.dumps(args["embsize"]),
        "files": json.dumps(FILES),
        "layers": json.dumps(LAYERS),
        "checkpoint": json.dumps("tiny"),
        "seed": json.dumps(seed),
        "scgpt_version": json.dumps("0.2.4"),
        "torch_version": json.dumps(torch.__version__),
        "pad_positions": json.dumps(
            "embeddings/hidden_* are 0 at pad positions (padding_mask == 1); compare non-pad positions only"
        ),
        "nested_tensor_fast_path": json.dumps(nested == [True]),
    }
    write_safetensors(out_root / "reference.safetensors", tensors, meta)

    # the nonzero in-vocab values of each reference cell (what the collator bins),
    # with the official draw recorded in `values` as the output
    ref_cells = []
    for c in range(int(gene_ids.shape[0])):
        k = int(tensors["cell_source"][c])
        r = int(tensors["cell_row"][c])
        symbols, x, _ = datasets[k]
        row = x[r].toarray().ravel().astype(np.float32)
        keep = np.array([s in vocab for s in symbols]) & (row != 0)
        n_tok = int(keep.sum())
        out = tensors["values"][c, 1 : 1 + n_tok].numpy()
        name = f"{FILES[k]} {LAYERS[k]} row {r}: nonzero in-vocab values (output = reference `values`)"
        ref_cells.append((name, row[keep], out))
    # one whole row (all in-census genes, zeros included) at a realistic size, fresh draw
    symbols, x, _ = datasets[0]
    keep = np.array([s in census for s in symbols])
    ref_cells.append(
        (
            f"{FILES[0]} X row {picks[0][0]}: all census genes, zeros included",
            x[picks[0][0]].toarray().ravel()[keep],
            None,
        )
    )
    cases = binning_cases(o, ref_cells, seed)
    (out_root / "binning.json").write_text(json.dumps(cases, indent=None, separators=(",", ":")) + "\n")

    summary = verify_fixtures.verify(out_root)
    summary["nested_tensor_fast_path"] = nested
    summary["cells"] = {FILES[k]: rows for k, rows in enumerate(picks)}
    summary["vocab_tokens"] = len(tokens)
    summary["seq_len"] = int(length)
    print(json.dumps(summary, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", metavar="OUTDIR", help="write the full-size (12-layer d=512) fixtures here")
    ap.add_argument("--out", default=str(REPO / "tests/fixtures/scgpt"), help="tiny fixture directory")
    ap.add_argument("--seed", type=int, default=20240607)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 = byte-reproducible)")
    a = ap.parse_args()
    if a.full:
        make(Path(a.full), True, a.seed, a.threads)
    else:
        make(Path(a.out), False, a.seed, a.threads)


if __name__ == "__main__":
    main()
