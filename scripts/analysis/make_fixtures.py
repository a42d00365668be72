"""Reference values for tests/reference/analysis_reference.rs, from sklearn / scipy / statsmodels /
numpy.

Run from the repository root:
    python scripts/analysis/make_fixtures.py
Writes tests/fixtures/analysis/reference.json. Every float is written with repr() (round-trips exactly).
Inputs are built from float32-representable values so Rust (f32 storage) sees the same numbers.
"""
import json
import math

import numpy as np
import scipy
import sklearn
import statsmodels
from scipy.stats import fisher_exact
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

rng = np.random.default_rng(20260521)
out = {"versions": {"numpy": np.__version__, "scipy": scipy.__version__, "sklearn": sklearn.__version__,
                    "statsmodels": statsmodels.__version__}}

# ---------------- AUROC: ties, zeros, sparse-like features, 5 types (one with 3 cells)
n, f = 80, 9
types = np.array(["T"] * 20 + ["B"] * 15 + ["NK"] * 12 + ["mono"] * 30 + ["rare"] * 3)
types = types[rng.permutation(n)]
x = np.zeros((n, f), dtype=np.float32)
x[:, 0] = rng.integers(0, 4, n)  # heavy ties
x[:, 1] = np.where(rng.random(n) < 0.7, 0.0, rng.random(n)).astype(np.float32)  # mostly zeros
x[:, 2] = rng.normal(size=n).astype(np.float32)
x[:, 3] = (types == "B") * 2.0 + rng.integers(0, 2, n)  # signal with ties
x[:, 4] = 0.0  # constant
x[:, 5] = np.round(rng.normal(size=n), 1).astype(np.float32)
x[:, 6] = -1.5 * (types == "NK") + rng.random(n).astype(np.float32) * 0.1
x[:, 7] = np.where(types == "mono", rng.random(n), 0).astype(np.float32)
x[:, 8] = rng.exponential(size=n).astype(np.float32) * (rng.random(n) < 0.3)
x = x.astype(np.float32)
names = sorted(set(types))
auroc = [[float(roc_auc_score(types == t, x[:, j].astype(np.float64))) for t in names] for j in range(f)]
out["auroc"] = {"n": n, "f": f, "x": [float(v) for v in x.ravel()], "labels": list(types), "types": names,
                "auroc": auroc}

# ---------------- Fisher exact, one-sided greater, including p < 1e-300
tables = [[3, 1, 1, 3], [0, 5, 5, 10], [1, 0, 0, 1], [5, 2, 10, 200], [2, 30, 11, 4000],
          [12, 3, 40, 9000], [7, 0, 3, 90], [1, 9, 9, 1], [0, 0, 3, 4], [4, 6, 0, 0],
          [60, 5, 20, 3000], [150, 10, 10, 1500], [180, 0, 0, 1820], [200, 3, 5, 4000],
          [40, 8, 60, 20000], [1, 200, 300, 5000], [225, 0, 0, 1775], [222, 3, 2, 1778],
          [220, 3, 5, 2500], [240, 0, 0, 2000]]
fisher = []
for a, b, c, d in tables:
    res = fisher_exact([[a, b], [c, d]], alternative="greater")
    N, K, nn = a + b + c + d, a + b, a + c
    # exact rational tail for log10(p) (independent of scipy; valid also below the f64 range)
    lo = max(0, K + nn - N)
    hi = min(K, nn)
    if a <= lo or K == 0 or nn == 0 or K == N or nn == N:
        log10 = 0.0
    else:
        num = sum(math.comb(K, i) * math.comb(N - K, nn - i) for i in range(a, hi + 1))
        # math.log10 is exact-to-rounding on arbitrarily large Python integers
        log10 = math.log10(num) - math.log10(math.comb(N, nn))
    odds = float(res.statistic) if hasattr(res, "statistic") else float(res[0])
    fisher.append({"table": [a, b, c, d], "p": float(res.pvalue), "odds_ratio": odds if math.isfinite(odds) else None,
                   "log10_p_exact": log10})
