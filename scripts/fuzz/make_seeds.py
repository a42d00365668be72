#!/usr/bin/env python3
"""Write the fuzzing seed corpus into tests/fixtures/fuzz/seeds/ (small, valid inputs).

    /work/venv/bin/python scripts/fuzz/make_seeds.py [--out tests/fixtures/fuzz/seeds]

One folder per fuzz target (see tests/reference/fuzz_readers.rs). A seed is a file, or for the
folder targets (tenx, scgpt, acts) a folder. The fuzzer also uses the hostile files of
tests/bad_inputs/files/ as seeds, so they are not copied here. Deterministic (no random input;
h5py/torch may write different bytes across versions, same content). Needs numpy, h5py, anndata,
pandas, safetensors, torch (CPU). The whole corpus stays well under 100 KB.
"""
import argparse
import gzip
import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[2]
TINY_VOCAB = ROOT / "tests/fixtures/scgpt/tiny/vocab.json"

N_CELLS, N_GENES = 6, 5


def genes():
    vocab = json.loads(TINY_VOCAB.read_text())
    return [g for g in vocab if not g.startswith("<")][:N_GENES]


def cells(n=N_CELLS):
    return [f"c{i:02d}" for i in range(n)]


def counts():
    x = np.zeros((N_CELLS, N_GENES), dtype=np.float32)
    for i in range(N_CELLS):
        for j in range(N_GENES):
            if (i + 2 * j) % 3 == 0:
                x[i, j] = float(1 + (i * j) % 4)
    return x


def labels(n=N_CELLS):
    return [["T", "B", "NK"][i % 3] for i in range(n)]


def h5ad(out: Path):
    out.mkdir(parents=True)
    x = counts()
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(labels()), "n": np.arange(N_CELLS, dtype=np.int64)},
        index=cells(),
    )
    var = pd.DataFrame({"gene_ids": [f"ENSG{j:05d}" for j in range(N_GENES)]}, index=genes())
    ad.AnnData(X=x, obs=obs, var=var).write_h5ad(out / "dense.h5ad")
    a = ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=var)
    a.raw = a.copy()
    a.write_h5ad(out / "csr_raw.h5ad")
    ad.AnnData(X=sp.csc_matrix(x), obs=obs[["cell_type"]], var=var).write_h5ad(out / "csc.h5ad")


def tenx(out: Path):
    x = counts()
    g = genes()

    def write(d: Path, features="features.tsv", gz=False, ncol=3, real=False):
        d.mkdir(parents=True)
        nz = [(j, i, x[i, j]) for j in range(N_GENES) for i in range(N_CELLS) if x[i, j] != 0]
        kind = "real" if real else "integer"
        lines = [f"%%MatrixMarket matrix coordinate {kind} general", "% comment",
                 f"{N_GENES} {N_CELLS} {len(nz)}"]
        lines += [f"{j + 1} {i + 1} {v:g}" if not real else f"{j + 1} {i + 1} {v:.1f}" for j, i, v in nz]
        text = "\n".join(lines) + "\n"
        if gz:
            with gzip.GzipFile(d / "matrix.mtx.gz", "wb", mtime=0) as f:
                f.write(text.encode())
        else:
            (d / "matrix.mtx").write_text(text)
        cols = [[f"ENSG{j:05d}", s, "Gene Expression"][:ncol] for j, s in enumerate(g)]
        (d / features).write_text("".join("\t".join(c) + "\n" for c in cols))
        (d / "barcodes.tsv").write_text("".join(f"{c}-1\n" for c in cells()))

    write(out / "v3")
    write(out / "v2_genes", features="genes.tsv", ncol=2, real=True)
    write(out / "gz", gz=True)


def scgpt(out: Path):
    """A micro scGPT checkpoint (embsize 8, 1 block) in the layouts the reader accepts."""
    g = genes()
    vocab = {s: i for i, s in enumerate(g + ["<pad>", "<cls>", "<eoc>"])}
    args = {"nlayers": 1, "nheads": 2, "embsize": 8, "d_hid": 8, "pad_token": "<pad>",
            "pad_value": -2, "n_bins": 51, "input_emb_style": "continuous",
            "input_style": "binned", "max_seq_len": 16, "dropout": 0.0}
    d, h, v = 8, 8, len(vocab)
    rng = np.random.default_rng(0)

    def t(*shape):
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * 0.1)

    sd = {"encoder.embedding.weight": t(v, d), "encoder.enc_norm.weight": t(d),
          "encoder.enc_norm.bias": t(d), "value_encoder.linear1.weight": t(d, 1),
          "value_encoder.linear1.bias": t(d), "value_encoder.linear2.weight": t(d, d),
          "value_encoder.linear2.bias": t(d), "value_encoder.norm.weight": t(d),
          "value_encoder.norm.bias": t(d)}
    p = "transformer_encoder.layers.0"
    sd |= {f"{p}.self_attn.in_proj_weight": t(3 * d, d), f"{p}.self_attn.in_proj_bias": t(3 * d),
           f"{p}.self_attn.out_proj.weight": t(d, d), f"{p}.self_attn.out_proj.bias": t(d),
           f"{p}.linear1.weight": t(h, d), f"{p}.linear1.bias": t(h),
           f"{p}.linear2.weight": t(d, h), f"{p}.linear2.bias": t(d),
           f"{p}.norm1.weight": t(d), f"{p}.norm1.bias": t(d),
           f"{p}.norm2.weight": t(d), f"{p}.norm2.bias": t(d)}

    def folder(name, obj, st=False):
        dd = out / name
        dd.mkdir(parents=True)
        (dd / "args.json").write_text(json.dumps(args, indent=1))
        (dd / "vocab.json").write_text(json.dumps(vocab, indent=1))
        if st:
            save_file({k: x.numpy() for k, x in obj.items()}, dd / "model.safetensors")
        else:
            torch.save(obj, dd / "best_model.pt")

    folder("plain", sd)
    # flash-attn naming, DDP prefix, f16, wrapped in {"model_state_dict": ...}, plus an int buffer
    flash = {("module." + k).replace("in_proj_", "Wqkv."): x.half() for k, x in sd.items()}
    flash["module.step"] = torch.tensor([3], dtype=torch.int64)
    folder("flash_f16_nested", {"model_state_dict": flash, "epoch": 1})
    folder("safetensors", sd, st=True)


