//! The plain baseline: multinomial logistic regression with an L2 penalty, fitted by full-batch
//! L-BFGS to convergence (deterministic; no randomness).
//!
//! Objective (as scikit-learn's `LogisticRegression(C)`, multinomial, intercept not penalised):
//! `sum_i [logsumexp(W x_i + b) - (W x_i + b)_{y_i}] + ||W||^2 / (2 C)`.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::io::atomic::write_bytes_atomic;
use crate::io::matrix::f32_bytes;

/// Fitting options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogRegConfig {
    /// Inverse regularisation strength (scikit-learn's `C`, default 1.0).
    pub c: f64,
    /// Stop when the largest absolute gradient entry falls below this.
    pub tol: f64,
    /// Iteration cap.
    pub max_iter: usize,
    /// L-BFGS memory.
    pub memory: usize,
}

impl Default for LogRegConfig {
    fn default() -> Self {
        LogRegConfig {
            c: 1.0,
            tol: 1e-6,
            max_iter: 2000,
            memory: 10,
        }
    }
}

/// A fitted multinomial logistic regression.
#[derive(Debug, Clone, PartialEq)]
pub struct LogReg {
    /// Classes.
    pub n_classes: usize,
    /// Features.
    pub n_features: usize,
    /// Weights `[C, k]`, row-major.
    pub weight: Vec<f64>,
    /// Intercepts `[C]`.
    pub bias: Vec<f64>,
    /// Iterations used.
    pub iterations: usize,
    /// Final objective value.
    pub objective: f64,
}

