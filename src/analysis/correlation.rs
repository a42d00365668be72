//! Gene attribution: Pearson correlation of every feature with every gene across cells.
//!
//! Features and genes are centred and scaled to unit norm in `f64`, genes are densified in blocks of
//! columns, and each block of correlations is one faer matrix product (`features x cells` times
//! `cells x genes`), so memory stays `O(cells x block)` however many genes there are. Per feature we
//! keep the top positive and negative genes and every gene above the enrichment cut-off.

use faer::Mat;
use rayon::prelude::*;
use serde::Serialize;

use crate::analysis::sparse_codes::SparseCodes;
use crate::data::CsrMatrix;
use crate::data::DenseMatrix;
use crate::error::{Error, Result};

/// How expression values are prepared before correlating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ExpressionTransform {
    /// Counts (all values non-negative integers) get `normalize_total(1e4)` + `log1p`; anything else is
    /// used as stored.
    #[default]
    Auto,
    /// Always `normalize_total(1e4)` + `log1p`.
    Log1p,
    /// Use the matrix as stored.
    AsIs,
}

impl std::str::FromStr for ExpressionTransform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "log1p" => Ok(Self::Log1p),
            "as-is" | "asis" | "none" => Ok(Self::AsIs),
            o => Err(Error::invalid(format!(
                "--expression {o}: expected auto, log1p or as-is"
            ))),
        }
    }
}

/// Target total per cell of the log1p normalisation (scanpy's `normalize_total(target_sum=1e4)`).
pub const NORMALISE_TOTAL: f64 = 1e4;

/// Whether `v` is a non-negative integer (a count).
pub fn is_count(v: f32) -> bool {
    v >= 0.0 && v.fract() == 0.0
}

/// Whether every stored value is a non-negative integer (a count matrix).
pub fn looks_like_counts(m: &CsrMatrix) -> bool {
    m.data.iter().all(|&v| is_count(v))
}

/// Scale each cell to `target` total and apply `ln(1 + x)`, like scanpy's `normalize_total` + `log1p`.
/// Cells with a zero total are left at zero.
pub fn normalize_log1p(m: &mut CsrMatrix, target: f64) {
    for r in 0..m.n_rows {
        let (a, b) = (m.indptr[r], m.indptr[r + 1]);
        normalize_log1p_row(&mut m.data[a..b], target);
    }
}

/// [`normalize_log1p`] of one cell's stored values.
pub fn normalize_log1p_row(values: &mut [f32], target: f64) {
    let total: f64 = values.iter().map(|&v| v as f64).sum();
    if total > 0.0 {
        let s = target / total;
        for v in values {
            *v = ((*v as f64) * s).ln_1p() as f32;
        }
    }
}

/// Whether `how` normalises (given whether the values are counts), and the sentence
/// [`prepare_expression`] returns for it.
pub fn transform_note(how: ExpressionTransform, counts: bool) -> (bool, String) {
    match how {
        ExpressionTransform::AsIs => (
            false,
            "expression used as stored (--expression as-is)".into(),
        ),
        ExpressionTransform::Log1p => (
            true,
            "expression normalised to 1e4 per cell and log1p-transformed (--expression log1p)"
                .into(),
        ),
        ExpressionTransform::Auto if counts => (
            true,
            "expression holds integer counts: normalised to 1e4 per cell and log1p-transformed"
                .into(),
        ),
        ExpressionTransform::Auto => (
            false,
            "expression holds non-integer values (already normalised): used as stored".into(),
        ),
    }
}

/// Apply `how` to `m`; returns a sentence saying what was done.
pub fn prepare_expression(m: &mut CsrMatrix, how: ExpressionTransform) -> String {
    let counts = how == ExpressionTransform::Auto && looks_like_counts(m);
    let (normalise, note) = transform_note(how, counts);
    if normalise {
        normalize_log1p(m, NORMALISE_TOTAL);
    }
    note
}

/// Options of the gene attribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AttributionOptions {
    /// Top positive and top negative genes kept per feature.
    pub top_k: usize,
    /// A gene is "correlated" with a feature (an enrichment hit) when `r > cutoff`.
    pub cutoff: f64,
    /// Genes per block of the streamed product.
    pub block: usize,
}