def matrix(out: Path):
    out.mkdir(parents=True)
    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    save_file({"x": x}, out / "m.safetensors", metadata={"row_ids": json.dumps(cells(4))})
    save_file({"a": x, "b": x[:, :2].astype(np.float64).copy()}, out / "two.safetensors")
    np.save(out / "f32.npy", x)
    np.save(out / "f64_fortran.npy", np.asfortranarray(x.astype(np.float64)))
    np.save(out / "f16.npy", x.astype(np.float16))
    np.save(out / "i32.npy", (x * 7).astype(np.int32))
    df = pd.DataFrame(x, columns=["f0", "f1", "f2"])
    df.insert(0, "cell_id", cells(4))
    df.to_csv(out / "m.csv", index=False)
    df.to_csv(out / "m.tsv", sep="\t", index=False)
    df.to_parquet(out / "m.parquet", index=False)
    pd.DataFrame(x).to_csv(out / "no_ids.csv", index=False)


def label_tables(out: Path):
    """Labels for the 45 cells c00..c44 of tests/bad_inputs/files/good/tiny.h5ad."""
    out.mkdir(parents=True)
    n = 45
    df = pd.DataFrame({"cell_id": cells(n), "cell_type": labels(n),
                       "score": np.linspace(0, 1, n).round(3)})
    df.to_csv(out / "labels.csv", index=False)
    df[["cell_type", "cell_id"]].rename(columns={"cell_id": "barcode"}).to_csv(
        out / "labels.tsv", sep="\t", index=False)
    df.to_parquet(out / "labels.parquet", index=False)


def label_map(out: Path):
    out.mkdir(parents=True)
    (out / "map.csv").write_text("query_label,reference_label\nT cell,T\nB cell,B\nNK cell,NK\nplatelet,\n")
    (out / "map.tsv").write_text("query\tref\nT\tT\nB\tB\nother\t\n")
    pd.DataFrame({"query_label": ["T", "B", "mono"], "reference_label": ["T", "B", None]}).to_parquet(
        out / "map.parquet", index=False)


def gmt(out: Path):
    out.mkdir(parents=True)
    g = genes()
    (out / "sets.gmt").write_text(
        "# comment\n"
        f"SET_A\thttp://x\t{g[0]}\t{g[1]}\t{g[2]}\n"
        f"SET_B\tdesc\t{g[3]}\t{g[4]}\t{g[0]}\t{g[0]}\r\n"
        "\n"
        "EMPTY_DESC\t\tCD3E\tCD8A\n"
    )


def acts(out: Path):
    """A complete activation store: 5 cells, d_model 3, layers 0 and 1, tokens, two cell parts."""
    d, n = 3, 5
    rng = np.random.default_rng(1)
    dd = out / "store"
    (dd / "cells").mkdir(parents=True)
    (dd / "tokens").mkdir()
    parts = [[0, 1, 2], [3, 4]]
    cell_parts = []
    for k, idx in enumerate(parts):
        f = f"cells/part-{k:05d}.safetensors"
        ts = {"cell_index": np.array(idx, dtype=np.int64)}
        for name in ["layer_0", "layer_1", "cls"]:
            ts[name] = rng.standard_normal((len(idx), d)).astype(np.float32)
        save_file(ts, dd / f)
        cell_parts.append({"file": f, "rows": len(idx)})
    rows = 7
    save_file({"cell_index": np.array([0, 0, 1, 2, 3, 4, 4], dtype=np.int64),
               "gene_id": np.arange(rows, dtype=np.int64),
               "position": np.array([0, 1, 0, 0, 0, 0, 1], dtype=np.int64),
               "layer_0": rng.standard_normal((rows, d)).astype(np.float32),
               "layer_1": rng.standard_normal((rows, d)).astype(np.float32)},
              dd / "tokens/part-00000.safetensors")
    manifest = {"format": "scsae-activations/1", "software_version": "0.1.0",
                "model": {"name": "micro"}, "data": {"file": "x.h5ad"}, "options": {},
                "layers": ["0", "1"], "d_model": d, "n_cells": n, "seed": 1, "tokens": True,
                "cell_parts": cell_parts,
                "token_parts": [{"file": "tokens/part-00000.safetensors", "rows": rows}],
                "complete": True}
    (dd / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (dd / "cell_ids.json").write_text(json.dumps(cells(n)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/fuzz/seeds"))
    out = Path(ap.parse_args().out)
    if out.exists():
        shutil.rmtree(out)
    h5ad(out / "h5ad")
    tenx(out / "tenx")
    scgpt(out / "scgpt")
    matrix(out / "matrix")
    label_tables(out / "labels")
    label_map(out / "label_map")
    gmt(out / "gmt")
    acts(out / "acts")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
