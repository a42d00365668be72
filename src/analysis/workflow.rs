//! `scsae analyze` as one library call ([`analyze`]): read the data, labels and gene sets, take the
//! features (a matrix file, cell-level activations, or activations encoded by an SAE), analyse them
//! and the PCA baseline, and write the tables, figures and `report.md`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::pipeline::{analyze_sparse_features, match_cells, AnalysisContext, Comparison};
use super::report::{self, Summary};
use super::sparse_codes::SparseCodes;
use super::{
    expression_rows::ExpressionRows, fit_pca_axes, read_gene_sets, AnalysisConfig, CsrColumnBlocks,
    Direction, ExpressionTransform, RowBlocks,
};
use crate::activations::cell_blocks::CellBlocks;
use crate::activations::{read_cells, require_layer, ActivationStore, CellMatrix, Provenance};
use crate::data::{load_by_rows, LoadOptions};
use crate::data::{Dataset, DenseMatrix, H5adRows};
use crate::error::{Error, Result};
use crate::io::file_name;
use crate::io::lock::{check_not_finished, lock_for_writing};
use crate::runtime::Runtime;

/// Which matrix the PCA baseline is fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
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

/// How `scsae analyze` reads the expression matrix of `--data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
pub enum ExpressionReading {
    /// By rows when the matrix's stored values take more than [`EXPRESSION_WHOLE_BYTES`] in memory
    /// (and the file allows it), whole otherwise.
    #[default]
    Auto,
    /// Whole, in memory.
    Whole,
    /// A window of cells at a time from the `.h5ad` file (CSR or dense `X`; the features' cells in
    /// the file's order); a 10x folder, a CSC matrix or cells in another order are read whole.
    ByRows,
}

/// Memory (8 bytes per stored value) above which `--read-expression auto` reads the expression by
/// rows.
pub const EXPRESSION_WHOLE_BYTES: u64 = 512 << 20;

/// The paper's immune marker and functional gene sets, compiled in as the default gene sets.
pub const PAPER_GENESETS: &str = include_str!("../../genesets/paper_immune.gmt");

/// Where the analysed features come from.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureSource {
    /// A cells x features matrix file (optionally a named tensor of a safetensors file).
    Matrix {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        key: Option<String>,
    },
    /// Cell-level activations of an extraction folder, encoded by an SAE when given.
    Activations {
        /// The extraction folder.
        dir: PathBuf,
        /// Its layer.
        layer: String,
        /// SAE folder.
        sae: Option<PathBuf>,
    },
}

/// Everything [`analyze`] reads and where it writes.
#[derive(Debug, Clone)]
pub struct AnalyzeInputs {
    /// The features.
    pub source: FeatureSource,
    /// Single-cell data with the labels and expression.
    pub data: PathBuf,
    /// How to read it.
    pub load: LoadOptions,
    /// obs column with the cell types.
    pub label_key: String,
    /// GMT files or folders; empty = the paper's immune sets.
    pub genesets: Vec<PathBuf>,
    /// Expression preparation.
    pub expression: ExpressionTransform,
    /// How the expression matrix is read.
    pub read_expression: ExpressionReading,
    /// Matrix of the PCA baseline.
    pub pca_source: PcaSource,
    /// Name of the features in tables and plots.
    pub name: Option<String>,
    /// Output folder.
    pub out: PathBuf,
    /// Overwrite a finished analysis in `out` (otherwise refused).
    pub force: bool,
}

/// What [`analyze`] reports (the headline of `report.md`).
#[derive(Debug, Clone, Serialize)]
pub struct AnalyzeReport {
    /// The summary written into `report.md` and `summary.json`.
    pub summary: Summary,
    /// Warnings (also in `report.md`).
    pub warnings: Vec<String>,
    /// How the expression matrix was prepared.
    pub expression_note: String,
}

impl AnalyzeReport {
    /// One line for the terminal summarising the warnings (the first one and how many more), with
    /// the file that lists them all; `None` without warnings.
    pub fn warning_summary(&self) -> Option<String> {
        let first = self.warnings.first()?;
        let report = Path::new(&self.summary.out).join(REPORT_FILE);
        Some(match self.warnings.len() {
            1 => format!("{first} (also in {})", report.display()),
            n => format!(
                "{first}; and {} more warnings, all listed in {}",
                n - 1,
                report.display()
            ),
        })
    }
}