impl Default for AttributionOptions {
    fn default() -> Self {
        AttributionOptions {
            top_k: 10,
            cutoff: 0.1,
            block: 512,
        }
    }
}

/// Gene attribution of every feature.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneAttribution {
    /// Per feature: `(gene, r)` with the largest positive r, descending.
    pub top_positive: Vec<Vec<(usize, f64)>>,
    /// Per feature: `(gene, r)` with the most negative r, ascending.
    pub top_negative: Vec<Vec<(usize, f64)>>,
    /// Per feature: genes with `r > cutoff`, by decreasing r.
    pub hits: Vec<Vec<(usize, f64)>>,
    /// Per feature: genes with `r < -cutoff`, by increasing r (used for components of either sign).
    pub negative_hits: Vec<Vec<(usize, f64)>>,
    /// Per feature: whether it varies across cells (a constant feature has no correlations).
    pub feature_varies: Vec<bool>,
    /// Per gene: whether it varies across cells (constant genes are not "measured").
    pub gene_varies: Vec<bool>,
}

/// Centre and scale `v` to unit norm; `None` when it is constant.
fn standardise(v: &mut [f64]) -> bool {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let mut ss = 0.0;
    for x in v.iter_mut() {
        *x -= mean;
        ss += *x * *x;
    }
    if ss <= 0.0 || !ss.is_finite() {
        v.iter_mut().for_each(|x| *x = 0.0);
        return false;
    }
    let inv = 1.0 / ss.sqrt();
    v.iter_mut().for_each(|x| *x *= inv);
    true
}

/// Column-major transpose of CSR: `(colptr, row_indices, values)`.
fn csr_to_csc(m: &CsrMatrix) -> (Vec<usize>, Vec<u32>, Vec<f32>) {
    let mut colptr = vec![0usize; m.n_cols + 1];
    for &c in &m.indices {
        colptr[c as usize + 1] += 1;
    }
    for j in 0..m.n_cols {
        colptr[j + 1] += colptr[j];
    }
    let mut next = colptr.clone();
    let mut rows = vec![0u32; m.data.len()];
    let mut vals = vec![0f32; m.data.len()];
    for r in 0..m.n_rows {
        for k in m.indptr[r]..m.indptr[r + 1] {
            let c = m.indices[k] as usize;
            rows[next[c]] = r as u32;
            vals[next[c]] = m.data[k];
            next[c] += 1;
        }
    }
    (colptr, rows, vals)
}

/// Pearson correlation matrix `features x genes` (row-major), for tests and small inputs.
/// Constant features or genes give `NaN`, as numpy does.
pub fn pearson_matrix(features: &DenseMatrix, expr: &CsrMatrix) -> Result<Vec<f64>> {
    check_rows(features.n_rows, expr.n_rows)?;
    let (zf, fvar) = standardised_features(features);
    let n = features.n_rows;
    let dense = expr.to_dense();
    let mut zg = Mat::<f64>::zeros(n, expr.n_cols);
    let mut gvar = vec![false; expr.n_cols];
    for (j, gv) in gvar.iter_mut().enumerate() {
        let mut col: Vec<f64> = (0..n).map(|i| dense[i * expr.n_cols + j] as f64).collect();
        *gv = standardise(&mut col);
        zg.col_as_slice_mut(j).copy_from_slice(&col);
    }
    let c = &zf * &zg;
    let nf = features.n_cols;
    let mut out = vec![0f64; nf * expr.n_cols];
    for f in 0..nf {
        for g in 0..expr.n_cols {
            out[f * expr.n_cols + g] = if fvar[f] && gvar[g] {
                c[(f, g)]
            } else {
                f64::NAN
            };
        }
    }
    Ok(out)
}

/// Refuse features and expression of different cell counts, or fewer than 3 cells.
pub(crate) fn check_rows(n_rows: usize, expr_rows: usize) -> Result<()> {
    if n_rows != expr_rows {
        return Err(Error::invalid(format!(
            "features have {} cells but the expression matrix has {}",
            n_rows, expr_rows
        )));
    }
    if n_rows < 3 {
        return Err(Error::invalid(
            "gene attribution needs at least 3 cells".to_string(),
        ));
    }
    Ok(())
}

