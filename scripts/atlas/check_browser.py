#!/usr/bin/env python3
"""Check an `scsae atlas` site in a real headless browser (Chromium), from disk (file://).

    python3 scripts/atlas/check_browser.py ATLAS_DIR [--shots DIR] [--chromium PATH] [--sample N]

Needs only the Python standard library and Chromium (Debian: `apt-get install chromium`).
Checks:
  1. every page (index.html and features/*.html) is listed in atlas.json, and every relative
     href/src of every page resolves to a file of the site; no page loads anything from the network;
  2. index.html loads in Chromium and its script runs: with `#sort=best_auroc&dir=desc` the rendered
     table says so (data-sorted), shows every row, in non-increasing AUROC order; with `#q=TEXT`
     it shows exactly the rows containing TEXT;
  3. a sample of feature pages (first, last, the best-AUROC one, evenly spaced others) render with
     their heading, the AUROC chart and, where the feature is active, the histogram;
  4. screenshots (1280 x 1600) of the sorted index and two feature pages are written to --shots
     (default ATLAS_DIR/../atlas-screenshots) and are non-trivial PNG files.
Exit status 0 when everything holds; each failure is printed on one line.
"""

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print(f"FAIL: {msg}")


class Links(HTMLParser):
    """Collects href/src attributes and the text of table rows."""

    def __init__(self):
        super().__init__()
        self.links = []
        self.rows = []  # list of (attrs dict, [cell texts])
        self._row = None
        self._cell = None
        self.attrs_of = {}  # id -> attrs
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("href", "src"):
            if k in a and a[k] is not None:
                self.links.append((tag, a[k]))
        if "id" in a:
            self.attrs_of[a["id"]] = a
        if tag == "tr":
            self._row = (a, [])
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row[1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(text):
    p = Links()
    p.feed(text)
    return p


def chromium_cmd(chromium):
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-extensions"]


def dump_dom(chromium, url, profile):
    r = subprocess.run(chromium_cmd(chromium) + [f"--user-data-dir={profile}", "--dump-dom", url],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or "<html" not in r.stdout:
        fail(f"{url}: Chromium could not render it (exit {r.returncode}): {r.stderr.strip()[-300:]}")
        return ""
    return r.stdout


def screenshot(chromium, url, path, profile):
    if path.exists():
        path.unlink()
    subprocess.run(chromium_cmd(chromium) + [f"--user-data-dir={profile}", "--window-size=1280,1600",
                                             f"--screenshot={path}", url],
                   capture_output=True, text=True, timeout=120)
    if not path.exists():
        fail(f"{url}: no screenshot written")
        return
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path}: not a PNG file")
        return
    w, h = struct.unpack(">II", data[16:24])
    # a blank page compresses to a few kB; a rendered table or chart does not
    if (w, h) != (1280, 1600) or len(data) < 20_000:
        fail(f"{path}: {w}x{h}, {len(data)} bytes: looks empty")
    else:
        print(f"ok   screenshot {path} ({len(data) // 1024} kB)")


def check_links(site):
    pages = sorted(site.glob("*.html")) + sorted((site / "features").glob("*.html"))
    manifest = json.loads((site / "atlas.json").read_text())
    listed = set(manifest["files"])
    n_links = 0
    for page in pages:
        rel = page.relative_to(site).as_posix()
        if rel not in listed:
            fail(f"{rel}: not listed in atlas.json")
        p = parse(page.read_text(encoding="utf-8"))
        for tag, link in p.links:
            u = urlsplit(link)
            if u.scheme or u.netloc or link.startswith("//"):
                fail(f"{rel}: <{tag}> loads an external resource {link}")
                continue
            if not u.path:  # a fragment on the same page
                continue
            target = (page.parent / unquote(u.path)).resolve()
            n_links += 1
            if not target.is_file():
                fail(f"{rel}: link {link} does not resolve to a file")
            elif site.resolve() not in target.parents:
                fail(f"{rel}: link {link} leaves the site")
    for f in listed:
        if not (site / f).is_file():
            fail(f"atlas.json lists {f}, which is missing")
    print(f"ok   {len(pages)} pages, {n_links} relative links checked")
    return pages, manifest


def number(s):
    try:
        return float(s)
    except ValueError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("atlas")
    ap.add_argument("--shots", default=None)
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "chromium"))
    ap.add_argument("--sample", type=int, default=6, help="feature pages rendered in Chromium")
    args = ap.parse_args()
    site = Path(args.atlas).resolve()
    if not (site / "index.html").is_file():
        print(f"error: {site}: no index.html (not an atlas folder)")
        return 2
    chromium = shutil.which(args.chromium) or args.chromium
    if not Path(chromium).exists():
        print(f"error: no Chromium at '{args.chromium}' (apt-get install chromium, or --chromium PATH)")
        return 2
    shots = Path(args.shots) if args.shots else site.parent / "atlas-screenshots"
    shots.mkdir(parents=True, exist_ok=True)

    pages, manifest = check_links(site)
    n = manifest["n_features"]
    static = parse((site / "index.html").read_text(encoding="utf-8"))
    body_rows = [r for r in static.rows if "data-i" in r[0]]
    if len(body_rows) != n:
        fail(f"index.html: {len(body_rows)} rows for {n} features")
    heads = [r for r in static.rows if "data-i" not in r[0]][0][1]
    col_auroc = heads.index("AUROC")

    with tempfile.TemporaryDirectory() as profile:
        index_url = (site / "index.html").as_uri()
        # 1. sorted by AUROC through the URL hash: the script ran and reordered the rows
        dom = dump_dom(chromium, index_url + "#sort=best_auroc&dir=desc", profile)
        if dom:
            d = parse(dom)
            t = d.attrs_of.get("features", {})
            if t.get("data-sorted") != "best_auroc:desc":
                fail(f"index.html: the sort script did not run (data-sorted={t.get('data-sorted')!r})")
            count = re.search(r'<span id="count">([^<]*)</span>', dom)
            want = f"{n} of {n} features shown"
            if not count or count.group(1) != want:
                fail(f"index.html: count reads {count.group(1) if count else None!r}, expected {want!r}")
            rows = [r for r in d.rows if "data-i" in r[0]]
            vals = [number(r[1][col_auroc]) for r in rows]
            known = [v for v in vals if v is not None]
            if known != sorted(known, reverse=True) or vals[: len(known)] != known:
                fail("index.html: rows are not in decreasing AUROC order after #sort=best_auroc&dir=desc")
            else:
                print(f"ok   index sorted by AUROC in the browser: {rows[0][1][0]} first ({known[0] if known else None})")
            best = int(rows[0][0]["data-i"]) if rows else 0
        else:
            best = 0
        # 2. filtered through the URL hash: exactly the rows that contain the text
        word = next((r[1][3] for r in body_rows if r[1][3]), "f1")
        expect = sum(1 for r in body_rows if word.lower() in "".join(r[1]).lower())
        dom = dump_dom(chromium, index_url + "#q=" + word, profile)
        if dom:
            count = re.search(r'<span id="count">([^<]*)</span>', dom)
            want = f"{expect} of {n} features shown"
            if not count or count.group(1) != want:
                fail(f"index.html#q={word}: count reads {count.group(1) if count else None!r}, expected {want!r}")
            else:
                print(f"ok   filter '{word}': {want}")

        # 3. feature pages
        k = max(1, min(args.sample, n))
        sample = sorted({0, n - 1, best} | {i * (n - 1) // max(1, k - 1) for i in range(k)})
        for i in sample:
            url = (site / "features" / f"f{i}.html").as_uri()
            dom = dump_dom(chromium, url, profile)
            if not dom:
                continue
            name = body_rows[i][1][0] if i < len(body_rows) else f"f{i}"
            checks = [
                (f"<h1>Feature {name} ", "heading"),
                ("Top cells", "top cells"),
                ("Nearest features (decoder cosine)", "nearest features"),
                ('href="../index.html"', "link to the index"),
            ]
            alive = body_rows[i][1][1] == "yes" if i < len(body_rows) else True
            if alive:
                checks.append(('class="auroc"', "AUROC chart"))
            zero = re.search(r"<p class=\"meta\">(\d+) of (\d+) cells", dom)
            if zero and zero.group(1) != zero.group(2):
                checks.append(('<svg xmlns="http://www.w3.org/2000/svg" class="hist"', "histogram"))
            missing = [what for s, what in checks if s not in dom]
            if missing:
                fail(f"features/f{i}.html: rendered without {', '.join(missing)}")
            else:
                print(f"ok   features/f{i}.html rendered ({', '.join(w for _, w in checks)})")

        # 4. screenshots
        screenshot(chromium, index_url + "#sort=best_auroc&dir=desc", shots / "index_sorted.png", profile)
        for i in sorted({best, sample[len(sample) // 2]}):
            screenshot(chromium, (site / "features" / f"f{i}.html").as_uri(), shots / f"feature_f{i}.png", profile)

    if FAILURES:
        print(f"{len(FAILURES)} failure(s)")
        return 1
    print(f"atlas {site}: all browser checks passed; screenshots in {shots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
