//! `scsae encode`: apply a saved SAE to activations and write the codes.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::sae::config::InputLevel;
use crate::sae::encode::{encode_to_file, CodesH5ad, EncodeReport, EncodeRequest};

/// `scsae encode` arguments.
#[derive(Debug, Clone, Args)]
pub struct EncodeArgs {
    /// Saved SAE folder (sae_weights.safetensors + cfg.json).
    #[arg(long)]
    pub sae: PathBuf,
    /// Extraction folder or matrix file (.safetensors, .npy, .csv, .parquet).
    #[arg(long)]
    pub activations: PathBuf,
    /// Layer of an extraction folder (default: the SAE's training layer; another layer is refused).
    #[arg(long)]
    pub layer: Option<String>,
    /// Encode mean-pooled cell vectors (default) or per-token vectors.
    #[arg(long, default_value = "cells")]
    pub level: InputLevel,
    /// Tensor name inside a safetensors matrix file.
    #[arg(long)]
    pub key: Option<String>,
    /// Encode at most this many rows (seeded subsample; 0 = all).
    #[arg(long, default_value_t = 0)]
    pub max_inputs: usize,
    /// Seed of the subsample.
    #[arg(long, default_value_t = 42)]
    pub sample_seed: u64,
    /// Output file: .safetensors (tensor `codes`), .npy, .csv or .parquet.
    #[arg(long, required_unless_present = "write_h5ad")]
    pub out: Option<PathBuf>,
    /// Write a copy of the cells' .h5ad with the codes in obsm['X_sae'] (sparse) and the feature
    /// names (and, with --analysis, the feature table) in uns['sae'].
    #[arg(long, value_name = "OUT.h5ad")]
    pub write_h5ad: Option<PathBuf>,
    /// The .h5ad to copy (default: the data file recorded in the extraction folder).
    #[arg(long, requires = "write_h5ad")]
    pub data: Option<PathBuf>,
    /// `scsae analyze` folder (or features table) of this SAE, for uns['sae']['features'].
    #[arg(long, requires = "write_h5ad")]
    pub analysis: Option<PathBuf>,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
}

/// Encode; returns what was written.
pub fn run(args: &EncodeArgs) -> Result<EncodeReport> {
    encode_to_file(&EncodeRequest {
        sae: &args.sae,
        activations: &args.activations,
        layer: args.layer.as_deref(),
        level: args.level,
        key: args.key.as_deref(),
        max_inputs: args.max_inputs,
        sample_seed: args.sample_seed,
        out: args.out.as_deref(),
        h5ad: args.write_h5ad.as_deref().map(|out| CodesH5ad {
            out,
            data: args.data.as_deref(),
            analysis: args.analysis.as_deref(),
        }),
        force: args.force,
    })
}