/// `features x cells` matrix of standardised feature columns, and which features vary.
fn standardised_features(x: &DenseMatrix) -> (Mat<f64>, Vec<bool>) {
    standardised_columns(x.n_cols, x.n_rows, |j| {
        (0..x.n_rows)
            .map(|i| x.data[i * x.n_cols + j] as f64)
            .collect()
    })
}

/// `nf x n` matrix of the standardised columns `column(0..nf)` (each `n` long), and which of them
/// vary.
fn standardised_columns(
    nf: usize,
    n: usize,
    column: impl Fn(usize) -> Vec<f64> + Sync,
) -> (Mat<f64>, Vec<bool>) {
    let cols: Vec<(Vec<f64>, bool)> = (0..nf)
        .into_par_iter()
        .map(|j| {
            let mut v = column(j);
            let ok = standardise(&mut v);
            (v, ok)
        })
        .collect();
    let m = Mat::from_fn(nf, n, |f, i| cols[f].0[i]);
    (m, cols.iter().map(|c| c.1).collect())
}

/// One feature's correlations `r` (one per gene) summarised as in [`GeneAttribution`]: top positive,
/// top negative, hits and negative hits, over the genes that vary.
pub(crate) fn summarise_feature(
    r: &[f64],
    gene_varies: &[bool],
    opts: &AttributionOptions,
) -> [Vec<(usize, f64)>; 4] {
    let (mut tp, mut tn, mut h, mut nh) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (g, (&r, _)) in r
        .iter()
        .zip(gene_varies)
        .enumerate()
        .filter(|(_, (_, &v))| v)
    {
        if r > opts.cutoff {
            h.push((g, r));
        } else if r < -opts.cutoff {
            nh.push((g, r));
        }
        if r > 0.0 {
            tp.push((g, r));
        } else if r < 0.0 {
            tn.push((g, r));
        }
    }
    keep_top(&mut tp, opts.top_k, true);
    keep_top(&mut tn, opts.top_k, false);
    keep_top(&mut h, usize::MAX, true);
    keep_top(&mut nh, usize::MAX, false);
    [tp, tn, h, nh]
}

/// Keep the `k` best of `v` by `better` (a strict "is better" order), sorted best first.
fn keep_top(v: &mut Vec<(usize, f64)>, k: usize, desc: bool) {
    if desc {
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    } else {
        v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    }
    v.truncate(k);
}

/// Correlate every column of `features` (cells x features) with every gene of `expr` (cells x genes,
/// rows in the same cell order) and summarise per feature.
pub fn attribute_genes(
    features: &DenseMatrix,
    expr: &CsrMatrix,
    opts: &AttributionOptions,
) -> Result<GeneAttribution> {
    check_rows(features.n_rows, expr.n_rows)?;
    let (zf, feature_varies) = standardised_features(features);
    attribute_standardised(&zf, feature_varies, expr, opts)
}

/// [`attribute_genes`] of the columns `cols` of sparse codes (the same numbers as on their dense
/// copy), without the dense `cells x features` matrix: each column is densified only to be
/// standardised.
pub fn attribute_genes_sparse(
    features: &SparseCodes,
    cols: &[usize],
    expr: &CsrMatrix,
    opts: &AttributionOptions,
) -> Result<GeneAttribution> {
    check_rows(features.n_rows, expr.n_rows)?;
    let (zf, feature_varies) = standardised_columns(cols.len(), features.n_rows, |k| {
        let c = &features.columns[cols[k]];
        let mut v = vec![0f64; features.n_rows];
        for (&r, &x) in c.rows.iter().zip(&c.values) {
            v[r as usize] = x as f64;
        }
        v
    });
    attribute_standardised(&zf, feature_varies, expr, opts)
}

