//! Options shared by every subcommand: the runtime (`--device`, `--dtype`, `--threads`, `--seed`)
//! and how to read a data file (`--layer`, `--gene-key`, `--labels`).

use std::path::PathBuf;

use clap::Args;

use crate::data::{LoadOptions, MatrixLayer};
use crate::error::Result;
use crate::runtime::{DeviceSpec, Precision, Runtime, RuntimeConfig};

/// Runtime options, accepted by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Device: cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, global = true, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Precision of model computations: f32 (default), bf16 or f16 (CUDA only).
    #[arg(long, global = true, default_value = "f32")]
    pub dtype: Precision,
    /// Worker threads for rayon and candle (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Global seed for every random choice.
    #[arg(long, global = true, default_value_t = 42)]
    pub seed: u64,
}

impl RuntimeArgs {
    /// Build the shared runtime.
    pub fn runtime(&self) -> Result<Runtime> {
        Runtime::new(RuntimeConfig {
            device: self.device,
            precision: self.dtype,
            threads: self.threads,
            seed: self.seed,
        })
    }
}

/// How to read single-cell data.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Matrix to read from an .h5ad: X or raw.
    #[arg(long, default_value = "X")]
    pub layer: MatrixLayer,
    /// var column with gene symbols (default: the var index; for 10x folders gene_ids or gene_symbols).
    #[arg(long)]
    pub gene_key: Option<String>,
    /// CSV/TSV/Parquet table of cell labels, joined on cell id (first column or cell_id/barcode).
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

impl DataArgs {
    /// The corresponding load options.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            layer: self.layer,
            gene_key: self.gene_key.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// Error unless `--threshold` is a probability (the library's one check).
pub use crate::spikgpt::calibration::check_threshold;
