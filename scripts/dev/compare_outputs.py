#!/usr/bin/env python3
"""Compare two output trees (e.g. two `bash scripts/demo.sh` runs by two builds) file by file.

    python scripts/dev/compare_outputs.py OLD NEW

The output folder's own name is replaced in text files (it is written into reports), and files that
differ are explained where the difference is only timing (`seconds` fields/columns). Prints files
only in one tree, identical files, and the rest. Standard library only.
"""
import csv
import hashlib
import io
import json
import os
import sys


def walk(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def without_seconds(name, data):
    """The content with timing removed, or None when the format is not understood."""
    try:
        if name.endswith(".json"):
            def strip(x):
                if isinstance(x, dict):
                    return {k: strip(v) for k, v in x.items() if k != "seconds"}
                if isinstance(x, list):
                    return [strip(v) for v in x]
                return x
            return json.dumps(strip(json.loads(data)), sort_keys=True)
        if name.endswith(".csv"):
            rows = list(csv.reader(io.StringIO(data.decode())))
            if rows and "seconds" in rows[0]:
                k = rows[0].index("seconds")
                return [r[:k] + r[k + 1:] for r in rows]
            return rows
    except Exception:
        return None
    return None


def main(old, new):
    a, b = walk(old), walk(new)
    na, nb = os.path.basename(old.rstrip("/")).encode(), os.path.basename(new.rstrip("/")).encode()
    same, timing, differ = [], [], []
    for k in sorted(set(a) & set(b)):
        x = a[k].replace(na, nb)
        if x == b[k]:
            same.append(k)
            continue
        sx, sy = without_seconds(k, x), without_seconds(k, b[k])
        (timing if sx is not None and sx == sy else differ).append(k)
    print(f"{len(a)} files in {old}, {len(b)} in {new}")
    print(f"identical (output folder name normalised): {len(same)}")
    print(f"differ only in timing ('seconds'): {len(timing)}: {timing}")
    print(f"only in {old}: {sorted(set(a) - set(b))}")
    print(f"only in {new}: {sorted(set(b) - set(a))}")
    print(f"differ: {len(differ)}: {differ}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
