//! `scsae analyze`: AUROC, gene attribution, enrichment and the PCA baseline for a feature matrix.
//!
//! Features come from `--features FILE` (any cells x features matrix with cell ids), or from
//! `--activations DIR --layer L` (cell-level activations), encoded through `--sae DIR` when given.
//! Cells are matched to the data's labels and expression by cell id.

use std::path::PathBuf;

use clap::Args;

use crate::analysis::workflow::{analyze, AnalyzeInputs, ExpressionReading, FeatureSource};
pub use crate::analysis::workflow::{PcaSource, PAPER_GENESETS};
use crate::analysis::{AnalysisConfig, Background, Direction, ExpressionTransform, PcaSolver};
use crate::data::{LoadOptions, MatrixLayer};
use crate::error::{Error, Result};
use crate::runtime::Runtime;

/// The features of `scsae analyze` and `scsae concepts`: a matrix file, or cell-level activations of
/// an extraction folder, encoded by an SAE when given.
#[derive(Debug, Clone, Args)]
pub struct FeatureSourceArgs {
    /// Precomputed cells x features matrix (.safetensors with row_ids, .csv/.parquet with a first
    /// column of cell ids), e.g. SAE codes from `scsae encode`.
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// Tensor to read from a multi-tensor --features safetensors file.
    #[arg(long)]
    pub features_key: Option<String>,
    /// Trained SAE folder (sae_weights.safetensors + cfg.json): encodes the --activations.
    #[arg(long)]
    pub sae: Option<PathBuf>,
    /// Activation folder written by `scsae extract` (cell-level vectors of --layer).
    #[arg(long)]
    pub activations: Option<PathBuf>,
    /// Activation layer (e.g. 11, embeddings, cls).
    #[arg(long)]
    pub layer: Option<String>,
}

impl FeatureSourceArgs {
    /// The source, or a one-line error for a combination that names none or two.
    pub fn source(&self) -> Result<FeatureSource> {
        if self.features.is_some() && self.sae.is_some() {
            return Err(Error::invalid(
                "give either --features or --sae (with --activations), not both",
            ));
        }
        if self.sae.is_some() && self.activations.is_none() {
            return Err(Error::invalid(
                "--sae needs --activations DIR --layer L to encode",
            ));
        }
        if self.features.is_some() && self.activations.is_some() {
            return Err(Error::invalid(
                "--features and --activations are alternatives: analyse a matrix file or an extraction, not both",
            ));
        }
        if self.activations.is_some() && self.layer.is_none() {
            return Err(Error::invalid(
                "--activations needs --layer (e.g. --layer 11)",
            ));
        }
        match (&self.features, &self.activations, &self.layer) {
            (Some(path), _, _) => Ok(FeatureSource::Matrix {
                path: path.clone(),
                key: self.features_key.clone(),
            }),
            (None, Some(dir), Some(layer)) => Ok(FeatureSource::Activations {
                dir: dir.clone(),
                layer: layer.clone(),
                sae: self.sae.clone(),
            }),
            _ => Err(Error::invalid(
                "nothing to analyse: give --features FILE or --activations DIR --layer L [--sae DIR]",
            )),
        }
    }
}

