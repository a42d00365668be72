//! Exact (rank-based) AUROC of every (feature, type) pair from column-sparse codes
//! ([`SparseCodes`]), in memory `O(nnz)` and time `O(nnz log nnz + features x types)`.
//!
//! Per feature only the non-zero values are sorted. Every zero shares one midrank: with `p` values
//! below zero and `z = n - nnz` zeros, the zeros hold ranks `p + 1 ..= p + z` and their midrank is
//! `p + (z + 1) / 2`; the non-zero values above zero move up by `z`. A type's zero count is its cell
//! count minus its non-zero count, so the rank sums need no pass over the zeros. Twice every midrank
//! is an integer, so the rank sums are accumulated exactly in `u64` and the AUROCs equal, bit for
//! bit, those of the dense [`crate::analysis::auroc::auroc_table`] (whose half-integer sums are exact
//! in `f64` below `2^52`).

use rayon::prelude::*;

use crate::analysis::auroc::{assemble, check_shape, directed, AurocTable, Direction, LabelCodes};
use crate::analysis::sparse_codes::{SparseCodes, SparseColumn};
use crate::error::Result;

/// Sort key of a value: its `f32::total_cmp` order as an unsigned integer.
fn order_key(v: f32) -> u32 {
    let b = v.to_bits() as i32;
    ((b ^ (((b >> 31) as u32) >> 1) as i32) as u32) ^ 0x8000_0000
}

/// The value of an [`order_key`].
fn key_value(k: u32) -> f32 {
    let b = (k ^ 0x8000_0000) as i32;
    f32::from_bits((b ^ (((b >> 31) as u32) >> 1) as i32) as u32)
}

/// AUROC of one sparse column for every label code (`NaN` for codes without positives or
/// negatives); `codes` has one entry per cell, `counts` the cells per code.
pub fn auroc_all_types_sparse(col: &SparseColumn, codes: &[usize], counts: &[usize]) -> Vec<f64> {
    let n = codes.len();
    // (value order << 32) | label code: one integer sort orders the values
    let mut keys: Vec<u64> = col
        .values
        .iter()
        .zip(&col.rows)
        .map(|(&v, &r)| (order_key(v) as u64) << 32 | codes[r as usize] as u64)
        .collect();
    keys.sort_unstable();
    let zero_key = order_key(0.0) as u64;
    // values sorting below +0.0 (stored values are never -0.0 or +0.0)
    let p = keys.partition_point(|&k| (k >> 32) < zero_key);
    let z = n - keys.len();
    let mut twice_sums = vec![0u64; counts.len()];
    let mut nonzero = vec![0usize; counts.len()];
    let mut i = 0;
    while i < keys.len() {
        let v = key_value((keys[i] >> 32) as u32);
        let mut j = i + 1;
        // NaN ties with nothing, as with `==` in the dense midranks
        while j < keys.len() && !v.is_nan() && (keys[j] >> 32) == (keys[i] >> 32) {
            j += 1;
        }
        // 0-based positions i..j among the non-zeros; the zeros sit before position p
        let shift = if i >= p { z } else { 0 };
        let twice_rank = (i + shift + 1 + j + shift) as u64;
        for &k in &keys[i..j] {
            let c = (k & 0xFFFF_FFFF) as usize;
            twice_sums[c] += twice_rank;
            nonzero[c] += 1;
        }
        i = j;
    }
    let twice_zero_rank = (2 * p + z + 1) as u64;
    twice_sums
        .iter()
        .zip(nonzero.iter().zip(counts))
        .map(|(&s, (&nz, &k))| {
            let sum = s + twice_zero_rank * (k - nz) as u64;
            crate::stats::auroc_from_rank_sum(sum as f64 / 2.0, k, n).unwrap_or(f64::NAN)
        })
        .collect()
}

