//! Training options for sparse autoencoders, with the paper's defaults.
//!
//! Every field defaults (in code, in `cfg.json` via `#[serde(default)]`, and on the command line) to the
//! recipe of the scGPT SAE paper: L1 SAE, M = 2048, Adam lr 3e-4, batch 512, gradient-norm clip 1.0,
//! cosine schedule, 40 epochs, 50,000 inputs subsampled with seed 42, lambda 3, mean loss convention.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sae::kernel::Sparsifier;

/// SAE architecture (the encoder's sparsifying non-linearity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// ReLU encoder with an L1 penalty (the paper's SAE).
    #[default]
    Standard,
    /// Keep the `k` largest pre-activations per input (Gao et al. 2024); no L1 penalty.
    Topk,
    /// Keep the `batch * k` largest activations over the whole batch while training (Bussmann et al.
    /// 2024); at inference a JumpReLU with the learned threshold.
    Batchtopk,
    /// JumpReLU (Rajamanoharan et al. 2024; SAELens `jumprelu`): `z = pre` where `pre > threshold`,
    /// a learned per-latent threshold trained through a straight-through estimator with a rectangle
    /// kernel, and an L0 penalty (`lambda` is its coefficient). Imported SAELens JumpReLU SAEs load
    /// as this architecture too.
    Jumprelu,
    /// Matryoshka BatchTopK (Bussmann et al. 2025; SAELens `matryoshka_batchtopk`): BatchTopK plus a
    /// reconstruction loss for every nested prefix of latents (`matryoshka_widths`); at inference a
    /// JumpReLU with the learned threshold, like BatchTopK.
    #[serde(rename = "matryoshka_batchtopk")]
    Matryoshka,
}

/// When a sparsifier is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// During training (BatchTopK selects over the batch).
    Training,
    /// Encoding and evaluation (BatchTopK is a JumpReLU with the learned threshold).
    Inference,
}

impl Arch {
    /// Parse `cfg.json`'s `architecture` (SAELens's `jumprelu` included); `None` when unsupported.
    pub fn from_saved(s: &str) -> Option<Arch> {
        match s {
            "standard" => Some(Arch::Standard),
            "topk" => Some(Arch::Topk),
            "batchtopk" => Some(Arch::Batchtopk),
            "jumprelu" => Some(Arch::Jumprelu),
            "matryoshka_batchtopk" => Some(Arch::Matryoshka),
            _ => None,
        }
    }

    /// The one mapping from an architecture to its encoder non-linearity. `k` is used by TopK and
    /// training-time BatchTopK; `threshold` by BatchTopK at inference and JumpReLU. `None` when the
    /// threshold it needs is missing, or for training a JumpReLU SAE.
    pub fn sparsifier(
        self,
        k: usize,
        threshold: Option<&[f32]>,
        phase: Phase,
    ) -> Option<Sparsifier<'_>> {
        match (self, phase) {
            (Arch::Standard, _) => Some(Sparsifier::Relu),
            (Arch::Topk, _) => Some(Sparsifier::TopK(k)),
            (Arch::Batchtopk | Arch::Matryoshka, Phase::Training) => Some(Sparsifier::BatchTopK(k)),
            (Arch::Jumprelu, Phase::Training) => threshold.map(Sparsifier::Threshold),
            (Arch::Batchtopk | Arch::Matryoshka | Arch::Jumprelu, Phase::Inference) => {
                threshold.map(Sparsifier::Threshold)
            }
        }
    }

    /// SAELens's `activation_fn_str`: `"topk"` for TopK, `"relu"` otherwise (BatchTopK and JumpReLU
    /// apply their threshold on top of a ReLU).
    pub fn activation_fn_str(self) -> &'static str {
        match self {
            Arch::Topk => "topk",
            _ => "relu",
        }
    }

    /// Whether the architecture has a `k` (SAELens's `activation_fn_kwargs.k`).
    pub fn uses_k(self) -> bool {
        matches!(self, Arch::Topk | Arch::Batchtopk | Arch::Matryoshka)
    }

    /// Whether training learns a BatchTopK inference threshold (saved like a JumpReLU's).
    pub fn learns_threshold(self) -> bool {
        matches!(self, Arch::Batchtopk | Arch::Matryoshka)
    }
}

