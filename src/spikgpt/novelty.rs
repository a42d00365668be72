//! Calibrated Unknown-cell calls: novelty scores, temperature scaling and rejection rules fitted on
//! validation cells, in place of a fixed cut-off on the softmax maximum.
//!
//! - [`fit_temperature`]: temperature scaling (Guo et al. 2017) of the classifier's logits.
//! - Confidences ([`Score`], [`confidence`]): maximum softmax probability at temperature `T`,
//!   negative energy `T * logsumexp(logits / T)` (Liu et al. 2020), minus the mean distance to the `k`
//!   nearest training cells in embedding space ([`knn_mean_distance`]), and a rank combination of
//!   the first and the third ([`Combiner`]). Higher always means "more likely a known type".
//! - Rejection rules: one global threshold that keeps a chosen share of the known validation cells
//!   ([`keep_threshold`]) or one threshold per predicted class ([`per_class_thresholds`]).
//! - Evaluation: the accuracy–rejection curve ([`accuracy_rejection_curve`]), the operating point
//!   of a rule ([`operating_point`]) and the leave-one-type-out choice of score ([`select_score`]).
//!
//! Everything is computed in `f64`, and every result is independent of the number of threads: rows
//! are processed in parallel, but floating-point sums over rows are taken over fixed chunks in a
//! fixed order.

use std::cmp::Ordering;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Smallest temperature [`fit_temperature`] returns (the lower end of its search bracket).
pub const T_MIN: f64 = 1e-3;
/// Largest temperature [`fit_temperature`] returns (the upper end of its search bracket).
pub const T_MAX: f64 = 1e3;

/// Rows per chunk of the parallel sums: fixed, so that the summation order (and hence every bit of
/// the result) does not depend on the number of threads.
const SUM_CHUNK_ROWS: usize = 1024;

/// Statistics of one row of logits `l` with target `y` at temperature `t`, with
/// `p = softmax(l / t)`: `(nll, E_p[l] - l_y, Var_p[l])`, where `nll = logsumexp(l / t) - l_y / t`.
fn row_moments(row: &[f32], y: usize, t: f64) -> (f64, f64, f64) {
    let m = row_max(row);
    let mut s = 0.0;
    let mut e = 0.0;
    for &v in row {
        let l = v as f64;
        let w = ((l - m) / t).exp();
        s += w;
        e += w * l;
    }
    let e = e / s;
    let mut var = 0.0;
    for &v in row {
        let l = v as f64;
        let w = ((l - m) / t).exp();
        var += w * (l - e) * (l - e);
    }
    let ly = row[y] as f64;
    ((m - ly) / t + s.ln(), e - ly, var / s)
}

/// Largest value of a row, as `f64`.
fn row_max(row: &[f32]) -> f64 {
    row.iter().fold(
        f64::NEG_INFINITY,
        |a, &v| if (v as f64) > a { v as f64 } else { a },
    )
}

/// `(max(l), sum_j exp((l_j - max(l)) / t))` of one row: the softmax maximum is `1 / s` and
/// `t * logsumexp(l / t) = max(l) + t * ln(s)`.
fn row_max_and_sum(row: &[f32], t: f64) -> (f64, f64) {
    let m = row_max(row);
    let s = row.iter().map(|&v| ((v as f64 - m) / t).exp()).sum();
    (m, s)
}

/// Panics unless `t` is a positive finite temperature and `logits` holds whole rows of `c`.
fn check_rows(logits: &[f32], c: usize, t: f64) {
    assert!(c > 0, "novelty: number of classes must be positive");
    assert!(
        logits.len().is_multiple_of(c),
        "novelty: {} logits are not whole rows of {c}",
        logits.len()
    );
    assert!(
        t > 0.0 && t.is_finite(),
        "novelty: temperature must be positive and finite, got {t}"
    );
}

/// Sums of `f(row index)` over `n` rows, computed in parallel over fixed chunks of rows and added in
/// chunk order (deterministic whatever the thread count). Returns the three component sums.
fn sum_rows3(n: usize, f: impl Fn(usize) -> (f64, f64, f64) + Sync) -> (f64, f64, f64) {
    let n_chunks = n.div_ceil(SUM_CHUNK_ROWS);
    let partial: Vec<(f64, f64, f64)> = (0..n_chunks)
        .into_par_iter()
        .map(|ch| {
            let lo = ch * SUM_CHUNK_ROWS;
            let hi = (lo + SUM_CHUNK_ROWS).min(n);
            (lo..hi).fold((0.0, 0.0, 0.0), |acc, i| {
                let v = f(i);
                (acc.0 + v.0, acc.1 + v.1, acc.2 + v.2)
            })
        })
        .collect();
    partial
        .iter()
        .fold((0.0, 0.0, 0.0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2))
}

/// Mean negative log-likelihood of `targets` under `softmax(logits / t)`; `logits` is row-major
/// `n x c` with `n = targets.len()`.
///
/// # Panics
/// When `c == 0`, `t` is not positive and finite, the shapes disagree or a target is `>= c`
/// ([`fit_temperature`] validates its inputs and returns errors instead).
pub fn mean_nll(logits: &[f32], targets: &[usize], c: usize, t: f64) -> f64 {
    check_rows(logits, c, t);
    assert_eq!(
        logits.len(),
        targets.len() * c,
        "novelty: logits and targets disagree"
    );
    let (nll, _, _) = sum_rows3(targets.len(), |i| {
        let (v, _, _) = row_moments(&logits[i * c..(i + 1) * c], targets[i], t);
        (v, 0.0, 0.0)
    });
    nll / targets.len() as f64
}

/// Mean NLL and its first and second derivatives with respect to `u = ln t`.
///
/// With `b = 1 / t`, the per-row NLL `F(b) = logsumexp(b l) - b l_y` has `F' = E_p[l] - l_y` and
/// `F'' = Var_p[l]`; since `db/du = -b`: `dF/du = -b F'` and `d2F/du2 = b^2 F'' + b F'`.
fn nll_derivatives(logits: &[f32], targets: &[usize], c: usize, t: f64) -> (f64, f64, f64) {
    let (nll, d1, var) = sum_rows3(targets.len(), |i| {
        row_moments(&logits[i * c..(i + 1) * c], targets[i], t)
    });
    let n = targets.len() as f64;
    let (nll, d1, var) = (nll / n, d1 / n, var / n);
    let b = 1.0 / t;
    (nll, -b * d1, b * b * var + b * d1)
}

