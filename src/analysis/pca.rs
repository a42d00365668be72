//! PCA baseline: top principal components of centred cell-level activations (or any matrix), by an
//! exact thin SVD, a seeded randomised SVD (Halko et al. 2011), or the eigendecomposition of the
//! covariance matrix accumulated a block of rows at a time (sklearn's `covariance_eigh`), all in pure
//! Rust with faer.
//!
//! Conventions follow sklearn's `PCA`: `explained_variance = s^2 / (n - 1)`, ratios against the total
//! variance, scores = centred data times components, and each component's sign fixed so that its
//! largest-magnitude loading is positive (`svd_flip(u_based_decision=False)`).
//!
//! At atlas size (10^6 cells x 512 activations) the SVD solvers need the centred matrix in `f64`
//! (4 GB) and more; [`fit_pca_axes`] with [`PcaSolver::CovarianceEigh`] needs `d x d` numbers and two
//! passes over row blocks ([`RowBlocks`]), and [`PcaAxes::project`] turns any block of rows into
//! scores, so the caller decides where the scores go.

use crate::analysis::expression_rows::ExpressionRows;
use faer::{Mat, Side};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::DenseMatrix;
use crate::error::{Error, Result};

/// SVD algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PcaSolver {
    /// Exact thin SVD when the matrix is small (`min(n, d) <= 1000`), randomised otherwise.
    #[default]
    Auto,
    /// Exact thin SVD of the centred matrix.
    Exact,
    /// Randomised SVD: 10 oversamples, 7 power iterations (sklearn's defaults), seeded.
    Randomized,
    /// Eigendecomposition of the `d x d` covariance matrix, accumulated a block of rows at a time
    /// (sklearn's `covariance_eigh`): memory `d x d` whatever the number of cells. [`PcaSolver::Auto`]
    /// takes it, as sklearn does, when `d <= 1000` and there are at least `10 d` cells.
    CovarianceEigh,
}

impl std::str::FromStr for PcaSolver {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "exact" | "full" => Ok(Self::Exact),
            "randomized" | "randomised" => Ok(Self::Randomized),
            "covariance-eigh" | "covariance_eigh" | "covariance" => Ok(Self::CovarianceEigh),
            o => Err(Error::invalid(format!(
                "--pca-solver {o}: expected auto, exact, randomized or covariance-eigh"
            ))),
        }
    }
}

impl PcaSolver {
    /// The solver [`PcaSolver::Auto`] stands for on an `n x d` matrix (others stand for themselves):
    /// the covariance eigendecomposition when `d <= 1000` and `n >= 10 d` (sklearn >= 1.5's rule),
    /// else the exact SVD when `min(n, d) <= 1000`, else the randomised SVD.
    pub fn resolve(self, n: usize, d: usize) -> PcaSolver {
        match self {
            PcaSolver::Auto if d <= 1000 && n >= 10 * d => PcaSolver::CovarianceEigh,
            PcaSolver::Auto if n.min(d) <= 1000 => PcaSolver::Exact,
            PcaSolver::Auto => PcaSolver::Randomized,
            s => s,
        }
    }
}

/// A `cells x d` matrix read a block of rows at a time, in row order (a matrix in memory, or the
/// parts of an extraction folder).
pub trait RowBlocks {
    /// Number of rows.
    fn n_rows(&self) -> usize;
    /// Width of every row.
    fn n_cols(&self) -> usize;
    /// Call `f(block, rows)` on consecutive blocks (`rows x d` values, row-major) covering every row
    /// once, in order.
    fn visit_rows(&self, f: &mut dyn FnMut(&[f32], usize) -> Result<()>) -> Result<()>;
}

/// Rows per block when a [`DenseMatrix`] is visited as [`RowBlocks`].
pub const BLOCK_ROWS: usize = 4096;

impl RowBlocks for DenseMatrix {
    fn n_rows(&self) -> usize {
        self.n_rows
    }
    fn n_cols(&self) -> usize {
        self.n_cols
    }
    fn visit_rows(&self, f: &mut dyn FnMut(&[f32], usize) -> Result<()>) -> Result<()> {
        let d = self.n_cols.max(1);
        for block in self.data.chunks(BLOCK_ROWS * d) {
            f(block, block.len() / d)?;
        }
        Ok(())
    }
}

