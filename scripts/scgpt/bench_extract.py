#!/usr/bin/env python
"""scGPT extraction at full size, `scsae extract` against the official scGPT code, side by side.

    python scripts/scgpt/bench_extract.py --bin target/release/scsae --threads 2 --cells 64 [--repeats 2]

1. The fp32 ceiling of this machine: a plain sgemm (`torch.mm`, MKL/oneDNN, square 2048 and the
   model's own shape 4096 x 512 x 1536), best of several runs, on the same thread count.
2. The official scGPT 0.2.4 embedding path (`bench_torch.py`: `get_batch_cell_embeddings` with
   per-layer mean-pool hooks, random scGPT_human-size weights), which also writes its model as a
   checkpoint folder in the released layout, so both sides run the same weights.
3. `scsae extract --layers all` (every layer pooled + CLS) on the same first `--cells` cells of
   `data/immune1000.h5ad`, the whole process timed (loading the checkpoint and the data included).

The two sides run in turn (official, scsae, official, scsae, ...). For each run: seconds, cells/s,
peak resident memory; then the ratio scsae / official and the useful fp32 GFLOP/s of each side (the
model's multiply-adds on each cell's real tokens, padding not counted: per block 2 L (4 d^2 + 2 d
d_hid) for the linear layers plus 4 L^2 d for attention, and the value encoder) next to the ceiling.
Prints one JSON object at the end. Needs the Python of `scripts/requirements.txt` (torch, anndata, the
official scgpt wheel installed with --no-deps).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
D, D_HID, LAYERS, MAX_LEN = 512, 512, 12, 1200


def sgemm_ceiling(threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, (m, k, n) in {"square_2048": (2048, 2048, 2048), "qkv_4096x512x1536": (4096, 512, 1536)}.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        best = 0.0
        for _ in range(5):
            t = time.perf_counter()
            reps = 5
            for _ in range(reps):
                torch.mm(a, b)
            best = max(best, 2.0 * m * k * n * reps / (time.perf_counter() - t) / 1e9)
        out[name] = round(best, 1)
    out["ceiling"] = max(out.values())
    return out


def cell_lengths(data: Path, cells: int) -> np.ndarray:
    """Tokens per cell as both sides make them: <cls> + the cell's non-zero census genes, at most 1200."""
    sys.path.insert(0, str(HERE))
    import anndata as ad
    import official

    census = json.loads(Path(official.census_vocab_path()).read_text())
    a = ad.read_h5ad(data)[:cells]
    keep = np.array([g in census for g in a.var_names])
    x = a.X[:, keep]
    nnz = np.asarray((x != 0).sum(axis=1)).ravel()
    return np.minimum(nnz + 1, MAX_LEN)


def model_gflop(lengths: np.ndarray) -> float:
    """Useful multiply-add FLOPs of the forward on these cells (real tokens only), in GFLOP."""
    lengths = lengths.astype(np.float64)
    linear = 2 * lengths * (4 * D * D + 2 * D * D_HID)  # qkv (3 d^2), out_proj (d^2), two FFN layers
    attention = 4 * lengths**2 * D  # q k^T and probs v over all heads
    value_encoder = 2 * lengths * (D + D * D)
    return float((LAYERS * (linear + attention) + value_encoder).sum() / 1e9)


def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout) of one process through /usr/bin/time -v."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    return wall, rss, p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="scsae binary (a release build)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each side, in turn")
    ap.add_argument("--data", default=str(REPO / "data/immune1000.h5ad"))
    ap.add_argument("--python", default=sys.executable, help="Python with torch and the official scgpt")
    a = ap.parse_args()

    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    ceiling = sgemm_ceiling(a.threads)
    print(f"fp32 sgemm ceiling ({a.threads} threads, torch.mm): {ceiling}", flush=True)
    lengths = cell_lengths(Path(a.data), a.cells)
    gflop = model_gflop(lengths)
    print(f"{a.cells} cells, mean {lengths.mean():.0f} tokens, {gflop:.0f} GFLOP of useful work", flush=True)

    work = Path(tempfile.mkdtemp(prefix="scsae-bench-extract-"))
    ckpt = work / "checkpoint"
    runs = {"official": [], "scsae": []}
    try:
        for r in range(a.repeats):
            cmd = [a.python, str(HERE / "bench_torch.py"), "--threads", str(a.threads), "--cells",
                   str(a.cells), "--data", a.data]
            if r == 0:
                cmd += ["--save-checkpoint", str(ckpt)]
            _, rss, out = timed(cmd, env)
            o = json.loads(out[out.index("{"):])
            # the official script times the embedding call alone (model construction excluded)
            runs["official"].append({"seconds": o["seconds"], "peak_rss_mb": round(rss, 1),
                                     "worker_rss_mb": o["peak_rss_workers_mb"]})
            print(f"official run {r + 1}: {o['seconds']:.1f} s, {a.cells / o['seconds']:.3f} cells/s, "
                  f"{rss:.0f} MB peak", flush=True)
            out_dir = work / f"scsae-{r}"
            wall, rss, _ = timed([a.bin, "extract", "--model", str(ckpt), "--data", a.data, "--first-cells",
                                  str(a.cells), "--threads", str(a.threads), "--layers", "all", "--out",
                                  str(out_dir)], env)
            shutil.rmtree(out_dir)
            runs["scsae"].append({"seconds": round(wall, 3), "peak_rss_mb": round(rss, 1)})
            print(f"scsae run {r + 1}: {wall:.1f} s, {a.cells / wall:.3f} cells/s, {rss:.0f} MB peak "
                  "(whole command)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summary = {"threads": a.threads, "cells": a.cells, "mean_tokens": round(float(lengths.mean()), 1),
               "useful_gflop": round(gflop, 1), "sgemm_gflops": ceiling}
    for side, rs in runs.items():
        secs = statistics.median(r["seconds"] for r in rs)
        summary[side] = {
            "runs": rs,
            "median_seconds": secs,
            "cells_per_s": round(a.cells / secs, 3),
            "useful_gflops": round(gflop / secs, 1),
            "percent_of_ceiling": round(100 * gflop / secs / ceiling["ceiling"], 1),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
        }
    summary["ratio_scsae_over_official"] = round(
        summary["official"]["median_seconds"] / summary["scsae"]["median_seconds"], 2)
    print(json.dumps(summary, indent=1))
    print(f"scsae / official: {summary['ratio_scsae_over_official']}x; scsae at "
          f"{summary['scsae']['percent_of_ceiling']}% of the fp32 ceiling "
          f"({summary['scsae']['useful_gflops']} of {ceiling['ceiling']} GFLOP/s), official at "
          f"{summary['official']['percent_of_ceiling']}%")


if __name__ == "__main__":
    main()
