//! Gene attribution at atlas size: the Pearson correlation of every feature with every gene from
//! sums, without a dense `cells x features` or `cells x genes` matrix.
//!
//! For feature `x` (column-sparse codes) and gene `y` (CSR expression), over `n` cells,
//! `r = (Sxy - Sx Sy / n) / sqrt(SSx SSy)`, where `Sxy = sum_i x_i y_i` runs only over the cells where
//! both are non-zero, and the centred sums of squares are exact from the stored values
//! (`SS = sum_stored (v - m)^2 + (n - nnz) m^2`). One feature at a time (parallel over features) adds
//! each of its non-zero cells' expression rows into a per-gene accumulator, so memory is one
//! gene-length vector per thread, and time `O(sum over cells of L0 x expressed genes)`. The result
//! summarised per feature is that of [`super::correlation::attribute_genes`]; the numbers agree with its
//! centred-and-scaled product to about `1e-12` (another summation order), not bit for bit.

use rayon::prelude::*;

use crate::analysis::correlation::{
    attribute_genes_sparse, check_rows, summarise_feature, AttributionOptions, GeneAttribution,
};
use crate::analysis::expression_rows::ExpressionRows;
use crate::analysis::sparse_codes::{SparseCodes, SparseColumn};
use crate::error::Result;

/// Largest `f64` matrices (standardised features plus one block of genes, `cells x (features +
/// block) x 8` bytes) for which [`attribute_genes_auto`] takes the dense product.
pub const DENSE_ATTRIBUTION_BYTES: usize = 1 << 30;

/// Largest per-feature gene accumulators (`features x genes x 8` bytes) of one visit of the
/// expression in [`attribute_genes_by_sums`]; more features take more visits.
pub const ACCUMULATOR_BYTES: usize = 256 << 20;

/// Gene attribution of the columns `cols` of `features`: the dense product
/// ([`attribute_genes_sparse`], the reference numbers) when the expression is held in memory and
/// the product's matrices fit in [`DENSE_ATTRIBUTION_BYTES`], otherwise
/// [`attribute_genes_by_sums`], whose memory does not grow with the number of cells. The choice
/// depends only on the shapes and on where the expression is.
pub fn attribute_genes_auto(
    features: &SparseCodes,
    cols: &[usize],
    expr: &ExpressionRows,
    opts: &AttributionOptions,
) -> Result<GeneAttribution> {
    let bytes = features
        .n_rows
        .saturating_mul(cols.len() + opts.block.max(1))
        .saturating_mul(8);
    match expr.matrix() {
        Some(m) if bytes <= DENSE_ATTRIBUTION_BYTES => {
            attribute_genes_sparse(features, cols, m, opts)
        }
        _ => attribute_genes_by_sums(features, cols, expr, opts),
    }
}

/// Sum and centred sum of squares of a sparse vector of length `n` (stored `values`).
fn centred_sums(values: &[f32], n: usize) -> (f64, f64) {
    let sum = values.iter().fold(0f64, |s, &v| s + v as f64);
    let mean = sum / n as f64;
    let stored = values
        .iter()
        .fold(0f64, |s, &v| s + (v as f64 - mean).powi(2));
    (sum, stored + (n - values.len()) as f64 * mean * mean)
}

/// Whether a sparse column takes at least two values (a stored one next to an implicit zero, or two
/// different stored ones).
fn column_varies(c: &SparseColumn, n: usize) -> bool {
    (c.nnz() > 0 && c.nnz() < n) || c.values.windows(2).any(|w| w[0] != w[1])
}

/// One feature's products with every gene, summed over a visit of the expression.
struct FeatureSums {
    /// Column of the features.
    col: usize,
    /// Next stored value of the column to add.
    cursor: usize,
    /// Per gene: `sum_i x_i y_i`.
    sxy: Vec<f64>,
}

