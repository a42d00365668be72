//! The one-sided Mann-Whitney U test, asymptotic with tie and continuity corrections: the same
//! p-value as `scipy.stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic")`.

use statrs::distribution::{ContinuousCDF, Normal};

use crate::stats::{midranks, Rankable};

/// P-value that the `positive` scores tend to exceed the others (`None` when either group is
/// empty). `U = R_pos - k (k + 1) / 2`, `z = (U - k m / 2 - 0.5) / s` with
/// `s^2 = k m / 12 ((n + 1) - sum(t^3 - t) / (n (n - 1)))` over tie groups `t`; `p = P(Z > z)`.
pub fn mann_whitney_greater<T: Rankable>(scores: &[T], positive: &[bool]) -> Option<f64> {
    let n = scores.len();
    let k = positive.iter().filter(|&&p| p).count();
    let m = n - k;
    if k == 0 || m == 0 {
        return None;
    }
    let ranks = midranks(scores);
    let r_pos: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r)
        .sum();
    let (kf, mf, nf) = (k as f64, m as f64, n as f64);
    let u = r_pos - kf * (kf + 1.0) / 2.0;
    let mu = kf * mf / 2.0;
    // tie groups from the sorted ranks: equal midranks belong to one group
    let mut sorted = ranks.clone();
    sorted.sort_by(f64::total_cmp);
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let var = kf * mf / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    if var <= 0.0 {
        // every score tied: no evidence either way
        return Some(1.0);
    }
    let z = (u - mu - 0.5) / var.sqrt();
    Some(Normal::standard().sf(z))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy() {
        // scipy 1.x: mannwhitneyu([3, 5, 5, 8], [1, 2, 5, 4, 0], alternative="greater",
        //            method="asymptotic").pvalue
        let x = [3.0, 5.0, 5.0, 8.0, 1.0, 2.0, 5.0, 4.0, 0.0];
        let pos = [true, true, true, true, false, false, false, false, false];
        let p = mann_whitney_greater(&x, &pos).unwrap();
        assert!((p / 0.052_682_026_434_915_19 - 1.0).abs() < 1e-9, "{p}");
        assert_eq!(mann_whitney_greater(&[1.0, 1.0], &[true, false]), Some(1.0));
        assert_eq!(mann_whitney_greater(&[1.0, 2.0], &[true, true]), None);
    }
}
