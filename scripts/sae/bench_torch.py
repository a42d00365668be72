"""Training throughput of the paper's SAE recipe in plain PyTorch, to compare with benches/sae_train.rs.

Run from the repository root (same machine, same thread count as the Rust bench):
    python scripts/sae/bench_torch.py --threads 2 --steps 30
    python scripts/sae/bench_torch.py --device cuda --steps 100     # on a GPU (scripts/cuda/device_check.sh)

Same shapes as the paper (batch 512 of 512-dim activations, M = 2048), same step: forward, loss
(mean convention), backward, clip_grad_norm_(1.0), Adam, cosine schedule, decoder renormalisation.
Prints tokens/s for the standard L1 SAE, TopK and BatchTopK (k = 32).
"""
import argparse
import time

import torch


def step_fn(arch, params, opt, sched, x, lam=3.0, k=32):
    w_enc, w_dec, b_enc, b_dec = params
    pre = (x - b_dec) @ w_enc + b_enc
    if arch == "topk":
        vals, idx = torch.topk(pre, k, dim=-1)
        z = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
        loss = ((z @ w_dec + b_dec - x) ** 2).mean()
    elif arch == "batchtopk":
        # SAELens BatchTopK (training): the k x batch largest ReLU'd pre-activations of the batch
        flat = torch.relu(pre).flatten()
        vals, idx = flat.topk(k * pre.shape[0])
        z = torch.zeros_like(flat).scatter(-1, idx, vals).reshape(pre.shape)
        loss = ((z @ w_dec + b_dec - x) ** 2).mean()
    else:
        z = torch.relu(pre)
        loss = ((z @ w_dec + b_dec - x) ** 2).mean() + lam * z.abs().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    with torch.no_grad():
        w_dec /= w_dec.norm(dim=1, keepdim=True)
    return z.detach()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    d, m, b = 512, 2048, 512
    x = (torch.rand(b, d) * 3.4 - 1.7).to(dev)
    for arch in ["standard", "topk", "batchtopk"]:
        w_enc = ((torch.rand(d, m) * 2 - 1) / d**0.5).to(dev)
        w_dec = ((torch.rand(m, d) * 2 - 1) / m**0.5).to(dev)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        params = [w_enc.requires_grad_(), w_dec.requires_grad_(), torch.zeros(m, device=dev, requires_grad=True),
                  torch.zeros(d, device=dev, requires_grad=True)]
        opt = torch.optim.Adam(params, lr=3e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3920)
        for _ in range(3):
            step_fn(arch, params, opt, sched, x)
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step_fn(arch, params, opt, sched, x)
        sync()
        dt = (time.perf_counter() - t0) / args.steps
        where = f"{args.threads} threads" if dev.type == "cpu" else torch.cuda.get_device_name(dev)
        print(f"torch {torch.__version__} {arch}: {dt * 1e3:.1f} ms/step, {b / dt:,.0f} tokens/s ({where})")


if __name__ == "__main__":
    main()
