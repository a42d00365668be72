//! The training loop: z-score, shuffle per epoch, forward/backward, clip, Adam, renormalise the
//! decoder, optionally resample dead features; checkpoint after every epoch; save the SAE, its
//! `cfg.json` and `metrics.json`.

use std::path::Path;
use std::time::Instant;

use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::sae::checkpoint::{EpochLog, StateMeta, TrainState, CHECKPOINT_FILE};
use crate::sae::config::{Arch, InputLevel, Phase, TrainConfig};
use crate::sae::input::{read_inputs, InputSpec, Inputs};
use crate::sae::kernel::{loss_and_grads, AuxK, JumpTerms, LossTerms, Sparsifier};
use crate::sae::metrics::{evaluate, Metrics};
use crate::sae::model::Sae;
use crate::sae::optim::{clip_coefficient, learning_rate, warmed_lambda, Adam};
use crate::sae::params::{normalize_row, Params};
use crate::sae::run::{RunCore, RunSource};
use crate::sae::saelens::{CFG_FILE, WEIGHTS_FILE};
use crate::sae::stream_train::{train_streaming, StreamRun};
use crate::sae::zscore;

/// File with the run's metrics.
pub const METRICS_FILE: &str = "metrics.json";
/// Decay of the BatchTopK inference threshold's running average.
pub const THRESHOLD_DECAY: f32 = 0.99;
/// Rows per matrix product in the final evaluation.
const EVAL_CHUNK: usize = 4096;
/// Rows of a batch copied per work item when the batch is gathered from the shuffled order.
const GATHER_ROWS: usize = 64;

/// How to run (not part of the result).
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from a checkpoint, or keep a finished run in place.
    pub resume: bool,
    /// Show a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Stop (after checkpointing) once this many epochs have been trained in this call; continue
    /// later with `resume` (for time-limited jobs).
    pub stop_after_epochs: Option<usize>,
}

/// `metrics.json`: the run's identity, final metrics and per-epoch log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunMetrics {
    /// Layer trained on, when known.
    pub layer: Option<String>,
    /// Tokens or cells.
    pub level: InputLevel,
    /// Architecture.
    pub arch: Arch,
    /// L1 coefficient.
    pub lambda: f64,
    /// k for TopK / BatchTopK.
    pub k: Option<usize>,
    /// Input width.
    pub d_in: usize,
    /// Dictionary size.
    pub d_sae: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Final metrics over all training inputs (z-scored space).
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Per-epoch running averages.
    pub history: Vec<EpochLog>,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct TrainedRun {
    /// The trained SAE.
    pub sae: Sae,
    /// Its metrics.
    pub metrics: RunMetrics,
    /// True when the run was already finished and was only loaded (`--resume`).
    pub skipped: bool,
    /// Wall-clock seconds spent training in this call.
    pub seconds: f64,
    /// Inputs processed per second in this call (epochs x inputs / seconds).
    pub inputs_per_second: f64,
}

/// Whether `dir` holds a finished run.
pub fn is_finished(dir: &Path) -> bool {
    dir.join(CFG_FILE).exists()
        && dir.join(WEIGHTS_FILE).exists()
        && dir.join(METRICS_FILE).exists()
}

fn read_metrics(dir: &Path) -> Result<RunMetrics> {
    let p = dir.join(METRICS_FILE);
    crate::io::json::read_json(&p, "metrics")
}

pub(crate) fn train_sparsifier(cfg: &TrainConfig) -> Result<Sparsifier<'static>> {
    cfg.arch
        .sparsifier(cfg.k, None, Phase::Training)
        .ok_or_else(|| Error::invalid(format!("{} SAEs cannot be trained", cfg.arch)))
}

pub(crate) fn epoch_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Decide what to do with `out` before any work: error for a finished or unfinished run without
/// `resume`; returns the finished run's metrics when it can be kept.
pub fn check_out_dir(out: &Path, cfg: &TrainConfig, resume: bool) -> Result<Option<RunMetrics>> {
    if out.exists() && !out.is_dir() {
        return Err(Error::input(out, "--out exists and is not a folder"));
    }
    if is_finished(out) {
        if !resume {
            return Err(Error::input(
                out,
                "already holds a trained SAE; pass --resume to keep it or choose another --out",
            ));
        }
        let sae = Sae::load(out)?;
        if sae.cfg.scsae.train != *cfg {
            return Err(Error::input(
                out,
                "holds an SAE trained with other options; choose another --out",
            ));
        }
        return Ok(Some(read_metrics(out)?));
    }
    if out.join(CHECKPOINT_FILE).exists() && !resume {
        return Err(Error::input(
            out,
            "holds an unfinished training run; pass --resume to continue it or choose another --out",
        ));
    }
    Ok(None)
}

