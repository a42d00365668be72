//! Held-out concept scoring (as InterPLM does for protein SAEs): each feature's concept (the cell type
//! it best separates) and its decision threshold are chosen on a validation split of the cells, and
//! reported on the other, test split: AUROC, precision / recall / F1 at the chosen threshold, and a
//! one-sided Mann-Whitney p-value with Benjamini-Hochberg q-values across features. A feature is
//! *annotated* when its test q-value is below the FDR and its test AUROC reaches the bar; the
//! headline is the percentage of scored features annotated, comparable with published SAE atlases,
//! and the same run on PCA components gives the baseline.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::stats::{auroc, benjamini_hochberg, mann_whitney_greater, midranks};

/// Options of the held-out scoring (defaults: half the cells of every type held out, seed 42,
/// AUROC >= 0.8 and q < 0.05 to count as annotated, types with >= 5 cells in each split).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeldOutOptions {
    /// Fraction of each type's cells in the test split.
    pub test_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// Test AUROC a feature needs to count as annotated.
    pub min_auroc: f64,
    /// Benjamini-Hochberg false discovery rate.
    pub fdr: f64,
    /// Cells a type needs in each split to be a candidate concept.
    pub min_cells: usize,
    /// Let a feature be *lower* in its type (PCA components, whose sign is arbitrary): the
    /// orientation is chosen on validation like the type.
    pub two_sided: bool,
}

impl Default for HeldOutOptions {
    fn default() -> Self {
        HeldOutOptions {
            test_fraction: 0.5,
            seed: 42,
            min_auroc: 0.8,
            fdr: 0.05,
            min_cells: 5,
            two_sided: false,
        }
    }
}

/// One feature's concept, chosen on validation and scored on test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Concept {
    /// Feature (column) index.
    pub feature: usize,
    /// The cell type it separates best on validation.
    pub cell_type: String,
    /// Whether the feature is lower in the type (two-sided scoring only).
    pub flipped: bool,
    /// Validation AUROC for that type.
    pub val_auroc: f64,
    /// Decision threshold (on the oriented feature: `value >= threshold` calls the type), the lowest
    /// of those maximising the validation F1.
    pub threshold: f64,
    /// Validation F1 at the threshold.
    pub val_f1: f64,
    /// Test AUROC.
    pub test_auroc: f64,
    /// Test precision at the threshold (0 when nothing is called).
    pub test_precision: f64,
    /// Test recall at the threshold.
    pub test_recall: f64,
    /// Test F1 at the threshold (0 when precision + recall is 0).
    pub test_f1: f64,
    /// One-sided Mann-Whitney p-value on test.
    pub p_value: f64,
    /// Benjamini-Hochberg q-value across the scored features.
    pub q_value: f64,
    /// `q_value < fdr` and `test_auroc >= min_auroc`.
    pub annotated: bool,
}

/// The headline of a held-out scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutSummary {
    /// Features in the matrix.
    pub n_features: usize,
    /// Features that vary on validation (scored).
    pub n_scored: usize,
    /// Features annotated.
    pub n_annotated: usize,
    /// `100 x n_annotated / n_scored`.
    pub pct_annotated: f64,
    /// Cell types that at least one annotated feature stands for, sorted.
    pub types_covered: Vec<String>,
    /// Cells in the validation and test splits.
    pub n_validation: usize,
    /// Cells in the test split.
    pub n_test: usize,
}

/// A seeded split stratified by label: within each label, the cells sorted by id are shuffled with
/// a generator seeded by `seed` and the label's rank, and the first `round(test_fraction x n)` go to
/// test. Returns `is_test` per cell; independent of the cells' input order.
pub fn stratified_split(
    ids: &[String],
    labels: &[String],
    test_fraction: f64,
    seed: u64,
) -> Result<Vec<bool>> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(Error::invalid("--test-fraction must be between 0 and 1"));
    }
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        groups.entry(l).or_default().push(i);
    }
    let mut is_test = vec![false; labels.len()];
    for (rank, cells) in groups.values_mut().enumerate() {
        cells.sort_by(|&a, &b| ids[a].cmp(&ids[b]));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(rank as u64);
        cells.shuffle(&mut rng);
        let k = (test_fraction * cells.len() as f64).round() as usize;
        for &c in &cells[..k] {
            is_test[c] = true;
        }
    }
    Ok(is_test)
}