/// Temperature scaling (Guo et al. 2017): the temperature `T` minimising the mean negative
/// log-likelihood of `softmax(logits / T)` against `targets` (logits row-major `n x c`).
///
/// The NLL is convex in `1 / T` (its second derivative there is the softmax variance of the
/// logits), so in `u = ln T` it is unimodal: `dNLL/du` changes sign at most once, from negative to
/// positive. The search is Newton's method on `u` with exact first and second derivatives,
/// safeguarded by bisection on the sign of `dNLL/du` within `[ln T_MIN, ln T_MAX]`; it stops when
/// `|dNLL/du| < 1e-13`, when the bracket is narrower than `1e-13` in `u`, or when a Newton step no
/// longer moves `u` (or after 200 steps).
///
/// Edge cases: when the NLL still decreases at `T_MIN` (for instance every training cell is
/// classified correctly, so the NLL tends to 0 as `T -> 0`) the result is [`T_MIN`]; when it still
/// decreases at `T_MAX` the result is [`T_MAX`]; when every row of logits is constant the NLL does
/// not depend on `T` and the result is 1.
///
/// # Errors
/// [`Error::Invalid`] when `c == 0`, `targets` is empty, the shapes disagree, a target is `>= c`
/// or the logits contain non-finite values.
pub fn fit_temperature(logits: &[f32], targets: &[usize], c: usize) -> Result<f64> {
    if c == 0 {
        return Err(Error::invalid("temperature scaling: no classes"));
    }
    if targets.is_empty() {
        return Err(Error::invalid(
            "temperature scaling: no validation cells to fit the temperature on",
        ));
    }
    if logits.len() != targets.len() * c {
        return Err(Error::invalid(format!(
            "temperature scaling: {} logits for {} cells x {c} classes",
            logits.len(),
            targets.len()
        )));
    }
    if let Some(&y) = targets.iter().find(|&&y| y >= c) {
        return Err(Error::invalid(format!(
            "temperature scaling: target class {y} out of range for {c} classes"
        )));
    }
    if logits.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "temperature scaling: the logits contain non-finite values",
        ));
    }
    if logits.chunks(c).all(|r| r.iter().all(|&v| v == r[0])) {
        return Ok(1.0);
    }
    let grad = |u: f64| nll_derivatives(logits, targets, c, u.exp());
    let (mut lo, mut hi) = (T_MIN.ln(), T_MAX.ln());
    let (_, g_lo, _) = grad(lo);
    if g_lo >= 0.0 {
        return Ok(T_MIN);
    }
    let (_, g_hi, _) = grad(hi);
    if g_hi <= 0.0 {
        return Ok(T_MAX);
    }
    // Invariant: dNLL/du < 0 at lo and > 0 at hi.
    let mut u = 0.0;
    for _ in 0..200 {
        let (_, g, h) = grad(u);
        if g.abs() < 1e-13 {
            break;
        }
        if g < 0.0 {
            lo = u;
        } else {
            hi = u;
        }
        if hi - lo < 1e-13 {
            u = 0.5 * (lo + hi);
            break;
        }
        let newton = u - g / h;
        let next = if h > 0.0 && newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if next == u {
            break;
        }
        u = next;
    }
    Ok(u.exp())
}

/// Row-wise `softmax(logits / t)` of a row-major `n x c` matrix, computed stably (the row maximum
/// is subtracted before exponentiating). Returns row-major `n x c` probabilities.
///
/// # Panics
/// When `c == 0`, `logits.len()` is not a multiple of `c` or `t` is not positive and finite.
pub fn softmax_t(logits: &[f32], c: usize, t: f64) -> Vec<f64> {
    check_rows(logits, c, t);
    let mut out = vec![0.0; logits.len()];
    out.par_chunks_mut(c)
        .zip(logits.par_chunks(c))
        .for_each(|(o, row)| {
            let m = row_max(row);
            for (oj, &v) in o.iter_mut().zip(row) {
                *oj = ((v as f64 - m) / t).exp();
            }
            let s: f64 = o.iter().sum();
            o.iter_mut().for_each(|p| *p /= s);
        });
    out
}

/// Maximum of `softmax(logits / t)` of every row of a row-major `n x c` matrix (the
/// [`Score::MaxProb`] confidence), without forming the full softmax.
///
/// # Panics
/// As [`softmax_t`].
pub fn max_prob(logits: &[f32], c: usize, t: f64) -> Vec<f64> {
    check_rows(logits, c, t);
    logits
        .par_chunks(c)
        .map(|row| 1.0 / row_max_and_sum(row, t).1)
        .collect()
}

/// Negative energy `t * logsumexp(logits / t)` of every row of a row-major `n x c` matrix (Liu et
/// al. 2020, "Energy-based out-of-distribution detection"): higher means more confident. Computed
/// stably as `max(l) + t * ln(sum_j exp((l_j - max(l)) / t))`.
///
/// # Panics
/// As [`softmax_t`].
pub fn energy_confidence(logits: &[f32], c: usize, t: f64) -> Vec<f64> {
    check_rows(logits, c, t);
    logits
        .par_chunks(c)
        .map(|row| {
            let (m, s) = row_max_and_sum(row, t);
            m + t * s.ln()
        })
        .collect()
}

/// Checks shared by the neighbour searches; returns `(n_reference, n_query)`.
fn check_knn(
    reference: &[f32],
    query: &[f32],
    dim: usize,
    k: usize,
    exclude_self: bool,
) -> Result<(usize, usize)> {
    if dim == 0 {
        return Err(Error::invalid(
            "nearest neighbours: embedding dimension is 0",
        ));
    }
    if !reference.len().is_multiple_of(dim) || !query.len().is_multiple_of(dim) {
        return Err(Error::invalid(format!(
            "nearest neighbours: {} reference / {} query values are not whole rows of {dim}",
            reference.len(),
            query.len()
        )));
    }
    let (n_ref, n_query) = (reference.len() / dim, query.len() / dim);
    if exclude_self && n_ref != n_query {
        return Err(Error::invalid(format!(
            "nearest neighbours: excluding each cell itself needs the query to be the reference, \
             got {n_query} query and {n_ref} reference cells"
        )));
    }
    let available = if exclude_self {
        n_ref.saturating_sub(1)
    } else {
        n_ref
    };
    if k == 0 || k > available {
        return Err(Error::invalid(format!(
            "nearest neighbours: k = {k} must be between 1 and the {available} reference cells"
        )));
    }
    if reference.iter().chain(query).any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "nearest neighbours: the embeddings contain non-finite values",
        ));
    }
    Ok((n_ref, n_query))
}

/// The `k` nearest reference rows of `q` as `(squared distance, row)`, ascending by distance and,
/// among equal distances, by row index; row `skip` (if any) is left out. Squared distances are
/// accumulated in `f64` over the dimensions in order.
fn nearest(
    reference: &[f32],
    q: &[f32],
    dim: usize,
    k: usize,
    skip: Option<usize>,
) -> Vec<(f64, usize)> {
    let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
    for (j, r) in reference.chunks_exact(dim).enumerate() {
        if Some(j) == skip {
            continue;
        }
        let d2: f64 = r
            .iter()
            .zip(q)
            .map(|(&a, &b)| {
                let d = a as f64 - b as f64;
                d * d
            })
            .sum();
        if best.len() == k {
            // Strictly closer only: an equal distance loses to the lower row index already kept.
            if d2 >= best[k - 1].0 {
                continue;
            }
            best.pop();
        }
        let pos = best.partition_point(|e| e.0 <= d2);
        best.insert(pos, (d2, j));
    }
    best
}

/// Mean of the Euclidean distances of a neighbour list (summed in ascending order).
fn mean_distance(best: &[(f64, usize)]) -> f64 {
    best.iter().map(|e| e.0.sqrt()).sum::<f64>() / best.len() as f64
}

/// Mean Euclidean distance of each query row to its `k` nearest reference rows (row-major, `dim`
/// columns each). Brute force with exact `f64` accumulation, parallel over query rows (each row's
/// result is computed by one thread, so the output does not depend on the thread count); ties in
/// distance do not matter since only distances are averaged.
///
/// With `exclude_self`, the query must be the reference itself (same rows, same order) and query row
/// `i` skips reference row `i`, giving leave-one-out distances for the training cells.
///
/// # Errors
/// [`Error::Invalid`] when `dim == 0`, the slices are not whole rows, `k` is 0 or exceeds the
/// reference rows available (one fewer with `exclude_self`), `exclude_self` is set with different
/// row counts, or the embeddings contain non-finite values.
pub fn knn_mean_distance(
    reference: &[f32],
    query: &[f32],
    dim: usize,
    k: usize,
    exclude_self: bool,
) -> Result<Vec<f64>> {
    check_knn(reference, query, dim, k, exclude_self)?;
    Ok(query
        .par_chunks(dim)
        .enumerate()
        .map(|(i, q)| mean_distance(&nearest(reference, q, dim, k, exclude_self.then_some(i))))
        .collect())
}

/// Result of [`knn_classify`].
#[derive(Debug, Clone, PartialEq)]
pub struct KnnResult {
    /// Row-major `n x c` class-vote fractions among the `k` nearest reference cells.
    pub proba: Vec<f64>,
    /// Mean Euclidean distance to the same `k` neighbours (as [`knn_mean_distance`]).
    pub mean_distance: Vec<f64>,
}

