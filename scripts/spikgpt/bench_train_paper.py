"""SpikGPT training at the paper's full configuration, ours and PyTorch side by side.

Both train on the same 1000 cells x 512 dims (the first 512 principal components of the bundled immune
cells' log expression, a real embedding of the right size; labels `cell_type_annotations`, a 70/30
split) with every paper default: m = 300 tokens, T = 4 steps, width 512, 8 heads, MLP ratio 4, one
block, batch 128, dropout 0.1, SGD lr 0.01 momentum 0.9 weight decay 1e-4, cosine schedule.

- ours: `spikgpt train` (the binary given by --bin), a child process;
- anchor: the PyTorch model of scripts/spikgpt/bench_torch.py (SpikingJelly semantics, all m tokens
  materialised, as a PyTorch + SpikingJelly user runs it), a child process.

Each child's peak RSS comes from the kernel's accounting (wait4 ru_maxrss); epoch seconds from each
side's own clock (training only: ours from training_curve.json, PyTorch around its steps). Prints one
JSON line per side and the ratios.

Run from the repository root (a build of the binaries first):
    cargo build --release --bins
    python scripts/spikgpt/bench_train_paper.py --threads 2 --epochs 1 --bin target/release/spikgpt
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

DATA = "data/immune1000.h5ad"
KEY = "cell_type_annotations"


def make_embeddings(path, dims):
    import anndata
    import scipy.sparse as sp
    from safetensors_np import save

    a = anndata.read_h5ad(DATA)
    x = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    x = x.astype(np.float64)
    x -= x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    emb = (u[:, :dims] * s[:dims]).astype(np.float32)
    # scale to unit variance overall so both sides see inputs of the size scGPT embeddings have
    emb /= emb.std()
    save(path, {"embeddings": emb}, {"row_ids": json.dumps([str(i) for i in a.obs_names])})
    return emb, [str(i) for i in a.obs_names]


def run_child(cmd, env=None):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = p.stdout.read().decode()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(out)
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return out, wall, ru.ru_maxrss / 1024.0  # MB (Linux reports KiB)


def torch_worker(args):
    import torch
    import torch.nn as nn
    from bench_torch import SpikGPT, load_embeddings
    import anndata

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, ids = load_embeddings(args.emb)
    obs = anndata.read_h5ad(DATA, backed="r").obs
    lab = obs.loc[ids, KEY].astype(str).values
    classes = sorted(set(lab))
    y = np.array([classes.index(v) for v in lab])
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    ntr = int(round(0.7 * len(y)))
    tr = perm[:ntr]
    X, Y = torch.tensor(x), torch.tensor(y)
    model = SpikGPT(x.shape[1], 512, 8, len(classes), 300, 4, p=0.1, blocks=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    epochs = []
    for _ in range(args.epochs):
        model.train()
        order = tr[rng.permutation(len(tr))]
        t0 = time.perf_counter()
        for i in range(0, len(order), 128):
            b = torch.tensor(order[i:i + 128])
            loss = nn.functional.cross_entropy(model(X[b]), Y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        epochs.append(time.perf_counter() - t0)
        sched.step()
    print(json.dumps({"epoch_s": epochs, "train_cells": int(ntr)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--bin", default="target/release/spikgpt")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--emb", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(args)

    tmp = tempfile.mkdtemp(prefix="spikgpt-bench-")
    try:
        emb = os.path.join(tmp, "immune1000_pca512.safetensors")
        make_embeddings(emb, 512)
        out = os.path.join(tmp, "model")
        cmd = [args.bin, "train", "--threads", str(args.threads), "--embeddings", emb,
               "--data", DATA, "--label-key", KEY, "--epochs", str(args.epochs), "--out", out]
        _, wall, rss = run_child(cmd)
        curve = json.load(open(os.path.join(out, "training_curve.json")))
        ours = {"impl": "scsae", "threads": args.threads, "epoch_s": [r["seconds"] for r in curve],
                "wall_s": wall, "peak_rss_mb": rss,
                "val_accuracy_last": curve[-1]["val_accuracy"]}
        print(json.dumps(ours), flush=True)
        if args.skip_torch:
            return
        tout, twall, trss = run_child([sys.executable, __file__, "--torch-worker", "--emb", emb,
                                       "--threads", str(args.threads), "--epochs", str(args.epochs)])
        t = json.loads(tout.strip().splitlines()[-1])
        anchor = {"impl": "pytorch", "threads": args.threads, "epoch_s": t["epoch_s"],
                  "wall_s": twall, "peak_rss_mb": trss}
        print(json.dumps(anchor), flush=True)
        e_ours = float(np.median(ours["epoch_s"]))
        e_torch = float(np.median(anchor["epoch_s"]))
        print(json.dumps({
            "epoch_throughput_ratio_ours_over_torch": e_torch / e_ours,
            "peak_rss_ratio_torch_over_ours": trss / rss,
            "ours_cells_per_s": t["train_cells"] / e_ours,
            "torch_cells_per_s": t["train_cells"] / e_torch,
        }))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