/// The attribution from standardised features (`features x cells`).
fn attribute_standardised(
    zf: &Mat<f64>,
    feature_varies: Vec<bool>,
    expr: &CsrMatrix,
    opts: &AttributionOptions,
) -> Result<GeneAttribution> {
    let n = expr.n_rows;
    let nf = zf.nrows();
    let (colptr, rows, vals) = csr_to_csc(expr);
    let mut gene_varies = vec![false; expr.n_cols];
    let mut top_pos: Vec<Vec<(usize, f64)>> = vec![Vec::new(); nf];
    let mut top_neg: Vec<Vec<(usize, f64)>> = vec![Vec::new(); nf];
    let mut hits: Vec<Vec<(usize, f64)>> = vec![Vec::new(); nf];
    let mut neg_hits: Vec<Vec<(usize, f64)>> = vec![Vec::new(); nf];
    let block = opts.block.max(1);
    let mut start = 0;
    while start < expr.n_cols {
        let end = (start + block).min(expr.n_cols);
        let cols: Vec<(Vec<f64>, bool)> = (start..end)
            .into_par_iter()
            .map(|j| {
                let mut v = vec![0f64; n];
                for k in colptr[j]..colptr[j + 1] {
                    v[rows[k] as usize] = vals[k] as f64;
                }
                let ok = standardise(&mut v);
                (v, ok)
            })
            .collect();
        for (k, c) in cols.iter().enumerate() {
            gene_varies[start + k] = c.1;
        }
        let zg = Mat::from_fn(n, end - start, |i, j| cols[j].0[i]);
        let c = zf * &zg;
        let varies = &gene_varies[start..end];
        top_pos
            .par_iter_mut()
            .zip(top_neg.par_iter_mut())
            .zip(hits.par_iter_mut())
            .zip(neg_hits.par_iter_mut())
            .enumerate()
            .for_each(|(f, (((tp, tn), h), nh))| {
                if !feature_varies[f] {
                    return;
                }
                for (j, &ok) in varies.iter().enumerate() {
                    if !ok {
                        continue;
                    }
                    let r = c[(f, j)];
                    let g = start + j;
                    if r > opts.cutoff {
                        h.push((g, r));
                    } else if r < -opts.cutoff {
                        nh.push((g, r));
                    }
                    if r > 0.0 {
                        tp.push((g, r));
                    } else if r < 0.0 {
                        tn.push((g, r));
                    }
                }
                keep_top(tp, opts.top_k, true);
                keep_top(tn, opts.top_k, false);
            });
        start = end;
    }
    hits.par_iter_mut()
        .for_each(|h| keep_top(h, usize::MAX, true));
    neg_hits
        .par_iter_mut()
        .for_each(|h| keep_top(h, usize::MAX, false));
    Ok(GeneAttribution {
        top_positive: top_pos,
        top_negative: top_neg,
        hits,
        negative_hits: neg_hits,
        feature_varies,
        gene_varies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_correlations() {
        // feature (1,2,3,4); genes: (2,4,6,8) r = 1, (4,3,2,1) r = -1, (1,0,0,1) r = 0, constant
        let f = DenseMatrix::new(4, 1, vec![1., 2., 3., 4.]).unwrap();
        let e = CsrMatrix::from_dense(
            4,
            4,
            &[
                2., 4., 1., 5., 4., 3., 0., 5., 6., 2., 0., 5., 8., 1., 1., 5.,
            ],
        );
        let r = pearson_matrix(&f, &e).unwrap();
        assert!((r[0] - 1.0).abs() < 1e-15 && (r[1] + 1.0).abs() < 1e-15 && r[2].abs() < 1e-15);
        assert!(r[3].is_nan());
        let a = attribute_genes(
            &f,
            &e,
            &AttributionOptions {
                top_k: 1,
                cutoff: 0.1,
                block: 3,
            },
        )
        .unwrap();
        assert_eq!(a.top_positive[0][0].0, 0);
        assert_eq!(a.top_negative[0][0].0, 1);
        assert_eq!(a.hits[0].len(), 1);
        assert_eq!(a.gene_varies, vec![true, true, true, false]);
    }

    #[test]
    fn counts_are_detected_and_normalised() {
        let mut m = CsrMatrix::from_dense(2, 2, &[1., 3., 0., 2.]);
        assert!(looks_like_counts(&m));
        let msg = prepare_expression(&mut m, ExpressionTransform::Auto);
        assert!(msg.contains("counts"));
        assert!((m.data[0] as f64 - (2500f64).ln_1p()).abs() < 1e-3);
        assert!(!looks_like_counts(&m));
        let msg = prepare_expression(&mut m, ExpressionTransform::Auto);
        assert!(msg.contains("used as stored"));
    }
}
