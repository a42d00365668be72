//! Load a trained model folder and annotate cells: class probabilities in fixed-size batches
//! (BatchNorm uses running statistics, so a cell's result does not depend on the other cells),
//! `Unknown` below the confidence threshold, and the prediction table.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::baseline::LogReg;
use super::config::{ModelConfig, TrainConfig};
use super::inputs::EmbeddingSource;
use super::layers::Pass;
use super::lif::FireMode;
use super::metrics::UNKNOWN;
use super::model::SpikGpt;
use super::stats::ForwardStats;
use crate::error::{Error, Result};
use crate::io::table::write_table;
use crate::runtime::Runtime;

/// Format tag of `config.json`.
pub const MODEL_FORMAT: &str = "spikgpt-model/1";

/// The paper's rejection threshold.
pub const DEFAULT_THRESHOLD: f64 = 0.95;

/// Contents of a model folder's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// Architecture (its `input_dim` is the embedding dimension).
    pub model: ModelConfig,
    /// Training settings used.
    pub training: TrainConfig,
    /// Class names, index order of the logits (also in `labels.json`).
    pub labels: Vec<String>,
    /// Where the training embeddings came from.
    pub embedding: EmbeddingSource,
    /// Label column used.
    pub label_key: String,
    /// Cell types removed from training (`--hold-out`).
    pub held_out: Vec<String>,
    /// Epoch (1-based) whose weights were kept (best validation accuracy).
    pub best_epoch: usize,
    /// Training cells.
    pub n_train: usize,
    /// Validation cells.
    pub n_validation: usize,
    /// scsae version that wrote it.
    pub software_version: String,
}

/// A model folder loaded for inference.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The network with trained weights.
    pub model: SpikGpt,
    /// `config.json`.
    pub file: ModelFile,
    /// The logistic-regression baseline fitted on the same training cells, when present.
    pub baseline: Option<LogReg>,
    /// The folder.
    pub dir: PathBuf,
}

/// Load `dir` (`config.json`, `model.safetensors`, optional `baseline.safetensors`).
pub fn load_model_dir(dir: &Path, rt: &Runtime) -> Result<LoadedModel> {
    if !dir.is_dir() {
        return Err(Error::input(
            dir,
            "not a model folder (expected a directory written by `spikgpt train`)",
        ));
    }
    let cfg_path = dir.join("config.json");
    let file: ModelFile = crate::io::json::read_json(&cfg_path, "model config")?;
    if file.format != MODEL_FORMAT {
        return Err(Error::input(
            &cfg_path,
            format!("format '{}' is not {MODEL_FORMAT}", file.format),
        ));
    }
    let model = SpikGpt::new(&file.model, file.labels.len(), &rt.device, 0)
        .map_err(|e| Error::input(&cfg_path, e.to_string()))?;
    model.params.load(&dir.join("model.safetensors"))?;
    let bpath = dir.join("baseline.safetensors");
    let baseline = if bpath.exists() {
        Some(LogReg::load(&bpath)?)
    } else {
        None
    };
    Ok(LoadedModel {
        model,
        file,
        baseline,
        dir: dir.to_path_buf(),
    })
}

/// Class probabilities (row-major `n x C`) of `x` (row-major `n x k`), in batches of `batch_size`.
pub fn predict_proba(
    model: &SpikGpt,
    x: &[f32],
    batch_size: usize,
    mut stats: Option<&mut ForwardStats>,
) -> Result<Vec<f32>> {
    let k = model.config.input_dim;
    if k == 0 || !x.len().is_multiple_of(k) {
        return Err(Error::invalid(format!("embeddings must have {k} columns")));
    }
    let n = x.len() / k;
    let bs = batch_size.max(1);
    let device = &model.params.device;
    let mut out = Vec::with_capacity(n * model.n_classes);
    let mut start = 0;
    while start < n {
        let end = (start + bs).min(n);
        let xb = Tensor::from_slice(&x[start * k..end * k], (end - start, k), device)?;
        let mut pass = Pass {
            train: false,
            fire: FireMode::SpikeNoGrad,
            rng: None,
            stats: stats.as_deref_mut(),
            multiplicity: 1,
        };
        let logits = model.forward(&xb, &mut pass)?;
        let p = candle_nn::ops::softmax_last_dim(&logits.to_dtype(candle_core::DType::F32)?)?;
        out.extend(p.flatten_all()?.to_vec1::<f32>()?);
        start = end;
    }
    Ok(out)
}

/// Per-cell calls from a probability matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Calls {
    /// Final label (`Unknown` when the max probability is below the threshold).
    pub label: Vec<String>,
    /// Most probable class.
    pub best: Vec<String>,
    /// Its probability.
    pub max_prob: Vec<f64>,
}

/// Arg-max labels with rejection below `threshold`.
pub fn calls(probs: &[f32], classes: &[String], threshold: f64) -> Calls {
    let c = classes.len();
    let n = probs.len().checked_div(c).unwrap_or(0);
    let mut out = Calls {
        label: Vec::with_capacity(n),
        best: Vec::with_capacity(n),
        max_prob: Vec::with_capacity(n),
    };
    for i in 0..n {
        let row = &probs[i * c..(i + 1) * c];
        let bi = super::metrics::argmax(row);
        let bp = row[bi];
        let best = classes[bi].clone();
        out.label.push(if (bp as f64) < threshold {
            UNKNOWN.to_string()
        } else {
            best.clone()
        });
        out.best.push(best);
        out.max_prob.push(bp as f64);
    }
    out
}

/// Write the prediction table to `<stem>.csv` and `<stem>.parquet` beside `out`: columns `cell_id`,
/// `label` (or `Unknown`), `best_label`, `max_prob`, then `prob_<class>` for every class.
pub fn write_predictions(
    out: &Path,
    cell_ids: &[String],
    probs: &[f32],
    classes: &[String],
    threshold: f64,
) -> Result<()> {
    let c = calls(probs, classes, threshold);
    let mut cols: Vec<Column> = vec![
        Column::new("cell_id".into(), cell_ids.to_vec()),
        Column::new("label".into(), c.label),
        Column::new("best_label".into(), c.best),
        Column::new("max_prob".into(), c.max_prob),
    ];
    let nc = classes.len();
    for (j, name) in classes.iter().enumerate() {
        let v: Vec<f64> = (0..cell_ids.len())
            .map(|i| probs[i * nc + j] as f64)
            .collect();
        cols.push(Column::new(format!("prob_{name}").into(), v));
    }
    let mut df = DataFrame::new_infer_height(cols)
        .map_err(|e| Error::input(out, format!("cannot build table: {e}")))?;
    let (dir, stem) = split_stem(out);
    write_table(&mut df, &dir, &stem)
}

/// `(folder, stem)` of an output path like `out/predictions.csv`.
pub fn split_stem(out: &Path) -> (PathBuf, String) {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = out
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("predictions")
        .to_string();
    (dir, stem)
}
