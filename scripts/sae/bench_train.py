"""SAE training end to end, `scsae train` against the same recipe in plain PyTorch, side by side.

Both sides do everything a user waits for: read the inputs (.npy), z-score them, train (batch 512,
Adam lr 3e-4, cosine schedule, gradient clipping at 1, decoder rows renormalised after each step),
write a checkpoint after every epoch, and compute the final metrics (MSE, R^2, L0, alive features)
over every input. Each run is one process timed from outside (wall clock, peak RSS through
/usr/bin/time), on the same thread count. Prints tokens/s (inputs x epochs / wall seconds) and the
ratio scsae / PyTorch per architecture.

The inputs are synthetic activations with the structure SAEs are for: each of `--rows` rows of 512
dimensions is a sparse non-negative combination of 16 of 4,096 planted unit directions plus Gaussian
noise (seeded), so the codes become sparse as training proceeds, as on real scGPT activations.

    python scripts/sae/bench_train.py --bin target/release/scsae --threads 2            # paper: 50,000 x 40 epochs
    python scripts/sae/bench_train.py --bin target/release/scsae --epochs 5 --archs topk
    python scripts/sae/bench_train.py --bin target/release/scsae --epochs 10 --repeats 3     # noisy machine

With `--repeats N` the two commands run in turn N times (scsae, PyTorch, scsae, PyTorch, ...) and
the ratio is taken pair by pair; the median pair is quoted with the range, so a machine whose speed
drifts during the run (shared cloud hosts: 30 % between minutes here) moves both sides of a pair.

`--archs` takes `standard`, `topk` and `batchtopk` (k = 32; the default runs the first two). The
PyTorch TopK and BatchTopK sides have no auxiliary dead-latent loss, so scsae runs with
`--aux-k-coef 0` there; BatchTopK's final metrics use the running threshold at inference on both
sides (SAELens's convention).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

D, M = 512, 2048


def make_inputs(path, rows, seed):
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(4096, D)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    x = np.empty((rows, D), dtype=np.float32)
    for s in range(0, rows, 4096):
        n = min(4096, rows - s)
        idx = rng.integers(0, 4096, size=(n, 16))
        coef = rng.exponential(1.0, size=(n, 16)).astype(np.float32)
        block = np.einsum("nk,nkd->nd", coef, atoms[idx])
        block += rng.normal(scale=0.1, size=(n, D)).astype(np.float32)
        x[s:s + n] = block + 0.5
    np.save(path, x)


def torch_run(args):
    """The PyTorch side (run in its own process by `main`)."""
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_torch import step_fn  # the same step as the steps-only bench

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x = torch.from_numpy(np.load(args.inputs))
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-8)
    x = (x - mean) / std
    n, d = x.shape
    w_enc = ((torch.rand(d, M) * 2 - 1) / d**0.5)
    w_dec = ((torch.rand(M, d) * 2 - 1) / M**0.5)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    params = [w_enc.requires_grad_(), w_dec.requires_grad_(), torch.zeros(M, requires_grad=True),
              torch.zeros(d, requires_grad=True)]
    steps_per_epoch = (n + 511) // 512
    opt = torch.optim.Adam(params, lr=3e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps_per_epoch * args.epochs)
    gen = torch.Generator().manual_seed(args.seed)

    threshold = None  # BatchTopK's inference threshold, as SAELens keeps it

    def encode(xb):
        pre = (xb - params[3]) @ params[0] + params[2]
        if args.arch == "topk":
            vals, idx = torch.topk(pre, 32, dim=-1)
            return torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
        if args.arch == "batchtopk":
            return pre * (pre > max(threshold, 0.0))
        return torch.relu(pre)

    for epoch in range(args.epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, 512):
            z = step_fn(args.arch, params, opt, sched, x[perm[s:s + 512]])
            if args.arch == "batchtopk" and bool((z > 0).any()):
                # running estimate of the smallest kept activation (decay 0.99, as scsae and SAELens)
                v = float(z[z > 0].min())
                threshold = v if threshold is None else 0.99 * threshold + 0.01 * v
        save_file({k: p.detach().contiguous() for k, p in zip(["W_enc", "W_dec", "b_enc", "b_dec"], params)},
                  os.path.join(args.out, "checkpoint.safetensors"))
    with torch.no_grad():
        sse = sst = l0 = 0.0
        fired = torch.zeros(M, dtype=torch.int64)
        mu = x.mean(0)
        for s in range(0, n, 4096):
            xb = x[s:s + 4096]
            z = encode(xb)
            xh = z @ params[1] + params[3]
            sse += float(((xh - xb) ** 2).sum())
            sst += float(((xb - mu) ** 2).sum())
            l0 += float((z > 0).sum())
            fired += (z > 0).sum(0)
    # alive as scsae's metrics.json counts it: firing on at least 1 % of the inputs
    alive = int((fired >= 0.01 * n).sum())
    print(json.dumps({"mse": sse / (n * d), "r2": 1 - sse / sst, "l0": l0 / n, "alive": alive}))


def timed(cmd):
    """Run `cmd` under /usr/bin/time: (wall seconds, peak RSS MB, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        p = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", t.name] + cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
        wall, kb = t.read().split()[-2:]
    return float(wall), int(kb) / 1024, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/scsae")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=50000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--archs", default="standard,topk")
    ap.add_argument("--work", default=None, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="pairs of runs per architecture")
    ap.add_argument("--torch-run", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--arch", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_run:
        return torch_run(args)
    work = args.work or tempfile.mkdtemp(prefix="scsae-bench-train.")
    os.makedirs(work, exist_ok=True)
    inputs = os.path.join(work, f"x_{args.rows}.npy")
    if not os.path.exists(inputs):
        make_inputs(inputs, args.rows, args.seed)
    tokens = args.rows * args.epochs
    env_threads = {"RAYON_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
    os.environ.update(env_threads)
    print(f"{args.rows} inputs x {D} dims -> {M} features, {args.epochs} epochs, batch 512, {args.threads} threads")
    print(f"{'implementation':<10} {'arch':<9} {'wall s':>8} {'tokens/s':>10} {'peak MB':>8}  final metrics")
    rows = []
    for arch in args.archs.split(","):
        ratios = []
        for _ in range(max(args.repeats, 1)):
            out = os.path.join(work, f"scsae_{arch}")
            subprocess.run(["rm", "-rf", out], check=True)
            cmd = [args.bin, "train", "--activations", inputs, "--layer", "11", "--features", str(M),
                   "--epochs", str(args.epochs), "--threads", str(args.threads), "--max-inputs",
                   str(args.rows), "--out", out, "--quiet", "--seed", str(args.seed)]
            if arch in ("topk", "batchtopk"):
                cmd += ["--arch", arch, "--k", "32", "--aux-k-coef", "0"]
            w1, m1, _ = timed(cmd)
            with open(os.path.join(out, "metrics.json")) as f:
                met = json.load(f)
            ours = {k: met.get(k) for k in ("mse", "r2", "l0", "n_alive", "alive") if k in met}
            print(f"{'scsae':<10} {arch:<9} {w1:>8.1f} {tokens / w1:>10,.0f} {m1:>8.0f}  {ours}", flush=True)
            tout = os.path.join(work, f"torch_{arch}")
            os.makedirs(tout, exist_ok=True)
            w2, m2, so = timed([sys.executable, __file__, "--torch-run", "--arch", arch, "--inputs", inputs,
                                "--out", tout, "--epochs", str(args.epochs), "--threads", str(args.threads),
                                "--seed", str(args.seed)])
            print(f"{'pytorch':<10} {arch:<9} {w2:>8.1f} {tokens / w2:>10,.0f} {m2:>8.0f}  {so.strip()}",
                  flush=True)
            ratios.append(w2 / w1)
        rows.append((arch, sorted(ratios)))
    for arch, r in rows:
        spread = f" (pairs: {', '.join(f'{x:.2f}' for x in r)})" if len(r) > 1 else ""
        print(f"{arch}: scsae / PyTorch = {r[len(r) // 2]:.2f}x (tokens/s, whole command){spread}")

if __name__ == "__main__":
    main()
