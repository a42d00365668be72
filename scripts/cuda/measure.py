#!/usr/bin/env python3
"""Run one command and record its wall time, peak resident memory and peak GPU memory.

    python3 scripts/cuda/measure.py --label NAME --json-out FILE [--gpu] -- CMD ARGS...

GPU memory: `nvidia-smi --query-gpu=memory.used` sampled every 50 ms while the command runs, peak
minus the reading just before it started (the whole device, so run nothing else on it). Peak RSS:
getrusage(RUSAGE_CHILDREN) of this process, whose only child is the command. The command's stdout
is kept in FILE's folder as NAME.stdout; its exit status is passed on.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time


def gpu_used_mib():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
        return float(out.split()[0])
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--json-out", required=True)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--timeout", type=float, default=None, help="stop the command after this many seconds (exit 124)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    base = gpu_used_mib() if a.gpu else None
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            u = gpu_used_mib()
            if u is not None and (peak[0] is None or u > peak[0]):
                peak[0] = u
            stop.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    if a.gpu:
        th.start()
    stdout_path = os.path.join(os.path.dirname(os.path.abspath(a.json_out)), f"{a.label}.stdout")
    t0 = time.perf_counter()
    with open(stdout_path, "w") as so:
        try:
            rc = subprocess.run(cmd, stdout=so, timeout=a.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
            print(f"  {a.label}: stopped after {a.timeout} s", file=sys.stderr)
    secs = time.perf_counter() - t0
    stop.set()
    if a.gpu:
        th.join()
    res = {"label": a.label, "rc": rc, "seconds": round(secs, 3),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
           "gpu_mem_mib": None if base is None or peak[0] is None else round(peak[0] - base, 1),
           "cmd": " ".join(cmd)}
    with open(a.json_out, "a") as f:
        f.write(json.dumps(res) + "\n")
    print(f"  {a.label}: rc {rc}, {secs:.2f} s, peak RSS {res['peak_rss_mib']} MiB, GPU mem {res['gpu_mem_mib']} MiB",
          file=sys.stderr)
    sys.exit(rc)


if __name__ == "__main__":
    main()
