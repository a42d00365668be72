//! One SAE training run independent of where its batches come from: the locked output folder, the
//! resumed or fresh state, one optimiser step per batch with dead-feature resampling on schedule, the
//! per-epoch log, checkpoints, and the finished SAE folder. The in-memory trainer
//! ([`crate::sae::train`]) and the streaming one ([`crate::sae::stream_train`]) both drive it.

use std::path::Path;

use crate::activations::Provenance;
use crate::error::{Error, IoContext, Result};
use crate::io::atomic::{write_json_atomic, BackgroundWrite};
use crate::io::lock::{remove_stale_temporaries, OutputLock};
use crate::runtime::Runtime;
use crate::sae::checkpoint::{self, EpochLog, TrainState, CHECKPOINT_FILE};
use crate::sae::config::{InputLevel, Phase, TrainConfig};
use crate::sae::kernel::{BatchStats, ParamsView, Sparsifier};
use crate::sae::metrics::Metrics;
use crate::sae::model::Sae;
use crate::sae::optim::learning_rate;
use crate::sae::resample::resample_dead;
use crate::sae::saelens::{hook_for_layer, SaeConfig, SaeTensors, ScsaeInfo, FORMAT};
use crate::sae::train::{
    epoch_rng, initial_state, is_finished, train_sparsifier, train_step, RunMetrics, TrainOptions,
    TrainedRun, METRICS_FILE,
};

/// What the run was trained on, for `cfg.json` and `metrics.json`.
#[derive(Debug, Clone)]
pub struct RunSource {
    /// Where the activations came from (layer included).
    pub provenance: Provenance,
    /// Tokens or cells.
    pub level: InputLevel,
    /// Training inputs (rows).
    pub n: usize,
}

/// The state of one run between batches.
pub(crate) struct RunCore<'a> {
    rt: &'a Runtime,
    pub(crate) cfg: &'a TrainConfig,
    out: &'a Path,
    mean: Vec<f32>,
    std: Vec<f32>,
    pub(crate) state: TrainState,
    n: usize,
    d: usize,
    steps_per_epoch: usize,
    pub(crate) total_steps: usize,
    start_epoch: usize,
    log: EpochLog,
    sse: f64,
    sst: f64,
    active: u64,
    /// The checkpoint being written (declared before the lock: dropped, and so waited for, first).
    checkpoint_write: BackgroundWrite,
    _lock: OutputLock,
}