/// Some columns (genes) of the analysed cells' expression, visited as dense [`RowBlocks`] of
/// [`BLOCK_ROWS`] rows (the expression PCA baseline: the measured genes, never densified all at
/// once, and never held whole when the expression is read by rows).
pub struct CsrColumnBlocks<'a> {
    m: &'a ExpressionRows,
    /// Position of each column in the output row, or `usize::MAX` for a column left out.
    slot: Vec<usize>,
    width: usize,
}

impl<'a> CsrColumnBlocks<'a> {
    /// The columns `keep` (increasing) of `m`.
    pub fn new(m: &'a ExpressionRows, keep: Vec<usize>) -> CsrColumnBlocks<'a> {
        let mut slot = vec![usize::MAX; m.n_cols()];
        for (o, &j) in keep.iter().enumerate() {
            slot[j] = o;
        }
        CsrColumnBlocks {
            m,
            slot,
            width: keep.len(),
        }
    }
}

impl RowBlocks for CsrColumnBlocks<'_> {
    fn n_rows(&self) -> usize {
        self.m.n_rows()
    }
    fn n_cols(&self) -> usize {
        self.width
    }
    fn visit_rows(&self, f: &mut dyn FnMut(&[f32], usize) -> Result<()>) -> Result<()> {
        self.m.visit(&mut |_, b| {
            let mut block = vec![0f32; b.n_rows * self.width];
            for i in 0..b.n_rows {
                let (idx, val) = b.row(i);
                for (&j, &v) in idx.iter().zip(val) {
                    let o = self.slot[j as usize];
                    if o != usize::MAX {
                        block[i * self.width + o] = v;
                    }
                }
            }
            f(&block, b.n_rows)
        })
    }
}

/// The fitted axes of a PCA, without scores.
#[derive(Debug, Clone, PartialEq)]
pub struct PcaAxes {
    /// Per-column mean that was subtracted.
    pub mean: Vec<f64>,
    /// `k x d` components (rows are unit-norm principal axes), row-major.
    pub components: Vec<f64>,
    /// Singular values of the centred matrix.
    pub singular_values: Vec<f64>,
    /// `s^2 / (n - 1)` per component.
    pub explained_variance: Vec<f64>,
    /// Explained variance over the total variance.
    pub explained_variance_ratio: Vec<f64>,
    /// The solver actually used.
    pub solver: PcaSolver,
}

impl PcaAxes {
    /// Number of components.
    pub fn k(&self) -> usize {
        self.singular_values.len()
    }

    /// Width of the rows the axes were fitted on.
    pub fn d(&self) -> usize {
        self.mean.len()
    }

    /// Column names of the scores: `PC1, PC2, ...`.
    pub fn score_names(&self) -> Vec<String> {
        (1..=self.k()).map(|i| format!("PC{i}")).collect()
    }

    /// Scores of `rows` rows (`rows x d` values, row-major): `rows x k`, the centred rows times the
    /// components, computed in `f64` and rounded to `f32`. Row by row, so a row's scores do not
    /// depend on the block it comes in.
    pub fn project(&self, block: &[f32], rows: usize) -> Result<Vec<f32>> {
        let (d, k) = (self.d(), self.k());
        if block.len() != rows * d {
            return Err(Error::invalid(format!(
                "PCA projection: {} values for {rows} rows of {d}",
                block.len()
            )));
        }
        let mut out = vec![0f32; rows * k];
        out.par_chunks_mut(k.max(1))
            .zip(block.par_chunks(d.max(1)))
            .for_each(|(o, x)| {
                for (c, s) in o.iter_mut().enumerate() {
                    let comp = &self.components[c * d..(c + 1) * d];
                    let mut acc = 0f64;
                    for ((&v, &m), &w) in x.iter().zip(&self.mean).zip(comp) {
                        acc += (v as f64 - m) * w;
                    }
                    *s = acc as f32;
                }
            });
        Ok(out)
    }
}

/// A fitted PCA with the scores of the rows it was fitted on.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// The axes, variances and solver.
    pub axes: PcaAxes,
    /// `n x k` scores (centred data times components), with the input's row ids and columns `PC1..`.
    pub scores: DenseMatrix,
}