/// k-nearest-neighbour classifier baseline on the embeddings: for each query row, the fraction of
/// its `k` nearest reference rows (training cells, labelled `ref_targets`) in each of the `c`
/// classes, plus the mean distance to them, so that one neighbour search serves both. Ties in
/// distance are broken by the lower reference row index.
///
/// # Errors
/// As [`knn_mean_distance`], and when `ref_targets` does not have one label per reference row or a
/// label is `>= c` (or `c == 0`).
pub fn knn_classify(
    reference: &[f32],
    ref_targets: &[usize],
    c: usize,
    query: &[f32],
    dim: usize,
    k: usize,
) -> Result<KnnResult> {
    let (n_ref, n_query) = check_knn(reference, query, dim, k, false)?;
    if c == 0 {
        return Err(Error::invalid("nearest neighbours: no classes"));
    }
    if ref_targets.len() != n_ref {
        return Err(Error::invalid(format!(
            "nearest neighbours: {} labels for {n_ref} reference cells",
            ref_targets.len()
        )));
    }
    if let Some(&y) = ref_targets.iter().find(|&&y| y >= c) {
        return Err(Error::invalid(format!(
            "nearest neighbours: reference label {y} out of range for {c} classes"
        )));
    }
    let mut proba = vec![0.0; n_query * c];
    let mut mean_dist = vec![0.0; n_query];
    proba
        .par_chunks_mut(c)
        .zip(mean_dist.par_iter_mut())
        .zip(query.par_chunks(dim))
        .for_each(|((p, md), q)| {
            let best = nearest(reference, q, dim, k, None);
            for &(_, j) in &best {
                p[ref_targets[j]] += 1.0;
            }
            p.iter_mut().for_each(|v| *v /= k as f64);
            *md = mean_distance(&best);
        });
    Ok(KnnResult {
        proba,
        mean_distance: mean_dist,
    })
}

/// The novelty scores compared side by side. Each maps to a *confidence*: higher means more likely
/// a known cell type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// Maximum softmax probability at the fitted temperature.
    MaxProb,
    /// Negative energy `T * logsumexp(logits / T)` at the fitted temperature.
    Energy,
    /// Minus the mean distance to the `k` nearest training cells in embedding space.
    KnnDistance,
    /// Mean of the validation ranks of [`Score::MaxProb`] and [`Score::KnnDistance`] ([`Combiner`]).
    Combined,
}

impl Score {
    /// Every score, in the order used to break ties.
    pub const ALL: [Score; 4] = [
        Score::MaxProb,
        Score::Energy,
        Score::KnnDistance,
        Score::Combined,
    ];

    /// The score's name (as serialised): `max_prob`, `energy`, `knn_distance` or `combined`.
    pub fn name(&self) -> &'static str {
        match self {
            Score::MaxProb => "max_prob",
            Score::Energy => "energy",
            Score::KnnDistance => "knn_distance",
            Score::Combined => "combined",
        }
    }

    /// Parse a score from its [`name`](Score::name) (`-` is accepted for `_`).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the accepted values when `s` is none of them.
    pub fn parse(s: &str) -> Result<Score> {
        let norm = s.trim().replace('-', "_");
        Score::ALL
            .into_iter()
            .find(|sc| sc.name() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = Score::ALL.iter().map(|sc| sc.name()).collect();
                Error::invalid(format!(
                    "--score: unknown novelty score `{s}` (expected one of: {})",
                    names.join(", ")
                ))
            })
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Inputs needed to compute any score for a set of `n` cells.
#[derive(Debug, Clone, Copy)]
pub struct ScoreInputs<'a> {
    /// Row-major `n x c` logits.
    pub logits: &'a [f32],
    /// Number of classes.
    pub c: usize,
    /// The fitted temperature ([`fit_temperature`]).
    pub temperature: f64,
    /// Mean distance of each cell to its `k` nearest training cells ([`knn_mean_distance`]); may be
    /// empty when neither [`Score::KnnDistance`] nor [`Score::Combined`] is asked for.
    pub knn_distance: &'a [f64],
}

/// Raw confidences of every cell under `score`: [`Score::MaxProb`] = `max softmax(logits / T)`
/// ([`max_prob`]); [`Score::Energy`] = [`energy_confidence`]; [`Score::KnnDistance`] = minus the
/// mean kNN distance; [`Score::Combined`] = [`Combiner::combine`] of the first and the third.
///
/// # Errors
/// [`Error::Invalid`] when [`Score::Combined`] is asked for without a `combiner`, or a
/// distance-based score is asked for and `knn_distance` does not hold one value per cell.
///
/// # Panics
/// As [`softmax_t`] for malformed logits or temperature.
pub fn confidence(
    score: Score,
    inputs: &ScoreInputs,
    combiner: Option<&Combiner>,
) -> Result<Vec<f64>> {
    let (c, t) = (inputs.c, inputs.temperature);
    check_rows(inputs.logits, c, t);
    let n = inputs.logits.len() / c;
    let neg_distance = || -> Result<Vec<f64>> {
        if inputs.knn_distance.len() != n {
            return Err(Error::invalid(format!(
                "novelty score {score}: {} kNN distances for {n} cells",
                inputs.knn_distance.len()
            )));
        }
        Ok(inputs.knn_distance.iter().map(|d| -d).collect())
    };
    match score {
        Score::MaxProb => Ok(max_prob(inputs.logits, c, t)),
        Score::Energy => Ok(energy_confidence(inputs.logits, c, t)),
        Score::KnnDistance => neg_distance(),
        Score::Combined => {
            let comb = combiner.ok_or_else(|| {
                Error::invalid("novelty score combined: no fitted combiner (validation ranks)")
            })?;
            let nd = neg_distance()?;
            Ok(comb.combine(&max_prob(inputs.logits, c, t), &nd))
        }
    }
}

/// Combination of the class posterior and the distance to the training cells. Each component (the
/// maximum probability at the fitted temperature, and minus the mean kNN distance) is replaced by
/// its empirical CDF over the *validation* cells (the fraction of validation values `<= x`, a
/// conformal-style rank in `[0, 1]`); the combined confidence is the smaller of the two ranks, so a
/// cell looks known only when both its posterior and its distance to the reference do. (The mean of
/// the ranks was compared too: on the bundled immune cells with PCA-50 embeddings it rejected 59 % of
/// held-out plasma cells and 15 % of MDC at 5 % known rejected, against 88 % and 79 % for the minimum.)
///
/// Stores the two sorted validation vectors, so it can be saved as JSON next to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Combiner {
    /// Maximum probabilities of the validation cells, ascending.
    pub max_prob: Vec<f64>,
    /// Minus the mean kNN distances of the validation cells, ascending.
    pub neg_distance: Vec<f64>,
}

/// Fraction of the ascending `sorted` values that are `<= x` (0 for an empty or NaN `x`).
fn ecdf(sorted: &[f64], x: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.partition_point(|&v| v <= x) as f64 / sorted.len() as f64
}

