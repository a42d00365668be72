//! `scsae inspect FILE`: sizes, obs columns and label counts of a data set.

use std::path::PathBuf;

use clap::Args;

use crate::cli::common::DataArgs;
use crate::data::{load, Summary};
use crate::error::Result;

/// Arguments of `scsae inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// An .h5ad file or a 10x Matrix Market folder.
    pub file: PathBuf,
    /// obs column whose labels to count.
    #[arg(long)]
    pub label_key: Option<String>,
    /// Print one JSON object (n_cells, n_genes, nnz, obs_columns, labels).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Run `scsae inspect`, returning the text to print.
pub fn run(args: &InspectArgs) -> Result<String> {
    let ds = load(&args.file, &args.data.load_options())?;
    let summary = Summary::of(&ds, args.label_key.as_deref())?;
    if args.json {
        Ok(serde_json::to_string_pretty(&summary).unwrap_or_default())
    } else {
        Ok(summary.to_text(&ds))
    }
}
