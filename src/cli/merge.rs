//! `scsae merge SHARD... --out DIR`: join the stores of `scsae extract --shard I/N` runs.

use std::path::PathBuf;

use clap::Args;

use crate::activations::merge::{merge_shards, MergeReport};
use crate::error::Result;

/// `scsae merge` arguments.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// The shard folders (every shard of one extraction, any order).
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// New folder for the merged store (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

/// Merge the shards.
pub fn run(args: &MergeArgs) -> Result<MergeReport> {
    merge_shards(&args.shards, &args.out)
}
