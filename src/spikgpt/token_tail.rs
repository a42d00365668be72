//! The paper's training configuration in bounded memory: the last MLP with per-token dropout,
//! computed from one token per cell plus sparse per-token corrections.
//!
//! With dropout on, the m token copies of a cell stop being identical only at the first dropout of
//! the MLP: embedding, attention and `fc1` see identical copies, so they run on one token (see
//! [`super::model`]). In a single-block model (the paper's), what follows is
//!
//! ```text
//! a_i = drop_i(h) = h * mask1_i / (1 - p)            h: fc1 spikes [T, B, 1, 4d], the same for all i
//! y_i = fc2(a_i)                                     [T, B, m, d]
//! o_i = LIF(BN(y_i))                                 BN statistics over all T * B * m rows
//! q   = mean over tokens and time of drop_i(o_i)     [B, d], added to the pooled residual stream
//! ```
//!
//! Spikes are binary, so `fc2(a_i) = (W h) / (1 - p) + b - (1 / (1 - p)) * sum of W's columns j where
//! h_j = 1 and mask1_i drops j`: one dense product per (step, cell) and ~`4d * rate * p` column
//! additions per token, instead of a `4d x d` product per token. The backward pass uses the same
//! structure (`dW`, `dh` as a dense term minus the dropped columns' terms). Masks are bits
//! ([`DropMask`]), the per-token state is one `[T * B * m, d]` f32 buffer (`y`, reused for its
//! gradient), and the function, its gradient, the BatchNorm semantics (batch statistics over all
//! T * B * m rows, running statistics updated as PyTorch does) and the dropout masks are those of
//! the straightforward computation over m physical tokens (`tests/reference/spikgpt_model.rs` compares both).
//!
//! Peak memory for the paper's defaults (T = 4, batch 128, m = 300, d = 512): 315 MB for `y`, 49 MB
//! of masks, against several GB per tensor when all m tokens are materialised. CPU only: on CUDA the
//! model runs the straightforward computation.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rand::Rng;
use rayon::prelude::*;

use super::config::{LifConfig, Surrogate};
use super::dropout::{bit, for_each_common_bit, for_each_set_bit, keep_scale, DropMask};
use super::layers::{LinearBnLif, Pass};
use crate::error::{Error, Result};

/// Groups of (step, cell) rows whose weight-gradient partial sums are added in a fixed order (so the
/// result does not depend on the thread count).
const WEIGHT_GRAD_CHUNKS: usize = 8;

/// `mean over tokens and time of drop(LIF(BN(fc2(drop(h)))))` for fc1 spikes `h` `[T, B, 1, 4d]`
/// standing for `tokens` identical copies per cell; returns `[B, d]` and updates `fc2`'s BatchNorm
/// running statistics. Draws the two masks' seeds from `pass.rng` in the order the straightforward
/// computation draws them.
pub fn mlp_tail(
    h: &Tensor,
    fc2: &LinearBnLif,
    p: f64,
    tokens: usize,
    pass: &mut Pass<'_>,
) -> Result<Tensor> {
    let (t, b, one, din) = h.dims4()?;
    if one != 1 {
        return Err(Error::invalid(
            "token tail: expected one computed token per cell",
        ));
    }
    let rng = pass
        .rng
        .as_deref_mut()
        .ok_or_else(|| Error::invalid("token tail: training pass without a generator"))?;
    let seed1 = rng.random::<u64>();
    let seed2 = rng.random::<u64>();
    let dout = fc2.linear.weight.dims()[0];
    let rows = t * b * tokens;
    let mask1 = DropMask::draw(seed1, rows, din, p);
    let mask2 = DropMask::draw(seed2, rows, dout, p);
    let wpack = Tensor::cat(
        &[
            fc2.linear.weight.as_tensor().t()?,
            fc2.linear.bias.as_tensor().unsqueeze(0)?,
        ],
        0,
    )?
    .contiguous()?;
    let bnpack = Tensor::stack(&[fc2.bn.weight.as_tensor(), fc2.bn.bias.as_tensor()], 0)?;
    let batch_stats = Arc::new(Mutex::new(None));
    let op = TailOp {
        steps: t,
        cells: b,
        tokens,
        din,
        dout,
        p,
        eps: fc2.bn.eps,
        lif: fc2.lif,
        mask1,
        mask2,
        saved: Mutex::new(None),
        batch_stats: batch_stats.clone(),
    };
    let q = h.contiguous()?.apply_op3(&wpack, &bnpack, op)?;
    let (mean, var) = batch_stats
        .lock()
        .map_err(|_| Error::invalid("token tail: poisoned statistics"))?
        .take()
        .ok_or_else(|| Error::invalid("token tail: no batch statistics"))?;
    let dev = h.device();
    fc2.bn.update_running(
        &Tensor::from_vec(mean, dout, dev)?,
        &Tensor::from_vec(var, dout, dev)?,
        rows,
    )?;
    Ok(q)
}

