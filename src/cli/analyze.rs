//! `scsae analyze`: AUROC, gene attribution, enrichment and the PCA baseline for a feature matrix.
//!
//! Features come from `--features FILE` (any cells x features matrix with cell ids), or from
//! `--activations DIR --layer L` (cell-level activations), encoded through `--sae DIR` when given.
//! Cells are matched to the data's labels and expression by cell id.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::activations::ActivationStore;
use crate::analysis::pipeline::{
    analyze_features, match_cells, select_columns, AnalysisContext, Comparison,
};
use crate::analysis::report::{self, Summary};
use crate::analysis::{
    correlation::prepare_expression, fit_pca, read_gene_sets, AnalysisConfig, Background,
    Direction, ExpressionTransform, PcaSolver,
};
use crate::data::{load, LoadOptions, MatrixLayer};
use crate::error::{Error, Result};
use crate::io::matrix::{read_matrix, DenseMatrix};
use crate::runtime::Runtime;

/// Which matrix the PCA baseline is fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PcaSource {
    /// The cell-level activations when `--activations` is given, otherwise none.
    Auto,
    /// The cell-level activations (`--activations DIR --layer L`).
    Activations,
    /// The (log-normalised) expression matrix of `--data`.
    Expression,
    /// No baseline.
    None,
}

/// Arguments of `scsae analyze`.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
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
    /// GMT files or folders of GMT files (repeat or comma-separate). Default: the paper's immune sets.
    #[arg(long, value_delimiter = ',')]
    pub genesets: Vec<PathBuf>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the headline numbers as JSON.
    #[arg(long)]
    pub json: bool,
    /// Name of the features in tables and plots (default: SAE, or "activations").
    #[arg(long)]
    pub name: Option<String>,
    /// Expression preparation: auto (log1p-normalise counts, keep normalised data), log1p, as-is.
    #[arg(long, default_value = "auto")]
    pub expression: ExpressionTransform,
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
    /// SVD solver of the baseline: auto, exact or randomized.
    #[arg(long, default_value = "auto")]
    pub pca_solver: PcaSolver,
    /// Matrix the PCA baseline is fitted on.
    #[arg(long, value_enum, default_value = "auto")]
    pub pca_source: PcaSource,
}

/// The paper's immune marker and functional gene sets, compiled in as the default `--genesets`.
pub const PAPER_GENESETS: &str = include_str!("../../genesets/paper_immune.gmt");

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
        if !(0.0..=1.0).contains(&cfg.alive_fraction) {
            return Err(Error::invalid("--alive-fraction must be in [0, 1]"));
        }
        if !(0.0..1.0).contains(&cfg.fdr) || cfg.fdr == 0.0 {
            return Err(Error::invalid("--fdr must be in (0, 1)"));
        }
        if !(-1.0..1.0).contains(&cfg.corr_cutoff) {
            return Err(Error::invalid("--corr-cutoff must be in [-1, 1)"));
        }
        if !(0.0..=1.0).contains(&cfg.auroc_threshold) {
            return Err(Error::invalid("--auroc-threshold must be in [0, 1]"));
        }
        Ok(cfg)
    }
}

/// Encode the cell-level activations `m` (from the extraction in `acts_dir`, at `layer`) with the SAE
/// saved in `dir`, refusing an SAE trained on another layer or model.
pub fn encode_with_sae(
    dir: &Path,
    m: &DenseMatrix,
    layer: Option<&str>,
    acts_dir: &Path,
) -> Result<DenseMatrix> {
    let sae = crate::sae::Sae::load(dir)?;
    let model = crate::activations::Manifest::read(acts_dir)
        .map(|man| man.model)
        .unwrap_or(serde_json::Value::Null);
    sae.check_source(&model, layer, acts_dir)?;
    sae.encode(m)
}

/// Column names taken as cell ids when a table's first column is numeric (e.g. integer barcodes).
const ID_COLUMNS: [&str; 7] = [
    "cell_id",
    "cell",
    "barcode",
    "obs_names",
    "index",
    "",
    "cell_ids",
];