/// Precision, recall and F1 of calling `scores >= t` against `positive` (0 where undefined, as
/// scikit-learn with `zero_division=0`).
fn prf(scores: &[f64], positive: &[bool], t: f64) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut pos) = (0usize, 0usize, 0usize);
    for (s, &p) in scores.iter().zip(positive) {
        pos += p as usize;
        if *s >= t {
            if p {
                tp += 1;
            } else {
                fp += 1;
            }
        }
    }
    let precision = if tp + fp > 0 {
        tp as f64 / (tp + fp) as f64
    } else {
        0.0
    };
    let recall = if pos > 0 { tp as f64 / pos as f64 } else { 0.0 };
    let f1 = if tp > 0 {
        2.0 * tp as f64 / (2 * tp + fp + (pos - tp)) as f64
    } else {
        0.0
    };
    (precision, recall, f1)
}

/// The lowest threshold among the distinct `scores` maximising F1, with that F1 (one sort, then
/// one pass from the highest score down).
fn best_threshold(scores: &[f64], positive: &[bool]) -> (f64, f64) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let pos = positive.iter().filter(|&&p| p).count();
    let (mut tp, mut called) = (0usize, 0usize);
    let (mut best_t, mut best_f1) = (f64::INFINITY, -1.0);
    let mut i = 0;
    while i < order.len() {
        let v = scores[order[i]];
        while i < order.len() && scores[order[i]] == v {
            tp += positive[order[i]] as usize;
            called += 1;
            i += 1;
        }
        let f1 = if tp > 0 {
            2.0 * tp as f64 / (called + pos) as f64
        } else {
            0.0
        };
        if f1 >= best_f1 {
            (best_t, best_f1) = (v, f1);
        }
    }
    (best_t, best_f1.max(0.0))
}

/// Score every column of `x` (cells x features): concept and threshold on the cells with
/// `is_test == false`, metrics on the others. Features constant on validation are not scored.
/// Returns the concepts in feature order and the summary.
pub fn score_concepts(
    x: &DenseMatrix,
    labels: &[String],
    is_test: &[bool],
    opts: &HeldOutOptions,
) -> Result<(Vec<Concept>, HeldOutSummary)> {
    score_columns(x.n_rows, x.n_cols, |f| x.column(f), labels, is_test, opts)
}