/// What the forward pass keeps for the backward pass.
struct Saved {
    /// Pre-BatchNorm currents `[T * B * m, d]`.
    y: Vec<f32>,
    /// Batch mean per channel.
    mean: Vec<f32>,
    /// `sqrt(var + eps)` per channel.
    std: Vec<f32>,
    /// The fc1 spikes as bits per (step, cell) group ([`TailOp::spike_bits`]).
    hbits: Vec<u64>,
}

/// Per-channel batch mean and biased variance of the BatchNorm input.
type BatchStats = (Vec<f32>, Vec<f32>);

struct TailOp {
    steps: usize,
    cells: usize,
    tokens: usize,
    din: usize,
    dout: usize,
    p: f64,
    eps: f64,
    lif: LifConfig,
    mask1: DropMask,
    mask2: DropMask,
    saved: Mutex<Option<Saved>>,
    batch_stats: Arc<Mutex<Option<BatchStats>>>,
}

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => Err(candle_core::Error::Msg(
            "token tail: non-contiguous input".into(),
        )),
    }
}

/// Per-element LIF constants (SpikingJelly semantics, as [`super::lif`]).
#[derive(Clone, Copy)]
struct Neuron {
    decay_input: bool,
    inv_tau: f32,
    v_reset: f32,
    hard: bool,
    v_th: f32,
    detach_reset: bool,
    surrogate: Surrogate,
}

impl Neuron {
    fn new(c: &LifConfig) -> Self {
        Neuron {
            decay_input: c.decay_input,
            inv_tau: (1.0 / c.tau) as f32,
            v_reset: c.v_reset.unwrap_or(0.0) as f32,
            hard: c.v_reset.is_some(),
            v_th: c.v_threshold as f32,
            detach_reset: c.detach_reset,
            surrogate: c.surrogate,
        }
    }

    /// Membrane after charging with input `x`.
    #[inline]
    fn charge(&self, v: f32, x: f32) -> f32 {
        if self.decay_input {
            v + (x - (v - self.v_reset)) * self.inv_tau
        } else {
            v - (v * self.inv_tau - self.v_reset * self.inv_tau) + x
        }
    }

    /// Membrane after firing `s` from `h`.
    #[inline]
    fn reset(&self, h: f32, s: f32) -> f32 {
        if self.hard {
            let keep = h * (1.0 - s);
            if self.v_reset == 0.0 {
                keep
            } else {
                keep + s * self.v_reset
            }
        } else {
            h - s * self.v_th
        }
    }

    #[inline]
    fn surrogate_grad(&self, x: f32) -> f32 {
        match self.surrogate {
            Surrogate::Sigmoid { alpha } => {
                let a = alpha as f32;
                let s = 1.0 / (1.0 + (-(x * a)).exp());
                (1.0 - s) * s * a
            }
            Surrogate::Atan { alpha } => {
                let u = x * (std::f64::consts::FRAC_PI_2 * alpha) as f32;
                (alpha / 2.0) as f32 / (u * u + 1.0)
            }
        }
    }