/// Objective and gradient at `theta = [W (C*k), b (C)]`.
fn objective(
    theta: &[f64],
    x: &[f32],
    y: &[usize],
    k: usize,
    c: usize,
    lambda: f64,
    grad: &mut [f64],
) -> f64 {
    grad.iter_mut().for_each(|g| *g = 0.0);
    let (w, b) = theta.split_at(c * k);
    let mut f = 0.0;
    let mut z = vec![0.0f64; c];
    for (i, &yi) in y.iter().enumerate() {
        let xi = &x[i * k..(i + 1) * k];
        for (cls, zc) in z.iter_mut().enumerate() {
            let wr = &w[cls * k..(cls + 1) * k];
            *zc = b[cls] + wr.iter().zip(xi).map(|(a, &v)| a * v as f64).sum::<f64>();
        }
        let zmax = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = zmax + z.iter().map(|v| (v - zmax).exp()).sum::<f64>().ln();
        f += lse - z[yi];
        for cls in 0..c {
            let p = (z[cls] - lse).exp() - if cls == yi { 1.0 } else { 0.0 };
            let gw = &mut grad[cls * k..(cls + 1) * k];
            for (g, &v) in gw.iter_mut().zip(xi) {
                *g += p * v as f64;
            }
            grad[c * k + cls] += p;
        }
    }
    let mut reg = 0.0;
    for (j, &wj) in w.iter().enumerate() {
        reg += wj * wj;
        grad[j] += lambda * wj;
    }
    f + 0.5 * lambda * reg
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl LogReg {
    /// Fit on row-major `x` (`n x k`) with labels `y` in `0..n_classes`.
    pub fn fit(
        x: &[f32],
        y: &[usize],
        k: usize,
        n_classes: usize,
        cfg: &LogRegConfig,
    ) -> Result<Self> {
        if y.is_empty() || x.len() != y.len() * k {
            return Err(Error::invalid(
                "logistic regression: empty or misshaped input",
            ));
        }
        if cfg.c <= 0.0 {
            return Err(Error::invalid("logistic regression: C must be positive"));
        }
        let c = n_classes;
        let lambda = 1.0 / cfg.c;
        let np = c * k + c;
        let mut theta = vec![0.0f64; np];
        let mut g = vec![0.0f64; np];
        let mut f = objective(&theta, x, y, k, c, lambda, &mut g);
        let mut s_hist: Vec<Vec<f64>> = Vec::new();
        let mut y_hist: Vec<Vec<f64>> = Vec::new();
        let mut iterations = 0;
        let mut g_new = vec![0.0f64; np];
        let mut theta_new = vec![0.0f64; np];
        for it in 0..cfg.max_iter {
            iterations = it;
            let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if gmax < cfg.tol {
                break;
            }
            // Two-loop recursion for the direction d = -H g.
            let mut q = g.clone();
            let mut alphas = Vec::with_capacity(s_hist.len());
            for (s, yv) in s_hist.iter().zip(&y_hist).rev() {
                let rho = 1.0 / dot(yv, s);
                let a = rho * dot(s, &q);
                q.iter_mut().zip(yv).for_each(|(qi, yi)| *qi -= a * yi);
                alphas.push((a, rho));
            }
            let gamma = match (s_hist.last(), y_hist.last()) {
                (Some(s), Some(yv)) => dot(s, yv) / dot(yv, yv),
                _ => 1.0 / gmax.max(1.0),
            };
            q.iter_mut().for_each(|v| *v *= gamma);
            for ((s, yv), (a, rho)) in s_hist.iter().zip(&y_hist).zip(alphas.into_iter().rev()) {
                let bcoef = rho * dot(yv, &q);
                q.iter_mut()
                    .zip(s)
                    .for_each(|(qi, si)| *qi += (a - bcoef) * si);
            }
            let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
            let mut slope = dot(&g, &d);
            if slope >= 0.0 {
                // Not a descent direction: fall back to steepest descent.
                s_hist.clear();
                y_hist.clear();
                d = g.iter().map(|v| -v / gmax.max(1.0)).collect();
                slope = dot(&g, &d);
            }
            // Backtracking line search (Armijo).
            let mut step = 1.0;
            let mut accepted = false;
            let mut f_new = f;
            for _ in 0..60 {
                for j in 0..np {
                    theta_new[j] = theta[j] + step * d[j];
                }
                f_new = objective(&theta_new, x, y, k, c, lambda, &mut g_new);
                if f_new <= f + 1e-4 * step * slope {
                    accepted = true;
                    break;
                }
                step *= 0.5;
            }
            if !accepted {
                break;
            }
            let s: Vec<f64> = (0..np).map(|j| theta_new[j] - theta[j]).collect();
            let yv: Vec<f64> = (0..np).map(|j| g_new[j] - g[j]).collect();
            let sy = dot(&s, &yv);
            std::mem::swap(&mut theta, &mut theta_new);
            std::mem::swap(&mut g, &mut g_new);
            let df = (f - f_new).abs();
            f = f_new;
            if sy > 1e-12 * dot(&yv, &yv).max(1e-300) {
                s_hist.push(s);
                y_hist.push(yv);
                if s_hist.len() > cfg.memory {
                    s_hist.remove(0);
                    y_hist.remove(0);
                }
            }
            if df <= 1e-15 * f.abs().max(1.0) && gmax < cfg.tol * 100.0 {
                break;
            }
        }
        let (w, b) = theta.split_at(c * k);
        Ok(LogReg {
            n_classes: c,
            n_features: k,
            weight: w.to_vec(),
            bias: b.to_vec(),
            iterations,
            objective: f,
        })
    }

    /// Logits `W x + b` for row-major `x` (`n x k`), row-major `n x C`.
    pub fn logits(&self, x: &[f32]) -> Result<Vec<f32>> {
        let k = self.n_features;
        if k == 0 || !x.len().is_multiple_of(k) {
            return Err(Error::invalid(format!(
                "baseline expects {k}-dimensional embeddings"
            )));
        }
        let c = self.n_classes;
        let mut out = Vec::with_capacity(x.len() / k * c);
        for xi in x.chunks(k) {
            for cls in 0..c {
                let wr = &self.weight[cls * k..(cls + 1) * k];
                let z = self.bias[cls] + wr.iter().zip(xi).map(|(a, &v)| a * v as f64).sum::<f64>();
                out.push(z as f32);
            }
        }
        Ok(out)
    }

    /// Class probabilities for row-major `x` (`n x k`), row-major `n x C`.
    pub fn predict_proba(&self, x: &[f32]) -> Result<Vec<f32>> {
        let k = self.n_features;
        if k == 0 || !x.len().is_multiple_of(k) {
            return Err(Error::invalid(format!(
                "baseline expects {k}-dimensional embeddings"
            )));
        }
        let n = x.len() / k;
        let c = self.n_classes;
        let mut out = vec![0.0f32; n * c];
        let mut z = vec![0.0f64; c];
        for i in 0..n {
            let xi = &x[i * k..(i + 1) * k];
            for (cls, zc) in z.iter_mut().enumerate() {
                let wr = &self.weight[cls * k..(cls + 1) * k];
                *zc = self.bias[cls] + wr.iter().zip(xi).map(|(a, &v)| a * v as f64).sum::<f64>();
            }
            let zmax = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = z.iter().map(|v| (v - zmax).exp()).sum();
            for cls in 0..c {
                out[i * c + cls] = ((z[cls] - zmax).exp() / sum) as f32;
            }
        }
        Ok(out)
    }

    /// Save as safetensors (`weight` `[C, k]`, `bias` `[C]`, float32), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let w: Vec<f32> = self.weight.iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = self.bias.iter().map(|&v| v as f32).collect();
        let (wb, bb) = (f32_bytes(&w), f32_bytes(&b));
        let views = vec![
            (
                "weight",
                TensorView::new(Dtype::F32, vec![self.n_classes, self.n_features], &wb)
                    .map_err(|e| Error::invalid(e.to_string()))?,
            ),
            (
                "bias",
                TensorView::new(Dtype::F32, vec![self.n_classes], &bb)
                    .map_err(|e| Error::invalid(e.to_string()))?,
            ),
        ];
        let bytes = safetensors::serialize(views, Some(HashMap::new()))
            .map_err(|e| Error::invalid(e.to_string()))?;
        write_bytes_atomic(path, &bytes)
    }

    /// Load a model saved by [`LogReg::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).at(path)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::input(path, format!("not a valid safetensors file: {e}")))?;
        let get = |name: &str| -> Result<(Vec<usize>, Vec<f64>)> {
            let v = st
                .tensor(name)
                .map_err(|_| Error::input(path, format!("missing tensor '{name}'")))?;
            let data = crate::io::matrix::tensor_to_f32(v.dtype(), v.data()).ok_or_else(|| {
                Error::input(path, format!("tensor '{name}' has unsupported dtype"))
            })?;
            Ok((
                v.shape().to_vec(),
                data.into_iter().map(|x| x as f64).collect(),
            ))
        };
        let (ws, weight) = get("weight")?;
        let (bs, bias) = get("bias")?;
        if ws.len() != 2 || bs != [ws[0]] {
            return Err(Error::input(path, "weight/bias shapes disagree"));
        }
        Ok(LogReg {
            n_classes: ws[0],
            n_features: ws[1],
            weight,
            bias,
            iterations: 0,
            objective: f64::NAN,
        })
    }
}