/// [`score_concepts`] over `n_cols` features of `n_rows` cells given one column at a time by
/// `column(f)` (e.g. from column-sparse SAE codes, so the dense matrix never exists).
pub fn score_columns(
    n_rows: usize,
    n_cols: usize,
    column: impl Fn(usize) -> Vec<f32> + Sync,
    labels: &[String],
    is_test: &[bool],
    opts: &HeldOutOptions,
) -> Result<(Vec<Concept>, HeldOutSummary)> {
    if labels.len() != n_rows || is_test.len() != n_rows {
        return Err(Error::invalid(format!(
            "{} labels and {} split flags for {} cells",
            labels.len(),
            is_test.len(),
            n_rows
        )));
    }
    let val: Vec<usize> = (0..n_rows).filter(|&i| !is_test[i]).collect();
    let test: Vec<usize> = (0..n_rows).filter(|&i| is_test[i]).collect();
    let mut types: Vec<&str> = labels.iter().map(String::as_str).collect();
    types.sort_unstable();
    types.dedup();
    let count = |cells: &[usize], t: &str| cells.iter().filter(|&&i| labels[i] == t).count();
    types.retain(|t| count(&val, t) >= opts.min_cells && count(&test, t) >= opts.min_cells);
    if types.len() < 2 {
        return Err(Error::invalid(format!(
            "held-out scoring needs at least 2 cell types with {} cells in each split",
            opts.min_cells
        )));
    }
    let code = |i: usize| types.iter().position(|t| *t == labels[i]);
    let val_codes: Vec<Option<usize>> = val.iter().map(|&i| code(i)).collect();
    let mut counts = vec![0usize; types.len()];
    for c in val_codes.iter().flatten() {
        counts[*c] += 1;
    }
    let d = n_cols;
    let mut concepts: Vec<Concept> = (0..d)
        .into_par_iter()
        .filter_map(|f| {
            let col = column(f);
            let v: Vec<f64> = val.iter().map(|&i| col[i] as f64).collect();
            if v.iter().all(|a| *a == v[0]) {
                return None;
            }
            // validation AUROC of every type from one ranking
            let ranks = midranks(&v);
            let mut sums = vec![0f64; types.len()];
            for (r, c) in ranks.iter().zip(&val_codes) {
                if let Some(c) = c {
                    sums[*c] += r;
                }
            }
            let mut best: Option<(usize, f64, bool)> = None;
            for (t, (&s, &k)) in sums.iter().zip(&counts).enumerate() {
                let Some(a) = crate::stats::auroc_from_rank_sum(s, k, v.len()) else {
                    continue;
                };
                let (a, flip) = if opts.two_sided && 1.0 - a > a {
                    (1.0 - a, true)
                } else {
                    (a, false)
                };
                if best.is_none_or(|b| a > b.1) {
                    best = Some((t, a, flip));
                }
            }
            let (t, val_auroc, flipped) = best?;
            let sign = if flipped { -1.0 } else { 1.0 };
            let vs: Vec<f64> = v.iter().map(|a| sign * a).collect();
            let vpos: Vec<bool> = val_codes.iter().map(|c| *c == Some(t)).collect();
            let (threshold, val_f1) = best_threshold(&vs, &vpos);
            let ts: Vec<f64> = test.iter().map(|&i| sign * col[i] as f64).collect();
            let tpos: Vec<bool> = test.iter().map(|&i| labels[i] == types[t]).collect();
            let (test_precision, test_recall, test_f1) = prf(&ts, &tpos, threshold);
            Some(Concept {
                feature: f,
                cell_type: types[t].to_string(),
                flipped,
                val_auroc,
                threshold,
                val_f1,
                test_auroc: auroc(&ts, &tpos).unwrap_or(f64::NAN),
                test_precision,
                test_recall,
                test_f1,
                p_value: mann_whitney_greater(&ts, &tpos).unwrap_or(1.0),
                q_value: f64::NAN,
                annotated: false,
            })
        })
        .collect();
    let p: Vec<f64> = concepts.iter().map(|c| c.p_value).collect();
    for (c, q) in concepts.iter_mut().zip(benjamini_hochberg(&p)) {
        c.q_value = q;
        c.annotated = q < opts.fdr && c.test_auroc >= opts.min_auroc;
    }
    let n_annotated = concepts.iter().filter(|c| c.annotated).count();
    let mut covered: Vec<String> = concepts
        .iter()
        .filter(|c| c.annotated)
        .map(|c| c.cell_type.clone())
        .collect();
    covered.sort();
    covered.dedup();
    let summary = HeldOutSummary {
        n_features: d,
        n_scored: concepts.len(),
        n_annotated,
        pct_annotated: 100.0 * n_annotated as f64 / concepts.len().max(1) as f64,
        types_covered: covered,
        n_validation: val.len(),
        n_test: test.len(),
    };
    Ok((concepts, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_scores_by_hand() {
        // positives score {0.9, 0.5, 0.5}, negatives {0.6, 0.1}
        let s = [0.9, 0.5, 0.6, 0.5, 0.1];
        let p = [true, true, false, true, false];
        // t = 0.9: F1 2/(1+3) = 0.5; t = 0.6: 2/(2+3) = 0.4; t = 0.5: 6/(4+3) = 0.857; t = 0.1: 6/8
        let (t, f1) = best_threshold(&s, &p);
        assert_eq!(t, 0.5);
        assert!((f1 - 6.0 / 7.0).abs() < 1e-15);
        let (pr, re, f) = prf(&s, &p, 0.5);
        assert_eq!((pr, re), (0.75, 1.0));
        assert!((f - 6.0 / 7.0).abs() < 1e-15);
        assert_eq!(prf(&s, &p, 2.0), (0.0, 0.0, 0.0));
    }

    #[test]
    fn split_is_stratified_seeded_and_independent_of_input_order() {
        let ids: Vec<String> = (0..40).map(|i| format!("c{i:02}")).collect();
        let labels: Vec<String> = (0..40).map(|i| ["a", "b"][i % 2].to_string()).collect();
        let s = stratified_split(&ids, &labels, 0.25, 7).unwrap();
        assert_eq!(s.iter().filter(|&&t| t).count(), 10);
        assert_eq!((0..40).filter(|&i| s[i] && i % 2 == 0).count(), 5);
        assert_ne!(s, stratified_split(&ids, &labels, 0.25, 8).unwrap());
        // reversed input order: the same cells are held out
        let rid: Vec<String> = ids.iter().rev().cloned().collect();
        let rl: Vec<String> = labels.iter().rev().cloned().collect();
        let r = stratified_split(&rid, &rl, 0.25, 7).unwrap();
        let held: Vec<&String> = (0..40).filter(|&i| s[i]).map(|i| &ids[i]).collect();
        let mut rheld: Vec<&String> = (0..40).filter(|&i| r[i]).map(|i| &rid[i]).collect();
        rheld.sort();
        assert_eq!(held, rheld);
        assert!(stratified_split(&ids, &labels, 1.0, 7).is_err());
    }
}
