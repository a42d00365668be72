#!/usr/bin/env python3
"""Compare two `scsae extract` stores tensor by tensor (numpy + safetensors only).

Every per-cell tensor (`layer_<L>` of each block, `embeddings` when stored, `cls`) and, when both
stores have per-token activations, every per-token tensor, rows matched by `cell_index` (cells) or
by (cell_index, position) (tokens). Prints one line per tensor and one JSON object with the worst
max-abs difference; exit status 1 when --tol is given and exceeded, or when the stores disagree on
cells, tokens or tensor names.

    python3 scripts/cuda/compare_stores.py CPU_STORE GPU_STORE --tol 1e-3 --label tiny_f32
"""
import argparse
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def load(store, kind):
    man = json.load(open(os.path.join(store, "manifest.json")))
    if not man.get("complete", False):
        raise SystemExit(f"{store}: extraction incomplete")
    parts = [load_file(os.path.join(store, p["file"])) for p in man.get(f"{kind}_parts", [])]
    if not parts:
        return None
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def order(t, kind):
    if kind == "cell":
        return np.argsort(t["cell_index"], kind="stable")
    return np.lexsort((t["position"], t["cell_index"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--tol", type=float, default=None)
    ap.add_argument("--label", default="")
    ap.add_argument("--json-out", default=None, help="append the JSON result to this file")
    a = ap.parse_args()
    worst, rows, ok = 0.0, [], True
    for kind in ("cell", "token"):
        ta, tb = load(a.a, kind), load(a.b, kind)
        if ta is None and tb is None:
            continue
        if ta is None or tb is None:
            print(f"{a.label}: {kind} tensors in one store only", file=sys.stderr)
            ok = False
            continue
        oa, ob = order(ta, kind), order(tb, kind)
        ints = [k for k in ("cell_index", "gene_id", "position") if k in ta]
        for k in ints:
            if ta[k].shape != tb[k].shape or not np.array_equal(ta[k][oa], tb[k][ob]):
                print(f"{a.label}: {kind} {k} differ", file=sys.stderr)
                ok = False
        if not ok:
            continue
        names = sorted(k for k in ta if k not in ints)
        if names != sorted(k for k in tb if k not in ints):
            print(f"{a.label}: {kind} tensor names differ", file=sys.stderr)
            ok = False
            continue
        for k in names:
            x, y = ta[k][oa].astype(np.float64), tb[k][ob].astype(np.float64)
            if not (np.isfinite(x).all() and np.isfinite(y).all()):
                print(f"{a.label}: {kind} {k}: non-finite values", file=sys.stderr)
                ok = False
                continue
            diff = np.abs(x - y)
            m = float(diff.max()) if diff.size else 0.0
            rel = m / max(float(np.abs(x).max()), 1e-30)
            rows.append({"tensor": f"{kind}/{k}", "rows": int(x.shape[0]), "max_abs": m,
                         "mean_abs": float(diff.mean()) if diff.size else 0.0, "max_rel_to_range": rel})
            worst = max(worst, m)
    for r in rows:
        print(f"  {a.label:14s} {r['tensor']:22s} rows {r['rows']:8d}  max|d| {r['max_abs']:.3e}  "
              f"mean|d| {r['mean_abs']:.3e}")
    passed = ok and bool(rows) and (a.tol is None or worst <= a.tol)
    res = {"label": a.label, "tensors": len(rows), "worst_max_abs": worst, "tol": a.tol,
           "structure_ok": ok, "passed": passed}
    print(json.dumps(res))
    if a.json_out:
        with open(a.json_out, "a") as f:
            f.write(json.dumps(res) + "\n")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
