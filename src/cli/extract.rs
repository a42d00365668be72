//! `scsae extract --model DIR --data FILE --out DIR`: scGPT activations of every cell, per layer.

use std::path::PathBuf;

use clap::Args;

use crate::activations::h5ad_export::{store_to_h5ad, StoreH5adRequest};
use crate::cli::common::{CheckpointArgs, DataArgs};
use crate::data::h5ad_write::check_h5ad_target;
use crate::data::{load, MatrixLayer};
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::scgpt::extract::{Shard, CPU_BATCH_TOKENS, GPU_BATCH_TOKENS};
use crate::scgpt::{extract, ExtractOptions, ExtractReport, LayerSelection, Scgpt};

/// Arguments of `scsae extract`.
#[derive(Debug, Clone, Args)]
pub struct ExtractArgs {
    /// The checkpoint.
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// Single-cell data: .h5ad file or 10x folder (gene symbols in var; see --gene-key).
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (an activation store: manifest.json, cell_ids.json, cells/, tokens/).
    #[arg(long)]
    pub out: PathBuf,
    /// Layers to store: all, last, embeddings, or block numbers like 0,6,11 (negative = from the end).
    #[arg(long, default_value = "all")]
    pub layers: LayerSelection,
    /// Also store per-token activations with their cell index, gene id and position.
    #[arg(long)]
    pub tokens: bool,
    /// Keep a seeded uniform subsample of N tokens over the whole data set (with --tokens).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Longest token sequence, `<cls>` included; longer cells keep a seeded random subset of genes.
    #[arg(long, default_value_t = 1200)]
    pub max_length: usize,
    /// Cells per forward batch (results do not depend on it).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Padded tokens per forward batch (bounds memory; results do not depend on it) [default: 4096 on
    /// the CPU, 32768 on a GPU].
    #[arg(long)]
    pub max_batch_tokens: Option<usize>,
    /// Leave `<cls>` out of the per-cell mean over tokens (it is included by default).
    #[arg(long)]
    pub mean_without_cls: bool,
    /// Continue an interrupted extraction in --out.
    #[arg(long)]
    pub resume: bool,
    /// Process only shard I of N (0-based): contiguous blocks of --part-cells input rows; join the
    /// shard folders with `scsae merge`.
    #[arg(long, value_name = "I/N", conflicts_with_all = ["first_cells", "write_h5ad"])]
    pub shard: Option<Shard>,
    /// Cells per part file: the unit of resuming and sharding (results do not depend on it).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub part_cells: usize,
    /// Extract only the first N cells of the data (quick trials, benchmarks).
    #[arg(long, value_name = "N")]
    pub first_cells: Option<usize>,
    /// Also write a copy of the input .h5ad with the cell embedding in obsm['X_scGPT'] (L2-normalised
    /// CLS, as the official embed_data); never the input itself, never an existing file.
    #[arg(long, value_name = "OUT.h5ad")]
    pub write_h5ad: Option<PathBuf>,
    /// Layers whose per-cell mean activations are added to --write-h5ad as obsm['X_scGPT_layer<L>']
    /// (`all` or names like 6,11).
    #[arg(long, value_delimiter = ',', requires = "write_h5ad")]
    pub h5ad_layers: Vec<String>,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data_args: DataArgs,
}

/// Run `scsae extract`; returns the report (warnings are printed to stderr here).
pub fn run(args: &ExtractArgs, rt: &Runtime) -> Result<ExtractReport> {
    if let Some(h) = &args.write_h5ad {
        if args.first_cells.is_some() {
            return Err(Error::invalid(
                "--write-h5ad adds a result for every cell of the input; drop --first-cells",
            ));
        }
        check_h5ad_target(&args.data, h, false)?;
    }
    let scgpt = Scgpt::load_with(
        &args.checkpoint.model,
        args.checkpoint.weights.as_deref(),
        rt,
    )?;
    let mut ds = load(&args.data, &args.data_args.load_options())?;
    ds.check_expression()?;
    if let Some(k) = args.first_cells {
        if k == 0 {
            return Err(Error::invalid("--first-cells must be at least 1"));
        }
        if k < ds.n_cells() {
            ds = ds.select_cells(&(0..k).collect::<Vec<_>>());
        }
    }
    let abs = std::fs::canonicalize(&args.data).unwrap_or_else(|_| args.data.clone());
    let info = serde_json::json!({
        "file": abs.display().to_string(),
        "layer": match args.data_args.layer { MatrixLayer::X => "X", MatrixLayer::Raw => "raw" },
        "gene_key": args.data_args.gene_key,
        "first_cells": args.first_cells,
    });
    let opts = ExtractOptions {
        layers: args.layers.clone(),
        tokens: args.tokens,
        max_tokens: args.max_tokens,
        max_length: args.max_length,
        batch_size: args.batch_size,
        max_batch_tokens: args.max_batch_tokens.unwrap_or(if rt.device.is_cpu() {
            CPU_BATCH_TOKENS
        } else {
            GPU_BATCH_TOKENS
        }),
        mean_includes_cls: !args.mean_without_cls,
        resume: args.resume,
        progress: true,
        shard: args.shard,
        part_max_cells: args.part_cells,
        ..ExtractOptions::default()
    };
    let report = extract(&scgpt, &ds, info, &args.out, &opts, rt)?;
    if let Some(h) = &args.write_h5ad {
        store_to_h5ad(&StoreH5adRequest {
            store: &args.out,
            input: Some(&args.data),
            out: h,
            layers: &args.h5ad_layers,
            force: false,
        })?;
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    Ok(report)
}

/// One-paragraph summary of a report for the terminal.
pub fn summary(r: &ExtractReport, args: &ExtractArgs) -> String {
    let out = &args.out;
    let h5ad = match &args.write_h5ad {
        Some(h) => format!(
            "\nwrote {} (obsm['X_scGPT']{})",
            h.display(),
            if args.h5ad_layers.is_empty() {
                ""
            } else {
                " and pooled layers"
            }
        ),
        None => String::new(),
    };
    let shard = match &args.shard {
        Some(sh) => format!(
            " (shard {}/{}: join the shards with `scsae merge`)",
            sh.index, sh.count
        ),
        None => String::new(),
    };
    format!(
        "extracted {} cells ({} in this run) into {}{shard}: layers {}; {} of {} genes in the vocabulary; \
         {} cells subsampled to --max-length; {} token rows; {:.1} s ({:.1} cells/s){h5ad}",
        r.n_cells,
        r.n_processed,
        out.display(),
        r.layers.join(","),
        r.genes_matched,
        r.genes_total,
        r.cells_sampled,
        r.tokens_written,
        r.seconds,
        r.n_processed as f64 / r.seconds.max(1e-9)
    )
}
