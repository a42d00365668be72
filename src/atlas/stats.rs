//! The numbers a feature page shows that no analysis table holds: the histogram of a feature's
//! non-zero activations, its top cells, and its nearest features by decoder cosine.

use rayon::prelude::*;

use crate::analysis::sparse_codes::SparseColumn;
use crate::sae::Sae;

/// Equal-width bins over `[lo, hi]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Left edge of the first bin.
    pub lo: f64,
    /// Right edge of the last bin.
    pub hi: f64,
    /// Values per bin.
    pub counts: Vec<usize>,
}

impl Histogram {
    /// Width of one bin.
    pub fn width(&self) -> f64 {
        (self.hi - self.lo) / self.counts.len().max(1) as f64
    }
}

/// Histogram of the finite `values` in `bins` equal bins from `min(0, min)` to `max(0, max)` (so
/// that a code's bars start at 0). A value on a bin edge goes to the bin on its right, the maximum
/// to the last bin. Without a spread (no values, or all equal to 0) the range is `[lo, lo + 1]`.
pub fn histogram(values: &[f32], bins: usize) -> Histogram {
    let bins = bins.max(1);
    let finite = values.iter().filter(|v| v.is_finite()).map(|&v| v as f64);
    let (mut lo, mut hi) = (0f64, 0f64);
    for v in finite.clone() {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let mut counts = vec![0usize; bins];
    for v in finite {
        let k = ((v - lo) / (hi - lo) * bins as f64).floor() as usize;
        counts[k.min(bins - 1)] += 1;
    }
    Histogram { lo, hi, counts }
}

/// The `k` cells (rows) with the highest values of a sparse column, highest first (ties: lower row
/// first); only stored (non-zero, non-NaN) values.
pub fn top_cells(col: &SparseColumn, k: usize) -> Vec<(usize, f32)> {
    let mut v: Vec<(usize, f32)> = col
        .rows
        .iter()
        .zip(&col.values)
        .filter(|(_, x)| !x.is_nan())
        .map(|(&r, &x)| (r as usize, x))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

/// The unit direction of every feature in the SAE's input (activation) space, `d_sae x d_in`
/// row-major: decoder row `j` times the input standard deviations (a feature adds `z_j W_dec[j]` to
/// the z-scored input, so `z_j (W_dec[j] * std)` to the activations), normalised to length 1 (a
/// zero row stays zero).
pub fn decoder_directions(sae: &Sae) -> Vec<f32> {
    let (d, m) = (sae.d_in(), sae.d_sae());
    let mut out = Vec::with_capacity(m * d);
    for j in 0..m {
        let row = sae.decoder_direction(j);
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        out.extend(
            row.iter()
                .map(|x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 }),
        );
    }
    out
}

/// For each unit row of `a` (`d` wide), the `k` rows of `b` with the highest cosine, highest first
/// (ties: lower index first); with `same`, `a` and `b` are one matrix and a row is not its own
/// neighbour.
pub fn nearest(a: &[f32], b: &[f32], d: usize, k: usize, same: bool) -> Vec<Vec<(usize, f32)>> {
    let d = d.max(1);
    let nb = b.len() / d;
    a.par_chunks(d)
        .enumerate()
        .map(|(i, x)| {
            let mut sims: Vec<(usize, f32)> = (0..nb)
                .filter(|&j| !(same && j == i))
                .map(|j| {
                    let y = &b[j * d..(j + 1) * d];
                    let s: f64 = x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum();
                    (j, s as f32)
                })
                .collect();
            let k = k.min(sims.len());
            if k == 0 {
                return Vec::new();
            }
            let by = |p: &(usize, f32), q: &(usize, f32)| q.1.total_cmp(&p.1).then(p.0.cmp(&q.0));
            sims.select_nth_unstable_by(k - 1, by);
            sims.truncate(k);
            sims.sort_by(by);
            sims
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bins_match_hand_counts() {
        // range [0, 4], 4 bins of width 1: [0,1) [1,2) [2,3) [3,4]
        let h = histogram(&[0.5, 1.0, 1.5, 2.0, 3.99, 4.0, f32::NAN, f32::INFINITY], 4);
        assert_eq!((h.lo, h.hi), (0.0, 4.0));
        assert_eq!(h.counts, vec![1, 2, 1, 2]);
        assert_eq!(h.width(), 1.0);
        // negative values widen the range to the left: [-2, 2], 2 bins
        let h = histogram(&[-2.0, -0.5, 0.5, 2.0], 2);
        assert_eq!((h.lo, h.hi, h.counts.clone()), (-2.0, 2.0, vec![2, 2]));
        // nothing to bin
        let h = histogram(&[], 3);
        assert_eq!((h.lo, h.hi, h.counts.clone()), (0.0, 1.0, vec![0, 0, 0]));
    }

    #[test]
    fn top_cells_are_the_highest_values_with_ties_by_row() {
        let col = SparseColumn {
            rows: vec![1, 4, 5, 9, 12],
            values: vec![0.5, 2.0, f32::NAN, 2.0, 3.0],
        };
        assert_eq!(top_cells(&col, 3), vec![(12, 3.0), (4, 2.0), (9, 2.0)]);
        assert_eq!(top_cells(&col, 10).len(), 4);
    }

    #[test]
    fn nearest_features_by_hand_made_decoder() {
        // four unit directions in 2-D: 0 deg, 10 deg, 90 deg, 180 deg
        let deg = |a: f32| {
            let r = a.to_radians();
            [r.cos(), r.sin()]
        };
        let a: Vec<f32> = [0.0, 10.0, 90.0, 180.0]
            .iter()
            .flat_map(|&x| deg(x))
            .collect();
        let nn = nearest(&a, &a, 2, 2, true);
        assert_eq!(nn[0][0].0, 1);
        assert!((nn[0][0].1 - 10f32.to_radians().cos()).abs() < 1e-6);
        // feature 0's second neighbour: 90 deg (cos 0) before 180 deg (cos -1)
        assert_eq!(nn[0][1].0, 2);
        assert!(nn[0][1].1.abs() < 1e-6);
        assert_eq!(nn[3][0].0, 2);
        // against another matrix, self included
        let b: Vec<f32> = [95.0, 0.0].iter().flat_map(|&x| deg(x)).collect();
        let nn = nearest(&a, &b, 2, 1, false);
        assert_eq!(
            nn.iter().map(|v| v[0].0).collect::<Vec<_>>(),
            vec![1, 1, 0, 0]
        );
        assert!((nn[0][0].1 - 1.0).abs() < 1e-6);
    }

    #[test]
    fn decoder_directions_are_unit_rows_in_activation_space() {
        use crate::sae::saelens::{SaeConfig, SaeTensors};
        let cfg = SaeConfig {
            d_in: 2,
            d_sae: 3,
            ..SaeConfig::default()
        };
        let t = SaeTensors {
            w_enc: vec![0.0; 6],
            // rows: (1, 1), (0, 0), (3, 0)
            w_dec: vec![1.0, 1.0, 0.0, 0.0, 3.0, 0.0],
            b_enc: vec![0.0; 3],
            b_dec: vec![0.0; 2],
            input_mean: vec![0.0; 2],
            // the second input dimension is 3 times wider: (1, 1) becomes (1, 3)
            input_std: vec![1.0, 3.0],
            threshold: None,
        };
        let sae = Sae::from_parts(cfg, t, None);
        let u = decoder_directions(&sae);
        let s = 10f32.sqrt();
        let want = [1.0 / s, 3.0 / s, 0.0, 0.0, 1.0, 0.0];
        for (x, y) in u.iter().zip(want) {
            assert!((x - y).abs() < 1e-6, "{u:?}");
        }
    }
}