/// Arguments of `scsae analyze`.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Where the features come from.
    #[command(flatten)]
    pub src: FeatureSourceArgs,
    /// Single-cell data (.h5ad or 10x folder) with labels and expression.
    #[arg(long)]
    pub data: PathBuf,
    /// obs column with the cell types.
    #[arg(long)]
    pub label_key: String,
    /// Matrix of the .h5ad to use for expression: X or raw.
    #[arg(long, default_value = "X")]
    pub data_layer: MatrixLayer,
    /// var column with gene symbols (default: the var index).
    #[arg(long)]
    pub gene_key: Option<String>,
    /// CSV/TSV/Parquet of cell labels joined on cell id (adds obs columns).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Rename duplicate gene symbols / cell ids (`X`, `X-1`, ...) as AnnData's
    /// `var_names_make_unique` does, instead of refusing the file.
    #[arg(long)]
    pub make_unique: bool,
    /// GMT files or folders of GMT files (repeat or comma-separate). Default: the paper's immune sets.
    #[arg(long, value_delimiter = ',')]
    pub genesets: Vec<PathBuf>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the headline numbers as JSON.
    #[arg(long)]
    pub json: bool,
    /// Overwrite a finished analysis at --out (refused otherwise).
    #[arg(long)]
    pub force: bool,
    /// Name of the features in tables and plots (default: SAE, or "activations").
    #[arg(long)]
    pub name: Option<String>,
    /// Expression preparation: auto (log1p-normalise counts, keep normalised data), log1p, as-is.
    #[arg(long, default_value = "auto")]
    pub expression: ExpressionTransform,
    /// How to read the expression matrix: auto (a window of cells at a time from an .h5ad whose
    /// matrix would take more than 512 MiB in memory, whole otherwise), whole, or by-rows.
    #[arg(long, value_enum, default_value = "auto")]
    pub read_expression: ExpressionReading,
    /// AUROC direction for the features: greater (feature higher in the type) or both (max(a, 1-a)).
    #[arg(long, default_value = "greater")]
    pub auroc_direction: Direction,
    /// Minimum cells for a type to be tested.
    #[arg(long, default_value_t = 5)]
    pub min_cells: usize,
    /// AUROC above which a feature is cell-type-specific.
    #[arg(long, default_value_t = 0.8)]
    pub auroc_threshold: f64,
    /// Fraction of cells a feature must be non-zero on to be alive.
    #[arg(long, default_value_t = 0.01)]
    pub alive_fraction: f64,
    /// Top positive / negative genes per feature.
    #[arg(long, default_value_t = 10)]
    pub top_genes: usize,
    /// Correlation cut-off for a feature's genes in the enrichment test.
    #[arg(long, default_value_t = 0.1)]
    pub corr_cutoff: f64,
    /// Minimum correlated genes for a feature to be tested.
    #[arg(long, default_value_t = 2)]
    pub min_hits: usize,
    /// Minimum measured genes per gene set.
    #[arg(long, default_value_t = 1)]
    pub min_set_size: usize,
    /// FDR level on BH q-values.
    #[arg(long, default_value_t = 0.05)]
    pub fdr: f64,
    /// Fisher background: set-genes (measured genes in any set) or measured (all measured genes).
    #[arg(long, default_value = "set-genes")]
    pub background: Background,
    /// Principal components of the baseline.
    #[arg(long, default_value_t = 50)]
    pub pca_components: usize,
    /// Solver of the baseline: auto (covariance-eigh when the matrix has at most 1000 columns and 10x
    /// as many rows, else exact when it is small, else randomized), exact, randomized or
    /// covariance-eigh (memory d x d, rows read a block at a time).
    #[arg(long, default_value = "auto")]
    pub pca_solver: PcaSolver,
    /// Matrix the PCA baseline is fitted on.
    #[arg(long, value_enum, default_value = "auto")]
    pub pca_source: PcaSource,
}

impl AnalyzeArgs {
    fn config(&self) -> Result<AnalysisConfig> {
        let cfg = AnalysisConfig {
            min_cells: self.min_cells,
            auroc_threshold: self.auroc_threshold,
            alive_fraction: self.alive_fraction,
            direction: self.auroc_direction,
            top_genes: self.top_genes,
            corr_cutoff: self.corr_cutoff,
            min_hits: self.min_hits,
            min_set_size: self.min_set_size,
            fdr: self.fdr,
            background: self.background,
            pca_components: self.pca_components,
            pca_solver: self.pca_solver,
        };
        Ok(cfg)
    }
}

/// Run `scsae analyze`; returns the text to print (JSON headline with `--json`).
pub fn run(args: &AnalyzeArgs, rt: &Runtime) -> Result<String> {
    let cfg = args.config()?;
    cfg.validate()?;
    let source = args.src.source()?;
    if args.pca_source == PcaSource::Activations && args.src.activations.is_none() {
        return Err(Error::invalid(
            "--pca-source activations needs --activations DIR --layer L",
        ));
    }
    let inputs = AnalyzeInputs {
        source,
        data: args.data.clone(),
        load: LoadOptions {
            layer: args.data_layer,
            gene_key: args.gene_key.clone(),
            labels: args.labels.clone(),
            make_unique: args.make_unique,
        },
        label_key: args.label_key.clone(),
        genesets: args.genesets.clone(),
        expression: args.expression,
        read_expression: args.read_expression,
        pca_source: args.pca_source,
        name: args.name.clone(),
        out: args.out.clone(),
        force: args.force,
    };
    let report = analyze(&inputs, &cfg, rt)?;
    if let Some(line) = report.warning_summary() {
        eprintln!("warning: {line}");
    }
    eprintln!("{}", report.expression_note);
    if args.json {
        Ok(serde_json::to_string_pretty(&report.summary).unwrap_or_default())
    } else {
        Ok(report.to_string())
    }
}
