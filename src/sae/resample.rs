//! Resampling of dead features (Anthropic, "Towards Monosemanticity", 2023; no ghost grads).
//!
//! Every `resample_every` steps, features that did not fire once since the last resampling are
//! re-initialised: score a random sample of training inputs by their squared reconstruction loss,
//! draw one input per dead feature with probability proportional to the loss squared, set the
//! feature's decoder row to that input scaled to unit norm, its encoder column to the same direction
//! scaled to 0.2 x the mean encoder-column norm of the alive features, its encoder bias to 0, and
//! zero the Adam moments of everything touched.

use candle_core::Device;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::sae::input::subsample_rows;
use crate::sae::kernel::{activate, decode, pre_activations, Sparsifier};
use crate::sae::optim::Adam;
use crate::sae::params::Params;

/// Scale of a resampled encoder column relative to the mean alive encoder-column norm.
pub const ENCODER_SCALE: f32 = 0.2;

/// Re-initialise the features in `dead` from high-loss inputs among `x` (`[n, d_in]`, z-scored),
/// scoring at most `n_score` of them. Returns how many features were resampled.
#[allow(clippy::too_many_arguments)]
pub fn resample_dead(
    dev: &Device,
    params: &mut Params,
    adam: &mut Adam,
    dead: &[usize],
    x: &[f32],
    n: usize,
    s: Sparsifier<'_>,
    n_score: usize,
    rng: &mut ChaCha8Rng,
) -> Result<usize> {
    if dead.is_empty() || n == 0 {
        return Ok(0);
    }
    let (d, m) = (params.d_in, params.d_sae);
    let rows = subsample_rows(n, n_score, rng.random::<u64>());
    let mut xs = Vec::with_capacity(rows.len() * d);
    for &r in &rows {
        xs.extend_from_slice(&x[r * d..(r + 1) * d]);
    }
    let k = rows.len();
    let (_, pre) = pre_activations(dev, &params.view(), &xs, k)?;
    let z = activate(&pre, m, s);
    let xhat = decode(dev, &params.view(), &z, k)?;
    let weights: Vec<f64> = xs
        .chunks_exact(d)
        .zip(xhat.chunks_exact(d))
        .map(|(a, b)| {
            let l: f64 = a.iter().zip(b).map(|(u, v)| ((u - v) as f64).powi(2)).sum();
            l * l
        })
        .collect();
    let total: f64 = weights.iter().sum();

    let is_dead = {
        let mut v = vec![false; m];
        for &j in dead {
            v[j] = true;
        }
        v
    };
    let col_norm = |p: &Params, j: usize| -> f64 {
        (0..d)
            .map(|i| (p.w_enc[i * m + j] as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let alive: Vec<usize> = (0..m).filter(|&j| !is_dead[j]).collect();
    let enc_norm = if alive.is_empty() {
        1.0
    } else {
        alive.iter().map(|&j| col_norm(params, j)).sum::<f64>() / alive.len() as f64
    } as f32;

    for &j in dead {
        let pick = if total > 0.0 {
            let target = rng.random::<f64>() * total;
            let mut acc = 0.0;
            let mut idx = k - 1;
            for (i, w) in weights.iter().enumerate() {
                acc += w;
                if acc > target {
                    idx = i;
                    break;
                }
            }
            idx
        } else {
            rng.random_range(0..k)
        };
        let v = &xs[pick * d..(pick + 1) * d];
        let norm = v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let inv = (1.0 / norm) as f32;
        for (i, vi) in v.iter().enumerate() {
            params.w_dec[j * d + i] = vi * inv;
            params.w_enc[i * m + j] = vi * inv * ENCODER_SCALE * enc_norm;
        }
        params.b_enc[j] = 0.0;
        adam.reset_entries(0, (0..d).map(|i| i * m + j));
        adam.reset_entries(1, j * d..(j + 1) * d);
        adam.reset_entries(2, std::iter::once(j));
    }
    Ok(dead.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn dead_feature_points_at_the_badly_reconstructed_input() {
        // d = 2, m = 2; feature 0 reconstructs e1 perfectly, feature 1 is dead.
        let mut p = Params {
            d_in: 2,
            d_sae: 2,
            w_enc: vec![1.0, 0.0, 0.0, -1.0],
            w_dec: vec![1.0, 0.0, 0.0, 1.0],
            b_enc: vec![0.0, -5.0],
            b_dec: vec![0.0, 0.0],
            threshold: Vec::new(),
        };
        let mut adam = Adam::new(&[4, 4, 2, 2], 0.9, 0.999, 1e-8);
        for b in adam.m.iter_mut() {
            b.fill(1.0);
        }
        // inputs along e1 (loss 0) and one along e2 (the only one with loss)
        let x = vec![1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.5, 0.0];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let n = resample_dead(
            &Device::Cpu,
            &mut p,
            &mut adam,
            &[1],
            &x,
            4,
            Sparsifier::Relu,
            100,
            &mut rng,
        )
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(&p.w_dec[2..4], &[0.0, 1.0]);
        // encoder column 1 = e2 * 0.2 * |alive column 0| (= 1)
        assert_eq!(p.w_enc[1], 0.0);
        assert!((p.w_enc[3] - 0.2).abs() < 1e-7);
        assert_eq!(p.b_enc[1], 0.0);
        // feature 0 untouched, Adam moments of feature 1 cleared
        assert_eq!(&p.w_dec[0..2], &[1.0, 0.0]);
        assert_eq!(adam.m[0], vec![1.0, 0.0, 1.0, 0.0]);
        assert_eq!(adam.m[1], vec![1.0, 1.0, 0.0, 0.0]);
        assert_eq!(adam.m[2], vec![1.0, 0.0]);
    }
}