impl FromStr for Arch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "standard" | "l1" | "relu" => Ok(Arch::Standard),
            "topk" => Ok(Arch::Topk),
            "batchtopk" | "batch-topk" => Ok(Arch::Batchtopk),
            "matryoshka_batchtopk" | "matryoshka" => Ok(Arch::Matryoshka),
            "jumprelu" => Ok(Arch::Jumprelu),
            other => Err(Error::invalid(format!(
                "--arch {other}: expected standard, topk, batchtopk, matryoshka or jumprelu"
            ))),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::Standard => "standard",
            Arch::Topk => "topk",
            Arch::Batchtopk => "batchtopk",
            Arch::Jumprelu => "jumprelu",
            Arch::Matryoshka => "matryoshka_batchtopk",
        })
    }
}

/// How the loss is normalised; this sets the scale of lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LossConvention {
    /// The paper's code: `mean((h - h_hat)^2)` over batch and dims `+ lambda * mean(|z|)` over batch and
    /// latents. Lambda values are comparable to the paper's Table 2 with this convention.
    #[default]
    Mean,
    /// The paper's text (eq. 4): `||h - h_hat||_2^2 + lambda ||z||_1` per input, averaged over the batch.
    /// Equivalent to `mean` with lambda scaled by `d_sae / d_in` and the loss by `d_in`.
    Sum,
}

impl FromStr for LossConvention {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mean" => Ok(LossConvention::Mean),
            "sum" => Ok(LossConvention::Sum),
            other => Err(Error::invalid(format!(
                "--loss {other}: expected mean or sum"
            ))),
        }
    }
}

impl fmt::Display for LossConvention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LossConvention::Mean => "mean",
            LossConvention::Sum => "sum",
        })
    }
}

/// Which activations of an extraction folder to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InputLevel {
    /// Per-token residual-stream vectors (the paper).
    #[default]
    Tokens,
    /// Mean-pooled per-cell vectors.
    Cells,
}

impl FromStr for InputLevel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tokens" | "token" => Ok(InputLevel::Tokens),
            "cells" | "cell" => Ok(InputLevel::Cells),
            other => Err(Error::invalid(format!(
                "--level {other}: expected tokens or cells"
            ))),
        }
    }
}

impl fmt::Display for InputLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputLevel::Tokens => "tokens",
            InputLevel::Cells => "cells",
        })
    }
}

/// Everything that determines a training run (saved in `cfg.json` under `scsae.train`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Dictionary size M (paper: 2048, a 4x expansion of scGPT's 512 dims).
    pub d_sae: usize,
    /// Architecture.
    pub arch: Arch,
    /// Active latents per input for `topk` / `batchtopk`.
    pub k: usize,
    /// L1 coefficient (paper sweep: 1, 3, 10). Ignored by `topk` / `batchtopk`.
    pub lambda: f64,
    /// Loss normalisation (sets the scale of lambda).
    pub loss: LossConvention,
    /// Passes over the training inputs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Adam learning rate (peak of the cosine schedule).
    pub lr: f64,
    /// Adam beta1.
    pub beta1: f64,
    /// Adam beta2.
    pub beta2: f64,
    /// Adam epsilon.
    pub eps: f64,
    /// Clip the global gradient L2 norm to this value (0 = no clipping).
    pub grad_clip: f64,
    /// Cosine decay of the learning rate from `lr` to 0 over all steps.
    pub cosine: bool,
    /// Steps over which lambda rises linearly from 0 to its value (0 = off; SAELens `l1_warm_up_steps`).
    pub l1_warmup_steps: usize,
    /// Initialise the encoder as the decoder's transpose (SAELens `init_encoder_as_decoder_transpose`)
    /// instead of independently (the paper's `nn.Linear` init).
    pub tied_init: bool,
    /// Remove the gradient component parallel to each decoder row before the step (SAELens); off in
    /// the paper, which only renormalises after each step.
    pub project_decoder_grad: bool,
    /// Resample dead features every this many steps (0 = off): Anthropic's scheme (Towards
    /// Monosemanticity, 2023) without ghost grads.
    pub resample_every: usize,
    /// Inputs scored for the resampling probabilities (loss squared).
    pub resample_inputs: usize,
    /// Most inputs to train on (seeded uniform subsample; 0 = all). Paper: 50,000.
    pub max_inputs: usize,
    /// Seed of the input subsample (paper: 42).
    pub sample_seed: u64,
    /// Matryoshka level widths, strictly increasing, the last equal to `d_sae` (appended when
    /// missing, as SAELens does); the reconstruction of every prefix of latents up to a width is
    /// added to the loss. Only for `matryoshka_batchtopk`.
    pub matryoshka_widths: Vec<usize>,
    /// JumpReLU straight-through-estimator bandwidth (SAELens `jumprelu_bandwidth`, 0.05).
    pub jumprelu_bandwidth: f64,
    /// Initial JumpReLU threshold of every latent (SAELens `jumprelu_init_threshold`, 0.01).
    pub jumprelu_init_threshold: f64,
    /// TopK / BatchTopK auxiliary dead-latent loss coefficient (SAELens `aux_loss_coefficient`,
    /// default 1; 0 = off): the top `d_in / 2` dead latents' pre-activations reconstruct the
    /// main reconstruction's residual (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").
    pub aux_k_coef: f64,
    /// Steps without firing after which a latent counts as dead for the auxiliary loss (SAELens
    /// `dead_feature_window`, default 1000).
    pub dead_window: usize,
    /// Rows held in the shuffle buffer when training streams an extraction folder (`max_inputs` 0):
    /// batches are drawn at random from this many rows while parts are read in a seeded random
    /// order. Memory is about `shuffle_buffer x d_in x 4` bytes per layer. Not used in memory.
    pub shuffle_buffer: usize,
    /// Seed of initialisation, shuffling and resampling.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            d_sae: 2048,
            arch: Arch::Standard,
            k: 32,
            lambda: 3.0,
            loss: LossConvention::Mean,
            epochs: 40,
            batch_size: 512,
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            grad_clip: 1.0,
            cosine: true,
            l1_warmup_steps: 0,
            tied_init: false,
            project_decoder_grad: false,
            resample_every: 0,
            resample_inputs: 8192,
            max_inputs: 50_000,
            sample_seed: 42,
            matryoshka_widths: Vec::new(),
            jumprelu_bandwidth: 0.05,
            jumprelu_init_threshold: 0.01,
            aux_k_coef: 1.0,
            dead_window: 1000,
            shuffle_buffer: 65_536,
            seed: 42,
        }
    }
}