/// Read the feature matrix; a CSV/TSV/Parquet whose first column is an id-named numeric column
/// (`cell_id`, `barcode`, `obs_names`, ...) gets that column, read back as text, as its row ids.
pub fn read_features(path: &Path, key: Option<&str>) -> Result<DenseMatrix> {
    let m = read_matrix(path, key)?;
    let first = m
        .col_names
        .as_ref()
        .and_then(|c| c.first())
        .map(|c| c.to_ascii_lowercase());
    match first {
        Some(name) if m.row_ids.is_none() && ID_COLUMNS.contains(&name.as_str()) => {
            let df = crate::io::table::read_dataframe(path)?;
            let col = df
                .columns()
                .first()
                .ok_or_else(|| Error::input(path, "table has no columns"))?;
            let ids = crate::io::table::string_column(col).map_err(|e| Error::input(path, e))?;
            let keep: Vec<usize> = (1..m.n_cols).collect();
            let mut out = select_columns(&m, &keep);
            out.row_ids = Some(ids);
            if out.n_cols == 0 {
                return Err(Error::input(
                    path,
                    "no feature columns besides the cell ids",
                ));
            }
            Ok(out)
        }
        _ => Ok(m),
    }
}

/// Run `scsae analyze`; returns the text to print (JSON headline with `--json`).
pub fn run(args: &AnalyzeArgs, rt: &Runtime) -> Result<String> {
    let cfg = args.config()?;
    if args.features.is_some() && args.sae.is_some() {
        return Err(Error::invalid(
            "give either --features or --sae (with --activations), not both",
        ));
    }
    if args.sae.is_some() && args.activations.is_none() {
        return Err(Error::invalid(
            "--sae needs --activations DIR --layer L to encode",
        ));
    }
    if args.activations.is_some() && args.layer.is_none() {
        return Err(Error::invalid(
            "--activations needs --layer (e.g. --layer 11)",
        ));
    }
    if args.features.is_none() && args.activations.is_none() {
        return Err(Error::invalid(
            "nothing to analyse: give --features FILE or --activations DIR --layer L [--sae DIR]",
        ));
    }
    if args.pca_source == PcaSource::Activations && args.activations.is_none() {
        return Err(Error::invalid(
            "--pca-source activations needs --activations DIR --layer L",
        ));
    }
    if args.out.is_file() {
        return Err(Error::input(
            &args.out,
            "output path is a file; --out must be a folder",
        ));
    }

    // ---- read and validate every input before writing anything
    let opts = LoadOptions {
        layer: args.data_layer,
        gene_key: args.gene_key.clone(),
        labels: args.labels.clone(),
    };
    let ds = load(&args.data, &opts)?;
    let all_labels = ds.labels(&args.label_key)?;
    let sets = if args.genesets.is_empty() {
        crate::analysis::gmt::parse_gmt(PAPER_GENESETS, Path::new("genesets/paper_immune.gmt"))?
    } else {
        read_gene_sets(&args.genesets)?
    };
    let acts = match (&args.activations, &args.layer) {
        (Some(dir), Some(layer)) => {
            let store = ActivationStore::open(dir)?;
            Some((dir.clone(), store.cell_matrix(layer)?))
        }
        _ => None,
    };
    let (features, features_path, source) = if let Some(f) = &args.features {
        (
            read_features(f, args.features_key.as_deref())?,
            f.clone(),
            format!("{}", f.display()),
        )
    } else if let (Some(sae), Some((dir, a))) = (&args.sae, &acts) {
        (
            encode_with_sae(sae, a, args.layer.as_deref(), dir)?,
            dir.clone(),
            format!(
                "SAE {} on {} layer {}",
                sae.display(),
                dir.display(),
                args.layer.as_deref().unwrap_or("")
            ),
        )
    } else if let Some((dir, a)) = &acts {
        (
            a.clone(),
            dir.clone(),
            format!(
                "activations {} layer {}",
                dir.display(),
                args.layer.as_deref().unwrap_or("")
            ),
        )
    } else {
        return Err(Error::invalid("nothing to analyse"));
    };
    let rows = match_cells(
        features.row_ids.as_deref(),
        &features_path,
        &ds.cell_ids,
        &args.data,
    )?;
    let sub = ds.select_cells(&rows);
    let labels: Vec<String> = rows.iter().map(|&r| all_labels[r].clone()).collect();
    let mut expr = sub.matrix.clone();
    let expression_note = prepare_expression(&mut expr, args.expression);
    let ctx = AnalysisContext::new(
        &labels,
        Some((expr, sub.gene_symbols.clone())),
        Some(&sets),
        &cfg,
    )?;

    // PCA input, in the features' cell order
    let pca_input = match (args.pca_source, &acts) {
        (PcaSource::None, _) => None,
        (PcaSource::Auto | PcaSource::Activations, Some((dir, a))) => {
            // the activations must hold every analysed cell: map the features' ids into them
            let act_rows = match_cells(
                features.row_ids.as_deref(),
                &features_path,
                a.row_ids.as_deref().unwrap_or(&[]),
                dir,
            )?;
            Some(("activations".to_string(), a.select_rows(&act_rows)))
        }
        (PcaSource::Auto, None) => None,
        (PcaSource::Activations, None) => None,
        (PcaSource::Expression, _) => {
            let m = ctx
                .expression
                .as_ref()
                .map(|(e, _)| e)
                .ok_or_else(|| Error::invalid("no expression"))?;
            let mut d = DenseMatrix::new(m.n_rows, m.n_cols, m.to_dense())?;
            d.row_ids = features.row_ids.clone();
            let keep: Vec<usize> = (0..d.n_cols).filter(|&j| ctx.measured[j]).collect();
            Some(("expression".to_string(), select_columns(&d, &keep)))
        }
    };

    let name = args.name.clone().unwrap_or_else(|| {
        if args.sae.is_some() || args.features.is_some() {
            "SAE".into()
        } else {
            "activations".into()
        }
    });
    let main = analyze_features(&ctx, &name, &features, cfg.direction, &cfg)?;
    let baseline = match &pca_input {
        Some((_, x)) => {
            let pca = fit_pca(x, cfg.pca_components, cfg.pca_solver, rt.seed)?;
            let fa = analyze_features(&ctx, "PCA", &pca.scores, Direction::Both, &cfg)?;
            Some((pca, fa))
        }
        None => None,
    };

    // ---- outputs
    let out = &args.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut tables = report::write_analysis_tables(out, "", &main, &ctx, &cfg)?;
    report::write_cell_type_table(out, &main, baseline.as_ref().map(|b| &b.1), &ctx, &cfg, 5)?;
    tables.push("cell_types".into());
    let comparison = Comparison::of(
        &[
            Some(&main.headline),
            baseline.as_ref().map(|b| &b.1.headline),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>(),
        cfg.auroc_threshold,
        cfg.fdr,
    );
    report::write_comparison(out, &comparison)?;
    tables.push("comparison".into());
    if let Some((pca, fa)) = &baseline {
        tables.extend(report::write_analysis_tables(out, "pca_", fa, &ctx, &cfg)?);
        report::write_pca_variance(out, pca)?;
        tables.push("pca_variance".into());
    }
    let figures = report::write_figures(out, &main, baseline.as_ref().map(|b| &b.1), &ctx, &cfg)?;
    let summary = Summary {
        out: out.display().to_string(),
        feature_source: source,
        n_cells: features.n_rows,
        cell_types: ctx.type_names(),
        n_gene_sets: ctx.sets.len(),
        expression: Some(expression_note.clone()),
        features: main.headline.clone(),
        pca: baseline.as_ref().map(|b| b.1.headline.clone()),
        n_warnings: ctx.warnings.len(),
        config: cfg.clone(),
    };
    report::write_report(
        out,
        &summary,
        &main,
        baseline.as_ref().map(|b| &b.1),
        Some(&comparison),
        &tables,
        &figures,
        &ctx.warnings,
        &ctx,
    )?;
    for w in ctx.warnings.iter().take(20) {
        eprintln!("warning: {w}");
    }
    if ctx.warnings.len() > 20 {
        eprintln!(
            "warning: ... {} more warnings in {}",
            ctx.warnings.len() - 20,
            out.join("report.md").display()
        );
    }
    eprintln!("{expression_note}");
    if args.json {
        Ok(serde_json::to_string_pretty(&summary).unwrap_or_default())
    } else {
        let h = &main.headline;
        let mut s = format!(
            "{}: {} features ({} alive), {} cells, {} types; mean best AUROC {:.3}; {} types > {}; {} specific",
            h.label, h.n_features, h.n_alive, h.n_cells, h.n_types_tested, h.mean_best_auroc, h.n_types_above,
            cfg.auroc_threshold, h.n_specific
        );
        if let Some(p) = h.pct_enriched {
            s.push_str(&format!("; {p:.1}% of alive features enriched"));
        }
        if let Some((_, b)) = &baseline {
            s.push_str(&format!(
                "\nPCA: {} components; mean best AUROC {:.3}; {} types > {}",
                b.headline.n_features,
                b.headline.mean_best_auroc,
                b.headline.n_types_above,
                cfg.auroc_threshold
            ));
        }
        s.push_str(&format!("\nreport: {}", out.join("report.md").display()));
        Ok(s)
    }
}
