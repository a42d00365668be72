"""Time anndata.read_h5ad on the bundled files (the Python side of benches/read_h5ad.rs).

Run from the repository root:  python scripts/data/bench_anndata.py
Prints the median of 20 reads per file in milliseconds (after one warm-up read).
"""
import statistics
import time
import warnings

import anndata

warnings.simplefilter("ignore")
for path, raw in [("data/immune1000.h5ad", False), ("data/pbmc68k_reduced.h5ad", True)]:
    anndata.read_h5ad(path)
    times = []
    for _ in range(20):
        t = time.perf_counter()
        a = anndata.read_h5ad(path)
        m = a.raw.X if raw else a.X
        times.append((time.perf_counter() - t) * 1000)
    print(f"{path}{' raw' if raw else ''}: median {statistics.median(times):.1f} ms ({m.shape[0]} x {m.shape[1]})")
