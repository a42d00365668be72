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
use crate::analysis::pipeline::varying_genes;
use crate::analysis::sparse_codes::{SparseCodes, SparseColumn};
use crate::data::CsrMatrix;
use crate::error::Result;

/// Largest `f64` matrices (standardised features plus one block of genes, `cells x (features +
/// block) x 8` bytes) for which [`attribute_genes_auto`] takes the dense product.
pub const DENSE_ATTRIBUTION_BYTES: usize = 1 << 30;

/// Gene attribution of the columns `cols` of `features`: the dense product
/// ([`attribute_genes_sparse`], the reference numbers) when its matrices fit in
/// [`DENSE_ATTRIBUTION_BYTES`], otherwise [`attribute_genes_by_sums`], whose memory does not grow
/// with the number of cells. The choice depends only on the shapes.
pub fn attribute_genes_auto(
    features: &SparseCodes,
    cols: &[usize],
    expr: &CsrMatrix,
    opts: &AttributionOptions,
) -> Result<GeneAttribution> {
    let bytes = features
        .n_rows
        .saturating_mul(cols.len() + opts.block.max(1))
        .saturating_mul(8);
    if bytes <= DENSE_ATTRIBUTION_BYTES {
        attribute_genes_sparse(features, cols, expr, opts)
    } else {
        attribute_genes_by_sums(features, cols, expr, opts)
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

/// [`super::correlation::attribute_genes`] of the columns `cols` of `features` (cells in the order of
/// `expr`'s rows), from sums (see the module).
pub fn attribute_genes_by_sums(
    features: &SparseCodes,
    cols: &[usize],
    expr: &CsrMatrix,
    opts: &AttributionOptions,
) -> Result<GeneAttribution> {
    let n = features.n_rows;
    check_rows(n, expr)?;
    let ng = expr.n_cols;
    // per gene: sum and centred sum of squares, from its stored values (CSR order)
    let mut gene_values: Vec<Vec<f32>> = vec![Vec::new(); ng];
    for (&g, &v) in expr.indices.iter().zip(&expr.data) {
        gene_values[g as usize].push(v);
    }
    let gene_sums: Vec<(f64, f64)> = gene_values.par_iter().map(|v| centred_sums(v, n)).collect();
    drop(gene_values);
    let gene_varies = varying_genes(expr);
    let per_feature: Vec<_> = cols
        .par_iter()
        .map(|&j| {
            let c = &features.columns[j];
            if !column_varies(c, n) {
                return (false, [Vec::new(), Vec::new(), Vec::new(), Vec::new()]);
            }
            let (sx, ssx) = centred_sums(&c.values, n);
            let mut sxy = vec![0f64; ng];
            for (&i, &x) in c.rows.iter().zip(&c.values) {
                let (idx, val) = expr.row(i as usize);
                let x = x as f64;
                for (&g, &y) in idx.iter().zip(val) {
                    sxy[g as usize] += x * y as f64;
                }
            }
            let r: Vec<f64> = sxy
                .iter()
                .zip(&gene_sums)
                .map(|(&p, &(sy, ssy))| (p - sx * sy / n as f64) / (ssx * ssy).sqrt())
                .collect();
            (true, summarise_feature(&r, &gene_varies, opts))
        })
        .collect();
    let mut out = GeneAttribution {
        top_positive: Vec::with_capacity(cols.len()),
        top_negative: Vec::with_capacity(cols.len()),
        hits: Vec::with_capacity(cols.len()),
        negative_hits: Vec::with_capacity(cols.len()),
        feature_varies: Vec::with_capacity(cols.len()),
        gene_varies,
    };
    for (varies, [tp, tn, h, nh]) in per_feature {
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
        let b = attribute_genes_by_sums(&sparse, &cols, &expr, &opts).unwrap();
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
