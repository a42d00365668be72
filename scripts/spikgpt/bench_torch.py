"""The SpikGPT model in plain PyTorch, timed on the same input and sizes as benches/spikgpt.rs.

Architecture (same as src/spikgpt/model.rs): Linear(k->d)+BN+LIF on the embedding repeated over m tokens
and T steps; blocks of spiking self-attention (Linear+BN+LIF for q, k, v; q k^T v * 0.125 without
softmax; LIF threshold 0.5; Linear+BN+LIF projection) and a spiking MLP (d -> 4d -> d, dropout 0.1),
residuals; mean over tokens and time; Linear(d -> C). LIF: tau 2, hard reset, decay_input,
detach_reset, sigmoid surrogate alpha 4 (SpikingJelly semantics, multi-step). All m tokens are
computed (no collapsing of identical copies).

Measures, per m in (300, 8): seconds per training step (batch 128, SGD momentum 0.9, wd 1e-4), per
epoch (= steps for 700 cells), and annotation throughput (cells/s, eval mode) on the 1000 immune
cells of tests/fixtures/spikgpt/immune1000_pca50.safetensors; also trains 10 epochs and reports
validation accuracy with --accuracy.

Run from the repository root (same thread count as the Rust bench):
    python scripts/spikgpt/bench_torch.py --threads 2 [--accuracy]
    python scripts/spikgpt/bench_torch.py --device cuda --width 512 --heads 8 --tokens 300 --accuracy  # GPU

Labels come from anndata when installed, else straight from the .h5ad with h5py.
"""
import argparse
import json
import struct
import time

import numpy as np
import torch
import torch.nn as nn


def load_embeddings(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    meta = header.pop("__metadata__", {})
    (name, info), = header.items()
    a, b = info["data_offsets"]
    x = np.frombuffer(body[a:b], dtype="<f4").reshape(info["shape"])
    return x, json.loads(meta["row_ids"])


def read_labels(path, ids, key):
    """obs[key] of the cells `ids` (anndata when installed, else h5py on the AnnData >= 0.8 layout)."""
    try:
        import anndata
    except ImportError:
        import h5py

        with h5py.File(path, "r") as f:
            obs = f["obs"]
            index = obs[obs.attrs.get("_index", "_index")][()].astype(str)
            col = obs[key]
            if isinstance(col, h5py.Group):  # categorical
                values = col["categories"][()].astype(str)[col["codes"][()]]
            else:
                values = col[()].astype(str)
        row = {c: i for i, c in enumerate(index)}
        return np.array([values[row[i]] for i in ids])
    obs = anndata.read_h5ad(path, backed="r").obs
    return obs.loc[ids, key].astype(str).values


class SpikeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.alpha * x)
        return g * ctx.alpha * s * (1 - s), None


class LIF(nn.Module):
    def __init__(self, v_th=1.0, tau=2.0):
        super().__init__()
        self.v_th, self.tau = v_th, tau

    def forward(self, x):  # [T, ...]
        v = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            h = v + (x[t] - v) / self.tau
            s = SpikeFn.apply(h - self.v_th, 4.0)
            v = h * (1 - s.detach())
            out.append(s)
        return torch.stack(out)


class LinBnLif(nn.Module):
    def __init__(self, i, o, v_th=1.0):
        super().__init__()
        self.lin, self.bn, self.lif = nn.Linear(i, o), nn.BatchNorm1d(o), LIF(v_th)

    def forward(self, x):  # [T, B, N, C]
        T, B, N, C = x.shape
        y = self.bn(self.lin(x.reshape(-1, C)))
        return self.lif(y.reshape(T, B, N, -1))


class SSA(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.q, self.k, self.v, self.proj = (LinBnLif(d, d) for _ in range(4))
        self.attn_lif = LIF(0.5)

    def forward(self, x):
        T, B, N, D = x.shape
        sp = lambda s: s.reshape(T, B, N, self.h, D // self.h).permute(0, 1, 3, 2, 4)
        q, k, v = sp(self.q(x)), sp(self.k(x)), sp(self.v(x))
        y = (q @ (k.transpose(-2, -1) @ v)) if N > D // self.h else ((q @ k.transpose(-2, -1)) @ v)
        y = (y * 0.125).permute(0, 1, 3, 2, 4).reshape(T, B, N, D)
        return self.proj(self.attn_lif(y))


class SpikGPT(nn.Module):
    def __init__(self, k, d, h, c, m, T, p=0.1, blocks=1):
        super().__init__()
        self.m, self.T = m, T
        self.embed = LinBnLif(k, d)
        self.blocks = nn.ModuleList()
        for _ in range(blocks):
            self.blocks.append(nn.ModuleDict({"attn": SSA(d, h), "fc1": LinBnLif(d, 4 * d), "fc2": LinBnLif(4 * d, d)}))
        self.drop = nn.Dropout(p)
        self.head = nn.Linear(d, c)

    def forward(self, e):
        x = e[None, :, None, :].expand(self.T, e.shape[0], self.m, e.shape[1]).contiguous()
        x = self.embed(x)
        for b in self.blocks:
            x = x + b["attn"](x)
            x = x + self.drop(b["fc2"](self.drop(b["fc1"](x))))
        return self.head(x.mean(2).mean(0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--tokens", type=int, nargs="+", default=[300, 8])
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    x, ids = load_embeddings("tests/fixtures/spikgpt/immune1000_pca50.safetensors")
    lab = read_labels("data/immune1000.h5ad", ids, "cell_type_annotations")
    classes = sorted(set(lab))
    y = np.array([classes.index(v) for v in lab])
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    tr, va = perm[:700], perm[700:]
    X = torch.tensor(x).to(dev)
    Y = torch.tensor(y).to(dev)
    for m in args.tokens:
        model = SpikGPT(x.shape[1], args.width, args.heads, len(classes), m, 4).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        epochs = 10 if args.accuracy else 1
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        step_times = []
        for ep in range(epochs):
            model.train()
            order = tr[rng.permutation(len(tr))]
            for i in range(0, len(order), 128):
                b = torch.tensor(order[i:i + 128]).to(dev)
                sync()
                t0 = time.perf_counter()
                loss = nn.functional.cross_entropy(model(X[b]), Y[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sync()
                step_times.append(time.perf_counter() - t0)
            sched.step()
        model.eval()
        with torch.no_grad():
            sync()
            t0 = time.perf_counter()
            logits = torch.cat([model(X[i:i + 256]) for i in range(0, len(X), 256)])
            sync()
            dt = time.perf_counter() - t0
        acc = (logits[torch.tensor(va).to(dev)].argmax(1) == Y[torch.tensor(va).to(dev)]).float().mean().item()
        full_steps = [s for s in step_times]
        print(json.dumps({
            "impl": "pytorch", "device": args.device, "threads": args.threads, "tokens": m, "width": args.width,
            "train_step_s": float(np.median(full_steps)),
            "train_epoch_s": float(np.median(full_steps) * int(np.ceil(700 / 128))),
            "annotate_cells_per_s": len(X) / dt,
            "val_accuracy": acc if args.accuracy else None,
        }))


if __name__ == "__main__":
    main()