/// [`super::correlation::attribute_genes`] of the columns `cols` of `features` (cells in the order of
/// `expr`'s rows), from sums (see the module). The genes' sums come with the expression
/// ([`ExpressionRows::stats`]); the expression is visited a block of cells at a time once per group
/// of varying features whose accumulators fit in [`ACCUMULATOR_BYTES`] (the first of these visits
/// also sums the genes' centred squares; no visit when no feature varies). Every sum runs over the
/// cells in order, so the numbers do not depend on the blocks or the groups.
pub fn attribute_genes_by_sums(
    features: &SparseCodes,
    cols: &[usize],
    expr: &ExpressionRows,
    opts: &AttributionOptions,
) -> Result<GeneAttribution> {
    let n = features.n_rows;
    check_rows(n, expr.n_rows())?;
    let ng = expr.n_cols();
    let stats = expr.stats();
    let mean: Vec<f64> = stats.sum.iter().map(|&s| s / n as f64).collect();
    // per gene: centred sum of squares, summed in the first visit of the features
    let mut ssy = vec![0f64; ng];
    let varying: Vec<usize> = cols
        .iter()
        .copied()
        .filter(|&j| column_varies(&features.columns[j], n))
        .collect();
    let per_visit = (ACCUMULATOR_BYTES / (8 * ng.max(1))).max(1);
    let mut summaries = std::collections::HashMap::with_capacity(varying.len());
    let mut first_visit = true;
    for group in varying.chunks(per_visit) {
        let mut sums: Vec<FeatureSums> = group
            .iter()
            .map(|&col| FeatureSums {
                col,
                cursor: 0,
                sxy: vec![0f64; ng],
            })
            .collect();
        expr.visit(&mut |first, block| {
            if first_visit {
                for (&g, &v) in block.indices.iter().zip(&block.data) {
                    let g = g as usize;
                    ssy[g] += (v as f64 - mean[g]).powi(2);
                }
            }
            let end = first + block.n_rows;
            sums.par_iter_mut().for_each(|f| {
                let c = &features.columns[f.col];
                while f.cursor < c.rows.len() && (c.rows[f.cursor] as usize) < end {
                    let x = c.values[f.cursor] as f64;
                    let (idx, val) = block.row(c.rows[f.cursor] as usize - first);
                    for (&g, &y) in idx.iter().zip(val) {
                        f.sxy[g as usize] += x * y as f64;
                    }
                    f.cursor += 1;
                }
            });
            Ok(())
        })?;
        if first_visit {
            for g in 0..ng {
                ssy[g] += (n - stats.nnz[g]) as f64 * mean[g] * mean[g];
            }
            first_visit = false;
        }
        let done: Vec<_> = sums
            .into_par_iter()
            .map(|f| {
                let (sx, ssx) = centred_sums(&features.columns[f.col].values, n);
                let r: Vec<f64> = f
                    .sxy
                    .iter()
                    .zip(&stats.sum)
                    .zip(&ssy)
                    .map(|((&p, &sy), &ss)| (p - sx * sy / n as f64) / (ssx * ss).sqrt())
                    .collect();
                (f.col, summarise_feature(&r, &stats.varies, opts))
            })
            .collect();
        summaries.extend(done);
    }
    let mut out = GeneAttribution {
        top_positive: Vec::with_capacity(cols.len()),
        top_negative: Vec::with_capacity(cols.len()),
        hits: Vec::with_capacity(cols.len()),
        negative_hits: Vec::with_capacity(cols.len()),
        feature_varies: Vec::with_capacity(cols.len()),
        gene_varies: stats.varies.clone(),
    };
    for &j in cols {
        let (varies, [tp, tn, h, nh]) = match summaries.get(&j) {
            Some(s) => (true, s.clone()),
            None => (false, Default::default()),
        };
        out.feature_varies.push(varies);
        out.top_positive.push(tp);
        out.top_negative.push(tn);
        out.hits.push(h);
        out.negative_hits.push(nh);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::correlation::attribute_genes;
    use crate::data::CsrMatrix;
    use crate::data::DenseMatrix;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn agrees_with_the_dense_attribution() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (n, nf, ng) = (150, 12, 40);
        let mut x: Vec<f32> = (0..n * nf)
            .map(|_| {
                if rng.random::<f64>() < 0.15 {
                    rng.random_range(0..4) as f32 * 0.5 + 0.5
                } else {
                    0.0
                }
            })
            .collect();
        // a dead feature and a constant non-zero one
        for i in 0..n {
            x[i * nf + 3] = 0.0;
            x[i * nf + 4] = 2.0;
        }
        let g: Vec<f32> = (0..n * ng)
            .map(|k| {
                if k % ng == 7 {
                    0.0 // a gene never expressed
                } else if rng.random::<f64>() < 0.3 {
                    rng.random_range(1..6) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let expr = CsrMatrix::from_dense(n, ng, &g);
        let dense = DenseMatrix::new(n, nf, x).unwrap();
        let sparse = SparseCodes::from_dense(&dense).unwrap();
        let cols: Vec<usize> = (0..nf).collect();
        let opts = AttributionOptions {
            top_k: 5,
            cutoff: 0.05,
            block: 16,
        };
        let a = attribute_genes(&dense, &expr, &opts).unwrap();
        let b = attribute_genes_by_sums(
            &sparse,
            &cols,
            &ExpressionRows::from_matrix(expr.clone()),
            &opts,
        )
        .unwrap();
        assert_eq!(a.feature_varies, b.feature_varies);
        assert!(!b.feature_varies[3] && !b.feature_varies[4]);
        assert_eq!(a.gene_varies, b.gene_varies);
        let same = |p: &[Vec<(usize, f64)>], q: &[Vec<(usize, f64)>]| {
            assert_eq!(p.len(), q.len());
            for (u, v) in p.iter().zip(q) {
                let genes = |w: &[(usize, f64)]| w.iter().map(|e| e.0).collect::<Vec<_>>();
                assert_eq!(genes(u), genes(v));
                for (s, t) in u.iter().zip(v) {
                    assert!((s.1 - t.1).abs() < 1e-12, "{s:?} vs {t:?}");
                }
            }
        };
        same(&a.top_positive, &b.top_positive);
        same(&a.top_negative, &b.top_negative);
        same(&a.hits, &b.hits);
        same(&a.negative_hits, &b.negative_hits);
        assert!(b.hits.iter().map(Vec::len).sum::<usize>() > 0);
    }
}
