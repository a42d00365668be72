"""Reference values for held-out concept scoring (src/analysis/heldout.rs), from scikit-learn, scipy
and statsmodels, written to tests/fixtures/analysis/heldout_reference.json.

Run from the repository root: python scripts/analysis/heldout_reference.py

A fixed 90-cell x 7-feature matrix with ties, exact zeros and one constant feature, three cell types,
and a fixed validation/test split. For each non-constant feature, on validation: the one-vs-rest
AUROC of every type (`roc_auc_score`), the best type (two-sided: the orientation with the larger
AUROC); the lowest threshold among the distinct oriented scores that maximises `f1_score` of calling
`score >= t`. On test: `roc_auc_score`, `precision_score` / `recall_score` / `f1_score`
(zero_division=0) at that threshold, `scipy.stats.mannwhitneyu(pos, neg, alternative="greater",
method="asymptotic").pvalue`, and `statsmodels multipletests(p, method="fdr_bh")` q-values.
"""
import json

import numpy as np
from scipy.stats import mannwhitneyu
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from statsmodels.stats.multitest import multipletests

rng = np.random.default_rng(3)
n, d = 90, 7
labels = np.array(["a"] * 30 + ["b"] * 35 + ["c"] * 25)
x = np.zeros((n, d))
x[:, 0] = np.round(rng.exponential(1, n) + (labels == "a") * 1.5, 1)   # type a, ties
x[:, 1] = np.maximum(0, np.round(rng.normal(0, 1, n) + (labels == "b") * 1.0, 2))  # b, zeros
x[:, 2] = -np.round(rng.normal(0, 1, n) + (labels == "c") * 2.0, 2)  # lower in c
x[:, 3] = np.round(rng.normal(0, 1, n), 2)                           # noise
x[:, 4] = 3.0                                                        # constant
x[:, 5] = (labels == "c") * np.round(rng.uniform(0, 1, n), 1)        # sparse c marker
x[:, 6] = np.round(rng.normal(0, 1, n) + (labels != "a") * 0.7, 1)   # lower in a
is_test = np.zeros(n, bool)
is_test[rng.permutation(n)[:45]] = True
types = ["a", "b", "c"]


def score(two_sided):
    out = []
    val, test = ~is_test, is_test
    for f in range(d):
        v = x[val, f]
        if np.all(v == v[0]):
            continue
        best = None
        for t in types:
            a = roc_auc_score(labels[val] == t, v)
            flip = two_sided and 1 - a > a
            a = 1 - a if flip else a
            if best is None or a > best[1]:
                best = (t, a, flip)
        t, va, flip = best
        sign = -1.0 if flip else 1.0
        vs, ypos = sign * v, labels[val] == t
        best_t, best_f1 = None, -1.0
        for thr in sorted(set(vs), reverse=True):
            f1 = f1_score(ypos, vs >= thr, zero_division=0)
            if f1 >= best_f1:
                best_t, best_f1 = thr, f1
        ts, tpos = sign * x[test, f], labels[test] == t
        pred = ts >= best_t
        out.append({
            "feature": f, "cell_type": t, "flipped": bool(flip), "val_auroc": va,
            "threshold": float(best_t), "val_f1": best_f1,
            "test_auroc": roc_auc_score(tpos, ts),
            "test_precision": precision_score(tpos, pred, zero_division=0),
            "test_recall": recall_score(tpos, pred, zero_division=0),
            "test_f1": f1_score(tpos, pred, zero_division=0),
            "p_value": mannwhitneyu(ts[tpos], ts[~tpos], alternative="greater",
                                    method="asymptotic").pvalue,
        })
    q = multipletests([o["p_value"] for o in out], method="fdr_bh")[1]
    for o, qv in zip(out, q):
        o["q_value"] = float(qv)
    return out


fixture = {
    "source": "scripts/analysis/heldout_reference.py",
    "x": x.ravel().tolist(), "n": n, "d": d, "labels": labels.tolist(),
    "is_test": is_test.tolist(),
    "greater": score(False), "two_sided": score(True),
}
with open("tests/fixtures/analysis/heldout_reference.json", "w") as f:
    json.dump(fixture, f)
print("wrote tests/fixtures/analysis/heldout_reference.json")
for o in fixture["two_sided"]:
    print(o["feature"], o["cell_type"], o["flipped"], round(o["test_auroc"], 3), o["q_value"])
