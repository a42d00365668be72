#!/usr/bin/env python
"""A random-weight scGPT checkpoint in the released layout over the REAL 60,694-gene vocabulary.

How to run (from the repository root; see scripts/scgpt/README.md for the setup):

    python scripts/scgpt/make_vocab_checkpoint.py            # -> tests/fixtures/scgpt/vocab60k/
    python scripts/scgpt/make_vocab_checkpoint.py --out DIR [--seed N] [--with-specials] [--safetensors]

Writes the folder exactly as the released scGPT_human is laid out:
  best_model.pt  plain state_dict (torch.save zip format) of the OFFICIAL scgpt 0.2.4
                 `TransformerModel`, built as `embed_data` builds it, with released flash-attn naming
                 (`self_attn.Wqkv.*`) and every head (`decoder.*`, `mvc_decoder.*`, `cls_decoder.*`)
  args.json      the released scGPT_human keys (same as tests/fixtures/scgpt/tiny) with a small
                 architecture: embsize 32, nheads 4, d_hid 32, nlayers 2 (n_layers_cls 3)
  vocab.json     the wheel's `scgpt/tokenizer/default_census_vocab.json` copied byte for byte (60,694 genes, no
                 special tokens: a loader appends <pad> 60694, <cls> 60695, <eoc> 60696 as `embed_data`
                 does, so the embedding has 60,697 rows); `--with-specials` writes the three specials
                 into the file instead (the layout of tests/fixtures/scgpt/tiny/vocab.json)
`--safetensors` also writes model.safetensors (PyTorch `in_proj_*` naming), as the tiny fixture has;
it is off by default because the Rust loader reads best_model.pt first and the file would double the
folder's size (the released folders have no safetensors file).

Weights: torch.manual_seed(seed), then the same perturbation as make_fixtures.py (non-trivial
LayerNorms and biases, sharpened q/k, gene embeddings N(0, 0.5^2)). Deterministic: same --seed and
--threads 1 give the same bytes (checked by writing twice). At the end the folder is loaded back with
the official `load_pretrained` path by running the official `embed_data` on a few cells of
data/pbmc3k_ref.h5ad and data/kang_query.h5ad (real gene symbols matched against the real
vocabulary); the run's statistics are printed, nothing else is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import official  # noqa: E402
import make_fixtures as mf  # noqa: E402

REPO = HERE.parent.parent
SMALL_ARGS = dict(embsize=32, nheads=4, d_hid=32, nlayers=2)
CHECK_FILES = ["data/pbmc3k_ref.h5ad", "data/kang_query.h5ad"]


def write_folder(outdir: Path, seed: int, with_specials: bool, safetensors: bool) -> dict:
    o = official.load()
    census = json.loads(Path(official.census_vocab_path()).read_text())
    assert len(census) == 60694 and sorted(census.values()) == list(range(60694))
    tokens = sorted(census, key=census.get) + mf.SPECIALS
    if with_specials:
        vocab_json = {t: i for i, t in enumerate(tokens)}
    else:
        vocab_json = dict(census)  # as shipped
    vocab = o.GeneVocab.from_dict(vocab_json)
    for s in mf.SPECIALS:
        if s not in vocab:
            vocab.append_token(s)
    assert len(vocab) == 60697 and all(vocab[t] == i for i, t in enumerate(tokens))

    args = mf.released_args(SMALL_ARGS)
    args["fixture_note"] = {"made_by": "scripts/scgpt/make_vocab_checkpoint.py", "random_weights": True}
    torch.manual_seed(seed)
    model = mf.build_model(o, vocab, args)
    gen = torch.Generator().manual_seed(seed + 7)
    mf.perturb(model, gen)

    outdir.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    flash = {k.replace("self_attn.in_proj_", "self_attn.Wqkv."): v for k, v in sd.items()}
    assert sum("Wqkv" in k for k in flash) == 2 * args["nlayers"]
    assert flash["encoder.embedding.weight"].shape == (60697, SMALL_ARGS["embsize"])
    torch.save(flash, outdir / "best_model.pt")
    if safetensors:
        mf.write_safetensors(outdir / "model.safetensors", sd, {"format": "pt"})
    elif (outdir / "model.safetensors").exists():
        (outdir / "model.safetensors").unlink()
    (outdir / "args.json").write_text(json.dumps(args, indent=2) + "\n")
    if with_specials:
        (outdir / "vocab.json").write_text(json.dumps(vocab_json, indent=1) + "\n")
    else:
        shutil.copyfile(official.census_vocab_path(), outdir / "vocab.json")  # byte for byte
    return {k: tuple(v.shape) for k, v in flash.items()}


def official_check(outdir: Path, seed: int) -> dict:
    """Load the folder through the official embed_data (load_pretrained, GeneVocab.from_file)."""
    import anndata as ad

    o = official.load()
    stats = {}
    for k, f in enumerate(CHECK_FILES):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = ad.read_h5ad(REPO / f)
        sub = a[:6].copy()
        torch.manual_seed(seed + k)
        np.random.seed(seed + k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = o.embed_data(sub, model_dir=outdir, gene_col="index", max_length=1200, batch_size=64,
                               device="cpu", use_fast_transformer=True, return_new_adata=False)
        emb = np.asarray(out.obsm["X_scGPT"])
        assert emb.shape == (6, SMALL_ARGS["embsize"]) and np.all(np.isfinite(emb))
        assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        stats[f] = {"genes_in_vocab": int(out.var["id_in_vocab"].ge(0).sum()) if "id_in_vocab" in out.var else None,
                    "n_genes": int(a.n_vars), "cls_norm": float(np.linalg.norm(emb, axis=1).mean())}
    return stats


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "tests/fixtures/scgpt/vocab60k"))
    ap.add_argument("--seed", type=int, default=20240613)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--with-specials", action="store_true", help="write <pad>/<cls>/<eoc> into vocab.json")
    ap.add_argument("--safetensors", action="store_true", help="also write model.safetensors (in_proj_ naming)")
    ap.add_argument("--no-check", action="store_true", help="skip the official embed_data check")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    shapes = write_folder(out, a.seed, a.with_specials, a.safetensors)
    # determinism: a second write gives the same bytes
    with tempfile.TemporaryDirectory() as tmp:
        write_folder(Path(tmp), a.seed, a.with_specials, a.safetensors)
        for p in sorted(Path(tmp).iterdir()):
            assert md5(p) == md5(out / p.name), f"{p.name} is not byte-deterministic"
    summary = {
        "out": str(out),
        "files": {p.name: {"bytes": p.stat().st_size, "md5": md5(p)} for p in sorted(out.iterdir())},
        "n_tensors": len(shapes),
        "n_params": int(sum(int(np.prod(s)) for s in shapes.values())),
        "torch_version": torch.__version__,
    }
    if not a.no_check:
        summary["official_embed_data"] = official_check(out, a.seed)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