impl TrainConfig {
    /// The Matryoshka levels: `matryoshka_widths` with `d_sae` appended when it is not the last.
    pub fn matryoshka_levels(&self) -> Vec<usize> {
        let mut w = self.matryoshka_widths.clone();
        if w.last() != Some(&self.d_sae) {
            w.push(self.d_sae);
        }
        w
    }

    /// Check the options against each other and the input width.
    pub fn validate(&self, d_in: usize, n_inputs: usize) -> Result<()> {
        if self.d_sae == 0 {
            return Err(Error::invalid("--features must be at least 1"));
        }
        if self.epochs == 0 {
            return Err(Error::invalid("--epochs must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("--batch-size must be at least 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid("--lr must be a positive number"));
        }
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(Error::invalid("--lambda must be a non-negative number"));
        }
        if self.grad_clip < 0.0 || !self.grad_clip.is_finite() {
            return Err(Error::invalid("--grad-clip must be non-negative"));
        }
        if self.arch == Arch::Jumprelu
            && !(self.jumprelu_bandwidth > 0.0
                && self.jumprelu_bandwidth.is_finite()
                && self.jumprelu_init_threshold >= 0.0
                && self.jumprelu_init_threshold.is_finite())
        {
            return Err(Error::invalid(
                "--jumprelu-bandwidth must be positive and --jumprelu-init-threshold non-negative",
            ));
        }
        if self.arch.uses_k() && (self.k == 0 || self.k > self.d_sae) {
            return Err(Error::invalid(format!(
                "--k (--ks) {} must be between 1 and --features {}",
                self.k, self.d_sae
            )));
        }
        if self.arch == Arch::Matryoshka {
            let w = self.matryoshka_levels();
            if self.matryoshka_widths.is_empty()
                || w.windows(2).any(|p| p[0] >= p[1])
                || w[0] == 0
                || *w.last().unwrap_or(&0) != self.d_sae
            {
                return Err(Error::invalid(format!(
                    "--matryoshka-widths {:?} must be positive, strictly increasing and at most --features {}",
                    self.matryoshka_widths, self.d_sae
                )));
            }
        } else if !self.matryoshka_widths.is_empty() {
            return Err(Error::invalid(
                "--matryoshka-widths is only for --arch matryoshka",
            ));
        }
        if !(self.aux_k_coef >= 0.0 && self.aux_k_coef.is_finite()) {
            return Err(Error::invalid("--aux-k-coef must be a non-negative number"));
        }
        if self.shuffle_buffer == 0 {
            return Err(Error::invalid("--shuffle-buffer must be at least 1"));
        }
        if d_in == 0 || n_inputs == 0 {
            return Err(Error::invalid("no training inputs"));
        }
        Ok(())
    }
}
