//! Training: validated inputs, stratified seeded split (or an explicit query set), cross-entropy,
//! momentum SGD with cosine decay, best-epoch selection on validation accuracy, per-epoch checkpoints
//! (resumable), and the model folder.
//!
//! Randomness: the split, the initial weights, each epoch's shuffle and each dropout mask come from
//! ChaCha8 generators seeded from `TrainConfig::seed` (epoch `e` uses stream `e`), so a run is
//! reproducible byte for byte and a resumed run continues exactly as an uninterrupted one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::annotate::{predict_logits, predict_proba};
use super::baseline::{LogReg, LogRegConfig};
use super::calibration::{self, Calibration, CalibrationOptions, FitInputs};
use super::checkpoint::{self, Checkpoint};
use super::config::{ModelConfig, TrainConfig};
use super::layers::Pass;
use super::lif::FireMode;
use super::model::SpikGpt;
use super::model_dir::{
    write_model_file, ModelFile, BASELINE_FILE, CONFIG_FILE, MODEL_FORMAT, TRAINED, WEIGHTS_FILE,
};
use super::optim::{cosine_lr, Sgd};
use super::split::stratified_split;
use crate::activations::Provenance;
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::io::atomic::{write_bytes_atomic, write_json_atomic};
use crate::io::lock::lock_for_writing;
use crate::runtime::Runtime;

/// The checkpoint's last-epoch weights.
const LAST_FILE: &str = "last.safetensors";
/// The checkpoint's SGD momentum buffers.
const MOMENTUM_FILE: &str = "momentum.safetensors";
/// The checkpoint's best-epoch weights.
const BEST_FILE: &str = "best.safetensors";
/// The checkpoint's progress (`CheckpointState`).
const STATE_FILE: &str = "state.json";

/// Labelled embeddings to train on.
#[derive(Debug, Clone)]
pub struct TrainData {
    /// Row-major `n x k` embeddings.
    pub x: Vec<f32>,
    /// Embedding dimension k.
    pub dim: usize,
    /// One label per row.
    pub labels: Vec<String>,
    /// One id per row.
    pub cell_ids: Vec<String>,
    /// The labels' source file (named in errors).
    pub label_source: PathBuf,
    /// Label column.
    pub label_key: String,
    /// Provenance of the embeddings.
    pub embedding: Provenance,
}

impl TrainData {
    /// Embeddings from `embeddings` (an extraction folder at `layer`, or a matrix file) labelled by
    /// obs column `label_key` of `data`, joined by cell id.
    pub fn load(
        embeddings: &Path,
        layer: &str,
        data: &Path,
        label_key: &str,
        load: &crate::data::LoadOptions,
    ) -> Result<TrainData> {
        let emb = super::inputs::load_embeddings(embeddings, layer)?;
        let labels = super::inputs::labels_for(&emb.matrix, embeddings, data, label_key, load)?;
        Ok(TrainData {
            dim: emb.matrix.n_cols,
            cell_ids: super::inputs::cell_ids(&emb.matrix),
            x: emb.matrix.data,
            labels,
            label_source: data.to_path_buf(),
            label_key: label_key.to_string(),
            embedding: emb.source,
        })
    }
}

/// Cell ids listed one per line in `path` (blank lines ignored); an empty list is an error.
pub fn read_id_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let ids: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Err(Error::input(path, "no cell ids in this file"));
    }
    Ok(ids)
}

/// What to train and how.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Architecture (its `input_dim` is replaced by the data's dimension).
    pub model: ModelConfig,
    /// Optimisation.
    pub train: TrainConfig,
    /// Cell types removed from the training reference (kept for the rejection report).
    pub hold_out: Vec<String>,
    /// Explicit validation/query cells (ids); `None` = stratified split.
    pub query_cells: Option<Vec<String>>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Continue from `out/checkpoint` when present.
    pub resume: bool,
    /// Overwrite a trained model in `out`.
    pub force: bool,
    /// How the Unknown rule is calibrated on the validation cells.
    pub calibration: CalibrationOptions,
}

/// One epoch of the training curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean training cross-entropy.
    pub train_loss: f64,
    /// Training accuracy (in training mode, during the epoch).
    pub train_accuracy: f64,
    /// Validation cross-entropy (inference mode).
    pub val_loss: f64,
    /// Validation accuracy (arg-max, no rejection).
    pub val_accuracy: f64,
    /// Wall-clock seconds of the epoch (training only).
    pub seconds: f64,
}

