#!/usr/bin/env python
"""Reference outputs of the OFFICIAL scGPT 0.2.4 model for the expression head and interventions.

How to run (from the repository root, once the tiny checkpoint exists):

    pip install --no-deps scgpt==0.2.4 safetensors   # once
    python scripts/scgpt/make_intervention_fixture.py

Writes tests/fixtures/scgpt/interventions.safetensors, read by
`cargo test --test reference interventions`. What it pins:

* the masked-expression (GEP) head: `TransformerModel.forward(...)["mlm_output"]`, i.e.
  `decoder.fc` = Linear -> LeakyReLU -> Linear -> LeakyReLU -> Linear on every position, run by the
  official code on inputs masked by the official `DataCollator._mask` (Bernoulli(0.4) over the
  non-pad positions after <cls>, masked values -1), and the official `masked_mse_loss` on them;
* three interventions on the output of block 0, made with a forward hook on
  `transformer_encoder.layers[0]` (the official forward runs unmodified around it):
  zero-ablation, the reconstruction of a random SAE (z-scored inputs, ReLU codes, decoded and
  un-z-scored, the scsae/SAELens convention), and steering feature F by a factor S
  (x + (S - 1) z_F W_dec[F] * std);
* for each, the final layer's raw <cls> output (position 0) and the head's predictions.

The weights are those of tests/fixtures/scgpt/tiny (made by make_fixtures.py); the cells (gene ids,
binned values) and the SAE are random, seeded, so the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import official  # noqa: E402
from make_fixtures import build_model, write_safetensors  # noqa: E402

REPO = HERE.parent.parent
CKPT = REPO / "tests/fixtures/scgpt/tiny"
OUT = REPO / "tests/fixtures/scgpt/interventions.safetensors"
LENGTHS = [41, 17, 30, 9]  # <cls> included
MASK_RATIO = 0.4
D_SAE = 96
FEATURE = 5
SCALE = 3.0
SEED = 7


def main() -> None:
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    o = official.load()
    args = json.loads((CKPT / "args.json").read_text())
    vocab_json = json.loads((CKPT / "vocab.json").read_text())
    vocab = o.GeneVocab.from_dict(vocab_json)
    model = build_model(o, vocab, args)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(CKPT / "model.safetensors")))
    model.eval()
    # run the plain PyTorch encoder (no nested-tensor fast path) so the hook sees dense [b, l, d]
    enc = model.transformer_encoder
    for attr in ("enable_nested_tensor", "use_nested_tensor"):
        if hasattr(enc, attr):
            setattr(enc, attr, False)

    pad_id = vocab_json[args["pad_token"]]
    cls_id = vocab_json["<cls>"]
    pad_value = float(args["pad_value"])
    genes = [i for t, i in vocab_json.items() if not t.startswith("<")]
    b, length = len(LENGTHS), max(LENGTHS)
    ids = np.full((b, length), pad_id, dtype=np.int64)
    values = np.full((b, length), pad_value, dtype=np.float32)
    for i, n in enumerate(LENGTHS):
        ids[i, 0] = cls_id
        ids[i, 1:n] = rng.choice(genes, size=n - 1, replace=False)
        values[i, 1:n] = rng.integers(1, 51, size=n - 1)
    collator = o.DataCollator(
        do_padding=True,
        pad_token_id=pad_id,
        pad_value=pad_value,
        do_mlm=True,
        mlm_probability=MASK_RATIO,
        mask_value=-1,
        max_length=length,
        keep_first_n_tokens=1,
    )
    target = torch.tensor(values)
    masked = collator._mask(target.clone())
    mask = masked.eq(-1)
    src = torch.tensor(ids)
    pad_mask = src.eq(pad_id)

    d = args["embsize"]
    sae = dict(
        W_enc=torch.randn(d, D_SAE) * 0.3,
        b_enc=torch.randn(D_SAE) * 0.1 - 0.05,
        W_dec=torch.randn(D_SAE, d) * 0.2,
        b_dec=torch.randn(d) * 0.1,
        input_mean=torch.randn(d) * 0.2,
        input_std=torch.rand(d) * 0.8 + 0.6,
    )

    def codes(x):
        xz = (x - sae["input_mean"]) / sae["input_std"]
        return torch.relu((xz - sae["b_dec"]) @ sae["W_enc"] + sae["b_enc"])

    def reconstruct(x):
        return (codes(x) @ sae["W_dec"] + sae["b_dec"]) * sae["input_std"] + sae["input_mean"]

    def steer(x):
        z = codes(x)[..., FEATURE : FEATURE + 1]
        return x + (SCALE - 1.0) * z * (sae["W_dec"][FEATURE] * sae["input_std"])

    def run(vals, edit):
        handle = None
        if edit is not None:

            def hook(_module, _args, out):
                assert not getattr(out, "is_nested", False)
                return edit(out)

            handle = enc.layers[0].register_forward_hook(hook)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                h = model._encode(src, vals, pad_mask, None)
                mlm = model(src, vals, pad_mask)["mlm_output"]
        finally:
            if handle is not None:
                handle.remove()
        return h[:, 0, :].numpy().astype(np.float32), mlm.numpy().astype(np.float32)

    def loss(mlm):
        m = mask.float()
        pred = torch.tensor(mlm)
        return float(torch.nn.functional.mse_loss(pred * m, target * m, reduction="sum") / m.sum())

    edits = {
        "clean": None,
        "ablate0": lambda x: torch.zeros_like(x),
        "splice0": reconstruct,
        "steer0": steer,
    }
    tensors = {
        "gene_ids": ids,
        "values": values,
        "masked_values": masked.numpy().astype(np.float32),
        "lengths": np.array(LENGTHS, dtype=np.int64),
    }
    losses = {}
    for name, edit in edits.items():
        cls_m, mlm_m = run(masked, edit)
        cls_u, mlm_u = run(torch.tensor(values), edit)
        tensors[f"mlm_{name}"] = mlm_m
        tensors[f"cls_{name}"] = cls_m
        tensors[f"mlm_unmasked_{name}"] = mlm_u
        tensors[f"cls_unmasked_{name}"] = cls_u
        losses[name] = loss(mlm_m)
    for k, v in sae.items():
        tensors[f"sae.{k}"] = v.numpy().astype(np.float32)
    meta = dict(
        made_by="scripts/scgpt/make_intervention_fixture.py",
        scgpt="0.2.4 (official TransformerModel, DataCollator._mask, masked_mse_loss)",
        checkpoint="tests/fixtures/scgpt/tiny",
        mask_ratio=str(MASK_RATIO),
        feature=str(FEATURE),
        scale=str(SCALE),
        n_masked=str(int(mask.sum())),
        losses=json.dumps(losses),
    )
    write_safetensors(OUT, {k: torch.tensor(np.ascontiguousarray(v)) for k, v in tensors.items()}, meta)
    print(f"wrote {OUT}: {int(mask.sum())} masked positions, losses {losses}")


if __name__ == "__main__":
    main()
