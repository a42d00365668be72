//! `scsae train`: train one sparse autoencoder on one layer's activations.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::runtime::Runtime;
use crate::sae::config::{Arch, InputLevel, LossConvention, TrainConfig};
use crate::sae::input::InputSpec;
use crate::sae::train::{train_inputs, TrainOptions, TrainedRun};

/// Training options shared by `scsae train` and `scsae sweep` (defaults: the paper's recipe).
#[derive(Debug, Clone, Args)]
pub struct SaeOptions {
    /// Per-token activations (the paper) or mean-pooled cell vectors of an extraction folder.
    #[arg(long, default_value = "tokens")]
    pub level: InputLevel,
    /// Dictionary size M.
    #[arg(long, default_value_t = 2048)]
    pub features: usize,
    /// Architecture: standard (ReLU + L1, the paper), topk, batchtopk, matryoshka (BatchTopK with
    /// nested reconstruction losses) or jumprelu (learned thresholds, L0 penalty = --lambda).
    #[arg(long, default_value = "standard")]
    pub arch: Arch,
    /// Matryoshka level widths (--arch matryoshka), strictly increasing; --features is appended as
    /// the last level when missing (e.g. 128,512 with --features 2048).
    #[arg(long, value_delimiter = ',')]
    pub matryoshka_widths: Vec<usize>,
    /// JumpReLU straight-through-estimator bandwidth (SAELens default 0.05).
    #[arg(long, default_value_t = 0.05)]
    pub jumprelu_bandwidth: f64,
    /// Initial JumpReLU threshold of every latent (SAELens default 0.01).
    #[arg(long, default_value_t = 0.01)]
    pub jumprelu_init_threshold: f64,
    /// Active latents per input for topk / batchtopk.
    #[arg(long, default_value_t = 32)]
    pub k: usize,
    /// Loss convention: mean (the paper's code; lambda comparable to its Table 2) or sum (its eq. 4).
    #[arg(long, default_value = "mean")]
    pub loss: LossConvention,
    /// Passes over the training inputs.
    #[arg(long, default_value_t = 40)]
    pub epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 512)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    /// Clip the global gradient norm to this (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f64,
    /// Keep the learning rate constant instead of the cosine schedule.
    #[arg(long)]
    pub constant_lr: bool,
    /// Steps of linear L1 warm-up from 0 (0 = off).
    #[arg(long, default_value_t = 0)]
    pub l1_warmup: usize,
    /// Initialise W_enc as W_dec transposed (SAELens; recommended for topk / batchtopk).
    #[arg(long)]
    pub tied_init: bool,
    /// Project out the gradient component parallel to each decoder row (SAELens).
    #[arg(long)]
    pub project_decoder_grad: bool,
    /// TopK / BatchTopK auxiliary dead-latent loss coefficient (SAELens default 1; 0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub aux_k_coef: f64,
    /// Steps without firing after which a latent is dead for the auxiliary loss (SAELens: 1000).
    #[arg(long, default_value_t = 1000)]
    pub dead_window: usize,
    /// Resample dead features every N steps (0 = off).
    #[arg(long, default_value_t = 0)]
    pub resample_every: usize,
    /// Inputs scored when resampling.
    #[arg(long, default_value_t = 8192)]
    pub resample_inputs: usize,
    /// Train on at most this many inputs (seeded subsample, held in memory); 0 = every row of an
    /// extraction folder, streamed from disk through the shuffle buffer (memory independent of the
    /// store's size; `scsae sweep` then trains all its runs in the same passes).
    #[arg(long, default_value_t = 50_000)]
    pub max_inputs: usize,
    /// Rows held in the shuffle buffer when streaming (--max-inputs 0): about 2 KB each at d = 512,
    /// per layer.
    #[arg(long, default_value_t = 65_536)]
    pub shuffle_buffer: usize,
    /// Seed of the input subsample.
    #[arg(long, default_value_t = 42)]
    pub sample_seed: u64,
    /// Continue an interrupted run from its checkpoint (a finished run is kept as is).
    #[arg(long)]
    pub resume: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Stop after this many epochs in this invocation (checkpointed; continue with --resume).
    #[arg(long)]
    pub stop_after_epochs: Option<usize>,
}