impl Combiner {
    /// Store the validation values of the two components, sorted ascending. The two slices are
    /// usually the same cells, but need not have the same length.
    ///
    /// # Errors
    /// [`Error::Invalid`] when either slice is empty or holds non-finite values.
    pub fn fit(val_max_prob: &[f64], val_neg_distance: &[f64]) -> Result<Combiner> {
        let sorted = |v: &[f64], what: &str| -> Result<Vec<f64>> {
            if v.is_empty() {
                return Err(Error::invalid(format!(
                    "combined novelty score: no validation {what} to rank against"
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::invalid(format!(
                    "combined novelty score: non-finite validation {what}"
                )));
            }
            let mut s = v.to_vec();
            s.sort_by(f64::total_cmp);
            Ok(s)
        };
        Ok(Combiner {
            max_prob: sorted(val_max_prob, "maximum probabilities")?,
            neg_distance: sorted(val_neg_distance, "kNN distances")?,
        })
    }

    /// Combined confidence of each cell: `(F_p(max_prob) + F_d(neg_distance)) / 2`, where `F_p` and
    /// `F_d` are the validation empirical CDFs (fraction of validation values `<= x`).
    ///
    /// # Panics
    /// When the two slices have different lengths.
    pub fn combine(&self, max_prob: &[f64], neg_distance: &[f64]) -> Vec<f64> {
        assert_eq!(
            max_prob.len(),
            neg_distance.len(),
            "combined novelty score: component lengths differ"
        );
        max_prob
            .par_iter()
            .zip(neg_distance.par_iter())
            .map(|(&p, &d)| ecdf(&self.max_prob, p).min(ecdf(&self.neg_distance, d)))
            .collect()
    }
}

/// Number of cells to keep, `ceil(keep * n)` clamped to `[1, n]`, computed with a `1e-9` tolerance
/// so that a decimal share is honoured exactly (`0.07 * 100` is `7.000000000000001` in binary
/// floating point, and must keep 7 cells, not 8).
fn keep_count(keep: f64, n: usize) -> usize {
    let m = (keep * n as f64 - 1e-9).ceil();
    (m.max(1.0) as usize).min(n)
}

/// Rejection threshold that keeps a target share `keep` of the (known) validation cells: the
/// `ceil(keep * n)`-th largest confidence, so that at least a share `keep` of the validation cells
/// have confidence `>= threshold` (cells are accepted when their confidence is `>= threshold`).
///
/// Ties: when other cells share the threshold value they are all kept too, so the share kept can
/// exceed `keep` (for example confidences `[3, 2, 2, 2, 1]` with `keep = 0.4` give threshold 2 and
/// keep 4 of 5). `keep = 1` gives the smallest confidence and keeps every cell. `ceil` is taken with
/// a `1e-9` tolerance so that decimal shares like `0.07` of 100 cells mean exactly 7 cells.
///
/// Returns `(threshold, share of the cells with confidence >= threshold)`.
///
/// # Errors
/// [`Error::Invalid`] when `keep` is not in `(0, 1]` (naming `--keep`), `confidences` is empty or
/// holds non-finite values.
pub fn keep_threshold(confidences: &[f64], keep: f64) -> Result<(f64, f64)> {
    if !(keep > 0.0 && keep <= 1.0) {
        return Err(Error::invalid(format!(
            "--keep must be in (0, 1] (the share of known validation cells to keep), got {keep}"
        )));
    }
    if confidences.is_empty() {
        return Err(Error::invalid(
            "rejection threshold: no validation cells to set it on",
        ));
    }
    if confidences.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "rejection threshold: non-finite confidences",
        ));
    }
    let n = confidences.len();
    let mut sorted = confidences.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let threshold = sorted[keep_count(keep, n) - 1];
    let kept = confidences.iter().filter(|&&v| v >= threshold).count();
    Ok((threshold, kept as f64 / n as f64))
}

/// Per-class thresholds: the [`keep_threshold`] rule applied separately to the validation cells of
/// each *predicted* class (`predicted[i] < c`); a class with fewer than `min_cells` validation
/// cells (or none) gets the global threshold over all cells. Returns one threshold per class.
///
/// # Errors
/// As [`keep_threshold`], and when `predicted` and `confidences` differ in length or a prediction
/// is `>= c`.
pub fn per_class_thresholds(
    confidences: &[f64],
    predicted: &[usize],
    c: usize,
    keep: f64,
    min_cells: usize,
) -> Result<Vec<f64>> {
    if predicted.len() != confidences.len() {
        return Err(Error::invalid(format!(
            "per-class thresholds: {} predictions for {} confidences",
            predicted.len(),
            confidences.len()
        )));
    }
    if let Some(&p) = predicted.iter().find(|&&p| p >= c) {
        return Err(Error::invalid(format!(
            "per-class thresholds: predicted class {p} out of range for {c} classes"
        )));
    }
    let (global, _) = keep_threshold(confidences, keep)?;
    (0..c)
        .map(|cls| {
            let conf: Vec<f64> = confidences
                .iter()
                .zip(predicted)
                .filter(|&(_, &p)| p == cls)
                .map(|(&v, _)| v)
                .collect();
            if conf.is_empty() || conf.len() < min_cells {
                Ok(global)
            } else {
                keep_threshold(&conf, keep).map(|(t, _)| t)
            }
        })
        .collect()
}

/// One point of an accuracy–rejection curve, or the operating point of a rejection rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The share of cells the point aims to reject (for [`operating_point`]: equal to `rejected`).
    pub target_rejected: f64,
    /// The share of all cells actually rejected.
    pub rejected: f64,
    /// Accuracy (prediction == truth) among the accepted known cells; 0 when none is accepted
    /// (see `known_accepted`).
    pub known_accuracy: f64,
    /// Number of known cells accepted (the denominator of `known_accuracy`).
    pub known_accepted: usize,
    /// Share of the held-out (unknown-type) cells rejected; 0 when there are none.
    pub held_out_rejected: f64,
    /// Share of the known cells rejected (false rejections); 0 when there are none.
    pub known_rejected: f64,
}

/// `a / b`, or 0 when `b == 0`.
fn frac(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Confidence as compared by the rejection rules: NaN counts as `-inf` (always rejected first).
fn conf_key(x: f64) -> f64 {
    if x.is_nan() {
        f64::NEG_INFINITY
    } else {
        x
    }
}

/// Accuracy–rejection curve (accuracy against the share left unclassified, as plotted by
/// annotation benchmarks). For each target share `r = 0, 0.01, ..., 1` the cut value is the
/// `floor(r * n) + 1`-th smallest confidence and every cell whose confidence is *strictly below* it
/// is rejected; at `r = 1` every cell is rejected. Without ties exactly `floor(r * n)` cells are
/// rejected; cells tied at the cut value are all accepted, so fewer may be. This is the rule of
/// [`keep_threshold`] with `keep = 1 - r` (the threshold is the `ceil((1 - r) n)`-th largest value).
///
/// `correct[i]` says whether cell `i`'s predicted class is its true class (only read for known
/// cells); `is_held_out[i]` marks cells of types absent from training. NaN confidences count as
/// `-inf`. Returns 101 points.
///
/// # Panics
/// When the three slices differ in length.
pub fn accuracy_rejection_curve(
    confidence: &[f64],
    correct: &[bool],
    is_held_out: &[bool],
) -> Vec<CurvePoint> {
    let n = confidence.len();
    assert!(
        correct.len() == n && is_held_out.len() == n,
        "accuracy-rejection curve: slices differ in length"
    );
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| conf_key(confidence[a]).total_cmp(&conf_key(confidence[b])));
    let sorted: Vec<f64> = order.iter().map(|&i| conf_key(confidence[i])).collect();
    // Prefix counts over the ascending order: held-out, known, known and correct.
    let mut ho = vec![0usize; n + 1];
    let mut kn = vec![0usize; n + 1];
    let mut kc = vec![0usize; n + 1];
    for (p, &i) in order.iter().enumerate() {
        ho[p + 1] = ho[p] + is_held_out[i] as usize;
        kn[p + 1] = kn[p] + !is_held_out[i] as usize;
        kc[p + 1] = kc[p] + (!is_held_out[i] && correct[i]) as usize;
    }
    (0..=100usize)
        .map(|r| {
            let k = r * n / 100;
            let j = if k >= n {
                n
            } else {
                let cut = sorted[k];
                sorted.partition_point(|v| v.total_cmp(&cut) == Ordering::Less)
            };
            let known_accepted = kn[n] - kn[j];
            CurvePoint {
                target_rejected: r as f64 / 100.0,
                rejected: frac(j, n),
                known_accuracy: frac(kc[n] - kc[j], known_accepted),
                known_accepted,
                held_out_rejected: frac(ho[j], ho[n]),
                known_rejected: frac(kn[j], kn[n]),
            }
        })
        .collect()
}