    /// `dV_t / dH_t` given the spike `s` and its surrogate gradient `sg`.
    #[inline]
    fn dv_dh(&self, h: f32, s: f32, sg: f32) -> f32 {
        let through_reset = !self.detach_reset;
        if self.hard {
            (1.0 - s)
                + if through_reset {
                    (self.v_reset - h) * sg
                } else {
                    0.0
                }
        } else {
            1.0 - if through_reset { self.v_th * sg } else { 0.0 }
        }
    }

    /// `dH_t / dX_t`.
    fn dh_dx(&self) -> f32 {
        if self.decay_input {
            self.inv_tau
        } else {
            1.0
        }
    }

    /// `dH_t / dV_{t-1}`.
    fn dh_dv(&self) -> f32 {
        1.0 - self.inv_tau
    }
}

impl TailOp {
    fn rows(&self) -> usize {
        self.steps * self.cells * self.tokens
    }

    fn row(&self, step: usize, cell: usize, token: usize) -> usize {
        (step * self.cells + cell) * self.tokens + token
    }

    /// Bits of the fc1 spikes of every (step, cell) group.
    fn spike_bits(&self, h: &[f32]) -> Vec<u64> {
        let w = self.din.div_ceil(64);
        let mut bits = vec![0u64; self.steps * self.cells * w];
        for (g, hrow) in h.chunks(self.din).enumerate() {
            for (j, &v) in hrow.iter().enumerate() {
                if v != 0.0 {
                    bits[g * w + j / 64] |= 1u64 << (j % 64);
                }
            }
        }
        bits
    }
}

impl CustomOp3 for TailOp {
    fn name(&self) -> &'static str {
        "spikgpt-token-tail"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let h = contiguous(s1, l1)?;
        let wpack = contiguous(s2, l2)?;
        let bnpack = contiguous(s3, l3)?;
        let (m, din, dout) = (self.tokens, self.din, self.dout);
        let scale = keep_scale(self.p);
        let wt = &wpack[..din * dout];
        let bias = &wpack[din * dout..];
        let (gamma, beta) = bnpack.split_at(dout);
        let hw = din.div_ceil(64);
        let hbits = self.spike_bits(h);

        // y_i = scale * (sum of active W columns) + b - scale * (active columns dropped for token i).
        let mut y = vec![0f32; self.rows() * dout];
        y.par_chunks_mut(m * dout).enumerate().for_each(|(g, yg)| {
            fill_group(
                &hbits[g * hw..(g + 1) * hw],
                wt,
                bias,
                scale,
                |i| self.mask1.row(g * m + i),
                yg,
            )
        });

        // BatchNorm batch statistics over all rows (two passes, f64, fixed summation order).
        let n = self.rows() as f64;
        let mean = channel_means(&y, m * dout, dout, n, |v, _| v);
        let var = channel_means(&y, m * dout, dout, n, |v, c| {
            let d = v - mean[c];
            d * d
        });
        let mean32: Vec<f32> = mean.iter().map(|&v| v as f32).collect();
        let var32: Vec<f32> = var.iter().map(|&v| v as f32).collect();
        let std32: Vec<f32> = var32
            .iter()
            .map(|&v| (v + self.eps as f32).sqrt())
            .collect();

        // LIF over time per token and channel; pooled kept spikes.
        let neuron = Neuron::new(&self.lif);
        let norm = scale as f64 / (self.steps * m) as f64;
        let q: Vec<f32> = (0..self.cells)
            .into_par_iter()
            .flat_map_iter(|cell| {
                let mut count = vec![0u32; dout];
                let mut v = vec![0f32; dout];
                for i in 0..m {
                    v.fill(neuron.v_reset);
                    for step in 0..self.steps {
                        let row = self.row(step, cell, i);
                        let yr = &y[row * dout..(row + 1) * dout];
                        let m2 = self.mask2.row(row);
                        for c in 0..dout {
                            let x = (yr[c] - mean32[c]) / std32[c] * gamma[c] + beta[c];
                            let hm = neuron.charge(v[c], x);
                            let s = if hm - neuron.v_th >= 0.0 { 1.0 } else { 0.0 };
                            if s == 1.0 && !bit(m2, c) {
                                count[c] += 1;
                            }
                            v[c] = neuron.reset(hm, s);
                        }
                    }
                }
                count.into_iter().map(move |k| (k as f64 * norm) as f32)
            })
            .collect();

