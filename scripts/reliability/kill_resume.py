#!/usr/bin/env python3
"""Kill -9 at random moments, resume, and compare with an uninterrupted run (issue 17).

For each resumable command (`scsae extract`, `scsae train`, `scsae sweep`, `spikgpt train`) this
runs the command once uninterrupted, then TRIALS times: start it, `kill -9` it after a random
(seeded) share of the uninterrupted run time, possibly a second time during the resume, and resume
with `--resume` until it exits 0. Every trial's output tree must equal the uninterrupted one byte for
byte, apart from the lock file and wall-clock timing (`seconds` / throughput fields), and must hold
no temporary file.

    cargo build --locked --bins
    python3 scripts/reliability/kill_resume.py [--trials 5] [--seed 1] [--bin target/debug]

Standard library only. Prints one line per trial and a summary; exits 1 on any mismatch.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TIMING_KEYS = {"seconds", "inputs_per_second", "cells_per_second", "elapsed_seconds", "wall_seconds"}
IGNORED = {".scsae.lock"}


def jobs(bin_dir, work):
    acts = os.path.join(work, "acts_ref")
    emb = os.path.join(ROOT, "tests/fixtures/spikgpt/immune1000_pca50.safetensors")
    scsae = os.path.join(bin_dir, "scsae")
    spik = os.path.join(bin_dir, "spikgpt")
    return [
        ("extract", [scsae, "extract", "--threads", "2", "--model", os.path.join(ROOT, "tests/fixtures/scgpt/vocab60k"),
                     "--data", os.path.join(ROOT, "data/immune1000.h5ad"), "--first-cells", "160", "--layers", "all",
                     "--tokens", "--batch-size", "8", "--out", "{out}"], None),
        ("train", [scsae, "train", "--threads", "2", "--activations", acts, "--layer", "1", "--level", "tokens",
                   "--features", "64", "--epochs", "40", "--max-inputs", "50000", "--quiet", "--out", "{out}"], acts),
        ("sweep", [scsae, "sweep", "--threads", "2", "--activations", acts, "--layers", "0,1", "--lambdas", "1,3",
                   "--level", "cells", "--features", "32", "--epochs", "300", "--batch-size", "16", "--quiet", "--out", "{out}"], acts),
        ("spikgpt-train", [spik, "train", "--threads", "2", "--embeddings", emb, "--data", os.path.join(ROOT, "data/immune1000.h5ad"),
                           "--label-key", "cell_type_annotations", "--tokens", "4", "--width", "32", "--heads", "2",
                           "--epochs", "12", "--lr", "0.05", "--out", "{out}"], None),
    ]


def fill(cmd, out):
    return [c.replace("{out}", out) for c in cmd]


def tree(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            if f in IGNORED:
                continue
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def strip_timing(x):
    if isinstance(x, dict):
        return {k: strip_timing(v) for k, v in x.items() if k not in TIMING_KEYS}
    if isinstance(x, list):
        return [strip_timing(v) for v in x]
    return x


def same_file(name, a, b, ref_dir, trial_dir):
    a = a.replace(ref_dir.encode(), b"<OUT>")
    b = b.replace(trial_dir.encode(), b"<OUT>")
    if a == b:
        return True
    if name.endswith(".json"):
        try:
            return strip_timing(json.loads(a)) == strip_timing(json.loads(b))
        except ValueError:
            return False
    if name.endswith(".svg"):
        return a == b
    if name.endswith(".csv"):
        ra = [r.split(",") for r in a.decode().splitlines()]
        rb = [r.split(",") for r in b.decode().splitlines()]
        if ra and rb and ra[0] == rb[0]:
            keep = [i for i, c in enumerate(ra[0]) if c not in TIMING_KEYS]
            return [[r[i] for i in keep] for r in ra] == [[r[i] for i in keep] for r in rb]
    return False


def compare(ref_dir, trial_dir):
    a, b = tree(ref_dir), tree(trial_dir)
    problems = []
    tmp = [k for k in b if os.path.basename(k).startswith((".scsae-tmp-", "checkpoint.tmp-", "checkpoint.old-"))
           or "/checkpoint.tmp-" in k or "/checkpoint.old-" in k]
    if tmp:
        problems.append(f"temporaries left: {tmp}")
    if set(a) != set(b):
        problems.append(f"files only in reference: {sorted(set(a) - set(b))}; only in trial: {sorted(set(b) - set(a))}")
    for k in sorted(set(a) & set(b)):
        if k.endswith(".parquet") and os.path.exists(os.path.join(ref_dir, k[:-8] + ".csv")):
            continue  # the CSV twin is compared (Parquet holds the same table, timing included)
        if k.endswith(".png") and os.path.exists(os.path.join(ref_dir, k[:-4] + ".svg")):
            continue  # the SVG twin is compared (the PNG rasterises the output path, whose length differs)
        if k.endswith("checkpoint/manifest.json"):
            continue  # hashes of the checkpoint's state.json, which holds epoch times
        if not same_file(k, a[k], b[k], ref_dir, trial_dir):
            problems.append(f"differs: {k}")
    return problems


def run_to_end(cmd, timeout=1800):
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stderr.decode(errors="replace")


def killed_run(cmd, after):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=after)
        return p.returncode  # finished before the kill
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        return -9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/debug"))
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="scsae-kill-")
    failures = 0
    kills = 0
    try:
        for name, cmd, needs in jobs(os.path.abspath(args.bin), work):
            if needs and not os.path.exists(needs):
                rc, err = run_to_end(fill(jobs(os.path.abspath(args.bin), work)[0][1], needs))
                assert rc == 0, err
            if args.only and name not in args.only.split(","):
                continue
            ref = os.path.join(work, f"{name}_ref")
            t0 = time.time()
            rc, err = run_to_end(fill(cmd, ref))
            dur = time.time() - t0
            if rc != 0:
                print(f"{name}: uninterrupted run failed: {err.strip()}")
                failures += 1
                continue
            print(f"{name}: uninterrupted run {dur:.1f} s")
            for t in range(args.trials):
                out = os.path.join(work, f"{name}_{t}")
                first = rng.uniform(0.05, 0.95) * dur
                rc = killed_run(fill(cmd, out), first)
                n_kills = int(rc == -9)
                resume = fill(cmd, out) + ["--resume"]
                # half of the trials are killed a second time, early in the resume
                if rng.random() < 0.5 and rc == -9:
                    rc2 = killed_run(resume, rng.uniform(0.05, 0.5) * dur)
                    n_kills += int(rc2 == -9)
                rc, err = run_to_end(resume)
                kills += n_kills
                problems = [f"resume exited {rc}: {err.strip()}"] if rc != 0 else compare(ref, out)
                status = "identical" if not problems else "MISMATCH " + "; ".join(problems)
                print(f"  trial {t}: killed {n_kills}x (first at {first:.1f} s), resumed: {status}")
                failures += bool(problems)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{kills} kills; {failures} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
