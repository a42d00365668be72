//! `scsae atlas`: a static HTML site with a page per SAE feature ([`crate::atlas::build_atlas`]).

use std::path::PathBuf;

use clap::Args;

use crate::atlas::{build_atlas, AtlasRequest};
use crate::data::LoadOptions;
use crate::error::Result;

/// Arguments of `scsae atlas`.
#[derive(Debug, Clone, Args)]
pub struct AtlasArgs {
    /// Trained SAE folder (sae_weights.safetensors + cfg.json).
    #[arg(long)]
    pub sae: PathBuf,
    /// Activation folder written by `scsae extract` (the cells are re-encoded by the SAE).
    #[arg(long)]
    pub activations: PathBuf,
    /// Activation layer the SAE was trained on (e.g. 11, cls).
    #[arg(long = "layer")]
    pub act_layer: String,
    /// Single-cell data (.h5ad or 10x folder) with the cell types.
    #[arg(long)]
    pub data: PathBuf,
    /// obs column with the cell types.
    #[arg(long)]
    pub label_key: String,
    /// Output folder of `scsae analyze` for this SAE on these activations.
    #[arg(long)]
    pub analysis: PathBuf,
    /// Output folder of `scsae concepts` for this SAE (or its concepts.csv).
    #[arg(long)]
    pub concepts: Option<PathBuf>,
    /// `<stem>_class_drivers.csv` (or `<stem>_explain.json`) of `spikgpt annotate --sae` with this SAE.
    #[arg(long)]
    pub explain: Option<PathBuf>,
    /// Other SAE folders (other layers or sizes) to list each feature's nearest features in (repeat).
    #[arg(long = "compare-sae")]
    pub compare_sae: Vec<PathBuf>,
    /// Top cells listed per feature.
    #[arg(long, default_value_t = 20)]
    pub top_cells: usize,
    /// Nearest features listed per SAE.
    #[arg(long, default_value_t = 5)]
    pub neighbours: usize,
    /// Bins of the activation histograms.
    #[arg(long, default_value_t = 30)]
    pub bins: usize,
    /// Matrix of the .h5ad, gene symbols and label table (only the labels are used).
    #[command(flatten)]
    pub data_opts: AtlasDataArgs,
    /// Output folder (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

/// How to read `--data` (as in the other commands; `--data-layer` because `--layer` names the
/// activations' layer here).
#[derive(Debug, Clone, Args)]
pub struct AtlasDataArgs {
    /// CSV/TSV/Parquet table of cell labels, joined on cell id (adds obs columns).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Rename duplicate cell ids (`X`, `X-1`, ...) as AnnData's `var_names_make_unique` does.
    #[arg(long)]
    pub make_unique: bool,
}

/// Run `scsae atlas`; returns the line to print.
pub fn run(args: &AtlasArgs) -> Result<String> {
    let load = LoadOptions {
        labels: args.data_opts.labels.clone(),
        make_unique: args.data_opts.make_unique,
        ..LoadOptions::default()
    };
    let req = AtlasRequest {
        sae: args.sae.clone(),
        activations: args.activations.clone(),
        layer: args.act_layer.clone(),
        data: args.data.clone(),
        load,
        label_key: args.label_key.clone(),
        analysis: args.analysis.clone(),
        concepts: args.concepts.clone(),
        explain: args.explain.clone(),
        compare: args.compare_sae.clone(),
        top_cells: args.top_cells,
        neighbours: args.neighbours,
        bins: args.bins,
        out: args.out.clone(),
    };
    Ok(build_atlas(&req)?.to_string())
}