        if let Ok(mut st) = self.batch_stats.lock() {
            *st = Some((mean32.clone(), var32));
        }
        if let Ok(mut sv) = self.saved.lock() {
            *sv = Some(Saved {
                y,
                mean: mean32,
                std: std32,
                hbits,
            });
        }
        Ok((CpuStorage::F32(q), Shape::from((self.cells, dout))))
    }

    fn bwd(
        &self,
        h: &Tensor,
        wpack: &Tensor,
        bnpack: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("token tail: poisoned state".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("token tail: backward before forward".into()))?;
        let Saved {
            y,
            mean,
            std,
            hbits,
        } = saved;
        let mut gy = vec![0f32; y.len()];
        let dq = grad_res.flatten_all()?.to_vec1::<f32>()?;
        let wv = wpack.flatten_all()?.to_vec1::<f32>()?;
        let bnv = bnpack.flatten_all()?.to_vec1::<f32>()?;
        let (m, din, dout, steps) = (self.tokens, self.din, self.dout, self.steps);
        let wt = &wv[..din * dout];
        let (gamma, beta) = bnv.split_at(dout);
        let scale = keep_scale(self.p);
        let neuron = Neuron::new(&self.lif);
        let norm = (scale as f64 / (steps * m) as f64) as f32;
        let n = self.rows() as f64;

        // Pass A, per cell: the LIF's BPTT gives dL/dX (X = BN output) for every row; per-cell partial
        // sums of dX and dX * xhat.
        let partial: Vec<(Vec<f64>, Vec<f64>)> = {
            // Rows are [T, B, m]: a cell's rows are spread over the steps, so workers write by row index.
            let gy_ptr = SharedMut(gy.as_mut_ptr());
            (0..self.cells)
                .into_par_iter()
                .map(|cell| {
                    let mut s_dx = vec![0f64; dout];
                    let mut s_dxx = vec![0f64; dout];
                    let mut hm = vec![0f32; steps * dout];
                    let mut sp = vec![0f32; steps * dout];
                    let mut xh = vec![0f32; steps * dout];
                    let mut dv = vec![0f32; dout];
                    for i in 0..m {
                        // Forward again, keeping membranes and spikes.
                        let mut v = vec![neuron.v_reset; dout];
                        for step in 0..steps {
                            let row = self.row(step, cell, i);
                            let yr = &y[row * dout..(row + 1) * dout];
                            for c in 0..dout {
                                let xhat = (yr[c] - mean[c]) / std[c];
                                let x = xhat * gamma[c] + beta[c];
                                let hmem = neuron.charge(v[c], x);
                                let s = if hmem - neuron.v_th >= 0.0 { 1.0 } else { 0.0 };
                                hm[step * dout + c] = hmem;
                                sp[step * dout + c] = s;
                                xh[step * dout + c] = xhat;
                                v[c] = neuron.reset(hmem, s);
                            }
                        }
                        dv.fill(0.0);
                        for step in (0..steps).rev() {
                            let row = self.row(step, cell, i);
                            let m2 = self.mask2.row(row);
                            // SAFETY: each (step, cell, token) row is written by this cell's worker only.
                            let out = unsafe { gy_ptr.row(row * dout, dout) };
                            for c in 0..dout {
                                let k = step * dout + c;
                                let kept = !bit(m2, c);
                                let ds = if kept {
                                    dq[cell * dout + c] * norm
                                } else {
                                    0.0
                                };
                                let sg = neuron.surrogate_grad(hm[k] - neuron.v_th);
                                let dh = ds * sg + dv[c] * neuron.dv_dh(hm[k], sp[k], sg);
                                dv[c] = dh * neuron.dh_dv();
                                let dx = dh * neuron.dh_dx();
                                out[c] = dx;
                                s_dx[c] += dx as f64;
                                s_dxx[c] += (dx * xh[k]) as f64;
                            }
                        }
                    }
                    (s_dx, s_dxx)
                })
                .collect()
        };
        let sum_dx: Vec<f64> = (0..dout)
            .map(|c| partial.iter().map(|p| p.0[c]).sum())
            .collect();
        let sum_dxx: Vec<f64> = (0..dout)
            .map(|c| partial.iter().map(|p| p.1[c]).sum())
            .collect();
        let dgamma: Vec<f32> = sum_dxx.iter().map(|&v| v as f32).collect();
        let dbeta: Vec<f32> = sum_dx.iter().map(|&v| v as f32).collect();

        // Pass B: BatchNorm backward with batch statistics:
        // dy = gamma / std * (dX - mean(dX) - xhat * mean(dX * xhat)).
        let mean_dx: Vec<f32> = sum_dx.iter().map(|&v| (v / n) as f32).collect();
        let mean_dxx: Vec<f32> = sum_dxx.iter().map(|&v| (v / n) as f32).collect();
        gy.par_chunks_mut(dout)
            .zip(y.par_chunks(dout))
            .for_each(|(g, yr)| {
                for c in 0..dout {
                    let xhat = (yr[c] - mean[c]) / std[c];
                    g[c] = gamma[c] / std[c] * (g[c] - mean_dx[c] - xhat * mean_dxx[c]);
                }
            });
        drop(y);

        // Pass C, per (step, cell) group: dh and the weight-gradient partial sums.
        let hw = din.div_ceil(64);
        let groups = steps * self.cells;
        let chunk = groups.div_ceil(WEIGHT_GRAD_CHUNKS).max(1);
        let mut dh = vec![0f32; groups * din];
        let results: Vec<(Vec<f64>, Vec<f64>)> = dh
            .par_chunks_mut(chunk * din)
            .enumerate()
            .map(|(ci, dh_chunk)| {
                let mut acc = vec![0f64; din * dout];
                let mut db = vec![0f64; dout];
                let mut gsum = vec![0f32; dout];
                for (gi, dhg) in dh_chunk.chunks_mut(din).enumerate() {
                    let g = ci * chunk + gi;
                    let hrow = &hbits[g * hw..(g + 1) * hw];
                    let block = &gy[g * m * dout..(g + 1) * m * dout];
                    let mut gs = vec![0f64; dout];
                    for r in block.chunks(dout) {
                        for (a, &v) in gs.iter_mut().zip(r) {
                            *a += v as f64;
                        }
                    }
                    for (d, &v) in db.iter_mut().zip(&gs) {
                        *d += v;
                    }
                    for (o, &v) in gsum.iter_mut().zip(&gs) {
                        *o = v as f32;
                    }
                    // dW^T[j] += scale * (G_g for active j - dy_i for active j dropped in token i).
                    for_each_set_bit(hrow, |j| {
                        for (a, &v) in acc[j * dout..(j + 1) * dout].iter_mut().zip(&gs) {
                            *a += v;
                        }
                    });
                    for (i, dyi) in block.chunks(dout).enumerate() {
                        for_each_common_bit(hrow, self.mask1.row(g * m + i), |j| {
                            for (a, &v) in acc[j * dout..(j + 1) * dout].iter_mut().zip(dyi) {
                                *a -= v as f64;
                            }
                        });
                    }
                    // dh_j = scale * (W^T[j] . G_g - sum over tokens dropping j of W^T[j] . dy_i).
                    for (j, o) in dhg.iter_mut().enumerate() {
                        *o = dot(&wt[j * dout..(j + 1) * dout], &gsum);
                    }
                    for (i, dyi) in block.chunks(dout).enumerate() {
                        for_each_set_bit(self.mask1.row(g * m + i), |j| {
                            dhg[j] -= dot(&wt[j * dout..(j + 1) * dout], dyi);
                        });
                    }
                    for o in dhg.iter_mut() {
                        *o *= scale;
                    }
                }
                (acc, db)
            })
            .collect();
        let mut dwpack = vec![0f32; (din + 1) * dout];
        let mut total = vec![0f64; din * dout];
        let mut dbias = vec![0f64; dout];
        for (acc, db) in &results {
            for (t, &a) in total.iter_mut().zip(acc) {
                *t += a;
            }
            for (t, &a) in dbias.iter_mut().zip(db) {
                *t += a;
            }
        }
        for (o, &t) in dwpack.iter_mut().zip(&total) {
            *o = (t * scale as f64) as f32;
        }
        for (o, &t) in dwpack[din * dout..].iter_mut().zip(&dbias) {
            *o = t as f32;
        }
        let dev = h.device();
        let dh = Tensor::from_vec(dh, h.dims(), dev)?;
        let dw = Tensor::from_vec(dwpack, (din + 1, dout), dev)?;
        let mut dbn = dgamma;
        dbn.extend_from_slice(&dbeta);
        let dbn = Tensor::from_vec(dbn, (2, dout), dev)?;
        Ok((Some(dh), Some(dw), Some(dbn)))
    }
}

