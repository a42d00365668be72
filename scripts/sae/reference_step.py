"""Reference SAE training steps in plain PyTorch (the paper's recipe), for
tests/reference/sae_reference.rs.

Run from the repository root:
    python scripts/sae/reference_step.py
Writes tests/fixtures/sae/reference_steps.json.

For each case (standard L1 with the mean loss, standard L1 with the sum loss, TopK, TopK with the
auxiliary dead-latent loss under the sum (SAELens) and mean conventions, Matryoshka BatchTopK under
both conventions, JumpReLU with the step L0 penalty under both conventions) it starts from
fixed parameters, runs two optimiser steps on two fixed (already z-scored) batches exactly as the
paper's code does: loss -> backward -> clip_grad_norm_(1.0) -> Adam (torch defaults) with a cosine
schedule (CosineAnnealingLR stepped per batch) -> decoder rows renormalised to unit norm; and records
the loss, the raw gradients, the gradient norm and the parameters after each step.

The auxiliary loss follows sae-lens 6.54.12 (`TopKTrainingSAE.calculate_topk_aux_loss`,
`calculate_topk_aux_acts`, and the trainer's `n_forward_passes_since_fired` / `dead_feature_window`
bookkeeping): dead = steps since firing > window; k_aux = d_in // 2, scale = min(dead / k_aux, 1),
k_aux = min(k_aux, dead); the top k_aux dead pre-activations per row (not ReLU'd) times W_dec (no bias)
reconstruct the detached residual x - x_hat; aux = coef * scale * squared error, summed over dims and
averaged over rows (sum convention; divided by d_in as well under the mean convention).
"""
import json
import math
import os

import numpy as np
import torch

torch.set_default_dtype(torch.float32)
rng = np.random.default_rng(7)
D, M, B = 8, 16, 12


def make_params():
    w_enc = rng.normal(0, 0.4, (D, M)).astype(np.float32)
    w_dec = rng.normal(0, 1.0, (M, D)).astype(np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    b_enc = rng.normal(0, 0.1, M).astype(np.float32)
    b_dec = rng.normal(0, 0.1, D).astype(np.float32)
    return w_enc, w_dec, b_enc, b_dec


def batch_topk(pre, k):
    """BatchTopK: the n * k largest ReLU'd pre-activations of the whole batch (sae-lens BatchTopK)."""
    acts = torch.relu(pre)
    flat = acts.flatten()
    vals, idx = flat.topk(k * pre.shape[0], sorted=False)
    return torch.zeros_like(flat).scatter(-1, idx, vals).reshape(pre.shape)


def rect(u):
    return ((u > -0.5) & (u < 0.5)).to(u)


class JumpReLUFn(torch.autograd.Function):
    """z = x * (x > t); straight-through gradient to the threshold only (sae-lens `JumpReLU`)."""

    @staticmethod
    def forward(ctx, x, t, bw):
        ctx.save_for_backward(x, t)
        ctx.bw = bw
        return x * (x > t).to(x)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        ste = (t / ctx.bw) * rect((x - t) / ctx.bw) * g
        return (x > t).to(x) * g, (-ste).sum(0), None


class StepFn(torch.autograd.Function):
    """H(x - t); straight-through gradient to the threshold only (sae-lens `Step`)."""

    @staticmethod
    def forward(ctx, x, t, bw):
        ctx.save_for_backward(x, t)
        ctx.bw = bw
        return (x > t).to(x)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        ste = (1.0 / ctx.bw) * rect((x - t) / ctx.bw) * g
        return None, (-ste).sum(0), None


def run_case(name, arch, loss_kind, lam, k, lr, total_steps, batches, init, aux=None, widths=None,
             jump=None):
    """aux: None or (coef, dead_window, initial steps-since-fired per latent); widths: Matryoshka
    levels (the last = d_sae); jump: JumpReLU (initial threshold, bandwidth), lam its L0 coefficient."""
    since = None if aux is None else torch.tensor(aux[2], dtype=torch.int64)
    params = [torch.tensor(p.copy(), requires_grad=True) for p in init]
    if jump is not None:
        params.append(torch.full((M,), jump[0], requires_grad=True))
    w_enc, w_dec, b_enc, b_dec = params[:4]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=0.0)
    steps = []
    for xb in batches:
        x = torch.tensor(xb)
        if jump is not None:
            with torch.no_grad():
                params[4].clamp_(min=0.0)
        pre = (x - b_dec) @ w_enc + b_enc
        if arch == "topk":
            vals, idx = torch.topk(pre, k, dim=-1)
            z = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
        elif arch == "matryoshka_batchtopk":
            z = batch_topk(pre, k)
        elif arch == "jumprelu":
            z = JumpReLUFn.apply(pre, params[4], jump[1])
        else:
            z = torch.relu(pre)
        xhat = z @ w_dec + b_dec
        dead = None
        if arch == "topk" and aux is not None:
            coef, window, _ = aux
            dead = since > window
            red = ((xhat - x) ** 2).sum(-1).mean() if loss_kind == "sum" else ((xhat - x) ** 2).mean()
            n_dead = int(dead.sum())
            loss = red
            if n_dead > 0:
                residual = (x - xhat).detach()
                k_aux = x.shape[-1] // 2
                scale = min(n_dead / k_aux, 1.0)
                k_aux = min(k_aux, n_dead)
                lat = torch.where(dead[None], pre, -torch.inf)
                top = lat.topk(k_aux, sorted=False)
                acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
                err = (acts @ w_dec - residual) ** 2
                aux_loss = err.sum(-1).mean() if loss_kind == "sum" else err.mean()
                loss = loss + coef * scale * aux_loss
            with torch.no_grad():
                fired = (z > 0).any(0)
                since = since + 1
                since[fired] = 0
        elif arch == "topk":
            loss = ((xhat - x) ** 2).mean()
        elif arch == "jumprelu":
            # sae-lens JumpReLUTrainingSAE, sparsity mode "step": lam * mean over rows of the L0
            l0 = StepFn.apply(pre, params[4], jump[1])
            if loss_kind == "sum":
                loss = ((xhat - x) ** 2).sum(-1).mean() + lam * l0.sum(-1).mean()
            else:
                loss = ((xhat - x) ** 2).mean() + lam * l0.mean()
        elif arch == "matryoshka_batchtopk":
            # sae-lens MatryoshkaBatchTopKTrainingSAE: the full reconstruction plus, for every inner
            # level, the reconstruction from the first `width` latents (b_dec included)
            err = lambda r: ((r - x) ** 2).sum(-1).mean() if loss_kind == "sum" else ((r - x) ** 2).mean()
            loss = err(xhat)
            for w in widths[:-1]:
                loss = loss + err(z[:, :w] @ w_dec[:w] + b_dec)
        elif loss_kind == "mean":
            loss = ((xhat - x) ** 2).mean() + lam * z.abs().mean()
        else:
            loss = ((xhat - x) ** 2).sum(-1).mean() + lam * z.abs().sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        grads = [p.grad.detach().clone().numpy() for p in params]
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0).item()
        lr_used = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        with torch.no_grad():
            w_dec /= w_dec.norm(dim=1, keepdim=True)
        steps.append(
            {
                "dead": None if dead is None else dead.tolist(),
                "loss": loss.item(),
                "lr": lr_used,
                "grad_norm": norm,
                "grads": [g.ravel().tolist() for g in grads],
                "params_after": [p.detach().numpy().ravel().tolist() for p in params],
            }
        )
    return {
        "name": name,
        "arch": arch,
        "loss": loss_kind,
        "lambda": lam,
        "k": k,
        "aux_k_coef": 0.0 if aux is None else aux[0],
        "dead_window": 0 if aux is None else aux[1],
        "since_fired": None if aux is None else list(aux[2]),
        "matryoshka_widths": widths,
        "jumprelu": None if jump is None else {"init_threshold": jump[0], "bandwidth": jump[1]},
        "lr": lr,
        "total_steps": total_steps,
        "d_in": D,
        "d_sae": M,
        "batches": [b.ravel().tolist() for b in batches],
        "batch_rows": [b.shape[0] for b in batches],
        "init": [p.ravel().tolist() for p in init],
        "steps": steps,
    }


