"""Reference values for the SpikGPT tests, from scikit-learn.

1. Multinomial logistic regression (L2, C = 1, lbfgs run to tight convergence) on a small synthetic
   3-class problem: inputs, labels, and the fitted class probabilities.
2. precision / recall / F1 (labels = the model's classes, zero_division = 0) and accuracy on a small
   prediction set containing "Unknown" calls, plus roc_auc_score of held-out detection.

Writes tests/fixtures/spikgpt/sklearn_reference.json.
Run from the repository root:  python scripts/spikgpt/make_reference.py
"""
import json

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

rng = np.random.default_rng(7)
n, k = 90, 4
centers = rng.normal(0, 1.5, size=(3, k))
y = np.repeat(np.arange(3), n // 3)
X = (centers[y] + rng.normal(0, 1.0, size=(n, k))).astype(np.float32)
lr = LogisticRegression(C=1.0, tol=1e-12, max_iter=100000).fit(X.astype(np.float64), y)
proba = lr.predict_proba(X.astype(np.float64))
Xq = (rng.normal(0, 2.0, size=(10, k))).astype(np.float32)
proba_q = lr.predict_proba(Xq.astype(np.float64))

classes = ["a", "b", "c"]
truth = ["a", "a", "a", "b", "b", "b", "b", "c", "c", "a", "b", "c", "c", "c"]
pred = ["a", "b", "Unknown", "b", "b", "a", "Unknown", "c", "a", "a", "b", "c", "Unknown", "b"]
p, r, f, s = precision_recall_fscore_support(truth, pred, labels=classes, zero_division=0)
mp, mr, mf, _ = precision_recall_fscore_support(truth, pred, labels=classes, average="macro", zero_division=0)

scores = rng.random(40).round(2)  # with ties
positive = (rng.random(40) < 0.3).astype(int)
auc = roc_auc_score(positive, scores)

out = {
    "logreg": {
        "n": n, "k": k, "x": X.ravel().tolist(), "y": y.tolist(),
        "proba": proba.ravel().tolist(),
        "query_x": Xq.ravel().tolist(), "query_proba": proba_q.ravel().tolist(),
        "coef": lr.coef_.ravel().tolist(), "intercept": lr.intercept_.tolist(),
    },
    "metrics": {
        "classes": classes, "truth": truth, "pred": pred,
        "accuracy": accuracy_score(truth, pred),
        "precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(), "support": s.tolist(),
        "macro_precision": mp, "macro_recall": mr, "macro_f1": mf,
    },
    "auroc": {"scores": scores.tolist(), "positive": positive.tolist(), "auc": auc},
}
with open("tests/fixtures/spikgpt/sklearn_reference.json", "w") as fh:
    json.dump(out, fh)
print("wrote tests/fixtures/spikgpt/sklearn_reference.json; auc", auc, "macro f1", mf)
