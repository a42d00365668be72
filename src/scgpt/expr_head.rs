//! scGPT's masked-expression head (GEP, `ExprDecoder` in the official `model/model.py`) and the
//! masking of its pretraining (`DataCollator._mask`).
//!
//! ```text
//! pred = fc4(leaky_relu(fc2(leaky_relu(fc0(h)))))      per position, h = the last block's output
//! ```
//! with PyTorch's LeakyReLU slope 0.01; the checkpoint keys are `decoder.fc.{0,2,4}.{weight,bias}`.
//! Pretraining replaces a Bernoulli(`mask_ratio`) share of every cell's gene values (never `<cls>`,
//! never padding) by `mask_value` (-1) and scores the head by the mean squared error at the masked
//! positions (`masked_mse_loss`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::scgpt::model::Linear;
use crate::scgpt::tokenize::{fnv1a64, splitmix64};

/// Negative slope of `nn.LeakyReLU()` (PyTorch's default).
pub const LEAKY_SLOPE: f64 = 0.01;
/// The value written at masked positions (`mask_value` of the official pretraining).
pub const MASK_VALUE: f32 = -1.0;

/// The expression head: three linear layers with LeakyReLU between them.
#[derive(Debug, Clone)]
pub struct ExprHead {
    /// `decoder.fc.0`, `d -> d`.
    pub fc0: Linear,
    /// `decoder.fc.2`, `d -> d`.
    pub fc2: Linear,
    /// `decoder.fc.4`, `d -> 1`.
    pub fc4: Linear,
}

impl ExprHead {
    /// Take the head out of a checkpoint's tensors; `Err` holds why it cannot be used (absent, or
    /// shaped for batch labels), worded for an error message about `weights`.
    pub fn take(
        tensors: &HashMap<String, Tensor>,
        d: usize,
        device: &Device,
        dtype: DType,
    ) -> std::result::Result<ExprHead, String> {
        let get = |key: &str, shape: &[usize]| -> std::result::Result<Tensor, String> {
            let t = tensors.get(key).ok_or_else(|| {
                format!("the checkpoint has no expression head (tensor '{key}' is missing)")
            })?;
            if t.dims() != shape {
                return Err(format!(
                    "expression head tensor '{key}' has shape {:?}, expected {shape:?} (heads with batch labels are not supported)",
                    t.dims()
                ));
            }
            t.to_device(device)
                .and_then(|t| t.to_dtype(dtype))
                .map_err(|e| e.to_string())
        };
        let lin = |p: &str, out: usize, inp: usize| -> std::result::Result<Linear, String> {
            Ok(Linear {
                weight: get(&format!("decoder.fc.{p}.weight"), &[out, inp])?,
                bias: get(&format!("decoder.fc.{p}.bias"), &[out])?,
            })
        };
        Ok(ExprHead {
            fc0: lin("0", d, d)?,
            fc2: lin("2", d, d)?,
            fc4: lin("4", 1, d)?,
        })
    }

    /// Predicted expression at every position of `h` (`[b, l, d]` -> `[b, l]`).
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let (b, l, d) = h.dims3()?;
        let flat = h.reshape((b * l, d))?;
        let x = leaky_relu(&self.fc0.forward(&flat)?)?;
        let x = leaky_relu(&self.fc2.forward(&x)?)?;
        Ok(self.fc4.forward(&x)?.reshape((b, l))?)
    }
}

fn leaky_relu(x: &Tensor) -> Result<Tensor> {
    // max(x, 0) + slope * min(x, 0)
    Ok((x.relu()? + (x.minimum(0.0)? * LEAKY_SLOPE)?)?)
}

/// The positions of one cell that pretraining-style masking hides: position 0 (`<cls>`) never,
/// each of positions `1..len` independently with probability `ratio`, drawn from a stream seeded
/// by the global seed, the cell id and the ratio (so a cell's mask does not depend on its batch).
pub fn mlm_mask(seed: u64, cell_id: &str, len: usize, ratio: f64) -> Vec<bool> {
    let key = seed ^ splitmix64(fnv1a64(cell_id) ^ splitmix64(ratio.to_bits() ^ 0x6d61_736b));
    let mut rng = ChaCha8Rng::seed_from_u64(key);
    (0..len)
        .map(|p| {
            let draw: f64 = rng.random();
            p > 0 && draw < ratio
        })
        .collect()
}

/// Error unless every ratio is strictly between 0 and 1 (the official collator's check).
pub fn check_mask_ratios(ratios: &[f64], origin: &Path) -> Result<()> {
    if ratios.is_empty() {
        return Err(Error::input(origin, "no mask ratio given"));
    }
    for &r in ratios {
        if !(r > 0.0 && r < 1.0) {
            return Err(Error::input(
                origin,
                format!("mask ratio {r} must be between 0 and 1 (exclusive)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_cls_and_hits_the_ratio() {
        let (n, r) = (20_001, 0.25);
        let m = mlm_mask(42, "cell-1", n, r);
        assert!(!m[0]);
        let share = m.iter().filter(|&&v| v).count() as f64 / (n - 1) as f64;
        // 4 standard deviations of a binomial share
        assert!(
            (share - r).abs() < 4.0 * (r * (1.0 - r) / (n - 1) as f64).sqrt(),
            "{share}"
        );
        assert_eq!(m, mlm_mask(42, "cell-1", n, r));
        assert_ne!(m, mlm_mask(42, "cell-2", n, r));
        assert_ne!(m, mlm_mask(43, "cell-1", n, r));
        // a prefix of a longer cell's mask is the shorter cell's mask (one draw per position)
        assert_eq!(mlm_mask(1, "c", 10, 0.5), mlm_mask(1, "c", 30, 0.5)[..10]);
    }

    #[test]
    fn leaky_relu_matches_pytorch_on_hand_values() {
        let x = Tensor::new(&[-2.0f32, -0.5, 0.0, 0.5, 3.0], &Device::Cpu).unwrap();
        let y = leaky_relu(&x).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y, vec![-0.02, -0.005, 0.0, 0.5, 3.0]);
    }

    #[test]
    fn ratios_outside_0_1_are_refused() {
        let p = Path::new("args.json");
        assert!(check_mask_ratios(&[0.25, 0.5], p).is_ok());
        for bad in [&[0.0][..], &[1.0], &[-0.1], &[f64::NAN], &[]] {
            assert!(check_mask_ratios(bad, p).is_err());
        }
    }
}
