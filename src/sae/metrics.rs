//! Evaluation metrics of a trained SAE over a set of (z-scored) inputs: L0, R^2, MSE, alive/dead.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::sae::kernel::{
    activate_with_stats, column_sums_f64, decode, pre_activations, ParamsView, Sparsifier,
};
use crate::sae::sparse_kernel::{self, SparseRows, SPARSE_MAX_DENSITY};
use rayon::prelude::*;

/// A feature is dead when it fires on fewer than this fraction of inputs (the paper: 1%).
pub const DEAD_FRACTION: f64 = 0.01;

/// Metrics of an SAE on a set of inputs (in the z-scored space the SAE reconstructs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Metrics {
    /// Inputs evaluated.
    pub n_inputs: usize,
    /// Mean number of latents with `z > 0` per input.
    pub l0: f64,
    /// `1 - sum (h - h_hat)^2 / sum (h - mean h)^2` over all inputs and dims (`mean h` per dimension).
    pub r2: f64,
    /// Mean squared error over inputs and dims.
    pub mse: f64,
    /// Features firing on at least [`DEAD_FRACTION`] of inputs.
    pub alive: usize,
    /// Features firing on fewer than [`DEAD_FRACTION`] of inputs.
    pub dead: usize,
    /// Features that never fire.
    pub never_fired: usize,
    /// Fraction of inputs each feature fires on (`[d_sae]`).
    pub feature_frequency: Vec<f64>,
}

/// `x` rounded to 15 significant digits, so that its JSON form reads back to the same bits
/// (results reloaded by `--resume` then equal freshly computed ones exactly).
pub fn round_sig(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    format!("{x:.14e}").parse().unwrap_or(x)
}

impl Metrics {
    /// Round every value with [`round_sig`].
    pub fn rounded(mut self) -> Metrics {
        self.l0 = round_sig(self.l0);
        self.r2 = round_sig(self.r2);
        self.mse = round_sig(self.mse);
        for f in self.feature_frequency.iter_mut() {
            *f = round_sig(*f);
        }
        self
    }
}

/// Evaluate on `n` inputs `x` (`[n, d_in]`, z-scored), `chunk` rows at a time.
pub fn evaluate(
    dev: &Device,
    p: &ParamsView<'_>,
    s: Sparsifier<'_>,
    x: &[f32],
    n: usize,
    chunk: usize,
) -> Result<Metrics> {
    let (d, m) = (p.d_in, p.d_sae);
    let mut mean = column_sums_f64(x, d);
    for a in mean.iter_mut() {
        *a /= n.max(1) as f64;
    }
    let mut sst = 0f64;
    for row in x.chunks_exact(d) {
        for (a, v) in mean.iter().zip(row) {
            let e = *v as f64 - a;
            sst += e * e;
        }
    }
    let mut acc = Counts::new(m);
    let chunk = chunk.max(1);
    let mut start = 0;
    while start < n {
        let rows = chunk.min(n - start);
        acc.add(dev, p, s, &x[start * d..(start + rows) * d], rows)?;
        start += rows;
    }
    Ok(acc.metrics(n, d, sst))
}

/// Squared errors and firing counts summed over chunks.
struct Counts {
    sse: f64,
    active: u64,
    fired: Vec<u64>,
}

impl Counts {
    fn new(m: usize) -> Counts {
        Counts {
            sse: 0.0,
            active: 0,
            fired: vec![0; m],
        }
    }

    fn add(
        &mut self,
        dev: &Device,
        p: &ParamsView<'_>,
        s: Sparsifier<'_>,
        xb: &[f32],
        rows: usize,
    ) -> Result<()> {
        let (m, d) = (p.d_sae, p.d_in);
        let (_, mut z) = pre_activations(dev, p, xb, rows)?;
        let codes = activate_with_stats(&mut z, m, s);
        // codes with enough zeros (TopK, a trained L1 SAE) decode as a sparse product, as in training
        let xhat = if dev.is_cpu() && codes.active as f64 <= SPARSE_MAX_DENSITY * z.len() as f64 {
            sparse_kernel::decode(p, &SparseRows::from_dense(&z, m))
        } else {
            decode(dev, p, &z, rows)?
        };
        // blocks of rows in parallel, added in row order: the same sum on any thread count
        const ROWS: usize = 64;
        let block = (ROWS * d).max(1);
        for part in xhat
            .par_chunks(block)
            .zip(xb.par_chunks(block))
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(a, b)| {
                        let e = (*a - *b) as f64;
                        e * e
                    })
                    .sum::<f64>()
            })
            .collect::<Vec<f64>>()
        {
            self.sse += part;
        }
        self.active += codes.active;
        for (f, c) in self.fired.iter_mut().zip(&codes.fired) {
            *f += *c as u64;
        }
        Ok(())
    }

    fn metrics(&self, n: usize, d: usize, sst: f64) -> Metrics {
        let m = self.fired.len();
        let (sse, active, fired) = (self.sse, self.active, &self.fired);
        let nf = n.max(1) as f64;
        let feature_frequency: Vec<f64> = fired.iter().map(|&c| c as f64 / nf).collect();
        let alive = feature_frequency
            .iter()
            .filter(|&&f| f >= DEAD_FRACTION)
            .count();
        Metrics {
            n_inputs: n,
            l0: active as f64 / nf,
            r2: if sst > 0.0 { 1.0 - sse / sst } else { f64::NAN },
            mse: sse / (nf * d as f64),
            alive,
            dead: m - alive,
            never_fired: fired.iter().filter(|&&c| c == 0).count(),
            feature_frequency,
        }
        .rounded()
    }
}

/// Metrics over inputs seen a chunk at a time, for inputs streamed from disk: the same values as
/// [`evaluate`] on all of them, except that `sst` comes from per-dimension sums and sums of
/// squares (f64) instead of a second pass.
pub struct MetricsAccumulator {
    counts: Counts,
    n: usize,
    sum: Vec<f64>,
    sumsq: Vec<f64>,
}

impl MetricsAccumulator {
    /// An empty accumulator for inputs `d_in` wide and `d_sae` features.
    pub fn new(d_in: usize, d_sae: usize) -> MetricsAccumulator {
        MetricsAccumulator {
            counts: Counts::new(d_sae),
            n: 0,
            sum: vec![0.0; d_in],
            sumsq: vec![0.0; d_in],
        }
    }

    /// Add `rows` z-scored inputs `x` (`[rows, d_in]`).
    pub fn add(
        &mut self,
        dev: &Device,
        p: &ParamsView<'_>,
        s: Sparsifier<'_>,
        x: &[f32],
        rows: usize,
    ) -> Result<()> {
        let d = self.sum.len();
        for row in x.chunks_exact(d) {
            for ((a, q), v) in self.sum.iter_mut().zip(self.sumsq.iter_mut()).zip(row) {
                let v = *v as f64;
                *a += v;
                *q += v * v;
            }
        }
        self.n += rows;
        self.counts.add(dev, p, s, x, rows)
    }

    /// The metrics over everything added.
    pub fn finish(&self) -> Metrics {
        let nf = self.n.max(1) as f64;
        let sst: f64 = self
            .sum
            .iter()
            .zip(&self.sumsq)
            .map(|(s, q)| (q - s * s / nf).max(0.0))
            .sum();
        self.counts.metrics(self.n, self.sum.len(), sst)
    }
}
