//! The SpikGPT model folder (this module owns its layout): `config.json` ([`ModelFile`], format
//! [`MODEL_FORMAT`]), `labels.json`, `model.safetensors`, `baseline.safetensors`, and the Unknown rule's
//! files (owned by [`super::calibration`]); [`write_model_file`] writes the description, and
//! [`load_model_dir`] reads a folder back for inference.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::baseline::LogReg;
use super::calibration::Calibration;
use super::config::{ModelConfig, TrainConfig};
use super::model::SpikGpt;
use crate::activations::Provenance;
use crate::error::{Error, Result};
use crate::io::atomic::write_json_atomic;
use crate::runtime::Runtime;

/// File name of the model description.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the class names.
pub const LABELS_FILE: &str = "labels.json";
/// File name of the weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the logistic-regression baseline.
pub const BASELINE_FILE: &str = "baseline.safetensors";

/// Format tag of `config.json`.
pub const MODEL_FORMAT: &str = "spikgpt-model/1";

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
    pub embedding: Provenance,
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

/// A model folder's calibration with the training embeddings it measures distances to.
#[derive(Debug, Clone)]
pub struct CalibrationData {
    /// `calibration.json`.
    pub calibration: Calibration,
    /// Training embeddings (`reference.safetensors`).
    pub reference: crate::data::DenseMatrix,
    /// Their classes.
    pub targets: Vec<usize>,
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
    /// The calibrated rejection rule and the reference cells (folders of older versions lack it).
    pub calibration: Option<CalibrationData>,
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
    let cfg_path = dir.join(CONFIG_FILE);
    let file: ModelFile = crate::io::json::read_json(&cfg_path, "model config")?;
    if file.format != MODEL_FORMAT {
        return Err(Error::input(
            &cfg_path,
            format!("format '{}' is not {MODEL_FORMAT}", file.format),
        ));
    }
    let model = SpikGpt::new(&file.model, file.labels.len(), &rt.device, 0)
        .map_err(|e| Error::input(&cfg_path, e.to_string()))?;
    model.params.load(&dir.join(WEIGHTS_FILE))?;
    let bpath = dir.join(BASELINE_FILE);
    let baseline = if bpath.exists() {
        Some(LogReg::load(&bpath)?)
    } else {
        None
    };
    let calibration = match super::calibration::read(dir)? {
        Some((calibration, reference, targets)) => {
            if reference.n_cols != file.model.input_dim {
                return Err(Error::input(
                    dir.join(super::calibration::REFERENCE_FILE),
                    format!(
                        "{} dimensions, the model has {}",
                        reference.n_cols, file.model.input_dim
                    ),
                ));
            }
            Some(CalibrationData {
                calibration,
                reference,
                targets,
            })
        }
        None => None,
    };
    Ok(LoadedModel {
        model,
        file,
        baseline,
        calibration,
        dir: dir.to_path_buf(),
    })
}

/// Write `config.json` and `labels.json` of a trained model into `dir`.
pub fn write_model_file(dir: &Path, file: &ModelFile) -> Result<()> {
    // config.json last: it marks a finished model folder
    write_json_atomic(&dir.join(LABELS_FILE), &file.labels)?;
    write_json_atomic(&dir.join(CONFIG_FILE), file)
}

/// Error unless `out` holds no trained model (its `config.json`), or `force` / `resume` is set.
pub fn check_not_trained(out: &Path, force: bool, resume: bool) -> Result<()> {
    crate::io::lock::check_not_finished(out, CONFIG_FILE, TRAINED, force || resume)
}

/// How a model folder is named in the message refusing to overwrite it.
pub(crate) const TRAINED: &str = "a trained model";