/// AUROC of every column in `features` of the sparse codes `x` for every label code in `types`,
/// with the same table, direction rule and checks as the dense
/// [`crate::analysis::auroc::auroc_table`]. Parallel over features; the result depends neither on
/// the thread count nor on the chunks the codes were filled in.
pub fn auroc_table_sparse(
    x: &SparseCodes,
    labels: &LabelCodes,
    features: &[usize],
    types: &[usize],
    direction: Direction,
) -> Result<AurocTable> {
    check_shape(x.n_rows, x.n_cols(), labels, features)?;
    let rows: Vec<(Vec<f64>, Vec<bool>)> = features
        .par_iter()
        .map(|&j| {
            let all = auroc_all_types_sparse(&x.columns[j], &labels.codes, &labels.counts);
            directed(&all, types, direction)
        })
        .collect();
    Ok(assemble(rows, features, types, direction))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::auroc::auroc_table;
    use crate::data::DenseMatrix;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// 12 cells x 3 features with ties, zeros and negative values.
    fn hand_case() -> (DenseMatrix, LabelCodes) {
        #[rustfmt::skip]
        let x = vec![
            0.0, 1.5, -1.0,
            2.0, 0.0, 0.0,
            0.0, 1.5, 0.5,
            2.0, 0.0, -1.0,
            0.0, 0.0, 0.0,
            1.0, 3.0, 0.5,
            0.0, 1.5, -2.0,
            2.0, 0.0, 0.0,
            0.5, 0.0, 0.5,
            0.0, 1.5, 0.0,
            0.0, 0.0, 2.0,
            1.0, 0.0, -1.0,
        ];
        let labels: Vec<String> = "aabbcabcacbb".chars().map(String::from).collect();
        (
            DenseMatrix::new(12, 3, x).unwrap(),
            LabelCodes::new(&labels),
        )
    }

    #[test]
    fn order_keys_follow_total_cmp() {
        let v = [
            f32::NEG_INFINITY,
            -2.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            1.0,
            f32::INFINITY,
            f32::NAN,
        ];
        for w in v.windows(2) {
            assert!(order_key(w[0]) < order_key(w[1]), "{w:?}");
        }
        for x in v {
            assert_eq!(key_value(order_key(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn matches_sklearn_with_ties_zeros_and_negatives() {
        // Expected values from scikit-learn 1.x (the matrix and labels of `hand_case`):
        //   X = np.array([[0, 1.5, -1], [2, 0, 0], [0, 1.5, .5], [2, 0, -1], [0, 0, 0], [1, 3, .5],
        //                 [0, 1.5, -2], [2, 0, 0], [.5, 0, .5], [0, 1.5, 0], [0, 0, 2], [1, 0, -1]],
        //                dtype=np.float32)
        //   y = np.array(list("aabbcabcacbb"))
        //   [[roc_auc_score(y == t, X[:, j]) for t in "abc"] for j in range(3)]
        let expected = [
            [0.625, 0.4285714285714286, 0.4444444444444444],
            [0.609375, 0.45714285714285713, 0.42592592592592593],
            [0.609375, 0.4, 0.5],
        ];
        let (x, labels) = hand_case();
        let s = SparseCodes::from_dense(&x).unwrap();
        let t =
            auroc_table_sparse(&s, &labels, &[0, 1, 2], &[0, 1, 2], Direction::Greater).unwrap();
        for (f, row) in expected.iter().enumerate() {
            for (ti, &e) in row.iter().enumerate() {
                assert!(
                    (t.get(f, ti) - e).abs() < 1e-12,
                    "{f} {ti}: {}",
                    t.get(f, ti)
                );
            }
        }
        // two-sided: type b of feature 2 (0.4) is reported as 0.6, flipped
        let b = auroc_table_sparse(&s, &labels, &[2], &[1], Direction::Both).unwrap();
        assert!((b.get(0, 0) - 0.6).abs() < 1e-12 && b.flipped[0]);
        // shape errors as the dense table
        let short = LabelCodes::new(&["a".to_string()]);
        assert!(auroc_table_sparse(&s, &short, &[0], &[0], Direction::Greater).is_err());
        assert!(auroc_table_sparse(&s, &labels, &[3], &[0], Direction::Greater).is_err());
    }

    /// A random `n x f` matrix with `density` non-zeros drawn from a few values of either sign
    /// (ties), `-0.0` among the zeros, and labels over `t` types.
    fn random_case(
        n: usize,
        f: usize,
        t: usize,
        density: f64,
        seed: u64,
    ) -> (DenseMatrix, LabelCodes) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let levels = [-2.0f32, -0.5, 0.25, 1.0, 1.0, 3.0];
        let x: Vec<f32> = (0..n * f)
            .map(|_| {
                let u: f64 = rng.random();
                if u < density / 2.0 {
                    levels[rng.random_range(0..levels.len())]
                } else if u < density {
                    rng.random_range(-1.0f32..4.0)
                } else if u < density + 0.05 {
                    -0.0
                } else {
                    0.0
                }
            })
            .collect();
        let labels: Vec<String> = (0..n)
            .map(|_| format!("t{}", rng.random_range(0..t)))
            .collect();
        (DenseMatrix::new(n, f, x).unwrap(), LabelCodes::new(&labels))
    }

    #[test]
    fn equals_the_dense_midrank_table() {
        for (seed, (n, f, t, density)) in [
            (40, 5, 3, 0.3),
            (200, 17, 5, 0.05),
            (300, 8, 4, 0.9),
            (50, 4, 2, 0.0),
        ]
        .into_iter()
        .enumerate()
        {
            let (x, labels) = random_case(n, f, t, density, seed as u64);
            let s = SparseCodes::from_dense_chunked(&x, 7).unwrap();
            let feats: Vec<usize> = (0..f).collect();
            let types = labels.testable(1);
            for dir in [Direction::Greater, Direction::Both] {
                let d = auroc_table(&x, &labels, &feats, &types, dir).unwrap();
                let sp = auroc_table_sparse(&s, &labels, &feats, &types, dir).unwrap();
                assert_eq!(sp.flipped, d.flipped, "seed {seed}");
                for (a, b) in sp.values.iter().zip(&d.values) {
                    assert_eq!(a.to_bits(), b.to_bits(), "seed {seed}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn independent_of_chunks_and_threads() {
        let (x, labels) = random_case(120, 9, 4, 0.2, 99);
        let feats: Vec<usize> = (0..9).collect();
        let types = labels.testable(1);
        let table = |chunk: usize, threads: usize| {
            let s = SparseCodes::from_dense_chunked(&x, chunk).unwrap();
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| auroc_table_sparse(&s, &labels, &feats, &types, Direction::Both))
                .unwrap()
        };
        let reference = table(x.n_rows, 1);
        for (chunk, threads) in [(1, 1), (7, 3), (x.n_rows, 4), (1, 2)] {
            assert_eq!(
                table(chunk, threads),
                reference,
                "chunk {chunk}, {threads} threads"
            );
        }
    }
}
