//! Classification metrics: accuracy, per-class and macro precision / recall / F1, confusion matrix.
//!
//! Conventions (scikit-learn's `precision_recall_fscore_support(labels=classes, zero_division=0)`):
//! a cell predicted `Unknown` (or any label outside `classes`) counts against recall of its true class
//! and against no class's precision; macro averages are unweighted means over `classes`.

use serde::Serialize;

/// The AUROC (Mann-Whitney, ties averaged; `None` without positives or negatives).
pub use crate::stats::auroc;

/// The label given to rejected cells.
pub const UNKNOWN: &str = "Unknown";

/// Metrics of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// Class name.
    pub label: String,
    /// Cells of this class.
    pub support: usize,
    /// Cells predicted as this class.
    pub predicted: usize,
    /// TP / predicted (0 when nothing was predicted).
    pub precision: f64,
    /// TP / support (0 when the class has no cells).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Fraction of this class's cells labelled Unknown.
    pub unknown_fraction: f64,
}

/// Overall metrics and the confusion matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Cells evaluated.
    pub n_cells: usize,
    /// Fraction of cells whose prediction equals the truth (Unknown is wrong).
    pub accuracy: f64,
    /// Unweighted mean precision over classes.
    pub macro_precision: f64,
    /// Unweighted mean recall over classes.
    pub macro_recall: f64,
    /// Unweighted mean F1 over classes.
    pub macro_f1: f64,
    /// Per-class rows, in `classes` order.
    pub per_class: Vec<ClassMetrics>,
    /// Row labels of the confusion matrix (true classes).
    pub confusion_rows: Vec<String>,
    /// Column labels (predicted classes, then `Unknown`).
    pub confusion_cols: Vec<String>,
    /// Counts, `rows x cols`.
    pub confusion: Vec<Vec<usize>>,
}

/// Compute the metrics of `pred` against `truth` over `classes`.
pub fn classification_metrics(truth: &[String], pred: &[String], classes: &[String]) -> Metrics {
    let idx = |s: &str| classes.iter().position(|c| c == s);
    let nc = classes.len();
    let mut confusion = vec![vec![0usize; nc + 1]; nc];
    let mut correct = 0usize;
    let mut tp = vec![0usize; nc];
    let mut support = vec![0usize; nc];
    let mut predicted = vec![0usize; nc];
    let mut unknown = vec![0usize; nc];
    for (t, p) in truth.iter().zip(pred) {
        if t == p {
            correct += 1;
        }
        let pi = idx(p);
        if let Some(pi) = pi {
            predicted[pi] += 1;
        }
        if let Some(ti) = idx(t) {
            support[ti] += 1;
            match pi {
                Some(pi) => {
                    confusion[ti][pi] += 1;
                    if pi == ti {
                        tp[ti] += 1;
                    }
                }
                None => {
                    confusion[ti][nc] += 1;
                    unknown[ti] += 1;
                }
            }
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class: Vec<ClassMetrics> = (0..nc)
        .map(|i| {
            let precision = ratio(tp[i], predicted[i]);
            let recall = ratio(tp[i], support[i]);
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassMetrics {
                label: classes[i].clone(),
                support: support[i],
                predicted: predicted[i],
                precision,
                recall,
                f1,
                unknown_fraction: ratio(unknown[i], support[i]),
            }
        })
        .collect();
    let mean = |f: &dyn Fn(&ClassMetrics) -> f64| {
        if nc == 0 {
            0.0
        } else {
            per_class.iter().map(f).sum::<f64>() / nc as f64
        }
    };
    let mut cols = classes.to_vec();
    cols.push(UNKNOWN.to_string());
    Metrics {
        n_cells: truth.len(),
        accuracy: ratio(correct, truth.len()),
        macro_precision: mean(&|c| c.precision),
        macro_recall: mean(&|c| c.recall),
        macro_f1: mean(&|c| c.f1),
        per_class,
        confusion_rows: classes.to_vec(),
        confusion_cols: cols,
        confusion,
    }
}

impl Metrics {
    /// A text report: headline numbers and the per-class table.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "cells {}  accuracy {:.4}  macro precision {:.4}  macro recall {:.4}  macro F1 {:.4}\n",
            self.n_cells, self.accuracy, self.macro_precision, self.macro_recall, self.macro_f1
        );
        let w = self
            .per_class
            .iter()
            .map(|c| c.label.len())
            .max()
            .unwrap_or(5)
            .max(5);
        s.push_str(&format!(
            "{:<w$}  {:>7}  {:>9}  {:>9}  {:>6}  {:>6}  {:>7}\n",
            "class", "support", "predicted", "precision", "recall", "F1", "unknown"
        ));
        for c in &self.per_class {
            s.push_str(&format!(
                "{:<w$}  {:>7}  {:>9}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7.4}\n",
                c.label, c.support, c.predicted, c.precision, c.recall, c.f1, c.unknown_fraction
            ));
        }
        s
    }
}

