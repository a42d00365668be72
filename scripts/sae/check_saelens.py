"""Check that `scsae export-saelens` folders load in SAELens and compute scsae's SAE on raw inputs.

For each architecture: train a small SAE with the scsae binary, write scsae's codes with
`scsae encode`, export with `scsae export-saelens`, load the export with
`sae_lens.SAE.load_from_disk`, and compare on the RAW activations (no z-score on the SAELens side):

- codes: `sae.encode(x)` against the codes file written by `scsae encode`;
- reconstructions: `sae.decode(codes)` against scsae's decoder applied from its own (unfolded)
  files: `(codes @ W_dec + b_dec) * input_std + input_mean`.

Prints the max absolute differences (and relative to the largest value) per architecture and exits
1 if any exceeds --tol (relative). Needs a venv with sae-lens only, kept apart from /work/venv; the
one used (sae-lens 6.54.12, transformer-lens 3.9.0, transformers 5.24.0, torch 2.15.0 reused from
/work/venv, which pip then treats as installed, so no second torch is downloaded):

    python3 -m venv /work/venv-saelens
    echo /work/venv/lib/python3.11/site-packages \
        > /work/venv-saelens/lib/python3.11/site-packages/zz_reuse_work_venv.pth
    /work/venv-saelens/bin/pip install sae-lens

Without an existing torch, `pip install sae-lens` takes torch from PyPI. Run from the repository
root after `cargo build`:

    /work/venv-saelens/bin/python scripts/sae/check_saelens.py
    /work/venv-saelens/bin/python scripts/sae/check_saelens.py --arch topk --affine
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

import sae_lens
from sae_lens import SAE

FIXTURE = "tests/fixtures/spikgpt/immune1000_pca50.safetensors"


def run(cmd):
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True)


def single_tensor(path):
    tensors = load_file(str(path))
    if len(tensors) != 1:
        sys.exit(f"{path}: expected one tensor, found {sorted(tensors)}")
    return next(iter(tensors.values())).astype(np.float32)


def check_arch(args, arch, acts, work):
    sae_dir, lens_dir = work / f"sae_{arch}", work / f"saelens_{arch}"
    codes_path = work / f"codes_{arch}.safetensors"
    train = [args.scsae, "train", "--activations", acts, "--level", "cells",
             "--features", str(args.features), "--epochs", str(args.epochs), "--arch", arch,
             "--out", sae_dir]
    if arch in ("topk", "batchtopk", "matryoshka"):
        train += ["--k", args.k]
    if arch == "matryoshka":
        train += ["--matryoshka-widths", str(args.features // 4)]
    if arch == "jumprelu":
        train += ["--lambda", "0.3"]
    run(train)
    run([args.scsae, "encode", "--sae", sae_dir, "--activations", acts, "--out", codes_path])
    run([args.scsae, "export-saelens", "--sae", sae_dir, "--out", lens_dir])

    x = torch.from_numpy(single_tensor(acts))
    ref_codes = torch.from_numpy(load_file(str(codes_path))["codes"])
    own = {k: torch.from_numpy(v) for k, v in load_file(str(sae_dir / "sae_weights.safetensors")).items()}
    ref_recon = (ref_codes @ own["W_dec"] + own["b_dec"]) * own["input_std"] + own["input_mean"]

    sae = SAE.load_from_disk(str(lens_dir), device="cpu")
    with torch.no_grad():
        codes = sae.encode(x)
        recon = sae.decode(codes)
    dz = (codes - ref_codes).abs().max().item()
    dx = (recon - ref_recon).abs().max().item()
    rz = dz / max(ref_codes.abs().max().item(), 1e-30)
    rx = dx / max(ref_recon.abs().max().item(), 1e-30)
    support = ((codes != 0) != (ref_codes != 0)).sum().item()
    l0 = (ref_codes != 0).float().sum(1).mean().item()
    print(
        f"{arch:10s} -> {type(sae).__name__:11s} ({sae.cfg.architecture()}): "
        f"codes max|diff| {dz:.3e} (rel {rz:.2e}), recon max|diff| {dx:.3e} (rel {rx:.2e}), "
        f"support mismatches {support}, L0 {l0:.1f}",
        flush=True,
    )
    return max(rz, rx)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["standard", "topk", "batchtopk", "matryoshka", "jumprelu", "all"], default="all")
    ap.add_argument("--scsae", default="target/debug/scsae", help="scsae binary")
    ap.add_argument("--activations", default=FIXTURE, help="safetensors file, one 2-D tensor")
    ap.add_argument("--affine", action="store_true",
                    help="first map every input dim d to x * s_d + o_d (s from 0.1 to 10, o from "
                         "-10 to 10) so that input_mean / input_std are far from 0 / 1")
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--tol", type=float, default=1e-5, help="largest relative difference accepted")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        acts = Path(args.activations)
        if args.affine:
            x = single_tensor(acts)
            d = x.shape[1]
            s = np.logspace(-1, 1, d, dtype=np.float32)
            o = np.linspace(-10, 10, d, dtype=np.float32)
            acts = work / "affine.safetensors"
            save_file({"embeddings": np.ascontiguousarray(x * s + o)}, str(acts))
        print(f"sae-lens {sae_lens.__version__}, torch {torch.__version__}, inputs {acts}")
        archs = (["standard", "topk", "batchtopk", "matryoshka", "jumprelu"] if args.arch == "all"
                 else [args.arch])
        worst = max(check_arch(args, a, acts, work) for a in archs)
        meta = json.loads((work / f"saelens_{archs[0]}" / "cfg.json").read_text())["metadata"]
        print(f"exported metadata: {meta}")
    if worst > args.tol:
        sys.exit(f"FAIL: relative difference {worst:.2e} > {args.tol:g}")
    print(f"OK: every relative difference <= {args.tol:g}")


if __name__ == "__main__":
    main()