fn centred(x: &DenseMatrix) -> (Mat<f64>, Vec<f64>) {
    let (n, d) = (x.n_rows, x.n_cols);
    let mut mean = vec![0f64; d];
    for i in 0..n {
        for (m, &v) in mean.iter_mut().zip(x.row(i)) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let a = Mat::from_fn(n, d, |i, j| x.data[i * d + j] as f64 - mean[j]);
    (a, mean)
}

fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `(U, s, V)` truncated to `k`: exact thin SVD.
fn exact_svd(a: &Mat<f64>, k: usize) -> Result<(Mat<f64>, Vec<f64>, Mat<f64>)> {
    let svd = a
        .thin_svd()
        .map_err(|e| Error::invalid(format!("SVD did not converge: {e:?}")))?;
    let s = svd.S().column_vector();
    let sv: Vec<f64> = (0..k).map(|i| s[i]).collect();
    let u = svd.U().get(.., 0..k).to_owned();
    let v = svd.V().get(.., 0..k).to_owned();
    Ok((u, sv, v))
}

/// Randomised SVD (Halko, Martinsson & Tropp; as sklearn's `randomized_svd` with QR normalisation).
fn randomized_svd(
    a: &Mat<f64>,
    k: usize,
    n_oversamples: usize,
    n_iter: usize,
    seed: u64,
) -> Result<(Mat<f64>, Vec<f64>, Mat<f64>)> {
    let (n, d) = (a.nrows(), a.ncols());
    let l = (k + n_oversamples).min(n.min(d));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let omega = Mat::from_fn(d, l, |_, _| gaussian(&mut rng));
    let mut q = (a * &omega).qr().compute_thin_Q();
    for _ in 0..n_iter {
        let z = (a.transpose() * &q).qr().compute_thin_Q();
        q = (a * &z).qr().compute_thin_Q();
    }
    let b = q.transpose() * a; // l x d
    let (ub, s, v) = exact_svd(&b, k)?;
    let u = &q * &ub;
    Ok((u, s, v))
}

/// The components of `v` (`d x k`, one per column) with sklearn's sign rule (largest |loading|
/// positive), as `k x d` row-major.
fn flipped_components(v: &Mat<f64>, k: usize) -> Vec<f64> {
    let d = v.nrows();
    let mut components = vec![0f64; k * d];
    for c in 0..k {
        let mut best = 0usize;
        for j in 0..d {
            if v[(j, c)].abs() > v[(best, c)].abs() {
                best = j;
            }
        }
        let sign = if v[(best, c)] < 0.0 { -1.0 } else { 1.0 };
        for j in 0..d {
            components[c * d + j] = sign * v[(j, c)];
        }
    }
    components
}

/// Checks shared by the solvers; returns the number of components kept (`k`, at most `min(n, d)`).
fn check_shape(n: usize, d: usize, k: usize) -> Result<usize> {
    if n < 2 {
        return Err(Error::invalid("PCA needs at least 2 cells"));
    }
    let k = k.min(n.min(d));
    if k == 0 {
        return Err(Error::invalid("PCA needs at least one component"));
    }
    Ok(k)
}

/// Axes from singular values `s` (`k`), right singular vectors `v` (`d x k`) and the total sum of
/// squares of the centred matrix.
fn axes_from(
    mean: Vec<f64>,
    s: Vec<f64>,
    v: &Mat<f64>,
    total_ss: f64,
    n: usize,
    solver: PcaSolver,
) -> PcaAxes {
    let k = s.len();
    let total_var = total_ss / (n as f64 - 1.0);
    let explained_variance: Vec<f64> = s.iter().map(|s| s * s / (n as f64 - 1.0)).collect();
    let explained_variance_ratio = explained_variance
        .iter()
        .map(|v| if total_var > 0.0 { v / total_var } else { 0.0 })
        .collect();
    PcaAxes {
        mean,
        components: flipped_components(v, k),
        singular_values: s,
        explained_variance,
        explained_variance_ratio,
        solver,
    }
}

/// The covariance solver: two passes over `x` (the column means in `f64`, then the centred
/// cross-product `A^T A` a block at a time), then the symmetric eigendecomposition. Eigenvalues
/// below zero (rounding) count as zero.
fn covariance_axes(x: &dyn RowBlocks, k: usize) -> Result<PcaAxes> {
    let (n, d) = (x.n_rows(), x.n_cols());
    let mut sum = vec![0f64; d];
    let mut seen = 0usize;
    x.visit_rows(&mut |block, rows| {
        for row in block.chunks_exact(d.max(1)) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += v as f64;
            }
        }
        seen += rows;
        Ok(())
    })?;
    if seen != n {
        return Err(Error::invalid(format!(
            "PCA: {seen} rows read, {n} expected"
        )));
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
    let mut cov = Mat::<f64>::zeros(d, d);
    x.visit_rows(&mut |block, rows| {
        let a = Mat::from_fn(rows, d, |i, j| block[i * d + j] as f64 - mean[j]);
        faer::linalg::matmul::matmul(
            cov.as_mut(),
            faer::Accum::Add,
            a.transpose(),
            a.as_ref(),
            1.0,
            faer::Par::Seq,
        );
        Ok(())
    })?;
    let total_ss: f64 = (0..d).map(|j| cov[(j, j)]).sum();
    let evd = cov
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::invalid(format!("eigendecomposition did not converge: {e:?}")))?;
    let (ev, u) = (evd.S().column_vector(), evd.U());
    // eigenvalues come in increasing order: the top k are the last k, reversed
    let s: Vec<f64> = (0..k).map(|c| ev[d - 1 - c].max(0.0).sqrt()).collect();
    let v = Mat::from_fn(d, k, |j, c| u[(j, d - 1 - c)]);
    Ok(axes_from(
        mean,
        s,
        &v,
        total_ss,
        n,
        PcaSolver::CovarianceEigh,
    ))
}