impl std::fmt::Display for AnalyzeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = &self.summary.features;
        let cfg = &self.summary.config;
        write!(
            f,
            "{}: {} features ({} alive), {} cells, {} types; mean best AUROC {:.3}; {} types > {}; {} specific",
            h.label, h.n_features, h.n_alive, h.n_cells, h.n_types_tested, h.mean_best_auroc, h.n_types_above,
            cfg.auroc_threshold, h.n_specific
        )?;
        if let Some(p) = h.pct_enriched {
            write!(f, "; {p:.1}% of alive features enriched")?;
        }
        if let Some(b) = &self.summary.pca {
            write!(
                f,
                "\nPCA: {} components; mean best AUROC {:.3}; {} types > {}",
                b.n_features, b.mean_best_auroc, b.n_types_above, cfg.auroc_threshold
            )?;
        }
        write!(
            f,
            "\nreport: {}",
            Path::new(&self.summary.out).join("report.md").display()
        )
    }
}

impl AnalysisConfig {
    /// Check the values (one-line errors naming the option).
    pub fn validate(&self) -> Result<()> {
        let cfg = self;
        if !(0.0..=1.0).contains(&cfg.alive_fraction) {
            return Err(Error::invalid("--alive-fraction must be in [0, 1]"));
        }
        if !(0.0..1.0).contains(&cfg.fdr) || cfg.fdr == 0.0 {
            return Err(Error::invalid("--fdr must be in (0, 1)"));
        }
        if !(-1.0..1.0).contains(&cfg.corr_cutoff) {
            return Err(Error::invalid("--corr-cutoff must be in [-1, 1)"));
        }
        if cfg.pca_components == 0 {
            return Err(Error::invalid("--pca-components must be at least 1"));
        }
        if !(0.0..=1.0).contains(&cfg.auroc_threshold) {
            return Err(Error::invalid("--auroc-threshold must be in [0, 1]"));
        }
        Ok(())
    }
}

/// Encode cell-level activations with the SAE saved in `dir`, refusing an SAE trained on another
/// layer or model; returns the codes and the SAE's name for figure titles
/// ([`crate::sae::saelens::SaeConfig::run_name`]). The cells are encoded a chunk at a time straight
/// into the column-sparse codes, so the dense `cells x features` codes never exist.
pub fn encode_with_sae(dir: &Path, acts: &CellMatrix) -> Result<(SparseCodes, String)> {
    encode_rows_with_sae(
        dir,
        &acts.matrix,
        &acts.provenance,
        acts.matrix.row_ids.clone(),
    )
}

/// [`encode_with_sae`] of rows read a block at a time (`provenance` says where they come from,
/// `row_ids` names them).
pub fn encode_rows_with_sae(
    dir: &Path,
    rows: &dyn RowBlocks,
    provenance: &Provenance,
    row_ids: Option<Vec<String>>,
) -> Result<(SparseCodes, String)> {
    let sae = crate::sae::Sae::load(dir)?;
    sae.check_source(provenance, &provenance.path)?;
    let mut codes = SparseCodes::new(sae.cfg.d_sae);
    sae.encode_blocks(rows, |chunk, n| codes.push_rows(chunk, n))?;
    codes.row_ids = row_ids;
    Ok((codes, sae.cfg.run_name()))
}

/// The cell-level activations of `--activations DIR --layer L`: an extraction folder's layer read a
/// block of cells at a time (never the whole `cells x d` matrix), or a matrix file in memory.
enum CellRows {
    Store(CellBlocks),
    Matrix(DenseMatrix),
}

impl CellRows {
    /// Open `path` (an extraction folder or a matrix file) with its provenance.
    fn open(path: &Path, layer: &str) -> Result<(CellRows, Provenance)> {
        if !path.is_dir() {
            let c = read_cells(path, Some(layer), None)?;
            return Ok((CellRows::Matrix(c.matrix), c.provenance));
        }
        let store = ActivationStore::open(path)?;
        let layer = require_layer(&store, Some(layer))?;
        let blocks = CellBlocks::open(&store, layer)?;
        Ok((
            CellRows::Store(blocks),
            Provenance::of_store(&store, Some(layer)),
        ))
    }

