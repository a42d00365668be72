"""Time the reference implementations on the inputs of benches/auroc.rs.

Run from the repository root:  python scripts/analysis/bench_sklearn.py
- AUROC: the sklearn loop `roc_auc_score(y == t, x[:, j])` over 2048 features x 14 types (1000 cells),
  and a vectorised scipy rankdata version for a fairer lower bound.
- Pearson: numpy correlation of 2048 features with 2000 genes (1000 cells), float64.
Same distributions as the Rust bench (values differ: different random generators).
"""
import time

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

rng = np.random.default_rng(0)
n, f, t = 1000, 2048, 14
x = np.round(np.maximum(rng.normal(size=(n, f)) - 1.0, 0.0) * 1000) / 1000
x = x.astype(np.float32)
y = rng.integers(0, t, n)

t0 = time.perf_counter()
auc = np.empty((f, t))
for j in range(f):
    for k in range(t):
        auc[j, k] = roc_auc_score(y == k, x[:, j])
t_loop = time.perf_counter() - t0

t0 = time.perf_counter()
r = rankdata(x, axis=0)
auc2 = np.empty((f, t))
for k in range(t):
    m = y == k
    npos = m.sum()
    auc2[:, k] = (r[m].sum(0) - npos * (npos + 1) / 2) / (npos * (n - npos))
t_vec = time.perf_counter() - t0
assert np.allclose(auc, auc2, rtol=1e-12, atol=1e-12)

g = (rng.random((n, 2000)) < 0.2) * rng.integers(0, 20, (n, 2000))
t0 = time.perf_counter()
xf = x.astype(np.float64)
xc = (xf - xf.mean(0)) / np.maximum(np.linalg.norm(xf - xf.mean(0), axis=0), 1e-300)
gc = (g - g.mean(0)) / np.maximum(np.linalg.norm(g - g.mean(0), axis=0), 1e-300)
corr = xc.T @ gc
t_corr = time.perf_counter() - t0

print(f"sklearn roc_auc_score loop (2048 x 14 x 1000): {t_loop:.2f} s")
print(f"numpy/scipy vectorised ranks (same):           {t_vec * 1000:.1f} ms")
print(f"numpy Pearson 2048 features x 2000 genes:      {t_corr * 1000:.1f} ms")