impl<'a> RunCore<'a> {
    /// Lock `out` and take the training state for `n` inputs `d` wide with z-score `mean` / `std`:
    /// the checkpoint in `out` when `opts.resume` (refused when written with other options or on
    /// other activations), the initial state otherwise. The folder is assumed checked
    /// ([`crate::sae::train::check_out_dir`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        rt: &'a Runtime,
        cfg: &'a TrainConfig,
        out: &'a Path,
        opts: &TrainOptions,
        n: usize,
        d: usize,
        mean: Vec<f32>,
        std: Vec<f32>,
    ) -> Result<Self> {
        let lock = OutputLock::acquire(out)?;
        if is_finished(out) && !opts.resume {
            return Err(Error::input(
                out,
                "another run finished an SAE in this folder meanwhile; choose another --out",
            ));
        }
        remove_stale_temporaries(out)?;
        let fp = checkpoint::fingerprint(n, &mean, &std);
        let state = resume_state(cfg, out, d, fp, opts.resume)?;
        let bs = cfg.batch_size.min(n).max(1);
        let steps_per_epoch = n.div_ceil(bs);
        Ok(RunCore {
            rt,
            cfg,
            out,
            mean,
            std,
            start_epoch: state.meta.epoch,
            state,
            n,
            d,
            steps_per_epoch,
            total_steps: steps_per_epoch * cfg.epochs,
            log: EpochLog::default(),
            sse: 0.0,
            sst: 0.0,
            active: 0,
            checkpoint_write: BackgroundWrite::default(),
            _lock: lock,
        })
    }

    /// The device the run computes on.
    pub(crate) fn device(&self) -> &candle_core::Device {
        &self.rt.device
    }

    /// Epochs completed so far (in this call and before it).
    pub(crate) fn epoch(&self) -> usize {
        self.state.meta.epoch
    }

    /// Epochs completed in this call.
    pub(crate) fn epochs_this_call(&self) -> usize {
        self.state.meta.epoch - self.start_epoch
    }

    /// Start an epoch's log.
    pub(crate) fn begin_epoch(&mut self) {
        self.log = EpochLog {
            epoch: self.state.meta.epoch + 1,
            ..EpochLog::default()
        };
        (self.sse, self.sst, self.active) = (0.0, 0.0, 0);
    }

    /// One optimiser step on the z-scored batch `batch` (`nb` rows); dead features are resampled on
    /// schedule from high-loss rows of `pool` (z-scored training inputs: all of them in memory, the
    /// shuffle buffer when streaming).
    pub(crate) fn step(&mut self, batch: &[f32], nb: usize, pool: &[f32]) -> Result<BatchStats> {
        let cfg = self.cfg;
        let stats = train_step(
            &self.rt.device,
            &mut self.state,
            batch,
            nb,
            cfg,
            self.total_steps,
        )?;
        let lr = learning_rate(cfg.lr, self.state.meta.step, self.total_steps, cfg.cosine);
        self.state.window_inputs += nb as u64;
        self.state.meta.step += 1;
        self.log.resampled += self.resample_if_due(pool)?;
        self.log.loss += stats.loss;
        self.log.recon_loss += stats.recon_loss;
        self.log.l1_loss += stats.l1_loss;
        self.log.lr = lr;
        self.sse += stats.sse;
        self.sst += stats.sst;
        self.active += stats.active;
        Ok(stats)
    }

    /// Every `resample_every` steps: resample the features that did not fire in the window and
    /// restart the window. Returns how many features were resampled.
    fn resample_if_due(&mut self, pool: &[f32]) -> Result<usize> {
        let cfg = self.cfg;
        let step = self.state.meta.step;
        if cfg.resample_every == 0 || !step.is_multiple_of(cfg.resample_every) {
            return Ok(0);
        }
        let dead: Vec<usize> = (0..cfg.d_sae)
            .filter(|&j| self.state.window_fired[j] == 0)
            .collect();
        let mut rng = epoch_rng(cfg.seed, (1u64 << 32) + step as u64);
        let threshold = self.state.params.threshold.clone();
        let sparsifier = if threshold.is_empty() {
            train_sparsifier(cfg)?
        } else {
            Sparsifier::Threshold(&threshold)
        };
        let resampled = resample_dead(
            &self.rt.device,
            &mut self.state.params,
            &mut self.state.adam,
            &dead,
            pool,
            pool.len() / self.d.max(1),
            sparsifier,
            cfg.resample_inputs,
            &mut rng,
        )?;
        self.state.window_fired.fill(0);
        self.state.window_inputs = 0;
        Ok(resampled)
    }

    /// Close the epoch: its averages appended to the history, the epoch counter advanced.
    pub(crate) fn end_epoch(&mut self) {
        let nbatches = self.steps_per_epoch as f64;
        let mut log = std::mem::take(&mut self.log);
        log.loss /= nbatches;
        log.recon_loss /= nbatches;
        log.l1_loss /= nbatches;
        log.l0 = self.active as f64 / self.n as f64;
        log.r2 = if self.sst > 0.0 {
            1.0 - self.sse / self.sst
        } else {
            f64::NAN
        };
        self.state.meta.history.push(log.rounded());
        self.state.meta.epoch += 1;
        self.state.meta.adam_t = self.state.adam.t;
    }

    /// Write the training state to `out/checkpoint.safetensors` (creating `out`): serialised here,
    /// written atomically on a background thread while training goes on (after the previous
    /// checkpoint's write has finished; its error, if any, is returned here).
    pub(crate) fn checkpoint(&mut self) -> Result<()> {
        std::fs::create_dir_all(self.out).at(self.out)?;
        let (path, bytes) = checkpoint::serialize(self.out, &self.state)?;
        self.checkpoint_write.start(path, bytes)
    }

    /// Wait until the last checkpoint is on disk (or return why it is not).
    pub(crate) fn wait_checkpoint(&mut self) -> Result<()> {
        self.checkpoint_write.wait()
    }

    /// The inference threshold (one value per feature): JumpReLU's learned thresholds, BatchTopK's
    /// running scalar; for other architectures none.
    fn threshold(&self) -> Option<Vec<f32>> {
        if !self.state.params.threshold.is_empty() {
            return Some(self.state.params.threshold.clone());
        }
        self.cfg
            .arch
            .learns_threshold()
            .then(|| vec![self.state.meta.threshold().unwrap_or(0.0).max(0.0); self.cfg.d_sae])
    }

    /// The parameters and the inference-time sparsifier, for the final evaluation; the threshold
    /// vector must outlive the sparsifier, so it is returned alongside.
    pub(crate) fn eval_parts(&self) -> (ParamsView<'_>, Option<Vec<f32>>) {
        (self.state.params.view(), self.threshold())
    }

    /// The inference sparsifier of this run given [`RunCore::eval_parts`]'s threshold.
    pub(crate) fn eval_sparsifier<'t>(
        &self,
        threshold: Option<&'t [f32]>,
    ) -> Result<Sparsifier<'t>> {
        self.cfg
            .arch
            .sparsifier(self.cfg.k, threshold, Phase::Inference)
            .ok_or_else(|| Error::invalid(format!("{} SAE without a threshold", self.cfg.arch)))
    }

    /// Save the SAE folder (`cfg.json`, weights, `metrics.json`) with the final `metrics`, and remove
    /// the checkpoint. `seconds`: training time of this call (for the throughput).
    pub(crate) fn finish(
        mut self,
        metrics: Metrics,
        source: &RunSource,
        seconds: f64,
    ) -> Result<TrainedRun> {
        self.wait_checkpoint()?;
        let (cfg, n, d, m) = (self.cfg, self.n, self.d, self.cfg.d_sae);
        let trained_epochs = (cfg.epochs - self.start_epoch) as f64;
        let threshold = self.threshold();
        let sae_cfg = sae_config(source, cfg, d, &metrics);
        let p = self.state.params;
        let sae = Sae::from_parts(
            sae_cfg,
            SaeTensors {
                w_enc: p.w_enc,
                w_dec: p.w_dec,
                b_enc: p.b_enc,
                b_dec: p.b_dec,
                input_mean: self.mean,
                input_std: self.std,
                threshold,
            },
            Some(self.out.to_path_buf()),
        );
        std::fs::create_dir_all(self.out).at(self.out)?;
        sae.save(self.out)?;
        let run = RunMetrics {
            layer: source.provenance.layer.clone(),
            level: source.level,
            arch: cfg.arch,
            lambda: cfg.lambda,
            k: cfg.arch.uses_k().then_some(cfg.k),
            d_in: d,
            d_sae: m,
            epochs: cfg.epochs,
            steps: self.state.meta.step,
            metrics,
            history: self.state.meta.history,
        };
        write_json_atomic(&self.out.join(METRICS_FILE), &run)?;
        let ck = self.out.join(CHECKPOINT_FILE);
        if ck.exists() {
            std::fs::remove_file(&ck).at(&ck)?;
        }
        Ok(TrainedRun {
            sae,
            metrics: run,
            skipped: false,
            seconds,
            inputs_per_second: if seconds > 0.0 {
                trained_epochs * n as f64 / seconds
            } else {
                0.0
            },
        })
    }
}