/// The prepared split.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Class names (sorted), logits order.
    pub classes: Vec<String>,
    /// Training rows.
    pub train: Vec<usize>,
    /// Validation rows (reference cells not trained on).
    pub val: Vec<usize>,
    /// Rows of held-out types.
    pub held_out: Vec<usize>,
    /// Class index of every row of a known type (`usize::MAX` for held-out rows).
    pub target: Vec<usize>,
}

/// Check the inputs and build the split; no file is touched.
pub fn prepare(data: &TrainData, opts: &TrainOptions) -> Result<Prepared> {
    opts.train.validate()?;
    opts.calibration.validate()?;
    check_data(data, &opts.hold_out)?;
    let classes = known_classes(data, &opts.hold_out)?;
    let class_idx: HashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let target: Vec<usize> = data
        .labels
        .iter()
        .map(|l| class_idx.get(l.as_str()).copied().unwrap_or(usize::MAX))
        .collect();
    let n = data.labels.len();
    let held_out: Vec<usize> = (0..n).filter(|&i| target[i] == usize::MAX).collect();
    let known: Vec<usize> = (0..n).filter(|&i| target[i] != usize::MAX).collect();
    let (train, val) = split_known(data, opts, &known)?;
    let mut train_classes: Vec<usize> = train.iter().map(|&i| target[i]).collect();
    train_classes.sort_unstable();
    train_classes.dedup();
    if train_classes.len() < 2 {
        return Err(Error::input(
            &data.label_source,
            "single-class training set: the training split has fewer than 2 cell types",
        ));
    }
    Ok(Prepared {
        classes,
        train,
        val,
        held_out,
        target,
    })
}

