//! `scsae encode` as one library call: apply a saved SAE to activations (an extraction folder at
//! the SAE's layer, or a matrix file) and write the codes ([`encode_to_file`]).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::activations::{ActivationStore, Provenance};
use crate::error::Result;
use crate::sae::codes::{check_output_path, write_codes};
use crate::sae::config::InputLevel;
use crate::sae::input::{read_inputs, InputSpec};
use crate::sae::Sae;

/// What to encode and where to write the codes.
#[derive(Debug, Clone)]
pub struct EncodeRequest<'a> {
    /// Saved SAE folder.
    pub sae: &'a Path,
    /// Extraction folder or matrix file.
    pub activations: &'a Path,
    /// Layer of an extraction folder (default: the SAE's training layer).
    pub layer: Option<&'a str>,
    /// Cells or tokens (extraction folders).
    pub level: InputLevel,
    /// Tensor name inside a safetensors matrix file.
    pub key: Option<&'a str>,
    /// Encode at most this many rows (seeded subsample; 0 = all).
    pub max_inputs: usize,
    /// Seed of the subsample.
    pub sample_seed: u64,
    /// Output file: `.safetensors`, `.npy`, `.csv` or `.parquet`.
    pub out: &'a Path,
    /// Overwrite an existing output file.
    pub force: bool,
}

/// What [`encode_to_file`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EncodeReport {
    /// The codes file.
    pub out: PathBuf,
    /// Rows encoded (cells or tokens).
    pub n_rows: usize,
    /// Dictionary size.
    pub n_features: usize,
    /// Mean number of active features per row.
    pub mean_l0: f64,
}

impl std::fmt::Display for EncodeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} x {} codes (mean L0 {:.1})",
            self.out.display(),
            self.n_rows,
            self.n_features,
            self.mean_l0
        )
    }
}

/// Encode `req.activations` with the SAE and write the codes. An SAE trained on another layer or
/// scGPT model is refused before any activation is read; nothing is written on error.
pub fn encode_to_file(req: &EncodeRequest<'_>) -> Result<EncodeReport> {
    check_output_path(req.out)?;
    crate::io::atomic::check_new_output(&[req.out], req.force)?;
    let sae = Sae::load(req.sae)?;
    let default_layer = sae.source_layer();
    let layer = req.layer.or_else(|| {
        default_layer
            .as_deref()
            .filter(|_| req.activations.is_dir())
    });
    if req.activations.is_dir() {
        let store = ActivationStore::open(req.activations)?;
        sae.check_source(&Provenance::of_store(&store, layer), req.activations)?;
    }
    let inputs = read_inputs(&InputSpec {
        path: req.activations,
        layer,
        level: req.level,
        key: req.key,
        max_rows: req.max_inputs,
        sample_seed: req.sample_seed,
    })?;
    let codes = sae.encode(&inputs.matrix)?;
    write_codes(req.out, &codes, inputs.tokens.as_ref())?;
    let active = codes.data.iter().filter(|v| **v > 0.0).count();
    Ok(EncodeReport {
        out: req.out.to_path_buf(),
        n_rows: codes.n_rows,
        n_features: codes.n_cols,
        mean_l0: active as f64 / codes.n_rows.max(1) as f64,
    })
}
