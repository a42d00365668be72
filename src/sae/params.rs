//! Trainable SAE parameters: initialisation and the unit-norm decoder constraint.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::sae::kernel::ParamsView;
use crate::sae::vector_ops;

/// Owned SAE parameters in the SAELens layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Input width.
    pub d_in: usize,
    /// Dictionary size.
    pub d_sae: usize,
    /// `[d_in, d_sae]`.
    pub w_enc: Vec<f32>,
    /// `[d_sae, d_in]`; each row (a feature's decoder direction) has unit L2 norm.
    pub w_dec: Vec<f32>,
    /// `[d_sae]`.
    pub b_enc: Vec<f32>,
    /// `[d_in]`.
    pub b_dec: Vec<f32>,
    /// `[d_sae]` JumpReLU thresholds, trained for `jumprelu` SAEs; empty for other architectures.
    pub threshold: Vec<f32>,
}

impl Params {
    /// PyTorch `nn.Linear`-style initialisation as in the paper's code: `W_enc ~ U(-1/sqrt(d_in),
    /// 1/sqrt(d_in))`, `W_dec ~ U(-1/sqrt(d_sae), 1/sqrt(d_sae))` with rows then scaled to unit norm,
    /// biases zero.
    pub fn init(d_in: usize, d_sae: usize, rng: &mut ChaCha8Rng) -> Params {
        let a = 1.0 / (d_in as f32).sqrt();
        let w_enc = (0..d_in * d_sae).map(|_| rng.random_range(-a..a)).collect();
        let b = 1.0 / (d_sae as f32).sqrt();
        let w_dec = (0..d_sae * d_in).map(|_| rng.random_range(-b..b)).collect();
        let mut p = Params {
            d_in,
            d_sae,
            w_enc,
            w_dec,
            b_enc: vec![0.0; d_sae],
            b_dec: vec![0.0; d_in],
            threshold: Vec::new(),
        };
        p.normalize_decoder();
        p
    }

    /// Set `W_enc` to the transpose of `W_dec` (SAELens's tied initialisation).
    pub fn tie_encoder_to_decoder(&mut self) {
        let (d, m) = (self.d_in, self.d_sae);
        for j in 0..m {
            for i in 0..d {
                self.w_enc[i * m + j] = self.w_dec[j * d + i];
            }
        }
    }

    /// Borrow as a [`ParamsView`].
    pub fn view(&self) -> ParamsView<'_> {
        ParamsView {
            d_in: self.d_in,
            d_sae: self.d_sae,
            w_enc: &self.w_enc,
            w_dec: &self.w_dec,
            b_enc: &self.b_enc,
            b_dec: &self.b_dec,
        }
    }

    /// Scale every decoder row to unit L2 norm (rows of norm 0 are left as they are).
    pub fn normalize_decoder(&mut self) {
        use rayon::prelude::*;
        self.w_dec
            .par_chunks_mut(self.d_in.max(1))
            .for_each(normalize_row);
    }

    /// Remove from `grad` (shaped like `W_dec`) each row's component parallel to the (unit) decoder row.
    pub fn project_decoder_grad(&self, grad: &mut [f32]) {
        for (g, w) in grad
            .chunks_exact_mut(self.d_in)
            .zip(self.w_dec.chunks_exact(self.d_in))
        {
            let dot: f32 = g.iter().zip(w).map(|(a, b)| a * b).sum();
            for (gv, wv) in g.iter_mut().zip(w) {
                *gv -= dot * wv;
            }
        }
    }
}

/// Scale one decoder row to unit Euclidean norm (a zero row stays zero).
pub fn normalize_row(row: &mut [f32]) {
    let norm = vector_ops::norm(row);
    if norm > 0.0 {
        let inv = (1.0 / norm) as f32;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}
