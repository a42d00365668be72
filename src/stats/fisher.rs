//! Exact one-sided Fisher test (hypergeometric upper tail, in log space) and Benjamini-Hochberg.
//!
//! The upper tail `P(X >= a)` is summed from its largest term with the pmf ratio recurrence, anchored
//! on statrs' `Hypergeometric::ln_pmf`, so it stays exact (relative error ~1e-12) far below `1e-300`;
//! its natural log is returned too for p-values that underflow `f64`.

use statrs::distribution::{Discrete, Hypergeometric};

/// Result of a one-sided Fisher exact test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FisherResult {
    /// Upper-tail p-value `P(X >= a)` (may underflow to 0 below ~1e-308; see `ln_p`).
    pub p: f64,
    /// Natural log of the p-value (finite even when `p` underflows).
    pub ln_p: f64,
    /// Sample odds ratio `a d / (b c)` as scipy reports it (`inf` when `b c = 0`, `NaN` for a table
    /// with an empty row or column).
    pub odds_ratio: f64,
}

/// Natural log of the hypergeometric upper tail `P(X >= x)` for `X ~ Hypergeom(population, successes,
/// draws)`.
pub fn hypergeom_ln_sf_ge(population: u64, successes: u64, draws: u64, x: u64) -> f64 {
    let lo = (successes + draws).saturating_sub(population);
    let hi = successes.min(draws);
    if x <= lo {
        return 0.0;
    }
    if x > hi {
        return f64::NEG_INFINITY;
    }
    let dist = match Hypergeometric::new(population, successes, draws) {
        Ok(d) => d,
        Err(_) => return f64::NAN,
    };
    let (nn, k, n) = (population as f64, successes as f64, draws as f64);
    // mode = floor((n + 1)(K + 1) / (N + 2)), clamped to the support
    let mode = ((((draws + 1) as f64) * ((successes + 1) as f64) / ((population + 2) as f64))
        .floor() as u64)
        .clamp(lo, hi);
    let anchor = x.max(mode);
    // ratio pmf(i+1)/pmf(i)
    let up = |i: f64| (k - i) * (n - i) / ((i + 1.0) * (nn - k - n + i + 1.0));
    let mut sum = 1.0f64;
    // terms above the anchor decrease monotonically
    let mut term = 1.0f64;
    let mut i = anchor;
    while i < hi {
        term *= up(i as f64);
        sum += term;
        i += 1;
        if term < sum * 1e-18 {
            break;
        }
    }
    // terms from anchor-1 down to x (only when x < mode): they decrease going down
    let mut term = 1.0f64;
    let mut i = anchor;
    while i > x {
        term /= up((i - 1) as f64);
        sum += term;
        i -= 1;
        if term < sum * 1e-18 {
            break;
        }
    }
    (dist.ln_pmf(anchor) + sum.ln()).min(0.0)
}

/// One-sided (greater) Fisher exact test of the 2x2 table `[[a, b], [c, d]]`, as scipy's
/// `fisher_exact(table, alternative='greater')`.
pub fn fisher_greater(a: u64, b: u64, c: u64, d: u64) -> FisherResult {
    let n = a + b + c + d;
    let (r0, c0) = (a + b, a + c);
    if r0 == 0 || c0 == 0 || r0 == n || c0 == n {
        return FisherResult {
            p: 1.0,
            ln_p: 0.0,
            odds_ratio: f64::NAN,
        };
    }
    let odds_ratio = if b > 0 && c > 0 {
        (a as f64 * d as f64) / (b as f64 * c as f64)
    } else {
        f64::INFINITY
    };
    let ln_p = hypergeom_ln_sf_ge(n, r0, c0, a);
    FisherResult {
        p: ln_p.exp().min(1.0),
        ln_p,
        odds_ratio,
    }
}

/// Benjamini-Hochberg adjusted p-values (q-values), exactly as statsmodels
/// `multipletests(p, method='fdr_bh')`: step-up monotone, capped at 1, in input order.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    // stable sort, as numpy's mergesort
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![0f64; m];
    let mut running = f64::INFINITY;
    for rank in (0..m).rev() {
        let i = order[rank];
        let factor = (rank + 1) as f64 / m as f64;
        let v = p[i] / factor;
        running = running.min(v);
        q[i] = running.min(1.0);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn fisher_hand_computed() {
        // [[3, 1], [1, 3]]: P(X >= 3), N = 8, K = 4, n = 4: (C(4,3)C(4,1) + C(4,4)) / C(8,4) = 17/70
        let r = fisher_greater(3, 1, 1, 3);
        assert!(rel(r.p, 17.0 / 70.0) < 1e-13, "{}", r.p);
        assert_eq!(r.odds_ratio, 9.0);
        // perfect overlap of 2 of 10: 1 / C(10, 2)
        let r = fisher_greater(2, 0, 0, 8);
        assert!(rel(r.p, 1.0 / 45.0) < 1e-13);
        assert_eq!(r.odds_ratio, f64::INFINITY);
        // zero overlap: p = 1
        assert_eq!(fisher_greater(0, 5, 5, 10).p, 1.0);
        assert!(fisher_greater(0, 0, 3, 4).odds_ratio.is_nan());
    }

    #[test]
    fn tail_is_exact_far_below_f64_range() {
        // a = K = n = 200 of N = 20000: p = 1 / C(20000, 200), log10 ~ -574
        let r = fisher_greater(200, 0, 0, 19_800);
        let exact = -statrs::function::factorial::ln_binomial(20_000, 200);
        assert!(rel(r.ln_p, exact) < 1e-12);
        assert_eq!(r.p, 0.0);
    }

    #[test]
    fn bh_hand_computed() {
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.2]);
        // sorted 0.01, 0.03, 0.04, 0.2 -> 0.04, 0.06, 0.0533.., 0.2 -> monotone 0.04, 0.0533, 0.0533, 0.2
        let want = [0.04, 0.16 / 3.0, 0.16 / 3.0, 0.2];
        for (a, b) in q.iter().zip(want) {
            assert!(rel(*a, b) < 1e-14, "{q:?}");
        }
        assert_eq!(benjamini_hochberg(&[0.9, 0.95]), vec![0.95, 0.95]);
        assert!(benjamini_hochberg(&[]).is_empty());
    }
}