/// The operating point of a rejection rule: cell `i` is rejected when `confidence[i] <
/// threshold[i]` (NaN confidences count as `-inf`), and the quantities of [`CurvePoint`] are
/// reported at that rule (`target_rejected` is set to the share actually rejected). `threshold`
/// holds one threshold per cell (for per-class rules, the threshold of the cell's predicted class).
///
/// # Panics
/// When the four slices differ in length.
pub fn operating_point(
    confidence: &[f64],
    threshold: &[f64],
    correct: &[bool],
    is_held_out: &[bool],
) -> CurvePoint {
    let n = confidence.len();
    assert!(
        threshold.len() == n && correct.len() == n && is_held_out.len() == n,
        "operating point: slices differ in length"
    );
    let (mut rej, mut n_ho, mut rej_ho, mut n_kn, mut rej_kn, mut ok) = (0, 0, 0, 0, 0, 0);
    for i in 0..n {
        let rejected = conf_key(confidence[i]) < threshold[i];
        rej += rejected as usize;
        if is_held_out[i] {
            n_ho += 1;
            rej_ho += rejected as usize;
        } else {
            n_kn += 1;
            if rejected {
                rej_kn += 1;
            } else {
                ok += correct[i] as usize;
            }
        }
    }
    let rejected = frac(rej, n);
    CurvePoint {
        target_rejected: rejected,
        rejected,
        known_accuracy: frac(ok, n_kn - rej_kn),
        known_accepted: n_kn - rej_kn,
        held_out_rejected: frac(rej_ho, n_ho),
        known_rejected: frac(rej_kn, n_kn),
    }
}

/// One leave-one-type-out fold: a reference type left out of training, and the AUROC of each score
/// for telling the held-out type's validation cells from the known validation cells (computed by
/// the caller, e.g. with [`crate::spikgpt::metrics::auroc`] on minus the confidence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LotoFold {
    /// The cell type left out.
    pub left_out: String,
    /// AUROC per score (`None` when it could not be computed).
    pub auroc: Vec<(Score, Option<f64>)>,
}

