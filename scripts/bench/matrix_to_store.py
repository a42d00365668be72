"""Write a cells x d matrix (a .safetensors with cell ids in the metadata entry `row_ids`, as
scripts/bench/make_atlas_inputs.py writes them) as an extraction folder holding it as the `cls` cell
matrix, in parts of --part-cells cells: the layout `scsae extract` writes (manifest.json, cell_ids.json,
cells/part-NNNNN.safetensors with `cell_index` I64 and `cls` F32), so that the commands reading an
extraction folder block by block (`scsae analyze --activations DIR --layer cls`, `spikgpt annotate
--embeddings DIR`) can be measured at atlas size without a scGPT run.

    python scripts/bench/matrix_to_store.py target/atlas-bench/1000000/emb.safetensors target/atlas-bench/1000000/emb_store
"""
import argparse
import json
import os

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("matrix")
    ap.add_argument("out")
    ap.add_argument("--key", default="embeddings")
    ap.add_argument("--part-cells", type=int, default=4096)
    args = ap.parse_args()
    with safe_open(args.matrix, "np") as f:
        x = f.get_tensor(args.key).astype(np.float32)
        ids = json.loads(f.metadata()["row_ids"])
    n, d = x.shape
    os.makedirs(os.path.join(args.out, "cells"), exist_ok=False)
    parts = []
    for p, a in enumerate(range(0, n, args.part_cells)):
        b = min(n, a + args.part_cells)
        name = f"cells/part-{p:05d}.safetensors"
        save_file({"cell_index": np.arange(a, b, dtype=np.int64), "cls": np.ascontiguousarray(x[a:b])},
                  os.path.join(args.out, name))
        parts.append({"file": name, "rows": b - a})
    with open(os.path.join(args.out, "cell_ids.json"), "w") as f:
        json.dump(ids, f)
    manifest = {
        "format": "scsae-activations/1", "software_version": "matrix_to_store.py",
        "model": {"name": "none: converted from " + os.path.basename(args.matrix)},
        "data": {"file": os.path.abspath(args.matrix)}, "options": {"part_cells": args.part_cells},
        "layers": [], "d_model": d, "n_cells": n, "seed": 0, "tokens": False,
        "cell_parts": parts, "token_parts": [], "complete": True,
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    print(f"{args.out}: {n} cells x {d} ({len(parts)} parts)")


if __name__ == "__main__":
    main()
