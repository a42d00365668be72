"""Check the reference training steps of the newer architectures against sae-lens itself.

tests/fixtures/sae/reference_steps.json (scripts/sae/reference_step.py, plain PyTorch, which the Rust
kernel is tested against) holds TopK cases with the auxiliary dead-latent loss, Matryoshka
BatchTopK cases and JumpReLU cases. Here the sum-convention cases (SAELens's own convention: squared error summed over
dims, averaged over rows) are recomputed with sae-lens's training classes
(`TopKTrainingSAE`, `MatryoshkaBatchTopKTrainingSAE`, `JumpReLUTrainingSAE` with the "step" L0
loss and the straight-through gradient to the threshold only; `training_forward_pass`) from the same
parameters, batch and dead mask, for their first step: total loss and every gradient must agree
with the fixture. Exits 1 otherwise. Run with the sae-lens venv (see scripts/sae/check_saelens.py):

    /work/venv-saelens/bin/python scripts/sae/check_steps_saelens.py
"""
import json
import sys

import numpy as np
import torch
import sae_lens
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from sae_lens.saes.matryoshka_batchtopk_sae import (
    MatryoshkaBatchTopKTrainingSAE,
    MatryoshkaBatchTopKTrainingSAEConfig,
)
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig


def check(case):
    """Max relative difference of sae-lens's first step from the fixture's."""
    d, m = case["d_in"], case["d_sae"]
    base = dict(d_in=d, d_sae=m, apply_b_dec_to_input=True, normalize_activations="none",
                dtype="float32", device="cpu")
    common = dict(k=case["k"], aux_loss_coefficient=case["aux_k_coef"],
                  rescale_acts_by_decoder_norm=False, **base)
    coefficients = {}
    if case["arch"] == "jumprelu":
        j = case["jumprelu"]
        sae = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(
            jumprelu_init_threshold=j["init_threshold"], jumprelu_bandwidth=j["bandwidth"],
            jumprelu_sparsity_loss_mode="step", jumprelu_ste_to_input=False,
            l0_coefficient=case["lambda"], **base))
        coefficients = {"l0": case["lambda"]}
    elif case["arch"] == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(**common))
    else:
        sae = MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(
            matryoshka_widths=list(case["matryoshka_widths"]), **common))
    w_enc, w_dec, b_enc, b_dec = [np.array(v, dtype=np.float32) for v in case["init"]]
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor(w_enc.reshape(d, m)))
        sae.W_dec.copy_(torch.tensor(w_dec.reshape(m, d)))
        sae.b_enc.copy_(torch.tensor(b_enc))
        sae.b_dec.copy_(torch.tensor(b_dec))
    step = case["steps"][0]
    x = torch.tensor(np.array(case["batches"][0], dtype=np.float32).reshape(-1, d))
    dead = None if step["dead"] is None else torch.tensor(step["dead"])
    out = sae.training_forward_pass(TrainStepInput(
        sae_in=x, coefficients=coefficients, dead_neuron_mask=dead,
        n_training_steps=0, is_logging_step=False))
    out.loss.backward()
    worst = abs(out.loss.item() - step["loss"]) / max(abs(step["loss"]), 1.0)
    parts = ", ".join(f"{k} {v.item():.6f}" for k, v in out.losses.items())
    print(f"{case['name']}: sae-lens {sae_lens.__version__} loss {out.loss.item():.6f} ({parts}) "
          f"vs reference {step['loss']:.6f}")
    names = ["W_enc", "W_dec", "b_enc", "b_dec", "threshold"]
    params = [sae.W_enc, sae.W_dec, sae.b_enc, sae.b_dec] + (
        [sae.threshold] if case["arch"] == "jumprelu" else [])
    for name, p, g in zip(names, params, step["grads"]):
        want = np.array(g, dtype=np.float32)
        got = p.grad.detach().numpy().ravel()
        diff = np.abs(got - want).max() / max(np.abs(want).max(), 1e-12)
        worst = max(worst, diff)
        print(f"  grad {name}: max relative difference {diff:.2e}")
    return worst


def main():
    fx = json.load(open("tests/fixtures/sae/reference_steps.json"))
    names = ["topk_auxk_sum", "matryoshka_sum", "jumprelu_sum"]
    worst = max(check(next(c for c in fx["cases"] if c["name"] == n)) for n in names)
    ok = worst < 1e-5
    print("OK" if ok else "MISMATCH", f"(worst {worst:.2e})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