/// Index of the largest value of `row` (the first one on ties; 0 for an empty row).
pub fn argmax<T: Copy + PartialOrd>(row: &[T]) -> usize {
    // NaN entries never win; ties go to the first index.
    let mut best: Option<(usize, T)> = None;
    for (j, &v) in row.iter().enumerate() {
        let wins = match best {
            Some((_, b)) => v > b,
            // the first comparable (not NaN) value
            None => v.partial_cmp(&v).is_some(),
        };
        if wins {
            best = Some((j, v));
        }
    }
    best.map_or(0, |(j, _)| j)
}

/// The largest value of every row of a row-major `n x c` matrix.
pub fn max_per_row(values: &[f64], c: usize) -> Vec<f64> {
    values
        .chunks(c.max(1))
        .map(|r| r.iter().cloned().fold(f64::NEG_INFINITY, f64::max))
        .collect()
}

pub fn argmax_rows(values: &[f32], c: usize) -> Vec<usize> {
    values.chunks(c.max(1)).map(argmax).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn argmax_and_row_max_by_hand() {
        assert_eq!(argmax(&[1.0f64, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 2.0, 1.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
        assert_eq!(argmax::<f64>(&[]), 0);
        assert_eq!(max_per_row(&[0.1, 0.9, 0.7, 0.3], 2), vec![0.9, 0.7]);
    }

    #[test]
    fn hand_computed_metrics() {
        // truth a a a b b c ; pred a a b b Unknown a
        let t = s(&["a", "a", "a", "b", "b", "c"]);
        let p = s(&["a", "a", "b", "b", "Unknown", "a"]);
        let m = classification_metrics(&t, &p, &s(&["a", "b", "c"]));
        assert!((m.accuracy - 3.0 / 6.0).abs() < 1e-12);
        // a: tp 2, pred 3, support 3 -> p 2/3 r 2/3; b: tp 1, pred 2, support 2 -> 1/2, 1/2; c: 0, 0
        assert!((m.macro_precision - (2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        assert!((m.macro_recall - (2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        assert_eq!(m.confusion[1], vec![0, 1, 0, 1]);
        assert!((m.per_class[1].unknown_fraction - 0.5).abs() < 1e-12);
    }

    #[test]
    fn auroc_hand_cases() {
        assert_eq!(
            auroc(&[0.9, 0.8, 0.1, 0.2], &[true, true, false, false]),
            Some(1.0)
        );
        assert_eq!(auroc(&[0.5, 0.5], &[true, false]), Some(0.5));
        // pos {0.3, 0.7}, neg {0.5}: pairs (0.3<0.5) 0, (0.7>0.5) 1 -> 0.5
        assert_eq!(auroc(&[0.3, 0.7, 0.5], &[true, true, false]), Some(0.5));
        assert_eq!(auroc(&[0.3], &[true]), None);
    }
}
