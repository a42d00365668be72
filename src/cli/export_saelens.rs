//! `scsae export-saelens`: write a saved SAE as a folder that `sae_lens.SAE.load_from_disk` loads,
//! with the z-score folded into the weights so that SAELens computes scsae's codes on raw
//! activations.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::sae::saelens_export::{export_saelens, ExportReport};
use crate::sae::Sae;

/// `scsae export-saelens` arguments.
#[derive(Debug, Clone, Args)]
pub struct ExportSaelensArgs {
    /// Saved SAE folder (sae_weights.safetensors + cfg.json, as written by `scsae train`).
    #[arg(long)]
    pub sae: PathBuf,
    /// Output folder for the SAELens export (cfg.json + sae_weights.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite an existing export in --out.
    #[arg(long)]
    pub force: bool,
}

/// Load the SAE and export it; returns what was written.
pub fn run(args: &ExportSaelensArgs) -> Result<ExportReport> {
    let sae = Sae::load(&args.sae)?;
    export_saelens(&sae, &args.out, args.force)
}
