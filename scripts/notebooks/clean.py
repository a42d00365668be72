"""After `jupyter nbconvert --execute`: print each code cell's wall time (from nbconvert's timing
metadata), then drop that metadata and replace machine-specific paths in the outputs (the repository
root, the evcxr build folder, the home folder) so the committed notebooks are the same on every
machine. Fails if a cell's output is an error.

    python3 scripts/notebooks/clean.py [--build-dir DIR] notebooks/NAME.ipynb ...
"""
import argparse
import datetime
import json
import os


def seconds(meta):
    ex = meta.get("execution", {})
    a, b = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
    if not (a and b):
        return None
    parse = lambda t: datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
    return (parse(b) - parse(a)).total_seconds()


def scrub(text, subs):
    for old, new in subs:
        text = text.replace(old, new)
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir")
    ap.add_argument("notebooks", nargs="+")
    args = ap.parse_args()
    root = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
    subs = []
    if args.build_dir:
        subs.append((os.path.realpath(args.build_dir), "<evcxr build folder>"))
        subs.append((args.build_dir.rstrip("/"), "<evcxr build folder>"))
    subs += [(root + "/notebooks", "."), (root, ".."), (os.path.expanduser("~"), "~")]
    for path in args.notebooks:
        nb = json.load(open(path))
        n_code = 0
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            n_code += 1
            t = seconds(cell.get("metadata", {}))
            first = "".join(cell["source"]).splitlines()[0] if cell["source"] else ""
            if t is not None:
                print(f"{os.path.basename(path)} cell {n_code}: {t:8.1f} s  {first[:60]}")
            cell["metadata"].pop("execution", None)
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    raise SystemExit(f"{path}: cell {n_code} failed: {out.get('evalue')}")
                if "text" in out:
                    t = out["text"]
                    out["text"] = scrub("".join(t) if isinstance(t, list) else t, subs)
                for mime, v in out.get("data", {}).items():
                    if mime.startswith("text/"):
                        out["data"][mime] = scrub("".join(v) if isinstance(v, list) else v, subs)
        with open(path, "w") as f:
            json.dump(nb, f, indent=1, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main()
