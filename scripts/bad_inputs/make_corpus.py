#!/usr/bin/env python3
"""Write the hostile-input regression corpus into tests/bad_inputs/files/.

Every file is small (the whole folder stays well under 300 KB) and deterministic: the script takes
no random input, so running it twice gives the same files (h5ad files are rewritten by h5py; their
bytes may differ between h5py versions, their content does not).

    /work/venv/bin/python scripts/bad_inputs/make_corpus.py [--out tests/bad_inputs/files]

Needs numpy, h5py, anndata, pandas, scipy, safetensors. tests/bad_inputs/README.md documents every
file; tests/bad_inputs/cases.tsv uses them; tests/cli/bad_inputs.rs runs the cases.
"""
import argparse
import gzip
import json
import os
import shutil
import struct
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests/fixtures/scgpt/tiny"

N_CELLS, N_GENES = 45, 8


def genes():
    vocab = json.loads((TINY / "vocab.json").read_text())
    # real gene symbols that the tiny scGPT checkpoint knows
    return [g for g in vocab if not g.startswith("<")][:N_GENES]


def cells():
    return [f"c{i:02d}" for i in range(N_CELLS)]


def counts():
    # deterministic integer counts, ~50 % zeros, every cell and gene expressed
    m = (np.arange(N_CELLS)[:, None] * 7 + np.arange(N_GENES)[None, :] * 3) % 5
    m = np.where(m >= 2, m, 0).astype(np.float32)
    m[np.arange(N_CELLS), np.arange(N_CELLS) % N_GENES] += 1
    return m


