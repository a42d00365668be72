//! Shared statistics: midranks, the AUROC (one implementation for the analysis, the annotator's
//! rejection reports and the calibration), the median, and ([`fisher`]) the exact one-sided Fisher
//! test with Benjamini-Hochberg used by the enrichment.

pub mod fisher;
pub mod mann_whitney;

pub use fisher::{benjamini_hochberg, fisher_greater, hypergeom_ln_sf_ge, FisherResult};
pub use mann_whitney::mann_whitney_greater;

/// Values that can be ranked: a total order for sorting, and equality for ties (so that `-0.0` and
/// `0.0` tie, as in scipy's `rankdata`).
pub trait Rankable: Copy {
    /// Total order (`total_cmp`).
    fn order(&self, other: &Self) -> std::cmp::Ordering;
    /// Tied for ranking.
    fn ties(&self, other: &Self) -> bool;
}

impl Rankable for f32 {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.total_cmp(other)
    }
    fn ties(&self, other: &Self) -> bool {
        self == other
    }
}

impl Rankable for f64 {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.total_cmp(other)
    }
    fn ties(&self, other: &Self) -> bool {
        self == other
    }
}

/// Midranks (1-based; ties get the mean of their ranks) of `values`, in `O(n log n)`.
pub fn midranks<T: Rankable>(values: &[T]) -> Vec<f64> {
    let mut order: Vec<u32> = (0..values.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| values[a as usize].order(&values[b as usize]));
    let mut ranks = vec![0f64; values.len()];
    let mut i = 0;
    while i < order.len() {
        let v = values[order[i] as usize];
        let mut j = i + 1;
        while j < order.len() && values[order[j] as usize].ties(&v) {
            j += 1;
        }
        let r = (i + 1 + j) as f64 / 2.0;
        for &o in &order[i..j] {
            ranks[o as usize] = r;
        }
        i = j;
    }
    ranks
}

/// AUROC from midranks: `(sum of the positives' ranks - k(k+1)/2) / (k (n - k))` for `k` positives
/// among `n` (Mann-Whitney U, ties counted half); `None` without positives or negatives.
pub fn auroc_from_rank_sum(rank_sum: f64, k: usize, n: usize) -> Option<f64> {
    if k == 0 || k == n {
        return None;
    }
    let (k, n) = (k as f64, n as f64);
    Some((rank_sum - k * (k + 1.0) / 2.0) / (k * (n - k)))
}

/// AUROC of `scores` for telling `positive` cells from the others (equals scikit-learn's
/// `roc_auc_score`, ties averaged); `None` when either group is empty.
pub fn auroc<T: Rankable>(scores: &[T], positive: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), positive.len(), "auroc: lengths differ");
    let ranks = midranks(scores);
    let k = positive.iter().filter(|&&p| p).count();
    let sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r)
        .sum();
    auroc_from_rank_sum(sum, k, scores.len())
}

/// Median of the finite values (`NaN` when there are none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_ranks_auroc_and_median() {
        assert_eq!(midranks(&[3.0f32, 1.0, 3.0, 0.0]), vec![3.5, 2.0, 3.5, 1.0]);
        assert_eq!(midranks(&[-0.0f64, 0.0]), vec![1.5, 1.5]);
        // positives {0.8, 0.4}, negatives {0.4, 0.1}: pairs won 1 + 1 + 0.5 + 1 = 3.5 of 4
        let a = auroc(&[0.8, 0.4, 0.4, 0.1], &[true, true, false, false]).unwrap();
        assert!((a - 0.875).abs() < 1e-15);
        assert_eq!(auroc(&[1.0f32, 2.0], &[true, true]), None);
        assert_eq!(median(vec![3.0, f64::NAN, 1.0, 2.0, 10.0]), 2.5);
        assert!(median(vec![f64::INFINITY]).is_nan());
    }
}