/// Leave-one-type-out selection of the default score: the mean AUROC of each score over the folds
/// (folds where it is `None` or non-finite are skipped for that score; scores with no AUROC in any
/// fold are left out), listed in [`Score::ALL`] order, and the score with the highest mean (ties go
/// to the earlier score in [`Score::ALL`]).
///
/// # Errors
/// [`Error::Invalid`] when no fold has any AUROC.
pub fn select_score(folds: &[LotoFold]) -> Result<(Score, Vec<(Score, f64)>)> {
    let means: Vec<(Score, f64)> = Score::ALL
        .iter()
        .filter_map(|&s| {
            let vals: Vec<f64> = folds
                .iter()
                .flat_map(|f| f.auroc.iter())
                .filter(|(sc, a)| *sc == s && a.is_some_and(f64::is_finite))
                .filter_map(|(_, a)| *a)
                .collect();
            (!vals.is_empty()).then(|| (s, vals.iter().sum::<f64>() / vals.len() as f64))
        })
        .collect();
    let mut best: Option<(Score, f64)> = None;
    for &(s, m) in &means {
        if best.is_none_or(|(_, bm)| m > bm) {
            best = Some((s, m));
        }
    }
    match best {
        Some((s, _)) => Ok((s, means)),
        None => Err(Error::invalid(
            "novelty score selection: no leave-one-type-out fold produced an AUROC",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers in [0, 1) (splitmix64).
    fn uniform(seed: u64, n: usize) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Random logits (n x c) and targets drawn from softmax(logits / t_true), so the fitted
    /// temperature is near `t_true` but not equal to it.
    fn random_problem(seed: u64, n: usize, c: usize, t_true: f64) -> (Vec<f32>, Vec<usize>) {
        let u = uniform(seed, n * c + n);
        let logits: Vec<f32> = u[..n * c].iter().map(|&v| (6.0 * v - 3.0) as f32).collect();
        let p = softmax_t(&logits, c, t_true);
        let targets = (0..n)
            .map(|i| {
                let mut acc = 0.0;
                let r = u[n * c + i];
                (0..c)
                    .find(|&j| {
                        acc += p[i * c + j];
                        r < acc
                    })
                    .unwrap_or(c - 1)
            })
            .collect();
        (logits, targets)
    }

    #[test]
    fn temperature_two_class_closed_form() {
        // Rows [a, 0]: three with target 0, one with target 1. The NLL is minimised where
        // sigmoid(a / T) = 3/4, i.e. T = a / ln 3.
        for a in [1.0f32, 2.0, 0.5] {
            let logits: Vec<f32> = [a, 0.0].repeat(4);
            let t = fit_temperature(&logits, &[0, 0, 0, 1], 2).unwrap();
            let expect = a as f64 / 3f64.ln();
            assert!(close(t, expect, 1e-10 * expect), "a {a}: {t} vs {expect}");
        }
    }

    #[test]
    fn temperature_is_one_for_exactly_calibrated_logits() {
        // Each group of identical rows has targets distributed exactly as softmax(row), so the
        // gradient of the NLL vanishes at T = 1.
        let ln = |x: f64| x.ln() as f32;
        let mut logits = Vec::new();
        let mut targets = Vec::new();
        for (row, ys) in [
            (vec![ln(2.0), 0.0, 0.0], vec![0, 0, 1, 2]), // (1/2, 1/4, 1/4)
            (vec![0.0, ln(3.0), ln(1.0)], vec![1, 1, 1, 0, 2]), // (1/5, 3/5, 1/5)
            (vec![ln(1.0), ln(1.0), ln(4.0)], vec![2, 2, 2, 2, 0, 1]), // (1/6, 1/6, 4/6)
        ] {
            for y in ys {
                logits.extend_from_slice(&row);
                targets.push(y);
            }
        }
        let t = fit_temperature(&logits, &targets, 3).unwrap();
        // The f32 rounding of ln 2, ln 3, ln 4 moves the optimum by ~1e-7 at most.
        assert!(close(t, 1.0, 1e-6), "fitted {t}");
    }

    #[test]
    fn temperature_is_a_stationary_point_by_finite_differences() {
        let (logits, targets) = random_problem(7, 400, 4, 1.8);
        let t = fit_temperature(&logits, &targets, 4).unwrap();
        assert!(t > 1.2 && t < 2.6, "fitted {t}");
        let h: f64 = 1e-4;
        let slope = |t: f64| {
            (mean_nll(&logits, &targets, 4, t * h.exp())
                - mean_nll(&logits, &targets, 4, t * (-h).exp()))
                / (2.0 * h)
        };
        assert!(slope(t).abs() < 1e-7, "dNLL/dlnT at the fit: {}", slope(t));
        // Not trivially flat: the slope at T = 1 is clearly non-zero, and the fit is a minimum.
        assert!(slope(1.0).abs() > 1e-3, "slope at 1: {}", slope(1.0));
        let nll = mean_nll(&logits, &targets, 4, t);
        assert!(nll < mean_nll(&logits, &targets, 4, t * 1.01));
        assert!(nll < mean_nll(&logits, &targets, 4, t / 1.01));
        // The analytic derivative agrees with the finite difference.
        let (_, g, h2) = nll_derivatives(&logits, &targets, 4, 1.0);
        assert!(close(g, slope(1.0), 1e-7), "{g} vs {}", slope(1.0));
        assert!(h2.is_finite());
    }

    #[test]
    fn temperature_edge_cases_and_errors() {
        // Every cell right with a margin: the NLL keeps falling as T -> 0.
        let t = fit_temperature(&[2.0, 0.0, 0.0, 1.0], &[0, 1], 2).unwrap();
        assert_eq!(t, T_MIN);
        // Every cell wrong: the NLL keeps falling as T -> infinity.
        let t = fit_temperature(&[2.0, 0.0, 0.0, 1.0], &[1, 0], 2).unwrap();
        assert_eq!(t, T_MAX);
        // Constant rows: the NLL does not depend on T.
        assert_eq!(
            fit_temperature(&[1.0, 1.0, 3.0, 3.0], &[0, 1], 2).unwrap(),
            1.0
        );
        assert!(fit_temperature(&[], &[], 2).is_err());
        assert!(fit_temperature(&[1.0, 0.0], &[2], 2).is_err());
        assert!(fit_temperature(&[f32::NAN, 0.0], &[0], 2).is_err());
        assert!(fit_temperature(&[f32::INFINITY, 0.0], &[0], 2).is_err());
        assert!(fit_temperature(&[1.0, 0.0, 1.0], &[0], 2).is_err());
    }

    #[test]
    fn softmax_energy_and_max_prob_hand_values() {
        let logits = [0.0f32, 3f32.ln(), 1000.0, 0.0];
        let p = softmax_t(&logits, 2, 1.0);
        let l3 = 3f32.ln() as f64;
        assert!(close(p[0], 1.0 / (1.0 + l3.exp()), 1e-15));
        assert!(close(p[1], 0.75, 1e-7));
        assert_eq!((p[2], p[3]), (1.0, 0.0));
        let p2 = softmax_t(&logits, 2, 2.0);
        let r = (l3 / 2.0).exp(); // ~ sqrt(3)
        assert!(close(p2[1], r / (1.0 + r), 1e-15));
        let m = max_prob(&logits, 2, 2.0);
        assert!(close(m[0], p2[1], 1e-15));
        assert!(close(m[1], p2[2], 1e-15));
        let e = energy_confidence(&logits, 2, 1.0);
        assert!(close(e[0], (1.0 + l3.exp()).ln(), 1e-15)); // ~ ln 4
        assert_eq!(e[1], 1000.0); // stable: max + ln(1 + e^-1000)
        let e2 = energy_confidence(&logits, 2, 2.0);
        assert!(close(e2[0], 2.0 * (1.0 + r).ln(), 1e-14));
        // NLL at T = 1 of targets (1, 0): -ln(p[1]) - ln(p[2]).
        let nll = mean_nll(&logits, &[1, 0], 2, 1.0);
        assert!(close(nll, 0.5 * (-p[1].ln() - p[2].ln()), 1e-15));
    }

    #[test]
    fn knn_distances_one_dimensional_by_hand() {
        let reference = [0.0f32, 1.0, 3.0, 6.0];
        // Query 2: distances 2, 1, 1, 4.
        let d = knn_mean_distance(&reference, &[2.0], 1, 2, false).unwrap();
        assert_eq!(d, vec![1.0]);
        let d = knn_mean_distance(&reference, &[2.0, 7.0], 1, 3, false).unwrap();
        assert!(close(d[0], 4.0 / 3.0, 1e-15));
        assert!(close(d[1], (1.0 + 4.0 + 6.0) / 3.0, 1e-15));
        // Leave-one-out on the reference itself.
        let d = knn_mean_distance(&reference, &reference, 1, 1, true).unwrap();
        assert_eq!(d, vec![1.0, 1.0, 2.0, 3.0]);
        let d = knn_mean_distance(&reference, &reference, 1, 2, true).unwrap();
        assert_eq!(d, vec![2.0, 1.5, 2.5, 4.0]);
        // Without exclusion each cell is its own nearest neighbour.
        let d = knn_mean_distance(&reference, &reference, 1, 1, false).unwrap();
        assert_eq!(d, vec![0.0; 4]);
        // Euclidean in 2-D (3-4-5 triangle).
        let d = knn_mean_distance(&[0.0, 0.0, 3.0, 4.0], &[0.0, 0.0], 2, 2, false).unwrap();
        assert_eq!(d, vec![2.5]);
        // Errors.
        assert!(knn_mean_distance(&reference, &[2.0], 1, 0, false).is_err());
        assert!(knn_mean_distance(&reference, &[2.0], 1, 5, false).is_err());
        assert!(knn_mean_distance(&reference, &reference, 1, 4, true).is_err());
        assert!(knn_mean_distance(&reference, &[2.0], 1, 1, true).is_err());
        assert!(knn_mean_distance(&reference, &[2.0, 1.0, 0.0], 2, 1, false).is_err());
        assert!(knn_mean_distance(&reference, &[f32::NAN], 1, 1, false).is_err());
    }

    #[test]
    fn knn_classify_votes_and_tie_breaking() {
        // Query 0 is at distance 1 from both -1 (row 0) and 1 (row 1): the lower row wins.
        let r = knn_classify(&[-1.0, 1.0, 2.0], &[0, 1, 1], 2, &[0.0], 1, 1).unwrap();
        assert_eq!(r.proba, vec![1.0, 0.0]);
        assert_eq!(r.mean_distance, vec![1.0]);
        let r = knn_classify(&[1.0, -1.0, 2.0], &[1, 0, 1], 2, &[0.0], 1, 1).unwrap();
        assert_eq!(r.proba, vec![0.0, 1.0]);
        let r = knn_classify(&[-1.0, 1.0, 2.0], &[0, 1, 1], 3, &[0.0, 3.0], 1, 2).unwrap();
        assert_eq!(r.proba, vec![0.5, 0.5, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(r.mean_distance, vec![1.0, 1.5]);
        // Same distances as knn_mean_distance.
        let d = knn_mean_distance(&[-1.0, 1.0, 2.0], &[0.0, 3.0], 1, 2, false).unwrap();
        assert_eq!(d, r.mean_distance);
        assert!(knn_classify(&[-1.0, 1.0], &[0], 2, &[0.0], 1, 1).is_err());
        assert!(knn_classify(&[-1.0, 1.0], &[0, 2], 2, &[0.0], 1, 1).is_err());
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let (logits, targets) = random_problem(11, 5000, 5, 0.7);
        let emb: Vec<f32> = uniform(3, 600 * 8).iter().map(|&v| v as f32).collect();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    (
                        fit_temperature(&logits, &targets, 5).unwrap(),
                        mean_nll(&logits, &targets, 5, 1.3),
                        knn_mean_distance(&emb[..400 * 8], &emb[400 * 8..], 8, 7, false).unwrap(),
                        knn_mean_distance(&emb, &emb, 8, 7, true).unwrap(),
                    )
                })
        };
        let (a, b) = (run(1), run(4));
        assert_eq!(a.0.to_bits(), b.0.to_bits());
        assert_eq!(a.1.to_bits(), b.1.to_bits());
        assert_eq!(a.2, b.2);
        assert_eq!(a.3, b.3);
    }

    #[test]
    fn knn_matches_a_sorted_brute_force() {
        let emb: Vec<f32> = uniform(5, 300 * 3)
            .iter()
            .map(|&v| (4.0 * v) as f32)
            .collect();
        let (reference, query) = emb.split_at(200 * 3);
        let d = knn_mean_distance(reference, query, 3, 5, false).unwrap();
        for (qi, q) in query.chunks(3).enumerate() {
            let mut all: Vec<f64> = reference
                .chunks(3)
                .map(|r| {
                    r.iter()
                        .zip(q)
                        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .collect();
            all.sort_by(f64::total_cmp);
            let expect = all[..5].iter().sum::<f64>() / 5.0;
            assert!(close(d[qi], expect, 1e-12), "row {qi}");
        }
    }

    #[test]
    fn keep_threshold_ties_bounds_and_errors() {
        let conf = [2.0, 3.0, 1.0, 2.0, 2.0];
        // keep 0.4 of 5 -> 2nd largest = 2, but all three 2s are kept: 4 of 5.
        assert_eq!(keep_threshold(&conf, 0.4).unwrap(), (2.0, 0.8));
        assert_eq!(keep_threshold(&conf, 0.2).unwrap(), (3.0, 0.2));
        assert_eq!(keep_threshold(&conf, 1.0).unwrap(), (1.0, 1.0));
        // ceil(0.5 * 5) = 3 -> 3rd largest = 2.
        assert_eq!(keep_threshold(&conf, 0.5).unwrap(), (2.0, 0.8));
        // A decimal share is honoured exactly: 0.07 * 100 = 7.000000000000001 in binary.
        let hundred: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(keep_threshold(&hundred, 0.07).unwrap(), (93.0, 0.07));
        assert_eq!(keep_threshold(&hundred, 0.95).unwrap(), (5.0, 0.95));
        // A tiny share still keeps one cell.
        assert_eq!(keep_threshold(&hundred, 1e-6).unwrap(), (99.0, 0.01));
        for bad in [0.0, -0.1, 1.0000001, f64::NAN, f64::INFINITY] {
            let e = keep_threshold(&conf, bad).unwrap_err().to_string();
            assert!(e.contains("--keep"), "{e}");
        }
        assert!(keep_threshold(&[], 0.5).is_err());
        assert!(keep_threshold(&[1.0, f64::NAN], 0.5).is_err());
        assert!(keep_threshold(&[1.0, f64::NEG_INFINITY], 0.5).is_err());
    }

    #[test]
    fn per_class_thresholds_fall_back_to_global() {
        let conf = [0.9, 0.5, 0.8, 0.4, 0.7, 0.6];
        let pred = [0, 1, 0, 1, 0, 0];
        // Class 0: [0.9, 0.8, 0.7, 0.6], keep 0.5 -> 2nd largest 0.8. Class 1 has 2 < 3 cells and
        // class 2 none: global over all six, 3rd largest = 0.7.
        let th = per_class_thresholds(&conf, &pred, 3, 0.5, 3).unwrap();
        assert_eq!(th, vec![0.8, 0.7, 0.7]);
        // With min_cells 2, class 1 gets its own: ceil(0.5 * 2) = 1st largest 0.5.
        let th = per_class_thresholds(&conf, &pred, 3, 0.5, 2).unwrap();
        assert_eq!(th, vec![0.8, 0.5, 0.7]);
        assert!(per_class_thresholds(&conf, &pred[..5], 3, 0.5, 2).is_err());
        assert!(per_class_thresholds(&conf, &pred, 1, 0.5, 2).is_err());
        assert!(per_class_thresholds(&conf, &pred, 3, 0.0, 2).is_err());
    }

    #[test]
    fn accuracy_rejection_curve_by_hand() {
        let conf = [0.3, 0.1, 0.4, 0.2];
        let correct = [false, false, true, true];
        let held_out = [false, true, false, false];
        let curve = accuracy_rejection_curve(&conf, &correct, &held_out);
        assert_eq!(curve.len(), 101);
        let at = |r: usize| &curve[r];
        // r = 0: nothing rejected; known cells 0 (wrong), 2, 3 (right).
        assert_eq!(at(0).rejected, 0.0);
        assert!(close(at(0).known_accuracy, 2.0 / 3.0, 1e-15));
        assert_eq!(at(0).known_accepted, 3);
        // r = 0.25 (and 0.26: floor(0.26 * 4) = 1): the held-out cell (0.1) goes.
        for r in [25, 26, 49] {
            assert_eq!(at(r).rejected, 0.25);
            assert_eq!(at(r).held_out_rejected, 1.0);
            assert_eq!(at(r).known_rejected, 0.0);
            assert!(close(at(r).known_accuracy, 2.0 / 3.0, 1e-15));
        }
        // r = 0.5: 0.1 and 0.2 rejected; accepted known: cell 0 (wrong), cell 2 (right).
        assert_eq!(at(50).rejected, 0.5);
        assert_eq!(at(50).known_accuracy, 0.5);
        assert!(close(at(50).known_rejected, 1.0 / 3.0, 1e-15));
        // r = 0.75: only cell 2 (right) is left.
        assert_eq!(at(75).known_accuracy, 1.0);
        assert_eq!(at(75).known_accepted, 1);
        // r = 1: everything rejected, no accepted known cell.
        assert_eq!(at(100).rejected, 1.0);
        assert_eq!(at(100).known_accepted, 0);
        assert_eq!(at(100).known_accuracy, 0.0);
        assert_eq!(at(100).target_rejected, 1.0);
        // Ties at the cut are all accepted.
        let tied = accuracy_rejection_curve(&[0.5, 0.5, 0.5, 0.9], &[true; 4], &[false; 4]);
        assert_eq!(tied[50].rejected, 0.0);
        assert_eq!(tied[75].rejected, 0.75);
        assert_eq!(tied[100].rejected, 1.0);
    }

    #[test]
    fn curve_matches_keep_threshold_operating_points() {
        // With heavy ties, the curve at r equals the operating point of keep_threshold(1 - r).
        let n = 37;
        let conf: Vec<f64> = uniform(9, n).iter().map(|v| (v * 8.0).floor()).collect();
        let u = uniform(10, 2 * n);
        let correct: Vec<bool> = u[..n].iter().map(|&v| v < 0.7).collect();
        let held_out: Vec<bool> = u[n..].iter().map(|&v| v < 0.3).collect();
        let curve = accuracy_rejection_curve(&conf, &correct, &held_out);
        for (r, pt) in curve.iter().enumerate().take(100) {
            let (t, kept) = keep_threshold(&conf, 1.0 - r as f64 / 100.0).unwrap();
            let op = operating_point(&conf, &vec![t; n], &correct, &held_out);
            assert_eq!(op.rejected, pt.rejected, "r {r}");
            assert!(close(op.rejected, 1.0 - kept, 1e-15));
            assert_eq!(op.known_accuracy, pt.known_accuracy, "r {r}");
            assert_eq!(op.held_out_rejected, pt.held_out_rejected, "r {r}");
            assert_eq!(op.known_rejected, pt.known_rejected, "r {r}");
            assert_eq!(op.known_accepted, pt.known_accepted, "r {r}");
        }
    }

    #[test]
    fn operating_point_by_hand() {
        let op = operating_point(
            &[0.1, 0.5, 0.9, 0.7],
            &[0.2, 0.6, 0.5, 0.5],
            &[true, true, false, true],
            &[false, false, true, false],
        );
        // Rejected: cells 0 and 1 (known). Accepted known: cell 3 (right). Held-out cell 2 kept.
        assert_eq!(op.rejected, 0.5);
        assert_eq!(op.target_rejected, 0.5);
        assert!(close(op.known_rejected, 2.0 / 3.0, 1e-15));
        assert_eq!(op.known_accuracy, 1.0);
        assert_eq!(op.known_accepted, 1);
        assert_eq!(op.held_out_rejected, 0.0);
        // NaN confidence is rejected.
        let op = operating_point(&[f64::NAN], &[0.0], &[true], &[false]);
        assert_eq!(op.rejected, 1.0);
    }

    #[test]
    fn combiner_ranks_by_hand() {
        let comb = Combiner::fit(&[0.9, 0.5, 0.7], &[-1.0, -3.0, -2.0]).unwrap();
        assert_eq!(comb.max_prob, vec![0.5, 0.7, 0.9]);
        assert_eq!(comb.neg_distance, vec![-3.0, -2.0, -1.0]);
        let v = comb.combine(&[0.7, 1.0, 0.1, 0.5, 0.8], &[-2.5, 0.0, -5.0, -3.0, -1.0]);
        // 0.7 -> 2/3, -2.5 -> 1/3; 1.0 -> 1, 0 -> 1; 0.1 -> 0, -5 -> 0; 0.5 -> 1/3 (<=), -3 -> 1/3;
        // 0.8 -> 2/3, -1 -> 1; the combination is the smaller rank.
        let expect = [1.0 / 3.0, 1.0, 0.0, 1.0 / 3.0, 2.0 / 3.0];
        for (a, b) in v.iter().zip(expect) {
            assert!(close(*a, b, 1e-15), "{a} vs {b}");
        }
        let json = serde_json::to_string(&comb).unwrap();
        let back: Combiner = serde_json::from_str(&json).unwrap();
        assert_eq!(back, comb);
        assert!(Combiner::fit(&[], &[1.0]).is_err());
        assert!(Combiner::fit(&[0.5], &[f64::NAN]).is_err());
    }

    #[test]
    fn confidence_dispatches_each_score() {
        let logits = [2.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
        let dist = [0.5, 2.0, 1.0];
        let inputs = ScoreInputs {
            logits: &logits,
            c: 2,
            temperature: 1.5,
            knn_distance: &dist,
        };
        assert_eq!(
            confidence(Score::MaxProb, &inputs, None).unwrap(),
            max_prob(&logits, 2, 1.5)
        );
        assert_eq!(
            confidence(Score::Energy, &inputs, None).unwrap(),
            energy_confidence(&logits, 2, 1.5)
        );
        assert_eq!(
            confidence(Score::KnnDistance, &inputs, None).unwrap(),
            vec![-0.5, -2.0, -1.0]
        );
        assert!(confidence(Score::Combined, &inputs, None).is_err());
        let comb = Combiner::fit(&max_prob(&logits, 2, 1.5), &[-0.5, -2.0, -1.0]).unwrap();
        // Ranks: max probs (0.79, 0.66, 0.5) -> 1, 2/3, 1/3; distances -> 1, 1/3, 2/3.
        let v = confidence(Score::Combined, &inputs, Some(&comb)).unwrap();
        for (a, b) in v.iter().zip([1.0, 1.0 / 3.0, 1.0 / 3.0]) {
            assert!(close(*a, b, 1e-15), "{a} vs {b}");
        }
        let short = ScoreInputs {
            knn_distance: &dist[..2],
            ..inputs
        };
        assert!(confidence(Score::KnnDistance, &short, None).is_err());
        assert!(confidence(Score::MaxProb, &short, None).is_ok());
    }

    #[test]
    fn score_names_parse_and_serde() {
        for s in Score::ALL {
            assert_eq!(Score::parse(s.name()).unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.name())
            );
            assert_eq!(s.to_string(), s.name());
        }
        assert_eq!(Score::parse("knn-distance").unwrap(), Score::KnnDistance);
        let e = Score::parse("softmax").unwrap_err().to_string();
        assert!(e.contains("max_prob") && e.contains("combined"), "{e}");
    }

    #[test]
    fn select_score_means_skips_none_and_breaks_ties() {
        let fold = |name: &str, a: [Option<f64>; 4]| LotoFold {
            left_out: name.to_string(),
            auroc: Score::ALL.into_iter().zip(a).collect(),
        };
        // MaxProb and Energy both average 0.75: the earlier (MaxProb) wins.
        let folds = [
            fold("B", [Some(0.5), Some(0.75), None, Some(0.25)]),
            fold("T", [Some(1.0), Some(0.75), Some(0.5), None]),
        ];
        let (best, means) = select_score(&folds).unwrap();
        assert_eq!(best, Score::MaxProb);
        assert_eq!(
            means,
            vec![
                (Score::MaxProb, 0.75),
                (Score::Energy, 0.75),
                (Score::KnnDistance, 0.5),
                (Score::Combined, 0.25)
            ]
        );
        // None (and NaN) folds are skipped, not counted as 0: KnnDistance's mean is 0.875.
        let folds = [
            fold("B", [Some(0.5), Some(0.75), Some(0.875), None]),
            fold("T", [Some(1.0), Some(0.75), None, Some(f64::NAN)]),
        ];
        let (best, means) = select_score(&folds).unwrap();
        assert_eq!(best, Score::KnnDistance);
        assert_eq!(means.len(), 3);
        assert!(select_score(&[]).is_err());
        assert!(select_score(&[fold("B", [None; 4])]).is_err());
    }

    /// Reference values from numpy / scipy / scikit-learn
    /// (`scripts/spikgpt/make_calibration_reference.py`).
    #[test]
    fn matches_scipy_sklearn_reference() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/spikgpt/calibration_reference.json"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let f64s = |x: &serde_json::Value| -> Vec<f64> {
            x.as_array()
                .unwrap()
                .iter()
                .map(|y| y.as_f64().unwrap())
                .collect()
        };
        let rows = |x: &serde_json::Value| -> Vec<f32> {
            x.as_array()
                .unwrap()
                .iter()
                .flat_map(|r| f64s(r).into_iter().map(|y| y as f32))
                .collect()
        };
        let rel = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * b.abs().max(1.0);
        let c = v["n_classes"].as_u64().unwrap() as usize;
        let logits = rows(&v["logits"]);
        let targets: Vec<usize> = f64s(&v["targets"]).iter().map(|&y| y as usize).collect();

        let t_ref = v["temperature"].as_f64().unwrap();
        let t = fit_temperature(&logits, &targets, c).unwrap();
        assert!((t - t_ref).abs() <= 1e-6 * t_ref, "T {t} vs scipy {t_ref}");
        let nll_t = v["nll_at_temperature"].as_f64().unwrap();
        let nll_1 = v["nll_at_one"].as_f64().unwrap();
        assert!(rel(mean_nll(&logits, &targets, c, t_ref), nll_t, 1e-9));
        assert!(rel(mean_nll(&logits, &targets, c, 1.0), nll_1, 1e-9));
        // Ours is at least as low as scipy's minimum.
        assert!(mean_nll(&logits, &targets, c, t) <= nll_t + 1e-12);

        let energy = energy_confidence(&logits, c, t_ref);
        let neg_lse = f64s(&v["neg_logsumexp_over_t"]);
        let mp = max_prob(&logits, c, t_ref);
        let sm = softmax_t(&logits, c, t_ref);
        for (i, e_ref) in f64s(&v["energy_confidence_at_temperature"])
            .into_iter()
            .enumerate()
        {
            assert!(rel(energy[i], e_ref, 1e-6), "energy row {i}");
            assert!(rel(-energy[i] / t_ref, neg_lse[i], 1e-6), "-lse row {i}");
        }
        for (i, p_ref) in f64s(&v["max_prob_at_temperature"]).into_iter().enumerate() {
            assert!((mp[i] - p_ref).abs() <= 1e-6, "max prob row {i}");
            let row = &sm[i * c..(i + 1) * c];
            assert!((row.iter().cloned().fold(0.0, f64::max) - p_ref).abs() <= 1e-6);
            assert!((row.iter().sum::<f64>() - 1.0).abs() <= 1e-12);
        }

        let ref_x = rows(&v["ref_x"]);
        let query_x = rows(&v["query_x"]);
        let dim = v["ref_x"][0].as_array().unwrap().len();
        let k = v["knn_k"].as_u64().unwrap() as usize;
        let d = knn_mean_distance(&ref_x, &query_x, dim, k, false).unwrap();
        let expect = f64s(&v["knn_mean_distance"]);
        assert_eq!(d.len(), expect.len());
        for (i, (a, b)) in d.iter().zip(&expect).enumerate() {
            assert!(rel(*a, *b, 1e-6), "kNN row {i}: {a} vs {b}");
        }
        let labels = vec![0usize; ref_x.len() / dim];
        let knn = knn_classify(&ref_x, &labels, 1, &query_x, dim, k).unwrap();
        assert_eq!(knn.mean_distance, d);

        for case in v["keep_cases"].as_array().unwrap() {
            let scores = f64s(&case["scores"]);
            let keep = case["keep"].as_f64().unwrap();
            let (th, share) = keep_threshold(&scores, keep).unwrap();
            assert_eq!(th, case["threshold"].as_f64().unwrap(), "keep {keep}");
            let kept = case["kept"].as_u64().unwrap() as usize;
            assert_eq!(share, kept as f64 / scores.len() as f64, "keep {keep}");
        }
    }
}
