//! `scsae encode` as one library call: apply a saved SAE to activations (an extraction folder at
//! the SAE's layer, or a matrix file) and write the codes ([`encode_to_file`]).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::activations::{ActivationStore, Provenance};
use crate::data::h5ad_write::{
    check_h5ad_rows, check_h5ad_target, write_h5ad_copy, H5adAdditions, ObsmAddition, UnsAddition,
    UnsFrame,
};
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
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
    /// Output file: `.safetensors`, `.npy`, `.csv` or `.parquet` (optional with `h5ad`).
    pub out: Option<&'a Path>,
    /// Also (or only) write the codes into a copy of the cells' `.h5ad`.
    pub h5ad: Option<CodesH5ad<'a>>,
    /// Overwrite existing outputs (never the input `.h5ad`).
    pub force: bool,
}

/// `scsae encode --write-h5ad`: the codes as a sparse `obsm['X_sae']`, the feature names and (from
/// an analysis) the feature table in `uns['sae']`.
#[derive(Debug, Clone)]
pub struct CodesH5ad<'a> {
    /// The new `.h5ad`.
    pub out: &'a Path,
    /// The `.h5ad` to copy (default: the data file the extraction folder records).
    pub data: Option<&'a Path>,
    /// `scsae analyze` folder or features table of this SAE.
    pub analysis: Option<&'a Path>,
}

/// What [`encode_to_file`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EncodeReport {
    /// The codes file.
    pub out: Option<PathBuf>,
    /// The `.h5ad` written.
    pub h5ad: Option<PathBuf>,
    /// Rows encoded (cells or tokens).
    pub n_rows: usize,
    /// Dictionary size.
    pub n_features: usize,
    /// Mean number of active features per row.
    pub mean_l0: f64,
}

impl std::fmt::Display for EncodeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<String> = self
            .out
            .iter()
            .chain(self.h5ad.iter())
            .map(|p| p.display().to_string())
            .collect();
        write!(
            f,
            "{}: {} x {} codes (mean L0 {:.1})",
            files.join(" and "),
            self.n_rows,
            self.n_features,
            self.mean_l0
        )
    }
}

/// Encode `req.activations` with the SAE and write the codes. An SAE trained on another layer or
/// scGPT model is refused before any activation is read; nothing is written on error.
pub fn encode_to_file(req: &EncodeRequest<'_>) -> Result<EncodeReport> {
    if req.out.is_none() && req.h5ad.is_none() {
        return Err(Error::invalid("give --out, --write-h5ad or both"));
    }
    if let Some(out) = req.out {
        check_output_path(out)?;
        crate::io::atomic::check_new_output(&[out], req.force)?;
    }
    let h5ad_input = match &req.h5ad {
        Some(h) => Some(check_codes_h5ad(req, h)?),
        None => None,
    };
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
    if let Some((input, file_ids)) = &h5ad_input {
        match &inputs.matrix.row_ids {
            Some(ids) => check_h5ad_rows(input, file_ids, ids)?,
            None => {
                return Err(Error::input(
                    req.activations,
                    "has no cell ids to match to the .h5ad's cells",
                ))
            }
        }
    }
    let codes = sae.encode(&inputs.matrix)?;
    let features = match req.h5ad.as_ref().and_then(|h| h.analysis) {
        Some(a) => Some(features_frame(a, codes.n_cols)?),
        None => None,
    };
    if let Some(out) = req.out {
        write_codes(out, &codes, inputs.tokens.as_ref())?;
    }
    if let (Some(h), Some((input, _))) = (&req.h5ad, &h5ad_input) {
        write_codes_h5ad(req.sae, &codes, features, input, h.out, req.force)?;
    }
    let active = codes.data.iter().filter(|v| **v > 0.0).count();
    Ok(EncodeReport {
        out: req.out.map(Path::to_path_buf),
        h5ad: req.h5ad.as_ref().map(|h| h.out.to_path_buf()),
        n_rows: codes.n_rows,
        n_features: codes.n_cols,
        mean_l0: active as f64 / codes.n_rows.max(1) as f64,
    })
}

/// The `.h5ad` a `--write-h5ad` copies, checked before any work: cell-level codes of an extraction
/// folder (its recorded data file, or `--data`) or of a matrix file with `--data`. Returns the file
/// and its cell ids.
fn check_codes_h5ad(req: &EncodeRequest<'_>, h: &CodesH5ad<'_>) -> Result<(PathBuf, Vec<String>)> {
    if req.level != InputLevel::Cells {
        return Err(Error::invalid(
            "--write-h5ad writes one row per cell: use --level cells",
        ));
    }
    if req.max_inputs != 0 {
        return Err(Error::invalid(
            "--write-h5ad adds codes for every cell of the file; drop --max-inputs",
        ));
    }
    let input = match h.data {
        Some(d) => d.to_path_buf(),
        None if req.activations.is_dir() => crate::activations::h5ad_export::resolve_input(
            &ActivationStore::open(req.activations)?,
            None,
        )?,
        None => {
            return Err(Error::input(
                req.activations,
                "is a matrix file: name the .h5ad to copy with --data",
            ))
        }
    };
    let file_ids = check_h5ad_target(&input, h.out, req.force)?;
    Ok((input, file_ids))
}

/// The features table of an analysis, checked to describe `d_sae` features.
fn features_frame(analysis: &Path, d_sae: usize) -> Result<UnsFrame> {
    let file = crate::analysis::features_table::locate(analysis);
    let df = crate::io::table::read_dataframe(&file)?;
    if df.height() != d_sae {
        return Err(Error::input(
            &file,
            format!(
                "describes {} features but the SAE has {d_sae}: was it analysed with this SAE?",
                df.height()
            ),
        ));
    }
    UnsFrame::from_dataframe(&df, crate::analysis::features_table::col::FEATURE)
        .map_err(|e| Error::input(&file, e))
}

fn write_codes_h5ad(
    sae_dir: &Path,
    codes: &DenseMatrix,
    features: Option<UnsFrame>,
    input: &Path,
    out: &Path,
    force: bool,
) -> Result<()> {
    let row_ids = codes
        .row_ids
        .clone()
        .ok_or_else(|| Error::input(input, "the activations carry no cell ids to match"))?;
    let rows = (0..codes.n_rows)
        .map(|i| {
            codes
                .row(i)
                .iter()
                .enumerate()
                .filter(|(_, v)| **v != 0.0)
                .map(|(j, v)| (j as u32, *v))
                .collect()
        })
        .collect();
    let names: Vec<String> = (0..codes.n_cols).map(|j| format!("f{j}")).collect();
    let mut sae_uns = vec![
        ("feature_names".to_string(), UnsAddition::Strings(names)),
        (
            "sae".to_string(),
            UnsAddition::Strings(vec![std::fs::canonicalize(sae_dir)
                .unwrap_or_else(|_| sae_dir.to_path_buf())
                .display()
                .to_string()]),
        ),
    ];
    if let Some(f) = features {
        sae_uns.push(("features".to_string(), UnsAddition::Frame(f)));
    }
    let add = H5adAdditions {
        row_ids,
        obs: Vec::new(),
        obsm: vec![(
            "X_sae".to_string(),
            ObsmAddition::Csr {
                n_cols: codes.n_cols,
                rows,
            },
        )],
        uns: vec![("sae".to_string(), UnsAddition::Dict(sae_uns))],
    };
    write_h5ad_copy(input, out, &add, force)
}
