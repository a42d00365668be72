//! Adam (PyTorch's formulation, no weight decay) fused over flat `f32` buffers, global gradient-norm
//! clipping and the cosine learning-rate schedule.

use crate::sae::vector_ops::{self, AdamStep};

/// Adam state for a fixed list of parameter buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    /// First moments, one buffer per parameter.
    pub m: Vec<Vec<f32>>,
    /// Second moments, one buffer per parameter.
    pub v: Vec<Vec<f32>>,
    /// Steps taken so far.
    pub t: u64,
    /// beta1.
    pub beta1: f64,
    /// beta2.
    pub beta2: f64,
    /// epsilon.
    pub eps: f64,
}

impl Adam {
    /// Zero state for parameters of the given lengths.
    pub fn new(sizes: &[usize], beta1: f64, beta2: f64, eps: f64) -> Adam {
        Adam {
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            t: 0,
            beta1,
            beta2,
            eps,
        }
    }

    /// One update with learning rate `lr`, exactly as `torch.optim.Adam` (foreach=False):
    /// `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], lr: f64) {
        self.step_scaled(params, grads, lr, 1.0);
    }

    /// [`Adam::step`] on the gradients times `grad_scale` (the clipping coefficient of
    /// [`clip_coefficient`]), without writing the scaled gradients anywhere: the same bits as scaling
    /// them first.
    pub fn step_scaled(
        &mut self,
        params: &mut [&mut [f32]],
        grads: &[&[f32]],
        lr: f64,
        grad_scale: f32,
    ) {
        self.step_scaled_then(params, grads, lr, grad_scale, (usize::MAX, 1), |_| {});
    }

    /// [`Adam::step_scaled`], and `post` on each row of parameter `rows.0` (rows of `rows.1`
    /// values) right after that row's update, in the same pass (see [`vector_ops::adam_then`]).
    pub fn step_scaled_then<F: Fn(&mut [f32]) + Sync>(
        &mut self,
        params: &mut [&mut [f32]],
        grads: &[&[f32]],
        lr: f64,
        grad_scale: f32,
        rows: (usize, usize),
        post: F,
    ) {
        self.t += 1;
        let t = self.t as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let s = AdamStep {
            b1,
            one_b1: 1.0 - b1,
            b2,
            one_b2: 1.0 - b2,
            step_size: (lr / bc1) as f32,
            inv_bc2: (1.0 / bc2_sqrt) as f32,
            eps: self.eps as f32,
            grad_scale,
        };
        for (k, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            let (m, v) = (&mut self.m[k], &mut self.v[k]);
            if k == rows.0 {
                vector_ops::adam_then(p, g, m, v, s, rows.1, &post);
            } else {
                vector_ops::adam(p, g, m, v, s);
            }
        }
    }

    /// Zero the moments of selected entries of parameter `k` (used after resampling features).
    pub fn reset_entries(&mut self, k: usize, entries: impl Iterator<Item = usize>) {
        for i in entries {
            self.m[k][i] = 0.0;
            self.v[k][i] = 0.0;
        }
    }
}

/// Global gradient-norm clipping as PyTorch's `clip_grad_norm_`: the joint L2 norm of `grads` and
/// the factor to scale them by, `max_norm / (norm + 1e-6)` capped at 1 (1 when `max_norm == 0`).
/// The factor is applied inside [`Adam::step_scaled`], so the gradients are never rewritten.
pub fn clip_coefficient(grads: &[&[f32]], max_norm: f64) -> (f64, f32) {
    let total = grads
        .iter()
        .map(|g| vector_ops::sum_squares(g))
        .sum::<f64>()
        .sqrt();
    if max_norm > 0.0 {
        let coef = max_norm / (total + 1e-6);
        if coef < 1.0 {
            return (total, coef as f32);
        }
    }
    (total, 1.0)
}

/// Learning rate at step `step` (0-based) of `total`: cosine decay from `lr` to 0
/// (`CosineAnnealingLR(T_max = total, eta_min = 0)` stepped once per batch), or constant.
pub fn learning_rate(lr: f64, step: usize, total: usize, cosine: bool) -> f64 {
    if !cosine || total == 0 {
        return lr;
    }
    lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos())
}

/// Lambda at step `step` with a linear warm-up over `warmup` steps (SAELens `l1_warm_up_steps`).
pub fn warmed_lambda(lambda: f64, step: usize, warmup: usize) -> f64 {
    if warmup == 0 {
        lambda
    } else {
        lambda * ((step + 1) as f64 / warmup as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_matches_hand_computed_first_steps() {
        // torch.optim.Adam([p], lr=0.1) with p = [1.0], grads 0.5 then -0.25:
        // step1: m=0.05, v=0.00025, mhat=0.5, vhat=0.25 -> p = 1 - 0.1*0.5/(0.5+1e-8)
        let mut a = Adam::new(&[1], 0.9, 0.999, 1e-8);
        let mut p = vec![1.0f32];
        a.step(&mut [&mut p], &[&[0.5]], 0.1);
        assert!((p[0] - 0.9).abs() < 1e-6, "{}", p[0]);
        // step2: m=0.045-0.025=0.02, v=0.00024975+0.0000625=0.00031225
        // mhat=0.02/0.19=0.1052632, vhat=0.00031225/0.001999=0.1562031, sqrt=0.3952254
        a.step(&mut [&mut p], &[&[-0.25]], 0.1);
        let expected = 0.9 - 0.1 * 0.105_263_16 / 0.395_225_4;
        assert!(
            (p[0] as f64 - expected).abs() < 1e-6,
            "{} vs {expected}",
            p[0]
        );
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let (n, c) = clip_coefficient(&[&[3.0], &[4.0]], 1.0);
        assert!((n - 5.0).abs() < 1e-9);
        assert!((3.0 * c - 0.6).abs() < 1e-6 && (4.0 * c - 0.8).abs() < 1e-6);
        assert_eq!(clip_coefficient(&[&[0.3]], 1.0), (0.30000001192092896, 1.0));
        assert_eq!(clip_coefficient(&[&[30.0]], 0.0).1, 1.0);
        // the scaled Adam step equals Adam on the scaled gradient, bit for bit
        let (mut a, mut b) = (
            Adam::new(&[2], 0.9, 0.999, 1e-8),
            Adam::new(&[2], 0.9, 0.999, 1e-8),
        );
        let (mut p, mut q) = (vec![1.0f32, -2.0], vec![1.0f32, -2.0]);
        a.step_scaled(&mut [&mut p], &[&[3.0, 4.0]], 0.1, c);
        b.step(&mut [&mut q], &[&[3.0 * c, 4.0 * c]], 0.1);
        assert_eq!(p, q);
    }

    #[test]
    fn schedules() {
        assert_eq!(learning_rate(1.0, 0, 10, true), 1.0);
        assert!((learning_rate(1.0, 5, 10, true) - 0.5).abs() < 1e-12);
        assert!(learning_rate(1.0, 10, 10, true).abs() < 1e-12);
        assert_eq!(learning_rate(0.3, 7, 10, false), 0.3);
        assert!((warmed_lambda(3.0, 0, 4) - 0.75).abs() < 1e-12);
        assert_eq!(warmed_lambda(3.0, 3, 4), 3.0);
        assert_eq!(warmed_lambda(3.0, 100, 4), 3.0);
    }
}
