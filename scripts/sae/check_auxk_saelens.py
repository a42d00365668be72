"""Check the TopK auxiliary-loss reference steps against sae-lens itself.

tests/fixtures/sae/reference_steps.json (scripts/sae/reference_step.py, plain PyTorch) holds two
TopK cases with the auxiliary dead-latent loss. Here, for the sum-convention case (SAELens's own
convention: squared error summed over dims, averaged over rows), the first step is recomputed with
`sae_lens.saes.topk_sae.TopKTrainingSAE.training_forward_pass` from the same parameters, batch and
dead mask: total loss, the auxiliary part and every gradient must agree with the fixture. Exits 1
otherwise. Run with the sae-lens venv (see scripts/sae/check_saelens.py):

    /work/venv-saelens/bin/python scripts/sae/check_auxk_saelens.py
"""
import json
import sys

import numpy as np
import torch
import sae_lens
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig


def main():
    fx = json.load(open("tests/fixtures/sae/reference_steps.json"))
    case = next(c for c in fx["cases"] if c["name"] == "topk_auxk_sum")
    d, m = case["d_in"], case["d_sae"]
    cfg = TopKTrainingSAEConfig(d_in=d, d_sae=m, k=case["k"], aux_loss_coefficient=case["aux_k_coef"],
                                rescale_acts_by_decoder_norm=False, apply_b_dec_to_input=True,
                                normalize_activations="none", dtype="float32", device="cpu")
    sae = TopKTrainingSAE(cfg)
    w_enc, w_dec, b_enc, b_dec = [np.array(v, dtype=np.float32) for v in case["init"]]
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor(w_enc.reshape(d, m)))
        sae.W_dec.copy_(torch.tensor(w_dec.reshape(m, d)))
        sae.b_enc.copy_(torch.tensor(b_enc))
        sae.b_dec.copy_(torch.tensor(b_dec))
    step = case["steps"][0]
    x = torch.tensor(np.array(case["batches"][0], dtype=np.float32).reshape(-1, d))
    out = sae.training_forward_pass(TrainStepInput(
        sae_in=x, coefficients={}, dead_neuron_mask=torch.tensor(step["dead"]),
        n_training_steps=0, is_logging_step=False))
    out.loss.backward()
    worst = abs(out.loss.item() - step["loss"]) / max(abs(step["loss"]), 1.0)
    print(f"sae-lens {sae_lens.__version__}: loss {out.loss.item():.6f} (aux "
          f"{out.losses['auxiliary_reconstruction_loss'].item():.6f}) vs reference {step['loss']:.6f}")
    for name, p, g in zip(["W_enc", "W_dec", "b_enc", "b_dec"],
                          [sae.W_enc, sae.W_dec, sae.b_enc, sae.b_dec], step["grads"]):
        want = np.array(g, dtype=np.float32)
        got = p.grad.detach().numpy().ravel()
        diff = np.abs(got - want).max() / max(np.abs(want).max(), 1e-12)
        worst = max(worst, diff)
        print(f"  grad {name}: max relative difference {diff:.2e}")
    ok = worst < 1e-5
    print("OK" if ok else "MISMATCH", f"(worst {worst:.2e})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