/// Sizes agree, every value is finite, every held-out type occurs.
fn check_data(data: &TrainData, hold_out: &[String]) -> Result<()> {
    let n = data.labels.len();
    if data.dim == 0 || data.x.len() != n * data.dim || data.cell_ids.len() != n {
        return Err(Error::invalid(
            "training data: embeddings, labels and ids disagree in size",
        ));
    }
    if let Some(i) = data.x.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "training embeddings: cell {} has a non-finite value (NaN or infinite)",
            i / data.dim.max(1)
        )));
    }
    for h in hold_out {
        if !data.labels.iter().any(|l| l == h) {
            let mut all: Vec<&String> = data.labels.iter().collect();
            all.sort();
            all.dedup();
            return Err(Error::input(
                &data.label_source,
                format!(
                    "--hold-out {h}: no cell has this label in '{}' (labels: {})",
                    data.label_key,
                    all.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The classes left after the hold-out, sorted (at least 2).
fn known_classes(data: &TrainData, hold_out: &[String]) -> Result<Vec<String>> {
    let mut classes: Vec<String> = data
        .labels
        .iter()
        .filter(|l| !hold_out.contains(l))
        .cloned()
        .collect();
    classes.sort();
    classes.dedup();
    if classes.len() < 2 {
        return Err(Error::input(
            &data.label_source,
            format!(
                "single-class training set: column '{}' has {} type(s) after hold-out ({}); a classifier needs at least 2",
                data.label_key,
                classes.len(),
                classes.join(", ")
            ),
        ));
    }
    Ok(classes)
}

/// The `known` rows split into (training, validation): the explicit query cells, or a stratified
/// seeded split.
fn split_known(
    data: &TrainData,
    opts: &TrainOptions,
    known: &[usize],
) -> Result<(Vec<usize>, Vec<usize>)> {
    match &opts.query_cells {
        Some(ids) => {
            let set: std::collections::HashSet<&str> = ids.iter().map(|s| s.as_str()).collect();
            let present: std::collections::HashSet<&str> =
                data.cell_ids.iter().map(|s| s.as_str()).collect();
            if let Some(missing) = ids.iter().find(|id| !present.contains(id.as_str())) {
                return Err(Error::invalid(format!(
                    "--query-cells: cell '{missing}' is not among the embeddings"
                )));
            }
            let (q, r): (Vec<usize>, Vec<usize>) = known
                .iter()
                .partition(|&&i| set.contains(data.cell_ids[i].as_str()));
            Ok((r, q))
        }
        None => {
            let labels: Vec<String> = known.iter().map(|&i| data.labels[i].clone()).collect();
            let (tr, va) = stratified_split(&labels, opts.train.train_fraction, opts.train.seed);
            Ok((
                tr.into_iter().map(|j| known[j]).collect(),
                va.into_iter().map(|j| known[j]).collect(),
            ))
        }
    }
}

/// Rows `idx` of the row-major matrix.
pub fn gather(x: &[f32], dim: usize, idx: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * dim);
    for &i in idx {
        out.extend_from_slice(&x[i * dim..(i + 1) * dim]);
    }
    out
}

/// Mean cross-entropy and accuracy of probabilities (`n x C`) against targets.
pub fn loss_accuracy(probs: &[f32], targets: &[usize], c: usize) -> (f64, f64) {
    if targets.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut loss = 0.0;
    let mut ok = 0;
    for (i, &t) in targets.iter().enumerate() {
        let row = &probs[i * c..(i + 1) * c];
        loss -= (row[t].max(1e-12) as f64).ln();
        ok += (super::metrics::argmax(row) == t) as usize;
    }
    (
        loss / targets.len() as f64,
        ok as f64 / targets.len() as f64,
    )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    fingerprint: String,
    epochs_done: usize,
    curve: Vec<EpochRecord>,
    best_epoch: usize,
    best_val_accuracy: f64,
    best_val_loss: f64,
}

/// The result of [`train`].
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The model with the best epoch's weights.
    pub model: SpikGpt,
    /// The baseline fitted on the same training cells.
    pub baseline: LogReg,
    /// Split and classes.
    pub prepared: Prepared,
    /// Training curve.
    pub curve: Vec<EpochRecord>,
    /// Best epoch (1-based).
    pub best_epoch: usize,
    /// The `config.json` written.
    pub file: ModelFile,
    /// The calibrated Unknown rule (`calibration.json`).
    pub calibration: Calibration,
}

fn fingerprint(
    model: &ModelConfig,
    train: &TrainConfig,
    prepared: &Prepared,
    data: &TrainData,
) -> String {
    // Enough to refuse resuming a different run: configs, split sizes and a checksum of the inputs.
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h ^= x as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    for v in &data.x {
        eat(&v.to_le_bytes());
    }
    for l in &data.labels {
        eat(l.as_bytes());
    }
    format!(
        "{}|{}|{}|{}|{}|{h:016x}",
        serde_json::to_string(model).unwrap_or_default(),
        serde_json::to_string(train).unwrap_or_default(),
        prepared.train.len(),
        prepared.val.len(),
        prepared.classes.join(","),
    )
}

/// Train a model on `data` and write the model folder `out`:
/// `model.safetensors`, `config.json`, `labels.json`, `baseline.safetensors`,
/// `training_curve.{csv,parquet,json}` (plots and reports are added by the caller).
pub fn train(
    rt: &Runtime,
    data: &TrainData,
    opts: &TrainOptions,
    out: &Path,
) -> Result<TrainOutcome> {
    let prepared = prepare(data, opts)?;
    let mut mcfg = opts.model.clone();
    mcfg.input_dim = data.dim;
    mcfg.validate()?;
    let tcfg = &opts.train;
    let model = SpikGpt::new(&mcfg, prepared.classes.len(), &rt.device, tcfg.seed)?;
    let fp = fingerprint(&mcfg, tcfg, &prepared, data);
    let split = Split::new(data, &prepared);
    // one writer per folder; the model's config.json vouches for a finished run, so an overwrite
    // removes it first (a killed overwrite never looks finished)
    let _lock = lock_for_writing(out, CONFIG_FILE, TRAINED, opts.force, opts.resume)?;
    let mut run = RunState::start(&model, tcfg, fp, out, opts.resume)?;

    let batches_per_epoch = prepared.train.len().div_ceil(tcfg.batch_size);
    let bar = crate::progress::bar(
        opts.progress,
        (tcfg.epochs * batches_per_epoch) as u64,
        "batches",
    );
    bar.set_position((run.state.epochs_done * batches_per_epoch) as u64);
    for epoch in run.state.epochs_done..tcfg.epochs {
        let mut rec = train_epoch(rt, &model, &mut run.opt, &split, tcfg, epoch, &bar)?;
        (rec.val_loss, rec.val_accuracy) = validate(&model, &split, prepared.classes.len())?;
        run.record_epoch(&model, rec, split.y_val.is_empty())?;
        run.checkpoint(&model, out)?;
    }
    bar.finish_and_clear();
    let job = Job {
        data,
        opts,
        out,
        mcfg,
        prepared,
        split,
    };
    finish(model, job, run)
}

/// What the model folder is written from, besides the model and the run.
struct Job<'a> {
    data: &'a TrainData,
    opts: &'a TrainOptions,
    out: &'a Path,
    /// The model configuration (with the data's input dimension).
    mcfg: ModelConfig,
    prepared: Prepared,
    split: Split,
}

/// The training and validation rows, gathered, with their class indices.
struct Split {
    /// Embedding dimension.
    dim: usize,
    x_train: Vec<f32>,
    y_train: Vec<usize>,
    x_val: Vec<f32>,
    y_val: Vec<usize>,
}

impl Split {
    fn new(data: &TrainData, prepared: &Prepared) -> Split {
        Split {
            dim: data.dim,
            x_train: gather(&data.x, data.dim, &prepared.train),
            y_train: prepared.train.iter().map(|&i| prepared.target[i]).collect(),
            x_val: gather(&data.x, data.dim, &prepared.val),
            y_val: prepared.val.iter().map(|&i| prepared.target[i]).collect(),
        }
    }
}

/// What training carries from epoch to epoch (and through a checkpoint): the optimiser's momentum,
/// the curve and best epoch, and the best epoch's weights.
struct RunState {
    opt: Sgd,
    state: CheckpointState,
    best_bytes: Option<Vec<u8>>,
}

impl RunState {
    /// A fresh run, or with `resume` the checkpoint in `out` (which must belong to this run:
    /// same fingerprint `fp`); `model` gets the checkpoint's last weights.
    fn start(
        model: &SpikGpt,
        tcfg: &TrainConfig,
        fp: String,
        out: &Path,
        resume: bool,
    ) -> Result<RunState> {
        let mut run = RunState {
            opt: Sgd::new(tcfg.momentum, tcfg.weight_decay),
            state: CheckpointState {
                fingerprint: fp,
                epochs_done: 0,
                curve: Vec::new(),
                best_epoch: 0,
                best_val_accuracy: f64::NEG_INFINITY,
                best_val_loss: f64::INFINITY,
            },
            best_bytes: None,
        };
        checkpoint::recover(out)?;
        if resume {
            if let Some(ck) = checkpoint::read(out)? {
                run.resume_from(model, &ck)?;
            }
        }
        Ok(run)
    }

    /// Continue from the verified checkpoint `ck`, which must belong to this run.
    fn resume_from(&mut self, model: &SpikGpt, ck: &Checkpoint) -> Result<()> {
        let p = ck.path(STATE_FILE);
        let s: CheckpointState = serde_json::from_slice(ck.file(STATE_FILE)?)
            .map_err(|e| Error::input(&p, format!("malformed checkpoint: {e}")))?;
        if s.fingerprint != self.state.fingerprint {
            return Err(Error::input(
                &p,
                "the checkpoint belongs to a different run (inputs or options changed); remove it or drop --resume",
            ));
        }
        model.params.load(&ck.path(LAST_FILE))?;
        self.opt.buffers = read_buffers(ck.file(MOMENTUM_FILE)?, &ck.path(MOMENTUM_FILE))?;
        self.best_bytes = Some(ck.file(BEST_FILE)?.to_vec());
        self.state = s;
        Ok(())
    }

    /// Append an epoch to the curve and keep the model's weights when the epoch is the best so far:
    /// highest validation accuracy, ties to the lower validation loss; without a validation set
    /// (`no_val`), the last epoch.
    fn record_epoch(&mut self, model: &SpikGpt, rec: EpochRecord, no_val: bool) -> Result<()> {
        let state = &mut self.state;
        let better = no_val
            || rec.val_accuracy > state.best_val_accuracy
            || (rec.val_accuracy == state.best_val_accuracy && rec.val_loss < state.best_val_loss);
        if better {
            state.best_epoch = rec.epoch;
            state.best_val_accuracy = if no_val { 0.0 } else { rec.val_accuracy };
            state.best_val_loss = if no_val { 0.0 } else { rec.val_loss };
            self.best_bytes = Some(model.params.to_safetensors_bytes(HashMap::new())?);
        }
        state.epochs_done = rec.epoch;
        state.curve.push(rec);
        Ok(())
    }

    /// Checkpoint (atomically, see [`checkpoint`]): last weights, momentum, best weights, state.
    fn checkpoint(&self, model: &SpikGpt, out: &Path) -> Result<()> {
        let last = model.params.to_safetensors_bytes(HashMap::new())?;
        let momentum = buffers_bytes(&self.opt)?;
        let state = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| Error::invalid(format!("cannot serialise the checkpoint state: {e}")))?;
        let mut files: Vec<(&str, &[u8])> = vec![(LAST_FILE, &last), (MOMENTUM_FILE, &momentum)];
        if let Some(b) = &self.best_bytes {
            files.push((BEST_FILE, b));
        }
        files.push((STATE_FILE, &state));
        checkpoint::write(out, &files)
    }
}

/// One training epoch (0-based `epoch`): the seeded shuffle, and per batch the forward pass in
/// training mode, cross-entropy, backward and an SGD step at the epoch's cosine learning rate.
/// Returns the epoch's record without the validation numbers (NaN).
fn train_epoch(
    rt: &Runtime,
    model: &SpikGpt,
    opt: &mut Sgd,
    split: &Split,
    tcfg: &TrainConfig,
    epoch: usize,
    bar: &indicatif::ProgressBar,
) -> Result<EpochRecord> {
    let started = Instant::now();
    let dim = split.dim;
    let lr = cosine_lr(tcfg.lr, epoch, tcfg.epochs, tcfg.cosine);
    let mut rng = ChaCha8Rng::seed_from_u64(tcfg.seed);
    rng.set_stream(epoch as u64 + 1);
    let mut order: Vec<usize> = (0..split.y_train.len()).collect();
    order.shuffle(&mut rng);
    let (mut loss_sum, mut ok, mut seen) = (0.0f64, 0usize, 0usize);
    for chunk in order.chunks(tcfg.batch_size) {
        let xb = gather(&split.x_train, dim, chunk);
        let yb: Vec<u32> = chunk.iter().map(|&i| split.y_train[i] as u32).collect();
        let xb = Tensor::from_vec(xb, (chunk.len(), dim), &rt.device)?;
        let yt = Tensor::from_vec(yb.clone(), chunk.len(), &rt.device)?;
        let mut pass = Pass {
            train: true,
            fire: FireMode::Spike,
            rng: Some(&mut rng),
            stats: None,
            multiplicity: 1,
        };
        let logits = model.forward(&xb, &mut pass)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &yt)?;
        let grads = loss.backward()?;
        opt.step(&model.params.trainable, &grads, lr)?;
        let lv = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !lv.is_finite() {
            return Err(Error::invalid(format!(
                "training diverged at epoch {} (loss {lv}); lower --lr",
                epoch + 1
            )));
        }
        loss_sum += lv * chunk.len() as f64;
        let pred = logits.argmax(1)?.to_vec1::<u32>()?;
        ok += pred.iter().zip(&yb).filter(|(a, b)| a == b).count();
        seen += chunk.len();
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, tcfg.epochs));
        bar.set_message(format!("loss {:.4}", loss_sum / seen as f64));
        bar.inc(1);
    }
    Ok(EpochRecord {
        epoch: epoch + 1,
        lr,
        train_loss: loss_sum / seen.max(1) as f64,
        train_accuracy: ok as f64 / seen.max(1) as f64,
        val_loss: f64::NAN,
        val_accuracy: f64::NAN,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Validation cross-entropy and accuracy in inference mode (NaN without validation cells).
fn validate(model: &SpikGpt, split: &Split, c: usize) -> Result<(f64, f64)> {
    if split.y_val.is_empty() {
        return Ok((f64::NAN, f64::NAN));
    }
    let p = predict_proba(model, &split.x_val, 256, None)?;
    Ok(loss_accuracy(&p, &split.y_val, c))
}

/// Restore the best epoch's weights and write the model folder: weights, baseline, the calibrated
/// Unknown rule, `config.json` and the training curve.
fn finish(model: SpikGpt, job: Job, run: RunState) -> Result<TrainOutcome> {
    let Job {
        data,
        opts,
        out,
        mcfg,
        prepared,
        split,
    } = job;
    let state = run.state;
    let best = run
        .best_bytes
        .ok_or_else(|| Error::invalid("no epoch was trained"))?;
    let best_path = out.join(WEIGHTS_FILE);
    write_bytes_atomic(&best_path, &best)?;
    model.params.load(&best_path)?;
    let c = prepared.classes.len();
    let baseline = LogReg::fit(
        &split.x_train,
        &split.y_train,
        data.dim,
        c,
        &LogRegConfig::default(),
    )?;
    baseline.save(&out.join(BASELINE_FILE))?;
    let cal = calibrate(&model, &split, &baseline, &prepared.classes, opts, out)?;
    let file = ModelFile {
        format: MODEL_FORMAT.to_string(),
        model: mcfg,
        training: opts.train.clone(),
        labels: prepared.classes.clone(),
        embedding: data.embedding.clone(),
        label_key: data.label_key.clone(),
        held_out: opts.hold_out.clone(),
        best_epoch: state.best_epoch,
        n_train: prepared.train.len(),
        n_validation: prepared.val.len(),
        software_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    write_model_file(out, &file)?;
    write_curve(out, &state.curve)?;
    Ok(TrainOutcome {
        model,
        baseline,
        prepared,
        curve: state.curve,
        best_epoch: state.best_epoch,
        file,
        calibration: cal,
    })
}

/// The Unknown rule, calibrated on the validation cells and written to `out` with the training
/// reference.
fn calibrate(
    model: &SpikGpt,
    split: &Split,
    baseline: &LogReg,
    classes: &[String],
    opts: &TrainOptions,
    out: &Path,
) -> Result<Calibration> {
    let val_logits = predict_logits(model, &split.x_val, 256, None)?;
    let cal = calibration::fit(
        &FitInputs {
            val_logits: &val_logits,
            val_targets: &split.y_val,
            c: classes.len(),
            dim: split.dim,
            x_train: &split.x_train,
            y_train: &split.y_train,
            x_val: &split.x_val,
            baseline,
            classes,
        },
        &opts.calibration,
    )?;
    calibration::write(
        out,
        &cal,
        &DenseMatrix::new(split.y_train.len(), split.dim, split.x_train.clone())?,
        &split.y_train,
    )?;
    Ok(cal)
}

fn write_curve(out: &Path, curve: &[EpochRecord]) -> Result<()> {
    use polars::prelude::*;
    write_json_atomic(&out.join("training_curve.json"), curve)?;
    let col = |name: &str, f: &dyn Fn(&EpochRecord) -> f64| -> Column {
        Column::new(name.into(), curve.iter().map(f).collect::<Vec<f64>>())
    };
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "epoch".into(),
            curve.iter().map(|r| r.epoch as i64).collect::<Vec<i64>>(),
        ),
        col("lr", &|r| r.lr),
        col("train_loss", &|r| r.train_loss),
        col("train_accuracy", &|r| r.train_accuracy),
        col("val_loss", &|r| r.val_loss),
        col("val_accuracy", &|r| r.val_accuracy),
        col("seconds", &|r| r.seconds),
    ])
    .map_err(|e| Error::invalid(format!("cannot build training curve table: {e}")))?;
    crate::io::table::write_table(&mut df, out, "training_curve")
}

/// The momentum buffers as safetensors bytes.
fn buffers_bytes(opt: &Sgd) -> Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<(String, Vec<u8>, usize)> = opt
        .buffers
        .iter()
        .map(|(k, v)| (k.clone(), crate::io::matrix::f32_bytes(v), v.len()))
        .collect();
    let mut views = Vec::new();
    for (k, b, n) in &bytes {
        views.push((
            k.as_str(),
            TensorView::new(Dtype::F32, vec![*n], b).map_err(|e| Error::invalid(e.to_string()))?,
        ));
    }
    safetensors::serialize(views, Some(HashMap::new())).map_err(|e| Error::invalid(e.to_string()))
}

/// Momentum buffers from safetensors `bytes` (read from `path`, named in errors).
fn read_buffers(bytes: &[u8], path: &Path) -> Result<std::collections::BTreeMap<String, Vec<f32>>> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| Error::input(path, format!("not a valid safetensors file: {e}")))?;
    let mut out = std::collections::BTreeMap::new();
    for (name, view) in st.tensors() {
        let v = crate::io::matrix::tensor_to_f32(view.dtype(), view.data())
            .ok_or_else(|| Error::input(path, "unsupported dtype"))?;
        out.insert(name, v);
    }
    Ok(out)
}
