//! PCA baseline: top principal components of centred cell-level activations (or any matrix), by an
//! exact thin SVD or a seeded randomised SVD (Halko et al. 2011), both in pure Rust with faer.
//!
//! Conventions follow sklearn's `PCA`: `explained_variance = s^2 / (n - 1)`, ratios against the total
//! variance, scores = centred data times components, and each component's sign fixed so that its
//! largest-magnitude loading is positive (`svd_flip(u_based_decision=False)`).

use faer::Mat;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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
}

impl std::str::FromStr for PcaSolver {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "exact" | "full" => Ok(Self::Exact),
            "randomized" | "randomised" => Ok(Self::Randomized),
            o => Err(Error::invalid(format!(
                "--pca-solver {o}: expected auto, exact or randomized"
            ))),
        }
    }
}

/// A fitted PCA.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
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
    /// `n x k` scores (centred data times components), with the input's row ids and columns `PC1..`.
    pub scores: DenseMatrix,
    /// The solver actually used.
    pub solver: PcaSolver,
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

/// Fit the top `k` principal components of `x` (rows = cells). `seed` drives the randomised solver.
pub fn fit_pca(x: &DenseMatrix, k: usize, solver: PcaSolver, seed: u64) -> Result<Pca> {
    let (n, d) = (x.n_rows, x.n_cols);
    if n < 2 {
        return Err(Error::invalid("PCA needs at least 2 cells"));
    }
    let k = k.min(n.min(d));
    if k == 0 {
        return Err(Error::invalid("PCA needs at least one component"));
    }
    let solver = match solver {
        PcaSolver::Auto if n.min(d) <= 1000 => PcaSolver::Exact,
        PcaSolver::Auto => PcaSolver::Randomized,
        s => s,
    };
    let (a, mean) = centred(x);
    let (_u, s, v) = match solver {
        PcaSolver::Randomized => randomized_svd(&a, k, 10, 7, seed)?,
        _ => exact_svd(&a, k)?,
    };
    let total_var: f64 = (0..d)
        .map(|j| (0..n).map(|i| a[(i, j)] * a[(i, j)]).sum::<f64>())
        .sum::<f64>()
        / (n as f64 - 1.0);
    let mut components = vec![0f64; k * d];
    for c in 0..k {
        // sign: largest |loading| positive
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
    let comp = Mat::from_fn(d, k, |j, c| components[c * d + j]);
    let sc = &a * &comp;
    let mut scores = DenseMatrix::new(
        n,
        k,
        (0..n * k).map(|p| sc[(p / k, p % k)] as f32).collect(),
    )?;
    scores.row_ids = x.row_ids.clone();
    scores.col_names = Some((1..=k).map(|i| format!("PC{i}")).collect());
    let explained_variance: Vec<f64> = s.iter().map(|s| s * s / (n as f64 - 1.0)).collect();
    let explained_variance_ratio = explained_variance
        .iter()
        .map(|v| if total_var > 0.0 { v / total_var } else { 0.0 })
        .collect();
    Ok(Pca {
        mean,
        components,
        singular_values: s,
        explained_variance,
        explained_variance_ratio,
        scores,
        solver,
    })
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
        for solver in [PcaSolver::Exact, PcaSolver::Randomized] {
            let p = fit_pca(&x, 2, solver, 1).unwrap();
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
}
