//! Multi-step leaky integrate-and-fire neurons with surrogate gradients (SpikingJelly semantics).
//!
//! Input `X` has the time axis first (`[T, ...]`); the membrane starts at `V_reset` (0 for a soft
//! reset) for every new batch. Per step:
//! - charge: `H = V + (X - (V - V_reset)) / tau` (`decay_input`) or `H = V - (V - V_reset) / tau + X`;
//! - fire: `S = heaviside(H - V_th)`, `heaviside(0) = 1`;
//! - reset: hard `V = (1 - S) H + S V_reset`, soft `V = H - S V_th`; with `detach_reset` the `S` used in
//!   the reset carries no gradient.
//!
//! Backward through time is candle's autograd. The spike uses an exact straight-through construction:
//! `S = heaviside(x) + (x g - detach(x g))` with `g = sg'(x)` computed on the detached input, so the
//! forward value is exactly 0 or 1 and `dS/dx = sg'(x)` (see [`Surrogate`]).

use candle_core::{DType, Tensor};

use super::config::{LifConfig, Surrogate};
use crate::error::Result;

/// How the firing function is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireMode {
    /// Binary spikes with the surrogate gradient (the model).
    Spike,
    /// Binary spikes, no gradient bookkeeping (inference; cheaper).
    SpikeNoGrad,
    /// The smooth primitive `sg(x)` as the forward value (for gradient checks by finite differences).
    Smooth,
}

/// The surrogate derivative `sg'(x)` elementwise, as a tensor (no gradient).
pub fn surrogate_derivative(x: &Tensor, s: Surrogate) -> Result<Tensor> {
    let x = x.detach();
    Ok(match s {
        Surrogate::Sigmoid { alpha } => {
            let sg = candle_nn::ops::sigmoid(&x.affine(alpha, 0.0)?)?;
            (sg.affine(-1.0, 1.0)? * sg)?.affine(alpha, 0.0)?
        }
        Surrogate::Atan { alpha } => {
            let u = x.affine(std::f64::consts::FRAC_PI_2 * alpha, 0.0)?;
            u.sqr()?
                .affine(1.0, 1.0)?
                .recip()?
                .affine(alpha / 2.0, 0.0)?
        }
    })
}

/// The smooth primitive `sg(x)` as a differentiable tensor.
pub fn surrogate_primitive(x: &Tensor, s: Surrogate) -> Result<Tensor> {
    Ok(match s {
        Surrogate::Sigmoid { alpha } => candle_nn::ops::sigmoid(&x.affine(alpha, 0.0)?)?,
        Surrogate::Atan { .. } => {
            // candle has no atan; the smooth ATan primitive is only needed for gradient checks, which
            // use the sigmoid surrogate.
            return Err(crate::error::Error::invalid(
                "the smooth forward mode supports the sigmoid surrogate only",
            ));
        }
    })
}

/// Heaviside step with the surrogate gradient: forward exactly `x >= 0`, backward `sg'(x)`.
pub fn spike(x: &Tensor, s: Surrogate, mode: FireMode) -> Result<Tensor> {
    match mode {
        FireMode::SpikeNoGrad => Ok(x.ge(0.0)?.to_dtype(x.dtype())?),
        FireMode::Smooth => surrogate_primitive(x, s),
        FireMode::Spike => {
            let heaviside = x.detach().ge(0.0)?.to_dtype(x.dtype())?;
            let xg = (x * surrogate_derivative(x, s)?)?;
            let zero_with_grad = (&xg - xg.detach())?;
            Ok((heaviside + zero_with_grad)?)
        }
    }
}

/// Run a multi-step LIF neuron over `x` (`[T, ...]`), returning the spikes `[T, ...]`.
pub fn lif_multistep(x: &Tensor, cfg: &LifConfig, mode: FireMode) -> Result<Tensor> {
    let steps = x.dim(0)?;
    let v_reset = cfg.v_reset.unwrap_or(0.0);
    let inv_tau = 1.0 / cfg.tau;
    let first = x.get(0)?;
    let mut v = if v_reset == 0.0 {
        first.zeros_like()?
    } else {
        first.ones_like()?.affine(v_reset, 0.0)?
    };
    let mut out = Vec::with_capacity(steps);
    for t in 0..steps {
        let xt = x.get(t)?;
        let h = if cfg.decay_input {
            // H = V + (X - (V - Vr)) / tau
            let dv = (xt - v.affine(1.0, -v_reset)?)?;
            (&v + dv.affine(inv_tau, 0.0)?)?
        } else {
            // H = V - (V - Vr) / tau + X
            let leak = v.affine(inv_tau, -v_reset * inv_tau)?;
            ((&v - leak)? + xt)?
        };
        let s = spike(&h.affine(1.0, -cfg.v_threshold)?, cfg.surrogate, mode)?;
        let s_reset = if cfg.detach_reset {
            s.detach()
        } else {
            s.clone()
        };
        v = match cfg.v_reset {
            Some(vr) => {
                // V = (1 - S) H + S Vr
                let keep = (h * s_reset.affine(-1.0, 1.0)?)?;
                if vr == 0.0 {
                    keep
                } else {
                    (keep + s_reset.affine(vr, 0.0)?)?
                }
            }
            None => (h - s_reset.affine(cfg.v_threshold, 0.0)?)?,
        };
        out.push(s);
    }
    Ok(Tensor::stack(&out, 0)?)
}

/// Mean of a spike tensor (its firing rate), as f64.
pub fn firing_rate(spikes: &Tensor) -> Result<f64> {
    Ok(spikes
        .detach()
        .to_dtype(DType::F64)?
        .flatten_all()?
        .mean(0)?
        .to_scalar::<f64>()?)
}
