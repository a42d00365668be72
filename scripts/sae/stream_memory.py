"""Peak memory of SAE training as the store grows: streaming (`--max-inputs 0`) against in memory.

Writes two synthetic extraction folders (the `scsae extract` layout: manifest.json, cell_ids.json,
cells/ and tokens/ part files) of ROWS and FACTOR x ROWS token rows, d = 512, two layers of planted
sparse codes, then trains one epoch of an SAE on layer 1 of each:
  - streaming: `scsae train --max-inputs 0` (bounded shuffle buffer), and
  - in memory: `scsae train --max-inputs <all rows>` (today's default path, all rows read first),
each under /usr/bin/time -v, and prints rows, peak RSS and throughput. Memory of the streaming runs
should stay flat while the store grows FACTOR times; the in-memory runs grow with it.

    python scripts/sae/stream_memory.py --bin target/release/scsae --rows 100000 --factor 10

Nothing is asserted (timings and memory are measurements); the folders are left in --work unless
--clean. Needs numpy and safetensors.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
from safetensors.numpy import save_file

TOKENS_PER_CELL = 100
CELLS_PER_PART = 256


def write_store(path, n_rows, d, seed):
    """A complete store of n_rows token rows (TOKENS_PER_CELL per cell), two layers ("0", "1")."""
    n_cells = n_rows // TOKENS_PER_CELL
    os.makedirs(os.path.join(path, "cells"))
    os.makedirs(os.path.join(path, "tokens"))
    rng = np.random.default_rng(seed)
    atoms = rng.standard_normal((2, 256, d)).astype(np.float32)
    cell_parts, token_parts = [], []
    for k, start in enumerate(range(0, n_cells, CELLS_PER_PART)):
        cells = np.arange(start, min(start + CELLS_PER_PART, n_cells), dtype=np.int64)
        t = len(cells) * TOKENS_PER_CELL
        tok = {
            "cell_index": np.repeat(cells, TOKENS_PER_CELL),
            "gene_id": np.tile(np.arange(TOKENS_PER_CELL, dtype=np.int64), len(cells)),
            "position": np.tile(np.arange(TOKENS_PER_CELL, dtype=np.int64), len(cells)),
        }
        cell = {"cell_index": cells}
        for layer in (0, 1):
            # 8 active atoms per token with exponential weights, plus noise
            idx = rng.integers(0, 256, size=(t, 8))
            w = rng.exponential(1.0, size=(t, 8)).astype(np.float32)
            x = np.einsum("tk,tkd->td", w, atoms[layer][idx])
            x += 0.05 * rng.standard_normal((t, d)).astype(np.float32)
            tok[f"layer_{layer}"] = x.astype(np.float32)
            cell[f"layer_{layer}"] = x.reshape(len(cells), TOKENS_PER_CELL, d).mean(1)
        tf, cf = f"tokens/part-{k:05d}.safetensors", f"cells/part-{k:05d}.safetensors"
        save_file(tok, os.path.join(path, tf))
        save_file(cell, os.path.join(path, cf))
        token_parts.append({"file": tf, "rows": t})
        cell_parts.append({"file": cf, "rows": len(cells)})
    with open(os.path.join(path, "cell_ids.json"), "w") as f:
        json.dump([f"cell{i}" for i in range(n_cells)], f)
    manifest = {
        "format": "scsae-activations/1",
        "software_version": "synthetic",
        "model": {"name": "synthetic"},
        "data": {"file": "synthetic", "seed": seed},
        "options": {},
        "layers": ["0", "1"],
        "d_model": d,
        "n_cells": n_cells,
        "seed": 0,
        "tokens": True,
        "cell_parts": cell_parts,
        "token_parts": token_parts,
        "complete": True,
    }
    with open(os.path.join(path, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return n_cells * TOKENS_PER_CELL


def train(binary, store, out, max_inputs, args):
    cmd = ["/usr/bin/time", "-v", binary, "train", "--activations", store, "--layer", "1",
           "--out", out, "--quiet", "--epochs", str(args.epochs), "--features", str(args.features),
           "--max-inputs", str(max_inputs), "--shuffle-buffer", str(args.buffer)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    speed = re.search(r"\(([\d.]+) inputs/s\)", p.stdout)
    return rss / 1024.0, wall, float(speed.group(1)) if speed else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/scsae")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--features", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--buffer", type=int, default=65_536)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--work", default="target/stream_memory")
    ap.add_argument("--skip-memory-path", action="store_true",
                    help="only the streaming runs (the in-memory run of the large store needs "
                         "rows x d x 4 bytes x ~3)")
    ap.add_argument("--clean", action="store_true")
    args = ap.parse_args()
    if os.path.exists(args.work):
        shutil.rmtree(args.work)
    os.makedirs(args.work)
    print(f"{'rows':>10} {'mode':>10} {'peak RSS MB':>12} {'wall s':>8} {'inputs/s':>9}")
    results = []
    for i, n in enumerate([args.rows, args.rows * args.factor]):
        store = os.path.join(args.work, f"store{i}")
        rows = write_store(store, n, args.d, seed=i)
        modes = [("streaming", 0)] + ([] if args.skip_memory_path else [("in memory", rows)])
        for mode, mi in modes:
            out = os.path.join(args.work, f"sae{i}_{mode.replace(' ', '_')}")
            rss, wall, speed = train(args.bin, store, out, mi, args)
            results.append((rows, mode, rss))
            print(f"{rows:>10} {mode:>10} {rss:>12.0f} {wall:>8.1f} {speed:>9.0f}", flush=True)
        if args.clean:
            shutil.rmtree(store)
    s = [r for r in results if r[1] == "streaming"]
    if len(s) == 2:
        print(f"streaming peak RSS ratio ({args.factor}x rows): {s[1][2] / s[0][2]:.2f}")
    m = [r for r in results if r[1] == "in memory"]
    if len(m) == 2:
        print(f"in-memory peak RSS ratio ({args.factor}x rows): {m[1][2] / m[0][2]:.2f}")


if __name__ == "__main__":
    main()