/// One optimiser step on a z-scored batch (`[n, d_in]`): loss and gradients, optional decoder-gradient
/// projection, global-norm clipping, Adam at the scheduled learning rate, decoder renormalisation,
/// BatchTopK threshold update and the dead-feature window counts. Does not advance `meta.step`.
pub fn train_step(
    dev: &candle_core::Device,
    state: &mut TrainState,
    batch: &[f32],
    n: usize,
    cfg: &TrainConfig,
    total_steps: usize,
) -> Result<crate::sae::kernel::BatchStats> {
    let step = state.meta.step;
    let lambda = match cfg.arch {
        Arch::Standard | Arch::Jumprelu => warmed_lambda(cfg.lambda, step, cfg.l1_warmup_steps),
        _ => 0.0,
    };
    // SAELens keeps JumpReLU thresholds non-negative by projection before each step
    for t in state.params.threshold.iter_mut() {
        *t = t.max(0.0);
    }
    let dead: Vec<bool> = state
        .since_fired
        .iter()
        .map(|&c| c > cfg.dead_window as u64)
        .collect();
    let aux = (cfg.arch.uses_k() && cfg.aux_k_coef > 0.0).then_some(AuxK {
        dead: &dead,
        coef: cfg.aux_k_coef,
    });
    let levels = if cfg.arch == Arch::Matryoshka {
        cfg.matryoshka_levels()
    } else {
        Vec::new()
    };
    let terms = LossTerms {
        lambda,
        conv: cfg.loss,
        aux,
        prefixes: &levels[..levels.len().saturating_sub(1)],
        jump: (cfg.arch == Arch::Jumprelu).then_some(JumpTerms {
            threshold: &state.params.threshold,
            bandwidth: cfg.jumprelu_bandwidth,
        }),
        max_sparse_density: crate::sae::sparse_kernel::SPARSE_MAX_DENSITY,
    };
    let sparsifier = match cfg.arch {
        Arch::Jumprelu => Sparsifier::Threshold(&state.params.threshold),
        _ => train_sparsifier(cfg)?,
    };
    let (stats, mut g) = loss_and_grads(dev, &state.params.view(), batch, n, sparsifier, &terms)?;
    if !stats.loss.is_finite() {
        return Err(Error::invalid(format!(
            "training diverged at step {step} (loss {}); lower --lr",
            stats.loss
        )));
    }
    if cfg.project_decoder_grad {
        state.params.project_decoder_grad(&mut g.w_dec);
    }
    let (_, grad_scale) = clip_coefficient(
        &[&g.w_enc, &g.w_dec, &g.b_enc, &g.b_dec, &g.threshold],
        cfg.grad_clip,
    );
    let lr = learning_rate(cfg.lr, step, total_steps, cfg.cosine);
    let p = &mut state.params;
    // Adam, with each decoder row renormalised right after its update (one pass over W_dec)
    state.adam.step_scaled_then(
        &mut [
            &mut p.w_enc,
            &mut p.w_dec,
            &mut p.b_enc,
            &mut p.b_dec,
            &mut p.threshold,
        ],
        &[&g.w_enc, &g.w_dec, &g.b_enc, &g.b_dec, &g.threshold],
        lr,
        grad_scale,
        (1, p.d_in),
        normalize_row,
    );
    if cfg.arch.learns_threshold() {
        if let Some(v) = stats.min_active {
            let t = match state.meta.threshold() {
                None => v,
                Some(t) => THRESHOLD_DECAY * t + (1.0 - THRESHOLD_DECAY) * v,
            };
            state.meta.set_threshold(t);
        }
    }
    for ((w, c), f) in state
        .window_fired
        .iter_mut()
        .zip(state.since_fired.iter_mut())
        .zip(&stats.fired)
    {
        *w += *f as u64;
        *c = if *f > 0 { 0 } else { *c + 1 };
    }
    Ok(stats)
}