/// Per-channel mean of `f(value, channel)` over all rows of `y` (`[rows, dout]`), in f64: partial sums
/// per block of `block` values in parallel, then added in block order (independent of threads).
fn channel_means(
    y: &[f32],
    block: usize,
    dout: usize,
    n: f64,
    f: impl Fn(f64, usize) -> f64 + Sync,
) -> Vec<f64> {
    let partial: Vec<Vec<f64>> = y
        .par_chunks(block)
        .map(|yb| {
            let mut s = vec![0f64; dout];
            for r in yb.chunks(dout) {
                for (c, (a, &v)) in s.iter_mut().zip(r).enumerate() {
                    *a += f(v as f64, c);
                }
            }
            s
        })
        .collect();
    (0..dout)
        .map(|c| partial.iter().map(|s| s[c]).sum::<f64>() / n)
        .collect()
}

/// The pre-BatchNorm currents of the m tokens of one (step, cell) group `yg` (`[m, d]`): the
/// active columns' sum once, minus each token's dropped active columns.
fn fill_group<'a>(
    hrow: &[u64],
    wt: &[f32],
    bias: &[f32],
    scale: f32,
    mask_row: impl Fn(usize) -> &'a [u64],
    yg: &mut [f32],
) {
    let dout = bias.len();
    let mut base = vec![0f64; dout];
    for_each_set_bit(hrow, |j| {
        for (acc, &w) in base.iter_mut().zip(&wt[j * dout..(j + 1) * dout]) {
            *acc += w as f64;
        }
    });
    let base: Vec<f32> = base
        .iter()
        .zip(bias)
        .map(|(&s, &bb)| (s * scale as f64 + bb as f64) as f32)
        .collect();
    let mut corr = vec![0f32; dout];
    for (i, out) in yg.chunks_mut(dout).enumerate() {
        corr.fill(0.0);
        for_each_common_bit(hrow, mask_row(i), |j| {
            for (acc, &w) in corr.iter_mut().zip(&wt[j * dout..(j + 1) * dout]) {
                *acc += w;
            }
        });
        for ((o, &bs), &cr) in out.iter_mut().zip(&base).zip(&corr) {
            *o = bs - scale * cr;
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent partial sums: vectorises, fixed order.
    let mut acc = [0f32; 8];
    let n8 = a.len() / 8 * 8;
    for (ca, cb) in a[..n8].chunks_exact(8).zip(b[..n8].chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += ca[k] * cb[k];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for k in n8..a.len() {
        s += a[k] * b[k];
    }
    s
}

/// A raw pointer shared by the per-cell workers of pass A, each touching its own rows only.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}
impl SharedMut {
    /// # Safety
    /// No two threads may access overlapping ranges at the same time.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, start: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}