/// Fit the top `k` principal axes of the rows of `x` without computing scores. The covariance
/// solver reads `x` a block at a time (memory `d x d`); the SVD solvers gather it into one centred
/// `f64` matrix first. `seed` drives the randomised solver.
pub fn fit_pca_axes(x: &dyn RowBlocks, k: usize, solver: PcaSolver, seed: u64) -> Result<PcaAxes> {
    let (n, d) = (x.n_rows(), x.n_cols());
    let k = check_shape(n, d, k)?;
    match solver.resolve(n, d) {
        PcaSolver::CovarianceEigh => covariance_axes(x, k),
        solver => {
            let mut data = Vec::with_capacity(n * d);
            x.visit_rows(&mut |block, _| {
                data.extend_from_slice(block);
                Ok(())
            })?;
            let m = DenseMatrix::new(n, d, data)?;
            Ok(svd_fit(&m, k, solver, seed)?.0)
        }
    }
}

/// The SVD solvers on `x`: the axes and the centred matrix.
fn svd_fit(x: &DenseMatrix, k: usize, solver: PcaSolver, seed: u64) -> Result<(PcaAxes, Mat<f64>)> {
    let n = x.n_rows;
    let (a, mean) = centred(x);
    let (_u, s, v) = match solver {
        PcaSolver::Randomized => randomized_svd(&a, k, 10, 7, seed)?,
        _ => exact_svd(&a, k)?,
    };
    let total_ss: f64 = a
        .as_ref()
        .col_iter()
        .map(|c| c.iter().map(|v| v * v).sum::<f64>())
        .sum();
    Ok((axes_from(mean, s, &v, total_ss, n, solver), a))
}

