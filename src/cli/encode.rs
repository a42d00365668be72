//! `scsae encode`: apply a saved SAE to activations and write the codes.

use std::path::PathBuf;

use clap::Args;

use crate::activations::{ActivationStore, Provenance};
use crate::error::Result;
use crate::sae::codes::{check_output_path, write_codes};
use crate::sae::config::InputLevel;
use crate::sae::input::{read_inputs, InputSpec};
use crate::sae::Sae;

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
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
}

/// Encode; returns a one-line summary.
pub fn run(args: &EncodeArgs) -> Result<String> {
    check_output_path(&args.out)?;
    crate::io::atomic::check_new_output(&[&args.out], args.force)?;
    let sae = Sae::load(&args.sae)?;
    let layer = args.layer.clone().or_else(|| {
        if args.activations.is_dir() {
            sae.source_layer()
        } else {
            None
        }
    });
    if args.activations.is_dir() {
        // refuse another layer or model before reading any activations
        let store = ActivationStore::open(&args.activations)?;
        let mut theirs = Provenance::of_store(&store, "");
        theirs.layer = layer.clone();
        sae.check_source(&theirs, &args.activations)?;
    }
    let inputs = read_inputs(&InputSpec {
        path: &args.activations,
        layer: layer.as_deref(),
        level: args.level,
        key: args.key.as_deref(),
        max_rows: args.max_inputs,
        sample_seed: args.sample_seed,
    })?;
    let codes = sae.encode(&inputs.matrix)?;
    write_codes(&args.out, &codes, inputs.tokens.as_ref())?;
    let l0 = codes.data.iter().filter(|v| **v > 0.0).count() as f64 / codes.n_rows.max(1) as f64;
    Ok(format!(
        "{}: {} x {} codes (mean L0 {:.1})",
        args.out.display(),
        codes.n_rows,
        codes.n_cols,
        l0
    ))
}
