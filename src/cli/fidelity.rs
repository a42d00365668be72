//! `scsae fidelity`: splice an SAE's reconstruction into scGPT at its layer and report the
//! masked-expression loss recovered, the CLS cosine and kNN accuracy against the clean run and
//! zero-ablation.

use std::path::PathBuf;

use clap::Args;

use crate::cli::common::{CheckpointArgs, DataArgs};
use crate::error::Result;
use crate::intervene::fidelity::checkpoint_mask_ratios;
use crate::intervene::{fidelity, load_inputs, FidelityOptions, FidelityRequest, SpliceSpec};
use crate::runtime::Runtime;

/// The model, SAE and cells of `scsae fidelity` and `scsae steer`.
#[derive(Debug, Clone, Args)]
pub struct SpliceArgs {
    /// Trained SAE folder (of token activations of one layer of --model).
    #[arg(long)]
    pub sae: PathBuf,
    /// The checkpoint.
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// Single-cell data (.h5ad or 10x folder).
    #[arg(long)]
    pub data: PathBuf,
    /// The SAE's layer, when its cfg.json does not record one (an SAE trained on a matrix file).
    #[arg(long)]
    pub sae_layer: Option<String>,
    /// obs column with cell types (kNN accuracy, per-type summaries).
    #[arg(long)]
    pub label_key: Option<String>,
    /// Use only the first N cells of the data.
    #[arg(long, value_name = "N")]
    pub first_cells: Option<usize>,
    /// Cells per forward batch (results do not depend on it).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Longest token sequence, `<cls>` included (as `scsae extract`).
    #[arg(long, default_value_t = 1200)]
    pub max_length: usize,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite a finished output folder.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub data_args: DataArgs,
}

impl SpliceArgs {
    /// The library's description of the files.
    pub fn spec(&self) -> SpliceSpec<'_> {
        SpliceSpec {
            sae: &self.sae,
            model: &self.checkpoint.model,
            weights: self.checkpoint.weights.as_deref(),
            data: &self.data,
            load: self.data_args.load_options(),
            first_cells: self.first_cells,
            layer: self.sae_layer.as_deref(),
            label_key: self.label_key.as_deref(),
        }
    }
}

/// Arguments of `scsae fidelity`.
#[derive(Debug, Clone, Args)]
pub struct FidelityArgs {
    /// Model, SAE, cells and output.
    #[command(flatten)]
    pub splice: SpliceArgs,
    /// Mask ratios of the masked-expression loss, one masked run each [default: the checkpoint's
    /// args.json mask_ratio, else 0.25,0.5,0.75 as scGPT_human's pretraining].
    #[arg(long, value_delimiter = ',')]
    pub mask_ratio: Vec<f64>,
    /// Neighbours of the leave-one-out kNN accuracy (with --label-key).
    #[arg(long, default_value_t = 10)]
    pub knn_k: usize,
}

/// Run; returns the headline.
pub fn run(a: &FidelityArgs, rt: &Runtime) -> Result<String> {
    let s = &a.splice;
    let l = load_inputs(&s.spec(), rt)?;
    let mask_ratios = if a.mask_ratio.is_empty() {
        checkpoint_mask_ratios(&l.scgpt)?
    } else {
        a.mask_ratio.clone()
    };
    let r = fidelity(
        &FidelityRequest {
            scgpt: &l.scgpt,
            sae: &l.sae,
            sae_dir: &s.sae,
            site: l.site,
            data: &l.data,
            data_desc: l.data_desc.clone(),
            labels: l.labels.clone(),
            out: &s.out,
            force: s.force,
            opts: FidelityOptions {
                mask_ratios,
                knn_k: a.knn_k,
                batch_size: s.batch_size,
                max_length: s.max_length,
            },
        },
        rt,
    )?;
    Ok(crate::intervene::fidelity::headline(&r, &s.out))
}