/// Fit the top `k` principal components of `x` (rows = cells) and its scores. `seed` drives the
/// randomised solver.
pub fn fit_pca(x: &DenseMatrix, k: usize, solver: PcaSolver, seed: u64) -> Result<Pca> {
    let (n, d) = (x.n_rows, x.n_cols);
    let k = check_shape(n, d, k)?;
    let (axes, data) = match solver.resolve(n, d) {
        PcaSolver::CovarianceEigh => {
            let axes = covariance_axes(x, k)?;
            let data = axes.project(&x.data, n)?;
            (axes, data)
        }
        solver => {
            let (axes, a) = svd_fit(x, k, solver, seed)?;
            let comp = Mat::from_fn(d, k, |j, c| axes.components[c * d + j]);
            let sc = &a * &comp;
            let data = (0..n * k).map(|p| sc[(p / k, p % k)] as f32).collect();
            (axes, data)
        }
    };
    let mut scores = DenseMatrix::new(n, k, data)?;
    scores.row_ids = x.row_ids.clone();
    scores.col_names = Some(axes.score_names());
    Ok(Pca { axes, scores })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_planted_axis() {
        // points along (3, 4)/5 with small orthogonal noise
        let mut data = Vec::new();
        for i in 0..20 {
            let t = i as f32 - 9.5;
            let e = if i % 2 == 0 { 0.01 } else { -0.01 };
            data.extend([3.0 * t / 5.0 - 4.0 * e / 5.0, 4.0 * t / 5.0 + 3.0 * e / 5.0]);
        }
        let x = DenseMatrix::new(20, 2, data).unwrap();
        for solver in [
            PcaSolver::Exact,
            PcaSolver::Randomized,
            PcaSolver::CovarianceEigh,
        ] {
            let p = fit_pca(&x, 2, solver, 1).unwrap().axes;
            assert!((p.components[0] - 0.6).abs() < 1e-3 && (p.components[1] - 0.8).abs() < 1e-3);
            // variance of t = 0..19 centred with ddof 1 = 35
            assert!(
                (p.explained_variance[0] - 35.0).abs() < 1e-3,
                "{:?}",
                p.explained_variance
            );
            let sum: f64 = p.explained_variance_ratio.iter().sum();
            assert!((sum - 1.0).abs() < 1e-9);
        }
    }

    /// Rows in blocks of 7, to show the result does not hang on the block size.
    struct Sevens<'a>(&'a DenseMatrix);

    impl RowBlocks for Sevens<'_> {
        fn n_rows(&self) -> usize {
            self.0.n_rows
        }
        fn n_cols(&self) -> usize {
            self.0.n_cols
        }
        fn visit_rows(&self, f: &mut dyn FnMut(&[f32], usize) -> Result<()>) -> Result<()> {
            for b in self.0.data.chunks(7 * self.0.n_cols) {
                f(b, b.len() / self.0.n_cols)?;
            }
            Ok(())
        }
    }

    #[test]
    fn covariance_solver_agrees_with_the_exact_svd() {
        // 600 cells x 12 columns with three planted directions of decreasing variance
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (n, d) = (600, 12);
        let data: Vec<f32> = (0..n * d)
            .map(|p| {
                let (i, j) = (p / d, p % d);
                let t = (i as f64 * 0.37).sin() * 5.0 * (j % 3 == 0) as u8 as f64
                    + (i as f64 * 0.11).cos() * 2.0 * (j % 3 == 1) as u8 as f64;
                (t + gaussian(&mut rng) * 0.3 + j as f64) as f32
            })
            .collect();
        let x = DenseMatrix::new(n, d, data).unwrap();
        assert_eq!(PcaSolver::Auto.resolve(n, d), PcaSolver::CovarianceEigh);
        assert_eq!(PcaSolver::Auto.resolve(n, 100), PcaSolver::Exact);
        let exact = fit_pca(&x, 5, PcaSolver::Exact, 0).unwrap();
        let cov = fit_pca(&x, 5, PcaSolver::Auto, 0).unwrap();
        assert_eq!(cov.axes.solver, PcaSolver::CovarianceEigh);
        let blocks = fit_pca_axes(&Sevens(&x), 5, PcaSolver::CovarianceEigh, 0).unwrap();
        for c in 0..5 {
            let (e, v) = (
                exact.axes.explained_variance[c],
                cov.axes.explained_variance[c],
            );
            assert!((e - v).abs() <= 1e-9 * e, "component {c}: {e} vs {v}");
            assert!((blocks.explained_variance[c] - v).abs() <= 1e-12 * v);
            let r = (exact.axes.explained_variance_ratio[c] - cov.axes.explained_variance_ratio[c])
                .abs();
            assert!(r < 1e-9);
            for j in 0..d {
                let (p, q) = (
                    exact.axes.components[c * d + j],
                    cov.axes.components[c * d + j],
                );
                assert!(
                    (p - q).abs() < 1e-7,
                    "component {c} loading {j}: {p} vs {q}"
                );
            }
            for i in 0..n {
                let (p, q) = (exact.scores.data[i * 5 + c], cov.scores.data[i * 5 + c]);
                assert!((p - q).abs() < 1e-4 * (1.0 + p.abs()));
            }
        }
        assert_eq!(cov.scores.col_names.as_ref().unwrap()[4], "PC5");
        assert!(cov.axes.project(&[0.0; 5], 1).is_err());
    }
}
