//! `scsae concepts`: each feature's cell-type concept chosen on a validation split of the cells and
//! scored on the held-out test split, with the PCA baseline of the same inputs.

use std::path::PathBuf;

use clap::Args;

use crate::analysis::concepts::{run_concepts, ConceptsRequest};
use crate::analysis::heldout::HeldOutOptions;
use crate::cli::analyze::FeatureSourceArgs;
use crate::data::{LoadOptions, MatrixLayer};
use crate::error::{Error, Result};

/// Arguments of `scsae concepts`.
#[derive(Debug, Clone, Args)]
pub struct ConceptsArgs {
    /// Where the features come from.
    #[command(flatten)]
    pub src: FeatureSourceArgs,
    /// Single-cell data (.h5ad or 10x folder) with the labels.
    #[arg(long)]
    pub data: PathBuf,
    /// obs column with the cell types.
    #[arg(long)]
    pub label_key: String,
    /// CSV/TSV/Parquet of cell labels joined on cell id (adds obs columns).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Fraction of each type's cells held out for testing.
    #[arg(long, default_value_t = 0.5)]
    pub test_fraction: f64,
    /// Seed of the split (and of a randomised PCA).
    #[arg(long, default_value_t = 42)]
    pub split_seed: u64,
    /// Test AUROC a feature needs to count as annotated.
    #[arg(long, default_value_t = 0.8)]
    pub min_auroc: f64,
    /// Benjamini-Hochberg false discovery rate for the test p-values.
    #[arg(long, default_value_t = 0.05)]
    pub fdr: f64,
    /// Cells a type needs in each split to be a candidate concept.
    #[arg(long, default_value_t = 5)]
    pub min_cells: usize,
    /// Let features be lower in their type too (orientation chosen on validation).
    #[arg(long)]
    pub two_sided: bool,
    /// PCA components of the baseline, fitted on the same inputs (0 = none).
    #[arg(long, default_value_t = 50)]
    pub pca: usize,
    /// Output folder: concepts.csv/.parquet, concepts_pca.csv/.parquet, concepts.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite finished scores at --out.
    #[arg(long)]
    pub force: bool,
}

/// Score; returns the headline as text.
pub fn run(a: &ConceptsArgs) -> Result<String> {
    let source = a.src.source()?;
    if !(a.min_auroc.is_finite() && (0.0..=1.0).contains(&a.min_auroc)) {
        return Err(Error::invalid("--min-auroc must be between 0 and 1"));
    }
    if !(a.fdr > 0.0 && a.fdr <= 1.0) {
        return Err(Error::invalid("--fdr must be in (0, 1]"));
    }
    let req = ConceptsRequest {
        source,
        data: a.data.clone(),
        label_key: a.label_key.clone(),
        load: LoadOptions {
            layer: MatrixLayer::X,
            labels: a.labels.clone(),
            ..LoadOptions::default()
        },
        pca_components: a.pca,
        opts: HeldOutOptions {
            test_fraction: a.test_fraction,
            seed: a.split_seed,
            min_auroc: a.min_auroc,
            fdr: a.fdr,
            min_cells: a.min_cells,
            two_sided: a.two_sided,
        },
        out: a.out.clone(),
        force: a.force,
    };
    let r = run_concepts(&req)?;
    let line = |name: &str, s: &crate::analysis::heldout::HeldOutSummary| {
        format!(
            "{name}: {} of {} scored features annotated on held-out cells ({:.1} %), {} of the types covered ({})",
            s.n_annotated,
            s.n_scored,
            s.pct_annotated,
            s.types_covered.len(),
            s.types_covered.join(", ")
        )
    };
    let mut text = line(&r.features, &r.summary);
    if let Some(p) = &r.pca {
        text.push('\n');
        text.push_str(&line("PCA baseline", p));
    }
    text.push_str(&format!(
        "\nvalidation {} cells, test {} cells; wrote {}",
        r.summary.n_validation,
        r.summary.n_test,
        a.out.display()
    ));
    Ok(text)
}
