#!/usr/bin/env python
"""Independent reference values for the calibrated Unknown calls (src/spikgpt/novelty.rs).

numpy / scipy / scikit-learn only; deterministic (numpy default_rng(SEED)).
Run from the repository root:  python scripts/spikgpt/make_calibration_reference.py
Writes tests/fixtures/spikgpt/calibration_reference.json:

  n_classes, logits [n][C], targets [n]   60 cells, 4 classes, over-confident logits (class
                                           margin, scaled by 3, 20% label noise) so T* > 1
  temperature       argmin over T > 0 of the mean NLL of softmax(logits / T) against targets:
                    scipy.optimize.minimize_scalar on log T (bounded Brent, xatol 1e-12), checked
                    against a fine grid
  nll_at_temperature, nll_at_one          mean NLL at T* and at T = 1
  energy_confidence_at_temperature [n]    T* logsumexp(logits / T*) (higher = more confident)
  neg_logsumexp_over_t [n]                -logsumexp(logits / T*) (the energy score)
  max_prob_at_temperature [n]             max softmax(logits / T*)
  ref_x [80][5], query_x [20][5], knn_k = 10
  knn_mean_distance [20]  mean Euclidean distance of each query row to its k nearest ref rows:
                          neighbours from sklearn NearestNeighbors(algorithm="brute"), distances
                          recomputed exactly in float64 with numpy (and the neighbour sets checked
                          against a full float64 distance matrix, with no tie at the k-th place)
  keep_cases [{scores, keep, threshold, kept}]  threshold = the largest t such that the share of
                          scores >= t is at least keep, i.e. the m-th largest score with m the
                          smallest count with m / n >= keep (= ceil(keep n), taken so that 0.7 * 10
                          = 7.000000000000001 gives 7); kept = #scores >= threshold (> m with ties)

Logits, ref_x and query_x are float32-representable (the Rust functions take f32 inputs); every
other value is computed in float64 from exactly the numbers written. JSON floats are written with
Python's repr, which round-trips float64 exactly.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp, log_softmax, softmax
from sklearn.neighbors import NearestNeighbors

SEED = 20240612
REPO = Path(__file__).resolve().parent.parent.parent
OUT = REPO / "tests" / "fixtures" / "spikgpt" / "calibration_reference.json"


def f32(a) -> np.ndarray:
    """Round to float32 and return as float64 (the exact values the Rust side reads)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def mean_nll(logits: np.ndarray, targets: np.ndarray, t: float) -> float:
    lp = log_softmax(logits / t, axis=1)
    return float(-lp[np.arange(len(targets)), targets].mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    res = minimize_scalar(
        lambda u: mean_nll(logits, targets, math.exp(u)),
        bounds=(math.log(1e-3), math.log(1e3)),
        method="bounded",
        options={"xatol": 1e-12, "maxiter": 10000},
    )
    assert res.success, res
    t = math.exp(res.x)
    best = mean_nll(logits, targets, t)
    # coarse grid over the whole bracket: the minimiser is the global one
    coarse = np.geomspace(1e-3, 1e3, 6001)
    vals = np.array([mean_nll(logits, targets, g) for g in coarse])
    g = int(vals.argmin())
    assert coarse[max(g - 1, 0)] <= t <= coarse[min(g + 1, len(coarse) - 1)], (t, coarse[g])
    # fine grid around T*: nothing lower, and the grid's argmin within one step
    fine = t * np.exp(np.linspace(-1e-3, 1e-3, 20001))
    fv = np.array([mean_nll(logits, targets, g) for g in fine])
    assert fv.min() >= best - 1e-14, (fv.min(), best)
    j = int(fv.argmin())
    assert abs(fine[j] - t) <= 2 * (fine[1] - fine[0]) * 1.01, (fine[j], t)
    # first-order condition: d NLL / d log T ~ 0 (central difference)
    h = 1e-5
    d = (mean_nll(logits, targets, t * math.exp(h)) - mean_nll(logits, targets, t * math.exp(-h))) / (2 * h)
    assert abs(d) < 1e-8, d
    return t


def keep_case(scores, keep: float) -> dict:
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    m = next(c for c in range(1, n + 1) if c / n >= keep)  # the definition, by counting
    assert m == min(max(math.ceil(keep * n - 1e-9), 1), n), (keep, n, m)
    t = float(np.sort(s)[::-1][m - 1])
    kept = int((s >= t).sum())
    # t is the largest value whose kept share reaches keep
    larger = s[s > t]
    if len(larger):
        assert (s >= larger.min()).sum() / n < keep
    assert kept / n >= keep
    return {"scores": [float(v) for v in s], "keep": keep, "threshold": t, "kept": kept}


def main() -> None:
    rng = np.random.default_rng(SEED)
    n, c = 60, 4
    true = rng.integers(0, c, size=n)
    raw = rng.normal(0.0, 1.0, size=(n, c))
    raw[np.arange(n), true] += 1.5
    logits = f32(np.round(3.0 * raw, 4))
    targets = true.copy()
    noisy = rng.choice(n, size=n // 5, replace=False)  # 20% label noise
    targets[noisy] = (true[noisy] + rng.integers(1, c, size=len(noisy))) % c

    t_star = fit_temperature(logits, targets)
    nll_t = mean_nll(logits, targets, t_star)
    nll_1 = mean_nll(logits, targets, 1.0)
    assert t_star > 1.5 and nll_t < nll_1, (t_star, nll_t, nll_1)
    lse = logsumexp(logits / t_star, axis=1)
    energy = t_star * lse
    neg_lse = -lse
    max_prob = softmax(logits / t_star, axis=1).max(axis=1)

    # k nearest reference rows
    k = 10
    ref_x = f32(np.round(rng.normal(0.0, 1.0, size=(80, 5)), 4))
    query_x = f32(np.round(np.concatenate([rng.normal(0.0, 1.0, size=(14, 5)), rng.normal(2.5, 1.0, size=(6, 5))]), 4))
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(ref_x)
    _, idx = nn.kneighbors(query_x)
    full = np.sqrt(((query_x[:, None, :] - ref_x[None, :, :]) ** 2).sum(axis=2))
    order = np.argsort(full, axis=1, kind="stable")
    for i in range(len(query_x)):
        assert set(idx[i]) == set(order[i, :k]), i
        srt = np.sort(full[i])
        assert srt[k] - srt[k - 1] > 1e-6, (i, "tie at the k-th neighbour")
    knn = np.array([np.sqrt(((query_x[i] - ref_x[idx[i]]) ** 2).sum(axis=1)).mean() for i in range(len(query_x))])

    # rejection thresholds
    s20 = np.round(rng.normal(0.0, 1.0, size=20), 6)
    s10 = np.round(rng.uniform(0.0, 1.0, size=10), 6)
    cases = [
        keep_case(s20, 0.95),  # m = 19
        keep_case(s20, 0.75),  # m = 15, exact in binary
        keep_case(s20, 0.5),
        keep_case(s20, 1.0),  # the smallest score, keeps all
        keep_case(s20, 0.01),  # m = 1: the largest score
        keep_case(s10, 0.7),  # 0.7 * 10 = 7.000000000000001 in float64: m = 7, not 8
        keep_case([3.0, 2.0, 2.0, 2.0, 1.0], 0.4),  # ties: threshold 2, keeps 4 of 5
        keep_case([0.9, 0.8, 0.8, 0.8, 0.8, 0.7, 0.6, 0.6, 0.5, 0.1], 0.95),  # tie at the bottom side
        keep_case([0.9, 0.8, 0.8, 0.8, 0.8, 0.7, 0.6, 0.6, 0.5, 0.1], 0.3),  # threshold 0.8, keeps 5
        keep_case([0.5] * 6, 0.5),  # all equal: keeps all
    ]
    assert any(cs["kept"] > math.ceil(cs["keep"] * len(cs["scores"]) - 1e-9) for cs in cases)

    out = {
        "n_classes": c,
        "logits": [[float(v) for v in row] for row in logits],
        "targets": [int(v) for v in targets],
        "temperature": t_star,
        "nll_at_temperature": nll_t,
        "nll_at_one": nll_1,
        "energy_confidence_at_temperature": [float(v) for v in energy],
        "neg_logsumexp_over_t": [float(v) for v in neg_lse],
        "max_prob_at_temperature": [float(v) for v in max_prob],
        "ref_x": [[float(v) for v in row] for row in ref_x],
        "query_x": [[float(v) for v in row] for row in query_x],
        "knn_k": k,
        "knn_mean_distance": [float(v) for v in knn],
        "keep_cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    os.replace(tmp, OUT)
    print(json.dumps({"temperature": t_star, "nll_at_temperature": nll_t, "nll_at_one": nll_1,
                      "knn_mean_distance[:3]": [float(v) for v in knn[:3]],
                      "keep_cases": [(cs["keep"], len(cs["scores"]), cs["threshold"], cs["kept"]) for cs in cases]},
                     indent=1))


if __name__ == "__main__":
    main()