/// A fresh training state: parameters initialised from `cfg.seed`, zero Adam moments.
pub fn initial_state(cfg: &TrainConfig, d_in: usize, fingerprint: String) -> TrainState {
    let mut rng = epoch_rng(cfg.seed, 0);
    let m = cfg.d_sae;
    let mut params = Params::init(d_in, m, &mut rng);
    if cfg.tied_init {
        params.tie_encoder_to_decoder();
    }
    if cfg.arch == Arch::Jumprelu {
        params.threshold = vec![cfg.jumprelu_init_threshold as f32; m];
    }
    let t = params.threshold.len();
    TrainState {
        adam: Adam::new(
            &[d_in * m, m * d_in, m, d_in, t],
            cfg.beta1,
            cfg.beta2,
            cfg.eps,
        ),
        params,
        window_fired: vec![0; m],
        window_inputs: 0,
        since_fired: vec![0; m],
        meta: StateMeta {
            epoch: 0,
            step: 0,
            threshold_bits: None,
            adam_hyper: [cfg.beta1, cfg.beta2, cfg.eps],
            adam_t: 0,
            config: cfg.clone(),
            fingerprint,
            history: Vec::new(),
        },
    }
}

/// Train an SAE on `inputs` into `out` (see [`train_partial`] for stopping early).
pub fn train(
    rt: &Runtime,
    inputs: &Inputs,
    cfg: &TrainConfig,
    out: &Path,
    opts: &TrainOptions,
) -> Result<TrainedRun> {
    let opts = TrainOptions {
        stop_after_epochs: None,
        ..opts.clone()
    };
    train_partial(rt, inputs, cfg, out, &opts)?
        .ok_or_else(|| Error::invalid("training stopped before the last epoch"))
}

/// Train on what `spec` names: every row of an extraction folder streamed from disk when
/// `cfg.max_inputs` is 0 ([`crate::sae::stream_train`]), otherwise the inputs read into memory
/// (a seeded subsample of `max_inputs` rows, or a whole matrix file). Returns `None` when paused by
/// `opts.stop_after_epochs`.
pub fn train_inputs(
    rt: &Runtime,
    spec: &InputSpec<'_>,
    cfg: &TrainConfig,
    out: &Path,
    opts: &TrainOptions,
) -> Result<Option<TrainedRun>> {
    rt.require_f32("SAE training")?;
    if cfg.max_inputs == 0 && spec.path.is_dir() {
        // train_streaming opens the store; here only to name its layers when --layer is missing
        let layer = match spec.layer {
            Some(l) => l,
            None => crate::activations::require_layer(
                &crate::activations::ActivationStore::open(spec.path)?,
                None,
            )?,
        };
        let runs = [StreamRun {
            layer: layer.to_string(),
            cfg: cfg.clone(),
            out: out.to_path_buf(),
        }];
        return Ok(train_streaming(rt, spec.path, spec.level, &runs, opts)?
            .pop()
            .flatten());
    }
    let inputs = read_inputs(spec)?;
    cfg.validate(inputs.matrix.n_cols, inputs.matrix.n_rows)?;
    train_partial(rt, &inputs, cfg, out, opts)
}

/// Train, stopping after `opts.stop_after_epochs` epochs of this call if set: returns `None` when
/// the run was paused (its checkpoint is on disk), the finished run otherwise.
pub fn train_partial(
    rt: &Runtime,
    inputs: &Inputs,
    cfg: &TrainConfig,
    out: &Path,
    opts: &TrainOptions,
) -> Result<Option<TrainedRun>> {
    let x = &inputs.matrix;
    cfg.validate(x.n_cols, x.n_rows)?;
    if let Some(metrics) = check_out_dir(out, cfg, opts.resume)? {
        return Ok(Some(TrainedRun {
            sae: Sae::load(out)?,
            metrics,
            skipped: true,
            seconds: 0.0,
            inputs_per_second: 0.0,
        }));
    }
    let mut trainer = SaeTrainer::new(rt, inputs, cfg, out, opts)?;
    let t0 = Instant::now();
    while trainer.epoch() < cfg.epochs {
        trainer.run_epoch()?;
        trainer.checkpoint()?;
        if opts.stop_after_epochs == Some(trainer.epochs_this_call())
            && trainer.epoch() < cfg.epochs
        {
            trainer.bar.finish_and_clear();
            trainer.wait_checkpoint()?;
            return Ok(None);
        }
    }
    trainer.bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    trainer.finish(seconds).map(Some)
}

/// One in-memory SAE training run in its phases, in the manner of SAELens's `SAETrainer`:
/// [`SaeTrainer::new`] (z-score the inputs, resume the checkpoint or start from the initial state),
/// [`SaeTrainer::run_epoch`], [`SaeTrainer::checkpoint`] after each epoch, and
/// [`SaeTrainer::finish`] (final metrics, the SAE folder). [`train`] and [`train_partial`] drive it.
pub struct SaeTrainer<'a> {
    core: RunCore<'a>,
    inputs: &'a Inputs,
    /// The z-scored inputs, row-major `n x d`.
    xz: Vec<f32>,
    n: usize,
    d: usize,
    /// Rows per batch (`batch_size`, at most `n`).
    bs: usize,
    /// Scratch for one batch.
    batch: Vec<f32>,
    bar: ProgressBar,
}

