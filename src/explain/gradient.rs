//! Logits of the annotator and the gradient of one class's logit with respect to the input
//! embedding, through the surrogate gradients of the spiking neurons.

use candle_core::{DType, Tensor, Var};

use crate::error::{Error, Result};
use crate::spikgpt::layers::Pass;
use crate::spikgpt::lif::FireMode;
use crate::spikgpt::SpikGpt;

/// Logits `[b, C]` (row-major) of embeddings `x` (`[b, k]` row-major) without gradients.
pub fn logits(model: &SpikGpt, x: &[f32]) -> Result<Vec<f32>> {
    let k = model.config.input_dim;
    let b = x.len() / k.max(1);
    let xt = Tensor::from_slice(x, (b, k), &model.params.device)?;
    let mut pass = Pass {
        train: false,
        fire: FireMode::SpikeNoGrad,
        rng: None,
        stats: None,
        multiplicity: 1,
    };
    let l = model.forward(&xt, &mut pass)?;
    Ok(l.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Logits `[b, C]` and `d logit[target_i] / d x_i` (`[b, k]`) for each row `i` of `x`.
///
/// `fire` is [`FireMode::Spike`] for the model itself (binary spikes forward, the surrogate
/// derivative backward) or [`FireMode::Smooth`] for the smooth surrogate network (used to check the
/// attribution arithmetic against a differentiable function). BatchNorm uses its running statistics,
/// so every row is independent of the others.
pub fn logit_gradients(
    model: &SpikGpt,
    x: &[f32],
    targets: &[usize],
    fire: FireMode,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let k = model.config.input_dim;
    let c = model.n_classes;
    let b = targets.len();
    if x.len() != b * k {
        return Err(Error::invalid(format!(
            "gradient batch: {} values for {b} rows of {k}",
            x.len()
        )));
    }
    if let Some(&t) = targets.iter().find(|&&t| t >= c) {
        return Err(Error::invalid(format!(
            "target class {t} out of range ({c} classes)"
        )));
    }
    let device = &model.params.device;
    let input = Var::from_tensor(&Tensor::from_slice(x, (b, k), device)?)?;
    let mut pass = Pass {
        train: false,
        fire,
        rng: None,
        stats: None,
        multiplicity: 1,
    };
    let out = model.forward(input.as_tensor(), &mut pass)?;
    let mut onehot = vec![0f32; b * c];
    for (i, &t) in targets.iter().enumerate() {
        onehot[i * c + t] = 1.0;
    }
    let mask = Tensor::from_vec(onehot, (b, c), device)?.to_dtype(out.dtype())?;
    let selected = (&out * mask)?.sum_all()?;
    let grads = selected.backward()?;
    let g = match grads.get(input.as_tensor()) {
        Some(g) => g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        // No path from the input to the logit (cannot happen for this architecture).
        None => vec![0f32; b * k],
    };
    let l = out.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok((l, g))
}