def labels():
    return ["T", "B", "NK"] * (N_CELLS // 3)


def good_adata():
    a = ad.AnnData(
        X=sp.csr_matrix(counts()),
        obs=pd.DataFrame(
            {"cell_type_annotations": pd.Categorical(labels())}, index=cells()
        ),
        var=pd.DataFrame(index=genes()),
    )
    return a


def write_h5ad(path, a):
    """Write with anndata, then copy X, obs and var into a compact file (HDF5 'latest' format,
    fixed-length strings: ~10 KB instead of ~27 KB; both readers accept it)."""
    tmp = Path(str(path) + ".tmp")
    a.write_h5ad(tmp)
    with h5py.File(tmp, "r") as src, h5py.File(path, "w", libver="latest") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v

        def cp(name, o):
            if isinstance(o, h5py.Group):
                g = dst.require_group(name)
                for k, v in o.attrs.items():
                    g.attrs[k] = v
            else:
                data = o[()]
                if o.dtype.kind == "O":
                    data = fixed_strings(data)
                ds = dst.create_dataset(name, data=data)
                for k, v in o.attrs.items():
                    ds.attrs[k] = v

        for key in ["X", "obs", "var"]:
            cp(key, src[key])
            src[key].visititems(lambda n, o, key=key: cp(key + "/" + n, o))
    os.remove(tmp)


def fixed_strings(values):
    out = [s if isinstance(s, bytes) else str(s).encode() for s in values]
    return np.array(out, dtype="S%d" % max([1] + [len(s) for s in out]))


def replace(f, name, values):
    del f[name]
    f.create_dataset(name, data=values)


def lookup3(data, initval=0):
    """Bob Jenkins' lookup3 hashlittle, as HDF5 uses for metadata checksums."""
    def rot(x, k):
        return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & 0xFFFFFFFF
    i = 0
    while length > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & 0xFFFFFFFF
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & 0xFFFFFFFF
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & 0xFFFFFFFF
        a = (a - c) & 0xFFFFFFFF; a ^= rot(c, 4); c = (c + b) & 0xFFFFFFFF
        b = (b - a) & 0xFFFFFFFF; b ^= rot(a, 6); a = (a + c) & 0xFFFFFFFF
        c = (c - b) & 0xFFFFFFFF; c ^= rot(b, 8); b = (b + a) & 0xFFFFFFFF
        a = (a - c) & 0xFFFFFFFF; a ^= rot(c, 16); c = (c + b) & 0xFFFFFFFF
        b = (b - a) & 0xFFFFFFFF; b ^= rot(a, 19); a = (a + c) & 0xFFFFFFFF
        c = (c - b) & 0xFFFFFFFF; c ^= rot(b, 4); b = (b + a) & 0xFFFFFFFF
        i += 12
        length -= 12
    tail = data[i:] + b"\0" * 12
    if length == 0:
        return c
    a = (a + int.from_bytes(tail[0:4], "little")) & 0xFFFFFFFF
    b = (b + int.from_bytes(tail[4:8], "little")) & 0xFFFFFFFF
    c = (c + int.from_bytes(tail[8:12], "little")) & 0xFFFFFFFF
    c ^= b; c = (c - rot(b, 14)) & 0xFFFFFFFF
    a ^= c; a = (a - rot(c, 11)) & 0xFFFFFFFF
    b ^= a; b = (b - rot(a, 25)) & 0xFFFFFFFF
    c ^= b; c = (c - rot(b, 16)) & 0xFFFFFFFF
    a ^= c; a = (a - rot(c, 4)) & 0xFFFFFFFF
    b ^= a; b = (b - rot(a, 14)) & 0xFFFFFFFF
    c ^= b; c = (c - rot(b, 24)) & 0xFFFFFFFF
    return c


def h5ad_files(out):
    d = out / "h5ad"
    d.mkdir(parents=True, exist_ok=True)
    good = out / "good" / "tiny.h5ad"
    write_h5ad(good, good_adata())

    def variant(name, edit):
        p = d / name
        shutil.copy(good, p)
        with h5py.File(p, "r+") as f:
            edit(f)

    def past_data(f):
        ip = f["X/indptr"][:].copy()
        ip[-1] = len(f["X/data"]) + 1000
        replace(f, "X/indptr", ip)

    variant("indptr_past_data.h5ad", past_data)

    def non_monotone(f):
        ip = f["X/indptr"][:].copy()
        ip[3], ip[4] = ip[4], ip[3] - 1
        replace(f, "X/indptr", ip)

    variant("indptr_non_monotone.h5ad", non_monotone)

    def short_indptr(f):
        replace(f, "X/indptr", f["X/indptr"][:-4])

    variant("indptr_too_short.h5ad", short_indptr)

    def idx_oor(f):
        ix = f["X/indices"][:].copy()
        ix[5] = N_GENES + 3
        replace(f, "X/indices", ix)

    variant("indices_out_of_range.h5ad", idx_oor)

    def neg_idx(f):
        ix = f["X/indices"][:].astype(np.int64)
        ix[2] = -1
        replace(f, "X/indices", ix)

    variant("indices_negative.h5ad", neg_idx)

    def neg(f):
        x = f["X/data"][:].copy()
        x[::4] = -3.0
        replace(f, "X/data", x)

    variant("negative_counts.h5ad", neg)

    def nan(f):
        x = f["X/data"][:].copy()
        x[1] = np.nan
        x[6] = np.inf
        replace(f, "X/data", x)

    variant("nan_in_x.h5ad", nan)

    def huge_shape(f):
        f["X"].attrs["shape"] = np.array([N_CELLS, 9_000_000_000_000], dtype=np.int64)

    variant("shape_huge.h5ad", huge_shape)

    def shape_mismatch(f):
        f["X"].attrs["shape"] = np.array([N_CELLS, N_GENES + 5], dtype=np.int64)

    variant("shape_disagrees_with_var.h5ad", shape_mismatch)

    def no_x(f):
        del f["X"]

    variant("no_x.h5ad", no_x)

    def bad_codes(f):
        c = f["obs/cell_type_annotations/codes"][:].copy()
        c[0] = 57  # only 3 categories
        replace(f, "obs/cell_type_annotations/codes", c)

    variant("categorical_code_out_of_range.h5ad", bad_codes)

    # duplicate obs names / var names: anndata would refuse to write them, so edit the index
    def dup_obs(f):
        idx_name = f["obs"].attrs["_index"]
        ids = np.array([s.decode() if isinstance(s, bytes) else s for s in f["obs"][idx_name][:]], dtype=object)
        ids[5] = ids[2]
        del f["obs"][idx_name]
        f["obs"].create_dataset(idx_name, data=fixed_strings(ids))
        f["obs"][idx_name].attrs["encoding-type"] = "string-array"
        f["obs"][idx_name].attrs["encoding-version"] = "0.2.0"

    variant("duplicate_obs_names.h5ad", dup_obs)

    def dup_var(f):
        idx_name = f["var"].attrs["_index"]
        ids = np.array([s.decode() if isinstance(s, bytes) else s for s in f["var"][idx_name][:]], dtype=object)
        ids[4] = ids[1]
        del f["var"][idx_name]
        f["var"].create_dataset(idx_name, data=fixed_strings(ids))
        f["var"][idx_name].attrs["encoding-type"] = "string-array"
        f["var"][idx_name].attrs["encoding-version"] = "0.2.0"

    variant("duplicate_var_names.h5ad", dup_var)

    # truncated: the first half of a valid file
    b = good.read_bytes()
    (d / "truncated.h5ad").write_bytes(b[: len(b) // 2])
    # only the HDF5 superblock signature, then garbage
    (d / "signature_only.h5ad").write_bytes(b[:8] + b"\xff" * 200)
    # shorter than its superblock's end-of-file address says (h5py refuses it: "truncated file"),
    # though every object it holds is intact: cut in unused space, made by raising the address
    eof_past = bytearray(b)
    version = eof_past[8]
    offsets = eof_past[13] if version in (0, 1) else eof_past[9]
    at = {0: 24, 1: 28, 2: 12, 3: 12}[version] + 2 * offsets
    eof = int.from_bytes(eof_past[at:at + offsets], "little")
    assert eof == len(b), (eof, len(b))
    eof_past[at:at + offsets] = (eof + 4096).to_bytes(offsets, "little")
    if version >= 2:  # superblock v2/v3 end with a Jenkins lookup3 checksum; h5py checks it
        end = 12 + 4 * offsets
        eof_past[end:end + 4] = lookup3(bytes(eof_past[:end])).to_bytes(4, "little")
    (d / "eof_past_end.h5ad").write_bytes(bytes(eof_past))
    (d / "not_hdf5.h5ad").write_text("cell,label\nA,B\n")
    (d / "zero_bytes.h5ad").write_bytes(b"")

    empty = ad.AnnData(
        X=sp.csr_matrix((0, N_GENES), dtype=np.float32),
        obs=pd.DataFrame({"cell_type_annotations": pd.Categorical([])}, index=pd.Index([], dtype=str)),
        var=pd.DataFrame(index=genes()),
    )
    write_h5ad(d / "zero_cells.h5ad", empty)
    nogenes = ad.AnnData(
        X=sp.csr_matrix((N_CELLS, 0), dtype=np.float32),
        obs=pd.DataFrame({"cell_type_annotations": pd.Categorical(labels())}, index=cells()),
    )
    write_h5ad(d / "zero_genes.h5ad", nogenes)


def tenx_files(out):
    d = out / "tenx"
    g = genes()
    bc = cells()[:4]
    entries = [(1, 1, 5), (3, 1, 1), (2, 2, 7), (4, 3, 2), (5, 4, 9)]

    def folder(name, header=None, ents=None, features=True, barcodes=True, bcs=None, gz=False):
        p = d / name
        p.mkdir(parents=True, exist_ok=True)
        ents = entries if ents is None else ents
        head = header if header is not None else f"{len(g)} {len(bc)} {len(ents)}"
        mtx = "%%MatrixMarket matrix coordinate integer general\n%\n" + head + "\n"
        mtx += "".join(f"{r} {c} {v}\n" for r, c, v in ents)
        if gz:
            (p / "matrix.mtx.gz").write_bytes(gzip.compress(mtx.encode(), mtime=0))
        else:
            (p / "matrix.mtx").write_text(mtx)
        if features:
            (p / "features.tsv").write_text("".join(f"ENSG{i:011d}\t{s}\tGene Expression\n" for i, s in enumerate(g)))
        if barcodes:
            (p / "barcodes.tsv").write_text("".join(f"{b}\n" for b in (bcs if bcs is not None else bc)))
        return p

    folder("huge_header", header=f"{len(g)} {len(bc)} 9000000000000")
    folder("huge_dims", header=f"9000000000000 9000000000000 {len(entries)}")
    folder("entry_out_of_range", ents=entries + [(len(g) + 7, 2, 3)], header=f"{len(g)} {len(bc)} {len(entries) + 1}")
    folder("entry_zero_index", ents=[(0, 1, 4)] + entries, header=f"{len(g)} {len(bc)} {len(entries) + 1}")
    folder("fewer_entries_than_header", header=f"{len(g)} {len(bc)} {len(entries) + 20}")
    folder("non_numeric_entry", ents=entries[:2] + [(2, 2, "seven")])
    folder("negative_entry", ents=entries[:2] + [(2, 2, -7)])
    folder("missing_barcodes", barcodes=False)
    folder("missing_features", features=False)
    folder("barcode_count_mismatch", bcs=bc[:3])
    folder("duplicate_barcodes", bcs=[bc[0], bc[1], bc[1], bc[3]])
    p = folder("not_gzip", gz=True)
    (p / "matrix.mtx.gz").write_bytes(b"this is not gzip data\n")
    p = folder("no_banner")
    (p / "matrix.mtx").write_text(f"{len(g)} {len(bc)} 1\n1 1 1\n")
    (d / "empty_folder").mkdir(parents=True, exist_ok=True)
    (d / "empty_folder" / "README.txt").write_text("a folder without matrix.mtx\n")


def npy_header(shape, descr="<f4", fortran=False):
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)
    h = h.encode()
    pad = 64 - (10 + len(h) + 1) % 64
    h = h + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h


def matrix_files(out):
    d = out / "matrix"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.arange(N_CELLS * 6, dtype=np.float32).reshape(N_CELLS, 6) / 10.0
    np.save(d / "one_d.npy", np.arange(20, dtype=np.float32))
    np.save(d / "three_d.npy", np.zeros((3, 4, 5), dtype=np.float32))
    np.save(d / "object_dtype.npy", np.array([{"a": 1}, "x"], dtype=object), allow_pickle=True)
    np.save(d / "nan.npy", np.where(rng > 3, np.nan, rng).astype(np.float32))
    np.save(d / "complex.npy", np.ones((4, 3), dtype=np.complex64))
    (d / "bad_header.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", 20) + b"{'descr': garbage!!\n" + b"\0" * 16)
    (d / "not_npy.npy").write_text("1,2,3\n4,5,6\n")
    full = npy_header((1000, 50)) + np.zeros(30, dtype=np.float32).tobytes()
    (d / "truncated.npy").write_bytes(full)
    (d / "huge_shape.npy").write_bytes(npy_header((9_000_000_000_000, 9_000_000_000)) + b"\0" * 64)
    (d / "zero_rows.npy").write_bytes(npy_header((0, 6)))

    save_file({"a": rng, "b": rng[:, :3].copy()}, str(d / "two_tensors.safetensors"))
    save_file({"e": rng}, str(d / "good_for_truncation.safetensors"))
    b = (d / "good_for_truncation.safetensors").read_bytes()
    (d / "truncated.safetensors").write_bytes(b[: len(b) - 100])
    os.remove(d / "good_for_truncation.safetensors")
    (d / "header_len_bomb.safetensors").write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    (d / "header_not_json.safetensors").write_bytes(struct.pack("<Q", 12) + b"{not json!!}")
    save_file({"e": rng[0].copy()}, str(d / "one_d.safetensors"))
    ids = cells()
    save_file({"e": rng}, str(d / "row_ids_count_mismatch.safetensors"), metadata={"row_ids": json.dumps(ids[:5])})
    save_file({"e": rng}, str(d / "row_ids_not_json.safetensors"), metadata={"row_ids": "[c00, c01"})
    dup = list(ids)
    dup[7] = dup[3]
    save_file({"e": rng}, str(d / "duplicate_row_ids.safetensors"), metadata={"row_ids": json.dumps(dup)})
    nanm = rng.copy()
    nanm[4, 2] = np.nan
    save_file({"e": nanm}, str(d / "nan.safetensors"), metadata={"row_ids": json.dumps(ids)})
    infm = rng.copy()
    infm[9, 1] = np.inf
    save_file({"e": infm}, str(d / "inf.safetensors"), metadata={"row_ids": json.dumps(ids)})

    def csv(name, text):
        (d / name).write_text(text)

    header = "cell_id," + ",".join(f"f{j}" for j in range(6)) + "\n"
    rows = ["%s,%s\n" % (ids[i], ",".join(f"{v:.1f}" for v in rng[i])) for i in range(N_CELLS)]
    csv("non_numeric_column.csv", header.replace("f5", "note") + "".join(r.rstrip("\n").rsplit(",", 1)[0] + ",high\n" for r in rows))
    bad = list(rows)
    bad[3] = bad[3].replace(",0.1", ",", 1) if ",0.1" in bad[3] else ids[3] + ",,1,2,3,4,5\n"
    csv("missing_value.csv", header + "".join(bad))
    bad = list(rows)
    bad[2] = ids[2] + ",NaN,1,2,3,4,5\n"
    bad[5] = ids[5] + ",1,inf,2,3,4,5\n"
    csv("nan_inf.csv", header + "".join(bad))
    bad = list(rows)
    bad[8] = ids[1] + bad[8][len(ids[8]):]
    csv("duplicate_row_ids.csv", header + "".join(bad))
    csv("empty.csv", "")
    csv("header_only.csv", header)
    bad = list(rows)
    bad[4] = ids[4] + ",1,2\n"
    csv("ragged.csv", header + "".join(bad))
    (d / "binary.csv").write_bytes(bytes(range(256)) * 2)
    (d / "not_parquet.parquet").write_text("PAR1 but not really\n")


def gmt_files(out):
    d = out / "gmt"
    d.mkdir(parents=True, exist_ok=True)
    (d / "empty.gmt").write_text("")
    (d / "no_genes.gmt").write_text("SET_A\tno genes here\nSET_B\tnone either\n")
    (d / "unknown_genes_only.gmt").write_text("SET_A\tdesc\tNOTAGENE1\tNOTAGENE2\nSET_B\tdesc\tNOTAGENE3\n")
    (d / "binary.gmt").write_bytes(b"\x00\xff\xfe" * 100)
    (d / "empty_name.gmt").write_text("\tdesc\tCD3E\tMS4A1\n")
    dd = d / "folder_without_gmt"
    dd.mkdir(exist_ok=True)
    (dd / "sets.txt").write_text("SET_A\tdesc\tCD3E\n")


def label_files(out):
    d = out / "labels"
    d.mkdir(parents=True, exist_ok=True)
    ids = cells()
    (d / "missing_column.csv").write_text("cell_id,annotation\n" + "".join(f"{c},T\n" for c in ids))
    (d / "unmatched_ids.csv").write_text("cell_id,cell_type\n" + "".join(f"zz{i},T\n" for i in range(N_CELLS)))
    (d / "duplicate_ids.csv").write_text("cell_id,cell_type\n" + "".join(f"{c},T\n" for c in ids) + f"{ids[0]},B\n")
    (d / "empty.csv").write_text("")
    (d / "header_only.csv").write_text("cell_id,cell_type\n")
    (d / "label_map_bad_header.csv").write_text("from,to\nT,T\n")
    (d / "label_map_one_column.csv").write_text("query_label\nT\nB\nNK\n")
    (d / "query_cells_unknown.txt").write_text("not-a-cell-1\nnot-a-cell-2\n")


def config_files(out):
    d = out / "config"
    tiny_args = (TINY / "args.json").read_text()
    tiny_vocab = (TINY / "vocab.json").read_text()

    def scgpt(name, args=tiny_args, vocab=tiny_vocab, pt=None):
        p = d / name
        p.mkdir(parents=True, exist_ok=True)
        if args is not None:
            (p / "args.json").write_text(args)
        if vocab is not None:
            (p / "vocab.json").write_text(vocab)
        if pt is not None:
            (p / "best_model.pt").write_bytes(pt)
        return p

    scgpt("scgpt_pt_not_zip", pt=b"this is not a zip archive\n" * 4)
    scgpt("scgpt_pt_empty", pt=b"")
    scgpt("scgpt_args_truncated", args=tiny_args[: len(tiny_args) // 2])
    scgpt("scgpt_args_wrong_type", args=tiny_args.replace('"embsize": 64', '"embsize": "sixty-four"'))
    scgpt("scgpt_args_zero_heads", args=tiny_args.replace('"nheads": 4', '"nheads": 0'))
    scgpt("scgpt_vocab_not_json", vocab="{\"CD3E\": 0, \"MS4A1\": ")
    v = json.loads(tiny_vocab)
    k = list(v)
    v[k[5]] = v[k[4]]
    scgpt("scgpt_vocab_duplicate_ids", vocab=json.dumps(v, indent=1))
    scgpt("scgpt_no_args", args=None)

    # an SAE folder whose cfg.json is cut off / whose weights are missing / have the wrong shape
    d_in, d_sae = 6, 4
    cfg = {
        "d_in": d_in, "d_sae": d_sae, "architecture": "standard", "activation_fn_str": "relu",
        "activation_fn_kwargs": {}, "apply_b_dec_to_input": True, "normalize_activations": "none",
        "dtype": "float32", "device": "cpu", "hook_name": "input", "hook_layer": -1,
        "hook_head_index": None, "model_name": "scgpt", "dataset_path": "x",
    }
    w = {
        "W_enc": np.ones((d_in, d_sae), np.float32), "W_dec": np.ones((d_sae, d_in), np.float32) / 3,
        "b_enc": np.zeros(d_sae, np.float32), "b_dec": np.zeros(d_in, np.float32),
        "input_mean": np.zeros(d_in, np.float32), "input_std": np.ones(d_in, np.float32),
    }
    p = d / "sae_cfg_truncated"
    p.mkdir(parents=True, exist_ok=True)
    (p / "cfg.json").write_text(json.dumps(cfg)[:60])
    save_file(w, str(p / "sae_weights.safetensors"))
    p = d / "sae_no_weights"
    p.mkdir(parents=True, exist_ok=True)
    (p / "cfg.json").write_text(json.dumps(cfg, indent=1))
    p = d / "sae_wrong_shape"
    p.mkdir(parents=True, exist_ok=True)
    (p / "cfg.json").write_text(json.dumps(cfg, indent=1))
    w2 = dict(w)
    w2["W_enc"] = np.ones((d_in + 1, d_sae), np.float32)
    save_file(w2, str(p / "sae_weights.safetensors"))
    p = d / "sae_nan_weights"
    p.mkdir(parents=True, exist_ok=True)
    (p / "cfg.json").write_text(json.dumps(cfg, indent=1))
    w3 = dict(w)
    w3["W_enc"] = w["W_enc"].copy()
    w3["W_enc"][2, 1] = np.nan
    save_file(w3, str(p / "sae_weights.safetensors"))

    # SpikGPT model folders
    p = d / "spikgpt_config_not_json"
    p.mkdir(parents=True, exist_ok=True)
    (p / "config.json").write_text('{"format": "spikgpt-model/1", "model": {"input_dim": 6,')
    (p / "labels.json").write_text('["T", "B", "NK"]')
    p = d / "spikgpt_wrong_format"
    p.mkdir(parents=True, exist_ok=True)
    (p / "config.json").write_text('{"format": "something-else/9"}')
    (p / "labels.json").write_text('["T", "B", "NK"]')

    # an extraction store with a broken manifest
    p = d / "acts_manifest_truncated"
    p.mkdir(parents=True, exist_ok=True)
    (p / "manifest.json").write_text('{"format": "scsae-activations/1", "layers": ["1"], "d_mo')
    (p / "cell_ids.json").write_text(json.dumps(cells()))
    p = d / "acts_manifest_missing_parts"
    p.mkdir(parents=True, exist_ok=True)
    man = {
        "format": "scsae-activations/1", "software_version": "0.1.0", "model": {}, "data": {},
        "options": {}, "layers": ["1"], "d_model": 6, "n_cells": N_CELLS, "seed": 42, "tokens": False,
        "cell_parts": [{"file": "cells/part-00000.safetensors", "rows": N_CELLS}], "token_parts": [],
        "complete": True,
    }
    (p / "manifest.json").write_text(json.dumps(man, indent=1))
    (p / "cell_ids.json").write_text(json.dumps(cells()))
    p = d / "acts_unknown_format"
    p.mkdir(parents=True, exist_ok=True)
    man2 = dict(man, format="scsae-activations/99")
    (p / "manifest.json").write_text(json.dumps(man2, indent=1))
    (p / "cell_ids.json").write_text(json.dumps(cells()))


def prediction_files(out):
    d = out / "predictions"
    d.mkdir(parents=True, exist_ok=True)
    ids = cells()
    lab = labels()
    cols = "cell_id,label,best_label,max_prob,confidence,unknown,score_max_prob,score_energy,score_knn_distance,score_combined,prob_T,prob_B,prob_NK\n"

    def row(c, l, p=0.9):
        return f"{c},{l},{l},{p},{p},false,{p},1.0,-1.0,{p},{p},0.05,0.05\n"

    (d / "missing_label_column.csv").write_text("cell_id,max_prob\n" + "".join(f"{c},0.9\n" for c in ids))
    (d / "unknown_cells.csv").write_text(cols + "".join(row(f"zz{i}", l) for i, l in enumerate(lab)))
    (d / "nan_prob.csv").write_text(cols + "".join(row(c, l, "NaN" if i == 3 else 0.9) for i, (c, l) in enumerate(zip(ids, lab))))
    (d / "empty.csv").write_text("")
    (d / "duplicate_cells.csv").write_text(cols + "".join(row(c, l) for c, l in zip(ids, lab)) + row(ids[0], "B"))
    (d / "spiking_not_json.json").write_text("{\"firing_rates\": [")


def good_files(out):
    d = out / "good"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.arange(N_CELLS * 6, dtype=np.float32).reshape(N_CELLS, 6) / 10.0
    rng = np.sin(rng * 3.7).astype(np.float32)
    ids = cells()
    save_file({"e": rng}, str(d / "tiny_emb.safetensors"), metadata={"row_ids": json.dumps(ids)})
    (d / "tiny_features.csv").write_text(
        "cell_id," + ",".join(f"f{j}" for j in range(6)) + "\n"
        + "".join("%s,%s\n" % (ids[i], ",".join(f"{v:.4f}" for v in rng[i])) for i in range(N_CELLS))
    )
    (d / "tiny.gmt").write_text("SET_A\tdesc\t" + "\t".join(genes()[:4]) + "\n")
    (d / "a_file.txt").write_text("an existing regular file, used where a folder is expected\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "tests/bad_inputs/files"))
    a = ap.parse_args()
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "good").mkdir(parents=True)
    good_files(out)
    h5ad_files(out)
    tenx_files(out)
    matrix_files(out)
    gmt_files(out)
    label_files(out)
    config_files(out)
    prediction_files(out)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    n = sum(1 for p in out.rglob("*") if p.is_file())
    print(f"wrote {n} files, {total / 1024:.1f} KB, into {out}")


if __name__ == "__main__":
    main()