impl SaeOptions {
    /// The training config for `lambda` and the runtime's seed.
    pub fn config(&self, lambda: f64, seed: u64) -> TrainConfig {
        TrainConfig {
            d_sae: self.features,
            arch: self.arch,
            k: self.k,
            lambda,
            loss: self.loss,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            grad_clip: self.grad_clip,
            cosine: !self.constant_lr,
            l1_warmup_steps: self.l1_warmup,
            tied_init: self.tied_init,
            project_decoder_grad: self.project_decoder_grad,
            resample_every: self.resample_every,
            resample_inputs: self.resample_inputs,
            max_inputs: self.max_inputs,
            sample_seed: self.sample_seed,
            shuffle_buffer: self.shuffle_buffer,
            aux_k_coef: self.aux_k_coef,
            matryoshka_widths: self.matryoshka_widths.clone(),
            jumprelu_bandwidth: self.jumprelu_bandwidth,
            jumprelu_init_threshold: self.jumprelu_init_threshold,
            dead_window: self.dead_window,
            seed,
            ..TrainConfig::default()
        }
    }

    /// Run options.
    pub fn options(&self) -> TrainOptions {
        TrainOptions {
            resume: self.resume,
            progress: !self.quiet,
            stop_after_epochs: self.stop_after_epochs,
        }
    }
}

/// `scsae train` arguments.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Extraction folder (from `scsae extract`) or a matrix file (.safetensors, .npy, .csv, .parquet).
    #[arg(long)]
    pub activations: PathBuf,
    /// Layer to train on (required for an extraction folder; recorded for a matrix file).
    #[arg(long)]
    pub layer: Option<String>,
    /// Tensor name inside a safetensors matrix file.
    #[arg(long)]
    pub key: Option<String>,
    /// L1 coefficient (paper: 1, 3, 10); for --arch jumprelu the L0 coefficient (SAELens
    /// `l0_coefficient`).
    #[arg(long, default_value_t = 3.0)]
    pub lambda: f64,
    /// Output folder for the SAE.
    #[arg(long)]
    pub out: PathBuf,
    /// Training options.
    #[command(flatten)]
    pub sae: SaeOptions,
}

/// Train; returns a one-line summary.
pub fn run(args: &TrainArgs, rt: &Runtime) -> Result<String> {
    let cfg = args.sae.config(args.lambda, rt.seed);
    let spec = InputSpec {
        path: &args.activations,
        layer: args.layer.as_deref(),
        level: args.sae.level,
        key: args.key.as_deref(),
        max_rows: cfg.max_inputs,
        sample_seed: cfg.sample_seed,
    };
    let Some(run) = train_inputs(rt, &spec, &cfg, &args.out, &args.sae.options())? else {
        return Ok(format!(
            "{}: paused after {} epoch(s); continue with --resume",
            args.out.display(),
            args.sae.stop_after_epochs.unwrap_or(0)
        ));
    };
    Ok(summary(&args.out, &run))
}

/// The one-line summary of a finished run.
fn summary(out: &std::path::Path, run: &TrainedRun) -> String {
    let m = &run.metrics.metrics;
    let speed = if run.skipped {
        "already trained".to_string()
    } else {
        format!("{:.0} inputs/s", run.inputs_per_second)
    };
    format!(
        "{}: {} inputs x {} dims -> {} features: L0 {:.1}, R2 {:.4}, MSE {:.4}, alive {}, dead {} ({speed})",
        out.display(),
        m.n_inputs,
        run.metrics.d_in,
        run.metrics.d_sae,
        m.l0,
        m.r2,
        m.mse,
        m.alive,
        m.dead
    )
}