    fn blocks(&self) -> &dyn RowBlocks {
        match self {
            CellRows::Store(b) => b,
            CellRows::Matrix(m) => m,
        }
    }

    fn row_ids(&self) -> Option<Vec<String>> {
        match self {
            CellRows::Store(b) => Some(b.row_ids().to_vec()),
            CellRows::Matrix(m) => m.row_ids.clone(),
        }
    }
}

/// Read the whole matrix of `reader` into `ds` (opened without its values) and check it.
fn read_whole(ds: &mut Dataset, reader: H5adRows) -> Result<()> {
    ds.matrix = reader.read(0, reader.n_rows())?;
    ds.check_expression()
}

/// The file written last, that marks a finished analysis folder.
pub const REPORT_FILE: &str = "report.md";

/// How the analysis folder is named in the message refusing to overwrite it.
const FINISHED: &str = "a finished analysis";

/// Analyse the features of `inputs` with `cfg` and write the output folder; nothing is written
/// before every input has been read and checked.
pub fn analyze(
    inputs: &AnalyzeInputs,
    cfg: &AnalysisConfig,
    rt: &Runtime,
) -> Result<AnalyzeReport> {
    cfg.validate()?;
    if inputs.pca_source == PcaSource::Activations
        && !matches!(inputs.source, FeatureSource::Activations { .. })
    {
        return Err(Error::invalid(
            "--pca-source activations needs --activations DIR --layer L",
        ));
    }
    if inputs.out.is_file() {
        return Err(Error::input(
            &inputs.out,
            "output path is a file; --out must be a folder",
        ));
    }
    check_not_finished(&inputs.out, REPORT_FILE, FINISHED, inputs.force)?;
    // ---- read and validate every input before writing anything
    let (mut ds, reader) = load_by_rows(&inputs.data, &inputs.load)?;
    let reader = match (reader, inputs.read_expression) {
        (Some(r), ExpressionReading::ByRows) => Some(r),
        (Some(r), ExpressionReading::Auto)
            if r.stored_values().saturating_mul(8) > EXPRESSION_WHOLE_BYTES =>
        {
            Some(r)
        }
        (Some(r), _) => {
            read_whole(&mut ds, r)?;
            None
        }
        (None, _) => {
            ds.check_expression()?;
            None
        }
    };
    let all_labels = ds.labels(&inputs.label_key)?;
    let sets = if inputs.genesets.is_empty() {
        crate::analysis::gmt::parse_gmt(PAPER_GENESETS, Path::new("genesets/paper_immune.gmt"))?
    } else {
        read_gene_sets(&inputs.genesets)?
    };
    let acts = match &inputs.source {
        FeatureSource::Activations { dir, layer, .. } => {
            Some((dir.clone(), CellRows::open(dir, layer)?))
        }
        FeatureSource::Matrix { .. } => None,
    };
    let (features, features_path, source, run) = match (&inputs.source, &acts) {
        (FeatureSource::Matrix { path, key }, _) => (
            SparseCodes::from_dense(&read_cells(path, None, key.as_deref())?.matrix)?,
            path.clone(),
            format!("{}", path.display()),
            format!("features of {}", file_name(path)),
        ),
        (
            FeatureSource::Activations {
                layer,
                sae: Some(sae),
                ..
            },
            Some((dir, (a, provenance))),
        ) => {
            let (codes, run) = encode_rows_with_sae(sae, a.blocks(), provenance, a.row_ids())?;
            (
                codes,
                dir.clone(),
                format!("SAE {} on {} layer {}", sae.display(), dir.display(), layer),
                format!("{run} ({})", file_name(sae)),
            )
        }
        (FeatureSource::Activations { layer, .. }, Some((dir, (a, _)))) => {
            let x = a.blocks();
            let mut codes = SparseCodes::new(x.n_cols());
            x.visit_rows(&mut |block, n| codes.push_rows(block, n))?;
            codes.row_ids = a.row_ids();
            if let CellRows::Matrix(m) = a {
                codes.col_names = m.col_names.clone();
            }
            (
                codes,
                dir.clone(),
                format!("activations {} layer {}", dir.display(), layer),
                format!("activations layer {layer}"),
            )
        }
        (FeatureSource::Activations { .. }, None) => {
            return Err(Error::invalid("nothing to analyse"))
        }
    };
    let rows = match_cells(
        features.row_ids.as_deref(),
        &features_path,
        &ds.cell_ids,
        &inputs.data,
    )?;
    let labels: Vec<String> = rows.iter().map(|&r| all_labels[r].clone()).collect();
    drop(all_labels);
    // the analysed cells' expression, read by rows from the file (the cells in the file's order),
    // or in memory without keeping the whole data set beside it
    let increasing = rows.windows(2).all(|w| w[0] < w[1]);
    let (expr, expression_note) = match reader {
        Some(r) if increasing => ExpressionRows::by_rows(r, rows, &ds, inputs.expression)?,
        reader => {
            if let Some(r) = reader {
                read_whole(&mut ds, r)?;
            }
            let m = ds.matrix.select_rows(&rows);
            ExpressionRows::in_memory(m, inputs.expression)
        }
    };
    let genes = std::mem::take(&mut ds.gene_symbols);
    drop(ds);
    let ctx = AnalysisContext::new(&labels, Some((expr, genes)), Some(&sets), cfg)?;

    // PCA input, in the features' cell order: the activations the features were taken from (the
    // same rows), or the measured genes of the expression, a block of rows at a time
    let expression_blocks;
    let pca_input: Option<&dyn RowBlocks> = match (inputs.pca_source, &acts) {
        (PcaSource::None, _) | (PcaSource::Auto | PcaSource::Activations, None) => None,
        (PcaSource::Auto | PcaSource::Activations, Some((_, (a, _)))) => Some(a.blocks()),
        (PcaSource::Expression, _) => {
            let m = ctx
                .expression
                .as_ref()
                .map(|(e, _)| e)
                .ok_or_else(|| Error::invalid("no expression"))?;
            let keep: Vec<usize> = (0..m.n_cols()).filter(|&j| ctx.measured[j]).collect();
            expression_blocks = CsrColumnBlocks::new(m, keep);
            Some(&expression_blocks)
        }
    };

    let name = inputs.name.clone().unwrap_or_else(|| match &inputs.source {
        FeatureSource::Matrix { .. } | FeatureSource::Activations { sae: Some(_), .. } => {
            "SAE".into()
        }
        FeatureSource::Activations { sae: None, .. } => "activations".into(),
    });
    let main = analyze_sparse_features(&ctx, &name, &features, cfg.direction, cfg)?;
    let baseline = match pca_input {
        Some(x) => {
            let axes = fit_pca_axes(x, cfg.pca_components, cfg.pca_solver, rt.seed)?;
            // the scores go straight into column-sparse form, a block of cells at a time
            let mut scores = SparseCodes::new(axes.k());
            x.visit_rows(&mut |block, rows| scores.push_rows(&axes.project(block, rows)?, rows))?;
            scores.row_ids = features.row_ids.clone();
            scores.col_names = Some(axes.score_names());
            let fa = analyze_sparse_features(&ctx, "PCA", &scores, Direction::Both, cfg)?;
            Some((axes, fa))
        }
        None => None,
    };

    // ---- outputs
    let out = &inputs.out;
    // one writer per folder; `report.md` is written last and vouches for the rest, so an
    // overwrite removes it first (a killed run never looks finished)
    let _lock = lock_for_writing(out, REPORT_FILE, FINISHED, inputs.force, false)?;
    let mut tables = report::write_analysis_tables(out, "", &main, &ctx, cfg)?;
    report::write_cell_type_table(out, &main, baseline.as_ref().map(|b| &b.1), &ctx, cfg, 5)?;
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
        tables.extend(report::write_analysis_tables(out, "pca_", fa, &ctx, cfg)?);
        report::write_pca_variance(out, pca)?;
        tables.push("pca_variance".into());
    }
    let run = match &inputs.name {
        Some(n) => format!("{n}: {run}"),
        None => run,
    };
    let figures = crate::analysis::figures::write_figures(
        out,
        &run,
        &main,
        &features,
        baseline.as_ref().map(|b| &b.1),
        &ctx,
        cfg,
    )?;
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
    Ok(AnalyzeReport {
        summary,
        warnings: ctx.warnings.clone(),
        expression_note,
    })
}
