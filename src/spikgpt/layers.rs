//! Building blocks: Linear, BatchNorm over channels, the `LIF(BN(Linear(x)))` unit and seeded dropout.
//!
//! Shapes: activations are `[rows, channels]` for Linear/BN; spiking units take `[T, B, N, C]` and
//! flatten the leading axes (BatchNorm statistics over `T * B * N` per channel, as Spikformer's
//! `BatchNorm1d` over `(T B) C N`).

use candle_core::{Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::activity::{ForwardStats, LinearRecord};
use super::config::LifConfig;
use super::dropout::{keep_scale, DropMask};
use super::lif::{lif_multistep, FireMode};
use super::params::ParamStore;
use crate::error::Result;

/// Settings of one forward pass.
pub struct Pass<'a> {
    /// Training mode: batch statistics in BatchNorm (and running-stat updates), dropout active.
    pub train: bool,
    /// Firing function evaluation.
    pub fire: FireMode,
    /// Seeded generator for dropout masks (training only).
    pub rng: Option<&'a mut ChaCha8Rng>,
    /// Collector of firing rates and operation counts (inference only).
    pub stats: Option<&'a mut ForwardStats>,
    /// How many model tokens each computed token stands for (m when identical copies are collapsed).
    pub multiplicity: usize,
}

/// A fully connected layer `y = x W^T + b` with PyTorch's default initialisation.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Name prefix (`blocks.0.mlp.fc1.linear`).
    pub name: String,
    /// Weight `[out, in]`.
    pub weight: Var,
    /// Bias `[out]`.
    pub bias: Var,
}

impl Linear {
    /// Create with `U(-1/sqrt(in), 1/sqrt(in))` weights and bias.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let weight = store.uniform(&format!("{name}.weight"), &[out_dim, in_dim], bound, rng)?;
        let bias = store.uniform(&format!("{name}.bias"), &[out_dim], bound, rng)?;
        Ok(Linear {
            name: name.to_string(),
            weight,
            bias,
        })
    }

    /// Apply to `[rows, in]`; records operation counts when `pass.stats` is set.
    pub fn forward(&self, x: &Tensor, pass: &mut Pass<'_>) -> Result<Tensor> {
        if let Some(stats) = pass.stats.as_deref_mut() {
            let (rows, in_dim) = x.dims2()?;
            let flat = x.detach().flatten_all()?;
            let abs_sum = flat.abs()?.sum_all()?.to_scalar::<f32>()? as f64;
            let integer = flat
                .sub(&flat.round()?)?
                .abs()?
                .max(0)?
                .to_scalar::<f32>()?
                == 0.0
                && flat.min(0)?.to_scalar::<f32>()? >= 0.0;
            stats.linears.push(LinearRecord {
                name: self.name.clone(),
                rows: rows as f64 * pass.multiplicity as f64,
                in_dim,
                out_dim: self.weight.dims()[0],
                mean_abs_input: abs_sum / (rows * in_dim).max(1) as f64,
                spike_input: integer,
            });
        }
        let y = x.matmul(&self.weight.as_tensor().t()?)?;
        Ok(y.broadcast_add(self.bias.as_tensor())?)
    }
}

/// Batch normalisation over the channel (last) axis of `[rows, C]`.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Scale `[C]` (init 1).
    pub weight: Var,
    /// Shift `[C]` (init 0).
    pub bias: Var,
    /// Running mean buffer.
    pub running_mean: Var,
    /// Running (unbiased) variance buffer.
    pub running_var: Var,
    /// Numerical epsilon.
    pub eps: f64,
    /// Running-statistics momentum.
    pub momentum: f64,
}