def main():
    cases = []
    batches = [rng.normal(0, 1, (B, D)).astype(np.float32) for _ in range(2)]
    # a shorter last batch, as at the end of an epoch
    batches[1] = batches[1][:9]
    init = make_params()
    cases.append(run_case("standard_mean", "standard", "mean", 3.0, 0, 1e-2, 4, batches, init))
    cases.append(run_case("standard_sum", "standard", "sum", 0.5, 0, 1e-2, 4, batches, init))
    cases.append(run_case("topk", "topk", "mean", 0.0, 3, 1e-2, 4, batches, init))
    # 6 of 16 latents dead (scale 1, k_aux 4); then 3 dead (scale 0.75, k_aux 3); window 2 steps
    cases.append(run_case("topk_auxk_sum", "topk", "sum", 0.0, 3, 1e-2, 4, batches, init,
                          aux=(0.5, 2, [5] * 6 + [0] * 10)))
    cases.append(run_case("topk_auxk_mean", "topk", "mean", 0.0, 3, 1e-2, 4, batches, init,
                          aux=(1.0, 2, [0] * 13 + [3] * 3)))
    # Matryoshka BatchTopK, levels 4, 10, 16 (no auxiliary loss: nothing is dead yet)
    cases.append(run_case("matryoshka_sum", "matryoshka_batchtopk", "sum", 0.0, 3, 1e-2, 4, batches,
                          init, widths=[4, 10, 16]))
    cases.append(run_case("matryoshka_mean", "matryoshka_batchtopk", "mean", 0.0, 2, 1e-2, 4, batches,
                          init, widths=[6, 16]))
    # JumpReLU (threshold 0.3, bandwidth 0.5: wide enough that many pre-activations fall in the
    # straight-through window and the threshold gradient is exercised)
    cases.append(run_case("jumprelu_sum", "jumprelu", "sum", 0.1, 0, 1e-2, 4, batches, init,
                          jump=(0.3, 0.5)))
    cases.append(run_case("jumprelu_mean", "jumprelu", "mean", 2.0, 0, 1e-2, 4, batches, init,
                          jump=(0.3, 0.5)))
    out = os.path.join("tests", "fixtures", "sae", "reference_steps.json")
    with open(out, "w") as f:
        json.dump({"source": "scripts/sae/reference_step.py (torch %s)" % torch.__version__, "cases": cases}, f)
    print("wrote", out)


if __name__ == "__main__":
    main()