impl<'a> SaeTrainer<'a> {
    /// Z-score the inputs and take the training state: the checkpoint in `out` when `opts.resume`
    /// (refused when it was written with other options or on other activations), the initial state
    /// otherwise. The output folder is assumed checked ([`check_out_dir`]).
    pub fn new(
        rt: &'a Runtime,
        inputs: &'a Inputs,
        cfg: &'a TrainConfig,
        out: &'a Path,
        opts: &TrainOptions,
    ) -> Result<Self> {
        let x = &inputs.matrix;
        let (n, d) = (x.n_rows, x.n_cols);
        let (mean, std) = zscore::fit(&x.data, d);
        let xz = zscore::apply(&x.data, &mean, &std);
        let core = RunCore::open(rt, cfg, out, opts, n, d, mean, std)?;
        let bs = cfg.batch_size.min(n);
        let bar = crate::progress::bar(opts.progress, core.total_steps as u64, "steps");
        bar.set_position(core.state.meta.step as u64);
        Ok(SaeTrainer {
            core,
            inputs,
            xz,
            n,
            d,
            bs,
            batch: vec![0f32; bs * d],
            bar,
        })
    }

    /// Epochs completed so far (in this call and before it).
    pub fn epoch(&self) -> usize {
        self.core.epoch()
    }

    /// Epochs completed in this call.
    pub fn epochs_this_call(&self) -> usize {
        self.core.epochs_this_call()
    }

    /// Train one epoch: a seeded shuffle, one optimiser step per batch (with dead-feature
    /// resampling on schedule), and the epoch's averages appended to the history.
    pub fn run_epoch(&mut self) -> Result<()> {
        let (cfg, d, epoch) = (self.core.cfg, self.d, self.core.epoch());
        self.bar
            .set_prefix(format!("epoch {}/{}", epoch + 1, cfg.epochs));
        let mut order: Vec<usize> = (0..self.n).collect();
        order.shuffle(&mut epoch_rng(cfg.seed, 1 + epoch as u64));
        self.core.begin_epoch();
        for idx in order.chunks(self.bs) {
            let nb = idx.len();
            let xz = &self.xz;
            self.batch[..nb * d]
                .par_chunks_mut(GATHER_ROWS * d)
                .zip(idx.par_chunks(GATHER_ROWS))
                .for_each(|(rows, idx)| {
                    for (row, &i) in rows.chunks_exact_mut(d).zip(idx) {
                        row.copy_from_slice(&xz[i * d..(i + 1) * d]);
                    }
                });
            let stats = self.core.step(&self.batch[..nb * d], nb, &self.xz)?;
            self.bar.inc(1);
            self.bar.set_message(batch_message(&stats));
        }
        self.core.end_epoch();
        Ok(())
    }

    /// Write the training state to `out/checkpoint.safetensors` (creating `out`) in the
    /// background: [`SaeTrainer::wait_checkpoint`] waits until it is on disk.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.core.checkpoint()
    }

    /// Wait until the last checkpoint is on disk (it is written in the background).
    pub fn wait_checkpoint(&mut self) -> Result<()> {
        self.core.wait_checkpoint()
    }

    /// Final metrics over all inputs, the SAE folder (`cfg.json`, weights, `metrics.json`), and the
    /// checkpoint removed. `seconds`: training time of this call (for the throughput).
    pub fn finish(self, seconds: f64) -> Result<TrainedRun> {
        let (p, threshold) = self.core.eval_parts();
        let metrics = evaluate(
            self.core.device(),
            &p,
            self.core.eval_sparsifier(threshold.as_deref())?,
            &self.xz,
            self.n,
            EVAL_CHUNK,
        )?;
        let source = RunSource {
            provenance: self.inputs.source.clone(),
            level: self.inputs.level,
            n: self.inputs.matrix.n_rows,
        };
        self.core.finish(metrics, &source, seconds)
    }
}

/// The progress bar's message after a batch.
pub(crate) fn batch_message(stats: &crate::sae::kernel::BatchStats) -> String {
    format!(
        "loss {:.4} L0 {:.1} R2 {:.3}",
        stats.loss,
        stats.active as f64 / stats.n.max(1) as f64,
        1.0 - stats.sse / stats.sst.max(f64::MIN_POSITIVE)
    )
}
