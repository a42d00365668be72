"""Small AnnData-0.7-layout files for the reader tests, cut from the two shared data sets.

Run from the repository root (needs numpy, h5py; reads ../shared/data, see ../shared/README.md for
their provenance):
    python scripts/data/make_anndata07_subsets.py
Writes tests/fixtures/data/kang2018_ifnb_400.h5ad (dense, chunked, gzip X; Kang et al. 2018,
IFN-beta PBMCs) and tests/fixtures/data/pbmc3k_10x_v1_300.h5ad (CSR X; 10x PBMC3k v1): evenly spaced
cells of each (so both stimulation arms and every cell type appear), every gene, every obs column,
values unchanged, in the files' own AnnData 0.7 layout
(categorical columns as integer codes with `categories` references into `obs/__categories`), so a
fresh clone tests the 0.7 reader without ../shared. Deterministic.
"""
import os

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
OUT = os.path.join(ROOT, "tests", "fixtures", "data")


def copy_attrs(src, dst):
    for k, v in src.attrs.items():
        if not isinstance(v, h5py.Reference):
            dst.attrs[k] = v


def dataset(dst_group, name, data, src):
    kw = {}
    if src.chunks is not None:
        kw["chunks"] = tuple(min(c, s) for c, s in zip(src.chunks, data.shape)) or None
        kw["compression"] = "gzip" if src.compression == "gzip" else None
    if data.dtype == object:
        data = np.array([x.decode() if isinstance(x, bytes) else x for x in data], dtype=object)
        d = dst_group.create_dataset(name, data=data, dtype=h5py.string_dtype(), **kw)
    else:
        d = dst_group.create_dataset(name, data=data, **kw)
    copy_attrs(src, d)
    return d


def frame(src, dst, rows=None):
    """Copy a 0.7 dataframe group; `rows` slices every column (not `__categories`)."""
    copy_attrs(src, dst)
    cats = {}
    if "__categories" in src:
        g = dst.create_group("__categories")
        for name, ds in src["__categories"].items():
            cats[name] = dataset(g, name, ds[()], ds)
    for name, ds in src.items():
        if name == "__categories":
            continue
        data = ds[()] if rows is None else ds[()][rows]
        d = dataset(dst, name, data, ds)
        if "categories" in ds.attrs:
            d.attrs["categories"] = cats[name].ref


def subset(name, out, n):
    with h5py.File(os.path.join(SHARED, name), "r") as f, h5py.File(out, "w") as g:
        x = f["X"]
        total = x.shape[0] if isinstance(x, h5py.Dataset) else int(x.attrs["shape"][0])
        rows = np.linspace(0, total - 1, n).round().astype(np.int64)
        if isinstance(x, h5py.Dataset):
            dataset(g, "X", x[()][rows], x)
        else:
            gx = g.create_group("X")
            copy_attrs(x, gx)
            indptr, indices, data = x["indptr"][()], x["indices"][()], x["data"][()]
            parts = [np.arange(indptr[r], indptr[r + 1]) for r in rows]
            new_indptr = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(indptr.dtype)
            take = np.concatenate(parts)
            for k, v in (("data", data[take]), ("indices", indices[take]), ("indptr", new_indptr)):
                gx.create_dataset(k, data=v, chunks=True, compression="gzip")
            gx.attrs["shape"] = np.array([n, x.attrs["shape"][1]], dtype=x.attrs["shape"].dtype)
        frame(f["obs"], g.create_group("obs"), rows)
        frame(f["var"], g.create_group("var"))
    print(f"wrote {out} ({os.path.getsize(out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    subset("kang2018_ifnb.h5ad", os.path.join(OUT, "kang2018_ifnb_400.h5ad"), 400)
    subset("pbmc3k_10x_v1.h5ad", os.path.join(OUT, "pbmc3k_10x_v1_300.h5ad"), 300)
