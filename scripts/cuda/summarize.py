#!/usr/bin/env python3
"""The summary table of scripts/cuda/device_check.sh, from its results.jsonl and the commands' stdout."""
import argparse
import json
import os
import re


def read(path):
    try:
        return open(path).read()
    except OSError:
        return ""


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--full-cells", type=int, required=True)
    ap.add_argument("--sae-tokens", type=int, required=True)
    ap.add_argument("--sae-epochs", type=int, required=True)
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.results) if l.strip()]
    by = {r["label"]: r for r in rows if "label" in r and "seconds" in r}
    out = []
    p = out.append

    p(f"device check, device mode {a.device}")
    p("")
    p("parity (max |difference| over every element of every stored tensor, vs the CPU run)")
    p(f"  {'check':14s} {'tensors':>7s} {'worst max|d|':>13s} {'tol':>8s}  result")
    for r in rows:
        if "worst_max_abs" in r:
            res = "PASS" if r["passed"] else "FAIL"
            if r["tol"] is None:
                res = "reported" if r["structure_ok"] else "FAIL (structure)"
            p(f"  {r['label']:14s} {r['tensors']:7d} {r['worst_max_abs']:13.3e} {fmt(r['tol'], '.0e'):>8s}  {res}")
    p("")
    p("bad input (one stderr line, non-zero exit)")
    for r in rows:
        if "stderr_lines" in r:
            ok = r["rc"] != 0 and r["stderr_lines"] == 1
            p(f"  {r['label']:26s} exit {r['rc']}, {r['stderr_lines']} line(s)  {'PASS' if ok else 'FAIL'}")
    p("")
    p("throughput (wall clock of the whole command: loading, compute, writing)")
    p(f"  {'run':22s} {'seconds':>8s} {'rate':>22s} {'peak RSS MiB':>12s} {'GPU MiB':>8s}")
    rates = {}

    def line(label, rate, unit):
        r = by.get(label)
        if r is None:
            return
        rates[label] = rate
        bad = "" if r["rc"] == 0 else f"  (exit {r['rc']})"
        p(f"  {label:22s} {r['seconds']:8.2f} {fmt(rate, ',.1f'):>14s} {unit:7s} {fmt(r['peak_rss_mib']):>12s} "
          f"{fmt(r['gpu_mem_mib']):>8s}{bad}")

    inner_ext = {}
    for label in ("thr_f32", "thr_bf16", "thr_f32_b256"):
        r = by.get(label)
        if r:
            try:
                rep = json.loads(read(os.path.join(a.work, f"{label}.stdout")))
                n = rep.get("n_cells", a.full_cells)
                if rep.get("seconds"):
                    inner_ext[label] = n / rep["seconds"]
            except ValueError:
                n = a.full_cells
            line(label, n / r["seconds"], "cells/s")
    sae_inner = {}
    for label in ("sae_train_l1", "sae_train_topk"):
        r = by.get(label)
        if r:
            txt = read(os.path.join(a.work, f"{label}.stdout"))
            mm = re.search(r": (\d+) inputs x", txt)
            n = int(mm.group(1)) if mm else a.sae_tokens
            mi = re.search(r"\((\d+) inputs/s\)", txt)
            sae_inner[label] = int(mi.group(1)) if mi else None
            line(label, n * a.sae_epochs / r["seconds"], "tok/s")
    r = by.get("spk_train")
    spk = read(os.path.join(a.work, "spk_train.stdout")).strip().splitlines()
    if r:
        mm = re.search(r"trained SpikGPT on (\d+) cells", " ".join(spk))
        me = re.search(r"best epoch \d+ of (\d+)", " ".join(spk))
        rate = int(mm.group(1)) * int(me.group(1)) / r["seconds"] if mm and me else None
        line("spk_train", rate, "cell-ep/s")
    r = by.get("spk_annotate")
    if r:
        line("spk_annotate", 1000 / r["seconds"], "cells/s")
    for label, inner in inner_ext.items():
        p(f"  {label}: extraction alone {inner:,.1f} cells/s (the report's seconds: no model load, no data read)")
    for label, inner in sae_inner.items():
        if inner:
            p(f"  {label}: training loop alone {inner:,} tokens/s (scsae's own count)")
    if spk:
        p("  spk_train summary: " + " | ".join(spk[:3])[:300])
    p("")
    p("PyTorch anchors on the same device")
    t = read(os.path.join(a.work, "torch_sae.stdout"))
    for arch in ("standard", "topk"):
        mm = re.search(rf"{arch}: ([\d.]+) ms/step, ([\d,]+) tokens/s", t)
        if mm:
            tt = float(mm.group(2).replace(",", ""))
            ours = sae_inner.get("sae_train_l1" if arch == "standard" else "sae_train_topk")
            ratio = f", scsae training loop / torch steps = {ours / tt:.2f}x" if ours else ""
            p(f"  torch SAE {arch}: {tt:,.0f} tokens/s (steps only){ratio}")
    for l in read(os.path.join(a.work, "torch_spk.stdout")).splitlines():
        try:
            j = json.loads(l)
        except ValueError:
            continue
        p(f"  torch SpikGPT m={j['tokens']} width {j['width']}: train step {j['train_step_s'] * 1e3:.1f} ms "
          f"(batch 128), annotate {j['annotate_cells_per_s']:,.0f} cells/s, val acc {j['val_accuracy']}")
        if "spk_annotate" in rates:
            p(f"    scsae annotate (whole command) / torch annotate (forward only) = "
              f"{rates['spk_annotate'] / j['annotate_cells_per_s']:.2f}x")
    try:
        j = json.loads(read(os.path.join(a.work, "torch_scgpt.stdout")))
        p(f"  official scGPT extraction: {j['cells_per_s']:,.1f} cells/s over {j['cells']} cells "
          f"({j['device']}, per-layer pooling {j['per_layer_mean_pooling']})")
        for label in ("thr_f32", "thr_bf16", "thr_f32_b256"):
            if label in inner_ext:
                p(f"    scsae {label} (extraction alone, as timed there) / official = "
                  f"{inner_ext[label] / j['cells_per_s']:.2f}x; whole command / official = "
                  f"{rates[label] / j['cells_per_s']:.2f}x")
    except (ValueError, KeyError):
        p("  official scGPT extraction: not run")
    print("\n".join(out))


if __name__ == "__main__":
    main()