out["fisher"] = fisher
assert any(0 < t["p"] < 1e-300 for t in fisher), [t["p"] for t in fisher]

# ---------------- BH: ties, tiny values, exact 1s
p = np.concatenate([rng.random(40) ** 3, [1e-305, 1e-305, 0.5, 0.5, 1.0, 1.0, 0.01, 0.04, 0.049]])
p = p[rng.permutation(len(p))]
out["bh"] = {"p": [float(v) for v in p], "q": [float(v) for v in multipletests(p, method="fdr_bh")[1]]}

# ---------------- Pearson: features (with a constant one) vs sparse expression
n, nf, ng = 50, 6, 15
feat = rng.normal(size=(n, nf)).astype(np.float32)
feat[:, 2] = np.maximum(feat[:, 2], 0)  # ReLU-like, many zeros
feat[:, 5] = 1.0  # constant
expr = (rng.poisson(0.8, size=(n, ng)) * rng.random((n, ng))).astype(np.float32)
expr[:, 0] += feat[:, 0] * 2  # correlated gene
expr[:, 3] = 0.0  # all-zero gene
expr[:, 7] = np.float32(2.5)  # constant non-zero
with np.errstate(invalid="ignore", divide="ignore"):
    full = np.corrcoef(np.concatenate([feat, expr], axis=1).astype(np.float64).T)
r = full[:nf, nf:]
out["pearson"] = {"n": n, "nf": nf, "ng": ng, "features": [float(v) for v in feat.ravel()],
                  "expression": [float(v) for v in expr.ravel()],
                  "r": [None if math.isnan(v) else float(v) for v in r.ravel()]}

# ---------------- PCA: explained variance and components (up to sign)
n, d, k = 60, 14, 6
z = rng.normal(size=(n, 4)) @ rng.normal(size=(4, d)) * 3 + rng.normal(size=(n, d)) * 0.5
z = z.astype(np.float32)
pca = PCA(n_components=k, svd_solver="full").fit(z.astype(np.float64))
out["pca"] = {"n": n, "d": d, "k": k, "x": [float(v) for v in z.ravel()],
              "explained_variance": [float(v) for v in pca.explained_variance_],
              "explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio_],
              "components": [float(v) for v in pca.components_.ravel()],
              "scores": [float(v) for v in pca.transform(z.astype(np.float64)).ravel()]}

# ---------------- Enrichment end to end: hits vs sets over the "genes in any set" background
n_genes = 300
measured = rng.random(n_genes) < 0.9
sets = [sorted(rng.choice(n_genes, size=s, replace=False).tolist()) for s in (5, 12, 30, 8, 60, 3)]
hits = [sorted(rng.choice(n_genes, size=h, replace=False).tolist()) for h in (40, 1, 25, 80, 10)]
hits[2] = sorted(set(hits[2]) | set(sets[1]))  # planted enrichment
bg = sorted({g for s in sets for g in s if measured[g]})
bgs = set(bg)
tests = []
for fi, h in enumerate(hits):
    hb = [g for g in h if g in bgs]
    if len(hb) < 2:
        continue
    for si, s in enumerate(sets):
        sb = [g for g in s if g in bgs]
        a = len(set(hb) & set(sb))
        table = [[a, len(hb) - a], [len(sb) - a, len(bg) - len(hb) - len(sb) + a]]
        tests.append({"feature": fi, "set": si, "overlap": a, "p": float(fisher_exact(table, alternative="greater").pvalue)})
q = multipletests([t["p"] for t in tests], method="fdr_bh")[1]
for t, qv in zip(tests, q):
    t["q"] = float(qv)
out["enrichment"] = {"n_genes": n_genes, "measured": [bool(m) for m in measured], "sets": sets, "hits": hits,
                     "background": len(bg), "tests": tests}

with open("tests/fixtures/analysis/reference.json", "w") as fh:
    json.dump(out, fh, allow_nan=False)
print("wrote tests/fixtures/analysis/reference.json", {k: len(str(v)) for k, v in out.items()})