impl BatchNorm {
    /// Create with PyTorch's defaults for the parameters and buffers.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        c: usize,
        eps: f64,
        momentum: f64,
    ) -> Result<Self> {
        Ok(BatchNorm {
            weight: store.constant(&format!("{name}.weight"), &[c], 1.0)?,
            bias: store.constant(&format!("{name}.bias"), &[c], 0.0)?,
            running_mean: store.buffer(&format!("{name}.running_mean"), &[c], 0.0)?,
            running_var: store.buffer(&format!("{name}.running_var"), &[c], 1.0)?,
            eps,
            momentum,
        })
    }

    /// Normalise `[rows, C]`. In training, batch statistics are used and the running statistics are
    /// updated as if the batch had `n_effective` rows (for the unbiased variance correction).
    pub fn forward(&self, x: &Tensor, train: bool, n_effective: usize) -> Result<Tensor> {
        let (mean, var) = if train {
            let mean = x.mean_keepdim(0)?;
            let centred = x.broadcast_sub(&mean)?;
            let var = centred.sqr()?.mean_keepdim(0)?;
            self.update_running(
                &mean.detach().squeeze(0)?,
                &var.detach().squeeze(0)?,
                n_effective,
            )?;
            (mean, var)
        } else {
            (
                self.running_mean.as_tensor().unsqueeze(0)?,
                self.running_var.as_tensor().unsqueeze(0)?,
            )
        };
        let xhat = x
            .broadcast_sub(&mean)?
            .broadcast_div(&var.affine(1.0, self.eps)?.sqrt()?)?;
        Ok(xhat
            .broadcast_mul(self.weight.as_tensor())?
            .broadcast_add(self.bias.as_tensor())?)
    }
}

impl BatchNorm {
    /// Fold a training batch's per-channel mean and biased variance (`[C]`, over `n_effective` rows)
    /// into the running statistics (PyTorch: unbiased variance, momentum-weighted).
    pub fn update_running(&self, mean: &Tensor, var: &Tensor, n_effective: usize) -> Result<()> {
        let n = n_effective.max(2) as f64;
        let m = self.momentum;
        let rm = self
            .running_mean
            .as_tensor()
            .affine(1.0 - m, 0.0)?
            .add(&mean.affine(m, 0.0)?)?;
        let rv = self
            .running_var
            .as_tensor()
            .affine(1.0 - m, 0.0)?
            .add(&var.affine(m * n / (n - 1.0), 0.0)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        Ok(())
    }
}

/// `LIF(BN(Linear(x)))` on `[T, B, N, C_in]` -> spikes `[T, B, N, C_out]`.
#[derive(Debug, Clone)]
pub struct LinearBnLif {
    /// Name prefix (`blocks.0.attn.q`).
    pub name: String,
    /// The projection.
    pub linear: Linear,
    /// Its normalisation.
    pub bn: BatchNorm,
    /// Neuron parameters.
    pub lif: LifConfig,
}

impl LinearBnLif {
    /// Create the unit `name` with `name.linear.*` and `name.bn.*` tensors.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        lif: LifConfig,
        eps: f64,
        momentum: f64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        Ok(LinearBnLif {
            name: name.to_string(),
            linear: Linear::new(store, &format!("{name}.linear"), in_dim, out_dim, rng)?,
            bn: BatchNorm::new(store, &format!("{name}.bn"), out_dim, eps, momentum)?,
            lif,
        })
    }

    /// The pre-synaptic current `BN(Linear(x))`, shaped like `x` with `C_out` channels.
    pub fn current(&self, x: &Tensor, pass: &mut Pass<'_>) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let c_in = dims[dims.len() - 1];
        let rows = x.elem_count() / c_in;
        let y = self.linear.forward(&x.reshape((rows, c_in))?, pass)?;
        let y = self.bn.forward(&y, pass.train, rows * pass.multiplicity)?;
        let mut out = dims;
        let last = out.len() - 1;
        out[last] = y.dim(1)?;
        Ok(y.reshape(out)?)
    }

    /// Spikes of the unit.
    pub fn forward(&self, x: &Tensor, pass: &mut Pass<'_>) -> Result<Tensor> {
        let cur = self.current(x, pass)?;
        let s = lif_multistep(&cur, &self.lif, pass.fire)?;
        if let Some(stats) = pass.stats.as_deref_mut() {
            stats.record_spikes(&self.name, &s)?;
        }
        Ok(s)
    }
}

/// Inverted dropout with a `DropMask` seeded from the pass's generator (identity outside training).
pub fn dropout(x: &Tensor, p: f64, pass: &mut Pass<'_>) -> Result<Tensor> {
    if !pass.train || p <= 0.0 {
        return Ok(x.clone());
    }
    let Some(rng) = pass.rng.as_deref_mut() else {
        return Ok(x.clone());
    };
    let seed = rng.random::<u64>();
    let width = x.dims().last().copied().unwrap_or(1).max(1);
    let mask = DropMask::draw(seed, x.elem_count() / width, width, p);
    let mask = Tensor::from_vec(mask.multipliers(keep_scale(p)), x.dims(), x.device())?
        .to_dtype(x.dtype())?;
    Ok((x * mask)?)
}