/// The checkpoint's state when resuming (checked against `cfg` and the inputs' fingerprint `fp`),
/// the initial state otherwise.
fn resume_state(
    cfg: &TrainConfig,
    out: &Path,
    d: usize,
    fp: String,
    resume: bool,
) -> Result<TrainState> {
    match checkpoint::load(out, d, cfg.d_sae)? {
        Some(s) if resume => {
            if s.meta.config != *cfg {
                return Err(Error::input(
                    out.join(CHECKPOINT_FILE),
                    "cannot resume: the checkpoint was written with other training options",
                ));
            }
            if s.meta.fingerprint != fp {
                return Err(Error::input(
                    out.join(CHECKPOINT_FILE),
                    "cannot resume: the checkpoint was trained on other activations",
                ));
            }
            Ok(s)
        }
        _ => Ok(initial_state(cfg, d, fp)),
    }
}

/// The SAELens `cfg.json` of an SAE trained with `cfg` on `source` (`d` wide), with its final
/// `metrics` (without the per-feature frequencies).
fn sae_config(source: &RunSource, cfg: &TrainConfig, d: usize, metrics: &Metrics) -> SaeConfig {
    let (hook_name, hook_layer) = hook_for_layer(source.provenance.layer.as_deref());
    let model_name = source
        .provenance
        .model
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("scgpt")
        .to_string();
    SaeConfig {
        d_in: d,
        d_sae: cfg.d_sae,
        architecture: cfg.arch.to_string(),
        activation_fn_str: cfg.arch.activation_fn_str().into(),
        activation_fn_kwargs: if cfg.arch.uses_k() {
            serde_json::json!({ "k": cfg.k })
        } else {
            serde_json::json!({})
        },
        hook_name,
        hook_layer,
        model_name,
        dataset_path: source.provenance.path.display().to_string(),
        scsae: ScsaeInfo {
            format: FORMAT.into(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            train: cfg.clone(),
            level: source.level,
            source: source.provenance.clone(),
            n_train_inputs: source.n,
            metrics: Some(Metrics {
                feature_frequency: Vec::new(),
                ..metrics.clone()
            }),
        },
        ..SaeConfig::default()
    }
}
